"""Sec. 4.2 of Ioffe & Szegedy (2015), Figures 2 and 3: the Inception variants, at CPU scale.

The paper's headline result: Inception with BN and the changes of Sec. 4.2.1 (higher learning
rate, no dropout, L2 / 5, learning-rate decay 6x faster) reaches the plain Inception's best
accuracy in 14 times fewer steps (BN-x5: 2.1M vs 31.0M steps; BN-x30 2.7M), ends higher (BN-x30
74.8% vs 72.2%), BN alone is faster too (BN-Baseline 13.3M), a sigmoid network trains with BN
(BN-x5-Sigmoid 69.8%) but not without it, and the plain Inception at 5x the learning rate blows
up. `configs/inception_variants.py` runs every variant (names as the paper's; runs named
"<variant>,seed=<s>") on a narrow small Inception on MNIST; this module turns them into claims:

- steps to reach Inception's best accuracy (the same seed's; Figure 3's first column), as the
  paired log ratio Inception / variant, for BN-Baseline, BN-x5, BN-x30, and BN-x5 / BN-Baseline.
  A variant that never reaches it within the run counts as reaching it one evaluation after the
  last step, a lower bound on its steps that can only weaken the claim;
- best accuracy (Figure 3's second column): paired differences variant - Inception;
- sigmoid: BN-x5-Sigmoid against Inception-Sigmoid, and whether the latter stays at chance;
- the plain Inception at 5x the learning rate: diverged or at chance in every seed, or its best
  accuracy against Inception's;
- the MLP's measures on the conv net: saturation of the sigmoid's inputs (|z| > 4) with and
  without BN, and the drift of every conv layer's input distribution (W1 between evaluations).

The magnitudes (14x) belong to ImageNet and 31M steps; here they depend on the step budget, so the
claims test the direction, with the measured ratio next to the paper's. Claims about the paper's
headline comparisons (Inception vs BN-x5 / BN-x30) need `stats.HEADLINE_SEEDS` seeds.
"""
from __future__ import annotations

import math
import pathlib

import numpy as np
from matplotlib.lines import Line2D
from matplotlib.ticker import NullFormatter

from bn_experiments import plotting, stats
from bn_experiments import runs as runs_lib
from bn_experiments.experiments import Experiment, register

SOURCE = "IS Sec. 4.2, Fig. 2-3"
FIGURE = "inception_variants.png"
ORDER = ("Inception", "BN-Baseline", "BN-x5", "BN-x30", "BN-x5-Sigmoid", "Inception-Sigmoid",
         "Inception-x5")
COLORS = {"Inception": "#d1495b", "BN-Baseline": "#30638e", "BN-x5": "#00798c",
          "BN-x30": "#66a182", "BN-x5-Sigmoid": "#8d5a97", "Inception-Sigmoid": "#edae49",
          "Inception-x5": "#6f4e37"}
# Figure 3 of the paper: steps (millions) to reach Inception's 72.2%, and max accuracy.
PAPER = {"Inception": (31.0, 0.722), "BN-Baseline": (13.3, 0.727), "BN-x5": (2.1, 0.730),
         "BN-x30": (2.7, 0.748), "BN-x5-Sigmoid": (None, 0.698)}
HEADLINE = ("BN-x5", "BN-x30")


def variant(run: dict) -> str:
    return run["name"].split(",seed=")[0]


def by_variant(runs: list[dict]) -> dict[str, dict[int, dict]]:
    """{variant: {seed: run}} for the runs named "<variant>,seed=<s>"."""
    out: dict[str, dict[int, dict]] = {}
    for run in runs:
        out.setdefault(variant(run), {})[runs_lib.cfg(run, "seed", 0)] = run
    return out


def best(run: dict) -> float | None:
    return run["final"].get("max_test_accuracy")


# summary.json rounds curve values (to 6 significant digits) but not the finals: a curve
# "reaches" a final's accuracy within this (a test example is 0.001 of 1,000).
ROUNDING = 1e-5


def steps_to(run: dict, target: float) -> float:
    """The first evaluated step at or above `target`; never: steps + eval_every (a lower bound)."""
    steps, values = runs_lib.curve(run, "test_accuracy")
    hit = stats.first_reach(steps, values, target - ROUNDING)
    if hit is not None:
        return float(hit)
    return float(runs_lib.cfg(run, "steps")) + float(runs_lib.cfg(run, "eval_every"))


def steps_to_inception_best(table: dict, name: str) -> dict[int, float]:
    """Per seed: steps of variant `name` to reach the same seed's Inception best accuracy."""
    base = table.get("Inception", {})
    return {s: steps_to(r, best(base[s])) for s, r in table.get(name, {}).items()
            if s in base and best(base[s]) is not None}


def _log_ratio(a: dict, b: dict) -> stats.Interval:
    """Interval of log(a[s] / b[s]) over the seeds of both."""
    la = {s: math.log(v) for s, v in a.items() if v and v > 0}
    lb = {s: math.log(v) for s, v in b.items() if v and v > 0}
    return stats.paired(la, lb)


def _ratio_text(iv: stats.Interval) -> str:
    if iv.n == 0:
        return "no data"
    if iv.low is None:
        return f"{math.exp(iv.mean):.3g}x (n=1, no interval)"
    return (f"{math.exp(iv.mean):.3g}x [{math.exp(iv.low):.3g}, {math.exp(iv.high):.3g}] "
            f"(n={iv.n}, geometric mean over seeds)")


def _steps_text(d: dict) -> str:
    return ", ".join(f"{int(v):,}" for _, v in sorted(d.items()))


def _need(name: str) -> int:
    return stats.HEADLINE_SEEDS if name in HEADLINE else stats.MIN_SEEDS


def _fewer_steps(table: dict, fast: str, slow: str, paper: str) -> dict:
    n_fast, n_slow = steps_to_inception_best(table, fast), steps_to_inception_best(table, slow)
    iv = _log_ratio(n_slow, n_fast)
    need = _need(fast) if slow == "Inception" else stats.MIN_SEEDS
    limit = max((runs_lib.cfg(r, "steps") for r in table[fast].values()), default=0)
    cid = f"{_id(fast)}_reaches_inception_best_sooner" if slow == "Inception" else \
        f"{_id(fast)}_faster_than_{_id(slow)}"
    return runs_lib.row(
        f"inception_variants.{cid}",
        f"{fast} reaches the plain Inception's best accuracy in fewer steps than {slow}",
        SOURCE,
        f"steps to the same seed's Inception best accuracy: {slow} {_steps_text(n_slow)}; {fast} "
        f"{_steps_text(n_fast)} (a value above {limit:,} = never within the run); "
        f"{slow} / {fast} = {_ratio_text(iv)}" + stats.seeds_note(iv.n, need),
        paper, stats.verdict(iv, min_seeds=need), FIGURE,
        stats.evidence(iv, stats.rule_single(
            f"log(steps of {slow} / steps of {fast}) to reach the same seed's Inception best "
            f"test accuracy (never reached: steps + eval_every, a lower bound)",
            expect_text=f"above zero ({fast} faster)", min_seeds=need)))


def _id(name: str) -> str:
    return name.lower().replace("-", "_")


def _accuracy(table: dict, name: str, other: str = "Inception") -> dict:
    a = {s: best(r) for s, r in table.get(name, {}).items()}
    b = {s: best(r) for s, r in table.get(other, {}).items()}
    iv = stats.paired(a, b)
    need = _need(name) if other == "Inception" else stats.MIN_SEEDS
    p_name, p_other = PAPER[name][1], PAPER[other][1]
    return runs_lib.row(
        f"inception_variants.{_id(name)}_higher_accuracy" + ("" if other == "Inception" else
                                                             f"_than_{_id(other)}"),
        f"{name} reaches a higher best test accuracy than {other}", SOURCE,
        f"best test accuracy: {name} {stats.mean_std(a.values())}, {other} "
        f"{stats.mean_std(b.values())}; paired difference {stats.fmt(iv)}"
        + stats.seeds_note(iv.n, need),
        f"{name} {p_name:.1%} vs {other} {p_other:.1%} on ImageNet (Figure 3)",
        stats.verdict(iv, min_seeds=need), FIGURE,
        stats.evidence(iv, stats.rule_single(
            f"best test accuracy of {name} - {other}", expect_text="above zero",
            min_seeds=need)))


def _sigmoid(table: dict) -> dict | None:
    bn, no = table.get("BN-x5-Sigmoid", {}), table.get("Inception-Sigmoid", {})
    if not bn or not no:
        return None
    a, b = {s: best(r) for s, r in bn.items()}, {s: best(r) for s, r in no.items()}
    iv = stats.paired(a, b)
    verdict = stats.verdict(iv)
    chance = [bool(r["final"].get("did_not_train")) for r in no.values()]
    if verdict == stats.REPRODUCED and not all(chance):
        verdict = stats.PARTLY
    rule = stats.rule_single("best test accuracy of BN-x5-Sigmoid - Inception-Sigmoid",
                             expect_text="above zero")
    rule += (" A reproduced verdict also needs Inception-Sigmoid at chance (best accuracy within "
             "0.05 of 1/10) in every seed, else it is partly reproduced.")
    inc = {s: best(r) for s, r in table.get("Inception", {}).items()}
    return runs_lib.row(
        "inception_variants.saturating_nonlinearities_train_with_bn",
        "A sigmoid Inception trains with BN (BN-x5-Sigmoid) and stays at chance without it "
        "(Inception-Sigmoid)", SOURCE,
        f"best test accuracy: BN-x5-Sigmoid {stats.mean_std(a.values())}, Inception-Sigmoid "
        f"{stats.mean_std(b.values())} (at chance in {sum(chance)} of {len(chance)} seeds), "
        f"ReLU Inception {stats.mean_std(inc.values())}; paired difference {stats.fmt(iv)}",
        "BN-x5-Sigmoid 69.8% (below Inception's 72.2%); Inception with sigmoid stays at "
        "chance (Sec. 4.2.2)", verdict, FIGURE, stats.evidence(iv, rule))


def _high_lr(table: dict) -> dict | None:
    hot, base = table.get("Inception-x5", {}), table.get("Inception", {})
    if not hot or not base:
        return None
    failed = [bool(r["final"].get("diverged") or r["final"].get("did_not_train"))
              for r in hot.values()]
    a, b = {s: best(r) for s, r in base.items()}, {s: best(r) for s, r in hot.items()}
    iv = stats.paired(a, {s: (v if v is not None else 0.1) for s, v in b.items()})
    if len(failed) < stats.MIN_SEEDS:
        verdict = stats.INCONCLUSIVE
    elif all(failed):
        verdict = stats.REPRODUCED
    elif any(failed) or iv.side() > 0:
        verdict = stats.PARTLY
    else:
        verdict = stats.NOT_REPRODUCED
    bn5 = {s: best(r) for s, r in table.get("BN-x5", {}).items()}
    diverged = [r["diverged_at_step"] for r in hot.values() if r["diverged_at_step"] is not None]
    return runs_lib.row(
        "inception_variants.bn_prevents_divergence",
        "Without BN, Inception at 5x the learning rate fails (the parameters reach machine "
        "infinity), while BN-x5 trains at that rate", SOURCE,
        f"Inception-x5: diverged or at chance in {sum(failed)} of {len(failed)} seeds"
        f"{' (diverged at steps ' + ', '.join(map(str, diverged)) + ')' if diverged else ''}; "
        f"best test accuracy {stats.mean_std(b.values())} vs Inception {stats.mean_std(a.values())}"
        f" (paired Inception - Inception-x5 {stats.fmt(iv)}); BN-x5 at the same rate "
        f"{stats.mean_std(bn5.values())}",
        "the x5 learning rate on the original Inception drove the parameters to machine infinity",
        verdict, FIGURE, stats.evidence(iv, (
            "Reproduced when Inception-x5 diverged (non-finite loss) or stayed at chance in every "
            "seed (at least 2 seeds); partly reproduced when it failed in some seeds only, or "
            "trained in all but to a lower best test accuracy than Inception (paired by seed, "
            "95% t-interval of Inception - Inception-x5 above zero); not reproduced when it "
            "trained in every seed and not significantly worse than Inception.")))


def mean_saturation(run: dict) -> float | None:
    vals = [v for k, v in run["final"].items()
            if k.startswith("mean_saturation_layer") and v is not None]
    return float(np.mean(vals)) if vals else None


def _saturation(table: dict) -> dict | None:
    bn, no = table.get("BN-x5-Sigmoid", {}), table.get("Inception-Sigmoid", {})
    if not bn or not no:
        return None
    a, b = ({s: mean_saturation(r) for s, r in no.items()},
            {s: mean_saturation(r) for s, r in bn.items()})
    iv = stats.paired(a, b)
    return runs_lib.row(
        "inception_variants.bn_reduces_saturation",
        "BN keeps a sigmoid conv net's inputs out of the saturated regime", "IS Sec. 1, Sec. 4.2.2",
        f"fraction of the sigmoid's inputs with |z| > 4 (test set, mean over conv layers and "
        f"evaluations): Inception-Sigmoid {stats.mean_std(a.values(), 3)}, BN-x5-Sigmoid "
        f"{stats.mean_std(b.values(), 3)}; paired difference {stats.fmt(iv)} (the BN run also "
        f"has the 4.2.1 changes)",
        "BN keeps the inputs of saturating nonlinearities out of the saturated regime (Sec. 1); "
        "a sigmoid Inception trains only with BN (Sec. 4.2.2)",
        stats.verdict(iv), FIGURE, stats.evidence(iv, stats.rule_single(
            "mean saturated fraction of Inception-Sigmoid - BN-x5-Sigmoid",
            expect_text="above zero (less saturation with BN)")))


def mean_drift(run: dict) -> float | None:
    """The ICS drift of a run: 1-Wasserstein distance of each conv layer's pre-activation
    distribution (per channel, test set) between consecutive evaluations, mean over layers and
    evaluations (the runner's `mean_ics_w1_layer<l>`)."""
    vals = [v for k, v in run["final"].items()
            if k.startswith("mean_ics_w1_layer") and v is not None]
    return float(np.mean(vals)) if vals else None


def _drift(table: dict) -> dict | None:
    """BN-Baseline vs Inception: the same network and training but for BN. (The sigmoid pair is
    reported beside it, not tested: Inception-Sigmoid does not learn, so its inputs cannot drift,
    and BN-x5-Sigmoid also has the 4.2.1 changes.)"""
    bn, no = table.get("BN-Baseline", {}), table.get("Inception", {})
    if not bn or not no:
        return None
    a, b = {s: mean_drift(r) for s, r in no.items()}, {s: mean_drift(r) for s, r in bn.items()}
    iv = stats.paired(a, b)
    sig = [(n, [mean_drift(r) for r in table.get(n, {}).values()])
           for n in ("Inception-Sigmoid", "BN-x5-Sigmoid")]
    return runs_lib.row(
        "inception_variants.bn_reduces_internal_covariate_shift",
        "BN reduces the change of each conv layer's input distribution over training",
        "IS Sec. 1-2",
        f"W1 drift of each conv layer's pre-activations (per channel, test set) between "
        f"consecutive evaluations, mean over layers and evaluations: Inception "
        f"{stats.mean_std(a.values(), 3)}, BN-Baseline {stats.mean_std(b.values(), 3)}; paired "
        f"difference {stats.fmt(iv)}. W1 is in each layer's own units, which BN fixes to about "
        f"1. Sigmoid, not tested: " + ", ".join(f"{n} {stats.mean_std(v, 3)}" for n, v in sig)
        + stats.seeds_note(iv.n, stats.HEADLINE_SEEDS),
        "BN reduces internal covariate shift (Sec. 1-2)",
        stats.verdict(iv, min_seeds=stats.HEADLINE_SEEDS), FIGURE,
        stats.evidence(iv, stats.rule_single(
            "mean W1 drift of Inception - BN-Baseline", expect_text="above zero (less drift "
            "with BN)", min_seeds=stats.HEADLINE_SEEDS) + " The paper's title claim: a headline "
            "claim."))


def claims(runs: list[dict]) -> list[dict]:
    """The Figure 3 table as claim rows (see the module docstring); rows whose variants did not
    run are left out."""
    table = by_variant(runs)
    if "Inception" not in table:
        return []
    paper_steps = {n: PAPER[n][0] for n in ("BN-Baseline", "BN-x5", "BN-x30")}
    out = []
    for name, steps in paper_steps.items():
        if name in table:
            out.append(_fewer_steps(table, name, "Inception",
                                    f"{name} {steps}M vs Inception 31.0M steps to 72.2% "
                                    f"({31.0 / steps:.1f}x fewer; Figure 3)"))
    if "BN-x5" in table and "BN-Baseline" in table:
        out.append(_fewer_steps(table, "BN-x5", "BN-Baseline",
                                "the Sec. 4.2.1 changes: BN-x5 2.1M vs BN-Baseline 13.3M steps "
                                "(6.3x fewer; Figure 3)"))
    for name in ("BN-Baseline", "BN-x5", "BN-x30"):
        if name in table:
            out.append(_accuracy(table, name))
    if "BN-x30" in table and "BN-x5" in table:
        out.append(_accuracy(table, "BN-x30", "BN-x5"))
    out += [row for row in (_sigmoid(table), _high_lr(table), _saturation(table), _drift(table))
            if row]
    return out


# ----------------------------------------------------------------------------------- figures

def figures(doc: dict, workdir: pathlib.Path) -> list[pathlib.Path]:
    """Figure 2 of the paper, measured: test accuracy against steps for every variant (mean over
    seeds, ± 1 std band), the plain Inception's best accuracy as a line; beside it, Figure 3's
    first column: each variant's steps to reach that accuracy, per seed, on a log axis."""
    runs = doc["runs"]
    table = by_variant(runs)
    names = [n for n in ORDER if n in table] + sorted(set(table) - set(ORDER))
    fig = plotting.new_figure(13.0, 5.6)
    ax, bars = fig.subplots(1, 2, width_ratios=[1.8, 1])
    handles = []
    for name in names:
        color = COLORS.get(name, "0.3")
        if not plotting.mean_band(ax, list(table[name].values()), "test_accuracy", color,
                                  linewidth=1.8, zorder=3):
            continue
        handles.append(Line2D([], [], color=color, linewidth=2,
                              label=f"{name} ({len(table[name])} seeds)"))
    inc = [best(r) for r in table.get("Inception", {}).values() if best(r) is not None]
    if inc:
        ax.axhline(float(np.mean(inc)), color="0.3", linestyle=":", linewidth=1.2)
        handles.append(Line2D([], [], color="0.3", linestyle=":",
                              label="Inception's best (mean over seeds)"))
    ax.set_ylim(0.0, 1.005)
    plotting.style_step_axes(ax, "training step", "test accuracy")
    ax.set_title("Figure 2, measured: test accuracy during training", fontsize=10)

    reach = [(n, steps_to_inception_best(table, n)) for n in names]
    reach = [(n, d) for n, d in reach if d]
    limit = max((runs_lib.cfg(r, "steps") for r in runs), default=0)
    for i, (name, d) in enumerate(reach):
        vals = np.asarray([d[s] for s in sorted(d)], float)
        ok = vals <= limit
        # Seeds side by side (equal step counts would hide each other).
        rows = i + 0.5 * (np.arange(len(vals)) - (len(vals) - 1) / 2) / max(len(vals), 2)
        bars.barh(i, np.exp(np.mean(np.log(vals))), color=COLORS.get(name, "0.3"), alpha=0.5)
        bars.scatter(vals[ok], rows[ok], color="k", s=10, zorder=3)
        bars.scatter(np.full((~ok).sum(), limit), rows[~ok], marker=">", color="k", s=16,
                     zorder=3)
    if reach:
        bars.set_yticks(range(len(reach)), [n for n, _ in reach])
        bars.invert_yaxis()
        bars.set_xscale("log")
        low = min(min(d.values()) for _, d in reach)
        ticks = [t for t in (10, 20, 30, 50, 100, 200, 300, 500, 1000, 2000, 3000, 5000, 10000)
                 if low / 2 <= t <= 1.5 * limit]
        bars.set_xticks(ticks, [plotting.fmt_steps(t) for t in ticks])
        bars.xaxis.set_minor_formatter(NullFormatter())
        bars.set_xlim(low / 1.5, limit * 1.25)
        bars.axvline(limit, color="0.5", linewidth=0.8)
    else:
        plotting.blank_no_data(bars, "no variant has an Inception run to compare with")
    plotting.style_plain_axes(bars, "steps to reach the same seed's Inception best (log)", "")
    bars.set_title("Figure 3, measured: steps to Inception's best\n(bar: geometric mean; dots: "
                   "seeds; ▶: not reached)", fontsize=10)
    plotting.suptitle(fig, "The Inception variants of Ioffe & Szegedy (Sec. 4.2) at CPU scale\n"
                      f"{plotting.shared_config_line(runs)}")
    plotting.legend_below(fig, handles + [plotting.seed_band_handle()], max_cols=4)
    return [plotting.save_png(fig, pathlib.Path(workdir) / FIGURE)]


register(Experiment("inception_variants", claims=claims, figures=figures))

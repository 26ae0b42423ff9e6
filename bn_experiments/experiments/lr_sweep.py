"""Learning-rate sweep: does BN "allow us to use much higher learning rates" (Ioffe & Szegedy
2015, abstract), and do large rates without BN fail the way Sec. 3.3 says, by growing the weights
until the model explodes?

`configs/lr_sweep.py`: the learning rate on a grid of steps of sqrt(2) across every arm's
stability edge x {no BN, BN} x {sigmoid, relu} x seeds, on the 3 x 100 MLP of Figure 1, each run
evaluated on a validation split held out of the training set. A run fails when it diverges or
ends at chance (`bn_experiments.sweep_outcomes`: best or final validation accuracy below 0.2); a
seed's largest trainable rate is the largest rate of the grid whose run does not fail. The sweep
probe (`bn_experiments.sweep_probes`) logs every hidden layer's weight norm at each evaluation.

Claims (rules in each row's evidence): the ratio of the largest trainable rates with and without
BN, per activation and paired by seed, with the grid's resolution beside it; the number of failed
rates without BN minus with BN; and Sec. 3.3's mechanism, how fast the weights grow with the
learning rate (the exponent k of growth ~ lr^k) without BN against with BN. Figures:

* `lr_sweep_accuracy.png` - best and final validation accuracy against the learning rate, failed
  seeds marked in a strip (diverged / at chance);
* `lr_sweep_weight_norms.png` - the largest hidden-layer weight norm over training, one line per
  learning rate around the edges, per activation and arm.
"""
from __future__ import annotations

import math
import pathlib

import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LogNorm
from matplotlib.lines import Line2D

from bn_experiments import runs as runs_lib
from bn_experiments import stats
from bn_experiments import sweep_outcomes as outcomes
from bn_experiments.experiments import Experiment, register
from bn_experiments.plotting import (
    NORM_LABELS,
    NORM_LONG_LABELS,
    fmt_num,
    legend_below,
    new_figure,
    note_no_data,
    save_png,
    suptitle,
)
from bn_experiments.plotting_sweeps import figures_vs_x, setup_line
from bn_experiments.sweep_probes import PROBE, weight_growth

ARMS = (runs_lib.NO_BN, runs_lib.BN)
PAPER_RATIO = 5.0  # BN-x5: the smallest learning-rate multiple the paper trains with BN (Sec. 4.2.2)
ACCURACY, WEIGHTS = "lr_sweep_accuracy.png", "lr_sweep_weight_norms.png"


# ------------------------------------------------------------------------------------ claims

def _per_seed(runs: list[dict], act, norm, seeds, fn) -> dict:
    return {s: fn(runs_lib.select(runs, model__activation=act, model__norm=norm, seed=s))
            for s in seeds}


def _edge_runs(runs: list[dict]) -> tuple[dict | None, dict | None]:
    """(the run at the largest trainable rate, the run at the next rate of the grid) of one arm
    and seed: the two sides of its stability edge (None where a side is missing)."""
    top = outcomes.largest_training(runs, "learning_rate")
    if top is None:
        return None, None
    ordered = sorted(runs, key=lambda r: runs_lib.cfg(r, "learning_rate"))
    ok = next(r for r in ordered if runs_lib.cfg(r, "learning_rate") == top)
    above = [r for r in ordered if runs_lib.cfg(r, "learning_rate") > top]
    return ok, (above[0] if above else None)


def _higher_lr(runs, acts, seeds, lrs) -> dict:
    need, parts, ivs, ratios, censored = stats.HEADLINE_SEEDS, [], [], [], []
    step, top = runs_lib.grid_step(lrs), max(lrs)
    per_seed: dict = {}
    for act in acts:
        bn, no = (_per_seed(runs, act, n, seeds, lambda rs: outcomes.largest_training(rs, "learning_rate"))
                  for n in (runs_lib.BN, runs_lib.NO_BN))
        log_ratio = {s: math.log10(bn[s] / no[s]) for s in seeds if bn[s] and no[s]}
        iv = stats.interval(log_ratio.values())
        for s in seeds:
            per_seed.setdefault(s, []).append(log_ratio.get(s))
        ivs.append(iv)
        ratios.append(10 ** iv.mean if iv.mean is not None else None)
        at_top = sum(v == top for v in bn.values() if v)
        censored.append(at_top)
        ratio = (f"ratio {10 ** iv.mean:.3g}x, 95% interval [{10 ** iv.low:.3g}x, {10 ** iv.high:.3g}x]"
                 if iv.low is not None else f"log10 ratio {stats.fmt(iv)}")
        parts.append(f"{act}: largest trainable rate with BN {stats.mean_std(bn.values(), 3)}, "
                     f"without {stats.mean_std(no.values(), 3)}; {ratio} (n={iv.n})"
                     + (f"; BN trained at the grid's largest rate in {at_top} seed(s), so its "
                        "ratio is a lower bound" if at_top else ""))
    verdict, _ = stats.verdict_over(ivs, min_seeds=need)
    if verdict == stats.REPRODUCED and any(r is not None and r < PAPER_RATIO for r in ratios):
        verdict = stats.PARTLY
    pooled = stats.interval(np.mean(v) if None not in v else None for v in per_seed.values())
    return runs_lib.row(
        "lr_sweep.bn_allows_higher_lr", "BN allows much higher learning rates",
        "IS abstract, Sec. 3.3, Sec. 4.2.2",
        "; ".join(parts) + f". Grid resolution: steps of {step:.3g}x, so a ratio is known to within "
        f"a factor {step:.3g}; a run fails when it diverges or ends below "
        f"{outcomes.CHANCE_LIMIT:g} validation accuracy" + stats.seeds_note(len(seeds), need),
        "BN-x5 and BN-x30 train Inception at 5x and 30x its learning rate; the same 5x rate drove "
        "plain Inception's parameters to machine infinity (Sec. 4.2.1-4.2.2)",
        verdict, ACCURACY,
        stats.evidence(pooled, stats.rule_over(
            "log10(largest trainable learning rate with BN / without); a rate is trainable when "
            "its run neither diverges nor ends at chance (best or final validation accuracy below "
            f"{outcomes.CHANCE_LIMIT:g})", "activation", expect_text="above zero", min_seeds=need)
            + f" A reproduced verdict whose ratio is below the paper's {PAPER_RATIO:g}x (BN-x5) "
            "becomes partly reproduced. Effect: the mean over seeds of the log10 ratio averaged "
            "over activations.", seeds=len(seeds)))


def _fewer_failures(runs, acts, seeds) -> dict:
    ivs, parts = [], []
    for act in acts:
        fail = {n: _per_seed(runs, act, n, seeds, lambda rs: float(sum(map(outcomes.fails, rs))))
                for n in (runs_lib.BN, runs_lib.NO_BN)}
        iv = stats.paired(fail[runs_lib.NO_BN], fail[runs_lib.BN])
        ivs.append(iv)
        tables = []
        for n in (runs_lib.NO_BN, runs_lib.BN):
            sub = runs_lib.select(runs, model__activation=act, model__norm=n)
            failing = [r for r in sub if outcomes.fails(r)]
            if not failing:
                tables.append(f"{NORM_LABELS[n]}: none")
                continue
            low = min(runs_lib.cfg(r, "learning_rate") for r in failing)
            tables.append(f"{NORM_LABELS[n]}: " + outcomes.fail_table(
                [r for r in sub if runs_lib.cfg(r, "learning_rate") >= low], "learning_rate",
                fmt=lambda v: f"{v:.3g}"))
        parts.append(f"{act}: failed rates per seed, no BN - BN {stats.fmt(iv)}; failed seeds "
                     f"from the first failing rate up ({'; '.join(tables)})")
    verdict, _ = stats.verdict_over(ivs)
    return runs_lib.row(
        "lr_sweep.bn_prevents_divergence",
        "BN keeps large learning rates from blowing up the model", "IS Sec. 3.3",
        "; ".join(parts),
        "without BN, large learning rates grow the parameters until the model explodes; BN makes "
        "back-propagation invariant to parameter scale (Sec. 3.3)",
        verdict, ACCURACY,
        stats.evidence_over(ivs, stats.rule_over(
            "number of grid learning rates whose run fails (diverges, or ends below "
            f"{outcomes.CHANCE_LIMIT:g} validation accuracy) without BN - with BN", "activation",
            expect_text="above zero"), seeds=len(seeds), over="activations"))


def growth_exponent(runs: list[dict]) -> float | None:
    """k in growth ~ lr^k: the least-squares slope of log10(weight growth) on log10(learning
    rate) over `runs` (one arm, one seed), every rate of the grid, failed ones included (their
    growth up to the failure); None with fewer than two rates measured."""
    pts = [(math.log10(runs_lib.cfg(r, "learning_rate")), math.log10(g)) for r in runs
           for g in [weight_growth(r)] if g]
    if len({x for x, _ in pts}) < 2:
        return None
    x, y = np.asarray(pts).T
    return float(np.polyfit(x, y, 1)[0])


def _weights_grow(runs, acts, seeds) -> dict:
    ivs, parts = [], []
    for act in acts:
        k = {n: _per_seed(runs, act, n, seeds, growth_exponent) for n in ARMS}
        iv = stats.paired(k[runs_lib.NO_BN], k[runs_lib.BN])
        ivs.append(iv)
        top = max(runs_lib.values(runs, "learning_rate"))
        at_top = {n: [weight_growth(r) for r in runs_lib.select(
            runs, model__activation=act, model__norm=n, learning_rate=top)] for n in ARMS}
        edge = {"ok": [], "bad": []}
        for s in seeds:
            ok, bad = _edge_runs(runs_lib.select(runs, model__activation=act,
                                                 model__norm=runs_lib.NO_BN, seed=s))
            if ok is not None and bad is not None:
                edge["ok"].append(weight_growth(ok))
                edge["bad"].append(weight_growth(bad))
        parts.append(
            f"{act}: exponent k of weight growth ~ lr^k, no BN "
            f"{stats.mean_std(k[runs_lib.NO_BN].values(), 3)}, BN {stats.mean_std(k[runs_lib.BN].values(), 3)}, "
            f"no BN - BN {stats.fmt(iv)}; growth at lr {top:g}: no BN "
            f"{stats.mean_std(at_top[runs_lib.NO_BN], 3)}x, BN {stats.mean_std(at_top[runs_lib.BN], 3)}x; "
            f"without BN at the largest trainable rate {stats.mean_std(edge['ok'], 3)}x, at the next "
            f"rate (which fails) {stats.mean_std(edge['bad'], 3)}x")
    verdict, _ = stats.verdict_over(ivs)
    return runs_lib.row(
        "lr_sweep.bn_stabilizes_weight_growth",
        "Large learning rates grow the weights; BN stabilizes that growth", "IS Sec. 3.3",
        "weight growth = the largest ||W_l(t)|| / ||W_l(0)|| over hidden layers and evaluations "
        "(before any divergence): " + "; ".join(parts),
        "large learning rates may increase the scale of layer parameters, which then amplify the "
        "gradient during back-propagation and lead to the model explosion; with BN, larger weights "
        "get smaller gradients and BN stabilizes the parameter growth (Sec. 3.3)",
        verdict, WEIGHTS,
        stats.evidence_over(ivs, stats.rule_over(
            "exponent k (least-squares slope of log10 weight growth on log10 learning rate over "
            "the grid, failed rates included) without BN - with BN", "activation",
            expect_text="above zero (the weights grow faster with the rate without BN)"),
            seeds=len(seeds), over="activations"))


def claims(runs: list[dict]) -> list[dict]:
    """Three rows (rules in each row's evidence): the ratio of the largest trainable rates
    (headline: 5 seeds; partly reproduced below the paper's 5x), failed rates without minus with
    BN, and the exponent of the weights' growth with the learning rate without minus with BN."""
    if runs_lib.arms(runs) is None or len(runs_lib.values(runs, "learning_rate")) < 2:
        return []
    lrs = runs_lib.values(runs, "learning_rate")
    seeds = sorted({runs_lib.cfg(r, "seed") for r in runs})
    acts = runs_lib.values(runs, "model.activation")
    return [_higher_lr(runs, acts, seeds, lrs), _fewer_failures(runs, acts, seeds),
            _weights_grow(runs, acts, seeds)]


# ----------------------------------------------------------------------------------- figures

def _growth_curve(runs: list[dict]):
    """(steps, geometric mean over seeds of the weight growth max_l ||W_l(t)|| / ||W_l(0)||), over
    the evaluations every seed reached; None without the curves."""
    per_seed = []
    for r in runs:
        cs = [r["curves"][k] for k in r["curves"] if k.startswith("probe_weight_norm_layer")]
        if not cs:
            continue
        vals = np.asarray([[np.nan if v is None else v for v in c["value"]] for c in cs], float)
        per_seed.append((np.asarray(cs[0]["step"], float), np.nanmax(vals / vals[:, :1], axis=0)))
    if not per_seed:
        return None
    n = min(len(s) for s, _ in per_seed)
    vals = np.asarray([v[:n] for _, v in per_seed])
    return per_seed[0][0][:n], np.exp(np.nanmean(np.log(vals), axis=0))


def _weights_figure(doc: dict, workdir: pathlib.Path) -> pathlib.Path | None:
    runs = doc["runs"]
    acts = runs_lib.values(runs, "model.activation")
    norms = [n for n in (runs_lib.NO_BN, runs_lib.BN) if runs_lib.select(runs, model__norm=n)]
    if not any(k.startswith("probe_weight_norm_layer") for r in runs for k in r["curves"]):
        return None
    lrs = runs_lib.values(runs, "learning_rate")
    cnorm = LogNorm(vmin=min(lrs), vmax=max(lrs))
    cmap = colormaps["viridis"]
    fig = new_figure(5.0 * len(norms) + 1.5, 3.6 * len(acts) + 1.6)
    axes = np.atleast_2d(fig.subplots(len(acts), len(norms), sharex=True, sharey=True, squeeze=False))
    for i, act in enumerate(acts):
        for j, norm in enumerate(norms):
            ax = axes[i, j]
            drawn = False
            for lr in lrs:
                rs = runs_lib.select(runs, model__activation=act, model__norm=norm, learning_rate=lr)
                c = _growth_curve(rs)
                if c is None:
                    continue
                bad = sum(map(outcomes.fails, rs))
                x = np.maximum(c[0], 1.0)
                ax.plot(x, c[1], color=cmap(cnorm(lr)), linewidth=1.5 if not bad else 1.1,
                        linestyle="-" if not bad else "--", zorder=3)
                if bad:
                    ax.plot(x[-1:], c[1][-1:], marker="x", color=cmap(cnorm(lr)), markersize=7,
                            markeredgewidth=2, linestyle="none", zorder=4)
                drawn = True
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.grid(True, which="major", alpha=0.3)
            ax.set_title(f"{act}, {NORM_LONG_LABELS.get(norm, norm)}", fontsize=10)
            if i == len(acts) - 1:
                ax.set_xlabel("training step (log; step 0 drawn at 1)")
            if j == 0:
                ax.set_ylabel("weight growth max_l ||W_l(t)|| / ||W_l(0)||\n(geometric mean over seeds)")
            if not drawn:
                note_no_data(ax, "no weight norms")
    cbar = fig.colorbar(ScalarMappable(norm=cnorm, cmap=cmap), ax=list(axes.ravel()), shrink=0.85, pad=0.02, label="learning rate")
    cbar.set_ticks([v for v in lrs if math.log2(v) == int(math.log2(v))] or lrs)
    cbar.set_ticklabels([fmt_num(v) for v in cbar.get_ticks()])
    legend_below(fig, [Line2D([], [], color="0.3", linewidth=1.5, label="every seed trains"),
                       Line2D([], [], color="0.3", linewidth=1.1, linestyle="--", marker="x",
                              markeredgewidth=2, label="some seed fails (diverged or at chance); "
                              "× at the last evaluation")])
    suptitle(fig, "Weight growth under large learning rates (Sec. 3.3): the largest growth of a "
                  "hidden layer's weight norm over training, one line per learning rate\n"
             + setup_line(runs, spread=False), 11)
    return save_png(fig, workdir / WEIGHTS)


def figures(doc: dict, workdir: pathlib.Path) -> list[pathlib.Path]:
    """`lr_sweep_accuracy.png` (best and final validation accuracy against the learning rate, failed
    seeds marked) and `lr_sweep_weight_norms.png` (weight norms over training per rate)."""
    workdir = pathlib.Path(workdir)
    written = figures_vs_x(doc, workdir, xkey="learning_rate", prefix="lr_sweep",
                           title="Learning-rate sweep", xlabel="learning rate (SGD)")
    swept = len(runs_lib.values(doc["runs"], "learning_rate")) > 1
    path = _weights_figure(doc, workdir) if swept else None
    return written + ([path] if path is not None else [])


register(Experiment("lr_sweep", claims=claims, figures=figures, probe=PROBE))

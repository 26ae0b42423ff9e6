"""Figure 1 of Ioffe & Szegedy (2015), Sec. 4.1: does BN make a sigmoid MLP train faster, reach a
higher accuracy, and keep the input to its sigmoids stable over training?

`configs/fig1_mnist.py` runs the paper's 3 x 100 sigmoid MLP on MNIST (batch 60, 50,000 SGD steps)
with and without BN on every hidden layer, the same learning rate and init for both (calibrated
on the paper's no-BN readings), over several seeds: runs are told apart by `model.norm` (arms) and
paired by `seed` (the same seed gives both arms the same initial weights and batch order), read
with `bn_experiments.runs`, whatever the runs are named. Evaluations at steps 0, 50, 100, 200, 500,
1,000 and then every 500 resolve the early phase, where BN's speed-up happens.

Claims (headline claims: a firm verdict needs `stats.HEADLINE_SEEDS` seeds; one seed is an
illustration and stays `inconclusive`), each rule in the row's evidence:

* `bn_trains_faster`: at each of 20 pre-declared test accuracies (`_fig1_measures.TARGETS`,
  0.59 to 0.97), the paired log2 ratio of steps to reach it (without / with BN); the verdict
  counts the targets whose 95% interval over seeds lies above / below zero (`stats.verdict_over`).
  A target one arm never reaches counts as reached at the end of training (a bound that
  understates the gap); targets neither arm reaches in any seed are out of range. Effect: each
  seed's mean over the targets every seed has, with its interval over seeds.
* `bn_higher_accuracy`: the paired difference (BN - no BN) of the mean test accuracy over the
  last 10% of training.
* `bn_stabilizes_sigmoid_input`: the probe (`_fig1_measures`) measures, for all units of the last
  hidden layer, training-mode percentiles pooled over 10 batches of 60 at every evaluation: how
  far each unit's median moved since the previous evaluation, in units of its 15-85 band, and how
  much the band changed. Per run, the mean over the evaluations after the initial transient; the
  paired log2 ratio (without / with BN) of each measure; reproduced when both intervals lie above
  zero (the transient is reported beside it). The paper's shapes (one unit's median swinging to
  about +1 early without BN, BN's band widening slowly) are compared in the measured text.

Figures (`_fig1_figures`): `fig1a_test_accuracy.png` (seed bands, the paper's read-off points,
the early phase on a log-step axis), `fig1bc_percentiles.png` (one seed's tracked unit as the
paper draws it), `fig1_input_shift.png` (the probe's curves over training), `fig1_combined.png`.
"""
from __future__ import annotations

import numpy as np

from bn_experiments import runs as runs_lib
from bn_experiments import stats
from bn_experiments.experiments import Experiment, register
from bn_experiments.experiments import _fig1_measures as m
from bn_experiments.experiments._fig1_figures import (
    FIGURE_ACCURACY,
    FIGURE_SHIFT,
    figures,
)

SOURCE = "IS Sec. 4.1, Fig. 1(a)"
PAPER_FIG1A = ("Fig. 1(a), read off the plot: with BN ~0.953 at ~4K steps vs 0.71-0.79 without; "
               "0.966 vs 0.926 at 10K; 0.974 vs 0.963 at 20K; end ~0.982 vs ~0.972 (60K MNIST "
               "images)")
PAPER_FIG1BC = ("Fig. 1(b,c), one typical sigmoid of the last hidden layer during training: "
                "without BN the median swings to about +1.0 early and drifts; with BN it stays near "
                "0 and the 15-85 band widens slowly (-1.2..+1.3 to -1.9..+2.0)")
SHOWN_TARGETS = (0.69, 0.79, 0.89, 0.95)  # the targets whose intervals the measured text lists


def _seeds(runs: list[dict]):
    """(BN runs by seed, no-BN runs by seed, paired seeds), or None without both arms."""
    pair = runs_lib.arms(runs)
    if pair is None:
        return None
    bn, no = pair
    return bn, no, sorted(set(bn) & set(no))


def _factor(iv: stats.Interval) -> str:
    """' (2^1.6 = 3x fewer steps)' for a mean log2 ratio."""
    return "" if iv.mean is None else f" (2^{iv.mean:.2g} = {2 ** iv.mean:.2g}x fewer steps)"


def trains_faster(bn: dict, no: dict, seeds: list, experiment: str) -> dict:
    """The paired log2 speed-up at each pre-declared target, counted over the targets."""
    need = stats.HEADLINE_SEEDS
    values = {t: {s: m.log2_speedup(bn[s], no[s], t) for s in seeds} for t in m.TARGETS}
    in_range = [t for t in m.TARGETS if any(v is not None for v, _ in values[t].values())]
    per_target = {t: stats.interval(v for v, _ in values[t].values()) for t in in_range}
    verdict, counts = stats.verdict_over(per_target.values(), min_seeds=need)
    common = [t for t in in_range if all(values[t][s][0] is not None for s in seeds)]
    pooled = stats.interval(np.mean([values[t][s][0] for t in common]) if common else None
                            for s in seeds)
    bounds = sum(b for t in in_range for v, b in values[t].values() if v is not None)
    total = sum(v is not None for t in in_range for v, _ in values[t].values())
    shown = "; ".join(f"{t:g}: {stats.fmt(per_target[t])}" for t in SHOWN_TARGETS if t in per_target)
    measured = (
        f"{len(seeds)} paired seed(s); {len(in_range)} of {len(m.TARGETS)} targets "
        f"({m.TARGETS[0]:g}-{m.TARGETS[-1]:g} test accuracy) reached by an arm: BN significantly "
        f"sooner at {counts['agree']}, later at {counts['oppose']}, inside the noise at "
        f"{counts['noise']}, too few seeds at {counts['too_few_seeds']}; log2(steps without BN / "
        f"with BN), each seed's mean over the {len(common)} targets every seed has: "
        f"{stats.fmt(pooled)}{_factor(pooled)}; at {shown}; {bounds} of {total} values are "
        f"bounds (one arm never reached the target)"
        f"{stats.seeds_note(len(seeds), need)}")
    rule = stats.rule_over(
        "log2(steps to the target accuracy without BN / with BN), at 20 pre-declared targets "
        f"{m.TARGETS[0]:g} to {m.TARGETS[-1]:g}", "target", expect_text="above zero (BN sooner)",
        min_seeds=need)
    rule += (" A target one arm never reaches counts as reached at the end of training (a bound "
             "that understates the gap); targets neither arm reaches in any seed are left out. "
             "Effect and ci95: each seed's mean over the targets every seed has, t-interval over "
             "seeds.")
    return runs_lib.row(f"{experiment}.bn_trains_faster",
                        "BN reaches a given test accuracy in far fewer steps", SOURCE, measured,
                        PAPER_FIG1A, verdict, FIGURE_ACCURACY,
                        stats.evidence(pooled, rule, seeds=len(seeds)))


def higher_accuracy(bn: dict, no: dict, seeds: list, experiment: str) -> dict:
    """The paired difference of the late test accuracy (BN - no BN)."""
    need = stats.HEADLINE_SEEDS
    late = ({s: m.late_accuracy(bn[s]) for s in seeds}, {s: m.late_accuracy(no[s]) for s in seeds})
    iv = stats.paired(*late)
    pop = [bn[s]["final"].get("test_accuracy_population") for s in seeds]
    diverged = sum(r.get("diverged_at_step") is not None for d in (bn, no) for r in d.values())
    measured = (
        f"mean test accuracy over the last {m.LATE_SHARE:.0%} of training: BN "
        f"{stats.mean_std(late[0].values())}, no BN {stats.mean_std(late[1].values())}; paired "
        f"difference (BN - no BN) {stats.fmt(iv)}; BN with population statistics (Algorithm 2) "
        f"at the end {stats.mean_std(pop)}; paper's gap at the end ~+0.010"
        + (f"; {diverged} run(s) diverged (left out)" if diverged else "")
        + stats.seeds_note(len(seeds), need))
    rule = stats.rule_single(
        f"test accuracy with BN - without (mean over the evaluations of the last "
        f"{m.LATE_SHARE:.0%} of training)", expect_text="above zero", min_seeds=need)
    return runs_lib.row(f"{experiment}.bn_higher_accuracy", "BN reaches a higher test accuracy",
                        SOURCE, measured, PAPER_FIG1A, stats.verdict(iv, min_seeds=need),
                        FIGURE_ACCURACY, stats.evidence(iv, rule, seeds=len(seeds)))


def _shape_text(bn: dict, no: dict, seeds: list) -> str:
    """The paper's shapes against ours: the tracked unit's panel, and the levels over all units."""
    shapes = {arm: [m.tracked_shape(d[s]) for s in seeds] for arm, d in (("bn", bn), ("no", no))}
    shapes = {arm: [x for x in v if x is not None] for arm, v in shapes.items()}
    ms = lambda arm, key: stats.mean_std([x[key] for x in shapes[arm]], 2)
    band = lambda arm, when: f"{ms(arm, f'{when}_p15')}..{ms(arm, f'{when}_p85')}"

    def peak(arm):
        size = stats.mean_std([abs(x["peak"]) for x in shapes[arm]], 2)
        signs = " ".join("+" if x["peak"] >= 0 else "-" for x in shapes[arm])
        step = np.mean([x["peak_step"] for x in shapes[arm]])
        return f"{size} (signs {signs}; step ~{step:,.0f})"

    run0 = next(iter(bn.values()))
    units = runs_lib.cfg(run0, "model.tracked_units") or [0]
    text = ""
    if shapes["bn"] and shapes["no"]:
        text = (
            f" Paper's shapes, tracked unit {units[0]} (per-step training-batch percentiles "
            f"smoothed over {m.smooth_span(run0):,.0f} steps, mean ± sd over seeds): size of the "
            f"median's largest excursion from 0 in the first {m.EARLY_SHARE:.0%} of training, no BN "
            f"{peak('no')} (paper: about +1.0 early; a unit's sign is arbitrary), BN {peak('bn')} "
            f"(paper: near 0); p15..p85 from the start to the end, BN {band('bn', 'start')} to "
            f"{band('bn', 'end')} (paper: -1.2..+1.3 to -1.9..+2.0), no BN {band('no', 'start')} "
            f"to {band('no', 'end')}.")
    level = lambda d, key, where: stats.mean_std([m.probe_at(d[s], key, where) for s in seeds], 2)
    return text + (
        f" All units: mean |median| at the end, BN {level(bn, 'abs_median', 'end')}, no BN "
        f"{level(no, 'abs_median', 'end')}; mean 15-85 band width from the first evaluation to "
        f"the end, BN {level(bn, 'band_width', 'start')} to {level(bn, 'band_width', 'end')}, no "
        f"BN {level(no, 'band_width', 'start')} to {level(no, 'band_width', 'end')}.")


def stabilizes_input(bn: dict, no: dict, seeds: list, experiment: str) -> dict:
    """The paired log2 ratio (no BN / BN) of the probe's median shift and band change after the
    transient and in the second half of training; reproduced only when all four say BN's input
    moves less (a network without BN may move a lot early and little late: both are shown)."""
    need = stats.HEADLINE_SEEDS
    names = {"median_shift": "median shift (in 15-85 bands)", "band_change": "band change (relative)"}
    parts, transient, intervals = [], [], []
    for key, name in names.items():
        after = {arm: {s: m.window_mean(d[s], key, "after") for s in seeds}
                 for arm, d in (("bn", bn), ("no", no))}
        iv = stats.interval(m.log2_ratio(after["no"][s], after["bn"][s]) for s in seeds)
        intervals.append(iv)
        parts.append(f"{name} BN {stats.mean_std(after['bn'].values(), 3)}, no BN "
                     f"{stats.mean_std(after['no'].values(), 3)}, paired log2(no BN / BN) "
                     f"{stats.fmt(iv)}")
        late = stats.interval(m.log2_ratio(m.window_mean(no[s], key, "late"),
                                           m.window_mean(bn[s], key, "late")) for s in seeds)
        intervals.append(late)
        parts[-1] += f"; in the second half of training {stats.fmt(late)}"
        early = stats.interval(m.log2_ratio(m.window_mean(no[s], key, "transient"),
                                            m.window_mean(bn[s], key, "transient")) for s in seeds)
        transient.append(f"{name.split(' (')[0]} {stats.fmt(early)}")
    verdict, _ = stats.verdict_over(intervals, min_seeds=need, share=1.0)
    run0 = next(iter(bn.values()))
    end = m.transient_end(run0)
    widths = runs_lib.cfg(run0, "model.widths")
    units = f"all {widths[-1]} units" if isinstance(widths, list) and widths else "all units"
    measured = (
        f"last hidden layer, {units}, training-mode p15/p50/p85 pooled over {m.PROBE_BATCHES} "
        f"batches of {m.PROBE_BATCH}, change between consecutive evaluations, mean over the "
        f"evaluations after the initial transient (steps > {end:,.0f}): " + "; ".join(parts)
        + f". Initial transient (evaluations at steps 1-{end:,.0f}), log2(no BN / BN): "
        + ", ".join(transient) + "." + _shape_text(bn, no, seeds) + stats.seeds_note(len(seeds), need))
    rule = stats.rule_over(
        "log2(mean shift without BN / with BN) of each run's input to the last hidden layer's "
        f"sigmoids between evaluations, after the initial transient (the first "
        f"{m.TRANSIENT_FRACTION:.0%} of training) and, separately, in the second half of "
        "training", "measure and phase",
        expect_text="above zero (BN's input moves less)", min_seeds=need, share=1.0)
    rule += (" The two measures: the shift of each unit's median in units of its 15-85 band, and "
             "the relative change of that band (mean over units).")
    return runs_lib.row(f"{experiment}.bn_stabilizes_sigmoid_input",
                        "BN keeps the distribution of a sigmoid's input stable over training",
                        "IS Sec. 4.1, Fig. 1(b,c)", measured, PAPER_FIG1BC, verdict, FIGURE_SHIFT,
                        stats.evidence_over(intervals, rule, seeds=len(seeds),
                                            over="measures and phases"))


def claims(runs: list[dict], *, experiment: str = "fig1") -> list[dict]:
    """Figure 1's three claims over the seeds present (arms by `model.norm`, paired by `seed`);
    none without both arms."""
    sel = _seeds(runs)
    if sel is None or not sel[2]:
        return []
    bn, no, seeds = sel
    bn, no = {s: bn[s] for s in seeds}, {s: no[s] for s in seeds}
    return [trains_faster(bn, no, seeds, experiment), higher_accuracy(bn, no, seeds, experiment),
            stabilizes_input(bn, no, seeds, experiment)]


register(Experiment("fig1", claims=claims, figures=figures, probe=m.PROBE))

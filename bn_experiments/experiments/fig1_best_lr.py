"""Figure 1's claims with each network at its own best learning rate (configs/fig1_best_lr.py).

Each network's best rate is the grid value with the highest validation accuracy at the end of
training (the mean over the last `LATE_SHARE` of evaluations, averaged over seeds; `best_rate`).
At those rates, paired by seed:

- "trains faster": for each target accuracy of a pre-declared range (`TARGETS`, capped at what
  every run of both arms reaches), log2 of (steps to target without BN) / (steps with BN), averaged
  over the targets per seed: one number per seed, with its t-interval over seeds;
- "higher accuracy": the paired difference of the late validation accuracy.

Picking the best of five rates on the same curves that are then compared favours both networks
alike (each gets its maximum); with 3 seeds and 10,000 validation images the selection noise is
well inside the intervals reported. Both claims are Ioffe & Szegedy (2015), Sec. 4.1.
"""
from __future__ import annotations

import pathlib

import numpy as np

from bn_experiments import plotting, stats
from bn_experiments import runs as runs_lib
from bn_experiments.experiments import Experiment, register
from bn_experiments.experiments import _fig1_measures as measures

LATE_SHARE = measures.LATE_SHARE
late_accuracy = measures.late_accuracy  # the same "late accuracy" as fig1's
TARGETS = tuple(np.round(np.arange(0.80, 0.981, 0.01), 2))
FIGURE = "fig1_best_lr.png"


def best_rate(runs: list[dict]) -> float | None:
    """The learning rate of `runs` (one arm) with the highest mean late accuracy over seeds."""
    scores = {}
    for lr in runs_lib.values(runs, "learning_rate"):
        accs = [late_accuracy(r) for r in runs_lib.select(runs, learning_rate=lr)]
        accs = [a for a in accs if a is not None]
        # A rate where some seed diverged cannot be "best": it is not reliably trainable.
        if accs and len(accs) == len(runs_lib.select(runs, learning_rate=lr)):
            scores[lr] = float(np.mean(accs))
    return max(scores, key=lambda lr: (scores[lr], -lr)) if scores else None


def targets(runs: list[dict]) -> list[float]:
    """The targets of TARGETS that every run in `runs` reaches."""
    top = min((max((v for v in runs_lib.curve(r, "test_accuracy")[1] if runs_lib.finite(v)),
                   default=0.0) for r in runs), default=0.0)
    return [t for t in TARGETS if t <= top]


def speedup(no: dict, bn: dict, ts: list[float]) -> float | None:
    """Mean over `ts` of log2(steps to t without BN / with BN) (`fig1`'s measure: step 0 counts
    as 1 step); None when some target is not reached by both."""
    logs = []
    for t in ts:
        value, bound = measures.log2_speedup(bn, no, t)
        if value is None or bound:
            return None
        logs.append(value)
    return float(np.mean(logs)) if logs else None


def _at_best(runs: list[dict]):
    no_runs = runs_lib.select(runs, model__norm=runs_lib.NO_BN)
    bn_runs = runs_lib.select(runs, model__norm=runs_lib.BN)
    lr_no, lr_bn = best_rate(no_runs), best_rate(bn_runs)
    if lr_no is None or lr_bn is None:
        return None
    no = runs_lib.by_seed(runs_lib.select(no_runs, learning_rate=lr_no))
    bn = runs_lib.by_seed(runs_lib.select(bn_runs, learning_rate=lr_bn))
    return lr_no, lr_bn, no, bn


def claims(runs: list[dict]) -> list[dict]:
    picked = _at_best(runs)
    source, figure = "IS Sec. 4.1", FIGURE
    if picked is None:
        return []
    lr_no, lr_bn, no, bn = picked
    seeds = sorted(set(no) & set(bn), key=repr)
    ts = targets([no[s] for s in seeds] + [bn[s] for s in seeds])
    grid = runs_lib.values(runs, "learning_rate")
    edge = [name for name, lr, norm in (("without BN", lr_no, runs_lib.NO_BN),
                                        ("with BN", lr_bn, runs_lib.BN))
            if len(own := runs_lib.values(runs_lib.select(runs, model__norm=norm),
                                          "learning_rate")) > 1 and lr in (own[0], own[-1])]
    rates = (f"best rates on the validation split: {lr_no:g} without BN, {lr_bn:g} with BN "
             f"(grid {', '.join(f'{v:g}' for v in grid)})"
             + (f" [at the grid's edge {' and '.join(edge)}: the best rate may lie beyond]"
                if edge else ""))
    speed = stats.interval(speedup(no[s], bn[s], ts) for s in seeds)
    v_speed = stats.verdict(speed) if ts else stats.INCONCLUSIVE
    acc = stats.paired({s: late_accuracy(bn[s]) for s in seeds},
                       {s: late_accuracy(no[s]) for s in seeds})
    note = stats.seeds_note(len(seeds), stats.MIN_SEEDS)
    return [
        runs_lib.row(
            "fig1_best_lr.faster_at_best_lr",
            "BN reaches a given accuracy in fewer steps, each network at its own best learning rate",
            source,
            f"{rates}; mean log2(steps without BN / steps with BN) over {len(ts)} targets "
            f"({ts[0]:.2f}-{ts[-1]:.2f}): {stats.fmt(speed)}, i.e. {2 ** speed.mean:.2f}x{note}"
            if ts and speed.mean is not None else f"{rates}; no target reached by every run",
            "Figure 1(a): with BN the network reaches its accuracy far sooner (one unstated "
            "learning rate for both)", v_speed, figure,
            stats.evidence(speed, stats.rule_single(
                "mean over the targets of log2(steps to target without BN / with BN), each network "
                "at the rate with its best mean late validation accuracy", expect_text="above 0"),
                seeds=len(seeds))),
        runs_lib.row(
            "fig1_best_lr.higher_accuracy_at_best_lr",
            "BN reaches a higher accuracy, each network at its own best learning rate",
            source,
            f"{rates}; late validation accuracy BN {stats.mean_std(late_accuracy(bn[s]) for s in seeds)}"
            f" vs no BN {stats.mean_std(late_accuracy(no[s]) for s in seeds)}; paired difference "
            f"{stats.fmt(acc)}{note}",
            "Figure 1(a): with BN the test accuracy ends higher", stats.verdict(acc), figure,
            stats.evidence(acc, stats.rule_single(
                f"late validation accuracy (mean over the last {LATE_SHARE:.0%} of evaluations) "
                "with BN minus without, each at its best rate", expect_text="above 0"),
                seeds=len(seeds))),
    ]


def figures(doc: dict, workdir: pathlib.Path) -> list[pathlib.Path]:
    runs = doc["runs"]
    fig = plotting.new_figure(12.5, 4.6)
    ax_lr, ax_curve = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    picked = _at_best(runs)
    for norm, color, label in ((runs_lib.NO_BN, plotting.NORM_COLORS["none"], "no BN"),
                               (runs_lib.BN, plotting.NORM_COLORS["batchnorm"], "BN")):
        arm = runs_lib.select(runs, model__norm=norm)
        lrs = runs_lib.values(arm, "learning_rate")
        accs = [[late_accuracy(r) for r in runs_lib.select(arm, learning_rate=lr)] for lr in lrs]
        mean = [np.mean([a for a in acc if a is not None]) if any(a is not None for a in acc)
                else np.nan for acc in accs]
        for lr, acc in zip(lrs, accs):
            ax_lr.scatter([lr] * len(acc), [a if a is not None else np.nan for a in acc],
                          color=color, s=12, alpha=0.5)
        ax_lr.plot(lrs, mean, "-o", color=color, label=label)
        if picked is not None:
            lr = picked[0] if norm == runs_lib.NO_BN else picked[1]
            group = list((picked[2] if norm == runs_lib.NO_BN else picked[3]).values())
            plotting.mean_band(ax_curve, group, "test_accuracy", color,
                               label=f"{label}, lr {lr:g}")
    ax_lr.set_xscale("log")
    plotting.style_plain_axes(ax_lr, "learning rate", "late validation accuracy")
    ax_lr.legend(loc="lower left", fontsize=9)
    ax_lr.set_title("each network's learning-rate curve (dots: seeds)", fontsize=10)
    ax_curve.set_xscale("symlog", linthresh=50)
    plotting.style_plain_axes(ax_curve, "training steps (log scale past 50)", "validation accuracy")
    ax_curve.set_ylim(0.0, 1.0)
    ax_curve.legend(loc="lower right", fontsize=9)
    ax_curve.set_title("each at its best rate: mean and seed band", fontsize=10)
    plotting.suptitle(fig, "Figure 1 with each network at its own best learning rate "
                           "(chosen on a validation split)")
    return [plotting.save_png(fig, workdir / FIGURE)]


register(Experiment("fig1_best_lr", claims=claims, figures=figures))

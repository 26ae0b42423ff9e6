"""Whitened inputs converge faster (LeCun et al. 1998; Wiesler & Ney 2011), the fact Ioffe &
Szegedy (2015, Sec. 2) start from: if whitening a network's inputs speeds training, normalizing
every layer's inputs should too (configs/input_whitening.py).

Arms: the input transform (`data.whiten`: raw pixels, per-pixel standardization, PCA and ZCA
whitening, all with statistics of the training split, bn_experiments/transforms.py) x BN or not.
A transform changes the scale of the first layer's inputs, so comparing at one learning rate
would measure the rate, not the transform: each arm runs at its own best rate from a grid
declared in advance (`best_rate`: the lowest mean over seeds of the convergence measure).

Convergence measure (`log_loss_area`): the mean over the run's recorded steps of log10 of the
training loss (the per-step mini-batch loss, as the trainer records it): lower is faster; it
weights the early phase, where the speed of convergence shows, as much as the end. Picking each
arm's best of four rates on the same seeds favours every arm alike.

Claims (paired by seed, each arm at its best rate):

1. `whitened_inputs_converge_faster` (no BN): log-loss area of raw inputs minus that of each
   transform (standardized, PCA, ZCA), one verdict over the three settings (`stats.verdict_over`).
2. `bn_reduces_the_benefit_of_whitening`: the benefit of ZCA whitening (raw minus ZCA) without
   BN minus with BN: BN normalizing every layer should leave less for input whitening to do.
"""
from __future__ import annotations

import pathlib

import matplotlib
import numpy as np
from matplotlib.lines import Line2D

from bn_experiments import plotting, stats
from bn_experiments import runs as runs_lib
from bn_experiments.experiments import Experiment, register

TRANSFORMS = ("none", "standardize", "pca", "zca")
LABELS = {"none": "raw pixels", "standardize": "standardized per pixel", "pca": "PCA-whitened",
          "zca": "ZCA-whitened"}
FIGURE = "input_whitening.png"


def log_loss_area(run: dict) -> float | None:
    """Mean over the recorded steps of log10(training loss); None for a diverged run."""
    if run.get("diverged_at_step") is not None:
        return None
    _, values = runs_lib.curve(run, "train_loss")
    vals = [v for v in values if runs_lib.finite(v) and v > 0]
    return float(np.mean(np.log10(vals))) if vals else None


def arm(runs: list[dict], whiten: str, norm: str) -> list[dict]:
    return [r for r in runs if r["config"].get("data.whiten", "none") == whiten
            and r["config"].get("model.norm") == norm]


def best_rate(runs: list[dict]) -> float | None:
    """The learning rate of one arm with the lowest mean log-loss area over seeds (a rate where
    some seed diverged is not a candidate)."""
    scores = {}
    for lr in runs_lib.values(runs, "learning_rate"):
        areas = [log_loss_area(r) for r in runs_lib.select(runs, learning_rate=lr)]
        if areas and all(a is not None for a in areas):
            scores[lr] = float(np.mean(areas))
    return min(scores, key=lambda lr: (scores[lr], lr)) if scores else None


def at_best(runs: list[dict], whiten: str, norm: str) -> tuple[float | None, dict[int, float]]:
    """(best rate, {seed: log-loss area at it}) of one arm."""
    runs = arm(runs, whiten, norm)
    lr = best_rate(runs)
    if lr is None:
        return None, {}
    return lr, {r["config"]["seed"]: a for r in runs_lib.select(runs, learning_rate=lr)
                if (a := log_loss_area(r)) is not None}


def _edge(lr, runs) -> str:
    rates = runs_lib.values(runs, "learning_rate")
    return " (at the grid's edge)" if rates and lr in (rates[0], rates[-1]) else ""


def claims(runs: list[dict]) -> list[dict]:
    out = []
    best = {(w, n): at_best(runs, w, n) for w in TRANSFORMS for n in (runs_lib.NO_BN, runs_lib.BN)}
    raw_lr, raw = best[("none", runs_lib.NO_BN)]
    settings = [w for w in TRANSFORMS[1:] if best[(w, runs_lib.NO_BN)][1]]
    if raw and settings:
        ivs = {w: stats.paired(raw, best[(w, runs_lib.NO_BN)][1]) for w in settings}
        verdict, _ = stats.verdict_over(ivs.values())
        rule = stats.rule_over("log-loss area (mean log10 training loss) of raw inputs minus that "
                               "of the transformed inputs, each arm at its own best rate",
                               "transform", expect_text="above zero (the transform converges faster)")
        measured = "; ".join(
            f"{LABELS[w]} (lr {best[(w, runs_lib.NO_BN)][0]:g}"
            f"{_edge(best[(w, runs_lib.NO_BN)][0], runs)}): {stats.fmt(ivs[w])}"
            for w in settings)
        out.append(runs_lib.row(
            "input_whitening.whitened_inputs_converge_faster",
            "Training converges faster when the network's inputs are whitened",
            "IS Sec. 2 (citing LeCun et al. 1998; Wiesler & Ney 2011)",
            f"without BN, raw pixels (lr {raw_lr:g}{_edge(raw_lr, runs)}) minus each transform, "
            f"in mean log10 training loss: {measured}",
            "It has long been known that the network training converges faster if its inputs "
            "are whitened (Sec. 2); no number given",
            verdict, FIGURE,
            stats.evidence_over(ivs.values(), rule, seeds=max(iv.n for iv in ivs.values()),
                                over="transforms")))
    raw_bn = best[("none", runs_lib.BN)][1]
    zca, zca_bn = best[("zca", runs_lib.NO_BN)][1], best[("zca", runs_lib.BN)][1]
    seeds = sorted(set(raw) & set(zca) & set(raw_bn) & set(zca_bn))
    if seeds:
        benefit = {s: raw[s] - zca[s] for s in seeds}
        benefit_bn = {s: raw_bn[s] - zca_bn[s] for s in seeds}
        iv = stats.paired(benefit, benefit_bn)
        out.append(runs_lib.row(
            "input_whitening.bn_reduces_the_benefit_of_whitening",
            "With BN normalizing every layer, whitening the inputs helps less",
            "IS Sec. 2",
            f"benefit of ZCA whitening (raw minus ZCA, mean log10 training loss): without BN "
            f"{stats.mean_std(benefit.values(), 3)}, with BN "
            f"{stats.mean_std(benefit_bn.values(), 3)}; paired difference {stats.fmt(iv)}",
            "BN is motivated as per-layer whitening: normalizing each layer's inputs takes a "
            "step towards the fixed input distributions that whitening gives (Sec. 2)",
            stats.verdict(iv), FIGURE,
            stats.evidence(iv, stats.rule_single(
                "benefit of ZCA (raw minus ZCA) without BN minus with BN",
                expect_text="above zero (whitening helps less with BN)"))))
    return out


def figures(doc: dict, workdir: pathlib.Path) -> list[pathlib.Path]:
    """Two panels (without / with BN): each transform's training loss over steps at its best
    rate, median over seeds with the min-max band; a third: log-loss area per arm and seed."""
    runs = doc["runs"]
    if not runs:
        return []
    fig = plotting.new_figure(15.0, 4.8)
    axes = fig.subplots(1, 3)
    colors = {w: matplotlib.colormaps["tab10"](i) for i, w in enumerate(TRANSFORMS)}
    for ax, norm in zip(axes[:2], (runs_lib.NO_BN, runs_lib.BN)):
        for w in TRANSFORMS:
            lr, _ = at_best(runs, w, norm)
            if lr is None:
                continue
            chosen = runs_lib.select(arm(runs, w, norm), learning_rate=lr)
            curves = [runs_lib.curve(r, "train_loss") for r in chosen]
            steps = np.asarray(curves[0][0])
            vals = np.array([[np.nan if v is None else v for v in c[1][:len(steps)]]
                             for c in curves if len(c[1]) >= len(steps)], float)
            # A 20-point running median keeps the mini-batch noise out of the way.
            k = max(1, len(steps) // 25)
            smooth = np.array([[np.nanmedian(v[max(0, i - k):i + 1]) for i in range(len(v))]
                               for v in vals])
            ax.plot(np.maximum(steps, 1), np.nanmedian(smooth, 0), color=colors[w],
                    label=f"{LABELS[w]} (lr {lr:g})")
            ax.fill_between(np.maximum(steps, 1), np.nanmin(smooth, 0), np.nanmax(smooth, 0),
                            color=colors[w], alpha=0.15, linewidth=0)
        ax.set_xscale("log")
        ax.set_yscale("log")
        plotting.style_plain_axes(ax, "training step", "training loss (running median)")
        ax.set_title(plotting.NORM_LONG_LABELS[norm] + ", each input at its best rate")
        ax.legend(fontsize=8, loc="lower left")
    ax = axes[2]
    for i, norm in enumerate((runs_lib.NO_BN, runs_lib.BN)):
        for j, w in enumerate(TRANSFORMS):
            _, areas = at_best(runs, w, norm)
            x = i * (len(TRANSFORMS) + 1) + j
            ax.scatter([x] * len(areas), list(areas.values()), color=colors[w], s=16, zorder=3)
    ax.set_xticks([1.5, 1.5 + len(TRANSFORMS) + 1], ["without BN", "with BN"])
    ax.set_ylabel("mean log10 training loss (lower: faster)")
    ax.set_title("convergence per arm (one dot per seed)")
    handles = [Line2D([], [], color=colors[w], marker="o", linestyle="", label=LABELS[w])
               for w in TRANSFORMS]
    seeds = len({r["config"]["seed"] for r in runs})
    plotting.suptitle(fig, "Whitened inputs and convergence (LeCun et al. 1998, cited by Ioffe & "
                      f"Szegedy Sec. 2)\n{plotting.shared_config_line(runs)}; {seeds} seeds")
    plotting.legend_below(fig, handles, max_cols=4)
    return [plotting.save_png(fig, pathlib.Path(workdir) / FIGURE)]


register(Experiment("input_whitening", claims=claims, figures=figures))

"""Where to normalize: before the nonlinearity (on W u + b) or after it (on the next layer's
input u) (Ioffe & Szegedy 2015, Sec. 3.2; configs/bn_position.py).

The paper normalizes x = W u + b and argues against normalizing the layer input u: u is the output
of another nonlinearity, so the shape of its distribution is likely to change during training and
fixing its first two moments would not remove the covariate shift, while W u + b is "more
Gaussian" (symmetric, non-sparse; the `wu_gaussian` experiment measures that part). This
experiment trains both placements (`model.bn_position`) and compares them.

Arms: bn_position in {before, after} x activation in {sigmoid, relu}, each at its own best
learning rate of a grid declared in the config (the lowest mean log-loss area over seeds, the
measure of `input_whitening`: the mean over recorded steps of log10 of the training loss), paired
by seed.

Claims:

1. `bn_before_nonlinearity_trains_faster`: log-loss area after minus before, one verdict over the
   two activations (`stats.verdict_over`).
2. `bn_before_nonlinearity_more_accurate`: late validation accuracy (mean over the last quarter of
   evaluations) before minus after, over the two activations.
"""
from __future__ import annotations

import pathlib

import matplotlib
import numpy as np
from matplotlib.lines import Line2D

from bn_experiments import plotting, stats
from bn_experiments import runs as runs_lib
from bn_experiments.experiments import Experiment, register
from bn_experiments.experiments.input_whitening import best_rate, log_loss_area

POSITIONS = ("before", "after")
ACTIVATIONS = ("sigmoid", "relu")
LATE_SHARE = 0.25
FIGURE = "bn_position.png"


def arm(runs: list[dict], position: str, activation: str) -> list[dict]:
    return [r for r in runs if r["config"].get("model.bn_position", "before") == position
            and r["config"].get("model.activation") == activation]


def late_accuracy(run: dict) -> float | None:
    """Mean test accuracy over the last quarter of the evaluations."""
    _, values = runs_lib.curve(run, "test_accuracy")
    vals = [v for v in values if runs_lib.finite(v)]
    if not vals or run.get("diverged_at_step") is not None:
        return None
    return float(np.mean(vals[-max(1, int(round(len(vals) * LATE_SHARE))):]))


def at_best(runs, position, activation, f) -> tuple[float | None, dict]:
    """(best rate of the arm, {seed: f(run)} at it)."""
    runs = arm(runs, position, activation)
    lr = best_rate(runs)
    if lr is None:
        return None, {}
    return lr, {r["config"]["seed"]: v for r in runs_lib.select(runs, learning_rate=lr)
                if (v := f(r)) is not None}


def _claim(runs, cid, claim, f, what, sign, expect) -> dict | None:
    ivs, texts = [], []
    for act in ACTIVATIONS:
        lr_b, before = at_best(runs, "before", act, f)
        lr_a, after = at_best(runs, "after", act, f)
        if not before or not after:
            continue
        iv = stats.paired(after, before) if sign < 0 else stats.paired(before, after)
        ivs.append(iv)
        texts.append(f"{act}: before (lr {lr_b:g}) {stats.mean_std(before.values(), 4)}, after "
                     f"(lr {lr_a:g}) {stats.mean_std(after.values(), 4)}, difference "
                     f"{stats.fmt(iv)}")
    if not ivs:
        return None
    verdict, _ = stats.verdict_over(ivs)
    rule = stats.rule_over(what, "activation", expect_text=expect)
    return runs_lib.row(
        f"bn_position.{cid}", claim, "IS Sec. 3.2", f"{what.split(',')[0]}: " + "; ".join(texts),
        "The paper normalizes x = Wu + b rather than the layer input u: u's distribution is "
        "likely to change shape in training, Wu + b is more Gaussian and normalizing it is "
        "likely to give activations with a stable distribution (Sec. 3.2); no measurement given",
        verdict, FIGURE, stats.evidence_over(ivs, rule, seeds=max(iv.n for iv in ivs),
                                             over="activations"))


def claims(runs: list[dict]) -> list[dict]:
    rows = [
        _claim(runs, "bn_before_nonlinearity_trains_faster",
               "BN before the nonlinearity (on Wu + b) trains faster than BN after it (on u)",
               log_loss_area, "log-loss area (mean log10 training loss), after minus before, "
               "each arm at its own best rate", -1, "above zero (before converges faster)"),
        _claim(runs, "bn_before_nonlinearity_more_accurate",
               "BN before the nonlinearity reaches a higher accuracy than BN after it",
               late_accuracy, "late validation accuracy, before minus after, each arm at its "
               "own best rate", +1, "above zero (before more accurate)"),
    ]
    return [r for r in rows if r is not None]


def figures(doc: dict, workdir: pathlib.Path) -> list[pathlib.Path]:
    """Per activation: the training loss (running median) and the validation accuracy of both
    placements at their best rates, median over seeds with the min-max band."""
    runs = doc["runs"]
    acts = [a for a in ACTIVATIONS if any(arm(runs, p, a) for p in POSITIONS)]
    if not acts:
        return []
    fig = plotting.new_figure(6.5 * len(acts), 8.0)
    axes = np.atleast_2d(fig.subplots(2, len(acts), squeeze=False))
    colors = {"before": plotting.RUN_COLORS["bn"], "after": matplotlib.colormaps["tab10"](1)}
    for j, act in enumerate(acts):
        for position in POSITIONS:
            lr, _ = at_best(runs, position, act, log_loss_area)
            if lr is None:
                continue
            chosen = runs_lib.select(arm(runs, position, act), learning_rate=lr)
            for ax, metric in ((axes[0][j], "train_loss"), (axes[1][j], "test_accuracy")):
                curves = [runs_lib.curve(r, metric) for r in chosen]
                steps = np.asarray(curves[0][0], float)
                vals = np.array([[np.nan if v is None else v for v in c[1][:len(steps)]]
                                 for c in curves if len(c[1]) >= len(steps)], float)
                if metric == "train_loss":
                    k = max(1, len(steps) // 25)
                    vals = np.array([[np.nanmedian(v[max(0, i - k):i + 1])
                                      for i in range(len(v))] for v in vals])
                ax.plot(np.maximum(steps, 1), np.nanmedian(vals, 0), color=colors[position],
                        label=f"BN {position} the nonlinearity (lr {lr:g})")
                ax.fill_between(np.maximum(steps, 1), np.nanmin(vals, 0), np.nanmax(vals, 0),
                                color=colors[position], alpha=0.15, linewidth=0)
        axes[0][j].set_xscale("log")
        axes[0][j].set_yscale("log")
        plotting.style_plain_axes(axes[0][j], "training step", "training loss (running median)")
        axes[0][j].set_title(f"{act}")
        axes[0][j].legend(fontsize=8, loc="lower left")
        plotting.style_step_axes(axes[1][j], "training step", "validation accuracy")
        lows = [np.nanmin(l.get_ydata()) for l in axes[1][j].get_lines()]
        if lows:
            axes[1][j].set_ylim(max(0.8, min(lows)), 1.0)
    seeds = len({r["config"]["seed"] for r in runs})
    handles = [Line2D([], [], color=colors[p], linewidth=2, label=f"BN {p} the nonlinearity")
               for p in POSITIONS]
    handles.append(plotting.seed_band_handle())
    handles[-1].set_label("min-max over seeds (line: median)")
    plotting.suptitle(fig, "Where to normalize (Ioffe & Szegedy, Sec. 3.2): Wu + b or u\n"
                      f"{plotting.shared_config_line(runs)}; {seeds} seeds, each arm at its best "
                      "rate")
    plotting.legend_below(fig, handles, max_cols=3)
    return [plotting.save_png(fig, pathlib.Path(workdir) / FIGURE)]


register(Experiment("bn_position", claims=claims, figures=figures))

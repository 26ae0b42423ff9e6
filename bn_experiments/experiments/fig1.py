"""Figure 1 of Ioffe & Szegedy (2015), Sec. 4.1: does BN make training faster and the input to a
nonlinearity more stable over training?

Two runs of `configs/fig1_mnist.py`, `no_bn` and `bn`: a 3 x 100 sigmoid MLP on MNIST, identical
but for BN on every hidden layer (batch 60, 50,000 SGD steps, lr 0.1, N(0, 0.1²) init). The
paper's Fig. 1(a) shows BN reaching a higher test accuracy sooner; Fig. 1(b, c) show the 15th,
50th and 85th percentiles of the input to one sigmoid of the last hidden layer drifting without BN
and staying put with it.

Figures:

* `fig1a_test_accuracy.png` - test accuracy against training steps, with and without BN (Fig. 1(a)).
* `fig1b_no_bn_percentiles.png`, `fig1c_bn_percentiles.png` - the 15th/50th/85th percentiles of the
  input to one sigmoid of the last hidden layer over training (Fig. 1(b, c)), on one shared y range.
  Per-step percentiles of the training batch are drawn light (a p15-p85 band and the p50 line,
  lightly smoothed); percentiles over the whole test set at each evaluation are drawn bold.
* `fig1_combined.png` - the three panels side by side.
"""
from __future__ import annotations

import math
import pathlib
import textwrap

import numpy as np

from bn_experiments import runs as runs_lib
from bn_experiments import stats
from bn_experiments.experiments import Experiment, register
from bn_experiments.plotting import (
    accuracy_ylim,
    blank_no_data,
    config_line,
    first_reach,
    new_figure,
    read_curve,
    run_color,
    run_label,
    save_png,
    step_range,
    style_step_axes,
)

PER_STEP_LABEL = "per-step, training batch of {batch}"
TEST_LABEL = "whole test set at evaluations"


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average that ignores NaNs (a point with no finite neighbour stays NaN)."""
    if window <= 1 or len(values) < 3:
        return values
    finite = np.isfinite(values)
    kernel = np.ones(window)
    total = np.convolve(np.where(finite, values, 0.0), kernel, mode="same")
    count = np.convolve(finite.astype(np.float64), kernel, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        out = total / count
    out[~finite] = np.nan  # keep the gaps (e.g. non-finite steps) visible
    return out


def _fig1_runs(doc: dict) -> list[dict]:
    """The runs in panel order: without BN first, then with BN, then anything else."""
    order = {"no_bn": 0, "bn": 1}
    return sorted(doc["runs"], key=lambda r: order.get(r["name"], 2))


def _draw_accuracy(ax, runs: list[dict], legend_size: float = 9) -> bool:
    """Fig. 1(a): test accuracy of each run, the step it first reaches the target in its label,
    divergence marked. False when no run has the curve."""
    curves, drawn = [], False
    targets = {r.get("config", {}).get("target_accuracy") for r in runs} - {None}
    target = min(targets) if targets else None
    for i, run in enumerate(runs):
        c = read_curve(run, "test_accuracy")
        if c is None:
            continue
        steps, values = c
        curves.append(c)
        label = run_label(run)
        if target is not None:
            hit = first_reach(steps, values, target)
            label += f" (≥ {target:g} at step {hit:,})" if hit is not None else f" (never ≥ {target:g})"
        color = run_color(run, i)
        ax.plot(steps, values, color=color, linewidth=1.8, label=label,
                marker="o" if len(steps) <= 25 else None, markersize=3.5)
        drawn = True
    if not drawn:
        return False
    low, high = accuracy_ylim(curves)
    ax.set_ylim(low, high)
    for i, run in enumerate(runs):
        div = run.get("diverged_at_step")
        if div is None:
            continue
        color = run_color(run, i)
        c = read_curve(run, "test_accuracy")
        y = low + 0.04 * (high - low)
        if c is not None:
            finite = np.isfinite(c[1])
            y = float(np.clip(c[1][finite][-1], low + 0.02 * (high - low), high))
        ax.axvline(div, color=color, linestyle=":", linewidth=1.2)
        ax.plot([div], [y], marker="X", markersize=10, color=color, linestyle="none",
                markeredgecolor="white", label=f"{run_label(run)} diverged at step {div:,}")
    if target is not None:
        ax.axhline(target, color="0.35", linestyle=":", linewidth=1.2, label=f"target accuracy {target:g}")
    if any((v[np.isfinite(v)] < low - 1e-3).any() for _, v in curves):
        ax.text(0.99, 0.01, f"values below {low:.2f} are off the axis", transform=ax.transAxes,
                ha="right", va="bottom", fontsize=7.5, color="0.45")
    ax.legend(loc="lower right" if low >= 0.3 else "best", fontsize=legend_size, framealpha=0.9,
              bbox_to_anchor=(1.0, 0.05) if low >= 0.3 else None)
    style_step_axes(ax, "training steps", "test accuracy")
    return True


def _percentile_data(run: dict) -> dict:
    """The per-step and test-set percentile curves of the shown unit (absent ones missing)."""
    out = {}
    for q in ("p15", "p50", "p85"):
        for prefix in ("preact_", "test_preact_"):
            c = read_curve(run, prefix + q)
            if c is not None:
                out[prefix + q] = c
    return out


def _smoothing_window(steps: np.ndarray) -> int:
    """A moving-average window of ~1/250 of the points: per-step percentiles of a batch of 60 are
    noisy, and unsmoothed they hide the drift Fig. 1(b, c) is about."""
    return max(1, int(round(len(steps) / 250)))


def _percentile_ylim(runs: list[dict]) -> tuple[float, float] | None:
    """One y range for all percentile panels, robust to a few huge values before a divergence."""
    lows, highs = [], []
    for run in runs:
        data = _percentile_data(run)
        for key, (steps, values) in data.items():
            if key.startswith("preact_"):
                values = _smooth(values, _smoothing_window(steps))
            finite = values[np.isfinite(values)]
            if finite.size == 0:
                continue
            if key.endswith("p15") or key.endswith("p50"):
                lows.append(np.percentile(finite, 0.5))
            if key.endswith("p85") or key.endswith("p50"):
                highs.append(np.percentile(finite, 99.5))
    if not lows and not highs:
        return None
    low = min(lows + highs + [0.0])
    high = max(lows + highs + [0.0])
    if high - low < 1e-6:
        low, high = low - 1.0, high + 1.0
    pad = 0.08 * (high - low)
    return low - pad, high + pad


def _unit_description(run: dict) -> str:
    """'input to sigmoid unit 0, last hidden layer (layer 3 of 3)': the unit Fig. 1(b, c) track."""
    cfg = run.get("config", {})
    units = cfg.get("model.tracked_units")
    unit = units[0] if isinstance(units, list) and units else None
    widths = cfg.get("model.widths")
    act = cfg.get("model.activation", "nonlinearity")
    layer = f"last hidden layer (layer {len(widths)} of {len(widths)})" if isinstance(widths, list) and widths \
        else "last hidden layer"
    return f"input to {act} unit {unit if unit is not None else '?'}, {layer}"


def _draw_percentiles(ax, run: dict, index: int, ylim, legend_size: float = 8.5) -> bool:
    """Fig. 1(b) or (c) for one run: per-step percentiles of the training batch (light, smoothed)
    and test-set percentiles at evaluations (bold), a legend below the axes. False: no curves."""
    data = _percentile_data(run)
    if not data:
        return False
    color = run_color(run, index)
    batch = run.get("config", {}).get("batch_size", "?")
    per_step = PER_STEP_LABEL.format(batch=batch)
    handles = []
    first = next((data[k][0] for k in ("preact_p50", "preact_p15", "preact_p85") if k in data), None)
    note = ""
    if first is not None and _smoothing_window(first) > 1 and len(first) > 1:
        span = int(round(_smoothing_window(first) * float(np.median(np.diff(first)))))
        note = f", smoothed over ~{span:,} steps"
    if "preact_p15" in data and "preact_p85" in data \
            and np.array_equal(data["preact_p15"][0], data["preact_p85"][0]):
        (s15, v15), (_, v85) = data["preact_p15"], data["preact_p85"]
        w = _smoothing_window(s15)
        handles.append(ax.fill_between(s15, _smooth(v15, w), _smooth(v85, w), color=color, alpha=0.2,
                                       linewidth=0, zorder=1, label=f"p15–p85 band, {per_step}{note}"))
    else:
        for key in ("preact_p15", "preact_p85"):
            if key in data:
                s, v = data[key]
                handles += ax.plot(s, _smooth(v, _smoothing_window(s)), color=color, alpha=0.6,
                                   linewidth=0.8, zorder=3, label=f"{key[-3:]}, {per_step}{note}")
    if "preact_p50" in data:
        s, v = data["preact_p50"]
        w = _smoothing_window(s)
        # Drawn above the bold test-set lines so it stays visible where the two agree.
        handles += ax.plot(s, _smooth(v, w), color=color, alpha=0.8, linewidth=0.9, zorder=3,
                           label=f"p50, {per_step}{note}")
    tails = [k for k in ("test_preact_p15", "test_preact_p85") if k in data]
    for n, key in enumerate(tails):
        s, v = data[key]
        line = ax.plot(s, v, color="black", alpha=0.8, linestyle="--", linewidth=2.0, zorder=2,
                       marker="o" if len(s) <= 25 else None, markersize=3.5,
                       label=("p15 / p85" if len(tails) == 2 else key[-3:]) + f", {TEST_LABEL}")
        if n == 0:
            handles += line
    if "test_preact_p50" in data:
        s, v = data["test_preact_p50"]
        handles += ax.plot(s, v, color="black", alpha=0.8, linewidth=2.6, zorder=2,
                           marker="o" if len(s) <= 25 else None, markersize=3.5,
                           label=f"p50, {TEST_LABEL}")
    ax.axhline(0.0, color="0.5", linewidth=0.7, zorder=0)
    div = run.get("diverged_at_step")
    if div is not None:
        handles.append(ax.axvline(div, color=color, linestyle=":", linewidth=1.4,
                                  label=f"diverged at step {div:,}"))
    if ylim is not None:
        ax.set_ylim(*ylim)
    # Below the axes, so the legend never hides the curves; one column, since two of these long
    # labels side by side are wider than the figure and would be cut at both edges.
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=1,
              fontsize=legend_size, frameon=False)
    act = run.get("config", {}).get("model.activation")
    style_step_axes(ax, "training steps", f"input to {act}" if act else "pre-activation")
    return True


def _percentile_title(run: dict, panel: str) -> str:
    """The title of panel (b) or (c): run, percentiles, and which unit."""
    return f"{panel} {run_label(run)}: 15/50/85th percentiles\n{_unit_description(run)}"


def figures(doc: dict, workdir: pathlib.Path) -> list[pathlib.Path]:
    """Figure 1(a, b, c) of Ioffe & Szegedy (2015) and a combined three-panel figure."""
    workdir = pathlib.Path(workdir)
    runs = _fig1_runs(doc)
    config = config_line(runs)
    xlim = step_range(runs)
    written = []

    def finish(fig, ax, title):
        fig.suptitle(title, fontsize=12)
        ax.set_title(textwrap.fill(config, 115), fontsize=8, color="0.3")
        if xlim is not None:
            ax.set_xlim(*xlim)

    fig = new_figure(7.5, 5.4)
    ax = fig.add_subplot()
    if _draw_accuracy(ax, runs, legend_size=9):
        finish(fig, ax, "(a) Test accuracy, with and without BN")
        written.append(save_png(fig, workdir / "fig1a_test_accuracy.png"))

    ylim = _percentile_ylim(runs)
    pct_runs = {r["name"]: (i, r) for i, r in enumerate(runs)}
    for name, panel, file in (("no_bn", "(b)", "fig1b_no_bn_percentiles.png"),
                              ("bn", "(c)", "fig1c_bn_percentiles.png")):
        if name not in pct_runs:
            continue
        i, run = pct_runs[name]
        fig = new_figure(7.5, 6.6)  # taller than (a): room for the one-column legend below
        ax = fig.add_subplot()
        if _draw_percentiles(ax, run, i, ylim):
            finish(fig, ax, _percentile_title(run, panel))
            written.append(save_png(fig, workdir / file))

    if written:
        fig = new_figure(19.5, 7.0)
        axes = fig.subplots(1, 3)
        if _draw_accuracy(axes[0], runs, legend_size=8):
            axes[0].set_title("(a) Test accuracy", fontsize=11)
        else:
            blank_no_data(axes[0], "no test_accuracy curve recorded")
        for ax, (name, panel) in zip(axes[1:], (("no_bn", "(b)"), ("bn", "(c)"))):
            if name in pct_runs and _draw_percentiles(ax, pct_runs[name][1], pct_runs[name][0], ylim,
                                                      legend_size=8):
                ax.set_title(_percentile_title(pct_runs[name][1], panel), fontsize=11)
            else:
                blank_no_data(ax, f"no percentile curves recorded for run {name!r}")
        if xlim is not None:
            for ax in axes:
                if ax.has_data():
                    ax.set_xlim(*xlim)
        fig.suptitle("Figure 1 reproduction (Ioffe & Szegedy 2015, Sec. 4.1)\n" + config, fontsize=11)
        written.append(save_png(fig, workdir / "fig1_combined.png"))
    return written


# ------------------------------------------------------------------------------------ claims

PAPER_FIG1A = ("Fig. 1(a), read off the plot: with BN ~0.953 at ~4K steps vs 0.71-0.79 without; "
               "0.966 vs 0.926 at 10K; end ~0.982 vs ~0.972 (60K MNIST images)")
PAPER_FIG1BC = ("Fig. 1(b,c): without BN the median swings to about +1.0 early and drifts; with BN "
                "it stays near 0 and the 15-85 band widens slowly (-1.2..+1.3 to -1.9..+2.0)")
# "BN reaches a target sooner" is measured at every target from 80% to 99% of the run pair's
# ceiling, so the verdict does not hang on one threshold.
FRACTIONS = tuple(round(0.80 + 0.01 * i, 2) for i in range(20))


def drift(run: dict, start_fraction: float = 0.05) -> float | None:
    """Drift of the tracked sigmoid inputs over training, on the whole test set.

    For each tracked unit, over the evaluations after the first `start_fraction` of the steps:
    (max - min of the median) + (max - min of the 15-85 band width), in the units of the
    nonlinearity's input; averaged over the tracked units. None when the run has no such curves.
    """
    units = runs_lib.cfg(run, "model.tracked_units") or [0]
    start = start_fraction * runs_lib.cfg(run, "steps", 0)
    out = []
    for i, u in enumerate(units):
        suffix = "" if i == 0 else f"_unit{u}"
        steps, p50 = runs_lib.curve(run, f"test_preact_p50{suffix}")
        p15, p85 = runs_lib.curve(run, f"test_preact_p15{suffix}")[1], runs_lib.curve(run, f"test_preact_p85{suffix}")[1]
        keep = [j for j, s in enumerate(steps) if s >= start and runs_lib.finite(p15[j]) and runs_lib.finite(p50[j])
                and runs_lib.finite(p85[j])]
        if len(keep) < 2:
            continue
        median = np.asarray([p50[j] for j in keep])
        band = np.asarray([p85[j] - p15[j] for j in keep])
        out.append(float(np.ptp(median) + np.ptp(band)))
    return float(np.mean(out)) if out else None


def late_accuracy(run: dict, share: float = 0.1) -> float | None:
    """Mean test accuracy over the evaluations of the last `share` of training (None if diverged)."""
    if run.get("diverged_at_step") is not None:
        return None
    steps, acc = runs_lib.curve(run, "test_accuracy")
    if not steps:
        return run["final"].get("test_accuracy")
    start = steps[-1] * (1 - share)
    vals = [a for s, a in zip(steps, acc) if s >= start and runs_lib.finite(a)]
    return float(np.mean(vals)) if vals else None


def speedup(bn: dict, no: dict, fraction: float) -> float | None:
    """log2(steps without BN / steps with BN) to reach `fraction` of the pair's ceiling (the lower
    of the two runs' best test accuracies, so both reach every target)."""
    best = [r["final"].get("max_test_accuracy") for r in (bn, no)]
    if not all(runs_lib.finite(b) for b in best):
        return None
    target = fraction * min(best)
    s_bn, s_no = (stats.first_reach(*runs_lib.curve(r, "test_accuracy"), target) for r in (bn, no))
    if s_bn is None or s_no is None:
        return None
    return math.log2(max(s_no, 1) / max(s_bn, 1))


def claims(runs: list[dict], *, experiment: str = "fig1", figure: str = "fig1a_test_accuracy.png") -> list[dict]:
    """Figure 1's claims over the seeds present (runs paired by seed, arms by `model.norm`).

    Headline claims: a firm verdict needs `stats.HEADLINE_SEEDS` seeds; one seed is an
    illustration. The rules, in each row's evidence: trains faster -- at each of 20 targets from
    80% to 99% of the pair's ceiling, the paired log2 ratio of steps (without / with BN), counted
    by `stats.verdict_over`; higher accuracy -- paired difference of the late test accuracy;
    stabilizes the sigmoid input -- paired difference of `drift` (without minus with BN).
    """
    pair = runs_lib.arms(runs)
    if pair is None:
        return []
    bn, no = pair
    seeds = sorted(set(bn) & set(no))
    need = stats.HEADLINE_SEEDS
    per_target = [stats.interval(speedup(bn[s], no[s], f) for s in seeds) for f in FRACTIONS]
    verdict, counts = stats.verdict_over(per_target, min_seeds=need)
    mean_speed = stats.interval(
        (np.mean(v) if all(runs_lib.finite(x) for x in v) else None)
        for v in ([speedup(bn[s], no[s], f) for f in FRACTIONS] for s in seeds))
    auc = stats.paired({s: bn[s]["final"].get("auc_test_accuracy") for s in seeds},
                       {s: no[s]["final"].get("auc_test_accuracy") for s in seeds})
    src = "IS Sec. 4.1, Fig. 1(a)"
    out = [runs_lib.row(
        f"{experiment}.bn_trains_faster", "BN reaches a given test accuracy in far fewer steps", src,
        f"{len(seeds)} seed(s); at {len(FRACTIONS)} targets from 80% to 99% of each pair's ceiling, "
        f"BN significantly sooner at {counts['agree']}, later at {counts['oppose']}, inside the "
        f"noise at {counts['noise']}, too few seeds at {counts['too_few_seeds']}; mean over targets "
        f"of log2(steps without BN / with BN): {stats.fmt(mean_speed)}; area under the test "
        f"accuracy curve, BN minus no BN: {stats.fmt(auc)}{stats.seeds_note(len(seeds), need)}",
        PAPER_FIG1A, verdict, figure,
        stats.evidence(mean_speed, stats.rule_over(
            "log2(steps to the target without BN / with BN)", "target",
            expect_text="above zero (BN sooner)", min_seeds=need), seeds=len(seeds)))]

    late = {s: late_accuracy(bn[s]) for s in seeds}, {s: late_accuracy(no[s]) for s in seeds}
    iv = stats.paired(*late)
    out.append(runs_lib.row(
        f"{experiment}.bn_higher_accuracy", "BN reaches a higher test accuracy", src,
        f"mean test accuracy over the last 10% of training: BN {stats.mean_std(late[0].values())}, "
        f"no BN {stats.mean_std(late[1].values())}; paired difference {stats.fmt(iv)}"
        f"{stats.seeds_note(len(seeds), need)}",
        PAPER_FIG1A, stats.verdict(iv, min_seeds=need),
        figure,
        stats.evidence(iv, stats.rule_single(
            "late test accuracy with BN - without (mean over the last 10% of evaluations)",
            expect_text="above zero", min_seeds=need), seeds=len(seeds))))

    d = {s: drift(bn[s]) for s in seeds}, {s: drift(no[s]) for s in seeds}
    iv = stats.paired(d[1], d[0])
    out.append(runs_lib.row(
        f"{experiment}.bn_stabilizes_sigmoid_input",
        "BN keeps the distribution of a sigmoid's input stable over training",
        "IS Sec. 4.1, Fig. 1(b,c)",
        f"drift of the tracked last-layer units' test-set median + 15-85 band after 5% of "
        f"training: BN {stats.mean_std(d[0].values())}, no BN {stats.mean_std(d[1].values())}; "
        f"paired difference (no BN - BN) {stats.fmt(iv)}{stats.seeds_note(len(seeds), need)}",
        PAPER_FIG1BC, stats.verdict(iv, min_seeds=need), figure,
        stats.evidence(iv, stats.rule_single(
            "drift without BN - drift with BN (range of the median plus range of the 15-85 band "
            "of the tracked units' test-set pre-activations after 5% of training)",
            expect_text="above zero (BN drifts less)", min_seeds=need), seeds=len(seeds))))
    return out


register(Experiment("fig1", claims=claims, figures=figures))

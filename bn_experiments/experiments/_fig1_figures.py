"""Figure 1's figures (Ioffe & Szegedy 2015, Sec. 4.1), drawn from summary.json alone.

* `fig1a_test_accuracy.png`: test accuracy with and without BN, the mean over seeds with a ± 1 std
  band, and the paper's values read off its Fig. 1(a) (FACTS.md) as open diamonds; left as the
  paper draws it (linear steps), right the early phase, where BN's speed-up happens, on a log-step
  axis.
* `fig1bc_percentiles.png`: Fig. 1(b, c) as the paper draws them: the 15th / 50th / 85th
  percentiles of the input to one sigmoid of the last hidden layer during training (the per-step
  training batch, smoothed; the raw band light), one seed, without and with BN side by side on one
  y range, with the paper's shapes marked (the no-BN median's early swing to about +1; BN's band
  at the start and the end).
* `fig1_input_shift.png`: the probe's curves (`_fig1_measures`) over all units of the last hidden
  layer, mean over seeds with a ± 1 std band: the median shift and the band change between
  evaluations (what the claim averages after the shaded initial transient), and the levels
  (mean |median|, mean band width).
* `fig1_combined.png`: (a), (b), (c) side by side, as the paper's Figure 1.
"""
from __future__ import annotations

import pathlib

import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, NullFormatter

from bn_experiments import runs as runs_lib
from bn_experiments.experiments import _fig1_measures as m
from bn_experiments.plotting import (
    NORM_COLORS,
    NORM_LONG_LABELS,
    accuracy_ylim,
    fmt_steps,
    legend_below,
    mean_curve,
    new_figure,
    note_no_data,
    read_curve,
    save_png,
    seed_band,
    seed_band_handle,
    shared_config_line,
    step_range,
    style_plain_axes,
    style_step_axes,
    suptitle,
)
from bn_experiments.plotting_sweeps import setup_line

FIGURE_ACCURACY = "fig1a_test_accuracy.png"
FIGURE_PERCENTILES = "fig1bc_percentiles.png"
FIGURE_SHIFT = "fig1_input_shift.png"
FIGURE_COMBINED = "fig1_combined.png"

# FACTS.md: Fig. 1(a) read off the paper's drawing, (step, low, high); "end" drawn at 50K.
PAPER_ACCURACY = {
    runs_lib.NO_BN: ((4000, 0.71, 0.79), (10000, 0.926, 0.926), (20000, 0.963, 0.963),
                     (40000, 0.972, 0.972), (50000, 0.972, 0.972)),
    runs_lib.BN: ((4000, 0.953, 0.953), (10000, 0.966, 0.966), (20000, 0.974, 0.974),
                  (40000, 0.980, 0.980), (50000, 0.982, 0.982)),
}
PAPER_NO_BN_PEAK = 1.0                                  # Fig. 1(b): the median's early swing
PAPER_BN_BAND = ((0, -1.2, 1.3), (50000, -1.9, 2.0))    # Fig. 1(c): p15..p85 at start and end
PAPER_COLOR = "0.25"
TRANSIENT_COLOR = "#f2ecd8"   # the initial transient's shading (not grey: seed bands are grey)
SHIFT_PANELS = (
    ("median_shift", "median shift since the previous\nevaluation (in 15-85 bands)", True),
    ("band_change", "relative change of the 15-85 band\nsince the previous evaluation", True),
    ("abs_median", "mean |median| over units\n(sigmoid input)", False),
    ("band_width", "mean 15-85 band width over units\n(sigmoid input)", False),
)


def _arms(runs: list[dict]) -> list[tuple[str, str, str, list[dict]]]:
    """(norm, label, colour, runs) of each arm present, without BN first."""
    out = []
    for norm in (runs_lib.NO_BN, runs_lib.BN):
        rs = runs_lib.select(runs, model__norm=norm)
        if rs:
            out.append((norm, NORM_LONG_LABELS[norm], NORM_COLORS[norm], rs))
    return out


def _band_handles(arms) -> list:
    """The legend entry of the seed bands, when an arm has more than one seed (else none)."""
    return [seed_band_handle()] if any(len(rs) > 1 for *_, rs in arms) else []


def _log_steps(ax, ylabel: str) -> None:
    """A log training-step axis with ticks as '1K'."""
    style_plain_axes(ax, "training steps (log scale)", ylabel)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(fmt_steps))
    ax.xaxis.set_minor_formatter(NullFormatter())


# ----------------------------------------------------------------------------- (a) accuracy

def _draw_accuracy(ax, arms, *, log: bool, top: float) -> list:
    """Mean ± std test accuracy per arm, diverged seeds as X, the paper's readings within the
    run's steps as open diamonds. Returns the legend handles (empty: nothing drawn)."""
    handles = []
    for norm, label, color, rs in arms:
        mc = mean_curve(rs, "test_accuracy")
        if mc is None:
            continue
        steps, mean, std, _ = mc
        keep = steps > 0 if log else np.ones(len(steps), bool)
        seed_band(ax, steps[keep], mean[keep], std[keep], color, alpha=0.22)
        handles += ax.plot(steps[keep], mean[keep], color=color, linewidth=1.8, zorder=3,
                           marker="o" if keep.sum() <= 40 or log else None, markersize=3,
                           label=f"{label}: mean over {len(rs)} seed{'s' * (len(rs) > 1)}")
        for r in rs:
            c, div = read_curve(r, "test_accuracy"), r.get("diverged_at_step")
            if div is not None and c is not None:
                ax.plot([div], [c[1][np.isfinite(c[1])][-1]], marker="X", markersize=9,
                        color=color, linestyle="none", markeredgecolor="white", zorder=5)
        pts = [p for p in PAPER_ACCURACY[norm] if p[0] <= top * 1.001]
        if pts:
            x = np.array([p[0] for p in pts], float)
            lo, hi = np.array([p[1] for p in pts]), np.array([p[2] for p in pts])
            handles.append(ax.errorbar(x, (lo + hi) / 2, yerr=(hi - lo) / 2, fmt="D", markersize=7,
                                       markerfacecolor="white", markeredgecolor=color,
                                       markeredgewidth=1.6, ecolor=color, capsize=4, zorder=6,
                                       label=f"{label}: paper's Fig. 1(a), read off"))
    if any(r.get("diverged_at_step") is not None for *_, rs in arms for r in rs):
        handles.append(Line2D([], [], marker="X", color="0.3", linestyle="none",
                              markeredgecolor="white", markersize=9, label="a seed diverged"))
    return handles


def _accuracy_axes(ax, arms, *, log: bool, top: float) -> list:
    """Draws (a) on `ax` (linear: like the paper; log: the early phase) and styles it."""
    handles = _draw_accuracy(ax, arms, log=log, top=top)
    if not handles:
        return []
    curves = [(mc[0], mc[1]) for *_, rs in arms for mc in [mean_curve(rs, "test_accuracy")] if mc]
    if log:
        _log_steps(ax, "test accuracy")
        low = min(float(np.nanmin(v[s > 0])) for s, v in curves if (s > 0).any()) \
            if any((s > 0).any() for s, _ in curves) else 0.0
        ax.set_ylim(max(0.0, np.floor((low - 0.03) * 20) / 20), 1.005)
    else:
        style_step_axes(ax, "training steps", "test accuracy")
        ax.set_ylim(*accuracy_ylim(curves))
    return handles


# -------------------------------------------------------------------------- (b, c) percentiles

def _shown_seed(arms):
    """The seed the percentile panels show: the smallest seed both arms have (else each arm's)."""
    seeds = [set(runs_lib.by_seed(rs)) for *_, rs in arms]
    common = sorted(set.intersection(*seeds), key=repr) if seeds else []
    return common[0] if common else None


def _panel_run(rs: list[dict], seed):
    by = runs_lib.by_seed(rs)
    return by.get(seed, by[min(by, key=repr)])


def _percentile_ylim(runs: list[dict]) -> tuple[float, float] | None:
    vals = []
    for run in runs:
        sp = m.smoothed_percentiles(run)
        if sp is not None:
            vals += [v[np.isfinite(v)] for v in sp[1].values()]
    vals = np.concatenate(vals) if vals else np.array([])
    if vals.size == 0:
        return None
    low = min(float(np.percentile(vals, 0.5)), min(b[1] for b in PAPER_BN_BAND))
    high = max(float(np.percentile(vals, 99.5)), max(b[2] for b in PAPER_BN_BAND))
    pad = 0.08 * (high - low)
    return low - pad, high + pad


def _draw_percentiles(ax, run: dict, norm: str, color: str, ylim) -> list:
    """One run's tracked unit: the raw per-step p15-p85 band (light) and the smoothed p15, p50,
    p85, with the paper's shape for this arm. Returns legend handles (empty: no curves)."""
    sp = m.smoothed_percentiles(run)
    if sp is None:
        return []
    steps, v = sp
    raw = [read_curve(run, f"preact_{q}") for q in ("p15", "p85")]
    if all(c is not None for c in raw) and np.array_equal(raw[0][0], raw[1][0]):
        ax.fill_between(raw[0][0], raw[0][1], raw[1][1], color=color, alpha=0.12, linewidth=0,
                        zorder=1)
    label = NORM_LONG_LABELS[norm]
    handles = ax.plot(steps, v["p50"], color=color, linewidth=2.0, zorder=3,
                      label=f"{label}: median (p50)")
    for q in ("p15", "p85"):
        line = ax.plot(steps, v[q], color=color, linewidth=1.1, linestyle="--", zorder=3,
                       label=f"{label}: p15 and p85")
    handles += line
    ax.axhline(0.0, color="0.6", linewidth=0.7, zorder=0)
    top = m.budget(run)
    if norm == runs_lib.NO_BN:
        handles.append(ax.axhline(PAPER_NO_BN_PEAK, color=PAPER_COLOR, linestyle=":", linewidth=1.3,
                                  label="paper (b): the no-BN median swings to about +1 early"))
    else:
        pts = [p for p in PAPER_BN_BAND if p[0] <= top * 1.001]
        if pts:
            xs = [p[0] for p in pts for _ in (1, 2)]
            ys = [y for p in pts for y in p[1:]]
            handles += ax.plot(xs, ys, linestyle="none", marker="D", markersize=7,
                               markerfacecolor="white", markeredgecolor=PAPER_COLOR, zorder=6,
                               label="paper (c): BN's p15 and p85 at the start and the end")
    if run.get("diverged_at_step") is not None:
        ax.axvline(run["diverged_at_step"], color=color, linestyle=":", linewidth=1.4)
    style_step_axes(ax, "training steps", "input to the sigmoid")
    if ylim is not None:
        ax.set_ylim(*ylim)
    return handles


def _percentile_title(panel: str, norm: str, run: dict) -> str:
    units = runs_lib.cfg(run, "model.tracked_units") or [0]
    return (f"{panel} {NORM_LONG_LABELS[norm]}, seed {runs_lib.cfg(run, 'seed', 0)}: unit "
            f"{units[0]} of the last hidden layer")


def _percentile_panels(axes, arms, seed) -> list:
    shown = {norm: (color, _panel_run(rs, seed)) for norm, _, color, rs in arms}
    ylim = _percentile_ylim([r for _, r in shown.values()])
    handles = []
    for ax, (norm, panel) in zip(axes, ((runs_lib.NO_BN, "(b)"), (runs_lib.BN, "(c)"))):
        drawn = norm in shown and _draw_percentiles(ax, shown[norm][1], norm, shown[norm][0], ylim)
        if drawn:
            handles += drawn
            ax.set_title(_percentile_title(panel, norm, shown[norm][1]), fontsize=10.5)
        else:
            note_no_data(ax, f"no percentile curves for {NORM_LONG_LABELS[norm].lower()}")
    return handles


def _raw_band_handle() -> Patch:
    return Patch(facecolor="0.85", label="p15-p85 of each training batch of "
                                                   f"{m.PROBE_BATCH}, unsmoothed")


# ------------------------------------------------------------------------------- probe curves

def _draw_probe(ax, arms, key: str, log: bool) -> bool:
    drawn = False
    for _, _, color, rs in arms:
        mc = mean_curve(rs, f"probe_{key}")
        if mc is None:
            continue
        steps, mean, std, _ = mc
        keep = (steps > 0) & np.isfinite(mean) & ((mean > 0) if log else True)
        if not keep.any():
            continue
        seed_band(ax, steps[keep], mean[keep], std[keep], color, log=log)
        ax.plot(steps[keep], mean[keep], color=color, linewidth=1.7, marker="o", markersize=2.5,
                zorder=3)
        drawn = True
    if drawn and log:
        ax.set_yscale("log")
    return drawn


def _shift_figure(runs, arms, setup: str) -> tuple | None:
    if not any(read_curve(r, "probe_median_shift") for r in runs):
        return None
    fig = new_figure(12.5, 8.6)
    axes = fig.subplots(2, 2, sharex=True).ravel()
    end = max(m.transient_end(r) for r in runs)
    first = min((s for r in runs for s in runs_lib.curve(r, "probe_median_shift")[0] if s > 0),
                default=None)
    for ax, (key, ylabel, log) in zip(axes, SHIFT_PANELS):
        if not _draw_probe(ax, arms, key, log):
            note_no_data(ax, f"no probe_{key} curve")
        _log_steps(ax, ylabel)
        if first is not None and end >= first:
            ax.axvspan(first * 0.9, end, color=TRANSIENT_COLOR, zorder=0)
    handles = [Line2D([], [], color=c, linewidth=1.7, marker="o", markersize=3, label=label)
               for _, label, c, _ in arms]
    handles += _band_handles(arms)
    if first is not None and end >= first:
        handles.append(Patch(facecolor=TRANSIENT_COLOR, label=f"initial transient (first "
                             f"{m.TRANSIENT_FRACTION:.0%} of training), reported apart"))
    legend_below(fig, handles, max_cols=4)
    suptitle(fig, "The input to the last hidden layer's sigmoids, all units: training-mode "
                  f"percentiles pooled over {m.PROBE_BATCHES} batches of {m.PROBE_BATCH}, "
                  "compared between consecutive evaluations\n" + setup, 10.5)
    return fig, FIGURE_SHIFT


# ------------------------------------------------------------------------------------ figures

def figures(doc: dict, workdir: pathlib.Path) -> list[pathlib.Path]:
    """The four figures of the module docstring (each only when its curves exist)."""
    workdir = pathlib.Path(workdir)
    runs = doc["runs"]
    arms = _arms(runs)
    if not arms:
        return []
    setup = setup_line(runs, 160)
    top = max(m.budget(r) for r in runs)
    xlim = step_range(runs)
    written = []

    fig = new_figure(13.5, 6.2)
    axes = fig.subplots(1, 2)
    handles = _accuracy_axes(axes[0], arms, log=False, top=top)
    if handles:
        _accuracy_axes(axes[1], arms, log=True, top=top)
        if xlim is not None:
            axes[0].set_xlim(*xlim)
        axes[0].set_title("as the paper draws it (linear steps)", fontsize=10.5)
        axes[1].set_title("the early phase (log steps; step 0 not shown)", fontsize=10.5)
        legend_below(fig, handles + _band_handles(arms), max_cols=3)
        suptitle(fig, "Figure 1(a): test accuracy with and without BN\n" + setup, 11)
        written.append(save_png(fig, workdir / FIGURE_ACCURACY))

    seed = _shown_seed(arms)
    one_seed = shared_config_line(runs) + "\n" + (
        f"one seed ({seed})" if seed is not None else "one seed per arm")
    fig = new_figure(13.5, 6.2)
    axes = fig.subplots(1, 2, sharey=True)
    handles = _percentile_panels(axes, arms, seed)
    if handles:
        for ax in axes:
            if xlim is not None:
                ax.set_xlim(*xlim)
        legend_below(fig, handles + [_raw_band_handle()], max_cols=3)
        suptitle(fig, "Figure 1(b, c): 15th, 50th and 85th percentiles of one sigmoid's input during "
                      f"training (each step's batch, smoothed over {m.smooth_span(runs[0]):,.0f} steps)\n"
                 + one_seed, 11)
        written.append(save_png(fig, workdir / FIGURE_PERCENTILES))
    else:
        fig.clear()

    shift = _shift_figure(runs, arms, setup)
    if shift is not None:
        written.append(save_png(shift[0], workdir / shift[1]))

    if written:
        fig = new_figure(20.0, 6.8)
        axes = fig.subplots(1, 3)
        handles = _accuracy_axes(axes[0], arms, log=False, top=top)
        if handles:
            axes[0].set_title("(a) test accuracy", fontsize=10.5)
        else:
            note_no_data(axes[0], "no test_accuracy curve")
        handles += _percentile_panels(axes[1:], arms, seed)
        for ax in axes:
            if xlim is not None and ax.has_data():
                ax.set_xlim(*xlim)
        legend_below(fig, handles + _band_handles(arms) + [_raw_band_handle()], max_cols=4)
        suptitle(fig, "Figure 1 reproduction (Ioffe & Szegedy 2015, Sec. 4.1)\n" + setup
                 + (f"; (b, c): one seed ({seed})" if seed is not None and _band_handles(arms) else ""),
                 11)
        written.append(save_png(fig, workdir / FIGURE_COMBINED))
    return written

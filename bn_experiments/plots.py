"""Figures regenerated from an experiment's `summary.json`, without retraining.

`plot(workdir)` reads `WORKDIR/summary.json` (through `summary.load`, so a file that breaks the
contract is refused) and writes PNG files beside it. Which figures are drawn depends on the
summary's "experiment" field: `PLOTTERS` maps an experiment name to its plotting function, and any
experiment not listed gets the generic test-accuracy plot. A later experiment (a sweep, say) adds
its own figures with

    @register("lr_sweep")
    def _plot_lr_sweep(doc: dict, workdir: pathlib.Path) -> list[pathlib.Path]: ...

For the Figure 1 experiment of Ioffe & Szegedy (2015), Sec. 4.1 ("fig1", runs "no_bn" and "bn"):

* `fig1a_test_accuracy.png` - test accuracy against training steps, with and without BN (Fig. 1(a)).
* `fig1b_no_bn_percentiles.png`, `fig1c_bn_percentiles.png` - the 15th/50th/85th percentiles of the
  input to one sigmoid of the last hidden layer over training (Fig. 1(b, c)), on one shared y range.
  Per-step percentiles of the training batch are drawn light (a p15-p85 band and the p50 line,
  lightly smoothed); percentiles over the whole test set at each evaluation are drawn bold.
* `fig1_combined.png` - the three panels side by side.

The sweeps (runs named `key=value,...`, one per grid point) group their runs by every swept key
except `seed` and show the mean ± std over seeds; diverged runs and targets never reached are drawn
as explicit markers ("x" / "never" / "div" / "—"), never as numbers:

* lr_sweep: `lr_sweep_accuracy.png` (max and final test accuracy against the learning rate, a line
  per activation x BN, a strip counting diverged seeds, the target line) and
  `lr_sweep_steps_to_target.png` (steps to the target accuracy, a "never" row on top).
* init_sweep: `init_sweep_accuracy.png`, `init_sweep_steps_to_target.png`, the same against the
  init std, a line per BN setting.
* activation_sweep: `activation_sweep_curves.png` (test accuracy over training, a panel per
  activation x depth), `activation_sweep_saturation.png` (mean fraction of |pre-activation| > 4
  per layer, sigmoid and tanh) and `activation_sweep_drift.png` (mean W1 drift per layer).
* lr_init_grid: `lr_init_grid_heatmap.png`, steps to target over init std (rows) x learning rate
  (columns), one heatmap per BN setting on a shared log color scale.
* fig1_seeds: `fig1_seeds_accuracy.png` (Fig. 1(a) over seeds) and `fig1_seeds_drift.png` (W1
  drift of each hidden layer's pre-activations over training).

Figures are built on `matplotlib.figure.Figure` with an Agg canvas, never through pyplot, so no
global figure state or backend choice leaks out of this module. Every PNG is rendered to bytes and
written with `summary.atomic_write`, so a reader never sees half a file. Missing curves are skipped;
a figure with nothing to draw is not written.
"""
from __future__ import annotations

import io
import math
import pathlib
import re
import textwrap
from typing import Callable, Iterable

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullLocator

from bn_experiments import summary

__all__ = ["PLOTTERS", "plot", "register"]

DPI = 150
RUN_LABELS = {"no_bn": "Without BN", "bn": "With BN"}
RUN_COLORS = {"no_bn": "#d1495b", "bn": "#00798c"}
OTHER_COLORS = ["#edae49", "#30638e", "#66a182", "#8d5a97", "#6f4e37", "#e07a5f", "#3d405b"]
PER_STEP_LABEL = "per-step, training batch of {batch}"
TEST_LABEL = "whole test set at evaluations"

Plotter = Callable[[dict, pathlib.Path], list[pathlib.Path]]

PLOTTERS: dict[str, Plotter] = {}
"""Experiment name -> function(doc, workdir) returning the PNG paths it wrote."""


def register(experiment: str) -> Callable[[Plotter], Plotter]:
    """Decorator: use the decorated function to draw the figures of `experiment`."""
    def wrap(fn: Plotter) -> Plotter:
        PLOTTERS[experiment] = fn
        return fn
    return wrap


def plot(workdir: str | pathlib.Path) -> list[pathlib.Path]:
    """Draws the figures of the experiment in `workdir` from its summary.json; returns the PNGs written."""
    workdir = pathlib.Path(workdir)
    doc = summary.load(workdir / "summary.json")
    return PLOTTERS.get(doc["experiment"], plot_generic)(doc, workdir)


# ---------------------------------------------------------------------------------------------
# Helpers


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: pathlib.Path) -> pathlib.Path:
    buf = io.BytesIO()
    # No "Software" metadata: the same summary gives the same bytes across matplotlib versions.
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    fig.clear()
    summary.atomic_write(path, buf.getvalue())
    return path


def _curve(run: dict, metric: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(steps, values) of a curve with nulls as NaN, or None when absent or without a finite value."""
    curve = run.get("curves", {}).get(metric)
    if not curve or not curve.get("step"):
        return None
    steps = np.asarray(curve["step"], dtype=np.float64)
    values = np.asarray([np.nan if v is None else v for v in curve["value"]], dtype=np.float64)
    if not np.isfinite(values).any():
        return None
    return steps, values


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


def _fmt_steps(x: float, _pos=None) -> str:
    if abs(x) >= 1000:
        return f"{x / 1000:g}K"
    return f"{x:g}"


def _fmt_num(x) -> str:
    if isinstance(x, bool) or x is None:
        return str(x)
    if isinstance(x, int):
        return f"{x:,}" if abs(x) >= 10000 else str(x)
    if isinstance(x, float):
        return f"{x:g}"
    if isinstance(x, (list, tuple)):
        return "-".join(_fmt_num(v) for v in x)
    return str(x)


def _run_label(run: dict) -> str:
    return RUN_LABELS.get(run["name"], run["name"])


def _run_color(run: dict, index: int) -> str:
    return RUN_COLORS.get(run["name"], OTHER_COLORS[index % len(OTHER_COLORS)])


def _config_value(runs: list[dict], key: str) -> str | None:
    """A config value shared by all runs, or 'a (run1) / b (run2)' when they differ; None if absent."""
    values = [(r, r.get("config", {}).get(key)) for r in runs]
    values = [(r, v) for r, v in values if v is not None]
    if not values:
        return None
    distinct = {repr(v) for _, v in values}
    if len(distinct) == 1:
        return _fmt_num(values[0][1])
    return " / ".join(f"{_fmt_num(v)} ({_run_label(r)})" for r, v in values)


# (config keys, formatter of their values) in the order _config_line names them; an entry is
# shown when any of its keys is set.
_CONFIG_LINE = (
    (("learning_rate",), lambda lr: f"lr {lr}"),
    (("optimizer.momentum",), lambda mom: f"momentum {mom}"),
    (("model.init", "model.init_std"),
     lambda init, std: " ".join(p for p in (f"{init} init" if init else "init",
                                            f"std {std}" if std is not None else "") if p)),
    (("batch_size",), lambda batch: f"batch {batch}"),
    (("steps",), lambda steps: f"{steps} steps"),
    (("model.activation", "model.widths"),
     lambda act, widths: " ".join(p for p in (f"{widths} MLP" if widths else "", act or "") if p)),
    (("data.source",), lambda data: f"data {data}"),
)


def _config_line(runs: list[dict]) -> str:
    """One line naming the settings the figure depends on: lr, init and std, batch, steps, activation."""
    parts = []
    for keys, fmt in _CONFIG_LINE:
        values = [_config_value(runs, k) for k in keys]
        if any(v is not None for v in values):
            parts.append(fmt(*values))
    return ", ".join(parts)


def _accuracy_ylim(curves: list[tuple[np.ndarray, np.ndarray]], default_low: float = 0.7) -> tuple[float, float]:
    """Like Fig. 1(a): from 0.7 (or lower when the curves settle lower) to 1.0.

    The first tenth of training (chance-level accuracy at step 0) does not pull the axis down.
    """
    late = []
    for steps, values in curves:
        cut = steps[0] + 0.1 * (steps[-1] - steps[0])
        sel = values[(steps >= cut) & np.isfinite(values)]
        if sel.size == 0:
            sel = values[np.isfinite(values)]
        late.append(sel)
    vals = np.concatenate(late) if late else np.array([])
    low = default_low
    if vals.size:
        low = min(default_low, math.floor((float(vals.min()) - 0.02) * 20) / 20)
    return max(0.0, low), 1.0 + 0.005


def _style_axes(ax, xlabel: str, ylabel: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, color="0.88", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.xaxis.set_major_formatter(FuncFormatter(_fmt_steps))
    ax.xaxis.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10], integer=True))
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _no_data(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _first_reach(steps: np.ndarray, values: np.ndarray, target: float) -> int | None:
    hit = np.nonzero(np.isfinite(values) & (values >= target))[0]
    return int(steps[hit[0]]) if hit.size else None


# ---------------------------------------------------------------------------------------------
# Figure 1 (Ioffe & Szegedy 2015, Sec. 4.1)


def _fig1_runs(doc: dict) -> list[dict]:
    """The runs in panel order: without BN first, then with BN, then anything else."""
    order = {"no_bn": 0, "bn": 1}
    return sorted(doc["runs"], key=lambda r: order.get(r["name"], 2))


def _draw_accuracy(ax, runs: list[dict], legend_size: float = 9) -> bool:
    curves, drawn = [], False
    targets = {r.get("config", {}).get("target_accuracy") for r in runs} - {None}
    target = min(targets) if targets else None
    for i, run in enumerate(runs):
        c = _curve(run, "test_accuracy")
        if c is None:
            continue
        steps, values = c
        curves.append(c)
        label = _run_label(run)
        if target is not None:
            hit = _first_reach(steps, values, target)
            label += f" (≥ {target:g} at step {hit:,})" if hit is not None else f" (never ≥ {target:g})"
        color = _run_color(run, i)
        ax.plot(steps, values, color=color, linewidth=1.8, label=label,
                marker="o" if len(steps) <= 25 else None, markersize=3.5)
        drawn = True
    if not drawn:
        return False
    low, high = _accuracy_ylim(curves)
    ax.set_ylim(low, high)
    for i, run in enumerate(runs):
        div = run.get("diverged_at_step")
        if div is None:
            continue
        color = _run_color(run, i)
        c = _curve(run, "test_accuracy")
        y = low + 0.04 * (high - low)
        if c is not None:
            finite = np.isfinite(c[1])
            y = float(np.clip(c[1][finite][-1], low + 0.02 * (high - low), high))
        ax.axvline(div, color=color, linestyle=":", linewidth=1.2)
        ax.plot([div], [y], marker="X", markersize=10, color=color, linestyle="none",
                markeredgecolor="white", label=f"{_run_label(run)} diverged at step {div:,}")
    if target is not None:
        ax.axhline(target, color="0.35", linestyle=":", linewidth=1.2, label=f"target accuracy {target:g}")
    if any((v[np.isfinite(v)] < low - 1e-3).any() for _, v in curves):
        ax.text(0.99, 0.01, f"values below {low:.2f} are off the axis", transform=ax.transAxes,
                ha="right", va="bottom", fontsize=7.5, color="0.45")
    ax.legend(loc="lower right" if low >= 0.3 else "best", fontsize=legend_size, framealpha=0.9,
              bbox_to_anchor=(1.0, 0.05) if low >= 0.3 else None)
    _style_axes(ax, "training steps", "test accuracy")
    return True


def _percentile_data(run: dict) -> dict:
    """The per-step and test-set percentile curves of the shown unit (absent ones missing)."""
    out = {}
    for q in ("p15", "p50", "p85"):
        for prefix in ("preact_", "test_preact_"):
            c = _curve(run, prefix + q)
            if c is not None:
                out[prefix + q] = c
    return out


def _smoothing_window(steps: np.ndarray) -> int:
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
    cfg = run.get("config", {})
    units = cfg.get("model.tracked_units")
    unit = units[0] if isinstance(units, list) and units else None
    widths = cfg.get("model.widths")
    act = cfg.get("model.activation", "nonlinearity")
    layer = f"last hidden layer (layer {len(widths)} of {len(widths)})" if isinstance(widths, list) and widths \
        else "last hidden layer"
    return f"input to {act} unit {unit if unit is not None else '?'}, {layer}"


def _draw_percentiles(ax, run: dict, index: int, ylim, legend_size: float = 8.5,
                      legend_cols: int = 2) -> bool:
    data = _percentile_data(run)
    if not data:
        return False
    color = _run_color(run, index)
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
    # Below the axes, so the legend never hides the curves.
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=legend_cols,
              fontsize=legend_size, frameon=False)
    _style_axes(ax, "training steps", f"input to {run.get('config', {}).get('model.activation', 'unit')}"
                if run.get("config", {}).get("model.activation") else "pre-activation")
    return True


def _percentile_title(run: dict, panel: str) -> str:
    return f"{panel} {_run_label(run)}: 15/50/85th percentiles\n{_unit_description(run)}"


def _step_range(runs: list[dict]) -> tuple[float, float] | None:
    """A common x range for all panels: step 0 to the configured (or last recorded) step."""
    top = 0.0
    for run in runs:
        steps = run.get("config", {}).get("steps")
        if isinstance(steps, (int, float)) and not isinstance(steps, bool):
            top = max(top, float(steps))
        for curve in run.get("curves", {}).values():
            if curve.get("step"):
                top = max(top, float(curve["step"][-1]))
    return (-0.02 * top, 1.02 * top) if top > 0 else None


@register("fig1")
def plot_fig1(doc: dict, workdir: pathlib.Path) -> list[pathlib.Path]:
    """Figure 1(a, b, c) of Ioffe & Szegedy (2015) and a combined three-panel figure."""
    workdir = pathlib.Path(workdir)
    runs = _fig1_runs(doc)
    config = _config_line(runs)
    xlim = _step_range(runs)
    written = []

    def finish(fig, ax, title):
        fig.suptitle(title, fontsize=12)
        ax.set_title(textwrap.fill(config, 115), fontsize=8, color="0.3")
        if xlim is not None:
            ax.set_xlim(*xlim)

    fig = _new_figure(7.5, 5.4)
    ax = fig.add_subplot()
    if _draw_accuracy(ax, runs, legend_size=9):
        finish(fig, ax, "(a) Test accuracy, with and without BN")
        written.append(_save(fig, workdir / "fig1a_test_accuracy.png"))

    ylim = _percentile_ylim(runs)
    pct_runs = {r["name"]: (i, r) for i, r in enumerate(runs)}
    for name, panel, file in (("no_bn", "(b)", "fig1b_no_bn_percentiles.png"),
                              ("bn", "(c)", "fig1c_bn_percentiles.png")):
        if name not in pct_runs:
            continue
        i, run = pct_runs[name]
        fig = _new_figure(7.5, 6.0)
        ax = fig.add_subplot()
        if _draw_percentiles(ax, run, i, ylim):
            finish(fig, ax, _percentile_title(run, panel))
            written.append(_save(fig, workdir / file))

    if written:
        fig = _new_figure(19.5, 7.0)
        axes = fig.subplots(1, 3)
        if _draw_accuracy(axes[0], runs, legend_size=8):
            axes[0].set_title("(a) Test accuracy", fontsize=11)
        else:
            _no_data(axes[0], "no test_accuracy curve recorded")
        for ax, (name, panel) in zip(axes[1:], (("no_bn", "(b)"), ("bn", "(c)"))):
            if name in pct_runs and _draw_percentiles(ax, pct_runs[name][1], pct_runs[name][0], ylim,
                                                      legend_size=8, legend_cols=1):
                ax.set_title(_percentile_title(pct_runs[name][1], panel), fontsize=11)
            else:
                _no_data(ax, f"no percentile curves recorded for run {name!r}")
        if xlim is not None:
            for ax in axes:
                if ax.has_data():
                    ax.set_xlim(*xlim)
        fig.suptitle("Figure 1 reproduction (Ioffe & Szegedy 2015, Sec. 4.1)\n" + config, fontsize=11)
        written.append(_save(fig, workdir / "fig1_combined.png"))
    return written


# ---------------------------------------------------------------------------------------------
# Any other experiment


def plot_generic(doc: dict, workdir: pathlib.Path) -> list[pathlib.Path]:
    """`test_accuracy.png`: every run's test accuracy against training steps."""
    workdir = pathlib.Path(workdir)
    runs = doc["runs"]
    fig = _new_figure(8.0, 5.2)
    ax = fig.add_subplot()
    curves = []
    for i, run in enumerate(runs):
        c = _curve(run, "test_accuracy")
        if c is None:
            continue
        curves.append(c)
        label = run["name"]
        if run.get("diverged_at_step") is not None:
            label += f" (diverged at step {run['diverged_at_step']:,})"
        color = RUN_COLORS.get(run["name"]) if run["name"] in RUN_COLORS else f"C{i % 10}"
        ax.plot(c[0], c[1], color=color, linewidth=1.6, label=label,
                marker="o" if len(c[0]) <= 25 else None, markersize=3)
        div = run.get("diverged_at_step")
        if div is not None:
            finite = c[1][np.isfinite(c[1])]
            ax.plot([div], [finite[-1]], marker="X", markersize=9, color=color, linestyle="none",
                    markeredgecolor="white")
    if not curves:
        return []
    vals = np.concatenate([v[np.isfinite(v)] for _, v in curves])
    low = max(0.0, math.floor((float(vals.min()) - 0.01) * 20) / 20)
    ax.set_ylim(low, 1.005)
    _style_axes(ax, "training steps", "test accuracy")
    ncol = 1 if len(curves) <= 12 else 2
    ax.legend(fontsize=8 if len(curves) <= 12 else 6.5, ncol=ncol, framealpha=0.9,
              loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(f"{doc['experiment']}: test accuracy", fontsize=12)
    config = _config_line(runs) if len(runs) <= 3 else _shared_config_line(runs)
    if config:
        ax.set_title(textwrap.fill(config, 115), fontsize=8, color="0.3")
    return [_save(fig, workdir / "test_accuracy.png")]


def _shared_config_line(runs: Iterable[dict]) -> str:
    """Config line restricted to settings all runs share (for experiments with many runs)."""
    runs = list(runs)
    shared = {}
    for key in runs[0].get("config", {}):
        vals = [r.get("config", {}).get(key) for r in runs]
        if all(repr(v) == repr(vals[0]) for v in vals):
            shared[key] = vals[0]
    return _config_line([{"name": "all", "config": shared}])


# ---------------------------------------------------------------------------------------------
# Sweeps: runs grouped by their swept settings, mean ± std over seeds
#
# A sweep's runs are named `key=value,key=value` in grid order; the swept keys are read from the
# config's `grid` when it is recorded, else from the run names, plus any key whose value differs
# between runs. Runs that differ only in `seed` are one point: the figures show the mean over those
# seeds with a ± 1 std band (sample std; 0 with one seed). Nulls, missing curves and diverged runs
# are skipped or drawn as explicit markers, never as zeros.

SEED_KEY = "seed"
NORM_LABELS = {"none": "no BN", "batchnorm": "BN"}
NORM_LONG_LABELS = {"none": "Without BN", "batchnorm": "With BN"}
NORM_COLORS = {"none": RUN_COLORS["no_bn"], "batchnorm": RUN_COLORS["bn"]}
LINE_STYLES = [("-", "o"), ("--", "s"), ("-.", "^"), (":", "D"), ((0, (5, 1, 1, 1)), "v")]
SATURATING = ("sigmoid", "tanh")
NEVER_COLOR, DIVERGED_COLOR = "0.88", "0.55"
_NAME_SPLIT = re.compile(r",(?=[A-Za-z_][A-Za-z0-9_.]*=)")
_LAYER_KEY = re.compile(r"layer(\d+)$")


def _hashable(value):
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    return value


def _cfg(run: dict, key: str):
    return _hashable(run.get("config", {}).get(key))


def _swept_keys(runs: list[dict]) -> list[str]:
    """The keys the sweep varies, in grid order (seed included when swept)."""
    cfg0 = runs[0].get("config", {})
    keys = []
    grid = cfg0.get("grid")
    if isinstance(grid, (list, tuple)):
        keys = [e[0] for e in grid if isinstance(e, (list, tuple)) and e and isinstance(e[0], str)]
    if not keys:
        for part in _NAME_SPLIT.split(runs[0]["name"]):
            key, sep, _ = part.partition("=")
            if sep and key in cfg0 and key not in keys:
                keys.append(key)
    all_keys = sorted(set().union(*(r.get("config", {}).keys() for r in runs)) - {"grid", "runs"})
    for key in all_keys:
        if key not in keys and len({repr(_cfg(r, key)) for r in runs}) > 1:
            keys.append(key)
    return keys


def _group(runs: list[dict], keys: list[str]) -> dict[tuple, list[dict]]:
    """Runs grouped by their values of `keys`, groups in order of first appearance (grid order)."""
    out: dict[tuple, list[dict]] = {}
    for run in runs:
        out.setdefault(tuple(_cfg(run, k) for k in keys), []).append(run)
    return out


def _seed_note(runs: list[dict], spread: bool = True) -> str:
    seeds = sorted({s for s in (_cfg(r, SEED_KEY) for r in runs) if s is not None},
                   key=lambda s: (0, s, "") if _is_number(s) else (1, 0, repr(s)))
    if len(seeds) > 1:
        return (f"mean{' ± std' if spread else ''} over {len(seeds)} seeds "
                f"({', '.join(_fmt_num(s) for s in seeds)})")
    return f"single seed ({_fmt_num(seeds[0])})" if seeds else "single seed"


def _setup_line(runs: list[dict], width: int = 150, spread: bool = True) -> str:
    """The settings all runs share (wrapped to `width`), then the seeds on a line of their own."""
    config = _shared_config_line(runs)
    return (textwrap.fill(config, width) + "\n" if config else "") + _seed_note(runs, spread)


def _suptitle(fig: Figure, text: str, fontsize: float = 11) -> None:
    """A figure title with each line wrapped to the figure's width, so none is cut off."""
    width = max(40, int(fig.get_figwidth() * 72 / (0.56 * fontsize)))
    fig.suptitle("\n".join(textwrap.fill(line, width) for line in text.split("\n")),
                 fontsize=fontsize)


def _legend_below(fig: Figure, handles: list, max_cols: int = 4) -> None:
    """One legend for the whole figure, under the panels (never over the title or the data), in as
    many columns (up to `max_cols`) as fit the figure's width."""
    longest = max([len(h.get_label()) for h in handles] + [1])
    fit = int(fig.get_figwidth() // (0.068 * (longest + 8)))
    ncol = max(1, min(len(handles), max_cols, fit))
    fig.legend(handles=handles, loc="outside lower center", ncol=ncol, fontsize=9, frameon=False,
               columnspacing=1.6, handlelength=2.6)


def _mean_std(values: Iterable) -> tuple[float, float, int]:
    """Mean, sample std (0 for one value) and count of the finite values; NaNs when none."""
    vals = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if vals.size == 0:
        return math.nan, math.nan, 0
    return float(vals.mean()), float(vals.std(ddof=1)) if vals.size > 1 else 0.0, int(vals.size)


def _diverged(run: dict) -> bool:
    return run.get("diverged_at_step") is not None or (run.get("final") or {}).get("diverged") == 1.0


def _final_number(run: dict, key: str) -> float | None:
    v = (run.get("final") or {}).get(key)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) \
        else None


def _max_accuracy(run: dict) -> float | None:
    v = _final_number(run, "max_test_accuracy")
    if v is None and "max_test_accuracy" not in (run.get("final") or {}):
        c = _curve(run, "test_accuracy")
        v = float(np.nanmax(c[1])) if c is not None else None
    return v


def _final_accuracy(run: dict) -> float | None:
    """Test accuracy at the end of training; None for a diverged run."""
    if _diverged(run):
        return None
    v = _final_number(run, "test_accuracy")
    if v is None and "test_accuracy" not in (run.get("final") or {}):
        c = _curve(run, "test_accuracy")
        if c is not None:
            v = float(c[1][np.isfinite(c[1])][-1])
    return v


def _target(runs: list[dict]) -> float | None:
    targets = {_cfg(r, "target_accuracy") for r in runs} - {None}
    return min(targets) if targets else None


def _steps_to_target(run: dict, target: float | None) -> float | None:
    """First evaluated step at or above the target (None: never), from `final` or the curve."""
    final = run.get("final") or {}
    if "steps_to_target" in final:
        return _final_number(run, "steps_to_target")
    c = _curve(run, "test_accuracy")
    if c is None or target is None:
        return None
    hit = _first_reach(c[0], c[1], target)
    return None if hit is None else float(hit)


def _max_steps(runs: list[dict]) -> float:
    top = [float(s) for s in (_cfg(r, "steps") for r in runs)
           if isinstance(s, (int, float)) and not isinstance(s, bool) and s > 0]
    return max(top) if top else 0.0


def _value_label(key: str, value) -> str:
    if key == "model.norm":
        return NORM_LABELS.get(value, f"norm {value}")
    if key == "model.activation":
        return str(value)
    if key == "model.widths":
        return _depth_label(value)
    return f"{key.rsplit('.', 1)[-1]} {_fmt_num(value)}"


def _depth_label(widths) -> str:
    if isinstance(widths, (list, tuple)) and widths:
        if len(set(widths)) == 1:
            return f"{len(widths)} hidden layer{'s' if len(widths) > 1 else ''} × {widths[0]}"
        return f"{len(widths)} hidden layers ({'-'.join(map(str, widths))})"
    return f"widths {widths}"


def _combo_label(keys: list[str], combo: tuple, long_norm: bool = False) -> str:
    parts = []
    for k, v in sorted(zip(keys, combo), key=lambda kv: kv[0] == "model.norm"):
        parts.append(NORM_LONG_LABELS.get(v, _value_label(k, v)) if long_norm and k == "model.norm"
                     else _value_label(k, v))
    return ", ".join(parts) if parts else "all runs"


def _line_styles(keys: list[str], combos: list[tuple]) -> dict[tuple, dict]:
    """Color by BN vs no BN (when swept), line style and marker by the remaining settings."""
    norm_at = keys.index("model.norm") if "model.norm" in keys else None
    rests: list[tuple] = []
    for combo in combos:
        rest = tuple(v for i, v in enumerate(combo) if i != norm_at)
        if rest not in rests:
            rests.append(rest)
    out = {}
    for n, combo in enumerate(combos):
        rest = tuple(v for i, v in enumerate(combo) if i != norm_at)
        r = rests.index(rest)
        if norm_at is not None and combo[norm_at] in NORM_COLORS:
            color = NORM_COLORS[combo[norm_at]]
            ls, marker = LINE_STYLES[r % len(LINE_STYLES)]
        else:
            color = OTHER_COLORS[n % len(OTHER_COLORS)]
            ls, marker = LINE_STYLES[0] if norm_at is None else LINE_STYLES[r % len(LINE_STYLES)]
        out[combo] = {"color": color, "linestyle": ls, "marker": marker}
    return out


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _set_value_axis(ax, values: list[float], log: bool) -> None:
    """An x axis whose ticks are exactly the swept values."""
    if log:
        ax.set_xscale("log")
        ax.xaxis.set_minor_locator(NullLocator())
        lo, hi = min(values), max(values)
        span = math.log10(hi / lo) if hi > lo else 1.0
        pad = 10 ** (0.06 * span + 0.05)
        ax.set_xlim(lo / pad, hi * pad)
    ax.set_xticks(values)
    ax.set_xticklabels([_fmt_num(v) for v in values])


def _plain_axes(ax, xlabel: str, ylabel: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, color="0.88", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _mean_curve(runs: list[dict], metric: str):
    """(steps, mean, std, count) over the runs' finite values at each step, or None."""
    table: dict[int, list[float]] = {}
    for run in runs:
        c = _curve(run, metric)
        if c is None:
            continue
        for s, v in zip(*c):
            if np.isfinite(v):
                table.setdefault(int(s), []).append(float(v))
    if not table:
        return None
    steps = np.asarray(sorted(table), dtype=np.float64)
    stats = [_mean_std(table[int(s)]) for s in steps]
    return steps, np.array([m for m, _, _ in stats]), np.array([s for _, s, _ in stats]), \
        np.array([n for _, _, n in stats])


def _band(ax, x, mean, std, color, log: bool = False, alpha: float = 0.16) -> None:
    x, mean, std = (np.asarray(a, dtype=np.float64) for a in (x, mean, std))
    ok = np.isfinite(mean) & np.isfinite(std)
    if not (ok & (std > 0)).any():
        return
    lo, hi = mean - std, mean + std
    if log:
        lo = np.maximum(lo, mean * 0.05)
    ax.fill_between(x, np.where(ok, lo, 0.0), np.where(ok, hi, 0.0), where=ok, color=color,
                    alpha=alpha, linewidth=0, zorder=1)


def _note(ax, text: str) -> None:
    """Says a panel has nothing to show (ticks untouched: they may be shared with other panels)."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.4")


def _proxy_band() -> Patch:
    return Patch(facecolor="0.6", alpha=0.35, label="± 1 std over seeds")


def _sweep_runs_or_none(doc: dict, needed: tuple[str, ...]) -> list[dict] | None:
    runs = doc["runs"]
    if not any(all(_is_number(_cfg(r, k)) for k in needed) for r in runs):
        return None
    return runs


# --- accuracy and steps to target against one swept number (learning rate, init std) ----------


def _points_by_x(runs: list[dict], xkey: str) -> list[tuple[float, list[dict]]]:
    pts: dict[float, list[dict]] = {}
    for run in runs:
        x = _cfg(run, xkey)
        if _is_number(x):
            pts.setdefault(float(x), []).append(run)
    return sorted(pts.items())


def _status_rows(rows: int, y0: float, gap: float) -> list[float]:
    """y of row j in a status strip (diverged / never) that starts at y0 and grows by `gap`."""
    return [y0 + (j + 0.5) * gap for j in range(rows)]


def _label_rows(ax, rows_y: list[float], labels: list[tuple[str, str]]) -> None:
    """Names the rows of a status strip just right of the axes (label, color per row); with too
    many rows to name legibly the rows keep the legend's order instead."""
    if len(rows_y) > 6:
        return
    for y, (label, color) in zip(rows_y, labels):
        ax.text(1.01, y, label, transform=ax.get_yaxis_transform(), ha="left", va="center",
                fontsize=7, color=color, clip_on=False)


def _draw_accuracy_vs_x(ax, lines, styles, xkey, value_fn, rows_y, show_counts) -> None:
    for j, (combo, runs) in enumerate(lines.items()):
        st = styles[combo]
        pts = _points_by_x(runs, xkey)
        xs = np.array([x for x, _ in pts])
        stats = [_mean_std(value_fn(r) for r in rs) for _, rs in pts]
        mean = np.array([m for m, _, _ in stats])
        std = np.array([s for _, s, _ in stats])
        _band(ax, xs, mean, std, st["color"])
        ax.plot(xs, mean, color=st["color"], linestyle=st["linestyle"], marker=st["marker"],
                markersize=5, linewidth=1.8, zorder=3)
        for x, rs in pts:
            k = sum(_diverged(r) for r in rs)
            if k:
                ax.plot([x], [rows_y[j]], marker="x", markersize=7, markeredgewidth=2,
                        color=st["color"], linestyle="none", zorder=4, clip_on=False)
                if show_counts:
                    ax.annotate(f"{k}/{len(rs)}", (x, rows_y[j]), xytext=(5, 0),
                                textcoords="offset points", va="center", fontsize=7,
                                color=st["color"])


def _plot_vs_x(doc: dict, workdir: pathlib.Path, *, xkey: str, prefix: str, title: str,
               xlabel: str) -> list[pathlib.Path]:
    runs = _sweep_runs_or_none(doc, (xkey,))
    if runs is None:
        return plot_generic(doc, workdir)
    keys = _swept_keys(runs)
    line_keys = [k for k in keys if k not in (xkey, SEED_KEY)]
    lines = _group(runs, line_keys)
    styles = _line_styles(line_keys, list(lines))
    xs = sorted({x for rs in lines.values() for x, _ in _points_by_x(rs, xkey)})
    if len(xs) < 2:  # not swept over x: nothing to draw against it
        return plot_generic(doc, workdir)
    log = all(x > 0 for x in xs)
    target = _target(runs)
    setup = _setup_line(runs)
    show_counts = any(len(rs) > 1 for rs in (g for line in lines.values()
                                             for _, g in _points_by_x(line, xkey)))
    any_div = any(_diverged(r) for r in runs)
    row_labels = [(_combo_label(line_keys, c), styles[c]["color"]) for c in lines]
    written = []

    line_handles = [Line2D([], [], label=_combo_label(line_keys, combo), markersize=5,
                           linewidth=1.8, **styles[combo]) for combo in lines]
    extra = []
    if show_counts:
        extra.append(_proxy_band())
    if target is not None:
        extra.append(Line2D([], [], color="0.35", linestyle=":", linewidth=1.2,
                            label=f"target accuracy {target:g}"))

    # Accuracy: max over training | final; a strip below 0 marks points where seeds diverged.
    gap = min(0.055, 0.3 / max(1, len(lines)))
    strip_top = -0.025
    n = len(lines)
    rows_y = _status_rows(n, strip_top - n * gap, gap)[::-1]
    bottom = strip_top - n * gap - 0.01
    fig = _new_figure(13.0, 5.8)
    axes = fig.subplots(1, 2, sharey=True)
    panels = (("max test accuracy during training", _max_accuracy),
              ("final test accuracy (diverged runs left out)", _final_accuracy))
    for ax, (name, fn) in zip(axes, panels):
        _draw_accuracy_vs_x(ax, lines, styles, xkey, fn, rows_y, show_counts)
        if target is not None:
            ax.axhline(target, color="0.35", linestyle=":", linewidth=1.2, zorder=2)
        if any_div:
            ax.axhspan(bottom, strip_top + 0.005, color="0.95", zorder=0, linewidth=0)
            ax.axhline(strip_top + 0.005, color="0.7", linewidth=0.8, zorder=0)
        _plain_axes(ax, xlabel, "")
        _set_value_axis(ax, xs, log)
        ax.set_title(name, fontsize=10.5)
    if any_div:
        _label_rows(axes[-1], rows_y, row_labels)
    ticks = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    if any_div:
        axes[0].set_ylim(bottom, 1.02)
        center = (bottom + strip_top) / 2
        axes[0].set_yticks(ticks + [center])
        axes[0].set_yticklabels([f"{t:g}" for t in ticks] + ["diverged"])
        extra.append(Line2D([], [], color="0.3", marker="x", markeredgewidth=2, linestyle="none",
                            label="seeds diverged" + (" (count / seeds)" if show_counts else "")))
    else:
        axes[0].set_ylim(0.0, 1.02)
        axes[0].set_yticks(ticks)
    axes[0].set_ylabel("test accuracy")
    _legend_below(fig, line_handles + extra)
    _suptitle(fig, f"{title}: test accuracy against {xlabel.split(' (')[0]}\n{setup}", fontsize=11)
    written.append(_save(fig, workdir / f"{prefix}_accuracy.png"))

    # Steps to target: mean ± std over the seeds that reached it; a "never" strip at the top.
    if target is not None:
        top = _max_steps(runs)
        reached_all = [s for r in runs for s in [_steps_to_target(r, target)] if s is not None]
        if top <= 0:
            top = max(reached_all) if reached_all else 1.0
        gap = 0.07 * top
        never_y0 = 1.06 * top
        rows_y = _status_rows(n, never_y0, gap)
        fig = _new_figure(10.5, 5.8)
        ax = fig.add_subplot()
        span = math.log10(max(xs) / min(xs)) if log and len(xs) > 1 else 1.0
        any_never = any_never_div = any_partial = False
        partial_at: dict[float, int] = {}
        for j, (combo, line_runs) in enumerate(lines.items()):
            st = styles[combo]
            shift = (j - (n - 1) / 2) * 0.012 * span
            pts = _points_by_x(line_runs, xkey)
            px, pm, ps = [], [], []
            for x, rs in pts:
                xd = x * 10 ** shift if log else x + shift * (max(xs) - min(xs) or 1.0)
                steps = [_steps_to_target(r, target) for r in rs]
                m, s, k = _mean_std(steps)
                px.append(xd)
                pm.append(m)
                ps.append(s)
                if 0 < k < len(rs):
                    any_partial = True
                    # Several lines' counts at one x are stacked above and below the points.
                    slot = partial_at.setdefault(x, 0)
                    partial_at[x] += 1
                    ax.annotate(f"{k}/{len(rs)}", (xd, m), xytext=(4, (5, -12, 14, -21)[slot % 4]),
                                textcoords="offset points", fontsize=7, color=st["color"])
                miss = [r for r, v in zip(rs, steps) if v is None]
                if miss:
                    all_div = all(_diverged(r) for r in miss)
                    any_never_div |= all_div
                    any_never |= not all_div
                    ax.plot([xd], [rows_y[j]], linestyle="none", zorder=4, clip_on=False,
                            color=st["color"], **({"marker": "x", "markersize": 7,
                                                   "markeredgewidth": 2} if all_div else
                                                  {"marker": "^", "markersize": 6.5,
                                                   "markerfacecolor": "white",
                                                   "markeredgewidth": 1.5}))
                    if show_counts:
                        ax.annotate(f"{len(miss)}/{len(rs)}", (xd, rows_y[j]), xytext=(5, 0),
                                    textcoords="offset points", va="center", fontsize=7,
                                    color=st["color"])
            pm_a, ps_a = np.array(pm), np.array(ps)
            ax.errorbar(px, pm_a, yerr=np.where(np.isfinite(ps_a), ps_a, 0.0), color=st["color"],
                        linestyle=st["linestyle"], marker=st["marker"], markersize=5,
                        linewidth=1.8, capsize=3, elinewidth=1.1, zorder=3)
        ax.axhspan(never_y0 - 0.02 * top, never_y0 + n * gap + 0.01 * top, color="0.95",
                   zorder=0, linewidth=0)
        ax.axhline(never_y0 - 0.02 * top, color="0.7", linewidth=0.8, zorder=0)
        _plain_axes(ax, xlabel, f"steps to {target:g} test accuracy")
        _set_value_axis(ax, xs, log)
        _label_rows(ax, rows_y, row_labels)
        ax.set_ylim(0, never_y0 + n * gap + 0.01 * top)
        ticks = [t for t in MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10], integer=True)
                 .tick_values(0, top) if 0 <= t <= top * 1.001]
        ax.set_yticks(ticks + [never_y0 + n * gap / 2])
        ax.set_yticklabels([_fmt_steps(t) for t in ticks] + ["never"])
        handles = list(line_handles)
        if show_counts:
            handles.append(Line2D([], [], color="0.3", marker="|", markersize=8, linestyle="none",
                                  label="± 1 std over the seeds that reached it"))
        if any_partial:
            handles.append(Line2D([], [], linestyle="none",
                                  label="k/n: only k of n seeds reached it (mean over those)"))
        if any_never:
            handles.append(Line2D([], [], color="0.3", marker="^", markerfacecolor="white",
                                  markeredgewidth=1.5, linestyle="none",
                                  label="never reached" + (" (count / seeds)" if show_counts else "")))
        if any_never_div:
            handles.append(Line2D([], [], color="0.3", marker="x", markeredgewidth=2,
                                  linestyle="none", label="never reached: diverged"))
        _legend_below(fig, handles)
        budget = f" within {_fmt_steps(top)} steps" if _max_steps(runs) > 0 else ""
        _suptitle(fig, f"{title}: steps to reach {target:g} test accuracy{budget}, against "
                     f"{xlabel.split(' (')[0]}\n{setup}", 11)
        written.append(_save(fig, workdir / f"{prefix}_steps_to_target.png"))
    return written


@register("lr_sweep")
def plot_lr_sweep(doc: dict, workdir: pathlib.Path) -> list[pathlib.Path]:
    """`lr_sweep_accuracy.png` (max and final test accuracy against the learning rate) and
    `lr_sweep_steps_to_target.png`, one line per swept setting (activation x BN), over seeds."""
    return _plot_vs_x(doc, pathlib.Path(workdir), xkey="learning_rate", prefix="lr_sweep",
                      title="Learning-rate sweep", xlabel="learning rate (SGD)")


@register("init_sweep")
def plot_init_sweep(doc: dict, workdir: pathlib.Path) -> list[pathlib.Path]:
    """`init_sweep_accuracy.png` and `init_sweep_steps_to_target.png` against the init std."""
    init = _config_value(doc["runs"], "model.init")
    return _plot_vs_x(doc, pathlib.Path(workdir), xkey="model.init_std", prefix="init_sweep",
                      title="Initialization sweep",
                      xlabel="init std (" + (f"{init} " if init and "(" not in init else "")
                             + "weight init scale)")


# --- activation sweep: accuracy curves, saturation and drift per layer -------------------------


def _layers(runs: list[dict], prefix: str) -> list[int]:
    """Hidden-layer indices (1-based) that have a `{prefix}_layer{l}` curve or final mean."""
    found = set()
    for run in runs:
        for key in list(run.get("curves", {})) + list(run.get("final") or {}):
            if key.startswith(prefix) or key.startswith("mean_" + prefix):
                m = _LAYER_KEY.search(key)
                if m and key[:m.start()] in (prefix + "_", "mean_" + prefix + "_"):
                    found.add(int(m.group(1)))
    return sorted(found)


def _layer_mean(run: dict, prefix: str, layer: int) -> float | None:
    """The run's mean of `{prefix}_layer{l}` over training (evaluations after step 0)."""
    key = f"mean_{prefix}_layer{layer}"
    if key in (run.get("final") or {}):
        return _final_number(run, key)
    c = _curve(run, f"{prefix}_layer{layer}")
    if c is None:
        return None
    vals = c[1][c[0] > 0]
    vals = vals[np.isfinite(vals)]
    return float(vals.mean()) if vals.size else None


def _panel_grid(runs: list[dict], keys: list[str], panel_keys: list[str]):
    """(row values, column values, {(row, col): runs}) for panels by activation and depth."""
    rk = panel_keys[0] if panel_keys else None
    ck = panel_keys[1] if len(panel_keys) > 1 else None
    rows = list(dict.fromkeys(_cfg(r, rk) for r in runs)) if rk else [None]
    cols = list(dict.fromkeys(_cfg(r, ck) for r in runs)) if ck else [None]
    cells: dict[tuple, list[dict]] = {}
    for run in runs:
        cells.setdefault((_cfg(run, rk) if rk else None, _cfg(run, ck) if ck else None), []).append(run)
    return rows, cols, cells


def _panel_title(panel_keys: list[str], row, col) -> str:
    parts = [_value_label(k, v) for k, v in zip(panel_keys, (row, col))]
    return ", ".join(parts) if parts else ""


def _activation_layout(runs: list[dict]):
    keys = _swept_keys(runs)
    panel_keys = [k for k in ("model.activation", "model.widths") if k in keys]
    line_keys = [k for k in keys if k not in panel_keys and k != SEED_KEY]
    combos = list(_group(runs, line_keys))
    return keys, panel_keys, line_keys, combos, _line_styles(line_keys, combos)


def _line_legend(line_keys, combos, styles, long_norm=True) -> list:
    return [Line2D([], [], label=_combo_label(line_keys, c, long_norm=long_norm), markersize=5,
                   linewidth=1.8, **styles[c]) for c in combos]


def _draw_mean_curves(ax, runs: list[dict], metric: str, line_keys, styles, *, log=False,
                      markers=True) -> bool:
    drawn = False
    for combo, rs in _group(runs, line_keys).items():
        mc = _mean_curve(rs, metric)
        if mc is None:
            continue
        steps, mean, std, _ = mc
        st = styles.get(combo, {"color": "0.3", "linestyle": "-", "marker": "o"})
        _band(ax, steps, mean, std, st["color"], log=log)
        ax.plot(steps, mean, color=st["color"], linestyle=st["linestyle"], linewidth=1.7,
                marker=st["marker"] if markers and len(steps) <= 25 else None, markersize=3.5,
                zorder=3)
        for r in rs:
            div = r.get("diverged_at_step")
            c = _curve(r, metric)
            if div is None or c is None:
                continue
            y = float(c[1][np.isfinite(c[1])][-1])
            ax.plot([div], [y], marker="X", markersize=9, color=st["color"], linestyle="none",
                    markeredgecolor="white", zorder=5)
        drawn = True
    return drawn


def _per_layer_figure(runs, workdir, file, *, prefix, ylabel, title, activations=None,
                      log_auto=False, percent=False) -> pathlib.Path | None:
    keys, panel_keys, line_keys, combos, styles = _activation_layout(runs)
    if activations is not None:
        runs = [r for r in runs if _cfg(r, "model.activation") in activations]
    if not runs:
        return None
    rows, cols, cells = _panel_grid(runs, keys, panel_keys)
    layers = _layers(runs, prefix)
    if not layers:
        return None
    data = {}
    for cell, rs in cells.items():
        for combo, g in _group(rs, line_keys).items():
            ls = _layers(g, prefix)
            stats = [_mean_std(_layer_mean(r, prefix, l) for r in g) for l in ls]
            data[cell, combo] = (np.array(ls), np.array([m for m, _, _ in stats]),
                                 np.array([s for _, s, _ in stats]))
    vals = np.concatenate([m[np.isfinite(m)] for _, m, _ in data.values()] or [np.array([])])
    if vals.size == 0:
        return None
    log = log_auto and (vals > 0).all() and vals.max() / vals.min() > 30
    fig = _new_figure(max(6.0, 4.2 * len(cols) + 2.6), 3.4 * len(rows) + 1.3)
    axes = np.atleast_2d(fig.subplots(len(rows), len(cols), sharey=True, squeeze=False))
    n = len(combos)
    for i, row in enumerate(rows):
        for j, col in enumerate(cols):
            ax = axes[i, j]
            drawn = False
            for k, combo in enumerate(combos):
                if ((row, col), combo) not in data:
                    continue
                ls, mean, std = data[(row, col), combo]
                if not np.isfinite(mean).any():
                    continue
                st = styles[combo]
                shift = (k - (n - 1) / 2) * 0.08
                ax.errorbar(ls + shift, mean, yerr=np.where(np.isfinite(std), std, 0.0),
                            color=st["color"], linestyle=st["linestyle"], marker=st["marker"],
                            markersize=5, linewidth=1.6, capsize=3, elinewidth=1.0, zorder=3)
                drawn = True
            _plain_axes(ax, "hidden layer" if i == len(rows) - 1 else "", ylabel if j == 0 else "")
            ax.set_title(_panel_title(panel_keys, row, col), fontsize=10)
            if not drawn:
                _note(ax, "no data")
                continue
            depth = max(len(_cfg(r, "model.widths") or ()) for r in cells[row, col]) or max(layers)
            ax.set_xticks(list(range(1, depth + 1)))
            ax.set_xlim(0.5, depth + 0.5)
    if log:
        axes[0, 0].set_yscale("log")
    else:
        high = max(float(vals.max()) * 1.12, 0.01)
        axes[0, 0].set_ylim(-0.03 * high, high)
    if percent:
        axes[0, 0].yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{100 * v:g}%"))
    handles = _line_legend(line_keys, combos, styles)
    if any(len(g) > 1 for rs in cells.values() for g in _group(rs, line_keys).values()):
        handles.append(Line2D([], [], color="0.3", marker="|", markersize=8, linestyle="none",
                              label="± 1 std over seeds"))
    _legend_below(fig, handles)
    _suptitle(fig, f"{title}\n{_setup_line(runs)}", fontsize=11)
    return _save(fig, workdir / file)


@register("activation_sweep")
def plot_activation_sweep(doc: dict, workdir: pathlib.Path) -> list[pathlib.Path]:
    """Per (activation, depth) panel, with and without BN, mean ± std over seeds:
    `activation_sweep_curves.png` (test accuracy over training), `activation_sweep_saturation.png`
    (mean saturated fraction per layer, saturating nonlinearities) and `activation_sweep_drift.png`
    (mean W1 drift of each layer's pre-activations between evaluations)."""
    workdir = pathlib.Path(workdir)
    runs = doc["runs"]
    keys, panel_keys, line_keys, combos, styles = _activation_layout(runs)
    rows, cols, cells = _panel_grid(runs, keys, panel_keys)
    target = _target(runs)
    xlim = _step_range(runs)
    written = []

    fig = _new_figure(max(6.5, 4.6 * len(cols) + 2.6), 3.3 * len(rows) + 1.4)
    axes = np.atleast_2d(fig.subplots(len(rows), len(cols), sharex=True, sharey=True, squeeze=False))
    any_drawn = any_div = False
    for i, row in enumerate(rows):
        for j, col in enumerate(cols):
            ax = axes[i, j]
            rs = cells.get((row, col), [])
            drawn = _draw_mean_curves(ax, rs, "test_accuracy", line_keys, styles)
            any_drawn |= drawn
            any_div |= any(r.get("diverged_at_step") is not None for r in rs)
            if target is not None:
                ax.axhline(target, color="0.35", linestyle=":", linewidth=1.2, zorder=2)
            _style_axes(ax, "training steps" if i == len(rows) - 1 else "",
                        "test accuracy" if j == 0 else "")
            ax.set_title(_panel_title(panel_keys, row, col), fontsize=10)
            if not drawn:
                _note(ax, "no test_accuracy curve")
    if any_drawn:
        axes[0, 0].set_ylim(0.0, 1.02)
        if xlim is not None:
            axes[0, 0].set_xlim(*xlim)
        handles = _line_legend(line_keys, combos, styles)
        if any(len(g) > 1 for rs in cells.values() for g in _group(rs, line_keys).values()):
            handles.append(_proxy_band())
        if target is not None:
            handles.append(Line2D([], [], color="0.35", linestyle=":", linewidth=1.2,
                                  label=f"target accuracy {target:g}"))
        if any_div:
            handles.append(Line2D([], [], color="0.3", marker="X", markersize=9, linestyle="none",
                                  markeredgecolor="white", label="a seed diverged here"))
        _legend_below(fig, handles)
        _suptitle(fig, "Activation sweep: test accuracy over training, with and without BN\n"
                     + _setup_line(runs), 11)
        written.append(_save(fig, workdir / "activation_sweep_curves.png"))

    acts = {_cfg(r, "model.activation") for r in runs}
    saturating = [a for a in SATURATING if a in acts]
    thr = _config_value(runs, "saturation_threshold") or "4"
    path = _per_layer_figure(
        runs, workdir, "activation_sweep_saturation.png", prefix="saturation",
        ylabel=f"saturated fraction (|x| > {thr})",
        title=f"Saturation per layer: fraction of test-set inputs to the nonlinearity with |x| > {thr},"
              " averaged over training",
        activations=saturating, percent=True)
    if path is not None:
        written.append(path)
    path = _per_layer_figure(
        runs, workdir, "activation_sweep_drift.png", prefix="ics_w1",
        ylabel="mean W1 drift per evaluation",
        title="Internal covariate shift per layer: 1-Wasserstein distance of each unit's input "
              "distribution between\nconsecutive evaluations (test set), averaged over units and "
              "over training", log_auto=True)
    if path is not None:
        written.append(path)
    return written


# --- learning rate x init std heatmap -----------------------------------------------------------


def _fmt_thousands(steps: float) -> str:
    return f"{steps / 1000:.3g}k"


@register("lr_init_grid")
def plot_lr_init_grid(doc: dict, workdir: pathlib.Path) -> list[pathlib.Path]:
    """`lr_init_grid_heatmap.png`: steps to the target accuracy over learning rate (columns) x
    init std (rows), one heatmap per BN setting on a shared log color scale."""
    workdir = pathlib.Path(workdir)
    runs = _sweep_runs_or_none(doc, ("learning_rate", "model.init_std"))
    if runs is None:
        return plot_generic(doc, workdir)
    target = _target(runs)
    keys = _swept_keys(runs)
    xkey, ykey = "learning_rate", "model.init_std"
    panel_keys = [k for k in keys if k not in (xkey, ykey, SEED_KEY)]
    panels = _group(runs, panel_keys)
    xs = sorted({float(_cfg(r, xkey)) for r in runs if _is_number(_cfg(r, xkey))})
    ys = sorted({float(_cfg(r, ykey)) for r in runs if _is_number(_cfg(r, ykey))})
    cells = {}
    for combo, rs in panels.items():
        for run in rs:
            x, y = _cfg(run, xkey), _cfg(run, ykey)
            if _is_number(x) and _is_number(y):
                cells.setdefault((combo, xs.index(float(x)), ys.index(float(y))), []).append(run)
    values = []
    summary_cells = {}
    for key, rs in cells.items():
        steps = [_steps_to_target(r, target) for r in rs]
        m, _, k = _mean_std(steps)
        summary_cells[key] = (m, k, len(rs), sum(_diverged(r) for r in rs))
        if k:
            values.append(m)
    eval_every = [float(e) for e in (_cfg(r, "eval_every") for r in runs) if _is_number(e) and e > 0]
    top = _max_steps(runs) or (max(values) if values else 1.0)
    vmin = min([min(eval_every) if eval_every else top / 20] + values)
    vmax = max([top] + values)
    if vmin <= 0:
        vmin = min([v for v in values if v > 0] + [1.0])
    if vmax <= vmin:
        vmax = vmin * 10
    norm = LogNorm(vmin=vmin, vmax=vmax)
    cmap = colormaps["viridis"]

    fig = _new_figure(max(8.0, 0.85 * len(xs) * len(panels) + 3.5), 0.62 * len(ys) + 3.0)
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    image = None
    order = sorted(panels, key=lambda c: [repr(v) if k != "model.norm" else
                                          ("0" if v == "none" else "1" + str(v))
                                          for k, v in zip(panel_keys, c)])
    order = list(panels) if not panel_keys else order
    for ax, combo in zip(axes, order):
        grid = np.full((len(ys), len(xs)), np.nan)
        for (c, i, j), (m, k, n, d) in summary_cells.items():
            if c == combo and k:
                grid[j, i] = m
        image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, norm=norm, origin="lower",
                          aspect="auto", interpolation="nearest")
        for (c, i, j), (m, k, n, d) in summary_cells.items():
            if c != combo:
                continue
            if k:
                r, g, b, _ = cmap(norm(m))
                color = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"
                text = _fmt_thousands(m) + (f"\n{k}/{n} seeds" if k < n else "")
                if d:  # diverged: before reaching the target, or (n == 1) after it
                    text += f"\n{d}/{n} div" if n > 1 else "\nthen div"
            else:
                fill = DIVERGED_COLOR if d == n else NEVER_COLOR
                ax.add_patch(Rectangle((i - 0.5, j - 0.5), 1, 1, facecolor=fill, linewidth=0,
                                       zorder=1))
                color = "white" if d == n else "0.25"
                text = "div" if d == n else "—" + (f"\n{d}/{n} div" if d else "")
            ax.text(i, j, text, ha="center", va="center", fontsize=8.5 if "\n" not in text else 7,
                    color=color, zorder=3)
        ax.set_xticks(range(len(xs)))
        ax.set_xticklabels([_fmt_num(v) for v in xs])
        ax.set_yticks(range(len(ys)))
        ax.set_yticklabels([_fmt_num(v) for v in ys])
        ax.set_xlim(-0.5, len(xs) - 0.5)
        ax.set_ylim(-0.5, len(ys) - 0.5)
        ax.set_xlabel("learning rate (SGD)")
        if ax is axes[0]:
            ax.set_ylabel("init std")
        ax.set_title(_combo_label(panel_keys, combo, long_norm=True) if panel_keys else "",
                     fontsize=11)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    cbar = fig.colorbar(image, ax=list(axes), shrink=0.9, pad=0.02,
                        label=f"steps to {target:g} test accuracy" if target is not None
                        else "steps to target")
    ticks = [m * 10 ** e for e in range(int(math.floor(math.log10(vmin))),
                                          int(math.ceil(math.log10(vmax))) + 1) for m in (1, 2, 5)
             if vmin * 0.999 <= m * 10 ** e <= vmax * 1.001]
    ticks = sorted(set([t for t in ticks if vmin * 1.3 < t < vmax / 1.3] + [vmin, vmax]))
    cbar.ax.yaxis.set_minor_locator(NullLocator())
    cbar.set_ticks(ticks)
    cbar.set_ticklabels([_fmt_steps(t) for t in ticks])
    handles = []
    if any(k == 0 and d < n for (m, k, n, d) in summary_cells.values()):
        handles.append(Patch(facecolor=NEVER_COLOR, label="— never reached the target"))
    if any(k == 0 and d == n for (m, k, n, d) in summary_cells.values()):
        handles.append(Patch(facecolor=DIVERGED_COLOR, label="div: diverged"))
    if any(n > 1 for (m, k, n, d) in summary_cells.values()):
        handles.append(Line2D([], [], linestyle="none", label="k/n seeds: only k of n seeds "
                              "reached it (mean over those); d/n div: seeds that diverged"))
    if handles:
        _legend_below(fig, handles)
    what = f"{target:g} test accuracy" if target is not None else "the target"
    budget = f" within {_fmt_steps(top)} steps" if _max_steps(runs) else ""
    _suptitle(fig, f"Steps to reach {what}{budget} (k = thousand steps), over learning rate × init std"
                 f"\n{_setup_line(runs, spread=False)}", 11)
    return [_save(fig, workdir / "lr_init_grid_heatmap.png")]


# --- Figure 1 over seeds ------------------------------------------------------------------------


def _diverged_label(base: str, runs: list[dict]) -> str:
    """'Without BN, seed 1: diverged at step 1,234' (several seeds: '..., seeds 1 / 2: ... steps')."""
    seeds = [_cfg(r, SEED_KEY) for r in runs]
    steps = " / ".join(f"{r['diverged_at_step']:,}" for r in runs)
    many = len(runs) > 1
    who = f", seed{'s' if many else ''} {' / '.join(_fmt_num(s) for s in seeds)}" \
        if all(s is not None for s in seeds) else ""
    return f"{base}{who}: diverged at step{'s' if many else ''} {steps}"


@register("fig1_seeds")
def plot_fig1_seeds(doc: dict, workdir: pathlib.Path) -> list[pathlib.Path]:
    """`fig1_seeds_accuracy.png` (Fig. 1(a) with mean ± std over seeds) and `fig1_seeds_drift.png`
    (W1 drift of each hidden layer's pre-activations over training, with and without BN)."""
    workdir = pathlib.Path(workdir)
    runs = doc["runs"]
    keys = _swept_keys(runs)
    line_keys = [k for k in keys if k != SEED_KEY]
    groups = _group(runs, line_keys)
    order = {"none": 0, "batchnorm": 1}
    at = line_keys.index("model.norm") if "model.norm" in line_keys else None
    combos = sorted(groups, key=lambda c: order.get(c[at], 2) if at is not None else 0)
    styles = _line_styles(line_keys, combos)
    for c in combos:
        styles[c]["linestyle"] = "-"
    target = _target(runs)
    xlim = _step_range(runs)
    setup = _setup_line(runs, 125)
    written = []

    fig = _new_figure(8.5, 5.6 if len(combos) <= 3 else 5.6 + 0.2 * len(combos))
    ax = fig.add_subplot()
    handles, curves = [], []
    for combo in combos:
        rs = groups[combo]
        mc = _mean_curve(rs, "test_accuracy")
        if mc is None:
            continue
        steps, mean, std, _ = mc
        curves.append((steps, mean - std))
        st = styles[combo]
        _band(ax, steps, mean, std, st["color"], alpha=0.22)
        label = _combo_label(line_keys, combo, long_norm=True)
        if target is not None:
            hits = [_steps_to_target(r, target) for r in rs]
            m, s, k = _mean_std(hits)
            if k == 0:
                label += f" (never ≥ {target:g})"
            else:
                label += f" (≥ {target:g} at step {m:,.0f}" + \
                         (f" ± {s:,.0f}" if len(rs) > 1 else "") + \
                         (f", {k}/{len(rs)} seeds" if k < len(rs) else "") + ")"
        handles += ax.plot(steps, mean, color=st["color"], linewidth=1.8, label=label,
                           marker="o" if len(steps) <= 25 else None, markersize=3.5, zorder=3)
        div_x, div_y, div_runs = [], [], []
        for r in rs:
            div, c = r.get("diverged_at_step"), _curve(r, "test_accuracy")
            if div is not None and c is not None:
                div_x.append(div)
                div_y.append(float(c[1][np.isfinite(c[1])][-1]))
                div_runs.append(r)
        if div_runs:
            handles += ax.plot(div_x, div_y, marker="X", markersize=10, color=st["color"],
                               linestyle="none", markeredgecolor="white", zorder=5,
                               label=_diverged_label(label.split(" (")[0], div_runs))
    if curves:
        low, high = _accuracy_ylim([(s, np.where(np.isfinite(v), v, np.nan)) for s, v in curves])
        ax.set_ylim(low, high)
        if any((v[np.isfinite(v)] < low - 1e-3).any() for _, v in curves):
            ax.text(0.01, 0.01, f"values below {low:.2f} are off the axis", transform=ax.transAxes,
                    ha="left", va="bottom", fontsize=7.5, color="0.45")
        if target is not None:
            handles.append(ax.axhline(target, color="0.35", linestyle=":", linewidth=1.2,
                                      label=f"target accuracy {target:g}"))
        if any(len(groups[c]) > 1 for c in combos):
            handles.append(_proxy_band())
        if len(handles) <= 8:
            ax.legend(handles=handles, loc="lower right" if low >= 0.3 else "best", fontsize=9,
                      framealpha=0.9)
        else:  # many settings besides BN swept: too many entries to sit on the axes
            _legend_below(fig, handles, max_cols=2)
        _style_axes(ax, "training steps", "test accuracy")
        if xlim is not None:
            ax.set_xlim(*xlim)
        _suptitle(fig, "Figure 1(a) over seeds: test accuracy, with and without BN", fontsize=12)
        ax.set_title(setup, fontsize=8, color="0.3")
        written.append(_save(fig, workdir / "fig1_seeds_accuracy.png"))
    else:
        fig.clear()

    layers = _layers(runs, "ics_w1")
    layers = [l for l in layers if any(_curve(r, f"ics_w1_layer{l}") for r in runs)]
    if layers:
        fig = _new_figure(max(7.0, 4.3 * len(layers) + 0.8), 4.9)
        axes = fig.subplots(1, len(layers), sharey=True, squeeze=False)[0]
        positive = [v for r in runs for l in layers for c in [_curve(r, f"ics_w1_layer{l}")]
                    if c is not None for v in c[1][np.isfinite(c[1])] if v > 0]
        log = bool(positive) and max(positive) / min(positive) > 30
        for ax, l in zip(axes, layers):
            if not _draw_mean_curves(ax, runs, f"ics_w1_layer{l}", line_keys, styles, log=log):
                _note(ax, "no drift curve")
                continue
            _style_axes(ax, "training steps", "W1 drift since previous evaluation"
                        if ax is axes[0] else "")
            ax.set_title(f"hidden layer {l}" + (f" of {max(layers)}" if len(layers) > 1 else ""),
                         fontsize=10.5)
            if xlim is not None:
                ax.set_xlim(*xlim)
        if log:
            axes[0].set_yscale("log")
        handles = _line_legend(line_keys, combos, styles)
        if any(len(groups[c]) > 1 for c in combos):
            handles.append(_proxy_band())
        _legend_below(fig, handles)
        ev = _config_value(runs, "eval_every")
        _suptitle(fig, "Internal covariate shift over training: 1-Wasserstein distance of each unit's "
                     "input to the nonlinearity\nbetween consecutive evaluations"
                     + (f" ({ev} steps apart)" if ev else "") + ", test set, averaged over units\n"
                     + setup, 10.5)
        written.append(_save(fig, workdir / "fig1_seeds_drift.png"))
    return written

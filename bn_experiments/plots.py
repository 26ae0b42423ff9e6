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

Figures are built on `matplotlib.figure.Figure` with an Agg canvas, never through pyplot, so no
global figure state or backend choice leaks out of this module. Every PNG is rendered to bytes and
written with `summary.atomic_write`, so a reader never sees half a file. Missing curves are skipped;
a figure with nothing to draw is not written.
"""
from __future__ import annotations

import io
import math
import pathlib
import textwrap
from typing import Callable, Iterable

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

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


def _config_line(runs: list[dict]) -> str:
    """One line naming the settings the figure depends on: lr, init and std, batch, steps, activation."""
    parts = []
    lr = _config_value(runs, "learning_rate")
    if lr is not None:
        parts.append(f"lr {lr}")
    mom = _config_value(runs, "optimizer.momentum")
    if mom is not None:
        parts.append(f"momentum {mom}")
    init, std = _config_value(runs, "model.init"), _config_value(runs, "model.init_std")
    if init is not None or std is not None:
        parts.append(" ".join(p for p in (f"{init} init" if init else "init",
                                          f"std {std}" if std is not None else "") if p))
    batch = _config_value(runs, "batch_size")
    if batch is not None:
        parts.append(f"batch {batch}")
    steps = _config_value(runs, "steps")
    if steps is not None:
        parts.append(f"{steps} steps")
    act = _config_value(runs, "model.activation")
    widths = _config_value(runs, "model.widths")
    if act is not None or widths is not None:
        parts.append(" ".join(p for p in (f"{widths} MLP" if widths else "", act or "") if p))
    data = _config_value(runs, "data.source")
    if data is not None:
        parts.append(f"data {data}")
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

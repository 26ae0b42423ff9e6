"""The shared look of every figure, and the generic one: helpers the experiments' `figures` use.

Each experiment module (`bn_experiments/experiments/<name>.py`) draws its own figures from
summary.json alone; what they have in common lives here, so all figures look alike and a fix
reaches every one of them:

* figures and files: `new_figure` (a `matplotlib.figure.Figure` on an Agg canvas, never pyplot, so
  no global figure state or backend choice leaks out) and `save_png` (rendered to bytes without
  version metadata and written with `summary.atomic_write`, so a reader never sees half a file and
  the same summary gives the same bytes);
* reading runs: curves with nulls as NaN (`read_curve`), config values, steps to the target,
  divergence; missing curves are skipped, never drawn as zeros;
* labels: step counts as "10K", the config line naming the settings a figure depends on, "With BN"
  / "Without BN" and their colours;
* axes, titles and legends: the accuracy y range of Fig. 1(a), titles wrapped to the figure's
  width, one legend below the panels (never over the data);
* sweeps (runs named `key=value,...`, one per grid point): runs grouped by every swept key except
  `seed`, drawn as the mean over seeds with a ± 1 std band, diverged runs as explicit "X" markers;
  `NEVER_COLOR` / `DIVERGED_COLOR` fill the cells of targets never reached ("—") and of diverged
  runs ("div").

`generic_figures` draws `test_accuracy.png` (every run's test accuracy) for an experiment without
a module of its own. Sweep figures against one swept number are in `plotting_sweeps`.
"""
from __future__ import annotations

import io
import math
import pathlib
import re
import textwrap
from typing import Iterable

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, MaxNLocator

from bn_experiments import summary

DPI = 150
RUN_LABELS = {"no_bn": "Without BN", "bn": "With BN"}
RUN_COLORS = {"no_bn": "#d1495b", "bn": "#00798c"}
OTHER_COLORS = ["#edae49", "#30638e", "#66a182", "#8d5a97", "#6f4e37", "#e07a5f", "#3d405b"]
SEED_KEY = "seed"
NORM_LABELS = {"none": "no BN", "batchnorm": "BN"}
NORM_LONG_LABELS = {"none": "Without BN", "batchnorm": "With BN"}
NORM_COLORS = {"none": RUN_COLORS["no_bn"], "batchnorm": RUN_COLORS["bn"]}
LINE_STYLES = [("-", "o"), ("--", "s"), ("-.", "^"), (":", "D"), ((0, (5, 1, 1, 1)), "v")]
NEVER_COLOR, DIVERGED_COLOR = "0.88", "0.55"
_NAME_SPLIT = re.compile(r",(?=[A-Za-z_][A-Za-z0-9_.]*=)")


# ---------------------------------------------------------------------------------------------
# Figures and files


def new_figure(width: float, height: float) -> Figure:
    """A constrained-layout figure on its own Agg canvas: no pyplot, so no global figure state."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path: pathlib.Path) -> pathlib.Path:
    """Writes `fig` to `path` atomically (a reader never sees half a file) and clears it."""
    buf = io.BytesIO()
    # No "Software" metadata: the same summary gives the same bytes across matplotlib versions.
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    fig.clear()
    summary.atomic_write(path, buf.getvalue())
    return path


# ---------------------------------------------------------------------------------------------
# Reading runs


def read_curve(run: dict, metric: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(steps, values) of a curve with nulls as NaN, or None when absent or without a finite value."""
    curve = run.get("curves", {}).get(metric)
    if not curve or not curve.get("step"):
        return None
    steps = np.asarray(curve["step"], dtype=np.float64)
    values = np.asarray([np.nan if v is None else v for v in curve["value"]], dtype=np.float64)
    if not np.isfinite(values).any():
        return None
    return steps, values


def first_reach(steps: np.ndarray, values: np.ndarray, target: float) -> int | None:
    """The first step whose value is at or above `target` (None: never; NaNs never count)."""
    hit = np.nonzero(np.isfinite(values) & (values >= target))[0]
    return int(steps[hit[0]]) if hit.size else None


def _hashable(value):
    """Lists (JSON's tuples) as tuples, so config values can key a dict of groups."""
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    return value


def run_value(run: dict, key: str):
    """The run's config value of `key` (None if absent), hashable, to group runs by it."""
    return _hashable(run.get("config", {}).get(key))


def is_number(v) -> bool:
    """A finite int or float, not a bool: the values that can sit on a numeric axis."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def final_number(run: dict, key: str) -> float | None:
    """The run's `final[key]` as a float, or None when absent, null or not finite."""
    v = (run.get("final") or {}).get(key)
    return float(v) if is_number(v) else None


def is_diverged(run: dict) -> bool:
    """Whether the run diverged (`diverged_at_step` set, or `final.diverged` 1)."""
    return run.get("diverged_at_step") is not None or (run.get("final") or {}).get("diverged") == 1.0


def target_accuracy(runs: list[dict]) -> float | None:
    """The configured target test accuracy (the lowest if runs differ), None if none is set."""
    targets = {run_value(r, "target_accuracy") for r in runs} - {None}
    return min(targets) if targets else None


def steps_to_target(run: dict, target: float | None) -> float | None:
    """First evaluated step at or above the target (None: never), from `final` or the curve."""
    final = run.get("final") or {}
    if "steps_to_target" in final:
        return final_number(run, "steps_to_target")
    c = read_curve(run, "test_accuracy")
    if c is None or target is None:
        return None
    hit = first_reach(c[0], c[1], target)
    return None if hit is None else float(hit)


def max_steps(runs: list[dict]) -> float:
    """The largest configured step budget (0.0 when none is recorded)."""
    top = [float(s) for s in (run_value(r, "steps") for r in runs)
           if isinstance(s, (int, float)) and not isinstance(s, bool) and s > 0]
    return max(top) if top else 0.0


def step_range(runs: list[dict]) -> tuple[float, float] | None:
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


# ---------------------------------------------------------------------------------------------
# Labels


def fmt_steps(x: float, _pos=None) -> str:
    """A step count as '10K' (a tick formatter too): step axes reach 50,000."""
    if abs(x) >= 1000:
        return f"{x / 1000:g}K"
    return f"{x:g}"


def fmt_num(x) -> str:
    """A config value as a short label: '0.1', '50,000', '100-100-100' for widths."""
    if isinstance(x, bool) or x is None:
        return str(x)
    if isinstance(x, int):
        return f"{x:,}" if abs(x) >= 10000 else str(x)
    if isinstance(x, float):
        return f"{x:g}"
    if isinstance(x, (list, tuple)):
        return "-".join(fmt_num(v) for v in x)
    return str(x)


def run_label(run: dict) -> str:
    """'With BN' / 'Without BN' for Figure 1's runs, else the run's name."""
    return RUN_LABELS.get(run["name"], run["name"])


def run_color(run: dict, index: int) -> str:
    """The run's colour: BN and no BN always the same ones, other runs by position."""
    return RUN_COLORS.get(run["name"], OTHER_COLORS[index % len(OTHER_COLORS)])


def config_value(runs: list[dict], key: str) -> str | None:
    """A config value shared by all runs, or 'a (run1) / b (run2)' when they differ; None if absent."""
    values = [(r, r.get("config", {}).get(key)) for r in runs]
    values = [(r, v) for r, v in values if v is not None]
    if not values:
        return None
    distinct = {repr(v) for _, v in values}
    if len(distinct) == 1:
        return fmt_num(values[0][1])
    return " / ".join(f"{fmt_num(v)} ({run_label(r)})" for r, v in values)


# (config keys, formatter of their values) in the order config_line names them; an entry is
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


def config_line(runs: list[dict]) -> str:
    """One line naming the settings the figure depends on: lr, init and std, batch, steps, activation."""
    parts = []
    for keys, fmt in _CONFIG_LINE:
        values = [config_value(runs, k) for k in keys]
        if any(v is not None for v in values):
            parts.append(fmt(*values))
    return ", ".join(parts)


def shared_config_line(runs: Iterable[dict]) -> str:
    """Config line restricted to settings all runs share (for experiments with many runs)."""
    runs = list(runs)
    shared = {}
    for key in runs[0].get("config", {}):
        vals = [r.get("config", {}).get(key) for r in runs]
        if all(repr(v) == repr(vals[0]) for v in vals):
            shared[key] = vals[0]
    return config_line([{"name": "all", "config": shared}])


# ---------------------------------------------------------------------------------------------
# Axes, titles and legends


def style_step_axes(ax, xlabel: str, ylabel: str) -> None:
    """`style_plain_axes` with training steps on x: ticks at round step counts, as '10K'."""
    style_plain_axes(ax, xlabel, ylabel)
    ax.xaxis.set_major_formatter(FuncFormatter(fmt_steps))
    ax.xaxis.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10], integer=True))


def style_plain_axes(ax, xlabel: str, ylabel: str) -> None:
    """The common look: axis labels, a light grid behind the data, no top or right spine."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, color="0.88", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def accuracy_ylim(curves: list[tuple[np.ndarray, np.ndarray]], default_low: float = 0.7) -> tuple[float, float]:
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


def note_no_data(ax, text: str) -> None:
    """Says a panel has nothing to show (ticks untouched: they may be shared with other panels)."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.4")


def blank_no_data(ax, text: str) -> None:
    """Says a panel of its own (no shared axes) has nothing to show, and removes its ticks."""
    note_no_data(ax, text)
    ax.set_xticks([])
    ax.set_yticks([])


def suptitle(fig: Figure, text: str, fontsize: float = 11) -> None:
    """A figure title with each line wrapped to the figure's width, so none is cut off."""
    width = max(40, int(fig.get_figwidth() * 72 / (0.56 * fontsize)))
    fig.suptitle("\n".join(textwrap.fill(line, width) for line in text.split("\n")),
                 fontsize=fontsize)


def legend_below(fig: Figure, handles: list, max_cols: int = 4) -> None:
    """One legend for the whole figure, under the panels (never over the title or the data), in as
    many columns (up to `max_cols`) as fit the figure's width."""
    longest = max([len(h.get_label()) for h in handles] + [1])
    fit = int(fig.get_figwidth() // (0.068 * (longest + 8)))
    ncol = max(1, min(len(handles), max_cols, fit))
    fig.legend(handles=handles, loc="outside lower center", ncol=ncol, fontsize=9, frameon=False,
               columnspacing=1.6, handlelength=2.6)


# ---------------------------------------------------------------------------------------------
# Sweeps: runs grouped by their swept settings, mean ± std over seeds
#
# A sweep's runs are named `key=value,key=value` in grid order; the swept keys are read from the
# config's `grid` when it is recorded, else from the run names, plus any key whose value differs
# between runs. Runs that differ only in `seed` are one point: the figures show the mean over those
# seeds with a ± 1 std band (sample std; 0 with one seed). Nulls, missing curves and diverged runs
# are skipped or drawn as explicit markers, never as zeros.


def swept_keys(runs: list[dict]) -> list[str]:
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
        if key not in keys and len({repr(run_value(r, key)) for r in runs}) > 1:
            keys.append(key)
    return keys


def group_runs(runs: list[dict], keys: list[str]) -> dict[tuple, list[dict]]:
    """Runs grouped by their values of `keys`, groups in order of first appearance (grid order)."""
    out: dict[tuple, list[dict]] = {}
    for run in runs:
        out.setdefault(tuple(run_value(run, k) for k in keys), []).append(run)
    return out


def mean_std(values: Iterable) -> tuple[float, float, int]:
    """Mean, sample std (0 for one value) and count of the finite values; NaNs when none."""
    vals = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if vals.size == 0:
        return math.nan, math.nan, 0
    return float(vals.mean()), float(vals.std(ddof=1)) if vals.size > 1 else 0.0, int(vals.size)


def mean_curve(runs: list[dict], metric: str):
    """(steps, mean, std, count) over the runs' finite values at each step, or None."""
    table: dict[int, list[float]] = {}
    for run in runs:
        c = read_curve(run, metric)
        if c is None:
            continue
        for s, v in zip(*c):
            if np.isfinite(v):
                table.setdefault(int(s), []).append(float(v))
    if not table:
        return None
    steps = np.asarray(sorted(table), dtype=np.float64)
    stats = [mean_std(table[int(s)]) for s in steps]
    return steps, np.array([m for m, _, _ in stats]), np.array([s for _, s, _ in stats]), \
        np.array([n for _, _, n in stats])


def seed_band(ax, x, mean, std, color, log: bool = False, alpha: float = 0.16) -> None:
    """The ± 1 std band around a mean over seeds (none where std is 0: a single seed). On a log
    axis the band's bottom is kept above 5% of the mean, so it never reaches 0."""
    x, mean, std = (np.asarray(a, dtype=np.float64) for a in (x, mean, std))
    ok = np.isfinite(mean) & np.isfinite(std)
    if not (ok & (std > 0)).any():
        return
    lo, hi = mean - std, mean + std
    if log:
        lo = np.maximum(lo, mean * 0.05)
    ax.fill_between(x, np.where(ok, lo, 0.0), np.where(ok, hi, 0.0), where=ok, color=color,
                    alpha=alpha, linewidth=0, zorder=1)


def mean_band(ax, runs: list[dict], metric: str, color, *, step_floor: float | None = None,
              log: bool = False, **line) -> bool:
    """Draws `metric`'s mean over `runs` (the seeds of one arm) as a line, `line` its plot
    keywords, with the ± 1 std band around it; False (nothing drawn) when no run has the curve.
    `step_floor`: steps drawn at no less than this (1: step 0 visible on a log axis)."""
    mc = mean_curve(runs, metric)
    if mc is None:
        return False
    steps, mean, std, _ = mc
    if step_floor is not None:
        steps = np.maximum(steps, step_floor)
    ax.plot(steps, mean, color=color, **line)
    seed_band(ax, steps, mean, std, color, log=log)
    return True


def seed_band_handle() -> Patch:
    """The legend entry for `seed_band` (the band itself has no label)."""
    return Patch(facecolor="0.6", alpha=0.35, label="± 1 std over seeds")


# ---------------------------------------------------------------------------------------------
# Any experiment without a module of its own


def generic_figures(doc: dict, workdir: pathlib.Path) -> list[pathlib.Path]:
    """`test_accuracy.png`: every run's test accuracy against training steps."""
    workdir = pathlib.Path(workdir)
    runs = doc["runs"]
    fig = new_figure(8.0, 5.2)
    ax = fig.add_subplot()
    curves = []
    for i, run in enumerate(runs):
        c = read_curve(run, "test_accuracy")
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
    style_step_axes(ax, "training steps", "test accuracy")
    ncol = 1 if len(curves) <= 12 else 2
    ax.legend(fontsize=8 if len(curves) <= 12 else 6.5, ncol=ncol, framealpha=0.9,
              loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(f"{doc['experiment']}: test accuracy", fontsize=12)
    config = config_line(runs) if len(runs) <= 3 else shared_config_line(runs)
    if config:
        ax.set_title(textwrap.fill(config, 115), fontsize=8, color="0.3")
    return [save_png(fig, workdir / "test_accuracy.png")]

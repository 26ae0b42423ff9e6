"""Shared pieces of the sweep figures: labels and styles of groups of runs, mean curves, and the
figures of accuracy and steps to target against one swept number.

A sweep's runs (one per grid point, named `key=value,...`) are grouped with
`plotting.group_runs` by every swept key except `seed`; each group is one line, coloured by BN vs
no BN (`line_styles`) and labelled by its settings (`combo_label`), drawn as the mean over its seeds
with a ± 1 std band. Diverged runs and targets never reached are drawn as explicit markers ("x",
"never"), never as numbers.

`figures_vs_x` draws the two figures of a sweep over one number (the learning rate in `lr_sweep`,
the init std in `init_sweep`): `<prefix>_accuracy.png` (max and final test accuracy, with a strip
counting diverged seeds) and `<prefix>_steps_to_target.png` (with a "never" row on top).
"""
from __future__ import annotations

import math
import pathlib
import re
import textwrap

import numpy as np
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator, NullLocator

from bn_experiments.plotting import (
    LINE_STYLES, NORM_COLORS, NORM_LABELS, NORM_LONG_LABELS, OTHER_COLORS, SEED_KEY, fmt_num,
    fmt_steps, generic_figures, group_runs, is_diverged, is_number, max_steps, mean_curve,
    mean_std, new_figure, read_curve, run_value, save_png, seed_band, seed_band_handle,
    shared_config_line, steps_to_target, style_plain_axes, suptitle, legend_below, final_number,
    swept_keys, target_accuracy)

_LAYER_KEY = re.compile(r"layer(\d+)$")


# ---------------------------------------------------------------------------------------------
# Groups of runs: labels, styles, mean curves


def _seed_note(runs: list[dict], spread: bool = True) -> str:
    """'mean ± std over 3 seeds (0, 1, 2)' or 'single seed (0)': how to read the curves."""
    seeds = sorted({s for s in (run_value(r, SEED_KEY) for r in runs) if s is not None},
                   key=lambda s: (0, s, "") if is_number(s) else (1, 0, repr(s)))
    if len(seeds) > 1:
        return (f"mean{' ± std' if spread else ''} over {len(seeds)} seeds "
                f"({', '.join(fmt_num(s) for s in seeds)})")
    return f"single seed ({fmt_num(seeds[0])})" if seeds else "single seed"


def setup_line(runs: list[dict], width: int = 150, spread: bool = True) -> str:
    """The settings all runs share (wrapped to `width`), then the seeds on a line of their own."""
    config = shared_config_line(runs)
    return (textwrap.fill(config, width) + "\n" if config else "") + _seed_note(runs, spread)


def value_label(key: str, value) -> str:
    """A swept setting as a label: 'BN', 'sigmoid', '3 hidden layers × 100', 'learning_rate 0.1'."""
    if key == "model.norm":
        return NORM_LABELS.get(value, f"norm {value}")
    if key == "model.activation":
        return str(value)
    if key == "model.widths":
        return _depth_label(value)
    return f"{key.rsplit('.', 1)[-1]} {fmt_num(value)}"


def _depth_label(widths) -> str:
    """Hidden widths as '3 hidden layers × 100' (or '2 hidden layers (100-50)')."""
    if isinstance(widths, (list, tuple)) and widths:
        if len(set(widths)) == 1:
            return f"{len(widths)} hidden layer{'s' if len(widths) > 1 else ''} × {widths[0]}"
        return f"{len(widths)} hidden layers ({'-'.join(map(str, widths))})"
    return f"widths {widths}"


def combo_label(keys: list[str], combo: tuple, long_norm: bool = False) -> str:
    """The label of one group of runs (`combo`: its values of `keys`), BN last: 'relu, BN'."""
    parts = []
    for k, v in sorted(zip(keys, combo), key=lambda kv: kv[0] == "model.norm"):
        parts.append(NORM_LONG_LABELS.get(v, value_label(k, v)) if long_norm and k == "model.norm"
                     else value_label(k, v))
    return ", ".join(parts) if parts else "all runs"


def line_styles(keys: list[str], combos: list[tuple]) -> dict[tuple, dict]:
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


def line_legend(line_keys, combos, styles, long_norm=True) -> list:
    """One legend entry per group of runs, in its `line_styles` style (for `legend_below`)."""
    return [Line2D([], [], label=combo_label(line_keys, c, long_norm=long_norm), markersize=5,
                   linewidth=1.8, **styles[c]) for c in combos]


def draw_mean_curves(ax, runs: list[dict], metric: str, line_keys, styles, *, log=False,
                     markers=True) -> bool:
    """`metric` over training, one mean ± std curve per group of runs (by `line_keys`), an "X" where
    a seed diverged (at its last finite value). False when no run has the curve."""
    drawn = False
    for combo, rs in group_runs(runs, line_keys).items():
        mc = mean_curve(rs, metric)
        if mc is None:
            continue
        steps, mean, std, _ = mc
        st = styles.get(combo, {"color": "0.3", "linestyle": "-", "marker": "o"})
        seed_band(ax, steps, mean, std, st["color"], log=log)
        ax.plot(steps, mean, color=st["color"], linestyle=st["linestyle"], linewidth=1.7,
                marker=st["marker"] if markers and len(steps) <= 25 else None, markersize=3.5,
                zorder=3)
        for r in rs:
            div = r.get("diverged_at_step")
            c = read_curve(r, metric)
            if div is None or c is None:
                continue
            y = float(c[1][np.isfinite(c[1])][-1])
            ax.plot([div], [y], marker="X", markersize=9, color=st["color"], linestyle="none",
                    markeredgecolor="white", zorder=5)
        drawn = True
    return drawn


def hidden_layers(runs: list[dict], prefix: str) -> list[int]:
    """Hidden-layer indices (1-based) that have a `{prefix}_layer{l}` curve or final mean."""
    found = set()
    for run in runs:
        for key in list(run.get("curves", {})) + list(run.get("final") or {}):
            if key.startswith(prefix) or key.startswith("mean_" + prefix):
                m = _LAYER_KEY.search(key)
                if m and key[:m.start()] in (prefix + "_", "mean_" + prefix + "_"):
                    found.add(int(m.group(1)))
    return sorted(found)


def sweep_runs_or_none(doc: dict, needed: tuple[str, ...]) -> list[dict] | None:
    """The runs, or None when no run has a number for every key in `needed`: then the sweep
    figure has no axis to draw on, and the caller falls back to the generic figure."""
    runs = doc["runs"]
    if not any(all(is_number(run_value(r, k)) for k in needed) for r in runs):
        return None
    return runs


# ---------------------------------------------------------------------------------------------
# Accuracy and steps to target against one swept number (learning rate, init std)


def _max_accuracy(run: dict) -> float | None:
    """The best test accuracy during training, from `final` or the curve (None: none recorded)."""
    v = final_number(run, "max_test_accuracy")
    if v is None and "max_test_accuracy" not in (run.get("final") or {}):
        c = read_curve(run, "test_accuracy")
        v = float(np.nanmax(c[1])) if c is not None else None
    return v


def _final_accuracy(run: dict) -> float | None:
    """Test accuracy at the end of training; None for a diverged run."""
    if is_diverged(run):
        return None
    v = final_number(run, "test_accuracy")
    if v is None and "test_accuracy" not in (run.get("final") or {}):
        c = read_curve(run, "test_accuracy")
        if c is not None:
            v = float(c[1][np.isfinite(c[1])][-1])
    return v


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
    ax.set_xticklabels([fmt_num(v) for v in values])


def _points_by_x(runs: list[dict], xkey: str) -> list[tuple[float, list[dict]]]:
    """The runs grouped by their (numeric) value of `xkey`, in increasing x."""
    pts: dict[float, list[dict]] = {}
    for run in runs:
        x = run_value(run, xkey)
        if is_number(x):
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
    """One line per group: mean ± std of `value_fn` over seeds against x; an "x" in the group's
    status row (`rows_y`) where seeds diverged, with a k/n count when there are several seeds."""
    for j, (combo, runs) in enumerate(lines.items()):
        st = styles[combo]
        pts = _points_by_x(runs, xkey)
        xs = np.array([x for x, _ in pts])
        stats = [mean_std(value_fn(r) for r in rs) for _, rs in pts]
        mean = np.array([m for m, _, _ in stats])
        std = np.array([s for _, s, _ in stats])
        seed_band(ax, xs, mean, std, st["color"])
        ax.plot(xs, mean, color=st["color"], linestyle=st["linestyle"], marker=st["marker"],
                markersize=5, linewidth=1.8, zorder=3)
        for x, rs in pts:
            k = sum(is_diverged(r) for r in rs)
            if k:
                ax.plot([x], [rows_y[j]], marker="x", markersize=7, markeredgewidth=2,
                        color=st["color"], linestyle="none", zorder=4, clip_on=False)
                if show_counts:
                    ax.annotate(f"{k}/{len(rs)}", (x, rows_y[j]), xytext=(5, 0),
                                textcoords="offset points", va="center", fontsize=7,
                                color=st["color"])


def figures_vs_x(doc: dict, workdir: pathlib.Path, *, xkey: str, prefix: str, title: str,
                 xlabel: str) -> list[pathlib.Path]:
    """`<prefix>_accuracy.png` and `<prefix>_steps_to_target.png` of a sweep over the number `xkey`,
    one line per setting of the other swept keys, mean ± std over seeds; the generic figure
    when the runs are not swept over `xkey`."""
    runs = sweep_runs_or_none(doc, (xkey,))
    if runs is None:
        return generic_figures(doc, workdir)
    keys = swept_keys(runs)
    line_keys = [k for k in keys if k not in (xkey, SEED_KEY)]
    lines = group_runs(runs, line_keys)
    styles = line_styles(line_keys, list(lines))
    xs = sorted({x for rs in lines.values() for x, _ in _points_by_x(rs, xkey)})
    if len(xs) < 2:  # not swept over x: nothing to draw against it
        return generic_figures(doc, workdir)
    log = all(x > 0 for x in xs)
    target = target_accuracy(runs)
    setup = setup_line(runs)
    show_counts = any(len(rs) > 1 for rs in (g for line in lines.values()
                                             for _, g in _points_by_x(line, xkey)))
    any_div = any(is_diverged(r) for r in runs)
    row_labels = [(combo_label(line_keys, c), styles[c]["color"]) for c in lines]
    written = []

    line_handles = [Line2D([], [], label=combo_label(line_keys, combo), markersize=5,
                           linewidth=1.8, **styles[combo]) for combo in lines]
    extra = []
    if show_counts:
        extra.append(seed_band_handle())
    if target is not None:
        extra.append(Line2D([], [], color="0.35", linestyle=":", linewidth=1.2,
                            label=f"target accuracy {target:g}"))

    # Accuracy: max over training | final; a strip below 0 marks points where seeds diverged.
    gap = min(0.055, 0.3 / max(1, len(lines)))
    strip_top = -0.025
    n = len(lines)
    rows_y = _status_rows(n, strip_top - n * gap, gap)[::-1]
    bottom = strip_top - n * gap - 0.01
    fig = new_figure(13.0, 5.8)
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
        style_plain_axes(ax, xlabel, "")
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
    legend_below(fig, line_handles + extra)
    suptitle(fig, f"{title}: test accuracy against {xlabel.split(' (')[0]}\n{setup}", fontsize=11)
    written.append(save_png(fig, workdir / f"{prefix}_accuracy.png"))

    # Steps to target: mean ± std over the seeds that reached it; a "never" strip at the top.
    if target is not None:
        top = max_steps(runs)
        reached_all = [s for r in runs for s in [steps_to_target(r, target)] if s is not None]
        if top <= 0:
            top = max(reached_all) if reached_all else 1.0
        gap = 0.07 * top
        never_y0 = 1.06 * top
        rows_y = _status_rows(n, never_y0, gap)
        fig = new_figure(10.5, 5.8)
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
                steps = [steps_to_target(r, target) for r in rs]
                m, s, k = mean_std(steps)
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
                    all_div = all(is_diverged(r) for r in miss)
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
        style_plain_axes(ax, xlabel, f"steps to {target:g} test accuracy")
        _set_value_axis(ax, xs, log)
        _label_rows(ax, rows_y, row_labels)
        ax.set_ylim(0, never_y0 + n * gap + 0.01 * top)
        ticks = [t for t in MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10], integer=True)
                 .tick_values(0, top) if 0 <= t <= top * 1.001]
        ax.set_yticks(ticks + [never_y0 + n * gap / 2])
        ax.set_yticklabels([fmt_steps(t) for t in ticks] + ["never"])
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
        legend_below(fig, handles)
        budget = f" within {fmt_steps(top)} steps" if max_steps(runs) > 0 else ""
        suptitle(fig, f"{title}: steps to reach {target:g} test accuracy{budget}, against "
                    f"{xlabel.split(' (')[0]}\n{setup}", 11)
        written.append(save_png(fig, workdir / f"{prefix}_steps_to_target.png"))
    return written

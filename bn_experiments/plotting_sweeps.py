"""Shared pieces of the sweep figures: labels and styles of groups of runs, mean curves, and the
figures of accuracy and steps to target against one swept number.

A sweep's runs (one per grid point, named `key=value,...`) are grouped with
`plotting.group_runs` by every swept key except `seed`; each group is one line, coloured by BN vs
no BN (`line_styles`) and labelled by its settings (`combo_label`), drawn as the mean over its seeds
with a ± 1 std band. Diverged runs and targets never reached are drawn as explicit markers ("x",
"never"), never as numbers.

`figures_vs_x` draws the figure of a sweep over one number (the learning rate in `lr_sweep`):
`<prefix>_accuracy.png` (best and final accuracy, with a strip counting the seeds that failed:
diverged, or ended at chance, the rule of `bn_experiments.sweep_outcomes`).
"""
from __future__ import annotations

import math
import pathlib
import re
import textwrap

import numpy as np
from matplotlib.lines import Line2D
from matplotlib.ticker import NullLocator

from bn_experiments.plotting import (
    LINE_STYLES,
    NORM_COLORS,
    NORM_LABELS,
    NORM_LONG_LABELS,
    OTHER_COLORS,
    SEED_KEY,
    final_number,
    fmt_num,
    generic_figures,
    group_runs,
    is_diverged,
    is_number,
    legend_below,
    mean_curve,
    mean_std,
    new_figure,
    read_curve,
    run_value,
    save_png,
    seed_band,
    seed_band_handle,
    shared_config_line,
    style_plain_axes,
    suptitle,
    swept_keys,
    target_accuracy,
)
from bn_experiments.sweep_outcomes import fails

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
            if key.startswith((prefix, "mean_" + prefix)):
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


def _failed(run: dict) -> bool:
    """The sweeps' fail rule (`bn_experiments.sweep_outcomes`): diverged or ended at chance."""
    return fails(run) if "final" in run else is_diverged(run)


def eval_split(runs: list[dict]) -> str:
    """'validation' when the runs evaluate on a split held out of the training set
    (`validation:<n>:<source>`), else 'test': how the figures name `test_accuracy`."""
    sources = {str(run_value(r, "data.source") or "") for r in runs}
    return "validation" if sources and all(s.startswith("validation:") for s in sources) else "test"


def _draw_accuracy_vs_x(ax, lines, styles, xkey, value_fn, rows_y, show_counts) -> None:
    """One line per group: mean ± std of `value_fn` over seeds against x; in the group's status row
    (`rows_y`) an "x" where seeds diverged and an open circle where they failed at chance
    (`sweep_outcomes`), with a k/n count of failed seeds when there are several seeds."""
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
            bad = [r for r in rs if _failed(r)]
            if not bad:
                continue
            div = any(is_diverged(r) for r in bad)
            ax.plot([x], [rows_y[j]], linestyle="none", zorder=4, clip_on=False, color=st["color"],
                    **({"marker": "x", "markersize": 7, "markeredgewidth": 2} if div else
                       {"marker": "o", "markersize": 6, "markerfacecolor": "white",
                        "markeredgewidth": 1.5}))
            if show_counts:
                ax.annotate(f"{len(bad)}/{len(rs)}", (x, rows_y[j]), xytext=(5, 0),
                            textcoords="offset points", va="center", fontsize=7,
                            color=st["color"])


def figures_vs_x(doc: dict, workdir: pathlib.Path, *, xkey: str, prefix: str, title: str,
                 xlabel: str) -> list[pathlib.Path]:
    """`<prefix>_accuracy.png` of a sweep over the number `xkey`, one line per setting of the other
    swept keys, mean ± std over seeds; the generic figure when the runs are not swept over
    `xkey`."""
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
    any_div = any(_failed(r) for r in runs)
    split = eval_split(runs)
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

    # Accuracy: max over training | final; a strip below 0 marks points where seeds failed.
    gap = min(0.055, 0.3 / max(1, len(lines)))
    strip_top = -0.025
    n = len(lines)
    rows_y = _status_rows(n, strip_top - n * gap, gap)[::-1]
    bottom = strip_top - n * gap - 0.01
    fig = new_figure(13.0, 5.8)
    axes = fig.subplots(1, 2, sharey=True)
    panels = ((f"best {split} accuracy during training", _max_accuracy),
              (f"final {split} accuracy (diverged runs left out)", _final_accuracy))
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
        axes[0].set_yticklabels([f"{t:g}" for t in ticks] + ["failed"])
        count = " (count / seeds)" if show_counts else ""
        if any(is_diverged(r) for r in runs):
            extra.append(Line2D([], [], color="0.3", marker="x", markeredgewidth=2,
                                linestyle="none", label="failed seeds, some diverged" + count))
        if any(_failed(r) and not is_diverged(r) for r in runs):
            extra.append(Line2D([], [], color="0.3", marker="o", markerfacecolor="white",
                                markeredgewidth=1.5, linestyle="none",
                                label="failed seeds, none diverged: at chance (best or final "
                                      "accuracy < 0.2)" + count))
    else:
        axes[0].set_ylim(0.0, 1.02)
        axes[0].set_yticks(ticks)
    axes[0].set_ylabel(f"{split} accuracy")
    legend_below(fig, line_handles + extra)
    suptitle(fig, f"{title}: {split} accuracy against {xlabel.split(' (')[0]}\n{setup}", fontsize=11)
    written.append(save_png(fig, workdir / f"{prefix}_accuracy.png"))
    return written

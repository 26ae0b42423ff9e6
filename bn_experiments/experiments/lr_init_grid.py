"""Learning rate x init std, jointly: where in that plane does each network train? Tests BN's
"much higher learning rates" and "less careful about initialization" together (Ioffe & Szegedy
2015, abstract).

`configs/lr_init_grid.py`: 7 learning rates (0.01 to 10) x 7 Gaussian init stds (1e-3 to 1) x
{no BN, BN} on Figure 1's 3 x 100 sigmoid MLP, at a reduced budget of 5,000 steps. Figure:

* `lr_init_grid_heatmap.png` - steps to the target accuracy over init std (rows) x learning rate
  (columns), one heatmap per BN setting on a shared log color scale; cells never reaching the
  target are marked "—", diverged ones "div".
"""
from __future__ import annotations

import math
import pathlib

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import LogNorm
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import NullLocator

from bn_experiments import runs as runs_lib
from bn_experiments import stats
from bn_experiments.experiments import Experiment, register
from bn_experiments.plotting import (
    DIVERGED_COLOR,
    NEVER_COLOR,
    SEED_KEY,
    fmt_num,
    fmt_steps,
    generic_figures,
    group_runs,
    is_diverged,
    is_number,
    legend_below,
    max_steps,
    mean_std,
    new_figure,
    run_value,
    save_png,
    steps_to_target,
    suptitle,
    swept_keys,
    target_accuracy,
)
from bn_experiments.plotting_sweeps import combo_label, setup_line, sweep_runs_or_none


def _fmt_thousands(steps: float) -> str:
    """Steps in a heatmap cell as '2.5k' (3 significant digits fit the cell)."""
    return f"{steps / 1000:.3g}k"


def figures(doc: dict, workdir: pathlib.Path) -> list[pathlib.Path]:
    """`lr_init_grid_heatmap.png`: steps to the target accuracy over learning rate (columns) x
    init std (rows), one heatmap per BN setting on a shared log color scale."""
    workdir = pathlib.Path(workdir)
    runs = sweep_runs_or_none(doc, ("learning_rate", "model.init_std"))
    if runs is None:
        return generic_figures(doc, workdir)
    target = target_accuracy(runs)
    keys = swept_keys(runs)
    xkey, ykey = "learning_rate", "model.init_std"
    panel_keys = [k for k in keys if k not in (xkey, ykey, SEED_KEY)]
    panels = group_runs(runs, panel_keys)
    xs = sorted({float(run_value(r, xkey)) for r in runs if is_number(run_value(r, xkey))})
    ys = sorted({float(run_value(r, ykey)) for r in runs if is_number(run_value(r, ykey))})
    cells = {}
    for combo, rs in panels.items():
        for run in rs:
            x, y = run_value(run, xkey), run_value(run, ykey)
            if is_number(x) and is_number(y):
                cells.setdefault((combo, xs.index(float(x)), ys.index(float(y))), []).append(run)
    values = []
    summary_cells = {}
    for key, rs in cells.items():
        steps = [steps_to_target(r, target) for r in rs]
        m, _, k = mean_std(steps)
        summary_cells[key] = (m, k, len(rs), sum(is_diverged(r) for r in rs))
        if k:
            values.append(m)
    eval_every = [float(e) for e in (run_value(r, "eval_every") for r in runs) if is_number(e) and e > 0]
    top = max_steps(runs) or (max(values) if values else 1.0)
    vmin = min([min(eval_every) if eval_every else top / 20] + values)
    vmax = max([top] + values)
    if vmin <= 0:
        vmin = min([v for v in values if v > 0] + [1.0])
    if vmax <= vmin:
        vmax = vmin * 10
    norm = LogNorm(vmin=vmin, vmax=vmax)
    cmap = colormaps["viridis"]

    fig = new_figure(max(8.0, 0.85 * len(xs) * len(panels) + 3.5), 0.62 * len(ys) + 3.0)
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
        ax.set_xticklabels([fmt_num(v) for v in xs])
        ax.set_yticks(range(len(ys)))
        ax.set_yticklabels([fmt_num(v) for v in ys])
        ax.set_xlim(-0.5, len(xs) - 0.5)
        ax.set_ylim(-0.5, len(ys) - 0.5)
        ax.set_xlabel("learning rate (SGD)")
        if ax is axes[0]:
            ax.set_ylabel("init std")
        ax.set_title(combo_label(panel_keys, combo, long_norm=True) if panel_keys else "",
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
    cbar.set_ticklabels([fmt_steps(t) for t in ticks])
    handles = []
    if any(k == 0 and d < n for (m, k, n, d) in summary_cells.values()):
        handles.append(Patch(facecolor=NEVER_COLOR, label="— never reached the target"))
    if any(k == 0 and d == n for (m, k, n, d) in summary_cells.values()):
        handles.append(Patch(facecolor=DIVERGED_COLOR, label="div: diverged"))
    if any(n > 1 for (m, k, n, d) in summary_cells.values()):
        handles.append(Line2D([], [], linestyle="none", label="k/n seeds: only k of n seeds "
                              "reached it (mean over those); d/n div: seeds that diverged"))
    if handles:
        legend_below(fig, handles)
    what = f"{target:g} test accuracy" if target is not None else "the target"
    budget = f" within {fmt_steps(top)} steps" if max_steps(runs) else ""
    suptitle(fig, f"Steps to reach {what}{budget} (k = thousand steps), over learning rate × init std"
                f"\n{setup_line(runs, spread=False)}", 11)
    return [save_png(fig, workdir / "lr_init_grid_heatmap.png")]


# ------------------------------------------------------------------------------------ claims

def claims(runs: list[dict]) -> list[dict]:
    """Rule (in the evidence): per seed, the number of (learning rate, init std) cells reaching the
    target with BN minus without."""
    if runs_lib.arms(runs) is None:
        return []
    bn, no = runs_lib.select(runs, model__norm=runs_lib.BN), runs_lib.select(runs, model__norm=runs_lib.NO_BN)
    iv = stats.paired(runs_lib.count_reaching(bn), runs_lib.count_reaching(no))
    cells = len(bn) // max(len({runs_lib.cfg(r, "seed") for r in bn}), 1)
    return [runs_lib.row(
        "lr_init_grid.bn_trains_over_more_of_the_plane",
        "With BN, many more (learning rate, init scale) pairs train", "IS abstract, Sec. 3.3",
        f"pairs reaching the target within {runs_lib.cfg(runs[0], 'steps'):,} steps, of {cells}, per seed: "
        f"BN {stats.mean_std(runs_lib.count_reaching(bn).values(), 3)}, no BN "
        f"{stats.mean_std(runs_lib.count_reaching(no).values(), 3)}; difference {stats.fmt(iv)}",
        "higher learning rates and less careful initialization (abstract)",
        stats.verdict(iv), "lr_init_grid_heatmap.png",
        stats.evidence(iv, stats.rule_single(
            "number of (learning rate, init std) cells reaching the target with BN - without",
            expect_text="above zero")))]


register(Experiment("lr_init_grid", claims=claims, figures=figures))

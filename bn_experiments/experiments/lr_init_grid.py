"""Learning rate x init scale, with seeds: does BN remove the need to tune the learning rate and
the initialization together (Ioffe & Szegedy 2015, abstract: "be less careful about
initialization"; Sec. 3.3: BN(Wu) = BN((aW)u)), and does it keep the sigmoid out of saturation
where a large init puts it (Sec. 1)?

`configs/lr_init_grid.py`: learning rates x Gaussian init stds x {no BN, BN} x seeds on Figure 1's
3 x 100 sigmoid MLP, evaluated on a validation split. For each arm, seed and init std the best
learning rate is the one with the best final validation accuracy among the runs that train
(`bn_experiments.sweep_outcomes.best_over`): both arms tuned, as a practitioner would.

Claims (rules in each row's evidence):
- `bn_less_careful_init`: per seed, the number of init stds at which the arm, at its best learning
  rate, ends at or above the target validation accuracy, BN minus no BN (a headline claim: 5
  seeds). The measured text adds each init std's best-over-lr accuracy of both arms, the best
  rates, and how many init stds one shared learning rate trains (what "tuning together" costs).
- `bn_reduces_saturation`: at the large init stds (>= `LARGE_INIT`), each arm at its best learning
  rate, runs that trained only: the mean of sigmoid'(x) over units, layers and evaluations (the
  sweep probe, `bn_experiments.sweep_probes`), BN minus no BN, with the |x| > 4 share beside it.

Figures: `lr_init_grid_heatmap.png` (final validation accuracy over learning rate x init std, per
arm, each init std's best rate outlined), `lr_init_grid_best_lr.png` (best-over-lr accuracy and
the best rate against the init std) and `lr_init_grid_saturation.png` (sigmoid'(x) and the |x| > 4
share at the best rate against the init std).
"""
from __future__ import annotations

import math
import pathlib

import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from bn_experiments import runs as runs_lib
from bn_experiments import stats
from bn_experiments import sweep_outcomes as outcomes
from bn_experiments.experiments import Experiment, register
from bn_experiments.plotting import (
    NORM_COLORS,
    NORM_LONG_LABELS,
    fmt_num,
    generic_figures,
    legend_below,
    new_figure,
    save_png,
    style_plain_axes,
    suptitle,
)
from bn_experiments.plotting_sweeps import eval_split, setup_line
from bn_experiments.sweep_probes import PROBE, layer_mean

LR, INIT = "learning_rate", "model.init_std"
LARGE_INIT = 0.3  # from here up, the sigmoid's inputs without BN start in its tails (|x| ~ 3+)
HEATMAP, BEST, SATURATION = ("lr_init_grid_heatmap.png", "lr_init_grid_best_lr.png",
                             "lr_init_grid_saturation.png")
ARMS = (runs_lib.NO_BN, runs_lib.BN)


def best_per_init(runs: list[dict]) -> dict:
    """{(arm, seed, init std): (best learning rate, its final validation accuracy, its run)}: each
    arm tuned over the learning rate for every init std and seed (None, None, None when no rate
    trains)."""
    out = {}
    for norm in ARMS:
        for s in sorted({runs_lib.cfg(r, "seed") for r in runs}):
            for i in runs_lib.values(runs, INIT):
                cell = runs_lib.select(runs, model__norm=norm, seed=s, model__init_std=i)
                if not cell:
                    continue
                lr, acc = outcomes.best_over(cell, LR)
                run = next((r for r in cell if runs_lib.cfg(r, LR) == lr), None)
                out[norm, s, i] = (lr, acc, run if lr is not None else None)
    return out


def _trains(acc, target) -> bool:
    return acc is not None and acc >= target


def _shared_lr_count(runs, norm, seed, target) -> int:
    """The most init stds one learning rate brings to the target (for one arm and seed)."""
    best = 0
    for lr in runs_lib.values(runs, LR):
        cell = runs_lib.select(runs, model__norm=norm, seed=seed, learning_rate=lr)
        best = max(best, sum(_trains(outcomes.final_accuracy(r), target) for r in cell
                             if not outcomes.fails(r)))
    return best


# ------------------------------------------------------------------------------------ claims

def _less_careful(runs, best, seeds, inits, target, split) -> dict:
    count = {n: {s: float(sum(_trains(best[n, s, i][1], target) for i in inits if (n, s, i) in best))
                 for s in seeds} for n in ARMS}
    shared = {n: {s: float(_shared_lr_count(runs, n, s, target)) for s in seeds} for n in ARMS}
    iv = stats.paired(count[runs_lib.BN], count[runs_lib.NO_BN])
    need = stats.HEADLINE_SEEDS
    per_init = []
    for i in inits:
        accs = {n: [best[n, s, i][1] for s in seeds if (n, s, i) in best] for n in ARMS}
        lrs = {n: sorted({best[n, s, i][0] for s in seeds if best.get((n, s, i), (None,))[0]})
               for n in ARMS}
        d = stats.paired({s: best[runs_lib.BN, s, i][1] for s in seeds if (runs_lib.BN, s, i) in best},
                         {s: best[runs_lib.NO_BN, s, i][1] for s in seeds if (runs_lib.NO_BN, s, i) in best})
        per_init.append(
            f"{i:g}: BN {stats.mean_std(accs[runs_lib.BN], 3)} (lr {'/'.join(f'{v:g}' for v in lrs[runs_lib.BN]) or '-'}), "
            f"no BN {stats.mean_std(accs[runs_lib.NO_BN], 3)} (lr {'/'.join(f'{v:g}' for v in lrs[runs_lib.NO_BN]) or '-'})"
            + (f", paired difference {stats.fmt(d)}" if d.n > 1 else ""))
    return runs_lib.row(
        "lr_init_grid.bn_less_careful_init",
        "With BN one can be less careful about initialization: tuned over the learning rate, BN "
        "trains at more init scales", "IS abstract, Sec. 3.3",
        f"init stds (of {len(inits)}, {inits[0]:g} to {inits[-1]:g}) where the arm at its best "
        f"learning rate ends at >= {target:g} {split} accuracy, per seed: BN "
        f"{stats.mean_std(count[runs_lib.BN].values(), 3)}, no BN "
        f"{stats.mean_std(count[runs_lib.NO_BN].values(), 3)}; BN - no BN {stats.fmt(iv)}. With "
        f"one learning rate for every init std: BN {stats.mean_std(shared[runs_lib.BN].values(), 3)}, "
        f"no BN {stats.mean_std(shared[runs_lib.NO_BN].values(), 3)}. Best-over-lr final {split} "
        "accuracy per init std (mean ± std over seeds; the best rates): " + "; ".join(per_init)
        + stats.seeds_note(len(seeds), need),
        "stated, no numbers (abstract: 'be less careful about initialization'); Sec. 3.3: "
        "BN(Wu) = BN((aW)u), so a layer's output does not depend on its weights' scale",
        stats.verdict(iv, min_seeds=need), BEST,
        stats.evidence(iv, stats.rule_single(
            f"number of init stds at which the arm, at its best learning rate (chosen per init std "
            f"and seed on the {split} split), ends at >= {target:g} {split} accuracy, BN - no BN",
            expect_text="above zero", min_seeds=need)))


def _saturation(best, seeds, inits, split) -> dict:
    large = [i for i in inits if i >= LARGE_INIT]
    ivs, parts = [], []
    for i in large:
        slope, sat = ({n: {} for n in ARMS} for _ in range(2))
        for s in seeds:
            runs_at = {n: best.get((n, s, i), (None, None, None))[2] for n in ARMS}
            if any(r is None for r in runs_at.values()):
                continue  # an arm that did not train at any rate: no pair
            for n, r in runs_at.items():
                slope[n][s], sat[n][s] = layer_mean(r, "slope"), layer_mean(r, "saturated")
        iv = stats.paired(slope[runs_lib.BN], slope[runs_lib.NO_BN])
        ivs.append(iv)
        parts.append(
            f"init {i:g}: {iv.n} seeds where both arms trained; mean sigmoid'(x) BN "
            f"{stats.mean_std(slope[runs_lib.BN].values(), 3)}, no BN "
            f"{stats.mean_std(slope[runs_lib.NO_BN].values(), 3)}, BN - no BN {stats.fmt(iv)}; "
            f"share |x| > 4 BN {stats.mean_std(sat[runs_lib.BN].values(), 3)}, no BN "
            f"{stats.mean_std(sat[runs_lib.NO_BN].values(), 3)}")
    verdict, _ = stats.verdict_over(ivs)
    return runs_lib.row(
        "lr_init_grid.bn_reduces_saturation",
        "BN keeps sigmoid inputs out of the saturated regime", "IS Sec. 1, Sec. 3.3",
        f"at init stds >= {LARGE_INIT:g}, each arm at its best learning rate, runs that trained "
        "(sigmoid'(x) is at most 0.25; mean over units, the 3 hidden layers and the evaluations "
        "after step 0, training mode on 500 training images): " + "; ".join(parts),
        "stated, no numbers: normalization keeps the nonlinearity inputs from getting stuck in "
        "the saturated regime, where gradients vanish (Sec. 1)", verdict, SATURATION,
        stats.evidence_over(ivs, stats.rule_over(
            "mean sigmoid'(x) with BN - without, each arm at its best learning rate (chosen on the "
            f"{split} split), seeds where both arms trained", "init std",
            expect_text="above zero (BN's units less saturated)"),
            seeds=len(seeds), over="init stds"))


def claims(runs: list[dict]) -> list[dict]:
    """Two rows: `bn_less_careful_init` and `bn_reduces_saturation` (module docstring)."""
    if runs_lib.arms(runs) is None or not runs_lib.values(runs, INIT):
        return []
    seeds = sorted({runs_lib.cfg(r, "seed") for r in runs})
    inits = runs_lib.values(runs, INIT)
    target = runs_lib.cfg(runs[0], "target_accuracy")
    split = eval_split(runs)
    best = best_per_init(runs)
    return [_less_careful(runs, best, seeds, inits, target, split),
            _saturation(best, seeds, inits, split)]


# ----------------------------------------------------------------------------------- figures

def _heatmap(runs, workdir, best, split) -> pathlib.Path:
    lrs, inits = runs_lib.values(runs, LR), runs_lib.values(runs, INIT)
    seeds = sorted({runs_lib.cfg(r, "seed") for r in runs})
    arms = [n for n in ARMS if runs_lib.select(runs, model__norm=n)]
    cmap, cnorm = colormaps["viridis"], Normalize(vmin=0.1, vmax=1.0)
    fig = new_figure(max(8.0, 1.0 * len(lrs) * len(arms) + 3.0), 0.62 * len(inits) + 3.0)
    axes = fig.subplots(1, len(arms), sharey=True, squeeze=False)[0]
    for ax, norm in zip(axes, arms):
        for xi, lr in enumerate(lrs):
            for yi, i in enumerate(inits):
                cell = runs_lib.select(runs, model__norm=norm, learning_rate=lr, model__init_std=i)
                if not cell:
                    continue
                accs = [outcomes.final_accuracy(r) for r in cell]
                m = float(np.mean([0.1 if a is None else a for a in accs]))
                bad = sum(map(outcomes.fails, cell))
                r, g, b, _ = cmap(cnorm(m))
                ax.add_patch(Rectangle((xi - 0.5, yi - 0.5), 1, 1, facecolor=(r, g, b), zorder=1))
                color = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"
                ax.text(xi, yi, f"{m:.2f}" + (f"\n{bad}/{len(cell)} fail" if bad else ""),
                        ha="center", va="center", fontsize=8 if bad else 9, color=color, zorder=3)
                wins = sum(best.get((norm, s, i), (None,))[0] == lr for s in seeds)
                if wins * 2 > len(seeds):
                    ax.add_patch(Rectangle((xi - 0.46, yi - 0.46), 0.92, 0.92, fill=False,
                                           edgecolor="#f25f5c", linewidth=2.2, zorder=4))
        ax.set_xticks(range(len(lrs)))
        ax.set_xticklabels([fmt_num(v) for v in lrs])
        ax.set_yticks(range(len(inits)))
        ax.set_yticklabels([fmt_num(v) for v in inits])
        ax.set_xlim(-0.5, len(lrs) - 0.5)
        ax.set_ylim(-0.5, len(inits) - 0.5)
        ax.set_xlabel("learning rate (SGD)")
        ax.set_title(NORM_LONG_LABELS.get(norm, norm), fontsize=11)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    axes[0].set_ylabel("init std (Gaussian)")
    fig.colorbar(ScalarMappable(cnorm, cmap), ax=list(axes), shrink=0.9, pad=0.02,
                 label=f"final {split} accuracy (mean over seeds; diverged = 0.1)")
    legend_below(fig, [Rectangle((0, 0), 1, 1, fill=False, edgecolor="#f25f5c", linewidth=2.2,
                                 label="the best learning rate for this init std in most seeds"),
                       Line2D([], [], linestyle="none", label="k/n fail: seeds that diverged or "
                              "ended at chance (< 0.2)")])
    suptitle(fig, f"Final {split} accuracy over learning rate × init std\n"
             + setup_line(runs, spread=False), 11)
    return save_png(fig, workdir / HEATMAP)


def _against_init(runs, workdir, best, file, panels, title) -> pathlib.Path:
    """Panels of a per-(arm, seed, init) value of the best-lr run against the init std: mean ±
    std over seeds per arm, each seed a small dot."""
    seeds = sorted({runs_lib.cfg(r, "seed") for r in runs})
    inits = runs_lib.values(runs, INIT)
    fig = new_figure(5.2 * len(panels) + 1.0, 4.8)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (ylabel, value, log, line) in zip(axes, panels):
        for k, norm in enumerate(ARMS):
            color = NORM_COLORS[norm]
            xs, ms, sds = [], [], []
            for i in inits:
                vals = [value(best.get((norm, s, i), (None, None, None))) for s in seeds]
                vals = [v for v in vals if v is not None and math.isfinite(v)]
                shift = 10 ** ((k - 0.5) * 0.04)
                ax.plot([i * shift] * len(vals), vals, "o", color=color, markersize=3, alpha=0.45,
                        zorder=2)
                if vals:
                    xs.append(i)
                    ms.append(float(np.exp(np.mean(np.log(vals)))) if log else float(np.mean(vals)))
                    sds.append(0.0 if log or len(vals) < 2 else float(np.std(vals, ddof=1)))
            if xs:
                ax.errorbar(xs, ms, yerr=sds, color=color, marker="s", markersize=5,
                            linewidth=1.8, capsize=3, zorder=3)
        if line is not None:
            ax.axhline(line, color="0.35", linestyle=":", linewidth=1.2)
        ax.set_xscale("log")
        if log:
            ax.set_yscale("log")
            grid = runs_lib.values(runs, LR)
            ax.set_yticks(grid, [fmt_num(v) for v in grid])
            ax.minorticks_off()
        style_plain_axes(ax, "init std (Gaussian)", ylabel)
    legend_below(fig, [Line2D([], [], color=NORM_COLORS[n], marker="s", linewidth=1.8,
                              label=NORM_LONG_LABELS[n]) for n in ARMS]
                 + [Line2D([], [], color="0.4", marker="o", markersize=3, linestyle="none",
                           label="one seed"),
                    Line2D([], [], color="0.4", marker="|", markersize=8, linestyle="none",
                           label="± 1 std over seeds" + (" (the rate: geometric mean, no bar)"
                                                        if any(p[2] for p in panels) else ""))])
    suptitle(fig, title + "\n" + setup_line(runs), 11)
    return save_png(fig, workdir / file)


def figures(doc: dict, workdir: pathlib.Path) -> list[pathlib.Path]:
    """The heatmap, the best-over-lr figure and the saturation figure (module docstring)."""
    workdir = pathlib.Path(workdir)
    runs = doc["runs"]
    if (runs_lib.arms(runs) is None or len(runs_lib.values(runs, INIT)) < 2
            or len(runs_lib.values(runs, LR)) < 2):
        return generic_figures(doc, workdir)
    split = eval_split(runs)
    best = best_per_init(runs)
    target = runs_lib.cfg(runs[0], "target_accuracy")
    out = [_heatmap(runs, workdir, best, split)]
    out.append(_against_init(runs, workdir, best, BEST, [
        (f"best-over-lr final {split} accuracy", lambda b: 0.1 if b[1] is None else b[1], False,
         target),
        ("best learning rate", lambda b: b[0], True, None)],
        f"Each arm at its best learning rate for every init std (chosen on the {split} split); a "
        "seed where no rate trains counts as chance (0.1) on the left and is left out on the right"))
    out.append(_against_init(runs, workdir, best, SATURATION, [
        ("mean sigmoid'(x) over units (max 0.25)",
         lambda b: layer_mean(b[2], "slope") if b[2] else None, False, 0.25),
        ("share of inputs with |x| > 4", lambda b: layer_mean(b[2], "saturated") if b[2] else None,
         False, None)],
        "Saturation of the sigmoid at each arm's best learning rate, runs that trained: mean over "
        "hidden layers and evaluations after step 0"))
    return out


register(Experiment("lr_init_grid", claims=claims, figures=figures, probe=PROBE))

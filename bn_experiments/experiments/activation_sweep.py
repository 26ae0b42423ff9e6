"""A deep sigmoid network with and without BN: does BN make a saturating nonlinearity trainable
(Ioffe & Szegedy 2015, Sec. 1 and Sec. 4.2.2, where Inception with sigmoids trains only with BN),
and is that BN fixing saturation or BN fixing a bad init?

`configs/activation_sweep.py`: sigmoid MLPs of 3 and 10 hidden layers x {no BN, BN} x Glorot init
gain {1, 4} x learning rates x seeds, evaluated on a validation split. Gain 1 puts the paper-like
N(0, 0.1^2) in the 100-wide layers, where a deep sigmoid network without BN starts with gradients
shrinking about 4x per layer; gain 4 corrects for sigmoid'(0) = 1/4 (Glorot & Bengio 2010), the
fair baseline. Every comparison takes each arm at its best learning rate for each seed
(`bn_experiments.sweep_outcomes.best_over`, on the validation split).

Claims (rules in each row's evidence):
- `deep_sigmoid_trains_with_bn`: best-over-lr final validation accuracy of the deepest network,
  BN minus no BN, at gain 1 (the paper-like init); a reproduced verdict becomes partly reproduced
  when the network without BN reaches the target at gain 4 (its failure was the init, not the
  sigmoid). The difference at gain 4 is reported beside it.
- `saturating_nonlinearities_train_with_bn`: per seed, the number of depths at which the arm, at
  its best init gain and learning rate, reaches the target accuracy, BN minus no BN (the settings
  that fail at the best learning rate are listed).
- `bn_reduces_saturation`: per setting, each arm at its best learning rate, runs that trained:
  the mean of sigmoid'(x) over units, layers and evaluations, BN minus no BN (the sweep probe,
  `bn_experiments.sweep_probes`), with the |x| > 4 share beside it.

Figures (each arm at its best learning rate per seed; a panel per depth x gain):
* `activation_sweep_curves.png` - validation accuracy over training;
* `activation_sweep_saturation.png` - mean sigmoid'(x) per hidden layer, averaged over training.
"""
from __future__ import annotations

import pathlib
import warnings

import numpy as np
from matplotlib.lines import Line2D

from bn_experiments import runs as runs_lib
from bn_experiments import stats
from bn_experiments import sweep_outcomes as outcomes
from bn_experiments.experiments import Experiment, register
from bn_experiments.plotting import (
    NORM_COLORS,
    NORM_LONG_LABELS,
    final_number,
    generic_figures,
    legend_below,
    new_figure,
    note_no_data,
    save_png,
    seed_band,
    seed_band_handle,
    style_plain_axes,
    style_step_axes,
    suptitle,
)
from bn_experiments.plotting_sweeps import eval_split, setup_line
from bn_experiments.sweep_probes import PROBE, layer_mean

LR, GAIN = "learning_rate", "model.init_std"
ARMS = (runs_lib.NO_BN, runs_lib.BN)
CURVES, SATURATION = "activation_sweep_curves.png", "activation_sweep_saturation.png"


def _depth(run: dict) -> int:
    return len(runs_lib.cfg(run, "model.widths"))


def settings(runs: list[dict]) -> list[tuple[int, float]]:
    """The (depth, init gain) settings of the sweep, shallow first."""
    return sorted({(_depth(r), runs_lib.cfg(r, GAIN)) for r in runs})


def best_runs(runs: list[dict], *, trained_only: bool = True) -> dict:
    """{(depth, gain, arm, seed): the run at the arm's best learning rate}. `trained_only=False`
    falls back, where no rate trains, to the rate with the best accuracy ever reached (for the
    figures, which show the failed arms too)."""
    out = {}
    for r in runs:
        key = (_depth(r), runs_lib.cfg(r, GAIN), runs_lib.cfg(r, "model.norm"), runs_lib.cfg(r, "seed"))
        out.setdefault(key, []).append(r)
    best = {}
    for key, cell in out.items():
        lr, _ = outcomes.best_over(cell, LR)
        if lr is not None:
            best[key] = next(r for r in cell if runs_lib.cfg(r, LR) == lr)
        elif not trained_only:
            best[key] = max(cell, key=lambda r: final_number(r, "max_test_accuracy") or 0.0)
    return best


def _mean_std(vals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (ddof=1; 0 for one seed) over seeds (axis 0), ignoring NaNs quietly."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(vals, axis=0)
        std = np.nanstd(vals, axis=0, ddof=1) if len(vals) > 1 else np.zeros_like(mean)
    return mean, np.nan_to_num(std)


def _acc(run: dict | None) -> float | None:
    """Final validation accuracy of a best-over-lr run; chance (0.1) when no rate trained."""
    if run is None:
        return 0.1
    a = outcomes.final_accuracy(run)
    return 0.1 if a is None else a


# ------------------------------------------------------------------------------------ claims

def _deep_sigmoid(runs, best, seeds, target, split) -> dict:
    deep = max(d for d, _ in settings(runs))
    gains = sorted({g for d, g in settings(runs) if d == deep})
    ivs, accs, parts = {}, {}, []
    reached = best_runs(runs, trained_only=False)
    for g in gains:
        acc = {n: {s: _acc(best.get((deep, g, n, s))) for s in seeds} for n in ARMS}
        lrs = {n: sorted({runs_lib.cfg(best[deep, g, n, s], LR) for s in seeds if (deep, g, n, s) in best})
               for n in ARMS}
        slope = {n: [layer_mean(reached[deep, g, n, s], "slope") for s in seeds
                     if (deep, g, n, s) in reached] for n in ARMS}
        ivs[g], accs[g] = stats.paired(acc[runs_lib.BN], acc[runs_lib.NO_BN]), acc
        parts.append(
            f"gain {g:g}: BN {stats.mean_std(acc[runs_lib.BN].values(), 3)} (lr "
            f"{'/'.join(f'{v:g}' for v in lrs[runs_lib.BN]) or 'none trains'}), no BN "
            f"{stats.mean_std(acc[runs_lib.NO_BN].values(), 3)} (lr "
            f"{'/'.join(f'{v:g}' for v in lrs[runs_lib.NO_BN]) or 'none trains'}), BN - no BN "
            f"{stats.fmt(ivs[g])}; mean sigmoid'(x) over training BN "
            f"{stats.mean_std(slope[runs_lib.BN], 3)}, no BN {stats.mean_std(slope[runs_lib.NO_BN], 3)}")
    low, fixed = gains[0], gains[-1]
    no_bn_fixed = accs[fixed][runs_lib.NO_BN].values()
    trains_fixed = 2 * sum(a >= target for a in no_bn_fixed) > len(no_bn_fixed)
    verdict = stats.verdict(ivs[low])
    if verdict == stats.REPRODUCED and fixed != low and trains_fixed:
        verdict = stats.PARTLY
    return runs_lib.row(
        "activation_sweep.deep_sigmoid_trains_with_bn",
        f"A deep ({deep} hidden layers) sigmoid network trains with BN, not without", "IS Sec. 1, Sec. 4.2.2",
        f"final {split} accuracy, each arm at its best learning rate per seed (chance, 0.1, where "
        "no rate trains): " + "; ".join(parts) + f". At init gain {fixed:g} the network without BN "
        + ("reaches" if trains_fixed else "does not reach") + f" {target:g} in most seeds",
        "BN-x5-Sigmoid reaches 69.8% on ImageNet; Inception with sigmoid never beats 1/1000 "
        "(Sec. 4.2.2)", verdict, CURVES,
        stats.evidence(ivs[low], stats.rule_single(
            f"best-over-lr final {split} accuracy with BN - without, at init gain {low:g} (the "
            "paper-like init)", expect_text="above zero")
            + f" A reproduced verdict becomes partly reproduced when, at init gain {fixed:g} (Glorot's "
            f"correction for the sigmoid's slope), the network without BN reaches {target:g} in "
            "most seeds: then its failure was the init, not the sigmoid (BN's advantage at that "
            "gain is in the measured text)."))


def _trainable(runs, seeds, target, split) -> dict:
    """Per depth, each arm at its best (init gain, learning rate): both are what one tunes."""
    depths = sorted({d for d, _ in settings(runs)})
    by_depth = {d: [r for r in runs if _depth(r) == d] for d in depths}
    count, failing = {n: {} for n in ARMS}, {n: [] for n in ARMS}
    for n in ARMS:
        for s in seeds:
            ok = 0
            for d in depths:
                cell = runs_lib.select(by_depth[d], model__norm=n, seed=s)
                acc = max((outcomes.final_accuracy(r) for r in cell if not outcomes.fails(r)),
                          default=0.1)
                ok += acc >= target
            count[n][s] = float(ok)
        for d, g in settings(runs):
            cell = runs_lib.select([r for r in by_depth[d] if runs_lib.cfg(r, GAIN) == g], model__norm=n)
            hits = sum((outcomes.best_over(runs_lib.select(cell, seed=s), LR)[1] or 0.1) >= target
                       for s in seeds)
            if 2 * hits <= len(seeds):
                failing[n].append(f"{d} layers/gain {g:g}")
    iv = stats.paired(count[runs_lib.BN], count[runs_lib.NO_BN])
    return runs_lib.row(
        "activation_sweep.saturating_nonlinearities_train_with_bn",
        "BN makes networks with saturating nonlinearities trainable", "IS Sec. 1",
        f"of {len(depths)} sigmoid depths ({', '.join(map(str, depths))} hidden layers), per seed "
        f"reaching {target:g} final {split} accuracy with the arm's best init gain and learning "
        f"rate: BN {stats.mean_std(count[runs_lib.BN].values(), 3)}, no BN "
        f"{stats.mean_std(count[runs_lib.NO_BN].values(), 3)}; BN - no BN {stats.fmt(iv)}. "
        "Settings (depth/gain) where most seeds miss it at the best learning rate: BN "
        f"{', '.join(failing[runs_lib.BN]) or 'none'}; no BN {', '.join(failing[runs_lib.NO_BN]) or 'none'}",
        "saturating nonlinearities become usable because BN keeps their inputs out of the "
        "saturated regime (Sec. 1, Sec. 3.3)", stats.verdict(iv), CURVES,
        stats.evidence(iv, stats.rule_single(
            f"number of depths at which the arm, at its best init gain and learning rate (chosen "
            f"on the {split} split), ends at >= {target:g} {split} accuracy, BN - no BN",
            expect_text="above zero")))


def _saturation(runs, best, seeds, split) -> dict:
    ivs, parts = [], []
    for d, g in settings(runs):
        pairs = [s for s in seeds if all((d, g, n, s) in best for n in ARMS)]
        slope = {n: {s: layer_mean(best[d, g, n, s], "slope") for s in pairs} for n in ARMS}
        sat = {n: [layer_mean(best[d, g, n, s], "saturated") for s in pairs] for n in ARMS}
        iv = stats.paired(slope[runs_lib.BN], slope[runs_lib.NO_BN])
        ivs.append(iv)
        parts.append(f"{d} layers, gain {g:g}: {len(pairs)} seeds where both arms trained; mean "
                     f"sigmoid'(x) BN {stats.mean_std(slope[runs_lib.BN].values(), 3)}, no BN "
                     f"{stats.mean_std(slope[runs_lib.NO_BN].values(), 3)}, BN - no BN {stats.fmt(iv)}; "
                     f"share |x| > 4 BN {stats.mean_std(sat[runs_lib.BN], 3)}, no BN "
                     f"{stats.mean_std(sat[runs_lib.NO_BN], 3)}")
    verdict, _ = stats.verdict_over(ivs)
    return runs_lib.row(
        "activation_sweep.bn_reduces_saturation",
        "BN keeps sigmoid inputs out of the saturated regime", "IS Sec. 1, Sec. 3.3",
        "each arm at its best learning rate, runs that trained (sigmoid'(x) is at most 0.25; mean "
        "over units, hidden layers and the evaluations after step 0, training mode on 500 "
        "training images): " + "; ".join(parts),
        "stated, no numbers: normalization keeps the nonlinearity inputs from getting stuck in "
        "the saturated regime (Sec. 1)", verdict, SATURATION,
        stats.evidence_over(ivs, stats.rule_over(
            f"mean sigmoid'(x) with BN - without, each arm at its best learning rate (chosen on "
            f"the {split} split), seeds where both arms trained", "setting",
            expect_text="above zero (BN's units less saturated)"), seeds=len(seeds)))


def claims(runs: list[dict]) -> list[dict]:
    """Three rows (module docstring), every comparison at each arm's best learning rate."""
    if runs_lib.arms(runs) is None or "sigmoid" not in runs_lib.values(runs, "model.activation"):
        return []
    runs = runs_lib.select(runs, model__activation="sigmoid")
    seeds = sorted({runs_lib.cfg(r, "seed") for r in runs})
    target = runs_lib.cfg(runs[0], "target_accuracy")
    split = eval_split(runs)
    best = best_runs(runs)
    return [_deep_sigmoid(runs, best, seeds, target, split), _trainable(runs, seeds, target, split),
            _saturation(runs, best, seeds, split)]


# ----------------------------------------------------------------------------------- figures

def _panels(runs):
    sets = settings(runs)
    depths = sorted({d for d, _ in sets})
    gains = sorted({g for _, g in sets})
    return depths, gains


def _curves_figure(runs, best, workdir, split) -> pathlib.Path:
    depths, gains = _panels(runs)
    seeds = sorted({runs_lib.cfg(r, "seed") for r in runs})
    fig = new_figure(4.8 * len(gains) + 1.5, 3.4 * len(depths) + 1.8)
    axes = np.atleast_2d(fig.subplots(len(depths), len(gains), sharex=True, sharey=True, squeeze=False))
    for i, d in enumerate(depths):
        for j, g in enumerate(gains):
            ax = axes[i, j]
            for n in ARMS:
                rs = [best[d, g, n, s] for s in seeds if (d, g, n, s) in best]
                curves = [runs_lib.curve(r, "test_accuracy") for r in rs]
                curves = [(np.asarray(st, float), np.asarray([np.nan if v is None else v for v in va], float))
                          for st, va in curves if st]
                if not curves:
                    continue
                k = min(len(c[0]) for c in curves)
                steps, vals = curves[0][0][:k], np.asarray([c[1][:k] for c in curves])
                mean, std = _mean_std(vals)
                trained = all(not outcomes.fails(r) for r in rs)
                seed_band(ax, steps, mean, std, NORM_COLORS[n])
                lrs = "/".join(f"{v:g}" for v in sorted({runs_lib.cfg(r, LR) for r in rs}))
                ax.plot(steps, mean, color=NORM_COLORS[n], linestyle="-" if trained else "--",
                        linewidth=1.8, label=f"{NORM_LONG_LABELS[n]} (lr {lrs})")
            ax.legend(fontsize=7.5, loc="best", frameon=True, framealpha=0.85)
            style_step_axes(ax, "training steps" if i == len(depths) - 1 else "",
                            f"{split} accuracy" if j == 0 else "")
            ax.set_title(f"{d} hidden layers, init gain {g:g}", fontsize=10)
    axes[0, 0].set_ylim(0.0, 1.02)
    legend_below(fig, [Line2D([], [], color=NORM_COLORS[n], linewidth=1.8, label=NORM_LONG_LABELS[n])
                       for n in ARMS]
                 + [seed_band_handle(),
                    Line2D([], [], color="0.3", linestyle="--", linewidth=1.8,
                           label="no learning rate trains (the one that got furthest)")])
    suptitle(fig, f"Sigmoid MLPs, each arm at its best learning rate per seed: {split} accuracy "
                  "over training (lr: the best rates)\n" + setup_line(runs), 11)
    return save_png(fig, workdir / CURVES)


def _saturation_figure(runs, best, workdir) -> pathlib.Path:
    depths, gains = _panels(runs)
    seeds = sorted({runs_lib.cfg(r, "seed") for r in runs})
    fig = new_figure(4.8 * len(gains) + 1.5, 3.2 * len(depths) + 1.8)
    axes = np.atleast_2d(fig.subplots(len(depths), len(gains), sharey=True, squeeze=False))
    for i, d in enumerate(depths):
        for j, g in enumerate(gains):
            ax = axes[i, j]
            drawn = False
            for k, n in enumerate(ARMS):
                rs = [best[d, g, n, s] for s in seeds if (d, g, n, s) in best]
                per = np.asarray([[final_number(r, f"mean_probe_slope_layer{l}") or np.nan
                                   for l in range(1, d + 1)] for r in rs], float)
                if per.size == 0:
                    continue
                trained = all(not outcomes.fails(r) for r in rs)
                layers = np.arange(1, d + 1) + (k - 0.5) * 0.12
                mean, std = _mean_std(per)
                ax.errorbar(layers, mean, yerr=std, color=NORM_COLORS[n], marker="o",
                            markersize=4, linewidth=1.6, capsize=2.5,
                            linestyle="-" if trained else "--")
                drawn = True
            ax.axhline(0.25, color="0.35", linestyle=":", linewidth=1.1)
            style_plain_axes(ax, "hidden layer" if i == len(depths) - 1 else "",
                             "mean sigmoid'(x)" if j == 0 else "")
            ax.set_xticks(range(1, d + 1))
            ax.set_title(f"{d} hidden layers, init gain {g:g}", fontsize=10)
            if not drawn:
                note_no_data(ax, "no slope curves")
    axes[0, 0].set_ylim(0.0, 0.26)
    legend_below(fig, [Line2D([], [], color=NORM_COLORS[n], marker="o", linewidth=1.6,
                              label=NORM_LONG_LABELS[n]) for n in ARMS]
                 + [Line2D([], [], color="0.3", linestyle="--", linewidth=1.6,
                           label="no learning rate trains (the one that got furthest)"),
                    Line2D([], [], color="0.35", linestyle=":", label="sigmoid'(0) = 0.25, the largest slope")])
    suptitle(fig, "Saturation per layer: mean sigmoid'(x) over units and over training (500 "
                  "training images), each arm at its best learning rate\n"
             + setup_line(runs), 11)
    return save_png(fig, workdir / SATURATION)


def figures(doc: dict, workdir: pathlib.Path) -> list[pathlib.Path]:
    """`activation_sweep_curves.png` and `activation_sweep_saturation.png` (module docstring)."""
    workdir = pathlib.Path(workdir)
    runs = [r for r in doc["runs"] if runs_lib.cfg(r, "model.activation") == "sigmoid"]
    if not runs or runs_lib.arms(runs) is None:
        return generic_figures(doc, workdir)
    best = best_runs(runs, trained_only=False)
    out = [_curves_figure(runs, best, workdir, eval_split(runs))]
    if any(k.startswith("mean_probe_slope_layer") for r in runs for k in r["final"]):
        out.append(_saturation_figure(runs, best, workdir))
    return out


register(Experiment("activation_sweep", claims=claims, figures=figures, probe=PROBE))

"""Saturating nonlinearities: does BN make them trainable (Ioffe & Szegedy 2015, Sec. 1 and
Sec. 4.2.2), and does it do so by reducing internal covariate shift (Santurkar et al. 2018, Sec. 2
argue it does not)?

`configs/activation_sweep.py`: activation {sigmoid, tanh, relu} x depth {3, 10 hidden layers of
100} x {no BN, BN} x seeds 0-2. Saturation is the fraction of a layer's pre-activations with
|x| > 4 on the test set; drift is the 1-Wasserstein distance of each layer's pre-activations
between consecutive evaluations. Figures, a panel per activation x depth, with and without BN,
mean ± std over seeds:

* `activation_sweep_curves.png` - test accuracy over training;
* `activation_sweep_saturation.png` - mean saturated fraction per layer (sigmoid and tanh only);
* `activation_sweep_drift.png` - mean W1 drift per layer.
"""
from __future__ import annotations

import pathlib

import numpy as np
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter

from bn_experiments import runs as runs_lib
from bn_experiments import stats
from bn_experiments.experiments import Experiment, register
from bn_experiments.plotting import (
    SEED_KEY,
    config_value,
    final_number,
    group_runs,
    legend_below,
    mean_std,
    new_figure,
    note_no_data,
    read_curve,
    run_value,
    save_png,
    seed_band_handle,
    step_range,
    style_plain_axes,
    style_step_axes,
    suptitle,
    swept_keys,
    target_accuracy,
)
from bn_experiments.plotting_sweeps import (
    draw_mean_curves,
    hidden_layers,
    line_legend,
    line_styles,
    setup_line,
    value_label,
)

SATURATING = ("sigmoid", "tanh")


def _layer_mean(run: dict, prefix: str, layer: int) -> float | None:
    """The run's mean of `{prefix}_layer{l}` over training (evaluations after step 0)."""
    key = f"mean_{prefix}_layer{layer}"
    if key in (run.get("final") or {}):
        return final_number(run, key)
    c = read_curve(run, f"{prefix}_layer{layer}")
    if c is None:
        return None
    vals = c[1][c[0] > 0]
    vals = vals[np.isfinite(vals)]
    return float(vals.mean()) if vals.size else None


def _panel_grid(runs: list[dict], keys: list[str], panel_keys: list[str]):
    """(row values, column values, {(row, col): runs}) for panels by activation and depth."""
    rk = panel_keys[0] if panel_keys else None
    ck = panel_keys[1] if len(panel_keys) > 1 else None
    rows = list(dict.fromkeys(run_value(r, rk) for r in runs)) if rk else [None]
    cols = list(dict.fromkeys(run_value(r, ck) for r in runs)) if ck else [None]
    cells: dict[tuple, list[dict]] = {}
    for run in runs:
        cell = (run_value(run, rk) if rk else None, run_value(run, ck) if ck else None)
        cells.setdefault(cell, []).append(run)
    return rows, cols, cells


def _panel_title(panel_keys: list[str], row, col) -> str:
    """'sigmoid, 10 hidden layers × 100': the panel's activation and depth."""
    parts = [value_label(k, v) for k, v in zip(panel_keys, (row, col))]
    return ", ".join(parts) if parts else ""


def _activation_layout(runs: list[dict]):
    """(swept keys, panel keys (activation, depth), line keys (the rest but seed), line groups,
    their styles): how the activation sweep's figures lay out its runs."""
    keys = swept_keys(runs)
    panel_keys = [k for k in ("model.activation", "model.widths") if k in keys]
    line_keys = [k for k in keys if k not in panel_keys and k != SEED_KEY]
    combos = list(group_runs(runs, line_keys))
    return keys, panel_keys, line_keys, combos, line_styles(line_keys, combos)


def _per_layer_figure(runs, workdir, file, *, prefix, ylabel, title, activations=None,
                      log_auto=False, percent=False) -> pathlib.Path | None:
    """A per-layer measure (`{prefix}_layer{l}`, averaged over training) against the hidden layer,
    a panel per activation x depth, a line per BN setting, mean ± std over seeds. None (no file)
    when no run recorded it."""
    """(swept keys, panel keys (activation, depth), line keys (the rest but seed), line
    groups, their styles): how the activation sweep's figures lay out its runs."""
    keys, panel_keys, line_keys, combos, styles = _activation_layout(runs)
    if activations is not None:
        runs = [r for r in runs if run_value(r, "model.activation") in activations]
    if not runs:
        return None
    rows, cols, cells = _panel_grid(runs, keys, panel_keys)
    layers = hidden_layers(runs, prefix)
    if not layers:
        return None
    data = {}
    for cell, rs in cells.items():
        for combo, g in group_runs(rs, line_keys).items():
            ls = hidden_layers(g, prefix)
            stats = [mean_std(_layer_mean(r, prefix, l) for r in g) for l in ls]
            data[cell, combo] = (np.array(ls), np.array([m for m, _, _ in stats]),
                                 np.array([s for _, s, _ in stats]))
    vals = np.concatenate([m[np.isfinite(m)] for _, m, _ in data.values()] or [np.array([])])
    if vals.size == 0:
        return None
    log = log_auto and (vals > 0).all() and vals.max() / vals.min() > 30
    fig = new_figure(max(6.0, 4.2 * len(cols) + 2.6), 3.4 * len(rows) + 1.3)
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
            style_plain_axes(ax, "hidden layer" if i == len(rows) - 1 else "", ylabel if j == 0 else "")
            ax.set_title(_panel_title(panel_keys, row, col), fontsize=10)
            if not drawn:
                note_no_data(ax, "no data")
                continue
            depth = max(len(run_value(r, "model.widths") or ()) for r in cells[row, col]) or max(layers)
            ax.set_xticks(list(range(1, depth + 1)))
            ax.set_xlim(0.5, depth + 0.5)
    if log:
        axes[0, 0].set_yscale("log")
    else:
        high = max(float(vals.max()) * 1.12, 0.01)
        axes[0, 0].set_ylim(-0.03 * high, high)
    if percent:
        axes[0, 0].yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{100 * v:g}%"))
    handles = line_legend(line_keys, combos, styles)
    if any(len(g) > 1 for rs in cells.values() for g in group_runs(rs, line_keys).values()):
        handles.append(Line2D([], [], color="0.3", marker="|", markersize=8, linestyle="none",
                              label="± 1 std over seeds"))
    legend_below(fig, handles)
    suptitle(fig, f"{title}\n{setup_line(runs)}", fontsize=11)
    return save_png(fig, workdir / file)


def figures(doc: dict, workdir: pathlib.Path) -> list[pathlib.Path]:
    """Per (activation, depth) panel, with and without BN, mean ± std over seeds:
    `activation_sweep_curves.png` (test accuracy over training), `activation_sweep_saturation.png`
    (mean saturated fraction per layer, saturating nonlinearities) and `activation_sweep_drift.png`
    (mean W1 drift of each layer's pre-activations between evaluations)."""
    workdir = pathlib.Path(workdir)
    runs = doc["runs"]
    keys, panel_keys, line_keys, combos, styles = _activation_layout(runs)
    rows, cols, cells = _panel_grid(runs, keys, panel_keys)
    target = target_accuracy(runs)
    xlim = step_range(runs)
    written = []

    fig = new_figure(max(6.5, 4.6 * len(cols) + 2.6), 3.3 * len(rows) + 1.4)
    axes = np.atleast_2d(fig.subplots(len(rows), len(cols), sharex=True, sharey=True, squeeze=False))
    any_drawn = any_div = False
    for i, row in enumerate(rows):
        for j, col in enumerate(cols):
            ax = axes[i, j]
            rs = cells.get((row, col), [])
            drawn = draw_mean_curves(ax, rs, "test_accuracy", line_keys, styles)
            any_drawn |= drawn
            any_div |= any(r.get("diverged_at_step") is not None for r in rs)
            if target is not None:
                ax.axhline(target, color="0.35", linestyle=":", linewidth=1.2, zorder=2)
            style_step_axes(ax, "training steps" if i == len(rows) - 1 else "",
                            "test accuracy" if j == 0 else "")
            ax.set_title(_panel_title(panel_keys, row, col), fontsize=10)
            if not drawn:
                note_no_data(ax, "no test_accuracy curve")
    if any_drawn:
        axes[0, 0].set_ylim(0.0, 1.02)
        if xlim is not None:
            axes[0, 0].set_xlim(*xlim)
        handles = line_legend(line_keys, combos, styles)
        if any(len(g) > 1 for rs in cells.values() for g in group_runs(rs, line_keys).values()):
            handles.append(seed_band_handle())
        if target is not None:
            handles.append(Line2D([], [], color="0.35", linestyle=":", linewidth=1.2,
                                  label=f"target accuracy {target:g}"))
        if any_div:
            handles.append(Line2D([], [], color="0.3", marker="X", markersize=9, linestyle="none",
                                  markeredgecolor="white", label="a seed diverged here"))
        legend_below(fig, handles)
        suptitle(fig, "Activation sweep: test accuracy over training, with and without BN\n"
                    + setup_line(runs), 11)
        written.append(save_png(fig, workdir / "activation_sweep_curves.png"))

    acts = {run_value(r, "model.activation") for r in runs}
    saturating = [a for a in SATURATING if a in acts]
    thr = config_value(runs, "saturation_threshold") or "4"
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


# ------------------------------------------------------------------------------------ claims

def _depth(run: dict) -> int:
    return len(runs_lib.cfg(run, "model.widths"))


def _mean_over_layers(run: dict, prefix: str) -> float | None:
    vals = [v for k, v in run["final"].items() if k.startswith(prefix) and runs_lib.finite(v)]
    return float(np.mean(vals)) if vals else None


def claims(runs: list[dict]) -> list[dict]:
    """Rules (in each row's evidence), all paired by seed: deep sigmoid -- best test accuracy of
    the deepest sigmoid network with BN minus without; saturating -- number of sigmoid/tanh
    (depth) settings reaching the target with BN minus without; saturation -- per sigmoid depth,
    over pairs where both runs trained, the share of saturated pre-activations without BN minus
    with BN; internal covariate shift -- per (activation, depth), the W1 drift without BN minus
    with BN (a headline claim: 5 seeds)."""
    if runs_lib.arms(runs) is None:
        return []
    depths = sorted({_depth(r) for r in runs})
    acts = runs_lib.values(runs, "model.activation")
    pick = lambda a, d, n: runs_lib.by_seed([r for r in runs_lib.select(runs, model__activation=a, model__norm=n)  # noqa: E731
                                    if _depth(r) == d])
    out, nseeds = [], len({runs_lib.cfg(r, "seed") for r in runs})
    if "sigmoid" in acts:
        deep = depths[-1]
        bn, no = ({s: r["final"].get("max_test_accuracy") for s, r in pick("sigmoid", deep, n).items()}
                  for n in (runs_lib.BN, runs_lib.NO_BN))
        iv = stats.paired(bn, no)
        out.append(runs_lib.row(
            "activation_sweep.deep_sigmoid_trains_with_bn",
            f"A deep ({deep} hidden layers) sigmoid network trains with BN, not without",
            "IS Sec. 1, Sec. 4.2.2",
            f"best test accuracy: BN {stats.mean_std(bn.values())}, no BN {stats.mean_std(no.values())}; "
            f"paired difference {stats.fmt(iv)}",
            "BN-x5-Sigmoid reaches 69.8% on ImageNet; Inception with sigmoid never beats 1/1000 "
            "(Sec. 4.2.2)", stats.verdict(iv), "activation_sweep_curves.png",
            stats.evidence(iv, stats.rule_single("best test accuracy with BN - without",
                                                 expect_text="above zero"))))
    sat = [(a, d) for a in acts if a in ("sigmoid", "tanh") for d in depths]
    if sat:
        seeds = sorted({runs_lib.cfg(r, "seed") for r in runs})
        count = {n: {s: float(sum(runs_lib.reached(pick(a, d, n)[s]) for a, d in sat if s in pick(a, d, n)))
                     for s in seeds} for n in (runs_lib.BN, runs_lib.NO_BN)}
        iv = stats.paired(count[runs_lib.BN], count[runs_lib.NO_BN])
        out.append(runs_lib.row(
            "activation_sweep.saturating_nonlinearities_train_with_bn",
            "BN makes networks with saturating nonlinearities trainable", "IS Sec. 1",
            f"of {len(sat)} sigmoid/tanh settings (depths {depths}), per seed reaching the target: "
            f"BN {stats.mean_std(count[runs_lib.BN].values(), 3)}, no BN {stats.mean_std(count[runs_lib.NO_BN].values(), 3)}; "
            f"difference {stats.fmt(iv)}",
            "saturating nonlinearities become usable because BN keeps their inputs out of the "
            "saturated regime (Sec. 1, Sec. 3.3)", stats.verdict(iv), "activation_sweep_curves.png",
            stats.evidence(iv, stats.rule_single(
                "number of sigmoid/tanh settings reaching the target with BN - without",
                expect_text="above zero"))))
    if "sigmoid" in acts:
        ivs, parts = [], []
        for d in depths:
            bn, no = pick("sigmoid", d, runs_lib.BN), pick("sigmoid", d, runs_lib.NO_BN)
            both = [s for s in bn if s in no and not bn[s]["final"].get("did_not_train")
                    and not no[s]["final"].get("did_not_train")]
            iv = stats.paired({s: _mean_over_layers(no[s], "mean_saturation_layer") for s in both},
                              {s: _mean_over_layers(bn[s], "mean_saturation_layer") for s in both})
            ivs.append(iv)
            parts.append(f"{d} layers: {len(both)} pairs where both trained, no BN - BN {stats.fmt(iv)}")
        verdict, _ = stats.verdict_over(ivs)
        out.append(runs_lib.row(
            "activation_sweep.bn_reduces_saturation",
            "BN keeps sigmoid inputs out of the saturated regime", "IS Sec. 1, Sec. 3.3",
            "mean share of sigmoid pre-activations with |x| > 4 over training: " + "; ".join(parts),
            "stated, no numbers: normalization keeps the nonlinearity inputs from getting stuck in "
            "the saturated regime (Sec. 1)", verdict, "activation_sweep_saturation.png",
            stats.evidence_over(ivs, stats.rule_over(
                "saturated share without BN - with BN (pairs where both runs trained)", "depth",
                expect_text="above zero"), seeds=nseeds, over="depths")))
    ivs, parts = [], []
    for a in acts:
        for d in depths:
            bn, no = pick(a, d, runs_lib.BN), pick(a, d, runs_lib.NO_BN)
            iv = stats.paired({s: _mean_over_layers(r, "mean_ics_w1_layer") for s, r in no.items()},
                              {s: _mean_over_layers(r, "mean_ics_w1_layer") for s, r in bn.items()})
            ivs.append(iv)
            parts.append(f"{a}/{d}: no BN - BN {stats.fmt(iv)}")
    need = stats.HEADLINE_SEEDS
    verdict, counts = stats.verdict_over(ivs, min_seeds=need)
    out.append(runs_lib.row(
        "activation_sweep.bn_reduces_internal_covariate_shift",
        "BN reduces internal covariate shift: each layer's input distribution moves less during "
        "training", "IS title, Sec. 1-2; disputed by ST Sec. 2",
        "W1 distance between a layer's test-set pre-activation distributions (running statistics) "
        "at consecutive evaluations, mean over layers and evaluations: " + "; ".join(parts)
        + stats.seeds_note(nseeds, need),
        "the paper's premise (Sec. 2, Fig. 1b,c); Santurkar et al. (Sec. 2) find BN does not "
        "necessarily reduce it", verdict, "activation_sweep_drift.png",
        stats.evidence_over(ivs, stats.rule_over("mean W1 drift without BN - with BN", "setting",
                                                 expect_text="above zero", min_seeds=need),
                            seeds=nseeds)))
    return out


register(Experiment("activation_sweep", claims=claims, figures=figures))

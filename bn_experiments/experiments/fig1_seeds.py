"""Figure 1 over seeds (Ioffe & Szegedy 2015, Sec. 4.1): does BN's speed-up of Fig. 1(a) hold
beyond one seed, and does it reduce the drift of each layer's inputs over training?

`configs/fig1_seeds.py` is `fig1_mnist` (3 x 100 sigmoid MLP, batch 60, 50,000 steps, lr 0.1,
N(0, 0.1²) init) as a grid: {no BN, BN} x seeds 0, 1, 2. The figures show the mean over seeds with
a ± 1 std band:

* `fig1_seeds_accuracy.png` - Fig. 1(a) over seeds: test accuracy against training steps, with and
  without BN, the steps at which each setting first reaches the target, diverged seeds marked.
* `fig1_seeds_drift.png` - internal covariate shift measured directly: the 1-Wasserstein distance
  of each hidden layer's pre-activations (test set) between consecutive evaluations, over training.
"""
from __future__ import annotations

import pathlib

import numpy as np

from bn_experiments.experiments import Experiment, fig1, register
from bn_experiments.plotting import (
    SEED_KEY,
    accuracy_ylim,
    config_value,
    fmt_num,
    group_runs,
    legend_below,
    mean_curve,
    mean_std,
    new_figure,
    note_no_data,
    read_curve,
    run_value,
    save_png,
    seed_band,
    seed_band_handle,
    step_range,
    steps_to_target,
    style_step_axes,
    suptitle,
    swept_keys,
    target_accuracy,
)
from bn_experiments.plotting_sweeps import (
    combo_label,
    draw_mean_curves,
    hidden_layers,
    line_legend,
    line_styles,
    setup_line,
)


def _diverged_label(base: str, runs: list[dict]) -> str:
    """'Without BN, seed 1: diverged at step 1,234' (several seeds: '..., seeds 1 / 2: ... steps')."""
    seeds = [run_value(r, SEED_KEY) for r in runs]
    steps = " / ".join(f"{r['diverged_at_step']:,}" for r in runs)
    many = len(runs) > 1
    who = f", seed{'s' if many else ''} {' / '.join(fmt_num(s) for s in seeds)}" \
        if all(s is not None for s in seeds) else ""
    return f"{base}{who}: diverged at step{'s' if many else ''} {steps}"


def figures(doc: dict, workdir: pathlib.Path) -> list[pathlib.Path]:
    """`fig1_seeds_accuracy.png` (Fig. 1(a) with mean ± std over seeds) and `fig1_seeds_drift.png`
    (W1 drift of each hidden layer's pre-activations over training, with and without BN)."""
    workdir = pathlib.Path(workdir)
    runs = doc["runs"]
    keys = swept_keys(runs)
    line_keys = [k for k in keys if k != SEED_KEY]
    groups = group_runs(runs, line_keys)
    order = {"none": 0, "batchnorm": 1}
    at = line_keys.index("model.norm") if "model.norm" in line_keys else None
    combos = sorted(groups, key=lambda c: order.get(c[at], 2) if at is not None else 0)
    styles = line_styles(line_keys, combos)
    for c in combos:
        styles[c]["linestyle"] = "-"
    target = target_accuracy(runs)
    xlim = step_range(runs)
    setup = setup_line(runs, 125)
    written = []

    fig = new_figure(8.5, 5.6 if len(combos) <= 3 else 5.6 + 0.2 * len(combos))
    ax = fig.add_subplot()
    handles, curves = [], []
    for combo in combos:
        rs = groups[combo]
        mc = mean_curve(rs, "test_accuracy")
        if mc is None:
            continue
        steps, mean, std, _ = mc
        curves.append((steps, mean - std))
        st = styles[combo]
        seed_band(ax, steps, mean, std, st["color"], alpha=0.22)
        label = combo_label(line_keys, combo, long_norm=True)
        if target is not None:
            hits = [steps_to_target(r, target) for r in rs]
            m, s, k = mean_std(hits)
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
            div, c = r.get("diverged_at_step"), read_curve(r, "test_accuracy")
            if div is not None and c is not None:
                div_x.append(div)
                div_y.append(float(c[1][np.isfinite(c[1])][-1]))
                div_runs.append(r)
        if div_runs:
            handles += ax.plot(div_x, div_y, marker="X", markersize=10, color=st["color"],
                               linestyle="none", markeredgecolor="white", zorder=5,
                               label=_diverged_label(label.split(" (")[0], div_runs))
    if curves:
        low, high = accuracy_ylim([(s, np.where(np.isfinite(v), v, np.nan)) for s, v in curves])
        ax.set_ylim(low, high)
        if any((v[np.isfinite(v)] < low - 1e-3).any() for _, v in curves):
            ax.text(0.01, 0.01, f"values below {low:.2f} are off the axis", transform=ax.transAxes,
                    ha="left", va="bottom", fontsize=7.5, color="0.45")
        if target is not None:
            handles.append(ax.axhline(target, color="0.35", linestyle=":", linewidth=1.2,
                                      label=f"target accuracy {target:g}"))
        if any(len(groups[c]) > 1 for c in combos):
            handles.append(seed_band_handle())
        if len(handles) <= 8:
            ax.legend(handles=handles, loc="lower right" if low >= 0.3 else "best", fontsize=9,
                      framealpha=0.9)
        else:  # many settings besides BN swept: too many entries to sit on the axes
            legend_below(fig, handles, max_cols=2)
        style_step_axes(ax, "training steps", "test accuracy")
        if xlim is not None:
            ax.set_xlim(*xlim)
        suptitle(fig, "Figure 1(a) over seeds: test accuracy, with and without BN", fontsize=12)
        ax.set_title(setup, fontsize=8, color="0.3")
        written.append(save_png(fig, workdir / "fig1_seeds_accuracy.png"))
    else:
        fig.clear()

    layers = hidden_layers(runs, "ics_w1")
    layers = [l for l in layers if any(read_curve(r, f"ics_w1_layer{l}") for r in runs)]
    if layers:
        fig = new_figure(max(7.0, 4.3 * len(layers) + 0.8), 4.9)
        axes = fig.subplots(1, len(layers), sharey=True, squeeze=False)[0]
        positive = [v for r in runs for l in layers for c in [read_curve(r, f"ics_w1_layer{l}")]
                    if c is not None for v in c[1][np.isfinite(c[1])] if v > 0]
        log = bool(positive) and max(positive) / min(positive) > 30
        for ax, l in zip(axes, layers):
            if not draw_mean_curves(ax, runs, f"ics_w1_layer{l}", line_keys, styles, log=log):
                note_no_data(ax, "no drift curve")
                continue
            style_step_axes(ax, "training steps", "W1 drift since previous evaluation"
                            if ax is axes[0] else "")
            ax.set_title(f"hidden layer {l}" + (f" of {max(layers)}" if len(layers) > 1 else ""),
                         fontsize=10.5)
            if xlim is not None:
                ax.set_xlim(*xlim)
        if log:
            axes[0].set_yscale("log")
        handles = line_legend(line_keys, combos, styles)
        if any(len(groups[c]) > 1 for c in combos):
            handles.append(seed_band_handle())
        legend_below(fig, handles)
        ev = config_value(runs, "eval_every")
        suptitle(fig, "Internal covariate shift over training: 1-Wasserstein distance of each unit's "
                    "input to the nonlinearity\nbetween consecutive evaluations"
                    + (f" ({ev} steps apart)" if ev else "") + ", test set, averaged over units\n"
                    + setup, 10.5)
        written.append(save_png(fig, workdir / "fig1_seeds_drift.png"))
    return written


# ------------------------------------------------------------------------------------ claims

def claims(runs: list[dict]) -> list[dict]:
    """Figure 1's claims (`fig1.claims`) over the seeds: the rules are the same, with the seeds
    a firm verdict needs."""
    return fig1.claims(runs, experiment="fig1_seeds", figure="fig1_seeds_accuracy.png")


register(Experiment("fig1_seeds", claims=claims, figures=figures))

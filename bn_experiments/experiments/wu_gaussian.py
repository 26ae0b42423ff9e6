"""Sec. 3.2 of Ioffe & Szegedy (2015): Wu + b is "more Gaussian" than the layer input u.

The paper normalizes x = Wu + b rather than the layer input u, arguing that u, the output of
another nonlinearity, has a distribution whose shape is likely to change during training, while
Wu + b "is more likely to have a symmetric, non-sparse distribution, that is 'more Gaussian'"
(citing Hyvärinen & Oja). The probe measures the three properties named there, for every hidden
layer l, on a fixed batch of `PROBE_BATCH` training images in training mode, at every evaluation:

- `<v>_skew`: the median over units of |skewness| (0 for a symmetric distribution);
- `<v>_kurt`: the median over units of |excess kurtosis| (0 for a Gaussian, -1.2 uniform);
- `<v>_zeros`: the fraction of exact zeros over units and examples (sparsity),

for v = `u` (the layer's input: the pixels for layer 1, the previous layer's activations g(.)
above) and v = `x` (what the layer normalizes: Wu without its bias with BN, as the paper places
BN; Wu + b without BN). Each statistic is taken per unit over the batch; a unit constant over the
batch (a border pixel that is 0 in every image) has no skewness or kurtosis and is left out of the
medians but counts in the zeros. Medians rather than means because a pixel that is lit in one
image of a thousand has a skewness near 30 and would dominate any mean.

The layer input u of layer l >= 2 is read through the model's own `apply`: the same parameters
with layer l's W replaced by the identity (and its bias by 0) make that layer's W u equal u
exactly (products with 1 and sums with 0 are exact in float arithmetic), so the probe needs no
knowledge of the activation function. The probe addresses the MLP's parameters.

The claim compares u with x paired within each run, over seeds, in every (activation, BN or not,
layer) setting from layer 2 on (where u is the output of a nonlinearity, the case the paper's
argument is about), averaged over the evaluations of training; layer 1 (u = the pixels) is
reported beside it. Not tested here: the second half of the
paper's argument (normalizing before vs after the nonlinearity, trained and compared) needs a
model option that places BN after g.
"""
from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.lines import Line2D

from bn_experiments import plotting, stats
from bn_experiments import runs as runs_lib
from bn_experiments.experiments import Experiment, register
from bn_experiments.probe import Probe, ProbeInputs

PROBE_BATCH = 1000
STATS = ("skew", "kurt", "zeros")
FIGURE = "wu_gaussian.png"
ACTIVATIONS = ("sigmoid", "relu")


def unit_moments(v: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per unit (column) of `v` (examples, units): skewness, excess kurtosis, and whether the unit
    varies at all over the examples (constant units have neither)."""
    v = v.astype(jnp.float32)
    mean = v.mean(0)
    c = v - mean
    var = jnp.mean(c ** 2, 0)
    varies = jnp.sqrt(var) > 1e-6 * (1 + jnp.abs(mean))
    safe = jnp.where(varies, var, 1.0)
    return jnp.mean(c ** 3, 0) / safe ** 1.5, jnp.mean(c ** 4, 0) / safe ** 2 - 3, varies


def shape_stats(v: jax.Array) -> dict:
    """{"skew": median |skewness|, "kurt": median |excess kurtosis| over the units that vary,
    "zeros": share of exact zeros} of `v` (examples, units)."""
    skew, kurt, varies = unit_moments(v)
    med = lambda s: jnp.nanmedian(jnp.where(varies, jnp.abs(s), jnp.nan))  # noqa: E731
    return {"skew": med(skew), "kurt": med(kurt), "zeros": jnp.mean(v == 0)}


def _through(inter: dict, bn: bool) -> list[jax.Array]:
    """Each hidden layer's x: BN's input Wu with BN, the pre-activation Wu + b without."""
    return inter["bn_inputs"] if bn else inter["preacts"]


def inputs_and_preacts(inp: ProbeInputs) -> tuple[list[jax.Array], list[jax.Array]]:
    """(u per hidden layer, x per hidden layer) on the probe batch, training mode."""
    _, _, inter = inp.apply(inp.params, inp.state, inp.x, True)
    bn = bool(inter["bn_inputs"])
    xs = _through(inter, bn)
    us = [inp.x.reshape(inp.x.shape[0], -1)]
    for i in range(1, len(inp.params["hidden"])):
        layer = dict(inp.params["hidden"][i])
        layer["w"] = jnp.eye(*layer["w"].shape, dtype=layer["w"].dtype)
        if "b" in layer:
            layer["b"] = jnp.zeros_like(layer["b"])
        hidden = list(inp.params["hidden"])
        hidden[i] = layer
        _, _, inter_i = inp.apply({**inp.params, "hidden": hidden}, inp.state, inp.x, True)
        us.append(_through(inter_i, bn)[i])
    return us, xs


def measure(inp: ProbeInputs) -> dict:
    """`u_<stat>` and `x_<stat>` for every stat, each a list over the hidden layers."""
    us, xs = inputs_and_preacts(inp)
    out = {}
    for name, vs in (("u", us), ("x", xs)):
        per_layer = [shape_stats(v) for v in vs]
        out.update({f"{name}_{s}": [p[s] for p in per_layer] for s in STATS})
    return out


# ------------------------------------------------------------------------------------ claims

def layers(runs: list[dict]) -> list[int]:
    prefix = "probe_u_skew_layer"
    return sorted({int(k[len(prefix):]) for r in runs for k in r["curves"] if k.startswith(prefix)})


def training_mean(run: dict, which: str, stat: str, layer: int) -> float | None:
    """The mean over the evaluations of training (after step 0) of one layer's statistic."""
    v = run["final"].get(f"mean_probe_{which}_{stat}_layer{layer}")
    return float(v) if runs_lib.finite(v) else None


def settings(runs: list[dict], first: int = 1) -> list[tuple[str, str, int]]:
    """(activation, norm, layer) settings present in the runs from layer `first` on, in a fixed
    order."""
    acts = runs_lib.values(runs, "model.activation")
    acts = [a for a in ACTIVATIONS if a in acts] + [a for a in acts if a not in ACTIVATIONS]
    norms = [n for n in (runs_lib.NO_BN, runs_lib.BN) if runs_lib.select(runs, model__norm=n)]
    return [(a, n, layer) for a in acts for n in norms for layer in layers(runs) if layer >= first
            if runs_lib.select(runs, model__activation=a, model__norm=n)]


# The settings a verdict counts: layers 2 and up, whose input u is the output of a nonlinearity,
# which is what the paper's argument is about. Layer 1's u is the pixels, the same images in every
# (activation, BN) arm of a seed: reported beside the verdict, not counted (it would count 4 times).
COUNTED_FROM = 2


ROWS = {
    "skew": ("wu_more_symmetric", "Wu + b is more symmetric than the layer input u",
             "median |skewness| over units"),
    "kurt": ("wu_closer_to_gaussian_tails",
             "Wu + b has tails closer to a Gaussian's than the layer input u",
             "median |excess kurtosis| over units"),
    "zeros": ("wu_less_sparse", "Wu + b is less sparse than the layer input u",
              "share of exact zeros"),
}


def _claim(runs: list[dict], stat: str) -> dict:
    cid, claim, what = ROWS[stat]
    intervals, parts = [], []
    for act, norm, layer in settings(runs, COUNTED_FROM):
        arm = runs_lib.by_seed(runs_lib.select(runs, model__activation=act, model__norm=norm))
        u = {s: training_mean(r, "u", stat, layer) for s, r in arm.items()}
        x = {s: training_mean(r, "x", stat, layer) for s, r in arm.items()}
        iv = stats.paired(u, x)
        intervals.append(iv)
        parts.append(f"{act} {plotting.NORM_LABELS.get(norm, norm)} layer {layer}: u "
                     f"{stats.mean_std(u.values(), 3)} vs x {stats.mean_std(x.values(), 3)}")
    pixels = [r for r in runs if training_mean(r, "u", stat, 1) is not None]
    first = (f"Layer 1 (u = the pixels; not counted): u "
             f"{stats.mean_std([training_mean(r, 'u', stat, 1) for r in pixels], 3)} vs x "
             f"{stats.mean_std([training_mean(r, 'x', stat, 1) for r in pixels], 3)} over all "
             "runs. " if pixels else "")
    verdict, counts = stats.verdict_over(intervals)
    seeds = min((iv.n for iv in intervals), default=0)
    rule = stats.rule_over(f"{what} of u minus that of x = Wu (+ b without BN), averaged over the "
                           "evaluations of training, paired within each run",
                           f"(activation, BN or not, layer >= {COUNTED_FROM}) setting",
                           expect_text="above zero (x more Gaussian than u)")
    measured = (first + f"{what}, u vs x (mean ± std over seeds): " + "; ".join(parts)
                + f". Settings agreeing {counts['agree']}, opposing {counts['oppose']}, inside the "
                f"noise {counts['noise']} of {len(intervals)}"
                + stats.seeds_note(seeds, stats.MIN_SEEDS))
    paper = ("Wu + b is more likely to have a symmetric, non-sparse, 'more Gaussian' "
             "distribution than u, the output of another nonlinearity (Sec. 3.2; an argument, "
             "not measured)")
    return runs_lib.row(f"wu_gaussian.{cid}", claim, "IS Sec. 3.2", measured, paper, verdict,
                        FIGURE, stats.evidence_over(intervals, rule, seeds=seeds, over="settings"))


def claims(runs: list[dict]) -> list[dict]:
    """Three claim rows (symmetric, Gaussian tails, non-sparse), each over the settings counted."""
    if not settings(runs, COUNTED_FROM):
        return []
    return [_claim(runs, stat) for stat in STATS]


# ----------------------------------------------------------------------------------- figures

PANELS = (("skew", "median |skewness|", True), ("kurt", "median |excess kurtosis|", True),
          ("zeros", "share of exact zeros", False))


def figures(doc: dict, workdir: pathlib.Path) -> list[pathlib.Path]:
    """One figure, three panels (one per statistic): for every (activation, BN or not, layer)
    setting, u (grey) beside x = Wu (+ b) (coloured by BN or not), the mean over seeds of the
    average over training with ± 1 std bars, joined by a line: x below u is the paper's claim."""
    runs = doc["runs"]
    sets = settings(runs)
    if not sets:
        return []
    fig = plotting.new_figure(13.5, 5.2)
    axes = fig.subplots(1, len(PANELS))
    pos = np.arange(len(sets), dtype=float)
    for ax, (stat, ylabel, log) in zip(axes, PANELS):
        for i, (act, norm, layer) in enumerate(sets):
            arm = runs_lib.select(runs, model__activation=act, model__norm=norm)
            vals = {w: plotting.mean_std(training_mean(r, w, stat, layer) for r in arm)
                    for w in ("u", "x")}
            color = plotting.NORM_COLORS.get(norm, "0.3")
            (mu, su, _), (mx, sx, _) = vals["u"], vals["x"]
            ax.plot([pos[i] - 0.15, pos[i] + 0.15], [mu, mx], color="0.7", linewidth=1, zorder=1)
            ax.errorbar(pos[i] - 0.15, mu, yerr=su, fmt="o", color="0.45", mfc="white",
                        markersize=5, capsize=2, zorder=2)
            ax.errorbar(pos[i] + 0.15, mx, yerr=sx, fmt="s", color=color, markersize=5,
                        capsize=2, zorder=3)
        if log:
            ax.set_yscale("log")
        plotting.style_plain_axes(ax, "", ylabel)
        ax.set_xticks(pos, [f"{a[:4]} {plotting.NORM_LABELS.get(n, n)} "
                            + ("L1 (pixels)" if layer == 1 else f"L{layer}")
                            for a, n, layer in sets], rotation=60, ha="right", fontsize=8)
    handles = [Line2D([], [], color="0.45", marker="o", mfc="white", linestyle="",
                      label="u, the layer input (pixels for L1)"),
               Line2D([], [], color=plotting.NORM_COLORS["none"], marker="s", linestyle="",
                      label="Wu + b (no BN)"),
               Line2D([], [], color=plotting.NORM_COLORS["batchnorm"], marker="s", linestyle="",
                      label="Wu, BN's input (BN)"),
               Line2D([], [], color="0.3", marker="|", linestyle="", label="± 1 std over seeds")]
    seeds = len({r["config"].get("seed") for r in runs})
    plotting.suptitle(fig, "Is Wu + b more Gaussian than u? (Ioffe & Szegedy, Sec. 3.2): "
                      f"per-unit shape statistics on {PROBE_BATCH} training images, averaged over "
                      "the evaluations of training (0 = Gaussian for the first two)\n"
                      f"{plotting.shared_config_line(runs)}; {seeds} seeds")
    plotting.legend_below(fig, handles, max_cols=4)
    return [plotting.save_png(fig, pathlib.Path(workdir) / FIGURE)]


register(Experiment("wu_gaussian", claims=claims, figures=figures,
                    probe=Probe(measure, batch_size=PROBE_BATCH)))

"""Sec. 3.3 of Ioffe & Szegedy (2015): normalization keeps small parameter changes small.

The paper: "By normalizing activations throughout the network, it prevents small changes to the
parameters from amplifying into larger and suboptimal changes in activations in gradients". The
probe tests this directly. At every evaluation of a training run it perturbs every weight matrix M
(each hidden layer's W and the output layer's W; biases, gamma and beta untouched) by a random
direction of a fixed relative size,

    M' = M + eps * ||M|| * D / ||D||,   D ~ N(0, I),

for each eps in `SIZES` (the same D for every size, so the sizes show whether the response is
linear), and measures, on a fixed batch of training images in training mode (BN with the batch's
statistics, as in the gradient step), layer by layer:

- `act_change_e<eps>`: ||z' - z|| / ||z|| for each hidden layer's pre-activation z (the input of
  its nonlinearity: BN's output with BN, Wu + b without), and for the logits as the last layer;
- `grad_change_e<eps>`: ||g' - g|| / ||g|| for the loss gradient g with respect to each hidden
  layer's W, and the output layer's W as the last layer.

Both are relative to the uncentered norm: what the next layer receives is the value, not its
deviation from the batch mean. Without BN the pre-activations of layers 2 and 3 carry a common
offset (sigmoid outputs near 0.5 times the column sums of W) that this norm counts as signal; with
BN they are centred, so the same absolute change is a larger relative one.

The direction is drawn from a key derived from the step alone (`direction_key`), so at a given
step both arms of a seed pair, and every seed, get the same draw of D (scaled to their own
weights' norms). The amplification of a quantity is its relative change divided by eps: 1 means a
parameter change of relative size eps moves it by a relative eps. The claim compares the
amplification with and without BN, paired by seed, at init (step 0) and averaged over the
evaluations of training, in every layer; the verdict counts the (phase, layer) settings whose
paired interval of log10(amplification without BN / with BN) lies above zero. The probe addresses
the MLP's parameters (`params["hidden"][l]["w"]`, `params["output"]["w"]`).
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

SIZES = (1e-3, 1e-2)
CHECK_SIZE = 1e-3          # the verdicts use this size; the other shows how linear the response is
MEASURES = ("act_change", "grad_change")
PHASES = ("init", "training")
FIGURE = "small_changes.png"
_DIRECTION_SALT = 0x5C4A


def key(measure_name: str, eps: float) -> str:
    return f"{measure_name}_e{eps:g}"


def direction_key(step: jax.Array) -> jax.Array:
    """The key of the random direction at `step`: the same for every run at that step."""
    return jax.random.fold_in(jax.random.key(_DIRECTION_SALT), step)


def weight_paths(params: dict) -> list[tuple]:
    """The weight matrices the probe perturbs, as paths into `params`: hidden W's, then output W."""
    return [("hidden", i, "w") for i in range(len(params["hidden"]))] + [("output", "w")]


def _get(params, path):
    for p in path:
        params = params[p]
    return params


def _set(params, path, value):
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(params, list):
        out = list(params)
        out[head] = _set(params[head], rest, value)
        return out
    return {**params, head: _set(params[head], rest, value)}


def perturb(params: dict, k: jax.Array, eps) -> dict:
    """`params` with every weight matrix M moved by eps * ||M|| along a random unit direction
    (drawn from `k`, one per matrix); everything else unchanged. eps = 0 returns the same values."""
    paths = weight_paths(params)
    for path, kk in zip(paths, jax.random.split(k, len(paths))):
        m = _get(params, path)
        d = jax.random.normal(kk, m.shape, m.dtype)
        params = _set(params, path, m + eps * jnp.linalg.norm(m) * d / jnp.linalg.norm(d))
    return params


def _relative(new: jax.Array, old: jax.Array) -> jax.Array:
    return jnp.linalg.norm((new - old).ravel()) / jnp.linalg.norm(old.ravel())


def measure(inp: ProbeInputs) -> dict:
    """Relative changes of pre-activations (+ logits) and of weight gradients, per layer and eps."""
    paths = weight_paths(inp.params)

    def quantities(params):
        def loss(p):
            out = inp.loss_fn(p, inp.state, inp.x, inp.y)
            return out[0], out[1][1]
        (_, inter), grads = jax.value_and_grad(loss, has_aux=True)(params)
        logits = inp.apply(params, inp.state, inp.x, True)[0]
        return [*inter["preacts"], logits], [_get(grads, p) for p in paths]

    acts, grads = quantities(inp.params)
    k = direction_key(inp.step)
    out = {}
    for eps in SIZES:
        acts2, grads2 = quantities(perturb(inp.params, k, eps))
        out[key("act_change", eps)] = [_relative(a2, a) for a2, a in zip(acts2, acts)]
        out[key("grad_change", eps)] = [_relative(g2, g) for g2, g in zip(grads2, grads)]
    return out


# ------------------------------------------------------------------------------------ claims

def layers(runs: list[dict]) -> list[int]:
    """The layer numbers the probe recorded (hidden layers, then the output as the last)."""
    prefix = f"probe_{key('act_change', CHECK_SIZE)}_layer"
    return sorted({int(k[len(prefix):]) for r in runs for k in r["curves"] if k.startswith(prefix)})


def amplification(run: dict, measure_name: str, layer: int, phase: str,
                  eps: float = CHECK_SIZE) -> float | None:
    """Relative change / eps of one layer: at step 0 (`init`) or averaged over the evaluations
    after it (`training`); None without data."""
    if phase == "training":
        v = run["final"].get(f"mean_probe_{key(measure_name, eps)}_layer{layer}")
    else:
        steps, vals = runs_lib.curve(run, f"probe_{key(measure_name, eps)}_layer{layer}")
        v = vals[0] if steps and steps[0] == 0 else None
    return v / eps if runs_lib.finite(v) else None


def _log_amps(arm: dict, measure_name: str, layer: int, phase: str) -> dict:
    out = {}
    for s, run in arm.items():
        a = amplification(run, measure_name, layer, phase)
        if a is not None and a > 0:
            out[s] = float(np.log10(a))
    return out


def _layer_name(layer: int, last: int) -> str:
    return "output" if layer == last else f"layer {layer}"


def _claim(runs, cid, claim, measure_name, what, paper) -> dict:
    bn, no = runs_lib.arms(runs)
    ls = layers(runs)
    intervals, parts = [], []
    for phase in PHASES:
        per_layer = []
        for layer in ls:
            iv = stats.paired(_log_amps(no, measure_name, layer, phase),
                              _log_amps(bn, measure_name, layer, phase))
            intervals.append(iv)
            amp = lambda arm: stats.mean_std(  # noqa: E731
                [amplification(r, measure_name, layer, phase) for r in arm.values()], 3)
            per_layer.append(f"{_layer_name(layer, ls[-1])} {amp(no)} vs {amp(bn)} "
                             f"(log10 ratio {stats.fmt(iv, 2)})")
        parts.append(f"{phase}: " + "; ".join(per_layer))
    verdict, counts = stats.verdict_over(intervals)
    linear = {eps: stats.mean_std([amplification(r, measure_name, ls[-1], "training", eps)
                                   for arm in (bn, no) for r in arm.values()], 3) for eps in SIZES}
    rule = stats.rule_over(
        f"log10 of the amplification (relative change of the {what} / eps, eps = "
        f"{CHECK_SIZE:g}) without BN minus with BN", "(phase, layer) setting",
        expect_text="above zero (BN amplifies less)")
    measured = (f"amplification of a relative weight change eps = {CHECK_SIZE:g} into the {what}, "
                f"without BN vs with BN (mean ± std over seeds), " + " | ".join(parts)
                + f". Settings agreeing {counts['agree']}, opposing {counts['oppose']}, inside "
                f"the noise {counts['noise']} of {len(intervals)}. Linearity: the output's "
                f"amplification over training at eps = {SIZES[0]:g} / {SIZES[1]:g}: "
                f"{linear[SIZES[0]]} / {linear[SIZES[1]]} (both arms)")
    n = min(len(bn), len(no))
    return runs_lib.row(f"small_changes.{cid}", claim, "IS Sec. 3.3",
                        measured + stats.seeds_note(n, stats.MIN_SEEDS), paper, verdict, FIGURE,
                        stats.evidence_over(intervals, rule, seeds=n, over="settings"))


def claims(runs: list[dict]) -> list[dict]:
    """Two claim rows (activations; gradients), each over (phase, layer), paired by seed."""
    if runs_lib.arms(runs) is None or not layers(runs):
        return []
    paper = ("normalizing activations throughout the network prevents small changes to the "
             "parameters from amplifying into larger changes in activations and gradients "
             "(Sec. 3.3; stated, not measured)")
    return [
        _claim(runs, "activation_changes_not_amplified",
               "With BN a small random change of the weights changes the layers' activations "
               "less than without BN", "act_change", "pre-activations (logits for the output)",
               paper),
        _claim(runs, "gradient_changes_not_amplified",
               "With BN a small random change of the weights changes the weight gradients less "
               "than without BN", "grad_change", "loss gradient w.r.t. each layer's W", paper),
    ]


# ----------------------------------------------------------------------------------- figures

PANELS = (("act_change", "relative change of pre-activations / eps"),
          ("grad_change", "relative change of ∂loss/∂W / eps"))


def figures(doc: dict, workdir: pathlib.Path) -> list[pathlib.Path]:
    """One figure, two panels (activations, gradients): each layer's amplification at eps =
    CHECK_SIZE over training on a log axis, mean over seeds with a ± 1 std band, with and
    without BN."""
    runs = doc["runs"]
    ls = layers(runs)
    if not ls:
        return []
    fig = plotting.new_figure(12.5, 5.0)
    axes = fig.subplots(1, len(PANELS))
    styles = plotting.LINE_STYLES
    for ax, (name, ylabel) in zip(axes, PANELS):
        for norm in ("none", "batchnorm"):
            arm = runs_lib.select(runs, model__norm=norm)
            color = plotting.NORM_COLORS[norm]
            for i, layer in enumerate(ls):
                mc = plotting.mean_curve(arm, f"probe_{key(name, CHECK_SIZE)}_layer{layer}")
                if mc is None:
                    continue
                steps, mean, std, _ = mc
                ls_, marker = styles[i % len(styles)]
                ax.plot(steps, mean / CHECK_SIZE, color=color, linestyle=ls_, marker=marker,
                        markersize=3.5, linewidth=1.6, zorder=3)
                plotting.seed_band(ax, steps, mean / CHECK_SIZE, std / CHECK_SIZE, color, log=True)
        ax.set_yscale("log")
        plotting.style_step_axes(ax, "training step", ylabel)
    handles = [Line2D([], [], color=plotting.NORM_COLORS[n], linewidth=2,
                      label=plotting.NORM_LONG_LABELS[n]) for n in ("none", "batchnorm")]
    handles += [Line2D([], [], color="0.3", linestyle=styles[i % len(styles)][0],
                       marker=styles[i % len(styles)][1],
                       label="output (logits / output W)" if layer == ls[-1]
                       else f"hidden layer {layer}") for i, layer in enumerate(ls)]
    handles.append(plotting.seed_band_handle())
    seeds = len({r["config"].get("seed") for r in runs})
    plotting.suptitle(fig, "Small parameter changes (Ioffe & Szegedy, Sec. 3.3): every weight "
                      f"matrix moved by eps = {CHECK_SIZE:g} of its norm in a random direction; "
                      "relative change per layer / eps (1 = not amplified)\n"
                      f"{plotting.shared_config_line(runs)}; {seeds} seeds")
    plotting.legend_below(fig, handles, max_cols=4)
    return [plotting.save_png(fig, pathlib.Path(workdir) / FIGURE)]


register(Experiment("small_changes", claims=claims, figures=figures, probe=Probe(measure)))

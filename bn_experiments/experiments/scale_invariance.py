"""Sec. 3.3 of Ioffe & Szegedy (2015): BN makes a layer indifferent to the scale of its weights.

The paper: BN(Wu) = BN((aW)u) for a scalar a, so (i) the network's output does not change when a
layer's weights are rescaled, (ii) the Jacobian with respect to the layer input u is unchanged,
and (iii) the gradient with respect to the rescaled weights aW is 1/a times the gradient with
respect to W: larger weights get smaller gradients, which is the paper's reason why BN tolerates
large learning rates.

The probe measures all three at every evaluation of a training run, on a fixed batch of training
images, for each hidden layer l and each a in `SCALES` (W_l -> a W_l, everything else fixed,
training-mode BN with the batch's statistics, as in the gradient step), under keys `<measure>_a<a>`:

- `output_change`: ||f(a W_l) - f(W_l)|| / ||f(W_l)|| of the logits;
- `grad_scaling_error`: | a ||g(a W_l)|| / ||g(W_l)|| - 1 | with g the loss gradient with respect
  to that layer's weights (0 when the 1/a law holds);
- `input_grad_change`: relative change of the loss gradient with respect to the input images.

The identities are exact for BN without its epsilon. With it, rescaling by a turns epsilon into
epsilon / a^2, so the deviation is about epsilon / (2 a^2 Var(W_l u)): negligible for a >= 1
(float32 noise, about 1e-4 at most here), but at a = 0.1 and a batch variance of W_l u near 0.04
(the last hidden layer) it reaches about 1%. The claims therefore test the identity at a = 10
(`CHECK_SCALE`, below `TOLERANCE`) and report a = 0.1 beside it. Without BN the same rescaling
changes everything by order 1. The probe addresses the MLP's parameters
(`params["hidden"][l]["w"]`): this experiment is about that model.
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

SCALES = (0.1, 10.0)
MEASURES = ("output_change", "grad_scaling_error", "input_grad_change")
CHECK_SCALE = 10.0
# At a = CHECK_SCALE the identities hold when the deviation stays below this: float32 arithmetic
# plus BN's epsilon (about epsilon / (2 Var(Wu)) <= 1e-4 here); without BN it is of order 1.
TOLERANCE = 1e-3
FIGURE = "scale_invariance.png"


def rescale(params: dict, layer: int, a) -> dict:
    """`params` with hidden layer `layer`'s weight matrix multiplied by `a` (nothing else)."""
    hidden = list(params["hidden"])
    hidden[layer] = {**hidden[layer], "w": hidden[layer]["w"] * a}
    return {**params, "hidden": hidden}


def _relative(new: jax.Array, old: jax.Array) -> jax.Array:
    return jnp.linalg.norm((new - old).ravel()) / jnp.linalg.norm(old.ravel())


def key(measure_name: str, a: float) -> str:
    return f"{measure_name}_a{a:g}"


def measure(inp: ProbeInputs) -> dict:
    """The three deviations for every scale, each a list over the hidden layers."""
    def loss(params, x):
        return inp.loss_fn(params, inp.state, x, inp.y)[0]

    def logits(params):
        return inp.apply(params, inp.state, inp.x, train=True)[0]

    grad_w, grad_x = jax.grad(loss, argnums=(0, 1))(inp.params, inp.x)
    base = logits(inp.params)
    out = {key(m, a): [] for a in SCALES for m in MEASURES}
    for layer in range(len(inp.params["hidden"])):
        g_old = jnp.linalg.norm(grad_w["hidden"][layer]["w"])
        for a in SCALES:
            scaled = rescale(inp.params, layer, a)
            g_w, g_x = jax.grad(loss, argnums=(0, 1))(scaled, inp.x)
            out[key("output_change", a)].append(_relative(logits(scaled), base))
            out[key("grad_scaling_error", a)].append(
                jnp.abs(a * jnp.linalg.norm(g_w["hidden"][layer]["w"]) / g_old - 1))
            out[key("input_grad_change", a)].append(_relative(g_x, grad_x))
    return out


# ------------------------------------------------------------------------------------ claims

def worst(run: dict, measure_name: str, a: float = CHECK_SCALE) -> float | None:
    """The largest deviation at scale `a` over the run's layers and evaluations (None: no data)."""
    prefix = f"probe_{key(measure_name, a)}_layer"
    vals = [v for k, c in run["curves"].items() if k.startswith(prefix)
            for v in c["value"] if v is not None]
    return float(max(vals)) if vals else None


def _claim(runs, cid, claim, measure_name, what, paper) -> dict:
    bn, no = runs_lib.arms(runs)
    seeds = sorted(set(bn) & set(no))
    w_bn = {s: worst(bn[s], measure_name) for s in seeds}
    w_no = {s: worst(no[s], measure_name) for s in seeds}
    small = {s: worst(bn[s], measure_name, min(SCALES)) for s in seeds}
    log = lambda d: {s: np.log10(v) for s, v in d.items() if v is not None and v > 0}  # noqa: E731
    iv = stats.paired(log(w_no), log(w_bn))
    verdict = stats.verdict(iv)
    within = all(v is not None and v < TOLERANCE for v in w_bn.values())
    if verdict == stats.REPRODUCED and not within:
        verdict = stats.PARTLY
    rule = stats.rule_single(
        f"log10 of the largest {what} over layers and evaluations at a = {CHECK_SCALE:g}, "
        "without BN minus with BN", expect_text="above zero (BN far less sensitive to the weights' scale)")
    rule += (f" A reproduced verdict also needs BN's largest deviation below {TOLERANCE:g} in "
             "every seed (the identity holds), else it is partly reproduced.")
    return {"id": f"scale_invariance.{cid}", "claim": claim, "source": "IS Sec. 3.3",
            "measured": f"largest {what} at a = {CHECK_SCALE:g}: BN {stats.mean_std(w_bn.values(), 3)} "
                        f"(every seed below {TOLERANCE:g}: {'yes' if within else 'no'}), no BN "
                        f"{stats.mean_std(w_no.values(), 3)}; paired log10 ratio (no BN / BN) "
                        f"{stats.fmt(iv)}; at a = {min(SCALES):g}, where BN's epsilon counts "
                        f"1/a^2 times more, BN {stats.mean_std(small.values(), 3)}",
            "paper": paper, "verdict": verdict, "figure": FIGURE,
            "evidence": stats.evidence(iv, rule)}


def claims(runs: list[dict]) -> list[dict]:
    """Two claim rows (output invariance; the 1/a gradient law), paired by seed, BN vs no BN."""
    if runs_lib.arms(runs) is None:
        return []
    return [
        _claim(runs, "bn_output_scale_invariant",
               "Rescaling the weights feeding a BN layer leaves the network's output unchanged: "
               "BN(Wu) = BN((aW)u)", "output_change", "relative change of the logits",
               "BN(Wu) = BN((aW)u) and dBN((aW)u)/du = dBN(Wu)/du (Sec. 3.3, exact identities)"),
        _claim(runs, "bn_gradient_scales_inversely",
               "The gradient with respect to rescaled weights aW is 1/a times the gradient with "
               "respect to W", "grad_scaling_error", "deviation |a ||g(aW)|| / ||g(W)|| - 1|",
               "dBN((aW)u)/d(aW) = (1/a) dBN(Wu)/dW: larger weights get smaller gradients, which "
               "stabilizes parameter growth (Sec. 3.3)"),
    ]


# ----------------------------------------------------------------------------------- figures

PANELS = (("output_change", "relative change of the logits"),
          ("grad_scaling_error", "|a·‖g(aW)‖ / ‖g(W)‖ − 1|"),
          ("input_grad_change", "relative change of ∂loss/∂input"))


def figures(doc: dict, workdir: pathlib.Path) -> list[pathlib.Path]:
    """One figure, three panels (one per identity): each hidden layer's deviation over training
    on a log axis, median over seeds with the min-max band, with and without BN."""
    runs = doc["runs"]
    layers = sorted({int(k.rsplit("layer", 1)[1]) for r in runs for k in r["curves"]
                     if k.startswith(f"probe_{key('output_change', CHECK_SCALE)}_layer")})
    if not layers:
        return []
    fig = plotting.new_figure(13.5, 4.6)
    axes = fig.subplots(1, len(PANELS))
    styles = plotting.LINE_STYLES
    for ax, (name, ylabel) in zip(axes, PANELS):
        for norm in ("none", "batchnorm"):
            arm = [r for r in runs if r["config"].get("model.norm") == norm]
            for i, layer in enumerate(layers):
                curves = [plotting.read_curve(r, f"probe_{key(name, CHECK_SCALE)}_layer{layer}")
                          for r in arm]
                curves = [c for c in curves if c is not None]
                if not curves:
                    continue
                steps = curves[0][0]
                vals = np.stack([np.maximum(c[1][:len(steps)], 1e-12) for c in curves
                                 if len(c[1]) >= len(steps)])
                color = plotting.NORM_COLORS[norm]
                ax.plot(steps, np.median(vals, 0), color=color, linestyle=styles[i][0],
                        marker=styles[i][1], markersize=3.5, linewidth=1.6, zorder=3)
                ax.fill_between(steps, vals.min(0), vals.max(0), color=color, alpha=0.14,
                                linewidth=0)
        ax.axhline(TOLERANCE, color="0.35", linestyle=":", linewidth=1)
        ax.set_yscale("log")
        plotting.style_step_axes(ax, "training step", ylabel)
    handles = [Line2D([], [], color=plotting.NORM_COLORS[n], linewidth=2,
                      label=plotting.NORM_LONG_LABELS[n]) for n in ("none", "batchnorm")]
    handles += [Line2D([], [], color="0.3", linestyle=styles[i][0], marker=styles[i][1],
                       label=f"hidden layer {layer}") for i, layer in enumerate(layers)]
    handles += [Line2D([], [], color="0.35", linestyle=":", label=f"tolerance {TOLERANCE:g}"),
                plotting.seed_band_handle()]
    handles[-1].set_label("min-max over seeds (line: median)")
    seeds = len({r["config"].get("seed") for r in runs})
    plotting.suptitle(fig, "BN's scale invariance (Ioffe & Szegedy, Sec. 3.3): each hidden layer's "
                      f"W rescaled by a = {CHECK_SCALE:g} on a fixed training batch\n"
                      f"{plotting.shared_config_line(runs)}; {seeds} seeds")
    plotting.legend_below(fig, handles, max_cols=4)
    return [plotting.save_png(fig, pathlib.Path(workdir) / FIGURE)]


register(Experiment("scale_invariance", claims=claims, figures=figures,
                    probe=Probe(measure)))

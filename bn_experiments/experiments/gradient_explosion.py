"""Yang et al. (2019), "A Mean Field Theory of Batch Normalization": gradient explosion at init.

Their result: at initialization, a deep fully connected BN network without skip connections has
gradients that grow exponentially from the output toward the input, whatever the weight variance
or nonlinearity; for ReLU and large batches the squared gradient norm grows by about pi/(pi-1) ~
1.47 per layer (their rate in the large-batch limit; at finite width and batch it is measured
here). The suite sets it beside Ioffe & Szegedy's Sec. 3.3 conjecture (experiment
`jacobian_spectrum`), and this probe measures both in the same networks:

- `grad_sq` (per hidden layer l = 1..L): ||dL/dW_l||_F^2 on a fixed batch of `BATCH` training
  images (training mode: BN with that batch's statistics, the gradient an SGD step on a large
  batch would take);
- `jac_mean_sq_<first|middle|last>`: the mean squared singular value of the Jacobian between
  consecutive layers' normalized units (`jacobian_spectrum.layer_jacobians`) for the layer pairs
  1 -> 2, L/2 -> L/2 + 1 and L-1 -> L, on `JAC_EXAMPLES` examples.

Why both can be true: the mean squared singular value of one layer's Jacobian is the factor by
which that layer multiplies the squared norm of a random backward signal. For ReLU with BN it is
E[relu'(x)^2] / Var[relu(x)] = (1/2) / (1/2 - 1/(2 pi)) = pi/(pi-1) for x ~ N(0, 1): BN centers the
forward signal (removing relu's mean from the variance it divides by) but not the backward one.
A spectrum with mean square 1.47 is near 1 per layer, and 1.47^L across L layers. (Without BN
the Jacobian between standardized units also has a gain above 1, but it does not compound: the
standardization is not part of that network, and the per-unit batch std it divides by shrinks
with depth, so the products telescope.)

The claims fit, per run at init, the slope of log(grad_sq_l) on l over the hidden-to-hidden layers
l = 2..L (layer 1 has the 784 image inputs); the per-layer growth rate toward the input is
exp(-slope). Without BN the same ReLU network at He init is the control (critical init: the
gradient norm should stay level).
"""
from __future__ import annotations

import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.lines import Line2D

from bn_experiments import plotting, stats
from bn_experiments import runs as runs_lib
from bn_experiments.experiments import Experiment, jacobian_spectrum, register
from bn_experiments.probe import Probe, ProbeInputs

BATCH = 1024
JAC_EXAMPLES = 32
RATE = math.pi / (math.pi - 1)   # Yang et al.'s squared-norm growth per layer (ReLU, large batch)
BAND = 0.1                       # a measured rate within RATE * (1 +- BAND) matches it
PAIRS = ("first", "middle", "last")
FIGURE = "gradient_explosion.png"


def pair_layers(depth: int) -> dict[str, int]:
    """The 0-based first layer of each measured pair (depth >= 2)."""
    return {"first": 0, "middle": (depth - 1) // 2, "last": depth - 2}


def measure(inp: ProbeInputs) -> dict:
    """Per hidden layer ||dL/dW_l||^2, and three layer Jacobians' mean squared singular value."""
    grads = jax.grad(lambda p: inp.loss_fn(p, inp.state, inp.x, inp.y)[0])(inp.params)
    out = {"grad_sq": [jnp.sum(layer["w"] ** 2) for layer in grads["hidden"]]}
    depth = len(inp.params["hidden"])
    if depth >= 2:
        for name, layer in pair_layers(depth).items():
            jac = jacobian_spectrum.layer_jacobians(inp, layer, min(JAC_EXAMPLES, inp.x.shape[0]))
            out[f"jac_mean_sq_{name}"] = jacobian_spectrum.spectrum_stats(jac)["sv_mean_sq"]
    return out


# ------------------------------------------------------------------------------------ claims

def depth(run: dict) -> int:
    return len(runs_lib.cfg(run, "model.widths") or ())


def grad_profile(run: dict, index: int = 0) -> list[float | None]:
    """||dL/dW_l||^2 for l = 1..L at evaluation `index` (0: init)."""
    out = []
    for layer in range(1, depth(run) + 1):
        vals = runs_lib.curve(run, f"probe_grad_sq_layer{layer}")[1]
        out.append(vals[index] if len(vals) > abs(index) and runs_lib.finite(vals[index]) else None)
    return out


def growth_rate(profile: list[float | None]) -> float | None:
    """exp(-slope) of log(grad_sq_l) on l over l = 2..L: the factor per layer toward the input."""
    pts = [(l, math.log(v)) for l, v in enumerate(profile, start=1)
           if l >= 2 and v is not None and v > 0]
    if len(pts) < 3:
        return None
    return math.exp(-float(np.polyfit([p[0] for p in pts], [p[1] for p in pts], 1)[0]))


def _rates(arm: dict[int, dict]) -> dict[int, float | None]:
    return {s: growth_rate(grad_profile(r)) for s, r in arm.items()}


def _log(d: dict) -> dict:
    return {s: math.log(v) for s, v in d.items() if v is not None and v > 0}


def _jac(runs: list[dict]) -> list[float | None]:
    """Each run's mean over the measured pairs of the Jacobian's mean squared singular value at
    init."""
    out = []
    for run in runs:
        vals = [runs_lib.curve(run, f"probe_jac_mean_sq_{p}")[1] for p in PAIRS]
        vals = [v[0] for v in vals if v and runs_lib.finite(v[0])]
        out.append(float(np.mean(vals)) if vals else None)
    return out


def band_verdict(iv: stats.Interval, low: float, high: float) -> str:
    """Reproduced inside [low, high], not reproduced entirely outside it, else inconclusive."""
    if iv.n < stats.MIN_SEEDS or iv.low is None:
        return stats.INCONCLUSIVE
    if low <= iv.low and iv.high <= high:
        return stats.REPRODUCED
    if iv.high < low or iv.low > high:
        return stats.NOT_REPRODUCED
    return stats.INCONCLUSIVE


def claims(runs: list[dict]) -> list[dict]:
    """Explosion with BN vs the same network without (over depths); the rate vs pi/(pi-1)."""
    depths = sorted({depth(r) for r in runs if depth(r) >= 4})
    ivs, parts, deepest = [], [], None
    for d in depths:
        sel = [r for r in runs if depth(r) == d]
        pair = runs_lib.arms(sel)
        if pair is None:
            continue
        bn, no = pair
        rb, rn = _rates(bn), _rates(no)
        iv = stats.paired(_log(rb), _log(rn))
        ivs.append(iv)
        parts.append(f"{d} layers: BN {stats.mean_std(rb.values(), 3)}, no BN "
                     f"{stats.mean_std(rn.values(), 3)}, log ratio {stats.fmt(iv)}")
        deepest = (d, rb, bn, no)
    if not ivs:
        return []
    verdict, counts = stats.verdict_over(ivs)
    rule = stats.rule_over("log(per-layer growth rate of ||dL/dW_l||^2 at init) with BN minus "
                           "without", "depth", expect_text="above zero (BN's gradients grow "
                           "toward the input; the no-BN control does not)")
    rows = [runs_lib.row(
        "gradient_explosion.bn_gradient_explodes_at_init",
        "At initialization the gradients of a deep BN network without skip connections grow "
        "exponentially toward the input (measured across depth; the per-layer Jacobian spectrum "
        "is jacobian_spectrum's, and both can hold)",
        "Yang et al. 2019",
        "per-layer growth factor of ||dL/dW_l||^2 toward the input at init, fitted over layers "
        f"2..L (ReLU, He init, batch {BATCH}): " + "; ".join(parts) + f" (depths {counts})",
        "gradients explode exponentially with depth at init in BN networks without skip "
        "connections, for any weight variance and nonlinearity (Yang et al. 2019)",
        verdict, FIGURE,
        stats.evidence_over(ivs, rule, seeds=min(iv.n for iv in ivs), over="depths"))]
    d, rb, bn, no = deepest
    iv = stats.interval(v for v in rb.values() if v is not None)
    low, high = RATE * (1 - BAND), RATE * (1 + BAND)
    rows.append(runs_lib.row(
        "gradient_explosion.bn_gradient_growth_rate_pi_over_pi_minus_1",
        "For ReLU and large batches, BN's squared gradient norm grows by about pi/(pi-1) ~ 1.47 "
        "per layer at init",
        "Yang et al. 2019",
        f"growth factor per layer in the {d}-layer network with BN {stats.fmt(iv)}; the "
        "Jacobian between consecutive layers' normalized units has a mean squared singular "
        f"value of {stats.mean_std(_jac(list(bn.values())), 3)} with BN and "
        f"{stats.mean_std(_jac(list(no.values())), 3)} "
        f"without (first, middle and last layer pairs, at init): the per-layer gain that BN's "
        f"near-isometry leaves compounds to {RATE:.2f}^L across depth",
        f"pi/(pi-1) = {RATE:.3f} per layer in squared norm, ReLU, batch size -> infinity (Yang et "
        "al. 2019; the rate comes from a secondary derivation, so it is measured here)",
        band_verdict(iv, low, high), FIGURE,
        stats.evidence(iv, f"per seed, the growth factor fitted in the deepest network ({d} "
                           f"layers); 95% t-interval over seeds. Reproduced when the interval "
                           f"lies inside [{low:.3f}, {high:.3f}] (pi/(pi-1) +- {BAND:.0%}), not "
                           "reproduced when it lies entirely outside, inconclusive otherwise.")))
    return rows


# ----------------------------------------------------------------------------------- figures

def figures(doc: dict, workdir: pathlib.Path) -> list[pathlib.Path]:
    """Two panels at init: ||dL/dW_l||^2 relative to the top hidden layer's against the distance
    from the output (every depth, with and without BN, with the pi/(pi-1) line), and the fitted
    per-layer factor against depth beside the layer Jacobians' mean squared singular value."""
    runs = [r for r in doc["runs"] if depth(r) >= 2]
    depths = sorted({depth(r) for r in runs})
    if not depths or not any(grad_profile(r)[0] is not None for r in runs):
        return []
    fig = plotting.new_figure(13.0, 5.2)
    ax_prof, ax_rate = fig.subplots(1, 2)
    shades = {d: 0.35 + 0.65 * i / max(1, len(depths) - 1) for i, d in enumerate(depths)}
    for norm in (runs_lib.NO_BN, runs_lib.BN):
        color = plotting.NORM_COLORS[norm]
        for d in depths:
            arm = runs_lib.select([r for r in runs if depth(r) == d], model__norm=norm)
            prof = np.array([[np.nan if v is None else v for v in grad_profile(r)] for r in arm])
            if prof.size == 0:
                continue
            rel = prof / prof[:, -1:]
            x = np.arange(d - 1, -1, -1)  # layer l is d - l layers below the top hidden layer
            ax_prof.plot(x[1:], np.exp(np.nanmean(np.log(rel), 0))[1:], color=color,
                         alpha=shades[d], linewidth=1.5, marker="o", markersize=2.5)
        rates = [[growth_rate(grad_profile(r)) for r in runs_lib.select(
            [r for r in runs if depth(r) == d], model__norm=norm)] for d in depths]
        mean = np.array([np.nanmean([v for v in rs if v is not None] or [np.nan]) for rs in rates])
        std = np.array([np.nanstd([v for v in rs if v is not None], ddof=1)
                        if sum(v is not None for v in rs) > 1 else 0.0 for rs in rates])
        ax_rate.errorbar(depths, mean, yerr=std, color=color, marker="o", capsize=3, linewidth=1.6)
        if norm == runs_lib.BN:  # without BN the standardized units are not the network's own
            jac = [np.nanmean([v for v in _jac(runs_lib.select(
                [r for r in runs if depth(r) == d], model__norm=norm)) if v is not None]
                or [np.nan]) for d in depths]
            ax_rate.plot(depths, jac, color=color, marker="s", linestyle="--", linewidth=1.2,
                         markerfacecolor="white")
    top = max(depths) - 1
    ax_prof.plot([0, top], [1, RATE ** top], color="0.3", linestyle=":", linewidth=1.2)
    ax_prof.set_yscale("log")
    plotting.style_plain_axes(ax_prof, "layers below the top hidden layer (L − l)",
                              "‖∂L/∂W_l‖² / ‖∂L/∂W_L‖² at init (geometric mean over seeds)")
    ax_rate.axhline(RATE, color="0.3", linestyle=":", linewidth=1.2)
    ax_rate.axhline(1.0, color="0.6", linewidth=0.8)
    ax_rate.set_xscale("log")
    ax_rate.set_xticks(depths, [str(d) for d in depths])
    ax_rate.set_xticks([], minor=True)
    plotting.style_plain_axes(ax_rate, "depth L (hidden layers)", "factor per layer at init")
    handles = [Line2D([], [], color=plotting.NORM_COLORS[n], linewidth=2,
                      label=plotting.NORM_LONG_LABELS[n]) for n in (runs_lib.NO_BN, runs_lib.BN)]
    handles += [Line2D([], [], color="0.3", linestyle=":", label=f"π/(π−1) = {RATE:.2f} per layer"),
                Line2D([], [], color="0.3", marker="o", label="right: fitted gradient growth "
                       "(± 1 std over seeds)"),
                Line2D([], [], color="0.3", marker="s", linestyle="--", markerfacecolor="white",
                       label="right: BN layer Jacobian's mean squared singular value"),
                Line2D([], [], color="0.3", alpha=0.4, label="left: lighter = shallower network")]
    seeds = len({runs_lib.cfg(r, "seed") for r in runs})
    plotting.suptitle(fig, "Gradient explosion at init in deep BN networks (Yang et al. 2019) beside "
                      "the per-layer Jacobian (Ioffe & Szegedy Sec. 3.3): ReLU, He init, batch "
                      f"{BATCH}, depths {', '.join(map(str, depths))}; {seeds} seeds")
    plotting.legend_below(fig, handles, max_cols=3)
    return [plotting.save_png(fig, pathlib.Path(workdir) / FIGURE)]


register(Experiment("gradient_explosion", claims=claims, figures=figures,
                    probe=Probe(measure, batch_size=BATCH)))

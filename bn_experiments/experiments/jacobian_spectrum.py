"""Sec. 3.3 of Ioffe & Szegedy (2015): with BN, layer Jacobians may have singular values near 1.

The paper's conjecture (citing Saxe et al. 2013): take two consecutive layers with normalized
units x_hat -> z_hat = F(x_hat); if both are Gaussian and uncorrelated with unit covariance and F
is close to linear, F(x_hat) ~ J x_hat, then I = Cov[z_hat] = J Cov[x_hat] J^T = J J^T, so all
singular values of J are 1, which helps training.

The probe measures J at the normalized units, per example, at every evaluation: for hidden layers
l and l+1, J_l = d x_hat_{l+1} / d x_hat_l with the batch statistics held fixed (the paper's
linearization of F for given parameters; training-mode statistics of the probe batch). With BN,
x_hat_l is BN's normalized value (before gamma, beta), so J_l = diag(1 / sigma_{l+1}) W_{l+1}^T
diag(g'(a_l) gamma_l), with a_l = gamma_l x_hat_l + beta_l the nonlinearity's input. Without BN
the same units are the pre-activations a_l = W_l u + b_l standardized by their batch mean and std,
so J_l = diag(1 / sigma_{l+1}) W_{l+1}^T diag(g'(a_l) sigma_l): both arms are compared on the same
footing. J is computed by forward-mode autodiff of the model's own `apply` (a shift of layer l's
beta or b moves a_l, with the statistics fixed: BN in inference mode with the batch's statistics),
so the probe needs no copy of the model's code; it needs each hidden layer's shift parameter
(`bn.bias` with BN and gamma/beta, `b` without BN).

Per layer pair (curves `..._layer<l>` for J from hidden layer l to l+1), over the singular values
s of J on `EXAMPLES` probe examples:
- `sv_mean_sq`: mean of s^2 = ||J||_F^2 / width, the average gain a random direction gets
  (1 when J J^T = I on average);
- `sv_log_rms`: sqrt(mean (log s)^2), how far the whole spectrum is from all ones (0 iff every
  singular value is 1; s is floored at 1e-6);
- `sv_p10`, `sv_p50`, `sv_p90`: the 10th, 50th and 90th percentiles of s.

The other side (Yang et al. 2019, experiment `gradient_explosion`): each deep BN network's gradient
grows by a fixed factor per layer at init. Both can hold: a spectrum whose mean square is a bit
above 1 at each layer (pi/(pi-1) ~ 1.47 for ReLU) is "close to 1" per layer and still compounds
exponentially across depth. This experiment measures the per-layer spectrum; that one the growth
across depth.
"""
from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.lines import Line2D

from bn_experiments import batchnorm, models, plotting, stats
from bn_experiments import runs as runs_lib
from bn_experiments.experiments import Experiment, register
from bn_experiments.probe import Probe, ProbeInputs

EPSILON = models.common_fields().bn_epsilon
EXAMPLES = 60          # probe examples whose Jacobians are taken (statistics: the whole batch)
FLOOR = 1e-6           # singular values are floored here before the log
NEAR = (0.5, 2.0)      # the band the figure marks as "near 1"
STATS = ("sv_mean_sq", "sv_log_rms", "sv_p10", "sv_p50", "sv_p90")
FIGURE = "jacobian_spectrum.png"


def _std(z: jax.Array) -> jax.Array:
    return jnp.sqrt(batchnorm.moments(z)[1] + EPSILON)


def layer_jacobians(inp: ProbeInputs, layer: int, examples: int = EXAMPLES) -> jax.Array:
    """(examples, width_{l+1}, width_l): d x_hat_{l+1} / d x_hat_l per example, hidden layers
    `layer` -> `layer + 1` (0-based), the batch statistics of `inp.x` held fixed."""
    params = inp.params
    _, _, inter = inp.apply(params, inp.state, inp.x, True)
    use_bn = bool(inter["bn_inputs"])
    if use_bn:
        fixed = {"bn": [dict(zip(("mean", "var"), batchnorm.moments(z)))
                        for z in inter["bn_inputs"]]}
        outs, gain = inter["bn_inputs"], params["hidden"][layer]["bn"]["scale"]
    else:
        fixed, outs = inp.state, inter["preacts"]
        gain = _std(inter["preacts"][layer])

    def shifted(shift):
        hidden = list(params["hidden"])
        if use_bn:
            bn = hidden[layer]["bn"]
            hidden[layer] = {**hidden[layer], "bn": {**bn, "bias": bn["bias"] + shift}}
        else:
            hidden[layer] = {**hidden[layer], "b": hidden[layer]["b"] + shift}
        _, _, it = inp.apply({**params, "hidden": hidden}, fixed, inp.x[:examples], False)
        return (it["bn_inputs"] if use_bn else it["preacts"])[layer + 1]

    width = params["hidden"][layer]["w"].shape[1]
    jac = jax.jacfwd(shifted)(jnp.zeros(width))           # d z_{l+1} / d a_l
    return jac * gain[None, None, :] / _std(outs[layer + 1])[None, :, None]


def spectrum_stats(jac: jax.Array) -> dict:
    """The `STATS` of the singular values of a batch of Jacobians (examples, out, in)."""
    s = jnp.linalg.svd(jac, compute_uv=False).ravel()
    q = jnp.quantile(s, jnp.asarray([0.1, 0.5, 0.9]))
    return {"sv_mean_sq": jnp.mean(s ** 2),
            "sv_log_rms": jnp.sqrt(jnp.mean(jnp.log(jnp.maximum(s, FLOOR)) ** 2)),
            "sv_p10": q[0], "sv_p50": q[1], "sv_p90": q[2]}


def measure_layers(inp: ProbeInputs, layers, examples: int = EXAMPLES) -> dict:
    """`spectrum_stats` of the Jacobians from hidden layer l to l+1 for each l in `layers`."""
    out = {k: [] for k in STATS}
    for layer in layers:
        for k, v in spectrum_stats(layer_jacobians(inp, layer, examples)).items():
            out[k].append(v)
    return out


def measure(inp: ProbeInputs) -> dict:
    """Every consecutive pair of hidden layers."""
    return measure_layers(inp, range(len(inp.params["hidden"]) - 1),
                          min(EXAMPLES, inp.x.shape[0]))


# ------------------------------------------------------------------------------------ claims

def _mean_after_init(run: dict, key: str) -> float | None:
    """Mean over layers and over evaluations after step 0 (from the run's finals)."""
    vals = [v for k, v in run["final"].items()
            if k.startswith(f"mean_probe_{key}_layer") and runs_lib.finite(v)]
    return float(np.mean(vals)) if vals else None


def _at_step(run: dict, key: str, which: int) -> float | None:
    vals = []
    for k in run["curves"]:
        if k.startswith(f"probe_{key}_layer"):
            v = runs_lib.curve(run, k)[1]
            if v and runs_lib.finite(v[which]):
                vals.append(v[which])
    return float(np.mean(vals)) if vals else None


def claims(runs: list[dict]) -> list[dict]:
    """Claim 12: the spectrum is closer to all-ones with BN than without (paired by seed)."""
    pair = runs_lib.arms(runs)
    if pair is None:
        return []
    bn, no = pair
    spread = lambda arm: {s: _mean_after_init(r, "sv_log_rms") for s, r in arm.items()}  # noqa: E731
    iv = stats.paired(spread(no), spread(bn))
    gain = lambda arm, w: [_at_step(r, "sv_mean_sq", w) for r in arm.values()]  # noqa: E731
    median = lambda arm, w: [_at_step(r, "sv_p50", w) for r in arm.values()]  # noqa: E731
    rule = stats.rule_single(
        "rms of log(singular value) of the layer Jacobians at the normalized units, mean over "
        "layer pairs and evaluations after init, without BN minus with BN",
        expect_text="above zero (BN's singular values closer to 1)")
    return [runs_lib.row(
        "jacobian_spectrum.bn_jacobian_singular_values_near_one",
        "With BN the Jacobian between consecutive layers' normalized units has singular values "
        "closer to 1 (measured per layer; not the growth across depth, which gradient_explosion "
        "measures; both can hold)",
        "IS Sec. 3.3 (conjecture)",
        f"rms log singular value over training: BN {stats.mean_std(spread(bn).values(), 3)}, no BN "
        f"{stats.mean_std(spread(no).values(), 3)}, paired difference (no BN - BN) {stats.fmt(iv)}. "
        f"Mean squared singular value at init / at the end: BN {stats.mean_std(gain(bn, 0), 3)} / "
        f"{stats.mean_std(gain(bn, -1), 3)}, no BN {stats.mean_std(gain(no, 0), 3)} / "
        f"{stats.mean_std(gain(no, -1), 3)}; median singular value at the end BN "
        f"{stats.mean_std(median(bn, -1), 3)}, no BN {stats.mean_std(median(no, -1), 3)}. "
        "Jacobian per example with the batch statistics held fixed",
        "BN may lead the layer Jacobians to have singular values close to 1, known to help "
        "training (Saxe et al. 2013); the argument assumes Gaussian, uncorrelated normalized units "
        "and a near-linear layer map (Sec. 3.3, stated as a conjecture)",
        stats.verdict(iv), FIGURE, stats.evidence(iv, rule))]


# ----------------------------------------------------------------------------------- figures

def figures(doc: dict, workdir: pathlib.Path) -> list[pathlib.Path]:
    """Two panels over training, per layer pair, with and without BN: the median singular value
    with its 10-90th percentile band (mean over seeds), and the mean squared singular value."""
    runs = doc["runs"]
    layers = sorted({int(k.rsplit("layer", 1)[1]) for r in runs for k in r["curves"]
                     if k.startswith("probe_sv_p50_layer")})
    if not layers:
        return []
    fig = plotting.new_figure(13.0, 5.0)
    ax_sv, ax_gain = fig.subplots(1, 2)
    for norm in (runs_lib.NO_BN, runs_lib.BN):
        arm = runs_lib.select(runs, model__norm=norm)
        color = plotting.NORM_COLORS[norm]
        for (ls, mk), layer in zip(plotting.LINE_STYLES, layers):
            curves = {q: plotting.mean_curve(arm, f"probe_sv_{q}_layer{layer}")
                      for q in ("p10", "p50", "p90", "mean_sq")}
            if curves["p50"] is None:
                continue
            steps = curves["p50"][0]
            ax_sv.plot(steps, curves["p50"][1], color=color, linestyle=ls, marker=mk,
                       markersize=3.5, linewidth=1.6, zorder=3)
            if curves["p10"] is not None and curves["p90"] is not None:
                ax_sv.fill_between(steps, curves["p10"][1], curves["p90"][1], color=color,
                                   alpha=0.1, linewidth=0)
            if curves["mean_sq"] is not None:
                s, mean, std, _ = curves["mean_sq"]
                ax_gain.plot(s, mean, color=color, linestyle=ls, marker=mk, markersize=3.5,
                             linewidth=1.6, zorder=3)
                plotting.seed_band(ax_gain, s, mean, std, color, log=True)
    for ax in (ax_sv, ax_gain):
        ax.axhline(1.0, color="0.35", linestyle=":", linewidth=1)
        ax.set_yscale("log")
    plotting.style_step_axes(ax_sv, "training step", "singular value of J (median; band 10-90%)")
    plotting.style_step_axes(ax_gain, "training step", "mean squared singular value of J")
    handles = [Line2D([], [], color=plotting.NORM_COLORS[n], linewidth=2,
                      label=plotting.NORM_LONG_LABELS[n]) for n in (runs_lib.NO_BN, runs_lib.BN)]
    handles += [Line2D([], [], color="0.3", linestyle=ls, marker=mk,
                       label=f"J: hidden layer {l} → {l + 1}")
                for (ls, mk), l in zip(plotting.LINE_STYLES, layers)]
    handles += [plotting.seed_band_handle()]
    handles[-1].set_label("left: 10-90th percentile of s; right: ± 1 std over seeds")
    seeds = len({runs_lib.cfg(r, "seed") for r in runs})
    plotting.suptitle(fig, "Singular values of the Jacobian between consecutive layers' normalized "
                      "units (Ioffe & Szegedy, Sec. 3.3 conjecture: near 1 with BN), per example, "
                      f"statistics fixed\n{plotting.shared_config_line(runs)}; {seeds} seeds")
    plotting.legend_below(fig, handles, max_cols=3)
    return [plotting.save_png(fig, pathlib.Path(workdir) / FIGURE)]


register(Experiment("jacobian_spectrum", claims=claims, figures=figures, probe=Probe(measure)))

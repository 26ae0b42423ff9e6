"""Sec. 3 of Ioffe & Szegedy (2015): BN's learned gamma and beta can restore the identity.

The paper adds gamma and beta after the normalization so that "the transformation inserted in the
network can represent the identity transform": with gamma = sqrt(Var[x] + eps) and beta = E[x],
BN(x) = x, and the network computes what it would without normalization (its example: normalizing
a sigmoid's inputs alone would hold them in the sigmoid's near-linear regime). Three questions:

1. Is the identity exact? The probe sets, at every evaluation, each BN layer's gamma and beta to
   the identity values of the fixed probe batch (training mode, the batch's own statistics, layer
   by layer since each layer's statistics depend on the ones below) and measures
   - `restore_error` (per layer): ||BN(z) - z|| / ||z|| for z = W u, the BN input;
   - `network_restore_error` (scalar, runs with gamma/beta): the largest ||preact_l - z_l|| /
     ||z_l|| over layers of the network with every BN layer restored, i.e. how far it is from the
     network without normalization (z = W u, no bias);
2. How far are the learned gamma and beta from that identity? Per layer, with mu and sigma =
   sqrt(var + eps) the batch statistics of z on the probe batch, BN's output differs from its
   input by y - z = (gamma/sigma - 1)(z - mu) + (beta - mu), so in units of the input's std
   - `identity_distance`: sqrt(mean over units of (gamma/sigma - 1)^2 + ((beta - mu)/sigma)^2),
     the rms of (y - z)/sigma; 0 exactly at the identity;
   - `scale_gap`: rms over units of gamma/sigma - 1; `shift_gap`: rms of (beta - mu)/sigma.
   Runs without gamma/beta have gamma = 1, beta = 0: their distance is that of the bare
   normalization.
3. Does the network need gamma and beta? The ablation trains BN without them
   (`model.bn_affine=False`: `batchnorm.apply(use_scale=False, use_bias=False)`).

The probe assumes BN's default epsilon (`EPSILON`; it cannot read the model's config): with another
`model.bn_epsilon` the network-level restore error grows by about |eps - EPSILON| / (2 Var).
The probe addresses the MLP's parameters (`params["hidden"][l]["bn"]`).
"""
from __future__ import annotations

import pathlib

import jax.numpy as jnp
import numpy as np
from matplotlib.lines import Line2D

from bn_experiments import batchnorm, models, plotting, stats
from bn_experiments import runs as runs_lib
from bn_experiments.experiments import Experiment, register
from bn_experiments.probe import Probe, ProbeInputs

EPSILON = models.common_fields().bn_epsilon
# Restoring the identity is exact up to float32 rounding (about 1e-7 relative per layer).
TOLERANCE = 1e-4
AFFINE = "model.bn_affine"
FIGURE = "gamma_beta_identity.png"


def identity_affine(z: jnp.ndarray, epsilon: float = EPSILON) -> dict:
    """The gamma and beta that make BN the identity on the batch `z`: sqrt(var + eps), mean."""
    mean, var = batchnorm.moments(z)
    return {"scale": jnp.sqrt(var + epsilon), "bias": mean}


def restore_error(z: jnp.ndarray, epsilon: float = EPSILON) -> jnp.ndarray:
    """||BN(z) - z|| / ||z|| with the identity gamma and beta (training mode, batch statistics)."""
    params = identity_affine(z, epsilon)
    y, _ = batchnorm.apply(params, batchnorm.init(z.shape[-1])[1], z, train=True, epsilon=epsilon)
    return jnp.linalg.norm(y - z) / jnp.linalg.norm(z)


def restored(params: dict, state: dict, x: jnp.ndarray, apply) -> dict:
    """`params` with every BN layer's gamma, beta at the identity values: one pass per layer, as
    layer l's statistics are right once the layers below it are the identity."""
    for _ in params["hidden"]:
        _, _, inter = apply(params, state, x, True)
        params = {**params, "hidden": [{**layer, "bn": identity_affine(z)}
                                       for layer, z in zip(params["hidden"], inter["bn_inputs"])]}
    return params


def distances(z: jnp.ndarray, gamma, beta, epsilon: float = EPSILON) -> dict:
    """`identity_distance`, `scale_gap`, `shift_gap` of a BN layer with input batch `z`."""
    mean, var = batchnorm.moments(z)
    sigma = jnp.sqrt(var + epsilon)
    scale, shift = gamma / sigma - 1, (beta - mean) / sigma
    rms = lambda v: jnp.sqrt(jnp.mean(v ** 2))  # noqa: E731
    return {"identity_distance": jnp.sqrt(jnp.mean(scale ** 2 + shift ** 2)),
            "scale_gap": rms(scale), "shift_gap": rms(shift)}


def measure(inp: ProbeInputs) -> dict:
    """Per BN layer: the restore error and the learned gamma/beta's distance from the identity."""
    _, _, inter = inp.apply(inp.params, inp.state, inp.x, True)
    affine = "bn" in inp.params["hidden"][0]
    out = {k: [] for k in ("restore_error", "identity_distance", "scale_gap", "shift_gap")}
    for layer, z in zip(inp.params["hidden"], inter["bn_inputs"]):
        bn = layer.get("bn", {"scale": jnp.ones(z.shape[-1]), "bias": jnp.zeros(z.shape[-1])})
        out["restore_error"].append(restore_error(z))
        for k, v in distances(z, bn["scale"], bn["bias"]).items():
            out[k].append(v)
    if affine:
        _, _, back = inp.apply(restored(inp.params, inp.state, inp.x, inp.apply), inp.state,
                               inp.x, True)
        out["network_restore_error"] = jnp.max(jnp.stack([
            jnp.linalg.norm(p - z) / jnp.linalg.norm(z)
            for p, z in zip(back["preacts"], back["bn_inputs"])]))
    return out


# ------------------------------------------------------------------------------------ claims

def _layer_curves(run: dict, key: str) -> list[tuple[list, list]]:
    prefix = f"probe_{key}_layer"
    return [runs_lib.curve(run, k) for k in sorted(run["curves"]) if k.startswith(prefix)]


def _values(run: dict, key: str) -> list[float]:
    return [v for _, vals in _layer_curves(run, key) for v in vals if runs_lib.finite(v)]


def worst_restore_error(run: dict) -> float | None:
    vals = _values(run, "restore_error") + [
        v for v in runs_lib.curve(run, "probe_network_restore_error")[1] if runs_lib.finite(v)]
    return max(vals) if vals else None


def distance_at(run: dict, layer: int, index: int) -> float | None:
    """Layer `layer`'s identity distance at evaluation `index` (0: init, -1: the last)."""
    vals = runs_lib.curve(run, f"probe_identity_distance_layer{layer}")[1]
    return vals[index] if vals and runs_lib.finite(vals[index]) else None


def _layers(run: dict) -> list[int]:
    return sorted(int(k.rsplit("layer", 1)[1]) for k in run["curves"]
                  if k.startswith("probe_identity_distance_layer"))


def _arms(runs: list[dict]):
    with_ab = runs_lib.by_seed([r for r in runs if runs_lib.cfg(r, AFFINE, True) is True])
    without = runs_lib.by_seed([r for r in runs if runs_lib.cfg(r, AFFINE, True) is False])
    return with_ab, without


def _restore_row(with_ab: dict) -> dict:
    worst = {s: worst_restore_error(r) for s, r in with_ab.items()}
    margin = {s: np.log10(TOLERANCE) - np.log10(max(v, 1e-30)) for s, v in worst.items()
              if v is not None}
    iv = stats.interval(margin.values())
    rule = stats.rule_single(
        f"log10({TOLERANCE:g}) - log10(largest restore error over layers and evaluations), one "
        "value per seed (the layer-wise ||BN(z) - z|| / ||z|| and the whole network's distance "
        "from the un-normalized one, gamma = sqrt(var + eps), beta = mean set on the probe batch)",
        expect_text=f"above zero (the identity holds to {TOLERANCE:g})")
    return runs_lib.row(
        "gamma_beta_identity.gamma_beta_restore_identity",
        "Setting gamma = sqrt(Var[x] + eps) and beta = E[x] makes BN the identity, so the "
        "network with BN can compute exactly what it computes without normalization",
        "IS Sec. 3",
        f"largest relative restore error per seed {stats.mean_std(worst.values(), 3)} (float32; "
        f"tolerance {TOLERANCE:g}), measured at every evaluation of training on 60 training "
        f"images; margin below the tolerance in decades {stats.fmt(iv)}",
        "gamma and beta are introduced so that the transformation inserted in the network can "
        "represent the identity transform: gamma = sqrt(Var[x]), beta = E[x] recover the original "
        "activations (Sec. 3)",
        stats.verdict(iv), FIGURE, stats.evidence(iv, rule))


def _distance_row(with_ab: dict, without: dict) -> dict:
    """Per layer, the trained distance from the identity with gamma/beta against the same network
    trained without them (gamma = 1, beta = 0): what gamma and beta add to the distance, apart
    from the drift of W u's statistics that both arms share."""
    ivs, parts = [], []
    log = lambda d: {s: np.log(v) for s, v in d.items() if v is not None and v > 0}  # noqa: E731
    for layer in _layers(next(iter(with_ab.values()))):
        end_with = {s: distance_at(r, layer, -1) for s, r in with_ab.items()}
        end_without = {s: distance_at(r, layer, -1) for s, r in without.items()}
        init = [distance_at(r, layer, 0) for r in with_ab.values()]
        iv = stats.paired(log(end_with), log(end_without))
        ivs.append(iv)
        parts.append(f"layer {layer}: {stats.mean_std(init, 2)} at init, after training "
                     f"{stats.mean_std(end_with.values(), 2)} with gamma/beta vs "
                     f"{stats.mean_std(end_without.values(), 2)} without (log ratio {stats.fmt(iv)})")
    verdict, counts = stats.verdict_over(ivs)
    rule = stats.rule_over(
        "log(identity distance after training with gamma/beta / without them)", "BN layer",
        expect_text="above zero (gamma and beta take BN further from the identity, not toward it)")
    return runs_lib.row(
        "gamma_beta_identity.trained_bn_stays_away_from_identity",
        "Training does not use gamma and beta to undo the normalization: with them the trained BN "
        "layers are no closer to the identity transform than without them",
        "IS Sec. 3 (a question the paper leaves open)",
        "rms distance of BN's output from its input, in input standard deviations: "
        + "; ".join(parts) + f" (layers {counts})",
        "Sec. 3 says only that the identity is representable ('if that were the optimal thing to "
        "do'), not where training takes gamma and beta; this row measures which way it goes",
        verdict, FIGURE,
        stats.evidence_over(ivs, rule, seeds=min(iv.n for iv in ivs), over="layers"))


def _ablation_row(with_ab: dict, without: dict) -> dict:
    loss = lambda arm: {s: r["final"].get("train_loss") for s, r in arm.items()}  # noqa: E731
    acc = lambda arm: [r["final"].get("test_accuracy") for r in arm.values()]  # noqa: E731
    iv = stats.paired(loss(without), loss(with_ab))
    rule = stats.rule_single(
        "final training loss (mean of the last steps) without gamma/beta minus with them",
        expect_text="above zero (gamma and beta let the network fit better)")
    return runs_lib.row(
        "gamma_beta_identity.gamma_beta_add_representation_power",
        "Without gamma and beta, BN limits what the network can represent (e.g. sigmoid inputs "
        "held near the linear regime), so it fits the training set worse",
        "IS Sec. 3",
        f"final training loss: BN {stats.mean_std(loss(with_ab).values(), 3)}, BN without "
        f"gamma/beta {stats.mean_std(loss(without).values(), 3)}, paired difference "
        f"{stats.fmt(iv)}; final test accuracy {stats.mean_std(acc(with_ab), 3)} vs "
        f"{stats.mean_std(acc(without), 3)}",
        "normalizing each input of a layer may change what the layer can represent; gamma and "
        "beta restore the representation power (Sec. 3)",
        stats.verdict(iv), FIGURE, stats.evidence(iv, rule))


def claims(runs: list[dict]) -> list[dict]:
    """The identity (exact), the learned distance from it, and the ablation without gamma/beta."""
    with_ab, without = _arms(runs)
    if not with_ab:
        return []
    rows = [_restore_row(with_ab)]
    if without:
        rows += [_distance_row(with_ab, without), _ablation_row(with_ab, without)]
    return rows


# ----------------------------------------------------------------------------------- figures

def _draw(ax, runs, metric, color, style, log=False):
    c = plotting.mean_curve(runs, metric)
    if c is None:
        return
    steps, mean, std, _ = c
    ax.plot(steps, mean, color=color, linestyle=style[0], marker=style[1] if len(steps) <= 30 else None,
            markersize=3.5, linewidth=1.5, zorder=3)
    plotting.seed_band(ax, steps, mean, std, color, log=log)


def figures(doc: dict, workdir: pathlib.Path) -> list[pathlib.Path]:
    """Three panels over training: the training loss with and without gamma/beta; each BN layer's
    distance from the identity; the error of restoring the identity (with its tolerance)."""
    runs = doc["runs"]
    with_ab, without = _arms(runs)
    if not with_ab:
        return []
    arms = (("with γ, β", list(with_ab.values()), plotting.NORM_COLORS["batchnorm"]),
            ("without γ, β", list(without.values()), "#edae49"))
    layers = sorted({k.rsplit("layer", 1)[1] for r in runs for k in r["curves"]
                     if k.startswith("probe_identity_distance_layer")}, key=int)
    fig = plotting.new_figure(14.5, 4.9)
    ax_loss, ax_dist, ax_err = fig.subplots(1, 3)
    for _, arm, color in arms:
        _draw(ax_loss, arm, "train_loss", color, ("-", None), log=True)
        for style, layer in zip(plotting.LINE_STYLES, layers):
            _draw(ax_dist, arm, f"probe_identity_distance_layer{layer}", color, style)
    ax_loss.set_yscale("log")
    plotting.style_step_axes(ax_loss, "training step", "training loss (per step)")
    plotting.style_step_axes(ax_dist, "training step", "distance from identity (input stds)")
    for style, layer in zip(plotting.LINE_STYLES, layers):
        _draw(ax_err, list(with_ab.values()), f"probe_restore_error_layer{layer}",
              arms[0][2], style, log=True)
    _draw(ax_err, list(with_ab.values()), "probe_network_restore_error", "0.2", (":", "x"), log=True)
    ax_err.axhline(TOLERANCE, color="0.35", linestyle="--", linewidth=1)
    ax_err.set_yscale("log")
    plotting.style_step_axes(ax_err, "training step", "restore error ‖BN(z) − z‖ / ‖z‖")
    handles = [Line2D([], [], color=c, linewidth=2, label=f"BN {name}") for name, _, c in arms]
    handles += [Line2D([], [], color="0.3", linestyle=s[0], marker=s[1], label=f"hidden layer {l}")
                for s, l in zip(plotting.LINE_STYLES, layers)]
    handles += [Line2D([], [], color="0.2", linestyle=":", marker="x",
                       label="whole network restored vs un-normalized"),
                Line2D([], [], color="0.35", linestyle="--", label=f"tolerance {TOLERANCE:g}"),
                plotting.seed_band_handle()]
    seeds = len({runs_lib.cfg(r, "seed") for r in runs})
    plotting.suptitle(fig, "γ = √(Var + ε), β = E restore the un-normalized layer (Ioffe & Szegedy, "
                      "Sec. 3): exact (right); how far trained γ, β are from it (middle); without "
                      f"γ, β (left)\n{plotting.shared_config_line(runs)}; {seeds} seeds")
    plotting.legend_below(fig, handles, max_cols=4)
    return [plotting.save_png(fig, pathlib.Path(workdir) / FIGURE)]


register(Experiment("gamma_beta_identity", claims=claims, figures=figures, probe=Probe(measure)))

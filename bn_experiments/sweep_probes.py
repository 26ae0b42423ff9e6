"""The sweeps' probe: weight growth and saturation, measured during training (Ioffe & Szegedy
2015, Sec. 1 and Sec. 3.3).

Two mechanisms the paper names behind its sweep claims, compiled into every evaluation of
`lr_sweep`, `lr_init_grid` and `activation_sweep` (see `bn_experiments.probe`):

- Sec. 3.3: without BN, large learning rates grow the weights until the model explodes; with BN
  the layer output does not depend on the weights' scale, so growing weights only shrink the
  effective step. `weight_norm` is ||W_l||_F of each hidden layer (curves
  `probe_weight_norm_layer<l>`), `output_weight_norm` that of the output layer.
- Sec. 1: saturating nonlinearities stall training when their inputs drift into the flat tails;
  BN keeps the inputs near zero. `slope` is the mean over units and examples of g'(x), the
  derivative of the nonlinearity at its input x (sigmoid: sigma'(x) = sigma(x)(1 - sigma(x)), at
  most 0.25; tanh: 1 - tanh(x)^2, at most 1; relu: the active share), so a layer whose units sit in
  the tails passes almost no gradient; `saturated` is the share of inputs with |x| > 4
  (sigma'(4) = 0.018), the coarser count the old sweeps used. Both come from the network as the
  SGD step sees it: training mode (BN with the batch's statistics) on the fixed probe batch of
  `PROBE_EXAMPLES` training images.

The probe reads the activation from `ProbeInputs.model` (the model's static config).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from bn_experiments.probe import Probe, ProbeInputs

PROBE_EXAMPLES = 500
SATURATION = 4.0
# g' of each nonlinearity the MLP has, as a function of its input.
SLOPES = {
    "sigmoid": lambda x: jax.nn.sigmoid(x) * (1 - jax.nn.sigmoid(x)),
    "tanh": lambda x: 1 - jnp.tanh(x) ** 2,
    "relu": lambda x: (x > 0).astype(jnp.float32),
    "identity": lambda x: jnp.ones_like(x),
}
SLOPE_MAX = {"sigmoid": 0.25, "tanh": 1.0, "relu": 1.0, "identity": 1.0}


def mean_slope(activation: str, x: jax.Array) -> jax.Array:
    """Mean of g'(x) over all entries of `x` (examples x units) for the nonlinearity g."""
    if activation not in SLOPES:
        raise ValueError(f"no slope for activation {activation!r}; known: {sorted(SLOPES)}")
    return jnp.mean(SLOPES[activation](x))


def saturated_share(x: jax.Array, threshold: float = SATURATION) -> jax.Array:
    """Share of the entries of `x` with |x| > threshold."""
    return jnp.mean(jnp.abs(x) > threshold)


def measure(inp: ProbeInputs) -> dict:
    """Per hidden layer: weight norm, mean slope of the nonlinearity, saturated share; the output
    layer's weight norm (see the module docstring)."""
    if inp.model is None or not hasattr(inp.model, "activation"):
        raise ValueError("the sweep probe needs ProbeInputs.model (the MLP's static config)")
    act = inp.model.activation
    _, _, inter = inp.apply(inp.params, inp.state, inp.x, train=True)
    return {
        "weight_norm": [jnp.linalg.norm(layer["w"]) for layer in inp.params["hidden"]],
        "output_weight_norm": jnp.linalg.norm(inp.params["output"]["w"]),
        "slope": [mean_slope(act, z) for z in inter["preacts"]],
        "saturated": [saturated_share(z) for z in inter["preacts"]],
    }


PROBE = Probe(measure, batch_size=PROBE_EXAMPLES)


# ------------------------------------------------------------------ reading the probe's curves

def _layer_curves(run: dict, key: str) -> list[list[float | None]]:
    """The run's `probe_<key>_layer<l>` curves' values, layer 1 first (summaries write non-finite
    values as null)."""
    prefix = f"probe_{key}_layer"
    layers = sorted(int(k[len(prefix):]) for k in run["curves"] if k.startswith(prefix)
                    and k[len(prefix):].isdigit())
    return [run["curves"][f"{prefix}{l}"]["value"] for l in layers]


def weight_growth(run: dict) -> float | None:
    """The largest ||W_l(t)|| / ||W_l(0)|| over hidden layers l and evaluations t before the run
    diverged: how far training grew the weights (None without the curves)."""
    ratios = [v / c[0] for c in _layer_curves(run, "weight_norm") if c and c[0]
              for v in c if v is not None and math.isfinite(v)]
    return max(ratios) if ratios else None


def layer_mean(run: dict, key: str) -> float | None:
    """The probe's `key` (e.g. `slope`, `saturated`) averaged over hidden layers and over the
    evaluations after step 0 (the runner's `final["mean_probe_<key>_layer<l>"]`)."""
    vals = [v for k, v in (run.get("final") or {}).items()
            if k.startswith(f"mean_probe_{key}_layer") and v is not None and math.isfinite(v)]
    return sum(vals) / len(vals) if vals else None

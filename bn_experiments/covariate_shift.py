"""Internal covariate shift, measured two ways: pure JAX functions over explicit parameters.

Ioffe & Szegedy (2015, Sec. 2) define internal covariate shift (ICS) as the change in the
distribution of a layer's inputs caused by the change of the parameters of the layers below it
during training. Santurkar et al. (2018, Def. 2.1) replace the distributions by gradients: the
gradient of layer i's weights before and after layers 1..i-1 take their step. This module
measures both, on the MLP's parameters (`params = {"hidden": [{"w", "b" | "bn"}...], "output":
{"w", "b"}}`, `bn_experiments.models.mlp`), in training mode (batch statistics of each
mini-batch, exactly what the network sees while it trains), between two parameter points:

Distributional ICS (`distributional_shift`). Each hidden layer's input to the nonlinearity (the
pre-activation z = BN(Wu) or Wu + b; with noise, after the noise) on the same examples at the old
and at the new parameters, compared per unit by a scale-free distance, then averaged over units:

- `scale_free_w1`: the 1-Wasserstein distance between the unit's two empirical distributions
  divided by the unit's standard deviation at the old point (so a layer whose units are 10x wider
  does not count 10x more; invariant to rescaling a unit);
- `ks_distance`: the Kolmogorov-Smirnov distance (invariant to any increasing map of a unit;
  its resolution is 1/n for n examples: float rounding alone can move one example across).

Two parts per layer l: the FULL shift (everything changed: layers 1..l and, with noise, the noise
draw), and the INPUT-INDUCED part, the paper's definition: layer l (and above) held at its OLD
parameters, fed the inputs that the NEW layers 1..l-1 produce. It excludes layer l's own update,
and it is exactly 0 for layer 1 (its input is the data). Without noise this is the forward pass at
the mixed parameters `mixed_params(prev, now, l)` (new hidden[:l-1], old hidden[l-1:], old output);
it is computed as the old upper network (`upper_params`) applied to the new lower network's output
h_{l-1} = g(z_{l-1}), because with noise (Santurkar et al.'s noisy BN, Sec. 2.1) the noise of the
layers below belongs to their new state while layer l's own noise draw must stay the same in both
terms of the comparison (one draw, `rng_upper`, for both).

Gradient ICS (`gradient_ics`, Santurkar et al. Def. 2.1). For every weight layer i (the hidden
layers, then the output layer): G = d loss / d W_i at the current parameters on one batch, G' the
same gradient after layers 1..i-1 (all their parameters: W, b or BN's gamma/beta) took the SGD step
-lr * (their gradient on the same batch); reported as ||G - G'|| / ||G|| and cos(G, G'). Layer 1
has nothing below it (G' = G: 0 and 1).
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

SPREAD_FLOOR = 1e-6  # a unit with no spread at the old point: divide by this instead of 0


# --------------------------------------------------------------------- per-unit distances

def _units(z: jax.Array) -> jax.Array:
    """(examples, units) of a layer's activation (NHWC: a channel over batch and space)."""
    return z.reshape(-1, z.shape[-1])


def w1_per_unit(old: jax.Array, new: jax.Array) -> jax.Array:
    """(units,): the 1-Wasserstein distance between each unit's empirical distributions in `old`
    and `new` (same number of examples): the mean |difference| of their sorted values."""
    return jnp.mean(jnp.abs(jnp.sort(_units(old), axis=0) - jnp.sort(_units(new), axis=0)), axis=0)


def scale_free_w1(old: jax.Array, new: jax.Array) -> jax.Array:
    """Mean over units of W1(old, new) / std(old): the shift in units of the unit's own spread."""
    spread = jnp.maximum(jnp.std(_units(old), axis=0), SPREAD_FLOOR)
    return jnp.mean(w1_per_unit(old, new) / spread)


def ks_per_unit(old: jax.Array, new: jax.Array) -> jax.Array:
    """(units,): sup_x |F_old(x) - F_new(x)| of each unit's two empirical distributions.

    One sort of both samples together per unit, carrying +m for an `old` example and -n for a
    `new` one (n, m the sample sizes, integers: exact): the running sum is n*m (F_old - F_new),
    read at the last of each run of equal values so that ties count as the CDFs do.
    """
    a, b = _units(old), _units(new)
    n, m = a.shape[0], b.shape[0]
    values = jnp.concatenate([a, b])
    signs = jnp.concatenate([jnp.full(a.shape, m, jnp.int32), jnp.full(b.shape, -n, jnp.int32)])
    values, signs = jax.lax.sort((values, signs), dimension=0, num_keys=1)
    gap = jnp.abs(jnp.cumsum(signs, axis=0))
    last = jnp.concatenate([values[1:] != values[:-1], jnp.ones((1, a.shape[1]), bool)])
    return jnp.max(jnp.where(last, gap, 0), axis=0) / (n * m)


def ks_distance(old: jax.Array, new: jax.Array) -> jax.Array:
    """Mean over units of the Kolmogorov-Smirnov distance."""
    return jnp.mean(ks_per_unit(old, new))


# ----------------------------------------------------------------- the MLP's layers

def weight_layers(params: dict) -> list[dict]:
    """The MLP's weight layers in order: the hidden layers, then the output layer."""
    return [*params["hidden"], params["output"]]


def from_weight_layers(layers: list[dict]) -> dict:
    return {"hidden": list(layers[:-1]), "output": layers[-1]}


def mixed_params(prev: dict, now: dict, layer: int) -> dict:
    """Hidden layer `layer` (1-based) and everything above at `prev`, the layers below at `now`:
    the network whose layer `layer` sees the new inputs with its old weights."""
    return {"hidden": [*now["hidden"][:layer - 1], *prev["hidden"][layer - 1:]],
            "output": prev["output"]}


def upper_params(params: dict, state: dict, layer: int) -> tuple[dict, dict]:
    """The network from hidden layer `layer` (1-based) up, and its BN state (its first hidden
    layer is `layer`; an MLP's `apply` takes any stack of layers)."""
    bn = state.get("bn", [])
    return ({"hidden": params["hidden"][layer - 1:], "output": params["output"]},
            {**state, "bn": bn[layer - 1:] if bn else bn})


# ------------------------------------------------------------------ distributional ICS

Apply = Callable[..., tuple[jax.Array, Any, dict]]


def _preacts(apply: Apply, params, state, xs, keys) -> list[jax.Array]:
    """Each hidden layer's pre-activation, (K, batch, units), training mode, batch by batch."""
    return jax.vmap(lambda x, k: apply(params, state, x, True, rng=k)[2]["preacts"])(xs, keys)


def distributional_shift(apply: Apply, prev_params: dict, params: dict, prev_state: dict,
                         state: dict, xs: jax.Array, *, activation: Callable,
                         keys_prev: jax.Array, keys_now: jax.Array,
                         keys_upper: jax.Array) -> dict[str, list[jax.Array]]:
    """Per hidden layer: the full shift and its input-induced part, as scale-free W1 and KS.

    `apply(params, state, x, train, rng=key)` is the model's; `xs` (K, batch, ...) are K
    mini-batches, each normalized with its own statistics as in training, pooled per unit for the
    comparison. `keys_*` (K,) are the noise keys of each batch at the old point, the new point, and
    for layer l's own noise in the input-induced comparison (ignored by a model without noise).
    `activation` is the nonlinearity g that turns layer l-1's pre-activation into layer l's input.
    Returns lists over hidden layers under `full_w1`, `full_ks`, `input_w1`, `input_ks`.
    """
    old = _preacts(apply, prev_params, prev_state, xs, keys_prev)
    new = _preacts(apply, params, state, xs, keys_now)
    flat = lambda z: z.reshape(-1, z.shape[-1])  # noqa: E731
    out = {"full_w1": [], "full_ks": [], "input_w1": [], "input_ks": []}
    for l in range(1, len(old) + 1):
        z_old, z_new = flat(old[l - 1]), flat(new[l - 1])
        out["full_w1"].append(scale_free_w1(z_old, z_new))
        out["full_ks"].append(ks_distance(z_old, z_new))
        if l == 1:  # its input is the data, which does not change
            ref, mix = z_old, z_old
        else:
            up, up_state = upper_params(prev_params, prev_state, l)

            def layer_l(z_below, key):  # old layer l on the input that z_below gives
                return apply(up, up_state, activation(z_below), True, rng=key)[2]["preacts"][0]
            ref = flat(jax.vmap(layer_l)(old[l - 2], keys_upper))
            mix = flat(jax.vmap(layer_l)(new[l - 2], keys_upper))
        out["input_w1"].append(scale_free_w1(ref, mix))
        out["input_ks"].append(ks_distance(ref, mix))
    return out


# ---------------------------------------------------------------------- gradient ICS

def cross_entropy_loss(apply: Apply, state: dict, x: jax.Array, y: jax.Array,
                       key: jax.Array | None = None) -> Callable[[dict], jax.Array]:
    """params -> the training-mode cross-entropy on (x, y), with the noise of `key` if any."""
    def loss(params):
        logits = apply(params, state, x, True, rng=key)[0]
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return loss


def gradient_ics(loss: Callable[[dict], jax.Array], params: dict,
                 learning_rate) -> tuple[list[jax.Array], list[jax.Array]]:
    """Santurkar et al.'s Def. 2.1 per weight layer (hidden layers, then output):
    (||G - G'|| / ||G||, cos(G, G')), G' after the layers below took their SGD step."""
    layers = weight_layers(params)
    grads = weight_layers(jax.grad(loss)(params))
    rel, cos = [], []
    for i in range(len(layers)):
        stepped = [jax.tree.map(lambda p, g: p - learning_rate * g, layers[j], grads[j])
                   if j < i else layers[j] for j in range(len(layers))]
        g = grads[i]["w"]
        g2 = weight_layers(jax.grad(loss)(from_weight_layers(stepped)))[i]["w"]
        norm, norm2 = jnp.linalg.norm(g), jnp.linalg.norm(g2)
        rel.append(jnp.linalg.norm(g - g2) / norm)
        cos.append(jnp.vdot(g, g2) / (norm * norm2))
    return rel, cos


def gradient_ics_batches(apply: Apply, params: dict, state: dict, xs: jax.Array, ys: jax.Array,
                         keys: jax.Array, learning_rate) -> dict[str, list[jax.Array]]:
    """`gradient_ics` on each of K batches (xs (K, batch, ...), ys (K, batch), keys (K,)),
    averaged over the batches: `grad_rel` and `grad_cos`, lists over the weight layers."""
    def one(x, y, key):
        return gradient_ics(cross_entropy_loss(apply, state, x, y, key), params, learning_rate)
    rel, cos = jax.vmap(one)(xs, ys, keys)
    return {"grad_rel": [r.mean() for r in rel], "grad_cos": [c.mean() for c in cos]}

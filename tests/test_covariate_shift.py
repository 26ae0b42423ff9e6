"""The ICS measures of bn_experiments.covariate_shift on cases with known answers."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bn_experiments import covariate_shift as cs
from bn_experiments.models import mlp

K, B = 3, 40


@functools.lru_cache(maxsize=None)
def _model(norm="none", noise=False, widths=(16, 12, 8)):
    cfg = mlp.MLPConfig(widths=widths, norm=norm, bn_noise=noise, init_std=0.3)
    params, state = mlp.init(jax.random.key(0), cfg)

    def apply(p, s, x, train, rng=None):
        return mlp.apply(p, s, x, cfg=cfg, train=train, rng=rng)
    return cfg, params, state, apply


def _data():
    xs = jax.random.uniform(jax.random.key(1), (K, B, 28, 28, 1))
    ys = jax.random.randint(jax.random.key(2), (K, B), 0, 10)
    return xs, ys


def _keys(seed):
    return jax.random.split(jax.random.key(seed), K)


def _perturb(params, layer, seed=5, size=0.3):
    """`params` with hidden layer `layer` (1-based) moved: its W and its bias or BN gamma/beta."""
    hidden = list(params["hidden"])
    leaves, tree = jax.tree.flatten(hidden[layer - 1])
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    moved = [v + size * jax.random.normal(k, v.shape) for v, k in zip(leaves, keys)]
    hidden[layer - 1] = jax.tree.unflatten(tree, moved)
    return {**params, "hidden": hidden}


@functools.lru_cache(maxsize=None)
def _compiled(apply):
    """The two measures jitted once per model (compiling dominates these tests' time)."""
    def shift(prev, now, state, kp, kn):
        return cs.distributional_shift(apply, prev, now, state, state, _data()[0],
                                       activation=jax.nn.sigmoid, keys_prev=kp, keys_now=kn,
                                       keys_upper=_keys(99))

    def grads(params, state, lr):
        xs, ys = _data()
        return cs.gradient_ics_batches(apply, params, state, xs, ys, _keys(0), lr)
    return jax.jit(shift), jax.jit(grads)


def _shift(apply, prev, now, state, keys_prev=0, keys_now=0):
    out = _compiled(apply)[0](prev, now, state, _keys(keys_prev), _keys(keys_now))
    return {k: np.asarray(v) for k, v in out.items()}


def _grad_ics(apply, params, state, lr):
    out = _compiled(apply)[1](params, state, jnp.float32(lr))
    return {k: np.asarray(v) for k, v in out.items()}


def _assert_zero(shift: dict) -> None:
    """Zero up to float32 rounding (XLA may fuse the two passes apart): W1 to 1e-6, KS to one
    example (it moves in steps of 1/n)."""
    for key, v in shift.items():
        np.testing.assert_allclose(v, 0.0, atol=1e-6 + (1 / (K * B) if key.endswith("ks") else 0))


# ----------------------------------------------------------------- per-unit distances

def test_w1_and_ks_known_values():
    old = jax.random.normal(jax.random.key(0), (500, 3)) * jnp.array([1.0, 2.0, 0.5])
    shifted = old + jnp.array([0.3, 0.6, 0.15])  # each unit moved by 0.3 of its spread
    np.testing.assert_allclose(cs.w1_per_unit(old, shifted), [0.3, 0.6, 0.15], rtol=1e-5)
    assert float(cs.scale_free_w1(old, shifted)) == pytest.approx(0.3, rel=0.05)
    assert float(cs.scale_free_w1(old, old)) == 0.0 and float(cs.ks_distance(old, old)) == 0.0
    far = old + 100.0  # no overlap at all
    np.testing.assert_allclose(cs.ks_per_unit(old, far), 1.0)
    # A permutation of the same examples is the same distribution.
    assert float(cs.scale_free_w1(old, old[::-1])) == 0.0


def test_scale_free_measures_are_invariant_to_rescaling_a_unit():
    old = jax.random.normal(jax.random.key(0), (300, 4))
    new = 1.3 * jax.random.normal(jax.random.key(1), (300, 4)) + 0.4
    a = jnp.array([1.0, 10.0, 0.01, 3.0])  # each unit rescaled by its own factor
    base_w1, base_ks = float(cs.scale_free_w1(old, new)), float(cs.ks_distance(old, new))
    assert base_w1 > 0.2
    assert float(cs.scale_free_w1(a * old, a * new)) == pytest.approx(base_w1, rel=1e-5)
    assert float(cs.ks_distance(a * old, a * new)) == pytest.approx(base_ks, abs=1e-6)
    # KS is invariant to any increasing map; W1 in absolute units is not scale-free.
    assert float(cs.ks_distance(jnp.exp(old), jnp.exp(new))) == pytest.approx(base_ks, abs=1e-6)
    assert not np.allclose(cs.w1_per_unit(a * old, a * new), cs.w1_per_unit(old, new))


# ------------------------------------------------------------------ distributional ICS

@pytest.mark.parametrize("norm", ["none", "batchnorm"])
def test_no_shift_when_nothing_changes_and_none_from_unchanged_lower_layers(norm):
    _, params, state, apply = _model(norm)
    same = _shift(apply, params, params, state)
    _assert_zero(same)
    # Only the top hidden layer moves: no layer's input-induced ICS, only its own full shift.
    top = _shift(apply, params, _perturb(params, 3), state)
    np.testing.assert_allclose(top["input_w1"], 0.0, atol=1e-6)
    np.testing.assert_allclose(top["input_ks"], 0.0, atol=1e-6)
    np.testing.assert_allclose(top["full_w1"][:2], 0.0, atol=1e-6)
    assert top["full_w1"][2] > 0.05 and top["full_ks"][2] > 0.02


@pytest.mark.parametrize("norm", ["none", "batchnorm"])
def test_input_induced_part_excludes_the_layers_own_update(norm):
    _, params, state, apply = _model(norm)
    # Layer 2 alone moves: its full shift is large, its input-induced part 0 (its inputs come
    # from layer 1, unchanged); layer 3 above it sees a changed input.
    mid = _shift(apply, params, _perturb(params, 2), state)
    assert mid["full_w1"][1] > 0.05
    assert mid["input_w1"][1] == pytest.approx(0.0, abs=1e-6)
    assert mid["input_ks"][1] == pytest.approx(0.0, abs=1e-6)
    assert mid["input_w1"][2] > 0.01 and mid["full_w1"][0] == pytest.approx(0.0, abs=1e-6)
    # Layer 1 moves: layer 1's input-induced part is 0 by definition (its input is the data).
    low = _shift(apply, params, _perturb(params, 1), state)
    assert low["input_w1"][0] == 0.0 and low["full_w1"][0] > 0.05
    assert (low["input_w1"][1:] > 0.01).all()


@pytest.mark.parametrize("norm", ["none", "batchnorm"])
def test_input_induced_part_is_the_mixed_network_without_noise(norm):
    """Without noise the input-induced shift of layer l is the forward pass at mixed parameters
    (new hidden[:l-1], old hidden[l-1:], old output) against the old network."""
    _, params, state, apply = _model(norm)
    new = _perturb(_perturb(params, 1, seed=6), 2, seed=7)
    got = _shift(apply, params, new, state)
    xs, _ = _data()
    flat = lambda z: z.reshape(-1, z.shape[-1])  # noqa: E731
    old = jax.vmap(lambda x: apply(params, state, x, True)[2]["preacts"])(xs)
    for l in (2, 3):
        mix = jax.vmap(lambda x: apply(cs.mixed_params(params, new, l), state, x, True)
                       [2]["preacts"])(xs)
        want = cs.scale_free_w1(flat(old[l - 1]), flat(mix[l - 1]))
        assert got["input_w1"][l - 1] == pytest.approx(float(want), rel=1e-4)
    mixed = cs.mixed_params(params, new, 2)
    assert mixed["hidden"][0] is new["hidden"][0] and mixed["hidden"][1] is params["hidden"][1]
    assert mixed["output"] is params["output"]


@pytest.mark.parametrize("norm", ["none", "batchnorm"])
def test_noise_shifts_distributions_and_counts_as_input_induced_only_from_below(norm):
    """Santurkar et al.'s noise: at fixed parameters, a new noise draw shifts every layer's full
    distribution; layer l's own draw is held in the input-induced part, the lower layers' is not."""
    _, params, state, apply = _model(norm, noise=True)
    fixed = _shift(apply, params, params, state, keys_prev=1, keys_now=1)
    _assert_zero(fixed)
    moved = _shift(apply, params, params, state, keys_prev=1, keys_now=2)
    assert (moved["full_w1"] > 0.05).all()
    assert moved["input_w1"][0] == 0.0 and (moved["input_w1"][1:] > 0.01).all()


# ------------------------------------------------------------------------ gradient ICS

@pytest.mark.parametrize("norm", ["none", "batchnorm"])
def test_gradient_ics_is_zero_for_the_first_layer_and_for_a_one_layer_network(norm):
    _, params, state, apply = _model(norm)
    out = _grad_ics(apply, params, state, 0.5)
    rel, cos = out["grad_rel"], out["grad_cos"]
    assert rel.shape == (4,)  # three hidden layers and the output layer
    assert rel[0] == pytest.approx(0.0, abs=1e-6) and cos[0] == pytest.approx(1.0, abs=1e-6)
    assert (rel[1:] > 1e-3).all() and (cos[1:] < 1.0).all()
    # A one-layer network (no hidden layer: softmax regression) has nothing below its weights.
    one = {"hidden": [], "output": {"w": 0.01 * jnp.ones((784, 10)), "b": jnp.zeros(10)}}
    single = _grad_ics(apply, one, {"bn": []}, 0.5)["grad_rel"]
    assert single.shape == (1,) and single[0] == pytest.approx(0.0, abs=1e-6)
    # No step (lr = 0): no layer's gradient changes.
    # lr 0: nothing moves; what is left is float32 recomputation noise (~2e-6 on jax 0.5.0,
    # where XLA fuses the second gradient differently), three orders below rel[1:] above
    np.testing.assert_allclose(_grad_ics(apply, params, state, 0.0)["grad_rel"], 0.0, atol=1e-5)


def test_gradient_ics_matches_a_hand_computed_step():
    _, params, state, apply = _model("batchnorm")
    xs, ys = _data()
    loss = cs.cross_entropy_loss(apply, state, xs[0], ys[0])
    rel, cos = cs.gradient_ics(loss, params, 0.7)
    g = jax.grad(loss)(params)
    stepped = {**params, "hidden": [jax.tree.map(lambda p, d: p - 0.7 * d, params["hidden"][0],
                                                 g["hidden"][0]), *params["hidden"][1:]]}
    g1, g2 = g["hidden"][1]["w"], jax.grad(loss)(stepped)["hidden"][1]["w"]
    assert float(rel[1]) == pytest.approx(float(jnp.linalg.norm(g1 - g2) / jnp.linalg.norm(g1)),
                                          rel=1e-5)
    want_cos = jnp.vdot(g1, g2) / (jnp.linalg.norm(g1) * jnp.linalg.norm(g2))
    assert float(cos[1]) == pytest.approx(float(want_cos), abs=1e-6)


def test_upper_params_and_weight_layers():
    cfg, params, state, _ = _model("batchnorm")
    up, up_state = cs.upper_params(params, state, 2)
    assert len(up["hidden"]) == 2 and up["hidden"][0] is params["hidden"][1]
    assert up_state["bn"][0] is state["bn"][1]
    layers = cs.weight_layers(params)
    assert len(layers) == 4 and layers[-1] is params["output"]
    rebuilt = cs.from_weight_layers(layers)
    assert rebuilt["hidden"] == params["hidden"] and rebuilt["output"] is params["output"]
    assert cfg.use_bn

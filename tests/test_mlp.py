"""MLP of the paper's Sec. 4.1: shapes, BN placement, intermediates, inits, its config fields.

(Algorithm 2 is generic over model families: tests/test_models.py.)"""
import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from bn_experiments import batchnorm as bn
from bn_experiments.models import mlp


def _x(n=32, seed=0):
    return jax.random.uniform(jax.random.key(seed), (n, 28, 28, 1))


@pytest.mark.parametrize("norm", ["none", "batchnorm"])
@pytest.mark.parametrize("activation", sorted(mlp.ACTIVATIONS))
def test_shapes_and_intermediates(norm, activation):
    cfg = mlp.MLPConfig(widths=(20, 30, 40), activation=activation, norm=norm)
    params, state = mlp.init(jax.random.key(0), cfg)
    logits, new_state, inter = mlp.apply(params, state, _x(), cfg=cfg, train=True)
    assert logits.shape == (32, 10)
    assert [p.shape for p in inter["preacts"]] == [(32, 20), (32, 30), (32, 40)]
    if norm == "batchnorm":
        assert all("b" not in layer for layer in params["hidden"])  # beta replaces the bias
        assert [z.shape for z in inter["bn_inputs"]] == [(32, 20), (32, 30), (32, 40)]
        assert len(new_state["bn"]) == 3
        # Pre-activations are BN outputs: zero mean, unit variance per unit at init (gamma=1, beta=0).
        np.testing.assert_allclose(np.asarray(inter["preacts"][1]).mean(0), 0, atol=1e-4)
        np.testing.assert_allclose(np.asarray(inter["preacts"][1]).std(0), 1, atol=1e-2)
    else:
        assert inter["bn_inputs"] == [] and new_state == {"bn": []}
    # The nonlinearity is applied to the recorded pre-activation.
    h1 = mlp.ACTIVATIONS[activation](inter["preacts"][0])
    np.testing.assert_allclose(inter["preacts"][1], _recompute_second(params, state, h1, cfg), atol=1e-4)


def _recompute_second(params, state, h1, cfg):
    z = h1 @ params["hidden"][1]["w"]
    if cfg.use_bn:
        return bn.apply(params["hidden"][1]["bn"], state["bn"][1], z, train=True)[0]
    return z + params["hidden"][1]["b"]


@pytest.mark.parametrize("kind,expected", [("gaussian", 0.3), ("lecun", 0.3 / np.sqrt(784)),
                                           ("glorot", 0.3 * np.sqrt(2 / (784 + 100))),
                                           ("he", 0.3 * np.sqrt(2 / 784))])
def test_initializations(kind, expected):
    cfg = mlp.MLPConfig(init=kind, init_std=0.3)
    params, _ = mlp.init(jax.random.key(0), cfg)
    assert abs(float(params["hidden"][0]["w"].std()) / expected - 1) < 0.02
    np.testing.assert_array_equal(params["output"]["b"], 0)


def test_init_std_can_be_traced_for_vmap():
    cfg = mlp.MLPConfig()
    stds = jnp.array([0.01, 1.0])
    params = jax.vmap(lambda s: mlp.init(jax.random.key(0), cfg, {"init_std": s})[0])(stds)
    w = params["hidden"][0]["w"]
    np.testing.assert_allclose(w[1], 100 * w[0], rtol=1e-5)


def test_eval_uses_running_state_and_leaves_it():
    cfg = mlp.MLPConfig(widths=(8,), norm="batchnorm")
    params, state = mlp.init(jax.random.key(0), cfg)
    _, trained, _ = mlp.apply(params, state, _x(), cfg=cfg, train=True)
    assert not np.allclose(trained["bn"][0]["mean"], 0)
    _, same, _ = mlp.apply(params, trained, _x(seed=1), cfg=cfg, train=False)
    jax.tree.map(np.testing.assert_array_equal, same, trained)


def test_bn_switches_reach_batchnorm():
    base = mlp.MLPConfig(widths=(8,), norm="batchnorm")
    params, state = mlp.init(jax.random.key(0), dataclasses.replace(base, bn_affine=False))
    assert "bn" not in params["hidden"][0]
    noisy = dataclasses.replace(base, bn_noise=True)
    p, s = mlp.init(jax.random.key(0), noisy)
    a = mlp.apply(p, s, _x(), cfg=noisy, train=True, rng=jax.random.key(1))[0]
    b = mlp.apply(p, s, _x(), cfg=noisy, train=True, rng=jax.random.key(2))[0]
    assert not np.allclose(a, b)
    # No noise at evaluation, nor in training without a key (population statistics, probes).
    e1 = mlp.apply(p, s, _x(), cfg=noisy, train=False)[0]
    np.testing.assert_array_equal(e1, mlp.apply(p, s, _x(), cfg=base, train=False)[0])
    t1 = mlp.apply(p, s, _x(), cfg=noisy, train=True)[0]
    np.testing.assert_array_equal(t1, mlp.apply(p, s, _x(), cfg=base, train=True)[0])
    assert noisy.needs_rng and not base.needs_rng


def test_noise_without_bn_goes_to_the_same_place():
    """`bn_noise` without BN (Santurkar et al.'s "standard + noise" arm): the noisy-BN hook on
    W u + b, before the nonlinearity, with the key BN would use there; none in evaluation."""
    base = mlp.MLPConfig(widths=(8, 6))
    noisy = dataclasses.replace(base, bn_noise=True)
    params, state = mlp.init(jax.random.key(0), noisy)
    key = jax.random.key(3)
    _, _, clean = mlp.apply(params, state, _x(), cfg=base, train=True)
    _, _, inter = mlp.apply(params, state, _x(), cfg=noisy, train=True, rng=key)
    first = bn.noisy_bn_hook(clean["preacts"][0], jax.random.split(key, 2)[0])
    np.testing.assert_allclose(inter["preacts"][0], first, rtol=1e-6)
    assert not np.allclose(inter["preacts"][1], clean["preacts"][1])
    assert noisy.needs_rng and inter["bn_inputs"] == []
    for kwargs in ({"train": False, "rng": key}, {"train": True}):
        np.testing.assert_array_equal(mlp.apply(params, state, _x(), cfg=noisy, **kwargs)[0],
                                      mlp.apply(params, state, _x(), cfg=base, **kwargs)[0])


def test_bad_config_names_the_field():
    with pytest.raises(ValueError, match="model.activation"):
        mlp.MLPConfig(activation="swish")
    with pytest.raises(ValueError, match="model.norm"):
        mlp.MLPConfig(norm="layernorm")
    with pytest.raises(ValueError, match="model.widths"):
        mlp.MLPConfig(widths=())


def test_family_fields_and_static_config():
    assert mlp.FAMILY.name == "mlp" and mlp.FAMILY.field_names() == (
        "bn_norm_p", "bn_position", "bn_whiten_group", "dropout", "hidden_scale", "widths")
    section = ml_collections.ConfigDict({"name": "mlp", "widths": (7, 5), "activation": "relu",
                                         "norm": "batchnorm", "init": "he", "init_std": 0.5,
                                         "tracked_units": (0,), "bn_momentum": 0.9,
                                         "bn_epsilon": 1e-3})
    cfg = mlp.make_config(section, (28, 28, 1))
    assert cfg == mlp.MLPConfig(input_size=784, widths=(7, 5), activation="relu", norm="batchnorm",
                                init="he", init_std=0.5, bn_momentum=0.9, bn_epsilon=1e-3)
    rgb = mlp.make_config(section, (8, 8, 3))  # NHWC in, flattened inside
    assert rgb.input_size == 192
    params, state = mlp.init(jax.random.key(0), rgb, {"init_std": jnp.float32(0.5)})
    logits, _, inter = mlp.apply(params, state, _x()[:4, :8, :8, :].repeat(3, -1), cfg=rgb,
                                 train=True)
    assert logits.shape == (4, 10) and len(inter["bn_inputs"]) == len(state["bn"]) == 2


def test_hidden_scale_multiplies_the_hidden_weights_only_and_bn_output_is_unchanged():
    base = mlp.MLPConfig(widths=(16, 16), norm="batchnorm")
    scaled = dataclasses.replace(base, hidden_scale=10.0)
    p1, s1 = mlp.init(jax.random.key(0), base)
    p10, _ = mlp.init(jax.random.key(0), scaled)
    for a, b in zip(p1["hidden"], p10["hidden"]):
        np.testing.assert_allclose(b["w"], 10.0 * a["w"], rtol=1e-6)
    np.testing.assert_array_equal(p10["output"]["w"], p1["output"]["w"])
    x = _x()[:32]
    out1 = mlp.apply(p1, s1, x, cfg=base, train=True)[0]
    out10 = mlp.apply(p10, s1, x, cfg=scaled, train=True)[0]
    # BN(aWu) = BN(Wu), up to BN's epsilon, which counts 1/a^2 less at a = 10: within 1%.
    assert float(jnp.linalg.norm(out10 - out1) / jnp.linalg.norm(out1)) < 0.01
    unnormalized = dataclasses.replace(base, norm="none")
    q1, t1 = mlp.init(jax.random.key(0), unnormalized)
    q10, _ = mlp.init(jax.random.key(0), dataclasses.replace(unnormalized, hidden_scale=10.0))
    far = mlp.apply(q10, t1, x, cfg=unnormalized, train=True)[0]
    near = mlp.apply(q1, t1, x, cfg=unnormalized, train=True)[0]
    assert float(jnp.linalg.norm(far - near) / jnp.linalg.norm(near)) > 0.1  # without BN: changed


@pytest.mark.parametrize("field,value", [
    ("widths", []), ("widths", [3, 0]), ("widths", "abc"), ("activation", "swish"),
    ("norm", "layernorm"), ("init", "xavier"), ("tracked_units", [0, 5]), ("tracked_units", []),
    ("bn_affine", "no"), ("bn_stop_gradient", 1), ("bn_noise", None), ("dropout", 1.0),
    ("dropout", -0.1),
])
def test_validate_names_the_field(field, value):
    section = {"widths": [5, 5], "activation": "relu", "norm": "none", "init": "gaussian",
               "tracked_units": [0], field: value}
    with pytest.raises(ValueError, match=rf"^model\.{field}=") as err:
        mlp.validate(section)
    assert len(str(err.value).splitlines()) == 1


def test_bn_switches_are_common_config_fields_passed_to_the_mlp():
    """`model.bn_stop_gradient / bn_affine / bn_noise` reach MLPConfig; their defaults are the
    plain BN (so existing configs compute the same numbers)."""
    from bn_experiments import models
    section = models.default_config("mlp")
    assert (section.bn_stop_gradient, section.bn_affine, section.bn_noise) == (False, True, False)
    assert mlp.make_config(section, (28, 28, 1)) == mlp.MLPConfig()
    section.norm, section.bn_stop_gradient, section.bn_affine, section.bn_noise = \
        "batchnorm", True, False, True
    cfg = mlp.make_config(section, (28, 28, 1))
    assert (cfg.bn_stop_gradient, cfg.bn_affine, cfg.bn_noise, cfg.needs_rng) == (True, False, True, True)
    params, _ = mlp.init(jax.random.key(0), cfg)
    assert all("bn" not in layer for layer in params["hidden"])  # no gamma/beta


def test_bn_after_the_nonlinearity_normalizes_the_layer_output():
    cfg = mlp.MLPConfig(widths=(16, 8), norm="batchnorm", bn_position="after", activation="relu")
    params, state = mlp.init(jax.random.key(0), cfg)
    assert all(set(layer) == {"w", "b", "bn"} for layer in params["hidden"])
    params["hidden"][0]["b"] = params["hidden"][0]["b"] + 0.3
    x = _x()[:32]
    _, _, inter = mlp.apply(params, state, x, cfg=cfg, train=True)
    h = x.reshape(32, -1)
    z = h @ params["hidden"][0]["w"] + params["hidden"][0]["b"]
    np.testing.assert_allclose(inter["preacts"][0], z, rtol=1e-6)
    np.testing.assert_allclose(inter["bn_inputs"][0], jax.nn.relu(z), rtol=1e-6)
    # The next layer's input is the BN'd output: zero mean, unit variance per unit (gamma 1, beta 0).
    u = (inter["preacts"][1] - params["hidden"][1]["b"]) @ jnp.linalg.pinv(params["hidden"][1]["w"])
    np.testing.assert_allclose(np.asarray(u).mean(0), 0.0, atol=1e-3)
    with pytest.raises(ValueError, match="model.bn_position"):
        mlp.MLPConfig(bn_position="middle")


def test_dropout_drops_hidden_outputs_in_training_only():
    cfg = mlp.MLPConfig(widths=(64, 64), norm="batchnorm", dropout=0.25)
    assert cfg.needs_rng and not mlp.MLPConfig().needs_rng
    params, state = mlp.init(jax.random.key(0), cfg)
    x = _x()[:32]
    # The output layer sees the last hidden layer's dropped-out, rescaled activations.
    params["output"]["w"] = jnp.eye(64, 10)
    params["output"]["b"] = jnp.zeros(10)
    plain = mlp.MLPConfig(widths=(64, 64), norm="batchnorm")
    base, _, _ = mlp.apply(params, state, x, cfg=plain, train=True)
    dropped, _, _ = mlp.apply(params, state, x, cfg=cfg, train=True, rng=jax.random.key(3))
    zero = np.asarray(dropped) == 0
    assert 0.15 < zero.mean() < 0.35                    # about a quarter of the units dropped
    kept = ~zero
    # Inverted dropout: the kept units are scaled by 1 / (1 - rate); the first layer's dropout
    # changes the second layer's input, so compare only the scale's direction of effect.
    assert np.asarray(dropped)[kept].mean() > np.asarray(base)[kept].mean()
    # No rng (probes, Algorithm 2) or evaluation: no dropout, the plain network's output.
    for kw in ({"train": True}, {"train": False, "rng": jax.random.key(3)}):
        out, _, _ = mlp.apply(params, state, x, cfg=cfg, **kw)
        ref, _, _ = mlp.apply(params, state, x, cfg=plain, **kw)
        np.testing.assert_array_equal(out, ref)

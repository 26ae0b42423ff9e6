"""Differentiable group ZCA whitening: known answers for the inverse square root, the whitened
batch, the running state, pooled statistics across devices, and the MLP that uses it."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bn_experiments import config as config_lib
from bn_experiments import whitening
from bn_experiments.configs import default
from bn_experiments.models import mlp


def _spd(n, seed=0, cond_floor=1e-3):
    a = jax.random.normal(jax.random.key(seed), (n, n))
    return a @ a.T / n + cond_floor * jnp.eye(n)


def _batch(m=64, d=12, seed=0):
    k1, k2 = jax.random.split(jax.random.key(seed))
    mix = jax.random.normal(k1, (d, d))  # correlated features with a non-zero mean
    return 2.0 + jax.random.normal(k2, (m, d)) @ mix


def test_inverse_sqrt_matches_the_eigendecomposition():
    for seed, n in ((0, 5), (1, 20)):
        cov = _spd(n, seed)
        vals, vecs = np.linalg.eigh(np.asarray(cov, np.float64))
        exact = (vecs / np.sqrt(vals)) @ vecs.T
        got = np.asarray(whitening.inverse_sqrt(cov, 0.0))
        np.testing.assert_allclose(got, exact, rtol=2e-3, atol=2e-3 * np.abs(exact).max())
        np.testing.assert_allclose(got @ np.asarray(cov) @ got, np.eye(n), atol=1e-3)
    # Too few iterations leave small-variance directions under-whitened: the count matters.
    cov = _spd(20, 1)
    few = np.asarray(whitening.inverse_sqrt(cov, 0.0, iterations=5))
    assert np.abs(few @ np.asarray(cov) @ few - np.eye(20)).max() > 0.1


def test_groups_split_the_width_or_refuse():
    assert whitening.groups(100, 20) == (5, 20)
    assert whitening.groups(100, 0) == (1, 100)
    assert whitening.groups(100, 300) == (1, 100)
    with pytest.raises(ValueError, match="groups of 16"):
        whitening.groups(100, 16)


@pytest.mark.parametrize("group", [4, 12])
def test_training_output_is_white_within_each_group(group):
    x = _batch()
    params, state = whitening.init(12, group)
    y, new_state = whitening.apply(params, state, x, train=True, epsilon=0.0)
    y = np.asarray(y, np.float64)
    np.testing.assert_allclose(y.mean(0), 0.0, atol=1e-4)
    cov = y.T @ y / y.shape[0]
    for i in range(0, 12, group):
        np.testing.assert_allclose(cov[i:i + group, i:i + group], np.eye(group), atol=2e-3)
    if group < 12:  # groups are not decorrelated from each other
        assert np.abs(cov[:group, group:]).max() > 0.05
    # Running statistics move by (1 - momentum) towards the batch's.
    mean, batch_cov = whitening.batch_moments(x, 12 // group)
    np.testing.assert_allclose(new_state["mean"], 0.01 * mean, rtol=1e-5)
    np.testing.assert_allclose(new_state["cov"], 0.99 * state["cov"] + 0.01 * batch_cov,
                               rtol=1e-5, atol=1e-6)


def test_zca_is_the_whitening_closest_to_the_input():
    """ZCA (symmetric Sigma^-1/2) keeps each whitened unit most correlated with its own input,
    unlike e.g. PCA whitening: the cross-covariance of output and input is symmetric PSD."""
    x = _batch(d=6)
    params, state = whitening.init(6, 0)
    y, _ = whitening.apply(params, state, x, train=True, epsilon=0.0)
    xc, y = np.asarray(x - x.mean(0), np.float64), np.asarray(y, np.float64)
    cross = y.T @ xc / x.shape[0]
    np.testing.assert_allclose(cross, cross.T, atol=1e-3)
    assert np.linalg.eigvalsh((cross + cross.T) / 2).min() > 0


def test_inference_uses_the_running_statistics_and_scale_bias_apply():
    x = _batch()
    params = {"scale": jnp.full((12,), 2.0), "bias": jnp.full((12,), -1.0)}
    _, state = whitening.init(12, 6)
    mean, cov = whitening.batch_moments(x, 2)
    state = {"mean": mean, "cov": cov}
    y_eval, same = whitening.apply(params, state, x, train=False, epsilon=0.0)
    y_train, _ = whitening.apply(params, state, x, train=True, epsilon=0.0)
    assert same is state
    np.testing.assert_allclose(y_eval, y_train, atol=1e-4)
    np.testing.assert_allclose(np.asarray(y_eval).mean(0), -1.0, atol=1e-4)
    np.testing.assert_allclose(np.asarray(y_eval).std(0), 2.0, atol=1e-3)


def test_whitening_is_scale_invariant_and_its_gradient_flows_through_the_statistics():
    x = _batch()
    params, state = whitening.init(12, 4)
    f = lambda p, x, sg=False: jnp.sum(jnp.sin(whitening.apply(  # noqa: E731
        p, state, x, train=True, epsilon=0.0, stop_gradient_stats=sg)[0]))
    np.testing.assert_allclose(f(params, 7.0 * x), f(params, x), rtol=1e-4)
    gx = jax.grad(f, argnums=1)(params, x)
    gx_sg = jax.grad(lambda p, x: f(p, x, True), argnums=1)(params, x)
    assert np.all(np.isfinite(gx))
    # Through the statistics, the gradient is orthogonal to the batch mean direction; without, not.
    np.testing.assert_allclose(np.asarray(gx).sum(0), 0.0, atol=1e-3)
    assert np.abs(np.asarray(gx_sg).sum(0)).max() > 1e-2


def test_statistics_pooled_across_devices_equal_the_whole_batch():
    x = _batch(m=64)
    params, state = whitening.init(12, 4)
    whole, whole_state = whitening.apply(params, state, x, train=True)
    shards = x.reshape(4, 16, 12)
    split, split_state = jax.vmap(lambda s: whitening.apply(params, state, s, train=True,
                                                            axis_name="d"), axis_name="d")(shards)
    np.testing.assert_allclose(split.reshape(64, 12), whole, atol=1e-4)
    np.testing.assert_allclose(split_state["cov"][0], whole_state["cov"], atol=1e-5)


def test_mlp_with_whitening_groups():
    cfg = mlp.MLPConfig(input_size=12, widths=(12, 8), norm="batchnorm", bn_whiten_group=4)
    assert cfg.whitens
    params, state = mlp.init(jax.random.key(0), cfg)
    assert state["bn"][0]["cov"].shape == (3, 4, 4) and state["bn"][1]["cov"].shape == (2, 4, 4)
    logits, _, inter = mlp.apply(params, state, _batch(), cfg=cfg, train=True)
    assert logits.shape == (64, 10) and np.all(np.isfinite(logits))
    z = np.asarray(inter["preacts"][0], np.float64)  # whitened W u: white within groups of 4
    np.testing.assert_allclose((z - z.mean(0)).T[:4] @ (z - z.mean(0))[:, :4] / 64, np.eye(4),
                               atol=2e-3)
    with pytest.raises(ValueError, match="groups of 5"):
        mlp.MLPConfig(widths=(12,), norm="batchnorm", bn_whiten_group=5)


@pytest.mark.parametrize("override,field", [
    ({"model.bn_whiten_group": 30}, "model.bn_whiten_group"),
    ({"model.bn_whiten_group": -1}, "model.bn_whiten_group"),
    ({"model.bn_whiten_group": 20, "model.bn_norm_p": "l1", "population_batches": 0},
     "model.bn_norm_p"),
    ({"model.bn_whiten_group": 20, "population_batches": 4}, "population_batches"),
])
def test_bad_whitening_configs_get_one_line(override, field):
    cfg = default.get_config()
    cfg.model.norm = "batchnorm"
    for key, value in override.items():
        section, name = key.rsplit(".", 1) if "." in key else (None, key)
        setattr(cfg.model if section else cfg, name, value)
    with pytest.raises(config_lib.ConfigError, match=rf"^{field}=") as err:
        config_lib.check(cfg)
    assert len(str(err.value).splitlines()) == 1

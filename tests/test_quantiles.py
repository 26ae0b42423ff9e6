"""Column quantiles sorted as int32 keys: jnp.quantile's values, and the same bits downstream."""
import jax
import jax.numpy as jnp
import numpy as np

from bn_experiments import quantiles, train
from bn_experiments.experiments import _fig1_measures

# jnp.quantile's interpolation weights changed in jax 0.10.1 (by 1-2 ulp); `columns` follows the
# current formula, so on an older jax (the oldest supported set) the two agree to 1e-6.
JNP_IS_CURRENT = tuple(int(p) for p in jax.__version__.split(".")[:3]) >= (0, 10, 1)


def _cases(rng, count, cols=5):
    """Matrices of many shapes and scales, with ties, -0 among the ties, NaN and infinities."""
    for t in range(count):
        n = (1, 2, 7, 257, 2000, 10_000)[t % 6]
        z = (rng.normal(size=(n, cols)) * 10.0 ** rng.uniform(-3, 3)).astype(np.float32)
        if t % 3 == 0:
            z = np.round(z)  # ties, and -0 among them
        if t % 4 == 0:
            z[rng.integers(n), rng.integers(cols)] = rng.choice([np.nan, np.inf, -np.inf])
        yield t, z


def _assert_same_values(a, b, z, what):
    """The same bits, but 0 for -0; NaN where NaN; on an older jax, within 1e-6."""
    a, b = np.asarray(a), np.asarray(b)
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=what)
    if JNP_IS_CURRENT:
        same = (a.view(np.int32) == b.view(np.int32)) | ((a == 0) & (b == 0)) | np.isnan(a)
        assert same.all(), f"{what}: {a[~same][:3]} vs {b[~same][:3]}"
    else:
        scale = np.max(np.abs(z[np.isfinite(z)]), initial=1.0)
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6 * scale, err_msg=what)


def test_columns_are_jnp_quantile_up_to_the_sign_of_zero():
    ours = jax.jit(lambda z: quantiles.columns(z, train.ICS_LEVELS))
    ref = jax.jit(lambda z: jnp.quantile(z, jnp.asarray(train.ICS_LEVELS), axis=0))
    for t, z in _cases(np.random.default_rng(1), 36):
        _assert_same_values(ours(z), ref(z), z, f"case {t}, n={z.shape[0]}")


def test_column_percentiles_are_jnp_percentile_up_to_the_sign_of_zero():
    pct = (0.0, 15.0, 50.0, 85.0, 100.0)
    ours = jax.jit(lambda z: quantiles.column_percentiles(z, pct))
    ref = jax.jit(lambda z: jnp.percentile(z, jnp.asarray(pct), axis=0))
    for t, z in _cases(np.random.default_rng(2), 18):
        _assert_same_values(ours(z), ref(z), z, f"case {t}, n={z.shape[0]}")


def test_vmapped_columns_are_the_columns_of_each_matrix():
    z = np.random.default_rng(3).normal(size=(3, 600, 20)).astype(np.float32)
    batched = jax.jit(jax.vmap(lambda m: quantiles.columns(m, train.ICS_LEVELS)))(z)
    one = jax.jit(lambda m: quantiles.columns(m, train.ICS_LEVELS))
    for i in range(3):
        np.testing.assert_array_equal(np.asarray(batched[i]), np.asarray(one(z[i])))


def _bits(tree):
    return jax.tree.map(lambda x: np.asarray(x).view(np.int32), jax.device_get(tree))


def _assert_same_outputs(ours, ref):
    """Two pytrees of outputs: the same bits on current jax, within 1e-6 on an older one."""
    if JNP_IS_CURRENT:
        jax.tree.map(np.testing.assert_array_equal, _bits(ours), _bits(ref))
    else:
        jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-6),
                     jax.device_get(ours), jax.device_get(ref))


def _zero_heavy(rng, n, cols):
    """Rounded values: many exact zeros of both signs, so -0 order statistics do occur."""
    return np.round(rng.normal(size=(n, cols)) * 0.6).astype(np.float32)


def test_ics_drift_has_the_same_bits_from_either_quantiles():
    """The drift takes absolute differences, which do not see the sign of a zero: the ICS numbers
    from `columns` are those `jnp.quantile` gave, bit for bit."""
    rng = np.random.default_rng(4)

    def drift(quantile_fn):
        def stats(z):
            return {"mean": [z.mean(0)], "std": [z.std(0)], "quantiles": [quantile_fn(z)]}
        return jax.jit(lambda a, b: train.ics_drift(stats(a), stats(b)))

    ours = drift(lambda z: quantiles.columns(z, train.ICS_LEVELS))
    ref = drift(lambda z: jnp.quantile(z, jnp.asarray(train.ICS_LEVELS), axis=0))
    for t in range(6):
        a, b = _zero_heavy(rng, 300, 8), _zero_heavy(rng, 300, 8)
        _assert_same_outputs(ours(a, b), ref(a, b))


def test_fig1_probe_shift_has_the_same_bits_from_either_percentiles():
    """Figure 1's probe outputs (absolute values and differences of percentiles) are the numbers
    the jnp.percentile version gave, bit for bit, zeros of both signs included."""
    rng = np.random.default_rng(5)
    q = _fig1_measures.QUANTILES
    ours = jax.jit(lambda a, b: _fig1_measures.shift(quantiles.column_percentiles(a, q),
                                                     quantiles.column_percentiles(b, q)))
    ref = jax.jit(lambda a, b: _fig1_measures.shift(jnp.percentile(a, jnp.asarray(q), axis=0),
                                                    jnp.percentile(b, jnp.asarray(q), axis=0)))
    for t in range(6):
        a, b = (_zero_heavy(rng, 600, 16) * (1 + t) for _ in range(2))
        _assert_same_outputs(ours(a, b), ref(a, b))


def test_percentiles_of_a_bn_network_have_the_bits_of_jnp_percentile():
    """Inside one jitted program with the network that produces the values (Figure 1's probe:
    training-mode BN, pooled over 10 batches), `column_percentiles` sees the same bits as
    jnp.percentile: how the quantiles read their input must not change how XLA computes it (a
    transposed sort did, moving the matmul's last bits)."""
    from bn_experiments import config as config_lib, models
    from bn_experiments.configs import fig1_mnist

    cfg = fig1_mnist.get_config("quick")
    cfg.runs = ("bn: model.norm=batchnorm",)
    run = config_lib.runs(cfg)[0]
    family = models.get(run.static.model_name)
    x = jnp.asarray(np.random.default_rng(6).uniform(size=(600, 784)).astype(np.float32))

    def pooled(params, state):
        z = jax.vmap(lambda xb: family.apply(params, state, xb, cfg=run.static.model,
                                             train=True)[2]["preacts"][-1])(x.reshape(10, 60, -1))
        return z.reshape(-1, z.shape[-1])

    q = _fig1_measures.QUANTILES
    ours = jax.jit(lambda p, s: quantiles.column_percentiles(pooled(p, s), q))
    ref = jax.jit(lambda p, s: jnp.percentile(pooled(p, s), jnp.asarray(q), axis=0))
    numbers = train.numbers_to_arrays(run.numbers)
    for seed in range(3):
        params, state = family.init(jax.random.key(seed), run.static.model, numbers)
        a, b = np.asarray(ours(params, state)), np.asarray(ref(params, state))
        if JNP_IS_CURRENT:
            np.testing.assert_array_equal(a.view(np.int32), b.view(np.int32))
        else:  # older jnp.percentile weights differ by 1-2 ulp: within 1e-6 of the values' scale
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6 * np.max(np.abs(b)))

"""Functional BatchNorm: bit-for-bit parity with flax.linen.BatchNorm, gradients, Algorithm 2, ablations."""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, PartitionSpec as P
from jax.test_util import check_grads

from bn_experiments import batchnorm as bn

SHAPES = [(32, 16), (8, 5, 5, 6)]
DTYPES = [jnp.float32, jnp.bfloat16]
HYPER = [(0.99, 1e-5), (0.9, 1e-3), (0.5, 0.1)]


def _inputs(shape, dtype, steps, seed=0):
    """Inputs with a non-zero mean and a large scale, so the fast variance has roundoff to match."""
    keys = jax.random.split(jax.random.key(seed), steps)
    return [(3.0 + 5.0 * jax.random.normal(k, shape)).astype(dtype) for k in keys]


def _random_params(features, seed=1):
    k1, k2 = jax.random.split(jax.random.key(seed))
    return {"scale": 1.0 + 0.3 * jax.random.normal(k1, (features,)),
            "bias": 0.5 * jax.random.normal(k2, (features,))}


def _assert_bitwise(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    assert np.array_equal(a, b), f"max abs diff {np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))}"


def _flax_module(momentum, epsilon, fast, **kw):
    return nn.BatchNorm(momentum=momentum, epsilon=epsilon, use_fast_variance=fast, **kw)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("momentum,epsilon", HYPER)
def test_parity_with_flax_train_then_eval(shape, dtype, fast, momentum, epsilon):
    module = _flax_module(momentum, epsilon, fast)
    params = _random_params(shape[-1])
    _, state = bn.init(shape[-1])
    flax_vars = {"params": params, "batch_stats": dict(state)}

    flax_train = jax.jit(lambda v, x: module.apply(v, x, use_running_average=False,
                                                   mutable=["batch_stats"]))
    flax_eval = jax.jit(lambda v, x: module.apply(v, x, use_running_average=True))
    ours_train = jax.jit(lambda p, s, x: bn.apply(p, s, x, train=True, momentum=momentum,
                                                  epsilon=epsilon, use_fast_variance=fast))
    ours_eval = jax.jit(lambda p, s, x: bn.apply(p, s, x, train=False, momentum=momentum,
                                                 epsilon=epsilon, use_fast_variance=fast))
    xs = _inputs(shape, dtype, steps=4)
    for x in xs[:3]:
        y_flax, updates = flax_train(flax_vars, x)
        flax_vars = {"params": params, "batch_stats": updates["batch_stats"]}
        y, state = ours_train(params, state, x)
        _assert_bitwise(y, y_flax)
        _assert_bitwise(state["mean"], flax_vars["batch_stats"]["mean"])
        _assert_bitwise(state["var"], flax_vars["batch_stats"]["var"])
    y, same_state = ours_eval(params, state, xs[3])
    _assert_bitwise(y, flax_eval(flax_vars, xs[3]))
    jax.tree.map(_assert_bitwise, same_state, state)


@pytest.mark.parametrize("fast", [True, False])
def test_gradients_match_flax(fast):
    x = _inputs((16, 8), jnp.float32, 1)[0]
    params = _random_params(8)
    _, state = bn.init(8)
    w = jax.random.normal(jax.random.key(3), x.shape)
    module = _flax_module(0.99, 1e-5, fast)

    def ours(p, x):
        return jnp.sum(w * bn.apply(p, state, x, train=True, use_fast_variance=fast)[0])

    def theirs(p, x):
        y, _ = module.apply({"params": p, "batch_stats": state}, x, use_running_average=False,
                            mutable=["batch_stats"])
        return jnp.sum(w * y)

    g_ours = jax.jit(jax.grad(ours, argnums=(0, 1)))(params, x)
    g_theirs = jax.jit(jax.grad(theirs, argnums=(0, 1)))(params, x)
    jax.tree.map(_assert_bitwise, g_ours, g_theirs)


@pytest.mark.parametrize("fast", [True, False])
def test_gradients_through_batch_statistics_match_finite_differences(fast):
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.key(0), (12, 5), jnp.float64) * 2.0 + 1.0
        params = {k: v.astype(jnp.float64) for k, v in _random_params(5).items()}
        state = {"mean": jnp.zeros(5, jnp.float64), "var": jnp.ones(5, jnp.float64)}
        w = jax.random.normal(jax.random.key(3), x.shape, jnp.float64)

        def loss(x, scale, bias):
            y, _ = bn.apply({"scale": scale, "bias": bias}, state, x, train=True,
                            use_fast_variance=fast)
            return jnp.sum(w * jnp.tanh(y))

        check_grads(loss, (x, params["scale"], params["bias"]), order=2, modes=["rev"],
                    atol=1e-6, rtol=1e-6)


def test_sum_of_outputs_has_zero_input_gradient_only_when_statistics_are_differentiated():
    """Sec. 2: the batch mean depends on x; ignoring that gives a gradient the model cannot use."""
    x = _inputs((20, 4), jnp.float32, 1)[0]
    params, state = bn.init(4)

    def total(x, stop):
        return jnp.sum(bn.apply(params, state, x, train=True, stop_gradient_stats=stop)[0])

    assert np.abs(np.asarray(jax.grad(total)(x, False))).max() < 1e-5
    assert np.abs(np.asarray(jax.grad(total)(x, True))).min() > 0.01


def test_bias_gets_a_useless_gradient_when_the_mean_is_outside_the_gradient_step():
    """Sec. 2: x = u + b, normalized by a mean treated as a constant: b's update leaves y unchanged."""
    u = _inputs((20, 3), jnp.float32, 1)[0]
    params, state = bn.init(3, )
    target = jnp.ones_like(u)

    def loss(b, stop):
        y, _ = bn.apply(params, state, u + b, train=True, stop_gradient_stats=stop)
        return jnp.sum((y - target) ** 2)

    b = jnp.zeros(3)
    g_stop, g_full = jax.grad(loss)(b, True), jax.grad(loss)(b, False)
    assert np.abs(np.asarray(g_stop)).min() > 0.1
    assert np.abs(np.asarray(g_full)).max() < 1e-4
    # The update the stopped gradient suggests changes nothing in the forward pass.
    np.testing.assert_allclose(loss(b - 0.1 * g_stop, True), loss(b, True), rtol=1e-5)


def test_init_shapes_and_dtypes():
    params, state = bn.init(7, param_dtype=jnp.bfloat16)
    assert params["scale"].dtype == jnp.bfloat16 and params["bias"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(params["scale"], 1)
    np.testing.assert_array_equal(params["bias"], 0)
    assert state["mean"].dtype == jnp.float32 and state["var"].dtype == jnp.float32
    np.testing.assert_array_equal(state["mean"], 0)
    np.testing.assert_array_equal(state["var"], 1)


def test_eval_uses_running_statistics():
    x = _inputs((10, 3), jnp.float32, 1)[0]
    params = _random_params(3)
    state = {"mean": jnp.array([1.0, -2.0, 0.5]), "var": jnp.array([4.0, 0.25, 1.0])}
    y, new_state = bn.apply(params, state, x, train=False, epsilon=1e-5)
    expected = (np.asarray(x) - state["mean"]) / np.sqrt(np.asarray(state["var"]) + 1e-5)
    expected = expected * params["scale"] + params["bias"]
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    assert new_state is state


def test_convolution_statistics_are_per_feature_map_over_batch_and_space():
    x = _inputs((4, 6, 5, 3), jnp.float32, 1)[0]
    params, state = bn.init(3)
    y, new_state = bn.apply(params, state, x, train=True, momentum=0.0)
    xn = np.asarray(x, np.float64)
    np.testing.assert_allclose(new_state["mean"], xn.mean((0, 1, 2)), rtol=1e-5)
    np.testing.assert_allclose(new_state["var"], xn.var((0, 1, 2)), rtol=1e-4)
    np.testing.assert_allclose(np.asarray(y).mean((0, 1, 2)), 0, atol=1e-4)
    np.testing.assert_allclose(np.asarray(y).std((0, 1, 2)), 1, atol=1e-3)


def _two_layer_moments_fn(w):
    """A toy network with two BN layers, returning the Moments of each BN input (training mode)."""
    p1, s1 = bn.init(w.shape[0])

    def moments_fn(x):
        h, _ = bn.apply(p1, s1, x, train=True)
        z = jax.nn.relu(h) @ w
        return {"layer1": bn.batch_moments(x), "layer2": bn.batch_moments(z)}
    return moments_fn


def test_population_statistics_match_numpy():
    k = jax.random.split(jax.random.key(0), 2)
    batches = 2.0 + 3.0 * jax.random.normal(k[0], (5, 7, 2, 2, 4))  # K=5 conv batches, m = 7*2*2
    w = jax.random.normal(k[1], (4, 3))
    stats = jax.jit(functools.partial(bn.population_statistics, _two_layer_moments_fn(w)))(batches)

    xb = np.asarray(batches, np.float64)
    m = 7 * 2 * 2
    np.testing.assert_allclose(stats["layer1"]["mean"], xb.mean((1, 2, 3)).mean(0), rtol=1e-5)
    np.testing.assert_allclose(stats["layer1"]["var"],
                               m / (m - 1) * xb.var((1, 2, 3)).mean(0), rtol=1e-4)
    h = (xb - xb.mean((1, 2, 3), keepdims=True)) / np.sqrt(xb.var((1, 2, 3), keepdims=True) + 1e-5)
    z = np.maximum(h, 0) @ np.asarray(w, np.float64)
    np.testing.assert_allclose(stats["layer2"]["mean"], z.mean((1, 2, 3)).mean(0), rtol=1e-4)
    np.testing.assert_allclose(stats["layer2"]["var"],
                               m / (m - 1) * z.var((1, 2, 3)).mean(0), rtol=1e-3)
    # The result is a BN state: it plugs straight into inference.
    params, _ = bn.init(4)
    y, _ = bn.apply(params, stats["layer1"], batches[0], train=False)
    assert y.shape == batches[0].shape


def test_no_scale_no_bias_matches_flax_and_plain_normalization():
    x = _inputs((16, 5), jnp.float32, 1)[0]
    _, state = bn.init(5)
    y, _ = jax.jit(lambda x: bn.apply({}, state, x, train=True, use_scale=False,
                                      use_bias=False))(x)
    module = nn.BatchNorm(use_scale=False, use_bias=False)
    y_flax, _ = jax.jit(lambda x: module.apply({"batch_stats": state}, x, use_running_average=False,
                                               mutable=["batch_stats"]))(x)
    _assert_bitwise(y, y_flax)
    xn = np.asarray(x, np.float64)
    np.testing.assert_allclose(y, (xn - xn.mean(0)) / np.sqrt(xn.var(0) + 1e-5), atol=1e-4)


def test_stop_gradient_stats_keeps_the_forward_pass():
    x = _inputs((16, 5), jnp.float32, 1)[0]
    params, state = _random_params(5), bn.init(5)[1]
    a = bn.apply(params, state, x, train=True)
    b = bn.apply(params, state, x, train=True, stop_gradient_stats=True)
    jax.tree.map(_assert_bitwise, a, b)


def test_output_hook_gets_rng_and_runs_after_scale_and_bias():
    x = _inputs((16, 5), jnp.float32, 1)[0]
    params, state = _random_params(5), bn.init(5)[1]
    seen = {}

    def hook(y, rng):
        seen["rng"] = rng
        return y * 2.0 + 1.0

    key = jax.random.key(7)
    y_plain, _ = bn.apply(params, state, x, train=True)
    y_hooked, _ = bn.apply(params, state, x, train=True, output_hook=hook, rng=key)
    _assert_bitwise(y_hooked, y_plain * 2.0 + 1.0)
    assert seen["rng"] is key
    with pytest.raises(ValueError, match="rng"):
        bn.apply(params, state, x, train=True, output_hook=hook)


def test_noisy_bn_hook_shifts_the_distribution_and_varies_with_rng():
    y = jax.random.normal(jax.random.key(0), (4096, 8))
    a = bn.noisy_bn_hook(y, jax.random.key(1))
    b = bn.noisy_bn_hook(y, jax.random.key(2))
    _assert_bitwise(a, bn.noisy_bn_hook(y, jax.random.key(1)))
    assert not np.array_equal(a, b)
    mean, std = np.asarray(a).mean(0), np.asarray(a).std(0)
    assert np.all(np.abs(mean) < 0.7) and np.any(np.abs(mean) > 0.05)
    assert np.all((std > 0.9) & (std < 1.45))


def test_parity_under_pmap_with_axis_name():
    n = 4
    assert jax.device_count() >= n, "conftest sets 4 fake CPU devices"
    for fast in (True, False):
        x = _inputs((n, 6, 3, 3, 5), jnp.float32, 1)[0]
        params, state = _random_params(5), bn.init(5)[1]
        module = _flax_module(0.9, 1e-3, fast, axis_name="batch")
        ours = jax.pmap(lambda x: bn.apply(params, state, x, train=True, momentum=0.9,
                                           epsilon=1e-3, axis_name="batch", use_fast_variance=fast),
                        axis_name="batch")
        theirs = jax.pmap(lambda x: module.apply({"params": params, "batch_stats": state}, x,
                                                 use_running_average=False, mutable=["batch_stats"]),
                          axis_name="batch")
        y, s = ours(x)
        y_f, upd = theirs(x)
        _assert_bitwise(y, y_f)
        _assert_bitwise(s["mean"], upd["batch_stats"]["mean"])
        _assert_bitwise(s["var"], upd["batch_stats"]["var"])
        # Cross-device statistics are those of the whole global batch.
        xn = np.asarray(x, np.float64).reshape(-1, 5)
        np.testing.assert_allclose(s["mean"][0], 0.1 * xn.mean(0), rtol=1e-4)


def test_parity_under_shard_map_with_axis_name():
    mesh = Mesh(np.array(jax.devices()[:4]), ("batch",))
    x = _inputs((16, 7), jnp.bfloat16, 1)[0]
    params, state = _random_params(7), bn.init(7)[1]
    module = _flax_module(0.99, 1e-5, True, axis_name="batch")

    def ours(x):
        return bn.apply(params, state, x, train=True, axis_name="batch")

    def theirs(x):
        y, upd = module.apply({"params": params, "batch_stats": state}, x,
                              use_running_average=False, mutable=["batch_stats"])
        return y, upd["batch_stats"]

    specs = dict(mesh=mesh, in_specs=P("batch"), out_specs=(P("batch"), P()))
    y, s = jax.jit(jax.shard_map(ours, **specs))(x)
    y_f, s_f = jax.jit(jax.shard_map(theirs, **specs))(x)
    _assert_bitwise(y, y_f)
    jax.tree.map(_assert_bitwise, s, s_f)


@pytest.mark.parametrize("norm_p", ["l1", "linf"])
def test_lp_normalization_divides_the_centred_batch_by_its_lp_spread(norm_p):
    x = jax.random.normal(jax.random.key(0), (64, 5)) * 3.0 + 1.0
    params, state = bn.init(5)
    y, new_state = bn.apply(params, state, x, train=True, norm_p=norm_p, epsilon=0.0)
    d = np.asarray(x) - np.asarray(x).mean(0)
    spread = np.abs(d).mean(0) if norm_p == "l1" else np.abs(d).max(0)
    np.testing.assert_allclose(y, d / spread, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new_state["var"], 0.99 + 0.01 * spread ** 2, rtol=1e-5)
    if norm_p == "linf":
        assert float(jnp.max(jnp.abs(y))) == pytest.approx(1.0, rel=1e-6)
    # Inference uses the running statistics exactly as BN does.
    out, _ = bn.apply(params, new_state, x, train=False, norm_p=norm_p)
    ref, _ = bn.apply(params, new_state, x, train=False)
    np.testing.assert_array_equal(out, ref)
    with pytest.raises(ValueError, match="norm_p='l3'"):
        bn.apply(params, state, x, train=True, norm_p="l3")

"""The linen wrapper equals flax.linen.BatchNorm bit for bit, inside a composed Flax model."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bn_experiments import batchnorm as bn
from bn_experiments.linen import BatchNorm


class _Net(nn.Module):
    norm: type

    @nn.compact
    def __call__(self, x, train):
        x = nn.Dense(8, use_bias=False)(x)
        x = self.norm(use_running_average=not train, momentum=0.9)(x)
        return nn.Dense(3)(nn.sigmoid(x))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_wrapper_matches_flax_batchnorm_in_a_model(dtype):
    x = (2.0 + jax.random.normal(jax.random.key(0), (4, 16, 5))).astype(dtype)
    ours, theirs = _Net(BatchNorm), _Net(nn.BatchNorm)
    v_ours = ours.init(jax.random.key(1), x[0], train=False)
    v_theirs = theirs.init(jax.random.key(1), x[0], train=False)
    jax.tree.map(np.testing.assert_array_equal, v_ours, v_theirs)  # same names, init untouched

    def step(model):
        def f(v, x):
            def loss(p):
                y, upd = model.apply({"params": p, "batch_stats": v["batch_stats"]}, x, train=True,
                                     mutable=["batch_stats"])
                return jnp.sum(y ** 2), upd
            (l, upd), g = jax.value_and_grad(loss, has_aux=True)(v["params"])
            p = jax.tree.map(lambda a, b: a - 0.1 * b, v["params"], g)
            return {"params": p, "batch_stats": upd["batch_stats"]}, l
        return jax.jit(f)

    s_ours, s_theirs = step(ours), step(theirs)
    for xb in x[:3]:
        v_ours, l_ours = s_ours(v_ours, xb)
        v_theirs, l_theirs = s_theirs(v_theirs, xb)
        assert np.array_equal(l_ours, l_theirs)
        jax.tree.map(np.testing.assert_array_equal, v_ours, v_theirs)
    y_ours = jax.jit(lambda v, x: ours.apply(v, x, train=False))(v_ours, x[3])
    y_theirs = jax.jit(lambda v, x: theirs.apply(v, x, train=False))(v_theirs, x[3])
    np.testing.assert_array_equal(y_ours, y_theirs)


def test_wrapper_init_leaves_statistics_untouched_and_hook_uses_noise_stream():
    module = BatchNorm(use_running_average=False, output_hook=bn.noisy_bn_hook)
    x = 3.0 + jax.random.normal(jax.random.key(0), (32, 4))
    v = module.init({"params": jax.random.key(0), "noise": jax.random.key(1)}, x)
    np.testing.assert_array_equal(v["batch_stats"]["mean"], 0)
    np.testing.assert_array_equal(v["batch_stats"]["var"], 1)
    y1, _ = module.apply(v, x, rngs={"noise": jax.random.key(2)}, mutable=["batch_stats"])
    y2, _ = module.apply(v, x, rngs={"noise": jax.random.key(3)}, mutable=["batch_stats"])
    assert not np.array_equal(y1, y2)


@pytest.mark.parametrize("kw", [
    {"param_dtype": jnp.bfloat16},
    {"scale_init": nn.initializers.constant(2.0), "bias_init": nn.initializers.constant(-0.5)},
    {"use_scale": False, "use_fast_variance": False},
])
def test_the_flax_arguments_it_takes_give_flax_numbers(kw):
    x = 1.5 + 3.0 * jax.random.normal(jax.random.key(0), (16, 6))
    ours, theirs = BatchNorm(use_running_average=False, **kw), nn.BatchNorm(use_running_average=False, **kw)
    v_ours, v_theirs = ours.init(jax.random.key(1), x), theirs.init(jax.random.key(1), x)
    jax.tree.map(np.testing.assert_array_equal, v_ours, v_theirs)
    y_ours, s_ours = ours.apply(v_ours, x, mutable=["batch_stats"])
    y_theirs, s_theirs = theirs.apply(v_theirs, x, mutable=["batch_stats"])
    assert y_ours.dtype == y_theirs.dtype
    np.testing.assert_array_equal(y_ours, y_theirs)
    jax.tree.map(np.testing.assert_array_equal, s_ours, s_theirs)


def test_it_is_not_a_drop_in_and_says_so():
    """No `axis` / `dtype`: passing them is a TypeError, and the docstring says so."""
    import bn_experiments.linen as linen
    assert "Not a drop-in" in linen.__doc__
    for kw in ({"axis": 1}, {"dtype": jnp.bfloat16}):
        with pytest.raises(TypeError):
            BatchNorm(**kw)

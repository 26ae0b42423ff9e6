"""One program's loop: the compiled functions of a stack of runs give each run's own numbers."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bn_experiments import config as config_lib
from bn_experiments import data as data_lib
from bn_experiments import loop, runner, sweep, train
from bn_experiments.configs import default


def _bits(tree):
    def leaf(x):
        if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        x = np.asarray(x)
        return x.view(np.int32) if x.dtype == np.float32 else x
    return jax.tree.map(leaf, jax.device_get(tree))


def _grid(model: dict, axes: tuple) -> list[list[config_lib.Run]]:
    cfg = default.get_config()
    cfg.experiment, cfg.data.source = "test_loop", "synthetic:256:64"
    for key, value in model.items():
        if key == "model.name":
            config_lib.set_model(cfg, value)
        else:
            config_lib.set_dotted(cfg, key, value)
    cfg.grid = axes
    runs = sweep.expand(cfg, num_train=256)
    return runner._groups(runs, per_program=64)


MODELS = {
    # lecun and glorot draw as he does, with another std
    "mlp, inits and norms": ({"model.widths": (16, 8)},
                             (("model.init", ("gaussian", "he")),
                              ("model.norm", ("none", "batchnorm")),
                              ("model.init_std", (0.05, 1.0)), ("seed", (0, 1)))),
    "mlp with dropout and whitening": ({"model.widths": (12, 12), "model.dropout": 0.2,
                                        "model.norm": "batchnorm", "model.bn_whiten_group": 4,
                                        "population_batches": 0},
                                       (("seed", (0, 1, 2)),)),
    "small_inception": ({"model.name": "small_inception", "model.width": 0.125},
                        (("model.norm", ("none", "batchnorm")), ("seed", (0, 1)))),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_batched_init_is_the_vmapped_init_bit_for_bit(name):
    """The batched `init` maps over the runs (it compiles in half the time of a vmapped one);
    every run's initial state must be the bits the vmapped init gave."""
    model, axes = MODELS[name]
    data = data_lib.to_device(data_lib.load("synthetic:256:64"))
    for group in _grid(model, axes):
        program = train.make_program(group[0].static, data)
        numbers = jax.tree.map(lambda *xs: jnp.stack(xs),
                               *[train.numbers_to_arrays(r.numbers) for r in group])
        ours = loop.compiled(program, batched=True)[0](numbers)
        vmapped = jax.jit(jax.vmap(program.init))(numbers)
        jax.tree.map(np.testing.assert_array_equal, _bits(ours), _bits(vmapped))

"""One program's loop: the compiled functions of a stack of runs give each run's own numbers."""
import os
import threading

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


def _population_program(norm: str):
    """A 2-run ProgramRun (BN or not, Algorithm 2 on) whose population function counts its traces."""
    cfg = default.get_config()
    cfg.experiment, cfg.data.source = "test_loop", "synthetic:256:64"
    cfg.steps, cfg.eval_every, cfg.checkpoint_every, cfg.population_batches = 20, 10, 0, 3
    cfg.model.widths, cfg.model.norm = (16, 8), norm
    cfg.grid = (("seed", (0, 1)),)
    group = runner._groups(sweep.expand(cfg, num_train=256), per_program=64)[0]
    data = data_lib.to_device(data_lib.load("synthetic:256:64"))
    traces = []

    def make_program(static, *args):
        program = train.make_program(static, *args)
        population = program.evaluate_population
        return program._replace(evaluate_population=lambda c: (
            traces.append(threading.current_thread().name), population(c))[1])
    return loop.ProgramRun(group, data, target=0.9, make_program=make_program), traces


def test_results_prepared_in_the_background_compile_nothing_more_and_give_the_same_numbers():
    """`waves` compiles Algorithm 2's function while the programs train (`prepare_results` on an
    early state, in a thread of the lowest priority): afterwards `results` traces nothing, and
    its numbers are those of a run that did not prepare."""
    from bn_experiments import waves

    got = {}
    for prepare in (False, True):
        program, traces = _population_program("batchnorm")
        assert program.uses_population
        if not prepare:
            waves._prepare_in_background = lambda programs: None  # noqa: E731
        try:
            [results] = waves.train_wave([program], progress=False)
        finally:
            waves._prepare_in_background = _REAL_PREPARE
        [thread] = traces  # traced once: in the background thread, or at the end in this one
        assert thread.startswith("prepare") is prepare
        got[prepare] = [(r.final, r.evals) for r in results]
    np.testing.assert_equal(got[True], got[False])  # NaN (no ICS shift at step 0) equals NaN
    assert "test_accuracy_population" in got[True][0][0]


_REAL_PREPARE = __import__("bn_experiments.waves", fromlist=["x"])._prepare_in_background


def test_the_background_preparation_runs_at_the_lowest_priority_and_only_when_needed(monkeypatch):
    from bn_experiments import waves

    no_bn, _ = _population_program("none")
    assert not no_bn.uses_population and waves._prepare_in_background([no_bn]) is None
    program, traces = _population_program("batchnorm")
    program.init()
    seen = []
    monkeypatch.setattr(program, "prepare_results", lambda carry: seen.append(
        (os.getpriority(os.PRIO_PROCESS, threading.get_native_id()),
         threading.get_native_id(), carry is program.carry)))
    waves._prepare_in_background([program]).result()
    [(nice, thread, same_state)] = seen
    assert nice == 19 and thread != threading.get_native_id() and same_state

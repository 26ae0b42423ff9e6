"""Data-parallel training (bn_experiments.data_parallel) and several processes
(bn_experiments.distributed): synchronized BN on 8 devices is single-device training on the full
batch, per-device BN is ghost batches on one device, two processes on 127.0.0.1 train together
(and resume after a crash) to the numbers of one process.

The 8-device and multi-process runs are subprocesses (tests/data_parallel_worker.py): a process's
device count is fixed when its backend starts. This process has the 4 CPU devices of conftest.py.
"""
import functools
import json
import os
import pathlib
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from bn_experiments import config as config_lib
from bn_experiments import data as data_lib
from bn_experiments import data_parallel as dp
from bn_experiments import distributed, models, runner, train

WORKER = pathlib.Path(__file__).with_name("data_parallel_worker.py")
sys.path.insert(0, str(WORKER.parent))
import data_parallel_worker as worker  # noqa: E402

# float32 rounding: the devices sum the batch moments and the gradient in another order.
RTOL, ATOL = 1e-5, 1e-6


def _worker(*args, env=None):
    return subprocess.Popen([sys.executable, str(WORKER), *map(str, args)],
                            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _finish(*procs, timeout=300):
    """[(returncode, output)] of `procs`; all are killed if one outlives `timeout` (a process
    waiting for a peer that died would wait forever)."""
    try:
        outs = [p.communicate(timeout=timeout)[0] for p in procs]
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        raise
    return [(p.returncode, out) for p, out in zip(procs, outs)]


@pytest.fixture(scope="module")
def eight_devices(tmp_path_factory):
    out = tmp_path_factory.mktemp("dp") / "equivalence.npz"
    [(code, log)] = _finish(_worker("equivalence", out))
    assert code == 0, log
    return dict(np.load(out))


def _leaves(arrays, name):
    return [arrays[k] for k in sorted(arrays) if k.startswith(f"{name}/")]


def _max_diff(arrays, a, b):
    return max(float(np.max(np.abs(x - y))) for x, y in zip(_leaves(arrays, a), _leaves(arrays, b)))


def test_synchronized_bn_on_8_devices_is_one_device_on_the_full_batch(eight_devices):
    assert int(eight_devices["devices"]) == 8
    for x, y in zip(_leaves(eight_devices, "sync"), _leaves(eight_devices, "one_device")):
        np.testing.assert_allclose(x, y, rtol=RTOL, atol=ATOL)  # params, running stats, losses


def test_per_device_bn_on_8_devices_is_8_ghost_batches_on_one_device(eight_devices):
    for x, y in zip(_leaves(eight_devices, "per_device"), _leaves(eight_devices, "ghost")):
        np.testing.assert_allclose(x, y, rtol=RTOL, atol=ATOL)


def test_the_two_kinds_of_statistics_train_differently(eight_devices):
    # What makes the two tests above able to fail: per-device statistics of 8 examples are not
    # those of the batch of 64, and after 8 steps the parameters show it far above the tolerance.
    assert _max_diff(eight_devices, "per_device", "one_device") > 1000 * ATOL
    assert _max_diff(eight_devices, "sync", "one_device") < 10 * ATOL


def _run(**overrides):
    cfg = worker.config()
    if "model.name" in overrides:
        config_lib.set_model(cfg, overrides.pop("model.name"))
    for k, v in overrides.items():
        config_lib.set_dotted(cfg, k, v)
    return config_lib.runs(cfg)[0]


def _train(program, run, steps=4):
    numbers = train.numbers_to_arrays(run.numbers)
    carry = jax.jit(program.init)(numbers)
    carry, metrics = jax.jit(functools.partial(program.chunk, length=steps))(carry, numbers)
    return jax.device_get((carry["params"], carry["bn_state"], metrics["train_loss"]))


def test_ghost_batches_with_synchronized_statistics_are_the_full_batch():
    run, ds = _run(), data_lib.to_device(data_lib.load("synthetic:512:128"))
    ghost = dp.program_with_family(run.static, ds, dp.ghost_family(models.get("mlp"), 4, True))
    got, want = _train(ghost, run), _train(train.make_program(run.static, ds), run)
    for x, y in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(x, y, rtol=RTOL, atol=ATOL)


def test_runner_trains_a_vmapped_group_data_parallel_to_the_same_numbers():
    # Two seeds in one vmapped program (vmap of shard_map) on this process's 4 devices, chosen by
    # the config's data_parallel section, through the runner's train_runs, against one device.
    cfg = worker.config(batch_size=32)
    cfg.grid = (("seed", (0, 1)),)
    runs, groups, datasets, _ = runner._plan(cfg)
    [ds] = [data_lib.to_device(d) for d in datasets.values()]
    plain = runner.train_runs(groups[0], ds, target=0.9, progress=False)
    cfg.data_parallel.devices, cfg.data_parallel.bn_sync = 0, True
    _, sharded_groups, _, _ = runner._plan(cfg)
    assert sharded_groups[0][0].static.devices == 0 and sharded_groups[0][0].static.bn_sync
    sharded = runner.train_runs(sharded_groups[0], ds, target=0.9, progress=False)
    losses = [r.train["train_loss"] for r in sharded]
    assert len(losses) == 2 and losses[0][0] != losses[1][0]  # two seeds, not one twice
    for a, b in zip(plain, sharded):
        np.testing.assert_allclose(a.train["train_loss"], b.train["train_loss"], rtol=RTOL)
        np.testing.assert_allclose(a.evals["test_accuracy"], b.evals["test_accuracy"], atol=1e-6)


def test_a_grid_over_the_data_parallel_section_trains_each_kind_and_records_it(tmp_path):
    # One device / 4 devices synchronized / 4 devices per device / 4 ghost batches on one device:
    # synchronized equals one device, per-device equals ghost batches (to float tolerance), and
    # the two kinds of statistics differ; spanning programs train alone; provenance says how.
    cfg = worker.config(batch_size=32)
    cfg.runs = ("one: data_parallel.devices=1",
                "sync: data_parallel.devices=4, data_parallel.bn_sync=True",
                "per_device: data_parallel.devices=4, data_parallel.bn_sync=False",
                "ghost: data_parallel.ghost_batches=4")
    doc = runner.train_and_evaluate(cfg, tmp_path, progress=False, plot=False)
    loss = {r["name"]: np.asarray(r["curves"]["train_loss"]["value"]) for r in doc["runs"]}
    np.testing.assert_allclose(loss["sync"], loss["one"], rtol=RTOL)
    np.testing.assert_allclose(loss["per_device"], loss["ghost"], rtol=RTOL)
    assert np.max(np.abs(loss["per_device"][1:] - loss["one"][1:])) > 1e-4
    configs = {r["name"]: r["config"] for r in doc["runs"]}
    assert configs["ghost"]["data_parallel.ghost_batches"] == 4
    invocation = json.loads((tmp_path / "provenance.json").read_text())["invocations"][-1]
    assert invocation["data_parallel"] == [
        {"bn_statistics": "synchronized", "device_batch_size": 8, "devices": 4, "processes": 1},
        {"bn_statistics": "per device", "device_batch_size": 8, "devices": 4, "processes": 1},
        {"bn_statistics": "per ghost batch", "devices": 1, "ghost_batch_size": 8,
         "ghost_batches": 4}]


@pytest.mark.parametrize("override, message", [
    ({"data_parallel.devices": 99}, r"data_parallel.devices=99 is invalid: there are 4 devices"),
    ({"data_parallel.devices": 3}, r"batch_size=32 is not divisible by the 3 devices"),
    ({"data_parallel.ghost_batches": 5}, r"data_parallel.ghost_batches=5 is invalid: must divide"),
    ({"data_parallel.ghost_batches": 4, "data_parallel.devices": 2},
     r"data_parallel.ghost_batches=4 is invalid: simulates per-device statistics on ONE device"),
])
def test_bad_data_parallel_settings_are_refused_before_anything_is_written(tmp_path, override,
                                                                         message):
    cfg = worker.config(batch_size=32)
    for key, value in override.items():
        config_lib.set_dotted(cfg, key, value)
    with pytest.raises(config_lib.ConfigError, match=message):
        runner.train_and_evaluate(cfg, tmp_path / "wd", progress=False, plot=False)
    assert not (tmp_path / "wd").exists()


def test_what_cannot_be_split_is_refused_in_one_line():
    mesh = dp.make_mesh(4)
    with pytest.raises(config_lib.ConfigError, match=r"batch_size=30 is not divisible by the 4 "):
        dp.check(_run(batch_size=30).static, mesh, bn_sync=False)
    inception = _run(**{"model.name": "small_inception", "model.norm": "batchnorm"}).static
    with pytest.raises(config_lib.ConfigError, match=r"bn_sync=True: model.name='small_inception'"):
        dp.check(inception, mesh, bn_sync=True)
    dp.check(inception, mesh, bn_sync=False)  # per-device statistics need nothing of the model
    with pytest.raises(config_lib.ConfigError, match=r"devices=99 is invalid: there are 4 devices"):
        dp.make_mesh(99)
    with pytest.raises(config_lib.ConfigError, match=r"data_parallel.devices=-1 is invalid"):
        dp.settings({"data_parallel.devices": -1})
    with pytest.raises(config_lib.ConfigError, match=r"data_parallel.bn_sync='yes' is invalid"):
        dp.settings({"data_parallel.bn_sync": "yes"})
    assert dp.program_maker({}) is train.make_program  # no section: one device, the trainer


def test_distributed_settings_from_flags_and_environment():
    env = {"BN_EXP_COORDINATOR": "10.0.0.1:1234", "BN_EXP_NUM_PROCESSES": "4",
           "BN_EXP_PROCESS_ID": "3"}
    assert distributed.settings({}) is None
    assert distributed.settings(env) == distributed.Settings("10.0.0.1:1234", 4, 3)
    assert distributed.settings(env, process_id=0).process_id == 0  # a flag wins
    assert distributed.settings({"BN_EXP_COORDINATOR": "auto"}) == distributed.Settings(
        "auto", None, None)  # a TPU pod slice, SLURM: JAX finds the processes
    for bad, match in [({**env, "BN_EXP_PROCESS_ID": "4"}, r"PROCESS_ID=4 is invalid: use 0..3"),
                       ({**env, "BN_EXP_COORDINATOR": "10.0.0.1"}, r"host:port"),
                       ({**env, "BN_EXP_NUM_PROCESSES": "two"}, r"BN_EXP_NUM_PROCESSES='two'"),
                       ({"BN_EXP_PROCESS_ID": "1"}, r"without BN_EXP_COORDINATOR")]:
        with pytest.raises(distributed.DistributedError, match=match):
            distributed.settings(bad)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_processes(workdir, **env):
    port = _free_port()
    procs = [_worker("runner", workdir, "sync", env={
        "TMPDIR": str(workdir.parent), "LOCAL_DEVICES": "1",
        "CHECKPOINT_EVERY": str(worker.STEPS // 2),
        "BN_EXP_COORDINATOR": f"127.0.0.1:{port}", "BN_EXP_NUM_PROCESSES": "2",
        "BN_EXP_PROCESS_ID": str(i), **env}) for i in range(2)]
    return _finish(*procs)


def test_two_processes_train_together_resume_and_match_one_process(tmp_path):
    # One process, one device: the reference, through the same runner.
    reference = runner.train_and_evaluate(worker.config(batch_size=32), tmp_path / "one",
                                          progress=False, plot=False)
    # Two processes of one device each, killed right after their checkpoint at step 4 ...
    workdir = tmp_path / "two"
    for code, log in _two_processes(workdir, DIE_AFTER_CHECKPOINT="1"):
        assert code == 3, log
    assert not (workdir / "summary.json").exists() and (workdir / "checkpoints").is_dir()
    # ... then resumed: process 0 from the workdir, process 1 from its copy in a scratch folder.
    results = _two_processes(workdir)
    for code, log in results:
        assert code == 0, log
    assert f"process 0 of 2, 2 devices, wrote {workdir}" in results[0][1]
    assert "process 1 of 2, 2 devices, wrote " in results[1][1]
    assert str(workdir) not in results[1][1].split("wrote ")[-1]  # process 1 wrote elsewhere
    assert json.loads((workdir / "provenance.json").read_text())["resumed"] is True
    rows = (workdir / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 3  # evaluations at steps 0, 4, 8, each written once
    got = json.loads((workdir / "summary.json").read_text())["runs"][0]
    want = reference["runs"][0]
    np.testing.assert_allclose(got["final"]["train_loss"], want["final"]["train_loss"], rtol=RTOL)
    assert got["final"]["test_accuracy"] == pytest.approx(want["final"]["test_accuracy"], abs=1e-6)

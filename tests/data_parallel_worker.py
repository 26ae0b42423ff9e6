"""Subprocess side of tests/test_data_parallel.py: the device count is fixed when a process's JAX
backend starts, and the pytest process already has its own, so runs on 8 emulated devices and
the processes of a multi-process run are separate Python processes running this file; the tests
import it for its config.

    python tests/data_parallel_worker.py equivalence OUT.npz   (8 emulated CPU devices)
    python tests/data_parallel_worker.py runner WORKDIR [SYNC]  (LOCAL_DEVICES devices per process,
                                                                BN_EXP_* for several processes)
"""
import functools
import os
import sys

import jax
import numpy as np

from bn_experiments import checkpoint
from bn_experiments import config as config_lib
from bn_experiments import data as data_lib
from bn_experiments import data_parallel as dp
from bn_experiments import distributed, models, runner, train
from bn_experiments.configs import default

STEPS = 8


def config(batch_size=64, steps=STEPS, eval_every=STEPS // 2):
    cfg = default.get_config()
    cfg.experiment = "test_data_parallel"
    cfg.steps, cfg.eval_every, cfg.batch_size = steps, eval_every, batch_size
    cfg.checkpoint_every = 0
    cfg.model.widths, cfg.model.tracked_units, cfg.model.norm = (16, 16), (0, 1), "batchnorm"
    cfg.data.source = "synthetic:512:128"
    return cfg


def equivalence(out: str) -> None:
    """Params, BN state and losses after STEPS steps: one device on the full batch, 8 devices with
    synchronized and with per-device statistics, one device with 8 ghost batches."""
    run = config_lib.runs(config())[0]
    ds = data_lib.load(run.flat["data.source"])
    numbers = train.numbers_to_arrays(run.numbers)
    mlp = models.get("mlp")
    programs = {
        "one_device": train.make_program(run.static, data_lib.to_device(ds)),
        "sync": dp.make_program(run.static, ds, bn_sync=True),
        "per_device": dp.make_program(run.static, ds, bn_sync=False),
        "ghost": dp.program_with_family(run.static, data_lib.to_device(ds),
                                        dp.ghost_family(mlp, 8)),
    }
    arrays = {"devices": np.asarray(jax.device_count())}
    for name, program in programs.items():
        carry = jax.jit(program.init)(numbers)
        carry, metrics = jax.jit(functools.partial(program.chunk, length=STEPS))(carry, numbers)
        carry = jax.device_get(carry)
        for i, leaf in enumerate(jax.tree.leaves((carry["params"], carry["bn_state"]))):
            arrays[f"{name}/{i:02d}"] = np.asarray(leaf)
        arrays[f"{name}/loss"] = np.asarray(metrics["train_loss"])
        arrays[f"{name}/percentiles"] = np.asarray(metrics["preact_percentiles"])
    np.savez(out, **arrays)


def run_runner(workdir: str, bn_sync: bool) -> None:
    """The runner's `train_and_evaluate` with data-parallel programs over every device of every
    process (`config.data_parallel`), process 0 writing `workdir`."""
    where = distributed.process_workdir(workdir)
    if os.environ.get("DIE_AFTER_CHECKPOINT"):  # a crash of every process right after a checkpoint
        save = checkpoint.Checkpointer.save

        def save_then_die(self, step, carry, host):
            save(self, step, carry, host)
            if step > 0:
                # Every process leaves the group together (shutdown is a barrier): a process
                # that exits alone makes the others' coordination agents abort (SIGABRT)
                # before they reach their own exit, whichever gets there first.
                jax.distributed.shutdown()
                os._exit(3)
        checkpoint.Checkpointer.save = save_then_die
    cfg = config(batch_size=32)
    cfg.checkpoint_every = int(os.environ.get("CHECKPOINT_EVERY", "0"))
    cfg.data_parallel.devices, cfg.data_parallel.bn_sync = 0, bn_sync
    runner.train_and_evaluate(cfg, where, progress=False, plot=False)
    print(f"process {jax.process_index()} of {jax.process_count()}, {jax.device_count()} devices,"
          f" wrote {where}", flush=True)


if __name__ == "__main__":
    # Importing JAX starts no backend: the device count and the process group are set here,
    # before the first device is touched (and not when the tests import this file).
    devices = 8 if sys.argv[1] == "equivalence" else int(os.environ.get("LOCAL_DEVICES", "1"))
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    distributed.initialize(distributed.settings())
    if sys.argv[1] == "equivalence":
        equivalence(sys.argv[2])
    else:
        run_runner(sys.argv[2], bn_sync=len(sys.argv) < 4 or sys.argv[3] == "sync")

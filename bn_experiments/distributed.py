"""Several processes (hosts) training together: `jax.distributed` set up from flags or environment.

Every process runs the same command; `initialize` connects them through the coordinator (process
0's address), after which `jax.devices()` lists every process's devices and data-parallel
programs (bn_experiments.data_parallel) span them all with the same code as on one host. Each
process loads the whole dataset and computes the same batch indices from the same seed, so no
data moves between hosts; only gradients and BN moments do (all-reduces).

Where the settings come from (a flag given to `settings` wins over the environment):

    BN_EXP_COORDINATOR=host:port   process 0's address, reachable from every process
    BN_EXP_NUM_PROCESSES=N         how many processes take part
    BN_EXP_PROCESS_ID=i            this process's index, 0..N-1

or BN_EXP_COORDINATOR=auto alone, where JAX finds all three itself (`jax.distributed.initialize()`
without arguments: a TPU pod slice, SLURM, Open MPI).

On GPU and TPU the collectives are the accelerators' own (NCCL, ICI). On CPU, collectives across
processes need gloo (`jax_cpu_collectives_implementation="gloo"`; jax 0.5.0, the oldest supported,
has it), which `initialize` turns on; where it is missing it says so in one line and carries on (a
CPU run across processes then fails at its first collective; one process, or GPUs, are unaffected).

Only process 0 writes the workdir (`is_writer`); the others write into a scratch folder
(`process_workdir`), so the workdir holds one copy of every file.
"""
from __future__ import annotations

import atexit
import dataclasses
import os
import pathlib
import shutil
import sys
import tempfile
from typing import Mapping

import jax

ENV = {"coordinator": "BN_EXP_COORDINATOR", "num_processes": "BN_EXP_NUM_PROCESSES",
       "process_id": "BN_EXP_PROCESS_ID"}


class DistributedError(ValueError):
    """A bad multi-process setting; the message names it and the fix."""


@dataclasses.dataclass(frozen=True)
class Settings:
    coordinator: str  # host:port, or "auto" (then the other two are None: JAX finds them)
    num_processes: int | None
    process_id: int | None


def settings(environ: Mapping[str, str] | None = None, **flags) -> Settings | None:
    """The multi-process settings from `flags` (coordinator=, num_processes=, process_id=; None
    or absent: from `environ`, default `os.environ`), or None when no coordinator is given
    (one process). Raises `DistributedError` naming the bad setting."""
    environ = os.environ if environ is None else environ
    raw = {k: flags.get(k) if flags.get(k) is not None else environ.get(v) for k, v in ENV.items()}
    if raw["coordinator"] in (None, ""):
        extra = [ENV[k] for k in ("num_processes", "process_id") if raw[k] not in (None, "")]
        if extra:
            raise DistributedError(f"{', '.join(extra)} set without {ENV['coordinator']}: set "
                                   f"{ENV['coordinator']}=host:port (process 0's address) too")
        return None
    if raw["coordinator"] == "auto":
        return Settings("auto", None, None)
    host, sep, port = str(raw["coordinator"]).rpartition(":")
    if not sep or not host or not port.isdigit():
        raise DistributedError(f"{ENV['coordinator']}={raw['coordinator']!r} is invalid: use "
                               f"host:port, e.g. 10.0.0.1:1234 (process 0's address), or auto")
    values = {}
    for key in ("num_processes", "process_id"):
        try:
            values[key] = int(raw[key])
        except (TypeError, ValueError):
            raise DistributedError(f"{ENV[key]}={raw[key]!r} is invalid: with {ENV['coordinator']} "
                                   f"set, give an integer") from None
    if values["num_processes"] < 1:
        raise DistributedError(f"{ENV['num_processes']}={values['num_processes']} is invalid: "
                               f"use a count >= 1")
    if not 0 <= values["process_id"] < values["num_processes"]:
        raise DistributedError(f"{ENV['process_id']}={values['process_id']} is invalid: use "
                               f"0..{values['num_processes'] - 1}")
    return Settings(str(raw["coordinator"]), **values)


def cpu_collectives() -> str | None:
    """Turns on gloo for CPU collectives across processes; returns None when done, else the
    reason it is not available in this jax."""
    try:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        return None
    except Exception:  # noqa: BLE001 (the option's name and presence vary with the version)
        pass
    try:
        jax.config.update("jax_cpu_enable_gloo_collectives", True)  # older jax
        return None
    except Exception:  # noqa: BLE001
        return f"jax {jax.__version__} has no gloo CPU collectives"


def initialize(s: Settings | None) -> None:
    """Connects this process to the others (`jax.distributed.initialize`); before anything
    touches a device. Nothing to do for one process (`s` None)."""
    if s is None:
        return
    missing = cpu_collectives()
    if missing:
        print(f"bn-exp: warning: {missing}; processes on CPUs cannot reduce across each other "
              f"(GPUs and TPUs are unaffected); upgrade jax/jaxlib for CPU clusters",
              file=sys.stderr)
    if s.coordinator == "auto":
        jax.distributed.initialize()
    else:
        jax.distributed.initialize(coordinator_address=s.coordinator,
                                   num_processes=s.num_processes, process_id=s.process_id)


def is_writer() -> bool:
    """Process 0 writes; the others compute the same things and keep them to themselves."""
    return jax.process_index() == 0


def process_workdir(workdir: str | pathlib.Path, *, restart: bool = False) -> pathlib.Path:
    """Where this process writes: `workdir` for process 0. For the others, a scratch folder
    (removed when the process exits) holding a copy of what `workdir` already has (config,
    finished points: every process must skip the same finished runs), unless `restart`, and
    whose `checkpoints` is a link to `workdir/checkpoints`: orbax saves a checkpoint from every
    process into one directory (process 0 writes it) and every process restores from it, so
    checkpoints and resume need `workdir` on a filesystem every process sees."""
    workdir = pathlib.Path(workdir).absolute()
    if is_writer():
        return workdir
    scratch = pathlib.Path(tempfile.mkdtemp(prefix=f"bn-exp-process{jax.process_index()}-"))
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    mine = scratch / workdir.name
    if workdir.is_dir() and not restart:
        shutil.copytree(workdir, mine, ignore=shutil.ignore_patterns(".lock", "checkpoints"))
    mine.mkdir(exist_ok=True)
    (workdir / "checkpoints").mkdir(parents=True, exist_ok=True)
    (mine / "checkpoints").symlink_to(workdir / "checkpoints", target_is_directory=True)
    return mine

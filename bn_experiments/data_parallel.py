"""Data-parallel training: one run's batch split over every device, of every process.

The parameters are replicated, each device takes its shard of the batch (batch_size / devices
examples) and the gradient is the gradient of the mean loss over the whole batch, i.e. the mean of
the devices' gradients. BN's batch statistics then come in two kinds, the switch `bn_sync`:

- per device (`bn_sync=False`): each device normalizes its shard with the shard's own mean and
  variance. This is what the distributed training of Ioffe & Szegedy (2015, Sec. 4.2: Inception
  trained with a parameter server and many replicas) did, each replica normalizing its own
  mini-batch; on one device the same thing is "ghost batch normalization" (Hoffer et al. 2017).
  The running statistics take the mean over devices of the devices' updates, so they stay
  replicated: `m * running + (1 - m) * mean_d(mu_d)`, and likewise the variance (the mean
  within-shard variance, as Algorithm 2 averages per-batch variances).
- synchronized (`bn_sync=True`): each BN layer averages its moments over the devices
  (`batchnorm.moments(axis_name=...)`: one `pmean` of E[x] and E[x^2]), so the statistics are
  those of the whole batch and the run equals single-device training on the full batch up to
  float rounding (tests/test_data_parallel.py, on 8 emulated devices). Needs a family whose
  static config has a `bn_axis_name` field (the MLP's); others are refused in one line.

How, without a second trainer: `make_program` is a drop-in for `train.make_program`. It wraps the
model family so that its `apply` runs the real `apply` under `shard_map` over the batch axis
(`sharded_family`), registers the wrapper under a private name for the duration of
`train.make_program`, and so reuses everything of the trainer unchanged: optimizer, loss,
batches (`batches.batch_indices`, the same examples in the same order as on one device),
divergence checks, evaluation, Algorithm 2 and probes. The loss is the cross-entropy of the
global batch and `jax.grad` differentiates through the `shard_map`, so the gradient is averaged
by construction. `ghost_family` is the same wrapper on one device (`vmap` over slices of the
batch, with the same axis name): per-device statistics simulated without devices, and the
reference the tests hold the devices to.

Several processes (bn_experiments.distributed): `jax.devices()` then lists every process's
devices, the mesh spans them, the dataset is replicated on all of them and every output of the
program is constrained to be replicated, so every process can read it; the code path is the same.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
from typing import Any, Callable

import jax
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from bn_experiments import config as config_lib
from bn_experiments import data as data_lib
from bn_experiments import models
from bn_experiments import train
from bn_experiments.config import ConfigError, Static
from bn_experiments.probe import Probe

AXIS = "data"  # the mesh axis the batch is split over, and BN's axis name when synchronized
_wrapped_ids = itertools.count()


def shard_map(f: Callable, *, mesh: Mesh, in_specs: Any, out_specs: Any) -> Callable:
    """`jax.shard_map` (jax >= 0.6.1), else `jax.experimental.shard_map.shard_map` (jax 0.5).

    The old one runs without its replication check: with it, jax 0.5 fails to transpose a `psum`
    whose cotangent is zero (the BN state, an output no loss depends on); without it, its
    transpose still sums the cotangents of replicated inputs (tests/test_data_parallel.py holds
    the gradients to single-device training on both)."""
    if hasattr(jax, "shard_map"):
        return jax.shard_map(f, mesh=mesh, in_specs=in_specs, out_specs=out_specs)
    from jax.experimental.shard_map import shard_map as legacy
    return legacy(f, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_rep=False)


def make_mesh(num_devices: int | None = None) -> Mesh:
    """A 1-d mesh (axis `AXIS`) over the first `num_devices` of `jax.devices()` (all, if None):
    with several processes, every process's devices."""
    devices = jax.devices()
    n = len(devices) if num_devices is None else num_devices
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= len(devices):
        raise ConfigError(f"data-parallel devices={num_devices!r} is invalid: there are "
                          f"{len(devices)} devices; use 1..{len(devices)} (or none for all)")
    return Mesh(np.asarray(devices[:n]), (AXIS,))


def check(static: Static, mesh: Mesh, bn_sync: bool) -> None:
    """One line naming the field and the fix for what data-parallel training cannot do."""
    n = mesh.size
    if static.batch_size % n:
        raise ConfigError(f"batch_size={static.batch_size} is not divisible by the {n} devices of "
                          f"data-parallel training; use a multiple of {n} or another device count")
    if bn_sync and getattr(static.model, "use_bn", False) and not _takes_axis(static.model):
        raise ConfigError(f"bn_sync=True: model.name={static.model_name!r} cannot synchronize its "
                          f"BN statistics across devices (its config has no bn_axis_name); use "
                          f"bn_sync=False (per-device statistics)")


def _takes_axis(cfg: Any) -> bool:
    return dataclasses.is_dataclass(cfg) and "bn_axis_name" in {
        f.name for f in dataclasses.fields(cfg)}


def model_config(cfg: Any, bn_sync: bool) -> Any:
    """The family's static config with BN's axis name set when the statistics are synchronized
    (and cleared otherwise); a config without the field is returned as it is."""
    if not _takes_axis(cfg):
        return cfg
    return dataclasses.replace(cfg, bn_axis_name=AXIS if bn_sync else None)


def _local_apply(family: models.ModelFamily, bn_sync: bool, train_mode: bool,
                 cfg: Any) -> Callable:
    """The model on one device's shard (or one ghost slice), inside a map over `AXIS`. With
    `model.bn_noise` each device draws its own noise (the key folded with the device index)."""
    cfg = model_config(cfg, bn_sync)

    def local(params, state, x, *rng):
        key = jax.random.fold_in(rng[0], lax.axis_index(AXIS)) if rng else None
        logits, new_state, inter = family.apply(params, state, x, cfg=cfg, train=train_mode,
                                                rng=key)
        if train_mode and not bn_sync:
            # Per-device statistics: the running averages take the mean of the devices' updates
            # (the momentum term is the same everywhere), so they stay replicated. No gradient
            # flows into running statistics; stop_gradient says so, and spares jax 0.5 a
            # transpose of this pmean with a symbolic-zero cotangent, which it cannot do.
            new_state = lax.pmean(lax.stop_gradient(new_state), AXIS)
        return logits, new_state, inter
    return local


def sharded_family(family: models.ModelFamily, mesh: Mesh, bn_sync: bool) -> models.ModelFamily:
    """`family` with an `apply` that runs under `shard_map`: the batch split over `mesh`, the
    parameters and state replicated, outputs (logits, intermediates) sharded like the batch.

    A batch the devices do not divide (a probe's batch of another size) runs unsharded, with
    the statistics of the whole batch.
    """
    n = mesh.size

    def apply(params, state, x, *, cfg, train: bool, rng=None):
        if x.shape[0] % n:
            return family.apply(params, state, x, cfg=model_config(cfg, False), train=train,
                                rng=rng)
        extra = () if rng is None else (rng,)
        f = shard_map(_local_apply(family, bn_sync, train, cfg), mesh=mesh,
                      in_specs=(P(), P(), P(AXIS)) + (P(),) * len(extra),
                      out_specs=(P(AXIS), P(), P(AXIS)))
        return f(params, state, x, *extra)
    return dataclasses.replace(family, name=f"{family.name}[{n} devices]", apply=apply)


def ghost_family(family: models.ModelFamily, slices: int, bn_sync: bool = False
                 ) -> models.ModelFamily:
    """`family` on one device with a training batch cut into `slices` equal "ghost batches",
    each normalized with its own statistics (`bn_sync=False`: what `sharded_family` computes on
    `slices` devices) or with the whole batch's (`bn_sync=True`); `jax.vmap` with axis name
    `AXIS` stands in for the devices."""
    def apply(params, state, x, *, cfg, train: bool, rng=None):
        if not train or x.shape[0] % slices:
            return family.apply(params, state, x, cfg=model_config(cfg, False), train=train,
                                rng=rng)
        extra = () if rng is None else (rng,)
        xs = x.reshape(slices, x.shape[0] // slices, *x.shape[1:])
        local = jax.vmap(_local_apply(family, bn_sync, train, cfg),
                         in_axes=(None, None, 0) + (None,) * len(extra), axis_name=AXIS)
        logits, new_state, inter = local(params, state, xs, *extra)
        merge = lambda t: t.reshape(-1, *t.shape[2:])  # noqa: E731
        return (merge(logits), jax.tree.map(lambda s: s[0], new_state),
                jax.tree.map(merge, inter))
    return dataclasses.replace(family, name=f"{family.name}[{slices} ghost batches]", apply=apply)


@contextlib.contextmanager
def _registered(family: models.ModelFamily):
    """`family` in the registry while `train.make_program` looks it up by name."""
    models.register(family)
    try:
        yield
    finally:
        models.unregister(family.name)


def program_with_family(static: Static, data: data_lib.Dataset, family: models.ModelFamily,
                        probe: Probe | None = None) -> train.Program:
    """`train.make_program` with `family` (a wrapper of `static`'s) in place of the registered
    one: the trainer finds its family by name, so the wrapper is registered under a unique name
    while the program is built."""
    family = dataclasses.replace(family, name=f"{family.name}#{next(_wrapped_ids)}")
    with _registered(family):
        return train.make_program(dataclasses.replace(static, model_name=family.name), data, probe)


def replicate_data(data: data_lib.Dataset, mesh: Mesh) -> data_lib.Dataset:
    """Every array of `data` replicated on every device of `mesh` (of every process: each
    process holds the whole dataset, as each loads it)."""
    sharding = NamedSharding(mesh, P())

    def put(a):
        a = np.asarray(a)
        return jax.make_array_from_callback(a.shape, sharding, lambda index: a[index])
    return dataclasses.replace(data, x_train=put(data.x_train), y_train=put(data.y_train),
                               x_test=put(data.x_test), y_test=put(data.y_test))


def _replicated(f: Callable, mesh: Mesh) -> Callable:
    """`f` with every output constrained to be replicated over `mesh` (the parameters, state and
    metrics), so every process can read them (`jax.device_get`)."""
    sharding = NamedSharding(mesh, P())

    def g(*args, **kwargs):
        return jax.tree.map(lambda t: lax.with_sharding_constraint(t, sharding), f(*args, **kwargs))
    return g


def make_program(static: Static, data: data_lib.Dataset, probe: Probe | None = None, *,
                 mesh: Mesh | None = None, bn_sync: bool = False) -> train.Program:
    """`train.make_program` for data-parallel training over `mesh` (all devices by default).

    `bn_sync`: BN statistics synchronized across devices (those of the whole batch) or per
    device (those of each device's shard). Same functions, same signatures, so the runner's
    `train_runs` (jit, vmap over runs, checkpoints) uses it unchanged.
    """
    mesh = make_mesh() if mesh is None else mesh
    check(static, mesh, bn_sync)
    family = sharded_family(models.get(static.model_name), mesh, bn_sync)
    program = program_with_family(static, replicate_data(data, mesh), family, probe)
    return train.Program(*(_replicated(f, mesh) for f in program))


def describe(mesh: Mesh, bn_sync: bool, batch_size: int) -> dict:
    """What provenance records of a data-parallel run: devices, processes, the BN statistics."""
    return {"devices": mesh.size, "processes": jax.process_count(),
            "device_batch_size": batch_size // mesh.size,
            "bn_statistics": "synchronized" if bn_sync else "per device"}


def settings(cfg: Any) -> tuple[int, bool]:
    """(devices, bn_sync) of a config (a ConfigDict or its flat dict), checked: one line naming
    the field and the fix. (1, False) when the config has no `data_parallel` section."""
    flat = cfg if isinstance(cfg, dict) else config_lib.flatten(cfg)
    devices, bn_sync, _ = config_lib.check_data_parallel(flat)
    return devices, bn_sync


def program_maker(cfg: Any) -> Callable[..., train.Program]:
    """What builds a config's programs: `train.make_program` on one device, else `make_program`
    over the configured devices with the configured BN statistics (same signature)."""
    devices, bn_sync = settings(cfg)
    if devices == 1:
        return train.make_program
    return functools.partial(make_program, mesh=make_mesh(devices or None), bn_sync=bn_sync)


def is_plain(static: Static) -> bool:
    """Whether `static` is an ordinary one-device program (`train.make_program` builds it)."""
    return static.devices == 1 and static.ghost_batches == 1


def program_for(static: Static, data: data_lib.Dataset, probe: Probe | None = None
                ) -> train.Program:
    """The program of `static`'s data-parallel fields (`config.data_parallel`): ghost batches on
    one device, or the batch split over `static.devices` devices (0: all) with per-device or
    synchronized BN statistics; the plain trainer otherwise."""
    if static.ghost_batches > 1:
        family = ghost_family(models.get(static.model_name), static.ghost_batches)
        return program_with_family(static, data, family, probe)
    if static.devices == 1:
        return train.make_program(static, data, probe)
    return make_program(static, data, probe, mesh=make_mesh(static.devices or None),
                        bn_sync=static.bn_sync)


def check_static(static: Static) -> None:
    """Before anything compiles: the device count exists, the batch splits over it, the model
    can synchronize its statistics if asked; one line naming the field and the fix."""
    if static.devices != 1:
        have = jax.device_count()
        if static.devices > have:
            raise ConfigError(f"data_parallel.devices={static.devices} is invalid: there are "
                              f"{have} devices (of every process); use 1..{have}, or 0 for all")
        check(static, make_mesh(static.devices or None), static.bn_sync)


def describe_static(static: Static) -> dict | None:
    """What provenance records of a run's data parallelism (None: one device, whole batch)."""
    if static.ghost_batches > 1:
        return {"devices": 1, "ghost_batches": static.ghost_batches,
                "ghost_batch_size": static.batch_size // static.ghost_batches,
                "bn_statistics": "per ghost batch"}
    if static.devices == 1:
        return None
    return describe(make_mesh(static.devices or None), static.bn_sync, static.batch_size)

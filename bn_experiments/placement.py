"""Which programs run where: a run's groups spread over the local devices, numbers unchanged.

The runner groups runs by compiled structure into groups of at most `points_per_program` points
(runner._groups); a group is one program, vmapped over its points. Programs are placed whole, one
per device, and trained side by side in waves of as many programs as there are devices
(bn_experiments.waves): Figure 1's two networks (no BN, BN) on the two cores of a 2-core machine;
a sweep's groups, a device each.

Why whole programs, each a one-device program: a group's numbers must not depend on the device
count, and only the same compiled program gives the same bits. XLA vectorizes a vmapped program
differently for different numbers of points (splitting a group's points over devices moves the
last bits of every curve), and a program sharded over several devices (jit over a NamedSharding,
each device holding one group) is compiled by XLA's SPMD partitioner, which also changed the last
bits of a reduction (the per-unit std of the internal-covariate-shift statistics) in our tests. A
one-device program compiles to the same code on any device, so a group gives the same numbers on
device 0 of one and on device 3 of four, side by side with others or alone (tests/test_devices.py).

A wave is consecutive groups of the ones still to train, so a run resumed with the same devices
meets the wave it was interrupted in (waves are checkpointed whole and finish whole).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax


def waves(groups: Sequence[Any], num_devices: int,
          alone: Callable[[Any], bool] = lambda group: False) -> list[list[Any]]:
    """`groups` in order, `num_devices` at a time: a group's device is its position in its wave.
    A group for which `alone(group)` holds (a data-parallel program spanning the devices) is a
    wave of its own."""
    n = max(1, num_devices)
    out: list[list[Any]] = []
    pending: list[Any] = []
    for group in groups:
        if alone(group):
            out += [pending[i:i + n] for i in range(0, len(pending), n)] + [[group]]
            pending = []
        else:
            pending.append(group)
    return out + [pending[i:i + n] for i in range(0, len(pending), n)]


def put(tree: Any, device: jax.Device | None) -> Any:
    """`tree` on `device`; unchanged for None (the default device, as a one-device run)."""
    return tree if device is None else jax.device_put(tree, device)


def put_data(ds, device: jax.Device | None):
    """A `data.Dataset` with its arrays on `device` (each device reads its own copy)."""
    if device is None:
        return ds
    return dataclasses.replace(ds, **{k: jax.device_put(getattr(ds, k), device)
                                      for k in ("x_train", "y_train", "x_test", "y_test")})

"""Sweeps: a config's `grid` over dotted keys expanded into named runs.

`config.grid = (("learning_rate", (0.01, 0.1, 1.0)), ("model.norm", ("none", "batchnorm")),
("seed", (0, 1, 2)))` gives the cartesian product, each point a run named from its swept values in
grid order, `learning_rate=0.1,model.norm=batchnorm,seed=0`, whose config is the base config with
those fields set. The runner trains points that differ only in numbers (learning rate, init scale,
seed, SGD momentum) as one vmapped program, `config.points_per_program` at a time (a config field,
never derived from free memory, so results do not depend on the machine).
"""
from __future__ import annotations

import itertools

import ml_collections

from bn_experiments import config as config_lib


def axes(cfg: ml_collections.ConfigDict) -> list[tuple[str, tuple]]:
    """The grid as (key, values) pairs, checked: known keys, non-empty axes, no duplicates."""
    grid = cfg.get("grid") or ()
    known = [k for k in config_lib.flatten(cfg) if k not in ("grid", "runs")]
    out, seen = [], set()
    for entry in grid:
        if not (isinstance(entry, (tuple, list)) and len(entry) == 2 and isinstance(entry[0], str)):
            raise config_lib.ConfigError(
                f"grid entry {entry!r} must be a (key, values) pair, e.g. ('seed', (0, 1, 2))")
        key, values = entry
        if key not in known:
            raise config_lib.ConfigError(
                f"grid key {key!r} is unknown{config_lib._did_you_mean(key, known)}")
        if key in seen:
            raise config_lib.ConfigError(f"grid key {key!r} appears twice; merge its values")
        values = tuple(values) if isinstance(values, (tuple, list)) else (values,)
        if not values:
            raise config_lib.ConfigError(f"grid axis {key!r} is empty; give it at least one value")
        seen.add(key)
        out.append((key, values))
    return out


def point_name(point: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in point.items())


def expand(cfg: ml_collections.ConfigDict, *, input_shape: tuple = (28, 28, 1),
           num_train: int | None = None) -> list[config_lib.Run]:
    """Every run of `cfg`: its grid points, or else its named `runs`, validated before compiling.
    `input_shape`: the data's (H, W, C), for the model's static structure."""
    grid = axes(cfg)
    if not grid:
        return config_lib.runs(cfg, input_shape=input_shape, num_train=num_train)
    if cfg.get("runs"):
        raise config_lib.ConfigError("a config sets either `runs` or `grid`, not both; "
                                     "put the runs' differences on a grid axis")
    points = [dict(zip([k for k, _ in grid], values))
              for values in itertools.product(*[v for _, v in grid])]
    return config_lib.runs(cfg, input_shape=input_shape, num_train=num_train,
                           specs=[(point_name(p), p) for p in points])

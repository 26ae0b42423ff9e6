"""From a config file to what the compiled trainer needs: loading, validation, static vs dynamic.

A config value reaches the compiled step in a few hops: config file (`get_config()`, an
`ml_collections.ConfigDict`) -> `validate` (every field checked, one clear error naming it, before
anything compiles) -> `runs` (one `Run` per named run: a `Static` structure that picks the program
and `Numbers` that are arrays inside it, so changing them never recompiles and a sweep vmaps them).
"""
from __future__ import annotations

import ast
import dataclasses
import difflib
import importlib.resources
import math
import pathlib
from typing import Any

import ml_collections

from bn_experiments.models import mlp

SCHEDULES = ("constant", "cosine")


class ConfigError(ValueError):
    """A config problem; the message names the field and the fix."""


@dataclasses.dataclass(frozen=True)
class Static:
    """Everything that changes the compiled program's shapes or structure."""
    model: mlp.MLPConfig
    steps: int
    batch_size: int
    eval_every: int
    tracked_units: tuple[int, ...]
    schedule: str
    population_batches: int
    saturation_threshold: float = 4.0
    use_momentum: bool = False  # SGD with a momentum trace (its value is a dynamic number)


@dataclasses.dataclass(frozen=True)
class Numbers:
    """Numbers that enter the compiled program as arrays (vmapped over in sweeps)."""
    learning_rate: float
    momentum: float
    init_std: float
    seed: int


@dataclasses.dataclass(frozen=True)
class Run:
    name: str
    flat: dict          # the run's full config, dotted keys
    static: Static
    numbers: Numbers


def config_dir() -> pathlib.Path:
    """The shipped configs (the repository's configs/, installed as bn_experiments.configs)."""
    return pathlib.Path(str(importlib.resources.files("bn_experiments.configs")))


def resolve_path(spec: str) -> str:
    """`fig1_mnist`, `fig1_mnist:quick` or a file path -> a file path (keeping `:arg`)."""
    path, sep, arg = spec.partition(":")
    if not pathlib.Path(path).is_file():
        name = pathlib.Path(path).name
        candidate = config_dir() / (name if name.endswith(".py") else name + ".py")
        if not candidate.is_file():
            known = sorted(p.stem for p in config_dir().glob("*.py") if not p.stem.startswith("_"))
            raise ConfigError(f"--config {path!r}: no such file or shipped config; "
                              f"shipped configs: {', '.join(known)}")
        path = str(candidate)
    return path + sep + arg


def flatten(cfg: Any, prefix: str = "") -> dict:
    """`{"model.norm": "none", ...}` from a (nested) ConfigDict, tuples as lists."""
    out = {}
    items = cfg.items() if hasattr(cfg, "items") else []
    for key, value in items:
        name = f"{prefix}{key}"
        if isinstance(value, (ml_collections.ConfigDict, dict)):
            out.update(flatten(value, name + "."))
        else:
            out[name] = list(value) if isinstance(value, tuple) else value
    return out


def _did_you_mean(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    return f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(sorted(known))}"


def set_dotted(cfg: ml_collections.ConfigDict, key: str, value: Any) -> None:
    """Sets `a.b.c` on a ConfigDict, type-checked; an unknown key is an error naming its neighbours."""
    known = list(flatten(cfg))
    if key not in known:
        raise ConfigError(f"config key {key!r} is unknown{_did_you_mean(key, known)}")
    *parents, leaf = key.split(".")
    node = cfg
    for p in parents:
        node = node[p]
    old = node[leaf]
    if isinstance(old, tuple) and isinstance(value, list):
        value = tuple(value)
    if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    try:
        node[leaf] = value
    except TypeError as err:
        raise ConfigError(f"{key}={value!r}: wrong type, expected {type(old).__name__} ({err})") from None


def parse_value(text: str) -> Any:
    """`0.1` -> 0.1, `(1, 2)` -> (1, 2), `none` -> 'none' (bare words are strings)."""
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        return text.strip()


def parse_run(spec: str) -> tuple[str, dict]:
    """`"bn: model.norm=batchnorm, learning_rate=1.0"` -> ("bn", {...})."""
    name, sep, rest = spec.partition(":")
    if not sep or not name.strip():
        raise ConfigError(f"runs entry {spec!r} must look like 'name: key=value, key=value'")
    overrides = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            raise ConfigError(f"runs entry {spec!r}: {item!r} is not key=value")
        overrides[key.strip()] = parse_value(value)
    return name.strip(), overrides


def _check(ok: bool, field: str, value: Any, fix: str) -> None:
    if not ok:
        raise ConfigError(f"{field}={value!r} is invalid: {fix}")


def validate(cfg: ml_collections.ConfigDict, *, reference: ml_collections.ConfigDict | None = None,
             num_train: int | None = None) -> None:
    """Raises ConfigError on the first bad field. `reference`: the shipped default whose keys are
    the only ones allowed; `num_train`: the training-set size, to bound the batch size."""
    flat = flatten(cfg)
    if reference is not None:
        known = list(flatten(reference))
        for key in flat:
            if key not in known:
                raise ConfigError(f"config key {key!r} is unknown{_did_you_mean(key, known)}")
    for key in ("steps", "batch_size", "eval_every"):
        value = flat.get(key)
        _check(isinstance(value, int) and not isinstance(value, bool) and value > 0, key, value,
               "must be a positive integer")
    _check(flat["steps"] % flat["eval_every"] == 0, "eval_every", flat["eval_every"],
           f"must divide steps={flat['steps']}")
    ce = flat.get("checkpoint_every", 0)
    _check(isinstance(ce, int) and ce >= 0 and ce % flat["eval_every"] == 0, "checkpoint_every", ce,
           f"must be 0 (off) or a multiple of eval_every={flat['eval_every']}")
    lr = flat.get("learning_rate")
    _check(isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0, "learning_rate", lr,
           "must be a finite number > 0")
    std = flat.get("model.init_std")
    _check(isinstance(std, (int, float)) and math.isfinite(std) and std > 0, "model.init_std", std,
           "must be a finite number > 0")
    mom = flat.get("optimizer.momentum")
    _check(isinstance(mom, (int, float)) and 0 <= mom < 1, "optimizer.momentum", mom, "must be in [0, 1)")
    _check(flat.get("optimizer.schedule") in SCHEDULES, "optimizer.schedule",
           flat.get("optimizer.schedule"), f"use one of {list(SCHEDULES)}")
    target = flat.get("target_accuracy")
    _check(isinstance(target, (int, float)) and 0 < target <= 1, "target_accuracy", target,
           "must be in (0, 1]")
    _check(isinstance(flat.get("seed"), int) and flat["seed"] >= 0, "seed", flat.get("seed"),
           "must be an integer >= 0")
    for key, low in (("population_batches", 0), ("points_per_program", 1)):
        value = flat.get(key, low)
        _check(isinstance(value, int) and not isinstance(value, bool) and value >= low, key, value,
               f"must be an integer >= {low}")
    for key in ("saturation_threshold", "model.bn_epsilon"):
        value = flat.get(key, 1.0)
        _check(isinstance(value, (int, float)) and not isinstance(value, bool)
               and math.isfinite(value) and value > 0, key, value, "must be a finite number > 0")
    bn_mom = flat.get("model.bn_momentum", 0.99)
    _check(isinstance(bn_mom, (int, float)) and 0 <= bn_mom < 1, "model.bn_momentum", bn_mom,
           "must be in [0, 1)")
    widths = flat.get("model.widths")
    _check(isinstance(widths, list) and len(widths) > 0
           and all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths),
           "model.widths", tuple(widths) if isinstance(widths, list) else widths,
           "must be a non-empty tuple of positive integers, e.g. (100, 100, 100)")
    if num_train is not None:
        _check(flat["batch_size"] <= num_train, "batch_size", flat["batch_size"],
               f"is larger than the {num_train} training examples of data.source="
               f"{flat.get('data.source')!r}; use a smaller batch")
    model_config(cfg)  # activation / norm / init / widths
    units = tuple(flat.get("model.tracked_units") or ())
    width = cfg.model.widths[-1]
    _check(len(units) > 0 and all(isinstance(u, int) and 0 <= u < width for u in units),
           "model.tracked_units", units, f"must be unit indices in [0, {width}) of the last hidden layer")


def model_config(cfg: ml_collections.ConfigDict, input_size: int = 784) -> mlp.MLPConfig:
    m = cfg.model
    try:
        return mlp.MLPConfig(
            input_size=input_size, widths=tuple(m.widths), activation=m.activation, norm=m.norm,
            init=m.init, init_std=float(m.init_std), bn_momentum=float(m.bn_momentum),
            bn_epsilon=float(m.bn_epsilon))
    except ValueError as err:
        raise ConfigError(str(err)) from None


def runs(cfg: ml_collections.ConfigDict, *, input_size: int = 784, num_train: int | None = None,
         specs: list[tuple[str, dict]] | None = None) -> list[Run]:
    """One `Run` per entry of `cfg.runs` (the base config alone when it has none), validated.
    `specs`: (name, {dotted key: value}) pairs to use instead of `cfg.runs` (sweep points)."""
    if specs is None:
        specs = [parse_run(s) for s in (cfg.get("runs") or ())]
    specs = specs or [(cfg.get("experiment", "run"), {})]
    names = [n for n, _ in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"runs: names must be unique, got {names}")
    out = []
    for name, overrides in specs:
        run_cfg = ml_collections.ConfigDict(cfg.to_dict())
        for key in ("runs", "grid"):
            if key in run_cfg:
                del run_cfg[key]
        for key, value in overrides.items():
            set_dotted(run_cfg, key, value)
        validate(run_cfg, num_train=num_train)
        static = Static(
            model=model_config(run_cfg, input_size), steps=run_cfg.steps,
            batch_size=run_cfg.batch_size, eval_every=run_cfg.eval_every,
            tracked_units=tuple(run_cfg.model.tracked_units), schedule=run_cfg.optimizer.schedule,
            population_batches=run_cfg.population_batches,
            saturation_threshold=float(run_cfg.saturation_threshold),
            use_momentum=float(run_cfg.optimizer.momentum) > 0)
        numbers = Numbers(learning_rate=float(run_cfg.learning_rate),
                          momentum=float(run_cfg.optimizer.momentum),
                          init_std=float(run_cfg.model.init_std), seed=int(run_cfg.seed))
        out.append(Run(name, flatten(run_cfg), static, numbers))
    return out

"""From a config file to what the compiled trainer needs: loading, validation, static vs dynamic.

A config value reaches the compiled step in a few hops: config file (`get_config()`, an
`ml_collections.ConfigDict`) -> `validate` (every field checked, one clear error naming it, before
anything compiles) -> `runs` (one `Run` per named run: a `Static` structure that picks the program
and `Numbers` that are arrays inside it, so changing them never recompiles and a sweep vmaps them).

The model section belongs to the model family (bn_experiments.models): `model.name` picks the
family, `validate` checks the fields every family shares here and hands the family's own fields
to its `validate`, so this module never names a model. A field of another family is refused with
one line saying so; `set_model` swaps a config's model section to another family.

One gate for every config, from the command line (bn_experiments.config_load reads the file and
its overrides) or from Python: `check` validates against the default config's keys, and
`runner.train_and_evaluate` calls it itself, so a typo'd key set from Python is refused exactly as
on the command line.
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

from bn_experiments import models

SCHEDULES = ("constant", "cosine", "exponential")


class ConfigError(ValueError):
    """A config problem; the message names the field and the fix."""


@dataclasses.dataclass(frozen=True)
class Static:
    """Everything that changes the compiled program's shapes or structure."""
    model: Any  # the model family's static config (`ModelFamily.make_config`), frozen
    steps: int
    batch_size: int
    eval_every: int
    tracked_units: tuple[int, ...]
    schedule: str
    population_batches: int
    saturation_threshold: float = 4.0
    # Every evaluation's per-unit test-set quantiles (the ICS 1-Wasserstein and median shifts);
    # False: the mean and std shifts only, without sorting every unit's test-set values.
    ics_quantiles: bool = True
    use_momentum: bool = False  # SGD with a momentum trace (its value is a dynamic number)
    model_name: str = models.DEFAULT  # the family (`models.get`) that `model` belongs to
    weight_decay: float = 0.0  # L2 coefficient on the weights (0: none)
    decay_steps: int = 1  # schedule "exponential": the rate is decay_rate ** (step / decay_steps)
    decay_rate: float = 1.0
    # Extra evaluations before the regular ones (every `eval_every` steps), to resolve the early
    # phase of training: e.g. (50, 100, 200) with eval_every=500.
    eval_steps: tuple[int, ...] = ()
    # Data parallel (bn_experiments.data_parallel): the batch split over `devices` devices of
    # every process (1: one device; 0: all), BN statistics synchronized over them (`bn_sync`) or
    # each device's own; `ghost_batches` > 1: on one device, BN statistics of that many equal
    # slices of the batch (what per-device statistics on that many devices compute).
    devices: int = 1
    bn_sync: bool = False
    ghost_batches: int = 1

    @property
    def spans_devices(self) -> bool:
        """Whether the program spans several devices (it then trains alone, not side by side)."""
        return self.devices != 1

    def schedule_steps(self) -> list[int]:
        """The evaluated steps after step 0: `eval_steps` and every multiple of `eval_every`."""
        return eval_schedule(self.steps, self.eval_every, self.eval_steps)


def eval_schedule(steps: int, eval_every: int, extra: tuple[int, ...] = ()) -> list[int]:
    """Sorted evaluation steps after step 0: every multiple of `eval_every` up to `steps`, plus
    the `extra` early steps below `steps` (a shortened run keeps those that fit). Training runs
    in chunks between consecutive evaluations."""
    return sorted(set(range(eval_every, steps + 1, eval_every))
                  | {int(s) for s in extra if 0 < int(s) < steps})


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


# Set (True) by `configs/default.shrink`: a smoke run, whose summary.json is marked `"smoke": true`,
# whose claims give no verdict and which `bn-exp report` leaves out of the ledger. Not a field of
# the default config, so full-size runs' config.json and summary.json do not mention it.
SMOKE_KEY = "smoke"


def check(cfg: ml_collections.ConfigDict) -> None:
    """THE gate every config passes before anything is trained, from the CLI or from Python
    (`runner.train_and_evaluate` calls it): `validate` against the default config's keys."""
    from bn_experiments.configs import default

    if not isinstance(cfg, ml_collections.ConfigDict):
        raise ConfigError(f"a config is an ml_collections.ConfigDict (from get_config()), "
                          f"not a {type(cfg).__name__}")
    validate(cfg, reference=default.get_config())


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
    the only ones allowed (its model section stands for the family that `model.name` picks);
    `num_train`: the training-set size, to bound the batch size."""
    flat = flatten(cfg)
    family = _family(flat.get("model.name", models.DEFAULT))
    if reference is not None:
        known = ([k for k in flatten(reference) if not k.startswith("model.")] + _model_keys(family)
                 + [SMOKE_KEY])
        for key in flat:
            if key not in known:
                _refuse_foreign(key, family)
                raise ConfigError(f"config key {key!r} is unknown{_did_you_mean(key, known)}")
    for key in ("steps", "batch_size", "eval_every"):
        value = flat.get(key)
        _check(isinstance(value, int) and not isinstance(value, bool) and value > 0, key, value,
               "must be a positive integer")
    _check(flat["steps"] % flat["eval_every"] == 0, "eval_every", flat["eval_every"],
           f"must divide steps={flat['steps']}")
    extra = flat.get("eval_steps", ())
    _check(isinstance(extra, (tuple, list)) and all(
        isinstance(e, int) and not isinstance(e, bool) and e > 0 for e in extra),
        "eval_steps", extra, "must be a tuple of positive steps, e.g. (50, 100)")
    ce = flat.get("checkpoint_every", 0)
    _check(isinstance(ce, int) and ce >= 0 and ce % flat["eval_every"] == 0, "checkpoint_every", ce,
           f"must be 0 (off) or a multiple of eval_every={flat['eval_every']}")
    lr = flat.get("learning_rate")
    _check(isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0, "learning_rate", lr,
           "must be a finite number > 0")
    mom = flat.get("optimizer.momentum")
    _check(isinstance(mom, (int, float)) and 0 <= mom < 1, "optimizer.momentum", mom, "must be in [0, 1)")
    _check(flat.get("optimizer.schedule") in SCHEDULES, "optimizer.schedule",
           flat.get("optimizer.schedule"), f"use one of {list(SCHEDULES)}")
    _check_decay(flat)
    target = flat.get("target_accuracy")
    _check(isinstance(target, (int, float)) and 0 < target <= 1, "target_accuracy", target,
           "must be in (0, 1]")
    _check(isinstance(flat.get("seed"), int) and flat["seed"] >= 0, "seed", flat.get("seed"),
           "must be an integer >= 0")
    for key, low in (("population_batches", 0), ("points_per_program", 1)):
        value = flat.get(key, low)
        _check(isinstance(value, int) and not isinstance(value, bool) and value >= low, key, value,
               f"must be an integer >= {low}")
    _check_positive(flat, "saturation_threshold")
    _check(isinstance(flat.get("ics_quantiles", True), bool), "ics_quantiles",
           flat.get("ics_quantiles"), "must be True or False")
    check_data_parallel(flat)
    if flat.get("model.bn_norm_p", "l2") != "l2":
        _check(flat.get("population_batches", 0) == 0, "population_batches",
               flat.get("population_batches"), f"must be 0 with model.bn_norm_p="
               f"{flat['model.bn_norm_p']!r}: Algorithm 2's population statistics are variances")
    if flat.get("model.bn_whiten_group", 0):
        _check(flat.get("population_batches", 0) == 0, "population_batches",
               flat.get("population_batches"), "must be 0 with model.bn_whiten_group > 0: "
               "Algorithm 2's population statistics are per-unit variances, not covariances")
    _check(isinstance(flat.get(SMOKE_KEY, False), bool), SMOKE_KEY, flat.get(SMOKE_KEY),
           "must be true or false")
    if num_train is not None:
        _check(flat["batch_size"] <= num_train, "batch_size", flat["batch_size"],
               f"is larger than the {num_train} training examples of data.source="
               f"{flat.get('data.source')!r}; use a smaller batch")
    _validate_model(flat, family)


DATA_PARALLEL_DEFAULTS = {"data_parallel.devices": 1, "data_parallel.bn_sync": False,
                          "data_parallel.ghost_batches": 1}


def check_data_parallel(flat: dict) -> tuple[int, bool, int]:
    """(devices, bn_sync, ghost_batches) of a flat config, checked (absent: one device, the
    section's defaults). The device count itself is checked against the devices there are when
    the runner plans the runs (`data_parallel.check_devices`)."""
    get = lambda k: flat.get(k, DATA_PARALLEL_DEFAULTS[k])  # noqa: E731
    devices, bn_sync, ghosts = (get("data_parallel.devices"), get("data_parallel.bn_sync"),
                                get("data_parallel.ghost_batches"))
    _check(isinstance(devices, int) and not isinstance(devices, bool) and devices >= 0,
           "data_parallel.devices", devices, "use 1 (one device), a device count, or 0 (every "
           "device)")
    _check(isinstance(bn_sync, bool), "data_parallel.bn_sync", bn_sync, "must be True or False")
    _check(isinstance(ghosts, int) and not isinstance(ghosts, bool) and ghosts >= 1,
           "data_parallel.ghost_batches", ghosts, "must be an integer >= 1 (1: the whole batch)")
    if ghosts > 1:
        _check(devices == 1, "data_parallel.ghost_batches", ghosts,
               f"simulates per-device statistics on ONE device; with data_parallel.devices="
               f"{devices} use per-device statistics (bn_sync=False) instead, or ghost_batches=1")
        batch = flat.get("batch_size")
        _check(isinstance(batch, int) and batch % ghosts == 0, "data_parallel.ghost_batches",
               ghosts, f"must divide batch_size={batch}")
    return devices, bn_sync, ghosts


def _check_decay(flat: dict) -> None:
    """The L2 coefficient and the exponential schedule's fields (absent in old configs: unused)."""
    wd = flat.get("optimizer.weight_decay", 0.0)
    _check(isinstance(wd, (int, float)) and not isinstance(wd, bool) and math.isfinite(wd)
           and wd >= 0, "optimizer.weight_decay", wd, "must be a finite number >= 0 (0 = no L2)")
    steps = flat.get("optimizer.decay_steps", 1)
    _check(isinstance(steps, int) and not isinstance(steps, bool) and steps > 0,
           "optimizer.decay_steps", steps, "must be a positive integer")
    rate = flat.get("optimizer.decay_rate", 1.0)
    _check(isinstance(rate, (int, float)) and not isinstance(rate, bool) and 0 < rate <= 1,
           "optimizer.decay_rate", rate, "must be in (0, 1], e.g. 0.96")


def _check_positive(flat: dict, key: str) -> None:
    value = flat.get(key, 1.0)
    _check(isinstance(value, (int, float)) and not isinstance(value, bool)
           and math.isfinite(value) and value > 0, key, value, "must be a finite number > 0")


def _family(name: Any) -> models.ModelFamily:
    """The registered family `name` (`model.name`), or a ConfigError listing the known ones."""
    try:
        return models.get(name)
    except (ValueError, TypeError) as err:
        raise ConfigError(str(err)) from None


def _model_keys(family: models.ModelFamily) -> list[str]:
    """Every key the model section of `family` may hold, dotted (`model.widths`, ...)."""
    return [f"model.{k}" for k in (*models.COMMON_FIELDS, *family.field_names())]


def _refuse_foreign(key: str, family: models.ModelFamily) -> None:
    """A `model.X` key that another family owns: say so (else the caller's unknown-key error)."""
    if key.startswith("model."):
        others = [n for n in models.owners(key[len("model."):]) if n != family.name]
        if others:
            raise ConfigError(f"config key {key!r} belongs to model {others[0]!r}, not to "
                              f"model.name={family.name!r}; remove it")


def _validate_model(flat: dict, family: models.ModelFamily) -> None:
    """The model section: only `family`'s keys, the common checks, then the family's `validate`."""
    known = _model_keys(family)
    for key in flat:
        if key.startswith("model.") and key not in known:
            _refuse_foreign(key, family)
            raise ConfigError(f"config key {key!r} is unknown{_did_you_mean(key, known)}")
    std = flat.get("model.init_std")
    _check(isinstance(std, (int, float)) and math.isfinite(std) and std > 0, "model.init_std", std,
           "must be a finite number > 0")
    _check_positive(flat, "model.bn_epsilon")
    bn_mom = flat.get("model.bn_momentum", 0.99)
    _check(isinstance(bn_mom, (int, float)) and 0 <= bn_mom < 1, "model.bn_momentum", bn_mom,
           "must be in [0, 1)")
    try:
        family.validate({k[len("model."):]: v for k, v in flat.items() if k.startswith("model.")})
    except ValueError as err:
        raise ConfigError(str(err)) from None


def set_model(cfg: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
    """Swaps `cfg`'s model section to family `name`, in place (returns `cfg`): the common fields
    keep their values, the old family's own fields go, the new family's get their defaults.

    Setting `model.name` alone would leave the old family's fields behind (refused by `validate`)
    and the new family's missing, so the CLI applies `--config.model.name=NAME` through this,
    before the other overrides, and a named run or grid point with `model.name` does too.
    """
    family = _family(name)
    old = cfg.get("model")
    if old is not None and old.get("name", models.DEFAULT) == family.name:
        old.name = family.name  # the same family: nothing to swap
        return cfg
    section = models.default_config(family.name).to_dict()
    if old is not None:
        section.update({k: old[k] for k in models.COMMON_FIELDS if k != "name" and k in old})
    cfg.model = ml_collections.ConfigDict(section)
    return cfg


def model_config(cfg: ml_collections.ConfigDict, input_shape: tuple = (28, 28, 1)) -> Any:
    """The static config of `cfg`'s model (its family's `make_config`) for inputs of (H, W, C)."""
    try:
        return _family(cfg.model.get("name")).make_config(cfg.model, tuple(input_shape))
    except ValueError as err:
        raise ConfigError(str(err)) from None


def runs(cfg: ml_collections.ConfigDict, *, input_shape: tuple = (28, 28, 1),
         num_train: int | None = None, specs: list[tuple[str, dict]] | None = None) -> list[Run]:
    """One `Run` per entry of `cfg.runs` (the base config alone when it has none), validated.
    `specs`: (name, {dotted key: value}) pairs to use instead of `cfg.runs` (sweep points); a
    `model.name` among them swaps the model section first (`set_model`). `input_shape`: the
    data's (H, W, C), which the model's static structure depends on."""
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
        if "model.name" in overrides:
            set_model(run_cfg, overrides["model.name"])
        for key, value in overrides.items():
            if key != "model.name":
                set_dotted(run_cfg, key, value)
        validate(run_cfg, num_train=num_train)
        static = Static(
            model=model_config(run_cfg, input_shape),
            model_name=_family(run_cfg.model.get("name")).name, steps=run_cfg.steps,
            batch_size=run_cfg.batch_size, eval_every=run_cfg.eval_every,
            tracked_units=tuple(run_cfg.model.tracked_units), schedule=run_cfg.optimizer.schedule,
            population_batches=run_cfg.population_batches,
            saturation_threshold=float(run_cfg.saturation_threshold),
            ics_quantiles=bool(run_cfg.get("ics_quantiles", True)),
            use_momentum=float(run_cfg.optimizer.momentum) > 0,
            weight_decay=float(run_cfg.optimizer.get("weight_decay", 0.0)),
            decay_steps=int(run_cfg.optimizer.get("decay_steps", 1)),
            decay_rate=float(run_cfg.optimizer.get("decay_rate", 1.0)),
            eval_steps=tuple(sorted(set(run_cfg.get("eval_steps", ())))),
            **dict(zip(("devices", "bn_sync", "ghost_batches"),
                       check_data_parallel(flatten(run_cfg)))))
        numbers = Numbers(learning_rate=float(run_cfg.learning_rate),
                          momentum=float(run_cfg.optimizer.momentum),
                          init_std=float(run_cfg.model.init_std), seed=int(run_cfg.seed))
        out.append(Run(name, flatten(run_cfg), static, numbers))
    return out

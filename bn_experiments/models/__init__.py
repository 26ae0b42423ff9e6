"""Model families behind one interface, by name: `models.get(cfg.model.name)`.

The trainer, the runner and the config code never import a model module: they look the family up
here, so adding a model is one module in this package and one `register` line at the end of this
file, and nothing else changes. (The registry follows init2winit's `models.get_model(name)`.)

A family (`ModelFamily`) is five pure functions under a name:

- `fields() -> ConfigDict`: the family's OWN config fields (under `model.`) with their defaults,
  each with a comment. The fields every family shares are `common_fields()` (`model.name`,
  `activation`, `norm`, `init`, `init_std`, `tracked_units`, `bn_momentum`, `bn_epsilon`,
  `bn_stop_gradient`, `bn_affine`, `bn_noise`); the
  config of a run is `default_config(name)` = both, with the values the config file sets.
- `validate(model: dict)`: checks the model section (flat, keys without `model.`, tuples as lists)
  beyond the common checks of `config.validate`: the family's own fields, the choices of the
  common fields it implements (activation, norm, init) and `tracked_units` against its last
  hidden layer. Raises `ValueError` with one line naming the field, `model.X=...`, and the fix.
- `make_config(model: ConfigDict, input_shape: tuple) -> static config`: a frozen dataclass, the
  model's compiled structure. It has an `init_std` field (a default only: the trainer passes the
  traced number in `numbers["init_std"]`, so runs that differ in it share one program), a
  `use_bn` property (the runner skips Algorithm 2 without BN) and optionally a `needs_rng`
  property (True when training-mode `apply` wants a fresh `rng` every step, e.g. noisy BN).
- `init(key, cfg, numbers) -> (params, state)`: `numbers` is the dict of the run's dynamic arrays
  (`learning_rate`, `momentum`, `init_std`, `seed`; traced, vmapped over in a sweep).
- `apply(params, state, x, *, cfg, train, rng=None) -> (logits, new_state, intermediates)`.

The contract between a family and the trainer:

- `x` arrives as the data source gives it, NHWC (`Dataset.x_*` is (N, H, W, C)); the model
  reshapes as it needs (the MLP flattens).
- `intermediates = {"preacts": [...], "bn_inputs": [...]}`: `preacts` the input of every
  nonlinearity, one per layer in order, (batch, units) or NHWC (the trainer takes statistics per
  unit = last axis, over all other axes; `tracked_units` index the last axis of the last one);
  `bn_inputs` the input of every BN layer, in order.
- `state = {"bn": [one BN state per BN layer, aligned with bn_inputs]}`; `apply` with
  `train=False` uses the running statistics and returns `state` unchanged.
- `rng=None` switches every stochastic training-mode perturbation off: evaluation, population
  statistics and probes run the model deterministically.

`population_state` (Algorithm 2) then works for every family from `apply` and `bn_inputs` alone.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import ml_collections

from bn_experiments import batchnorm

DEFAULT = "mlp"


def common_fields() -> ml_collections.ConfigDict:
    """The model fields every family shares, with their defaults (`configs/default.py` uses them)."""
    f = ml_collections.ConfigDict()
    # Model family: a module of bn_experiments.models registered by this name. Changing it from
    # the command line (--config.model.name=NAME) swaps in that family's own fields first.
    f.name = DEFAULT
    # Nonlinearity g in z = g(BN(Wu)): sigmoid | relu | tanh | identity.
    f.activation = "sigmoid"
    # none | batchnorm (BN on Wu, before the nonlinearity, bias dropped: the paper's Sec. 3.2).
    f.norm = "none"
    # gaussian (std = init_std, the paper's "small random Gaussian values") | lecun | glorot | he
    # (their fan-based std times init_std).
    f.init = "gaussian"
    # Weight std for init=gaussian; a gain for the fan-based inits.
    f.init_std = 0.1
    # Units of the last hidden layer whose input distribution is tracked every step; the first is
    # the one Figure 1(b, c) shows (curves preact_p15/p50/p85), the others get _unit<i> curves.
    f.tracked_units = (0, 1, 2, 3)
    # Running-average momentum and epsilon of BN (Flax conventions).
    f.bn_momentum = 0.99
    f.bn_epsilon = 1e-5
    # BN ablations (the first two have no effect without BN). Stop-gradient batch statistics: the gradient step
    # ignores that the batch mean and variance depend on the parameters (IS Sec. 2, the
    # "normalization outside the gradient step").
    f.bn_stop_gradient = False
    # BN's learned scale gamma and shift beta (IS Sec. 3); False normalizes only.
    f.bn_affine = True
    # Santurkar et al. (2018)'s "noisy BN": random per-unit shift and scale after each BN layer
    # in training mode (evaluation runs without it); without BN (MLP) the same noise goes to
    # W u + b before the nonlinearity, their "standard + noise" arm.
    f.bn_noise = False
    return f


COMMON_FIELDS = tuple(common_fields().keys())


@dataclasses.dataclass(frozen=True)
class ModelFamily:
    """A model family: its name and its five functions (see the module docstring)."""
    name: str
    fields: Callable[[], ml_collections.ConfigDict]
    validate: Callable[[dict], None]
    make_config: Callable[[ml_collections.ConfigDict, tuple], Any]
    init: Callable[[jax.Array, Any, dict], tuple[dict, dict]]
    apply: Callable[..., tuple[jax.Array, dict, dict]]

    def field_names(self) -> tuple[str, ...]:
        """The family's own fields (flat, without `model.`)."""
        return tuple(_flat_keys(self.fields()))


def _flat_keys(cfg: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    out = []
    for key, value in cfg.items():
        if isinstance(value, ml_collections.ConfigDict):
            out += _flat_keys(value, f"{prefix}{key}.")
        else:
            out.append(prefix + key)
    return out


_REGISTRY: dict[str, ModelFamily] = {}


def register(family: ModelFamily) -> ModelFamily:
    """Adds `family` under its name. Its own fields may not shadow a common field."""
    if family.name in _REGISTRY and _REGISTRY[family.name] is not family:
        raise ValueError(f"model family {family.name!r} is registered twice")
    clash = sorted(set(family.field_names()) & set(COMMON_FIELDS))
    if clash:
        raise ValueError(f"model family {family.name!r} redefines common fields {clash}")
    _REGISTRY[family.name] = family
    return family


def unregister(name: str) -> None:
    """Removes a family (for tests that register a throwaway one)."""
    _REGISTRY.pop(name, None)


def names() -> list[str]:
    return sorted(_REGISTRY)


def get(name: str | None) -> ModelFamily:
    """The family `name` (None, as in a summary written before `model.name` existed: "mlp")."""
    name = DEFAULT if name is None else name
    if name not in _REGISTRY:
        raise ValueError(f"model.name={name!r} is unknown; use one of {names()}")
    return _REGISTRY[name]


def owners(field: str) -> list[str]:
    """The families whose own fields include `field` (flat, without `model.`)."""
    return [n for n, fam in sorted(_REGISTRY.items()) if field in fam.field_names()]


def default_config(name: str = DEFAULT) -> ml_collections.ConfigDict:
    """The model section of a config for family `name`: common fields, then the family's own."""
    family = get(name)
    section = common_fields()
    section.name = family.name
    for key, value in family.fields().items():
        section[key] = value
    return section


def check(ok: bool, field: str, value: Any, fix: str) -> None:
    """Raises the one-line `ValueError` of a family's `validate`: `model.X=value is invalid: fix`."""
    if not ok:
        raise ValueError(f"{field}={value!r} is invalid: {fix}")


def check_choice(value: Any, field: str, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{field}={value!r} is unknown; use one of {sorted(allowed)}")


def check_tracked_units(units: Any, num_units: int) -> None:
    """`model.tracked_units`: a non-empty tuple of unit indices of the last hidden layer."""
    units = tuple(units) if isinstance(units, (list, tuple)) else units
    check(isinstance(units, tuple) and len(units) > 0
          and all(isinstance(u, int) and not isinstance(u, bool) and 0 <= u < num_units
                  for u in units),
          "model.tracked_units", units,
          f"must be unit indices in [0, {num_units}) of the last hidden layer")


def population_state(family: ModelFamily, params: dict, state: dict, batches: jax.Array, *,
                     cfg: Any) -> dict:
    """Algorithm 2 for any family: BN state from population statistics over `batches` (K, batch,
    ...): the training-mode network (`rng=None`: no noise) gives each BN layer's input on every
    batch, `batchnorm.population_statistics` averages their moments."""

    def moments_fn(x):
        _, _, inter = family.apply(params, state, x, cfg=cfg, train=True, rng=None)
        return {"bn": [batchnorm.batch_moments(z) for z in inter["bn_inputs"]]}
    return batchnorm.population_statistics(moments_fn, batches)


# The families. Adding a model: its module, and one line here.
from bn_experiments.models import mlp  # noqa: E402  (mlp uses ModelFamily, defined above)

register(mlp.FAMILY)
from bn_experiments.models.inception import bn_inception, small_inception  # noqa: E402
register(small_inception.FAMILY)
register(bn_inception.FAMILY)

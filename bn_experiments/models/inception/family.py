"""What the two Inception families share: their static config, config fields, checks, and the
five functions of the family contract (bn_experiments.models), given a plan builder.

A family here is `make_family(name, build_plan, fields)`: `build_plan(width, input_shape)`
returns the plan (bn_experiments.models.inception.layers) for a width multiplier and an input
(H, W, C); everything else (init, apply, validation, BN placement, dropout) is the same code.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax
import ml_collections

from bn_experiments import models
from bn_experiments.models.inception import layers
from bn_experiments.models.mlp import ACTIVATIONS, BN_SWITCHES, INITS, NORMS


@dataclasses.dataclass(frozen=True)
class InceptionConfig:
    """Static structure of an Inception-style network (changing a field changes the program).

    `plan` is the network's op list (layers.py); `init_std` is the default of the traced init
    gain (`numbers["init_std"]`); `dropout` the drop rate before the classifier in training.
    """
    plan: tuple
    input_shape: tuple[int, int, int]
    activation: str = "relu"
    norm: str = "batchnorm"
    init: str = "he"
    init_std: float = 1.0
    num_classes: int = 10
    dropout: float = 0.0
    bn_momentum: float = 0.99
    bn_epsilon: float = 1e-5
    bn_stop_gradient: bool = False
    bn_affine: bool = True
    bn_noise: bool = False

    @property
    def use_bn(self) -> bool:
        return self.norm == "batchnorm"

    @property
    def needs_rng(self) -> bool:
        """Training-mode `apply` wants a fresh `rng` every step (dropout, noisy BN)."""
        return self.dropout > 0 or (self.bn_noise and self.use_bn)


def scaled(channels: int, width: float) -> int:
    """`channels` times the width multiplier, rounded, at least 1."""
    return max(1, int(round(channels * width)))


def base_fields(num_classes: int) -> ml_collections.ConfigDict:
    """The fields both Inception families own (under `model.`)."""
    f = ml_collections.ConfigDict()
    # Width multiplier: every conv's channel count times this, rounded (at least 1). 1.0 is the
    # published network; the CPU configs train narrow copies.
    f.width = 1.0
    # Output classes of the dense classifier (must match the data: 10 for MNIST/CIFAR-10).
    f.num_classes = num_classes
    # Dropout rate before the classifier, in training only (GoogLeNet: 0.4; the paper's
    # accelerated BN variants remove it, Sec. 4.2.1). 0 = off.
    f.dropout = 0.0
    return f


def _number(value, integer: bool = False) -> bool:
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    return ok and not isinstance(value, bool) and math.isfinite(value)


def make_family(name: str, build_plan: Callable[[float, tuple], tuple],
                fields: Callable[[], ml_collections.ConfigDict],
                default_input: tuple[int, int, int]) -> models.ModelFamily:
    """The `ModelFamily` `name` whose structure is `build_plan(width, input_shape)`."""

    def validate(model: dict) -> None:
        width = model.get("width")
        models.check(_number(width) and width > 0, "model.width", width,
                     "must be a number > 0 (the width multiplier, e.g. 0.25)")
        classes = model.get("num_classes")
        models.check(_number(classes, integer=True) and classes >= 2, "model.num_classes",
                     classes, "must be an integer >= 2 (the dataset's number of classes)")
        rate = model.get("dropout")
        models.check(_number(rate) and 0 <= rate < 1, "model.dropout", rate,
                     "must be in [0, 1) (0 = no dropout)")
        for field, allowed in (("activation", ACTIVATIONS), ("norm", NORMS), ("init", INITS)):
            models.check_choice(model.get(field), f"model.{field}", allowed)
        for field, default in BN_SWITCHES.items():
            value = model.get(field, default)
            models.check(isinstance(value, bool), f"model.{field}", value, "must be True or False")
        conv_list, _ = layers.conv_layers(build_plan(width, default_input), default_input[-1])
        models.check_tracked_units(model.get("tracked_units") or (), conv_list[-1][0].features)

    def make_config(model: ml_collections.ConfigDict, input_shape: tuple) -> InceptionConfig:
        return InceptionConfig(
            plan=build_plan(float(model.width), tuple(input_shape)),
            input_shape=tuple(int(d) for d in input_shape), activation=model.activation,
            norm=model.norm, init=model.init, init_std=float(model.init_std),
            num_classes=int(model.num_classes), dropout=float(model.dropout),
            bn_momentum=float(model.bn_momentum), bn_epsilon=float(model.bn_epsilon),
            **{field: bool(model.get(field, default)) for field, default in BN_SWITCHES.items()})

    def init(key: jax.Array, cfg: InceptionConfig, numbers: dict | None = None):
        return layers.init(key, cfg.plan, cfg.input_shape[-1], cfg.num_classes, use_bn=cfg.use_bn,
                           init_kind=cfg.init, gain=(numbers or {}).get("init_std", cfg.init_std),
                           bn_affine=cfg.bn_affine)

    def apply(params, state, x, *, cfg: InceptionConfig, train: bool, rng=None):
        return layers.apply(params, state, x, cfg.plan, activation=cfg.activation,
                            use_bn=cfg.use_bn, train=train, bn_momentum=cfg.bn_momentum,
                            bn_epsilon=cfg.bn_epsilon, dropout_rate=cfg.dropout,
                            bn_stop_gradient=cfg.bn_stop_gradient, bn_affine=cfg.bn_affine,
                            bn_noise=cfg.bn_noise, rng=rng)

    return models.ModelFamily(name=name, fields=fields, validate=validate,
                              make_config=make_config, init=init, apply=apply)

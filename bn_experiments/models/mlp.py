"""The fully connected network of Ioffe & Szegedy (2015), Sec. 4.1: MNIST, 3 x 100 sigmoid units.

Each hidden layer computes z = g(BN(W u)) with BN on W u, before the nonlinearity, and no bias b
(beta takes its role), as the paper's Sec. 3.2 places it; without BN it is z = g(W u + b).
`apply` also returns every hidden layer's pre-activation (the input to g), which is what the
paper's Figure 1(b, c) tracks, and each BN input W u, from which Algorithm 2 builds population
statistics (`models.population_state`).

The model family "mlp" of `bn_experiments.models` (its contract is that module's docstring):
`fields` (its own config field, `model.widths`), `validate`, `make_config` (-> `MLPConfig`),
`init`, `apply`, registered as `FAMILY`. Only the registry imports this module.
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import ml_collections

from bn_experiments import batchnorm, models, whitening

ACTIVATIONS = {"sigmoid": jax.nn.sigmoid, "relu": jax.nn.relu, "tanh": jnp.tanh,
               "identity": lambda x: x}
NORMS = ("none", "batchnorm")
INITS = ("gaussian", "lecun", "glorot", "he")
# The BN ablation switches (common config fields, `models.common_fields`) and their defaults.
BN_POSITIONS = ("before", "after")
BN_SWITCHES = {"bn_stop_gradient": False, "bn_affine": True, "bn_noise": False}


@dataclasses.dataclass(frozen=True)
class MLPConfig:
    """Static structure of the MLP. Changing any field changes the compiled program.

    `init_std` is the weight std for `init="gaussian"` (the paper's "small random Gaussian
    values") and a gain on the fan-based std for lecun / glorot / he. It is the default for
    `init`; pass `numbers={"init_std": ...}` to `init` to make it a traced number (sweeps vmap
    over it). The BN ablation switches `bn_stop_gradient`, `bn_affine` and `bn_noise` are the
    common config fields of the same names (`models.common_fields`).
    """
    input_size: int = 784
    widths: tuple[int, ...] = (100, 100, 100)
    activation: str = "sigmoid"
    norm: str = "none"
    init: str = "gaussian"
    init_std: float = 0.1
    num_classes: int = 10
    bn_momentum: float = 0.99
    bn_epsilon: float = 1e-5
    bn_stop_gradient: bool = False
    bn_affine: bool = True
    bn_noise: bool = False
    # Multiplies the initial weights of the hidden layers (not the output layer's): a network
    # whose BN-fed weights start a times larger computes the same function (IS Sec. 3.3).
    hidden_scale: float = 1.0
    # Where BN sits: "before" the nonlinearity, on W u (the paper's choice, Sec. 3.2), or
    # "after" it, on the layer's output g(W u + b), i.e. on the next layer's input u.
    bn_position: str = "before"
    # The spread BN divides by: "l2" (the std: BN) or "l1" / "linf" (mean / largest absolute
    # deviation: the lp normalizations of Santurkar et al. 2018, Sec. 3.3).
    bn_norm_p: str = "l2"
    # 0: BN standardizes each unit on its own. g > 0: ZCA-whitens groups of g units instead
    # (decorrelated BN, `bn_experiments.whitening`); g >= the width whitens the whole layer.
    bn_whiten_group: int = 0
    # Inverted dropout on every hidden layer's output in training (0: none), a regularizer BN is
    # said to make unnecessary (IS Sec. 3.4, 4.2.1).
    dropout: float = 0.0
    # Set by bn_experiments.data_parallel (not a config field): the mapped axis over which BN
    # averages its batch moments, i.e. statistics synchronized across devices.
    bn_axis_name: str | None = None

    def __post_init__(self):
        for field, value, allowed in (("activation", self.activation, ACTIVATIONS),
                                      ("norm", self.norm, NORMS), ("init", self.init, INITS)):
            if value not in allowed:
                raise ValueError(f"model.{field}={value!r} is unknown; use one of {sorted(allowed)}")
        if self.bn_norm_p not in batchnorm.NORM_PS:
            raise ValueError(f"model.bn_norm_p={self.bn_norm_p!r} is unknown; use one of "
                             f"{list(batchnorm.NORM_PS)}")
        if self.bn_position not in BN_POSITIONS:
            raise ValueError(f"model.bn_position={self.bn_position!r} is unknown; use one of "
                             f"{list(BN_POSITIONS)}")
        if not self.widths or any(w <= 0 for w in self.widths):
            raise ValueError(f"model.widths={self.widths!r} must be a non-empty tuple of positive ints")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"model.dropout={self.dropout!r} must be in [0, 1) (0 = no dropout)")
        if self.bn_whiten_group:
            for w in self.widths:
                whitening.groups(w, self.bn_whiten_group)

    @property
    def use_bn(self) -> bool:
        return self.norm == "batchnorm"

    @property
    def whitens(self) -> bool:
        """BN's per-unit standardization is replaced by group ZCA whitening."""
        return self.use_bn and self.bn_whiten_group > 0

    @property
    def needs_rng(self) -> bool:
        """Training-mode `apply` wants a fresh `rng` every step (noisy BN, dropout)."""
        return self.bn_noise or self.dropout > 0


def fields() -> ml_collections.ConfigDict:
    """The MLP's own config fields (under `model.`), beside `models.common_fields()`."""
    f = ml_collections.ConfigDict()
    # Hidden layer widths (the paper: 3 x 100).
    f.widths = (100, 100, 100)
    # Multiplies the hidden layers' initial weights (not the output layer's): 1.0 leaves the init
    # as `init` and `init_std` give it.
    f.hidden_scale = 1.0
    # With BN: normalize "before" the nonlinearity (W u, the paper's choice) or "after" it
    # (the layer's output, which is the next layer's input u).
    f.bn_position = "before"
    # With BN: the spread it divides by, "l2" (the std: BN), "l1" or "linf" (lp normalization).
    f.bn_norm_p = "l2"
    # With BN: 0 standardizes each unit (BN); g > 0 ZCA-whitens groups of g units instead
    # (decorrelated BN); g >= the width whitens the whole layer.
    f.bn_whiten_group = 0
    # Dropout rate on every hidden layer's output in training (0: none).
    f.dropout = 0.0
    return f


def validate(model: dict) -> None:
    """Checks the model section (flat, without `model.`): widths, choices, tracked units."""
    widths = model.get("widths")
    models.check(isinstance(widths, list) and len(widths) > 0
                 and all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths),
                 "model.widths", tuple(widths) if isinstance(widths, list) else widths,
                 "must be a non-empty tuple of positive integers, e.g. (100, 100, 100)")
    for field, allowed in (("activation", ACTIVATIONS), ("norm", NORMS), ("init", INITS)):
        models.check_choice(model.get(field), f"model.{field}", allowed)
    models.check_tracked_units(model.get("tracked_units") or (), widths[-1])
    models.check_choice(model.get("bn_position", "before"), "model.bn_position", BN_POSITIONS)
    models.check_choice(model.get("bn_norm_p", "l2"), "model.bn_norm_p", batchnorm.NORM_PS)
    group = model.get("bn_whiten_group", 0)
    models.check(isinstance(group, int) and not isinstance(group, bool) and group >= 0
                 and (group == 0 or all(group >= w or w % group == 0 for w in widths)),
                 "model.bn_whiten_group", group, "must be 0 (BN) or a group size >= 1 that "
                 "divides every width in model.widths (or is at least the width: whole layer)")
    models.check(group == 0 or model.get("bn_norm_p", "l2") == "l2", "model.bn_norm_p",
                 model.get("bn_norm_p"), "must be 'l2' with model.bn_whiten_group > 0")
    rate = model.get("dropout", 0.0)
    models.check(isinstance(rate, (int, float)) and not isinstance(rate, bool) and 0 <= rate < 1,
                 "model.dropout", rate, "must be in [0, 1) (0 = no dropout)")
    scale = model.get("hidden_scale", 1.0)
    models.check(isinstance(scale, (int, float)) and not isinstance(scale, bool)
                 and math.isfinite(scale) and scale > 0, "model.hidden_scale", scale,
                 "must be a finite number > 0 (1.0: the init unchanged)")
    for field, default in BN_SWITCHES.items():
        value = model.get(field, default)
        models.check(isinstance(value, bool), f"model.{field}", value, "must be True or False")


def make_config(model: ml_collections.ConfigDict, input_shape: tuple) -> MLPConfig:
    """The static structure from a validated model section and the data's (H, W, C)."""
    return MLPConfig(
        input_size=math.prod(input_shape), widths=tuple(model.widths), activation=model.activation,
        norm=model.norm, init=model.init, init_std=float(model.init_std),
        bn_momentum=float(model.bn_momentum), bn_epsilon=float(model.bn_epsilon),
        hidden_scale=float(model.get("hidden_scale", 1.0)),
        bn_position=str(model.get("bn_position", "before")),
        bn_norm_p=str(model.get("bn_norm_p", "l2")),
        bn_whiten_group=int(model.get("bn_whiten_group", 0)),
        dropout=float(model.get("dropout", 0.0)),
        **{field: bool(model.get(field, default)) for field, default in BN_SWITCHES.items()})


def dropout(x: jax.Array, rate: float, rng: jax.Array) -> jax.Array:
    """Inverted dropout, as `flax.linen.Dropout`: keep with probability 1 - rate, scale up."""
    keep = jax.random.bernoulli(rng, 1.0 - rate, x.shape)
    return jax.lax.select(keep, x / (1.0 - rate), jnp.zeros_like(x))


_DROPOUT_SALT = 0x0D0  # dropout's keys are folded from the step's key, apart from BN noise's


def _weight_std(kind: str, fan_in: int, fan_out: int):
    return {"gaussian": 1.0, "lecun": 1 / math.sqrt(fan_in), "glorot": math.sqrt(2 / (fan_in + fan_out)),
            "he": math.sqrt(2 / fan_in)}[kind]


def init(key: jax.Array, cfg: MLPConfig, numbers: dict | None = None) -> tuple[dict, dict]:
    """Returns `(params, state)`; biases start at zero, BN at gamma=1, beta=0, mean=0, var=1.

    The init scale is `numbers["init_std"]` (a traced number in the trainer), else `cfg.init_std`.
    """
    gain = (numbers or {}).get("init_std", cfg.init_std)
    sizes = (cfg.input_size, *cfg.widths, cfg.num_classes)
    keys = jax.random.split(key, len(sizes) - 1)
    params, state = {"hidden": [], "output": {}}, {"bn": []}
    for i, (k, fan_in, fan_out) in enumerate(zip(keys, sizes[:-1], sizes[1:])):
        w = jax.random.normal(k, (fan_in, fan_out)) * (gain * _weight_std(cfg.init, fan_in, fan_out))
        if i < len(sizes) - 2 and cfg.hidden_scale != 1.0:
            w = w * cfg.hidden_scale
        layer = {"w": w}
        if i == len(sizes) - 2:
            params["output"] = {"w": w, "b": jnp.zeros(fan_out)}
        elif cfg.use_bn:
            bn_params, bn_state = (whitening.init(fan_out, cfg.bn_whiten_group) if cfg.whitens
                                   else batchnorm.init(fan_out))
            if cfg.bn_affine:
                layer["bn"] = bn_params
            if cfg.bn_position == "after":  # W u + b feeds the nonlinearity, BN follows it
                layer["b"] = jnp.zeros(fan_out)
            params["hidden"].append(layer)
            state["bn"].append(bn_state)
        else:
            layer["b"] = jnp.zeros(fan_out)
            params["hidden"].append(layer)
    return params, state


def _normalize(cfg: MLPConfig, params: dict, state: dict, z: jax.Array, *, train: bool,
               noisy: bool, rng) -> tuple[jax.Array, dict]:
    """BN (or, with `cfg.bn_whiten_group`, group whitening) of one layer's (batch, width) `z`."""
    common = dict(train=train, momentum=cfg.bn_momentum, epsilon=cfg.bn_epsilon,
                  stop_gradient_stats=cfg.bn_stop_gradient, axis_name=cfg.bn_axis_name,
                  use_scale=cfg.bn_affine, use_bias=cfg.bn_affine)
    if cfg.whitens:
        y, s = whitening.apply(params, state, z, **common)
        return (batchnorm.noisy_bn_hook(y, rng) if noisy else y), s
    return batchnorm.apply(params, state, z, output_hook=batchnorm.noisy_bn_hook if noisy else None,
                           rng=rng, norm_p=cfg.bn_norm_p, **common)


def apply(params: dict, state: dict, x: jax.Array, *, cfg: MLPConfig, train: bool,
          rng: jax.Array | None = None) -> tuple[jax.Array, dict, dict]:
    """Returns `(logits, new_state, intermediates)`; `x` is NHWC (or already flat).

    `intermediates["preacts"]`: each hidden layer's input to the nonlinearity, shape (batch, width).
    `intermediates["bn_inputs"]`: each BN layer's input: W u, or g(W u + b) with
    `bn_position="after"` (empty without BN).
    `rng` drives `cfg.bn_noise` and `cfg.dropout` in training (a fresh key per step); both are
    training-time perturbations, so evaluation runs without them, and `rng=None` turns them off
    (population statistics, probes). Without BN the same noise goes to the same place, on W u + b
    before the nonlinearity: the control arm "standard + noise" of their Sec. 2.1.
    """
    act = ACTIVATIONS[cfg.activation]
    h = x.reshape(x.shape[0], -1)
    preacts, bn_inputs, new_bn_state = [], [], []
    noisy = cfg.bn_noise and train and rng is not None
    rngs = jax.random.split(rng, len(params["hidden"])) if noisy else [None] * len(params["hidden"])
    drop = cfg.dropout > 0 and train and rng is not None
    drop_rngs = (jax.random.split(jax.random.fold_in(rng, _DROPOUT_SALT), len(params["hidden"]))
                 if drop else [None] * len(params["hidden"]))
    for i, layer in enumerate(params["hidden"]):
        z = h @ layer["w"]
        if cfg.use_bn and cfg.bn_position == "after":
            z = z + layer["b"]
            preacts.append(z)
            bn_inputs.append(act(z))
            h, s = _normalize(cfg, layer.get("bn", {}), state["bn"][i], bn_inputs[-1],
                              train=train, noisy=noisy, rng=rngs[i])
            new_bn_state.append(s)
            if drop:
                h = dropout(h, cfg.dropout, drop_rngs[i])
            continue
        if cfg.use_bn:
            bn_inputs.append(z)
            z, s = _normalize(cfg, layer.get("bn", {}), state["bn"][i], z, train=train,
                              noisy=noisy, rng=rngs[i])
            new_bn_state.append(s)
        else:
            z = z + layer["b"]
            if noisy:
                z = batchnorm.noisy_bn_hook(z, rngs[i])
        preacts.append(z)
        h = act(z)
        if drop:
            h = dropout(h, cfg.dropout, drop_rngs[i])
    logits = h @ params["output"]["w"] + params["output"]["b"]
    return logits, {"bn": new_bn_state}, {"preacts": preacts, "bn_inputs": bn_inputs}


FAMILY = models.ModelFamily(name="mlp", fields=fields, validate=validate,
                            make_config=make_config, init=init, apply=apply)

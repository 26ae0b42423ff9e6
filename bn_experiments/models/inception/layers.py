"""The building blocks of the Inception-style networks, as pure functions over a static plan.

A network is a `plan`: a tuple of ops, each a small frozen dataclass, so the whole structure is
hashable and lives in the model's static config (it picks the compiled program).

- `Conv(features, kernel, stride)`: a conv module, the unit the paper normalizes (Ioffe & Szegedy
  2015, Sec. 3.2): conv without bias -> BN over N, H, W per channel -> activation; without BN,
  conv + bias -> activation. `depth_multiplier > 0` makes it separable (the paper's first
  layer, Appendix): a depthwise k x k conv with that many filters per input channel (linear, no
  bias, no BN), then the 1 x 1 conv module above.
- `Pool(kind, window, stride)`: max or average pooling, "SAME" padding; the average counts only
  the pixels inside the image (as TF-slim's Inception does).
- `Mixed(branches)`: an Inception module: every branch (a chain of ops) reads the module's input,
  their outputs are concatenated on the channel axis. A stride-2 module is a `Mixed` whose
  branches end with stride 2.

`init` and `apply` walk the plan in one fixed order, so the conv modules form one flat list:
`params = {"convs": [{"w", "bn" | "b"[, "depthwise"]}, ...], "dense": {"w", "b"}}` and
`state = {"bn": [...]}` aligned with the BN inputs, which is the family contract of
`bn_experiments.models` (every nonlinearity's input in `preacts`, NHWC, every BN input in
`bn_inputs`). After the plan: global average pooling, dropout (training only), a dense
classifier.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Union

import jax
import jax.numpy as jnp
from jax import lax

from bn_experiments import batchnorm
from bn_experiments.models.mlp import ACTIVATIONS, _weight_std, dropout

_DIMS = ("NHWC", "HWIO", "NHWC")


@dataclasses.dataclass(frozen=True)
class Conv:
    features: int
    kernel: int = 1
    stride: int = 1
    depth_multiplier: int = 0  # > 0: separable (depthwise kernel x kernel, then 1 x 1)


@dataclasses.dataclass(frozen=True)
class Pool:
    kind: str  # "max" | "avg"
    window: int = 3
    stride: int = 1


@dataclasses.dataclass(frozen=True)
class Mixed:
    branches: tuple  # tuple of branches, each a tuple of ops


Op = Union[Conv, Pool, Mixed]


def conv_layers(plan: tuple, channels: int) -> tuple[list[tuple[Conv, int]], int]:
    """The conv modules of `plan` in execution order with their input channels, and the plan's
    output channels, for an input with `channels` channels."""
    layers: list[tuple[Conv, int]] = []

    def walk(ops, c):
        for op in ops:
            if isinstance(op, Conv):
                layers.append((op, c))
                c = op.features
            elif isinstance(op, Mixed):
                c = sum(walk(branch, c) for branch in op.branches)
        return c

    return layers, walk(plan, channels)


def count_params(params: dict) -> int:
    return sum(int(x.size) for x in jax.tree.leaves(params))


def init(key: jax.Array, plan: tuple, channels: int, num_classes: int, *, use_bn: bool,
         init_kind: str, gain, bn_affine: bool = True) -> tuple[dict, dict]:
    """`(params, state)`: weights Gaussian with the `init_kind` std (fans of a conv: kernel area
    times channels) times `gain`; biases 0; BN gamma 1, beta 0 (none when not `bn_affine`),
    running mean 0, var 1.

    All weights come from ONE standard normal draw, cut into the layers' shapes in plan order:
    XLA's CPU compiler takes seconds for each differently shaped `jax.random.normal`, and a
    network has dozens of shapes.
    """
    layers, out = conv_layers(plan, channels)
    shapes = []
    for op, c in layers:
        if op.depth_multiplier:
            shapes.append((op.kernel, op.kernel, 1, c * op.depth_multiplier))
            shapes.append((1, 1, c * op.depth_multiplier, op.features))
        else:
            shapes.append((op.kernel, op.kernel, c, op.features))
    shapes.append((1, 1, out, num_classes))
    sizes = [math.prod(shape) for shape in shapes]
    draws = jax.random.normal(key, (sum(sizes),))
    offsets = [sum(sizes[:i]) for i in range(len(sizes))]

    def weight(i):
        shape = shapes[i]
        area = shape[0] * shape[1]
        std = _weight_std(init_kind, area * shape[2], area * shape[3])
        return draws[offsets[i]:offsets[i] + sizes[i]].reshape(shape) * (gain * std)

    convs, bn_states, i = [], [], 0
    for op, _ in layers:
        layer = {}
        if op.depth_multiplier:
            layer["depthwise"], layer["w"] = weight(i), weight(i + 1)
            i += 2
        else:
            layer["w"] = weight(i)
            i += 1
        if use_bn:
            bn_params, s = batchnorm.init(op.features)
            if bn_affine:
                layer["bn"] = bn_params
            bn_states.append(s)
        else:
            layer["b"] = jnp.zeros(op.features)
        convs.append(layer)
    dense = {"w": weight(i)[0, 0], "b": jnp.zeros(num_classes)}
    return {"convs": convs, "dense": dense}, {"bn": bn_states}


def conv(x: jax.Array, w: jax.Array, stride: int = 1, groups: int = 1) -> jax.Array:
    """NHWC x HWIO convolution, "SAME" padding (as `flax.linen.Conv`).

    Ungrouped convs differentiate through `_conv`'s own VJP: the same gradients, bit for bit, as
    JAX's (tests/test_inception.py), but fast inside the trainer's `lax.scan`.
    """
    if groups == 1:
        return _conv(x, w, stride)
    return lax.conv_general_dilated(x, w, (stride, stride), "SAME", dimension_numbers=_DIMS,
                                    feature_group_count=groups)


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """Output size and (low, high) padding of a "SAME" conv along one axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return out, total // 2, total - total // 2


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv(x: jax.Array, w: jax.Array, stride: int) -> jax.Array:
    """A "SAME" NHWC x HWIO conv whose two gradient convs are NHWC x HWIO convs too.

    Why: JAX's transpose rules give the input gradient a kernel with its in/out axes swapped and
    the weight gradient batch and feature axes swapped. Outside a loop XLA's CPU compiler fixes
    their layouts with transposes and runs them on its fast conv kernels; inside a `lax.scan`
    body (the trainer's chunk of steps) the layouts are pinned, and the two convs fall back to a
    generic loop nest, 15-35x slower (jax-ml/jax#12868). Here the transposes are explicit and
    kept apart by `optimization_barrier`, so every conv XLA sees has the canonical layout.
    """
    return lax.conv_general_dilated(x, w, (stride, stride), "SAME", dimension_numbers=_DIMS)


def _conv_fwd(x, w, stride):
    return _conv(x, w, stride), (x, w)


def _conv_bwd(stride, res, g):
    x, w = res
    k = w.shape[0]
    (out_h, lo_h, hi_h), (out_w, lo_w, hi_w) = (_same_padding(x.shape[1], k, stride),
                                                _same_padding(x.shape[2], w.shape[1], stride))
    # Input gradient: the transposed conv, i.e. g (dilated by the stride) with the flipped kernel.
    w_t = lax.optimization_barrier(jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2))
    pad = ((k - 1 - lo_h, x.shape[1] - (out_h - 1) * stride - 1 + lo_h),
           (w.shape[1] - 1 - lo_w, x.shape[2] - (out_w - 1) * stride - 1 + lo_w))
    dx = lax.conv_general_dilated(g, w_t, (1, 1), pad, lhs_dilation=(stride, stride),
                                  dimension_numbers=_DIMS)
    # Weight gradient: dw[a, b, i, o] = sum over n, h, w of x_pad[n, s h + a, s w + b, i]
    # times g[n, h, w, o],
    # a conv of x (channels as batch, examples as features) with g as the kernel.
    x_t = lax.optimization_barrier(x.transpose(3, 1, 2, 0))
    g_t = lax.optimization_barrier(g.transpose(1, 2, 0, 3))
    dw = lax.conv_general_dilated(x_t, g_t, (1, 1), ((lo_h, hi_h), (lo_w, hi_w)),
                                  rhs_dilation=(stride, stride), dimension_numbers=_DIMS)
    return dx, dw[:, :k, :w.shape[1], :].transpose(1, 2, 0, 3)


_conv.defvjp(_conv_fwd, _conv_bwd)


def pool(x: jax.Array, op: Pool) -> jax.Array:
    """Max or average pooling with "SAME" padding; the average excludes the padding."""
    dims, strides = (1, op.window, op.window, 1), (1, op.stride, op.stride, 1)
    if op.kind == "max":
        return lax.reduce_window(x, -jnp.inf, lax.max, dims, strides, "SAME")
    total = lax.reduce_window(x, 0.0, lax.add, dims, strides, "SAME")
    count = lax.reduce_window(jnp.ones((1, *x.shape[1:3], 1), x.dtype), 0.0, lax.add, dims,
                              strides, "SAME")
    return total / count


def apply(params: dict, state: dict, x: jax.Array, plan: tuple, *, activation: str,
          use_bn: bool, train: bool, bn_momentum: float, bn_epsilon: float,
          dropout_rate: float = 0.0, bn_stop_gradient: bool = False, bn_affine: bool = True,
          bn_noise: bool = False, rng: jax.Array | None = None) -> tuple[jax.Array, dict, dict]:
    """`(logits, new_state, {"preacts", "bn_inputs"})` of the plan on NHWC `x`.

    The training-time perturbations, dropout before the classifier and `bn_noise` (Santurkar et
    al.'s noisy BN after every BN layer), need an `rng`: `rng=None` runs the network
    deterministically (evaluation, Algorithm 2, probes). `bn_stop_gradient` and `bn_affine` are
    the ablation switches of `batchnorm.apply`.
    """
    act = ACTIVATIONS[activation]
    preacts, bn_inputs, new_bn = [], [], []
    convs = iter(params["convs"])
    drop_rng, noise_rng = jax.random.split(rng) if rng is not None else (None, None)
    noisy = bn_noise and use_bn and train and rng is not None

    def conv_module(op: Conv, h):
        i = len(preacts)
        layer = next(convs)
        stride = op.stride
        if op.depth_multiplier:
            h = conv(h, layer["depthwise"], stride, groups=h.shape[-1])
            stride = 1
        z = conv(h, layer["w"], stride)
        if use_bn:
            bn_inputs.append(z)
            z, s = batchnorm.apply(
                layer.get("bn", {}), state["bn"][i], z, train=train, momentum=bn_momentum,
                epsilon=bn_epsilon, stop_gradient_stats=bn_stop_gradient, use_scale=bn_affine,
                use_bias=bn_affine, output_hook=batchnorm.noisy_bn_hook if noisy else None,
                rng=jax.random.fold_in(noise_rng, i) if noisy else None)
            new_bn.append(s)
        else:
            z = z + layer["b"]
        preacts.append(z)
        return act(z)

    def run(ops, h):
        for op in ops:
            if isinstance(op, Conv):
                h = conv_module(op, h)
            elif isinstance(op, Pool):
                h = pool(h, op)
            else:
                h = jnp.concatenate([run(branch, h) for branch in op.branches], axis=-1)
        return h

    h = run(plan, x).mean(axis=(1, 2))  # global average pooling
    if train and dropout_rate > 0 and rng is not None:
        h = dropout(h, dropout_rate, drop_rng)
    logits = h @ params["dense"]["w"] + params["dense"]["b"]
    return logits, {"bn": new_bn}, {"preacts": preacts, "bn_inputs": bn_inputs}

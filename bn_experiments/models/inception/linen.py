"""The same Inception networks built from `flax.linen` layers, as a Flax user would write them.

`InceptionLinen(plan, ...)` walks the same plan as `layers.apply` with `nn.Conv` (+ `nn.BatchNorm`)
modules, `nn.max_pool` / `nn.avg_pool`, `nn.Dropout` and `nn.Dense`. It exists to check the
functional models against Flax's layers (tests/test_inception.py: same numbers from the same
weights) and as the baseline of scripts/bench_inception.py; `to_linen` maps the functional
parameters and state onto its variables.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from bn_experiments.models.inception.layers import (
    ACTIVATIONS,
    Conv,
    Pool,
    conv_layers,
)


class InceptionLinen(nn.Module):
    """The network of a plan from Flax layers; `__call__(x, train, rng)` -> logits."""
    plan: tuple
    num_classes: int = 10
    activation: str = "relu"
    use_bn: bool = True
    dropout: float = 0.0
    bn_momentum: float = 0.99
    bn_epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        act, count = ACTIVATIONS[self.activation], [0]

        def conv_module(op: Conv, h):
            i = count[0]
            count[0] += 1
            stride = (op.stride, op.stride)
            if op.depth_multiplier:
                h = nn.Conv(h.shape[-1] * op.depth_multiplier, (op.kernel, op.kernel), stride,
                            feature_group_count=h.shape[-1], use_bias=False,
                            name=f"depthwise_{i}")(h)
                stride = (1, 1)
                kernel = (1, 1)
            else:
                kernel = (op.kernel, op.kernel)
            h = nn.Conv(op.features, kernel, stride, use_bias=not self.use_bn, name=f"conv_{i}")(h)
            if self.use_bn:
                h = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                                 epsilon=self.bn_epsilon, name=f"bn_{i}")(h)
            return act(h)

        def run(ops, h):
            for op in ops:
                if isinstance(op, Conv):
                    h = conv_module(op, h)
                elif isinstance(op, Pool):
                    window, strides = (op.window, op.window), (op.stride, op.stride)
                    h = (nn.max_pool(h, window, strides, "SAME") if op.kind == "max" else
                         nn.avg_pool(h, window, strides, "SAME", count_include_pad=False))
                else:
                    h = jnp.concatenate([run(b, h) for b in op.branches], axis=-1)
            return h

        h = run(self.plan, x).mean(axis=(1, 2))
        h = nn.Dropout(self.dropout, deterministic=not train or self.dropout == 0)(h)
        return nn.Dense(self.num_classes, name="dense")(h)


def to_linen(params: dict, state: dict, plan: tuple, channels: int) -> dict[str, Any]:
    """The functional `(params, state)` as `InceptionLinen`'s variables
    `{"params": ..., "batch_stats": ...}` (batch_stats empty without BN)."""
    p, stats = {"dense": {"kernel": params["dense"]["w"], "bias": params["dense"]["b"]}}, {}
    for i, ((op, _), layer) in enumerate(zip(conv_layers(plan, channels)[0], params["convs"])):
        p[f"conv_{i}"] = {"kernel": layer["w"], **({"bias": layer["b"]} if "b" in layer else {})}
        if "depthwise" in layer:
            p[f"depthwise_{i}"] = {"kernel": layer["depthwise"]}
        if "bn" in layer:
            p[f"bn_{i}"] = dict(layer["bn"])
            stats[f"bn_{i}"] = dict(state["bn"][i])
    return {"params": p, "batch_stats": stats}

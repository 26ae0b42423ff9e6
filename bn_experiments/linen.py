"""A `flax.linen` module over the functional core, for users who compose Flax modules.

Not a drop-in for `flax.linen.BatchNorm`: it normalizes over every axis but the LAST one (the
feature axis of dense layers and NHWC convolutions) and has no `axis`, `dtype`,
`axis_index_groups` or `force_float32_reductions` arguments. Where it overlaps it is the same:
parameter and `batch_stats` names, defaults, `use_running_average`, `momentum`, `epsilon`,
`axis_name`, `use_fast_variance`, `use_scale` / `use_bias`, `param_dtype`, `scale_init` /
`bias_init`, and bit-for-bit the same numbers (tests/test_linen.py). It adds the ablation switches
of `bn_experiments.batchnorm.apply`.
"""
from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp

from bn_experiments import batchnorm


class BatchNorm(nn.Module):
    """Batch Normalization (Ioffe & Szegedy 2015, Algorithm 1) as a linen module.

    Statistics live in the `batch_stats` collection as `mean` / `var`; as in Flax, they are not
    updated while the module is being initialized. The noise hook draws its rng from the
    `"noise"` rng stream.
    """
    use_running_average: bool | None = None
    momentum: float = 0.99
    epsilon: float = 1e-5
    axis_name: str | None = None
    use_fast_variance: bool = True
    use_scale: bool = True
    use_bias: bool = True
    param_dtype: Any = jnp.float32
    scale_init: Callable = nn.initializers.ones
    bias_init: Callable = nn.initializers.zeros
    stop_gradient_stats: bool = False
    output_hook: batchnorm.OutputHook | None = None

    @nn.compact
    def __call__(self, x, use_running_average: bool | None = None):
        use_running_average = nn.merge_param(
            "use_running_average", self.use_running_average, use_running_average)
        features = (x.shape[-1],)
        params = {}
        if self.use_scale:
            params["scale"] = self.param("scale", self.scale_init, features, self.param_dtype)
        if self.use_bias:
            params["bias"] = self.param("bias", self.bias_init, features, self.param_dtype)
        ra_mean = self.variable("batch_stats", "mean", jnp.zeros, features, jnp.float32)
        ra_var = self.variable("batch_stats", "var", jnp.ones, features, jnp.float32)
        initializing = self.is_initializing()
        y, new_state = batchnorm.apply(
            params, {"mean": ra_mean.value, "var": ra_var.value}, x,
            train=not use_running_average, momentum=self.momentum, epsilon=self.epsilon,
            axis_name=None if initializing else self.axis_name,
            use_fast_variance=self.use_fast_variance, stop_gradient_stats=self.stop_gradient_stats,
            use_scale=self.use_scale, use_bias=self.use_bias, output_hook=self.output_hook,
            rng=self.make_rng("noise") if self.output_hook is not None else None)
        if not use_running_average and not initializing:
            ra_mean.value, ra_var.value = new_state["mean"], new_state["var"]
        return y

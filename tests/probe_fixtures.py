"""Probe inputs for the MLP without the trainer, for the experiments' probe tests (no training).

`mlp_inputs` builds the `ProbeInputs` the trainer would pass at one evaluation: the MLP's
parameters and state, a batch of images and labels, the training-mode loss and the model's apply.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from bn_experiments import models
from bn_experiments.probe import ProbeInputs

MLP = models.get("mlp")


def mlp_config(**over):
    """The MLP's static config (784 inputs) with `over` replaced (norm, widths, activation, ...)."""
    return dataclasses.replace(MLP.make_config(models.default_config("mlp"), (28, 28, 1)), **over)


def mlp_inputs(n: int = 60, seed: int = 0, init_std: float = 0.1, **over) -> ProbeInputs:
    cfg = mlp_config(**over)
    params, state = MLP.init(jax.random.key(seed), cfg, {"init_std": init_std})
    x = jax.random.uniform(jax.random.key(seed + 1), (n, 28, 28, 1))
    y = jax.random.randint(jax.random.key(seed + 2), (n,), 0, 10)

    def apply(p, s, xx, train, rng=None):
        return MLP.apply(p, s, xx, cfg=cfg, train=train, rng=rng)

    def loss_fn(p, s, xx, yy):
        logits, new_state, inter = apply(p, s, xx, True)
        return optax.softmax_cross_entropy_with_integer_labels(logits, yy).mean(), (new_state, inter)

    return ProbeInputs(params, state, x, y, loss_fn, apply, jnp.float32(0.1), jnp.int32(0))


def run_probe(measure, inp: ProbeInputs) -> dict:
    """`measure(inp)` jitted over the parameters and state, as the trainer compiles it."""
    out = jax.jit(lambda p, s: measure(inp._replace(params=p, state=s)))(inp.params, inp.state)
    return jax.tree.map(lambda v: float(v), out)

"""Differentiable ZCA whitening of mini-batches: the normalization the paper decided against.

Ioffe & Szegedy (2015), Sec. 2-3: the ideal would be to whiten each layer's inputs (zero mean,
identity covariance) inside the gradient step, but that needs the batch covariance, its inverse
square root and their derivatives at every step, so the paper standardizes each feature on its own
instead (BN). This module is that ideal, as "decorrelated batch normalization" (Huang, Yang, Lang
& Deng 2018) makes it concrete: the centred batch is multiplied by Sigma^(-1/2) (ZCA: the whitening
that stays closest to the input), computed inside the gradient step by Newton-Schulz iterations
(`inverse_sqrt`, as IterNorm does: Huang, Zhou, Zhu, Liu & Shao 2019), followed by the
per-feature gamma and beta of BN.

`group_size` splits the features into groups of that many, each whitened on its own (Huang et al.
use 16): a group wider than the batch has a singular covariance, whose null directions the
whitening would blow up by 1 / sqrt(epsilon) as soon as a new batch has variance there. A group as
wide as the layer is full whitening.

The state keeps running averages of the mean and of each group's covariance, updated as BN's
(`momentum * running + (1 - momentum) * batch`); inference whitens with them.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

ITERATIONS = 15  # Newton-Schulz steps of `inverse_sqrt` (IterNorm uses 5: partial whitening)
Params = dict[str, jax.Array]
State = dict[str, jax.Array]


def groups(num_features: int, group_size: int) -> tuple[int, int]:
    """(number of groups, features per group); a group size of 0 or >= the width is one group."""
    if group_size <= 0 or group_size >= num_features:
        return 1, num_features
    if num_features % group_size:
        raise ValueError(f"whitening: {num_features} features do not split into groups of "
                         f"{group_size}; use a group size that divides the width")
    return num_features // group_size, group_size


def init(num_features: int, group_size: int, *, param_dtype: Any = jnp.float32
         ) -> tuple[Params, State]:
    """`({"scale": ones, "bias": zeros}, {"mean": zeros, "cov": identity per group})`."""
    g, size = groups(num_features, group_size)
    params = {"scale": jnp.ones((num_features,), param_dtype),
              "bias": jnp.zeros((num_features,), param_dtype)}
    state = {"mean": jnp.zeros((num_features,), jnp.float32),
             "cov": jnp.tile(jnp.eye(size, dtype=jnp.float32), (g, 1, 1))}
    return params, state


def inverse_sqrt(cov: jax.Array, epsilon: float, iterations: int = ITERATIONS) -> jax.Array:
    """(cov + epsilon I)^(-1/2) of each (..., n, n) symmetric positive definite matrix by the
    coupled Newton-Schulz iteration (Higham 2008; IterNorm, Huang et al. 2019, uses its uncoupled
    form): with S = (cov + eps I) / tr, Y_0 = S, Z_0 = I, T_k = (3 I - Z_k Y_k) / 2,
    Y_(k+1) = Y_k T_k, Z_(k+1) = T_k Z_k; Z_T / sqrt(tr) is the answer. Matrix products only, so
    the gradient flows through it like any other layer and XLA counts its every operation.

    It converges for every eigenvalue of S (all in (0, 1]), an eigenvalue l within 1% after about
    log_1.5(l^-1/2) + 3 iterations: 15 whiten every direction down to about 1e-4 of the trace.
    (An eigendecomposition would be exact, but `jnp.linalg.eigh` of a batch of matrices can
    deadlock XLA:CPU in jax 0.10: its LAPACK call waits on the thread pool it runs in. The
    uncoupled form overflows in float32 beyond about 10 iterations.)
    """
    eye = jnp.eye(cov.shape[-1], dtype=cov.dtype)
    sigma = cov + epsilon * eye
    trace = jnp.trace(sigma, axis1=-2, axis2=-1)[..., None, None]
    y = sigma / trace
    z = jnp.broadcast_to(eye, sigma.shape)
    for _ in range(iterations):
        t = 1.5 * eye - 0.5 * (z @ y)
        y, z = y @ t, t @ z
    return z * lax.rsqrt(trace)


def batch_moments(x: jax.Array, num_groups: int, *, axis_name: str | None = None
                  ) -> tuple[jax.Array, jax.Array]:
    """(mean (d,), biased covariance of each group (G, g, g)) of a (m, d) batch; with
    `axis_name`, the statistics of the batch pooled across devices."""
    mean = x.mean(0)
    if axis_name is not None:
        mean = lax.pmean(mean, axis_name)
    xc = (x - mean).reshape(x.shape[0], num_groups, -1)
    cov = jnp.einsum("mgi,mgj->gij", xc, xc) / x.shape[0]
    if axis_name is not None:
        cov = lax.pmean(cov, axis_name)
    return mean, cov


def apply(params: Params, state: State, x: jax.Array, *, train: bool, momentum: float = 0.99,
          epsilon: float = 1e-5, axis_name: str | None = None, stop_gradient_stats: bool = False,
          use_scale: bool = True, use_bias: bool = True) -> tuple[jax.Array, State]:
    """Whitens the (m, d) batch `x` group by group; returns `(y, new_state)` like
    `batchnorm.apply`: train=True uses (and differentiates through) the batch's mean and
    covariance and updates the running ones; train=False uses the running ones."""
    x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    num_groups = state["cov"].shape[0]
    if train:
        mean, cov = batch_moments(x, num_groups, axis_name=axis_name)
        new_state = {"mean": momentum * state["mean"] + (1 - momentum) * mean,
                     "cov": momentum * state["cov"] + (1 - momentum) * cov}
    else:
        mean, cov = state["mean"], state["cov"]
        new_state = state
    whiten = inverse_sqrt(cov, epsilon)
    if train and stop_gradient_stats:
        mean, whiten = lax.stop_gradient(mean), lax.stop_gradient(whiten)
    xc = (x - mean).reshape(x.shape[0], num_groups, -1)
    y = jnp.einsum("mgi,gij->mgj", xc, whiten).reshape(x.shape)
    if use_scale:
        y = y * params["scale"]
    if use_bias:
        y = y + params["bias"]
    return y, new_state

"""Functional Batch Normalization: pure functions over explicit params and state.

Implements Algorithm 1 of Ioffe & Szegedy (2015, "Batch Normalization: Accelerating Deep Network
Training by Reducing Internal Covariate Shift") with the running-average bookkeeping of
`flax.linen.BatchNorm`, and Algorithm 2 (population statistics for inference) as a separate step.

The feature axis is the last axis; statistics are taken over every other axis, so an NHWC
convolution gets one mean/variance per feature map over batch and space, as the paper's Sec. 3.2
prescribes. `apply` reproduces Flax's operation order and dtype promotion exactly, so its outputs
and running statistics are bit-for-bit equal to `flax.linen.BatchNorm` (see tests/test_batchnorm.py).

The ablation switches exist for the probes:
- `stop_gradient_stats`: the statistics are treated as constants by the gradient, the
  "normalization outside the gradient step" that the paper's Sec. 2 argues makes parameters blow up.
- `use_scale` / `use_bias`: drop gamma / beta (Sec. 3: gamma and beta restore representational power).
- `output_hook(y, rng)`: transforms BN's output after gamma/beta, e.g. `noisy_bn_hook`, the
  "noisy BN" of Santurkar et al. (2018, "How Does Batch Normalization Help Optimization?", Sec. 2.1).
- `norm_p`: "l2" is BN (divide by the batch std); "l1" and "linf" divide the centred batch by its
  mean absolute deviation or its largest absolute deviation instead, the lp normalizations of
  Santurkar et al. (Sec. 3.3). The running "var" then tracks the square of that spread, so
  inference and the state's shape are unchanged.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

Params = dict[str, jax.Array]
State = dict[str, jax.Array]
OutputHook = Callable[[jax.Array, jax.Array], jax.Array]


def init(num_features: int, *, param_dtype: Any = jnp.float32) -> tuple[Params, State]:
    """Returns `({"scale": ones, "bias": zeros}, {"mean": zeros, "var": ones})`.

    Running statistics are kept in float32 whatever `param_dtype` is, as Flax does.
    """
    params = {"scale": jnp.ones((num_features,), param_dtype),
              "bias": jnp.zeros((num_features,), param_dtype)}
    state = {"mean": jnp.zeros((num_features,), jnp.float32),
             "var": jnp.ones((num_features,), jnp.float32)}
    return params, state


def moments(x: jax.Array, *, axis_name: str | None = None,
            use_fast_variance: bool = True) -> tuple[jax.Array, jax.Array]:
    """Per-feature batch mean and biased (1/m) variance over all axes but the last.

    Computed in at least float32. With `axis_name`, moments are averaged across devices: one
    `pmean` of the stacked (E[x], E[x^2]) for the fast variance, two `pmean`s otherwise.
    The fast variance is max(0, E[x^2] - E[x]^2); the other is E[(x - E[x])^2].
    """
    x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    axes = tuple(range(x.ndim - 1))

    def mean(*xs):
        mus = tuple(v.mean(axes) for v in xs)
        if axis_name is None:
            return mus if len(xs) > 1 else mus[0]
        if len(xs) > 1:
            stacked = lax.pmean(jnp.stack(mus, axis=0), axis_name)
            return tuple(stacked[i] for i in range(len(xs)))
        return lax.pmean(mus[0], axis_name)

    if use_fast_variance:
        mu, mu2 = mean(x, lax.square(x))
        return mu, jnp.maximum(0.0, mu2 - lax.square(mu))
    mu = mean(x)
    return mu, mean(lax.square(x - jnp.expand_dims(mu, axes)))


def apply(params: Params, state: State, x: jax.Array, *, train: bool,
          momentum: float = 0.99, epsilon: float = 1e-5, axis_name: str | None = None,
          use_fast_variance: bool = True, stop_gradient_stats: bool = False,
          use_scale: bool = True, use_bias: bool = True,
          output_hook: OutputHook | None = None, rng: jax.Array | None = None,
          norm_p: str = "l2") -> tuple[jax.Array, State]:
    """Normalizes `x` over all axes but the last; returns `(y, new_state)`.

    train=True: normalize with the batch statistics (gradients flow through them unless
    `stop_gradient_stats`) and return the state updated as `m * running + (1 - m) * batch`.
    train=False: normalize with `state` and return it unchanged.
    `output_hook(y, rng)` is applied to the output (after gamma/beta) in both modes when given.
    """
    if train:
        if norm_p == "l2":
            mean, var = moments(x, axis_name=axis_name, use_fast_variance=use_fast_variance)
        else:
            mean, var = lp_moments(x, norm_p, axis_name=axis_name)
        if stop_gradient_stats:
            mean, var = lax.stop_gradient(mean), lax.stop_gradient(var)
        new_state = {"mean": momentum * state["mean"] + (1 - momentum) * mean,
                     "var": momentum * state["var"] + (1 - momentum) * var}
    else:
        mean, var = state["mean"], state["var"]
        new_state = state
    y = normalize(params, x, mean, var, epsilon=epsilon, use_scale=use_scale, use_bias=use_bias)
    if output_hook is not None:
        if rng is None:
            raise ValueError("batchnorm.apply: output_hook needs rng=<PRNG key>")
        y = output_hook(y, rng)
    return y, new_state


NORM_PS = ("l2", "l1", "linf")


def lp_moments(x: jax.Array, norm_p: str, *, axis_name: str | None = None
               ) -> tuple[jax.Array, jax.Array]:
    """(batch mean, spread^2) per feature: the spread is the mean absolute deviation from the
    batch mean ("l1") or the largest ("linf"); averaged (l1) or maxed (linf) across devices with
    `axis_name`."""
    x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    axes = tuple(range(x.ndim - 1))
    mean = x.mean(axes)
    if axis_name is not None:
        mean = lax.pmean(mean, axis_name)
    dev = jnp.abs(x - mean)
    if norm_p == "l1":
        spread = dev.mean(axes)
        spread = spread if axis_name is None else lax.pmean(spread, axis_name)
    elif norm_p == "linf":
        spread = dev.max(axes)
        spread = spread if axis_name is None else lax.pmax(spread, axis_name)
    else:
        raise ValueError(f"norm_p={norm_p!r} is unknown; use one of {list(NORM_PS)}")
    return mean, spread * spread


def normalize(params: Params, x: jax.Array, mean: jax.Array, var: jax.Array, *,
              epsilon: float = 1e-5, use_scale: bool = True, use_bias: bool = True) -> jax.Array:
    """`(x - mean) * (rsqrt(var + eps) * scale) + bias`, in Flax's order and result dtype."""
    y = x - mean
    mul = lax.rsqrt(var + epsilon)
    args = [x]
    if use_scale:
        mul = mul * params["scale"]
        args.append(params["scale"])
    y = y * mul
    if use_bias:
        y = y + params["bias"]
        args.append(params["bias"])
    return jnp.asarray(y, jnp.result_type(*args))


class Moments(NamedTuple):
    """Batch statistics of one BN layer: mean, biased variance, and m, the values per statistic."""
    mean: jax.Array
    var: jax.Array
    count: jax.Array


def batch_moments(x: jax.Array, *, use_fast_variance: bool = True) -> Moments:
    """`Moments` of one BN input, for `population_statistics`; m = prod(x.shape[:-1])."""
    mean, var = moments(x, use_fast_variance=use_fast_variance)
    count = 1
    for d in x.shape[:-1]:
        count *= d
    return Moments(mean, var, jnp.asarray(count, jnp.float32))


def population_statistics(moments_fn: Callable[[Any], Any], batches: Any) -> Any:
    """Algorithm 2 of Ioffe & Szegedy: population statistics from K training mini-batches.

    `moments_fn(batch)` runs the training-mode network on one mini-batch and returns a pytree
    whose leaves are `Moments` (one per BN layer, e.g. `batch_moments` of each layer's input).
    `batches` is a pytree of arrays with a leading axis of size K. Returns the same pytree with
    every `Moments` replaced by a BN state `{"mean": E[mu_B], "var": m/(m-1) * E[sigma2_B]}`,
    i.e. the unbiased variance estimate, usable as `state` in `apply(..., train=False)` in
    place of the moving averages.
    """
    is_moments = lambda t: isinstance(t, Moments)  # noqa: E731
    per_batch = lax.map(moments_fn, batches)
    averaged = jax.tree.map(lambda t: Moments(*(v.mean(0) for v in t)), per_batch,
                            is_leaf=is_moments)
    return jax.tree.map(
        lambda t: {"mean": t.mean, "var": t.count / (t.count - 1.0) * t.var},
        averaged, is_leaf=is_moments)


def noisy_bn_hook(y: jax.Array, rng: jax.Array, *, mean_range: float = 0.5,
                  std_range: tuple[float, float] = (1.0, 1.25), jitter: float = 0.1) -> jax.Array:
    """Santurkar et al. (2018, Sec. 2.1) "noisy BN": distribution shift injected after BN.

    Per unit, a step-level shift mu_t ~ U(-0.5, 0.5) and scale sigma_t ~ U(1, 1.25); per sample
    and unit, m ~ U(mu_t - 0.1, mu_t + 0.1) and s ~ N(sigma_t, 0.1); output s * y + m. Pass a
    fresh `rng` every step so the noise is time-varying.
    """
    k_mu, k_sigma, k_m, k_s = jax.random.split(rng, 4)
    unit_shape = y.shape[-1:]
    mu_t = jax.random.uniform(k_mu, unit_shape, minval=-mean_range, maxval=mean_range)
    sigma_t = jax.random.uniform(k_sigma, unit_shape, minval=std_range[0], maxval=std_range[1])
    m = mu_t + jax.random.uniform(k_m, y.shape, minval=-jitter, maxval=jitter)
    s = sigma_t + jitter * jax.random.normal(k_s, y.shape)
    return (s * y + m).astype(y.dtype)

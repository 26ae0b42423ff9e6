"""Per-column quantiles of a matrix, exact, fast on a CPU: the sort every evaluation does.

Every evaluation takes quantiles of each unit over many rows: the ICS quantiles of each hidden
layer's pre-activations over the test set (`bn_experiments.train`), Figure 1's probe percentiles
over 600 training-mode activations (`experiments/_fig1_measures.py`). `jnp.quantile` sorts the
floats with a total-order comparator (NaNs last, -0 equal to 0) that XLA:CPU calls once per
comparison; sorting the same order as int32 keys takes XLA's native integer comparison instead:
on the 2-core CPU a 2000 x 100 column sort drops from ~25 ms to ~5.5 ms. Those sorts had been most of the time a Figure 1 run spent outside its training steps
(results/bench/overhead_fig1_cpu.txt).

The values are `jnp.quantile`'s (linear interpolation, float32 positions and weights as it
computes them under jit), bit for bit, with one exception: where an order statistic is a zero,
it comes out as +0 (a -0 in the input is keyed as 0, as jnp's sort compares it, and its sign is
not recovered). Everything this package derives from these quantiles takes absolute values or
differences of them, which do not see the sign of a zero (tests/test_quantiles.py); quantiles that
are written out as they are (the tracked units' percentiles) keep `jnp.percentile`.
"""
from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

_FLIP = np.int32(0x7FFFFFFF)


def _order_keys(z: jax.Array) -> jax.Array:
    """int32 keys whose integer order is the float32 order of `z` (-0 and 0 one key, as jnp's
    sort compares them). For a negative float the magnitude bits are flipped, so a larger
    magnitude gives a smaller key; the map is its own inverse on the keys."""
    i = jax.lax.bitcast_convert_type(jnp.where(z == 0, jnp.zeros_like(z), z), jnp.int32)
    return jnp.where(i < 0, i ^ _FLIP, i)


def _from_keys(k: jax.Array) -> jax.Array:
    return jax.lax.bitcast_convert_type(jnp.where(k < 0, k ^ _FLIP, k), jnp.float32)


def columns(z: jax.Array, levels: Sequence[float] | np.ndarray) -> jax.Array:
    """(len(levels), columns): the quantiles at `levels` (in [0, 1]) of each column of the float32
    matrix `z` (rows, columns), linear interpolation. `jnp.quantile(z, levels, axis=0)` under
    jit, but for the sign of a zero (module docstring); a column with a NaN is all NaN, as there."""
    low, high, low_w, high_w = interpolation(levels, z.shape[0])
    # Sorted along the rows where they are: a transpose to sort along the minor axis is ~20%
    # faster, but it changes the layout XLA gives the matmul that produced `z`, and with it the
    # last bits of `z` (Figure 1's probe moved by 1e-7): `z` must be what jnp.quantile would see.
    keys = jax.lax.sort(_order_keys(z), dimension=0)  # each column sorted

    def order_statistics(at: np.ndarray) -> jax.Array:  # (len(levels), columns)
        return _from_keys(keys[jnp.asarray(at)])

    out = order_statistics(low) * low_w[:, None] + order_statistics(high) * high_w[:, None]
    return jnp.where(jnp.any(jnp.isnan(z), axis=0), jnp.nan, out)


def interpolation(levels: Sequence[float] | np.ndarray, n: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(low, high, low_w, high_w): the positions (int32) of the two order statistics of `n` sorted
    values that linear interpolation takes at each of `levels` (in [0, 1]), and their float32
    weights, exactly as jnp.quantile computes them under jit. Shared by `columns` (which sorts)
    and `train.tracked_percentiles` (which ranks)."""
    pos = np.asarray(levels, np.float32) * np.float32(n - 1)
    low = np.clip(np.floor(pos), 0, n - 1).astype(np.int32)
    high = np.clip(np.ceil(pos), 0, n - 1).astype(np.int32)
    high_w = pos - np.floor(pos)
    return low, high, np.float32(1) - high_w, high_w


def percentile_levels(percentiles: Sequence[float]) -> np.ndarray:
    """`percentiles` (0-100) as the float32 levels `jnp.percentile` passes to its quantiles under
    jit: XLA turns its q / 100 into q * float32(1/100)."""
    return np.asarray(percentiles, np.float32) * (np.float32(1) / np.float32(100))


def column_percentiles(z: jax.Array, percentiles: Sequence[float]) -> jax.Array:
    """`columns` at `percentiles` (0-100): `jnp.percentile(z, percentiles, axis=0)` under jit,
    but for the sign of a zero."""
    return columns(z, percentile_levels(percentiles))

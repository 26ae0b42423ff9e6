"""The measures behind Figure 1's claims (Ioffe & Szegedy 2015, Sec. 4.1): the probe compiled into
every evaluation, and the per-run numbers the claims pair by seed.

The probe follows the paper's panels (b, c), the 15th/50th/85th percentiles of the input to a
sigmoid of the last hidden layer during training, for ALL units of that layer at once. At every
evaluation it runs the network in training mode (each mini-batch normalized with its own
statistics, as an SGD step sees it) on `PROBE_BATCHES` fixed batches of `PROBE_BATCH` training
images, pools the last hidden layer's pre-activations (the sigmoid's input) over the batches, and
takes each unit's p15 / p50 / p85, at the current parameters and at the previous evaluation's.
Its outputs (curves `probe_<key>`; step 0 compares the run with itself, so 0 there):

- `median_shift`: mean over units of |p50_now - p50_prev| / (p85_prev - p15_prev): how far each
  unit's median moved since the previous evaluation, in units of its own 15-85 band;
- `band_change`: mean over units of |band_now - band_prev| / band_prev: the relative change of
  the 15-85 band;
- `abs_median`, `band_width`: mean over units of |p50_now| and of p85_now - p15_now, in the
  sigmoid's input units: the levels the paper's panels show (median near +1 without BN, band
  about 2.5 to 3.9 wide with BN).

Both shift measures are scale-free, so the arms compare although BN's gamma sets its own spread,
and both arms are measured over the same windows (the same evaluation schedule). A window's
length matters (a longer window moves more), so the claims average over windows of one length:
the evaluations after the initial transient `transient_end` (the first `TRANSIENT_FRACTION` of
training, where the early evaluations, 50, 100, 200 ... steps apart, sit); the transient is
reported on its own.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from bn_experiments import runs as runs_lib
from bn_experiments import quantiles, stats
from bn_experiments.probe import Probe, ProbeInputs

PROBE_BATCH = 60     # the paper's mini-batch: BN's statistics as the network sees them in training
PROBE_BATCHES = 10   # pooled: 600 values per unit for its percentiles
QUANTILES = (15.0, 50.0, 85.0)
BAND_FLOOR = 1e-6    # a unit with no spread at the previous evaluation: divide by this, not by 0
PROBE_KEYS = ("median_shift", "band_change", "abs_median", "band_width")

# The initial transient: evaluations in the first 2% of training (steps 1-1,000 of 50,000, the
# early evaluations at 50, 100, 200, 500 and 1,000), reported apart from the rest.
TRANSIENT_FRACTION = 0.02
# "Trains faster": the targets, fixed before any run. 20 test accuracies from 0.59 to 0.97, the range
# both arms of the paper's Fig. 1(a) cross (without BN ~0.75 at 4K steps, 0.972 at the end).
TARGETS = tuple(round(0.59 + 0.02 * i, 2) for i in range(20))
LATE_SHARE = 0.1     # "final" accuracy: the mean over the evaluations of the last 10% of training
EARLY_SHARE = 0.2    # the tracked unit's "early" swing: the first 20% of training
SMOOTH_STEPS = 500   # the per-step percentiles of one batch of 60 are smoothed over this many steps


# ------------------------------------------------------------------------------------- probe

def last_layer_percentiles(apply, params, state, x: jax.Array,
                           batches: int = PROBE_BATCHES) -> jax.Array:
    """(3, units): p15 / p50 / p85 of each unit of the last hidden layer's pre-activation, in
    training mode on `batches` equal batches of `x` (each normalized with its own statistics),
    pooled over the batches."""
    xs = x.reshape(batches, x.shape[0] // batches, *x.shape[1:])
    z = jax.vmap(lambda xb: apply(params, state, xb, True)[2]["preacts"][-1])(xs)
    z = z.reshape(-1, z.shape[-1])
    return quantiles.column_percentiles(z, QUANTILES)  # jnp.percentile's values, sorted faster


def shift(prev: jax.Array, now: jax.Array) -> dict[str, jax.Array]:
    """The probe's four outputs from the (3, units) percentiles at the previous and this evaluation."""
    band_prev = jnp.maximum(prev[2] - prev[0], BAND_FLOOR)
    band_now = now[2] - now[0]
    return {"median_shift": jnp.mean(jnp.abs(now[1] - prev[1]) / band_prev),
            "band_change": jnp.mean(jnp.abs(band_now - band_prev) / band_prev),
            "abs_median": jnp.mean(jnp.abs(now[1])),
            "band_width": jnp.mean(band_now)}


def measure(inputs: ProbeInputs) -> dict[str, jax.Array]:
    """The probe: `shift` between the previous evaluation's parameters and the current ones.

    The previous evaluation's percentiles are its memo (the same computation on the same batch,
    kept instead of recomputed: half the probe's time); at the first evaluation they are the
    current ones; recomputed at `prev_params` only when called without a memo."""
    now = last_layer_percentiles(inputs.apply, inputs.params, inputs.state, inputs.x)
    if inputs.prev_memo is None:
        prev = last_layer_percentiles(inputs.apply, inputs.prev_params, inputs.prev_state, inputs.x)
    else:
        prev = jnp.where(inputs.prev_step == inputs.step, now, inputs.prev_memo)
    return {**shift(prev, now), "memo": now}


PROBE = Probe(measure, batch_size=PROBE_BATCHES * PROBE_BATCH, memo=True)


# ---------------------------------------------------------------------------- per-run numbers

def budget(run: dict) -> int:
    """The run's configured number of steps (its last evaluated step when not recorded)."""
    steps = runs_lib.cfg(run, "steps")
    if steps:
        return int(steps)
    s, _ = runs_lib.curve(run, "test_accuracy")
    return int(s[-1]) if s else 0


def steps_to(run: dict, target: float) -> tuple[int | None, bool]:
    """(first evaluated step with test accuracy >= target, whether that is the end of training
    standing in for 'never'); (None, True) when the run has no accuracy curve."""
    hit = stats.first_reach(*runs_lib.curve(run, "test_accuracy"), target)
    return (hit, False) if hit is not None else (budget(run) or None, True)


def log2_speedup(bn: dict, no: dict, target: float) -> tuple[float | None, bool]:
    """(log2(steps to `target` without BN / with BN), whether a bound stands in for a step).

    A target one arm never reaches counts as reached at the end of its training: a bound that
    understates the gap, whichever arm misses (the sign stays right). None when neither arm
    reaches it. Step 0 counts as 1 step.
    """
    (s_bn, miss_bn), (s_no, miss_no) = steps_to(bn, target), steps_to(no, target)
    if s_bn is None or s_no is None or (miss_bn and miss_no):
        return None, False
    return math.log2(max(s_no, 1) / max(s_bn, 1)), miss_bn or miss_no


def late_accuracy(run: dict, share: float = LATE_SHARE) -> float | None:
    """Mean test accuracy over the evaluations of the last `share` of training (None: diverged)."""
    if run.get("diverged_at_step") is not None:
        return None
    steps, acc = runs_lib.curve(run, "test_accuracy")
    if not steps:
        return run["final"].get("test_accuracy")
    start = steps[-1] * (1 - share)
    vals = [a for s, a in zip(steps, acc) if s >= start and runs_lib.finite(a)]
    return float(np.mean(vals)) if vals else None


def transient_end(run: dict) -> float:
    """The last step of the initial transient (`TRANSIENT_FRACTION` of the run's steps)."""
    return TRANSIENT_FRACTION * budget(run)


def window_mean(run: dict, key: str, phase: str) -> float | None:
    """Mean of probe curve `probe_<key>` over the evaluations after step 0 in `phase`
    ("transient": up to `transient_end`; "after": beyond it; "late": the second half of
    training). None: no finite value."""
    steps, vals = runs_lib.curve(run, f"probe_{key}")
    end = transient_end(run)
    inside = {"transient": lambda s: s <= end, "after": lambda s: s > end,
              "late": lambda s: s > budget(run) / 2}[phase]
    keep = [v for s, v in zip(steps, vals) if s > 0 and runs_lib.finite(v) and inside(s)]
    return float(np.mean(keep)) if keep else None


def log2_ratio(no: float | None, bn: float | None) -> float | None:
    """log2(no / bn) of two positive numbers, else None."""
    ok = all(runs_lib.finite(v) and v > 0 for v in (no, bn))
    return math.log2(no / bn) if ok else None


def probe_at(run: dict, key: str, where: str) -> float | None:
    """`probe_<key>` at the first evaluation after step 0 (`where="start"`) or the mean over the
    last `LATE_SHARE` of training (`where="end"`)."""
    steps, vals = runs_lib.curve(run, f"probe_{key}")
    pts = [(s, v) for s, v in zip(steps, vals) if s > 0 and runs_lib.finite(v)]
    if not pts:
        return None
    if where == "start":
        return float(pts[0][1])
    start = pts[-1][0] * (1 - LATE_SHARE)
    return float(np.mean([v for s, v in pts if s >= start]))


# ------------------------------------------------------------------ the tracked unit's shape

def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average that ignores NaNs (a point with no finite neighbour stays NaN)."""
    values = np.asarray(values, dtype=np.float64)
    if window <= 1 or len(values) < 3:
        return values
    finite = np.isfinite(values)
    kernel = np.ones(window)
    total = np.convolve(np.where(finite, values, 0.0), kernel, mode="same")
    count = np.convolve(finite.astype(np.float64), kernel, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        out = total / count
    out[~finite] = np.nan
    return out


def smooth_span(run: dict) -> float:
    """Steps the per-step percentiles are smoothed over: `SMOOTH_STEPS`, or 1% of a shorter run."""
    return min(float(SMOOTH_STEPS), max(1.0, budget(run) / 100))


def smoothed_percentiles(run: dict) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
    """(steps, {"p15", "p50", "p85"}) of the tracked unit's per-step training-batch percentiles
    (curves `preact_p*`, perhaps thinned), smoothed over `smooth_span` steps; None when a curve
    is missing."""
    curves = {q: runs_lib.curve(run, f"preact_{q}") for q in ("p15", "p50", "p85")}
    steps = curves["p50"][0]
    if not steps or any(c[0] != steps for c in curves.values()):
        return None
    spacing = float(np.median(np.diff(steps))) if len(steps) > 1 else 1.0
    w = max(1, round(smooth_span(run) / max(spacing, 1.0)))
    vals = {q: smooth(np.asarray([np.nan if v is None else v for v in c[1]], float), w)
            for q, c in curves.items()}
    return np.asarray(steps, float), vals


def tracked_shape(run: dict) -> dict[str, float] | None:
    """The shape of the tracked unit's panel, as the paper describes it: the median's largest
    excursion from 0 in the first `EARLY_SHARE` of training (signed: a unit's sign is arbitrary,
    the weights' distribution being symmetric) and its step; p15 / p50 / p85 at the start (the
    first `smooth_span` steps) and at the end (the last `LATE_SHARE` of training)."""
    sp = smoothed_percentiles(run)
    if sp is None:
        return None
    steps, v = sp
    top = budget(run) or steps[-1]
    early = (steps <= EARLY_SHARE * top) & np.isfinite(v["p50"])
    if not early.any():
        return None
    i = np.flatnonzero(early)[np.argmax(np.abs(v["p50"][early]))]
    start = steps <= steps[0] + smooth_span(run)
    end = steps >= steps[-1] - LATE_SHARE * top
    at = lambda q, sel: float(np.nanmean(v[q][sel])) if np.isfinite(v[q][sel]).any() else math.nan
    return {"peak": float(v["p50"][i]), "peak_step": float(steps[i]),
            **{f"start_{q}": at(q, start) for q in v}, **{f"end_{q}": at(q, end) for q in v}}

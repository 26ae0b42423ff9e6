"""Sec. 1 of Ioffe & Szegedy (2015): the mini-batch gradient estimates the training-set gradient,
and the estimate improves as the batch grows.

The probe measures it at fixed parameters: at step 0 (init) and at every evaluation of a training
run, it computes the REFERENCE gradient over the whole training set (its fixed probe batch is all
`REFERENCE` = 60,000 training images of the official MNIST, in one pass: the 3 x 100 MLP's
forward and backward pass over 60,000 images takes about a second on a CPU) and, for every batch
size m in `SIZES` = 1, 2, 4, ..., 4096, the gradients of `REPEATS` (32, or N // m when fewer fit)
disjoint random mini-batches of m training images, drawn without replacement, as SGD draws them.
For each m it reports, over the whole parameter vector:

- `relerr_m<m>`: sqrt(mean_k ||g_k - g||^2) / ||g||, the root-mean-square relative error of the
  mini-batch gradients g_k against the reference g. Without BN, E||g_k - g||^2 = tr(Sigma) / m *
  (N - m) / (N - 1) exactly (Sigma the per-example gradient covariance), so the error falls like
  1/sqrt(m) (the finite-population factor moves the log-log slope by under 0.01 for m <= 4096 of
  N = 60,000);
- `cosine_m<m>`: the mean cosine similarity between g_k and g.

The claims fit the slope of log(relerr) on log(m) over `FIT_MIN` <= m <= 4096 at each evaluation,
per run, and compare it with -1/2. m = 1 and 2 are left out of the fit (for both arms, so the
arms are fitted alike) because BN over one or two examples is degenerate: x_hat = 0 for m = 1
(the hidden layers get no gradient at all) and +-1 for m = 2 whatever the input.

What is measured with BN. With BN the network's output for an example depends on the other
examples of its mini-batch, so a mini-batch gradient is the gradient of a different function for
every batch (the loss with that batch's statistics), not a sample of one fixed function's
per-example gradients. The reference here is the gradient of the training loss with BN's
statistics taken over the whole training set (the limit of the mini-batch function as m -> N; the
training-mode loss, with gradients through the statistics, on all 60,000 images at once). So
with BN the relative error has a bias part that shrinks like 1/m (the batch statistics' error)
on top of the 1/sqrt(m) sampling part, and the paper's statement is tested for what SGD with BN
actually follows. Without BN the reference is the ordinary full-set gradient.

The probe's batch (`probe.Probe.batch_size`) is fixed per experiment, so it needs a data source
with at least 60,000 training images: the official MNIST for committed runs, `synthetic:60000`
for the quick smoke run (the 8,000 embedded digits are refused with a one-line error).
"""
from __future__ import annotations

import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.lines import Line2D

from bn_experiments import plotting, stats
from bn_experiments import runs as runs_lib
from bn_experiments.experiments import Experiment, register
from bn_experiments.probe import Probe, ProbeInputs

SIZES = tuple(2 ** k for k in range(13))   # 1 .. 4096
REPEATS = 32                               # mini-batches per size (at most N // m)
REFERENCE = 60_000                         # the probe batch: the whole official MNIST training set
FIT_MIN = 4                                # smallest m in the slope fit (BN is degenerate below)
EXPECTED_SLOPE = -0.5
BAND = 0.1                                 # a fitted slope within -0.5 +- BAND follows 1/sqrt(m)
PAPER_BATCH = 60                           # the paper's MNIST batch, reported beside the fit
_KEY_SALT = 20_150_211                     # the probe's mini-batch draws: fold_in(key, step)
_MAP_BATCH = 8                             # mini-batch gradients vmapped this many at a time
FIGURE = "gradient_quality.png"


def _flat(tree) -> jax.Array:
    return jnp.concatenate([leaf.ravel() for leaf in jax.tree.leaves(tree)])


def gradient_errors(loss, params, x: jax.Array, y: jax.Array, key: jax.Array,
                    sizes=SIZES, repeats: int = REPEATS) -> dict:
    """Mini-batch gradients against the gradient over all of `x` (N examples).

    `loss(params, x, y) -> scalar`. For each m in `sizes`: K = min(repeats, N // m) disjoint
    random mini-batches of m examples (one permutation of N per m), each's gradient g_k, and the
    reference g = grad loss(params, x, y). Returns {"relerr_m<m>": sqrt(mean_k ||g_k - g||^2) /
    ||g||, "cosine_m<m>": mean_k cos(g_k, g)}.
    """
    n = x.shape[0]
    grad = jax.grad(loss)
    g = _flat(grad(params, x, y))
    g_norm = jnp.linalg.norm(g)
    out = {}
    for m in sizes:
        k = min(repeats, n // m)
        if k < 1:
            raise ValueError(f"batch size {m} is larger than the {n} reference examples")
        idx = jax.random.permutation(jax.random.fold_in(key, m), n)[:k * m].reshape(k, m)

        def one(i):
            gk = _flat(grad(params, x[i], y[i]))
            cos = gk @ g / jnp.maximum(jnp.linalg.norm(gk) * g_norm, 1e-30)
            return jnp.sum((gk - g) ** 2), cos

        sq, cos = jax.lax.map(one, idx, batch_size=min(_MAP_BATCH, k))
        out[f"relerr_m{m}"] = jnp.sqrt(jnp.mean(sq)) / g_norm
        out[f"cosine_m{m}"] = jnp.mean(cos)
    return out


def measure(inp: ProbeInputs) -> dict:
    """`gradient_errors` on the probe batch (the whole training set), training-mode loss."""
    def loss(params, x, y):
        return inp.loss_fn(params, inp.state, x, y)[0]
    key = jax.random.fold_in(jax.random.key(_KEY_SALT), inp.step)
    return gradient_errors(loss, inp.params, inp.x, inp.y, key, SIZES, REPEATS)


# ------------------------------------------------------------------------------------ claims

def fit_slope(sizes, errors) -> float | None:
    """Least-squares slope of log(error) on log(m) over FIT_MIN <= m (None: too few points)."""
    pts = [(math.log(m), math.log(e)) for m, e in zip(sizes, errors)
           if m >= FIT_MIN and e is not None and math.isfinite(e) and e > 0]
    if len(pts) < 3:
        return None
    return float(np.polyfit([p[0] for p in pts], [p[1] for p in pts], 1)[0])


def _curve_values(run: dict, key: str) -> dict[int, float]:
    steps, vals = runs_lib.curve(run, f"probe_{key}")
    return {int(s): v for s, v in zip(steps, vals) if runs_lib.finite(v)}


def slopes(run: dict) -> dict[int, float]:
    """The fitted slope at each evaluation step of a run."""
    table = {m: _curve_values(run, f"relerr_m{m}") for m in SIZES}
    steps = sorted(set().union(*table.values()))
    out = {}
    for s in steps:
        slope = fit_slope(SIZES, [table[m].get(s) for m in SIZES])
        if slope is not None:
            out[s] = slope
    return out


def band_verdict(iv: stats.Interval) -> str:
    """The explicit rule of this experiment (see `RULE`)."""
    if iv.n < stats.MIN_SEEDS or iv.low is None:
        return stats.INCONCLUSIVE
    if EXPECTED_SLOPE - BAND <= iv.low and iv.high <= EXPECTED_SLOPE + BAND:
        return stats.REPRODUCED
    if iv.high < 0:
        return stats.PARTLY
    if iv.low > 0:
        return stats.NOT_REPRODUCED
    return stats.INCONCLUSIVE


RULE = (f"per seed, the slope of log(relative error) on log(m) fitted over m = {FIT_MIN}..{SIZES[-1]} "
        "at each evaluation, averaged over the evaluations (init included); 95% t-interval of that "
        f"mean over seeds. Reproduced when the interval lies inside [{EXPECTED_SLOPE - BAND:g}, "
        f"{EXPECTED_SLOPE + BAND:g}] (the error falls like 1/sqrt(m)); partly reproduced when it "
        "lies below zero but not inside that band (the error falls, at another rate); not "
        "reproduced when it lies above zero; inconclusive when it contains zero or fewer than "
        f"{stats.MIN_SEEDS} seeds ran.")


def _at(run: dict, key: str, step: int) -> float | None:
    return _curve_values(run, key).get(step)


def _arm_row(arm: dict[int, dict], norm: str) -> dict:
    per_seed = {s: slopes(r) for s, r in arm.items()}
    mean_slope = {s: float(np.mean(list(v.values()))) for s, v in per_seed.items() if v}
    iv = stats.interval(mean_slope.values())
    steps = sorted(set().union(*[set(v) for v in per_seed.values()]))
    first, last = (steps[0], steps[-1]) if steps else (0, 0)
    at = lambda step: [v.get(step) for v in per_seed.values()]  # noqa: E731
    near = min(SIZES, key=lambda m: abs(math.log(m / PAPER_BATCH)))
    err = lambda step: [_at(r, f"relerr_m{near}", step) for r in arm.values()]  # noqa: E731
    cos = lambda step: [_at(r, f"cosine_m{near}", step) for r in arm.values()]  # noqa: E731
    measured = (f"slope of log(relative error) on log(m), m = {FIT_MIN}..{SIZES[-1]}, mean over "
                f"evaluations {stats.fmt(iv)}; at init {stats.mean_std(at(first), 3)}, at step "
                f"{last:,} {stats.mean_std(at(last), 3)}. At m = {near} (nearest to the paper's "
                f"{PAPER_BATCH}): relative error {stats.mean_std(err(first), 3)} at init and "
                f"{stats.mean_std(err(last), 3)} at step {last:,}, cosine with the full-set "
                f"gradient {stats.mean_std(cos(first), 3)} and {stats.mean_std(cos(last), 3)}")
    if norm == runs_lib.BN:
        return runs_lib.row(
            "gradient_quality.bn_minibatch_gradient_error_inverse_sqrt_batch",
            "With BN, the mini-batch gradient (the gradient of a batch-dependent function) still "
            "approaches the training-set gradient as the batch grows, its error falling like "
            "1/sqrt(m)",
            "IS Sec. 1, Sec. 3", measured + ". Reference: the gradient with BN statistics over "
            "all 60,000 training images; each mini-batch gradient uses its own batch's statistics, "
            "so it is biased (O(1/m)) as well as noisy",
            "Sec. 1 states the estimate improves with the batch size; Sec. 3 notes that with BN an "
            "example's output depends on its mini-batch, so the mini-batch gradient is no longer "
            "a sample of one fixed function's gradient (no rate is given)",
            band_verdict(iv), FIGURE, stats.evidence(iv, RULE))
    return runs_lib.row(
        "gradient_quality.minibatch_gradient_error_inverse_sqrt_batch",
        "The mini-batch gradient estimates the training-set gradient, better as the batch grows: "
        "its relative error falls like 1/sqrt(m)",
        "IS Sec. 1", measured + " (network without BN; the reference is the exact gradient over "
        "all 60,000 training images)",
        "the gradient over a mini-batch is an estimate of the gradient over the training set, "
        "whose quality improves as the batch size increases (Sec. 1; 1/sqrt(m) is the standard "
        "rate for an average of m samples, which the paper does not state)",
        band_verdict(iv), FIGURE, stats.evidence(iv, RULE))


def claims(runs: list[dict]) -> list[dict]:
    """One row per arm (without BN: the paper's statement; with BN: what SGD with BN follows)."""
    pair = runs_lib.arms(runs)
    if pair is None:
        return []
    bn, no = pair
    return [_arm_row(no, runs_lib.NO_BN), _arm_row(bn, runs_lib.BN)]


# ----------------------------------------------------------------------------------- figures

def _nan(v: float | None) -> float:
    return np.nan if v is None else v


def _by_size(runs: list[dict], prefix: str, step: int) -> np.ndarray:
    """(runs, sizes): each run's value at `step` for every m (NaN where missing)."""
    return np.array([[_nan(_at(r, f"{prefix}_m{m}", step)) for m in SIZES] for r in runs],
                    dtype=np.float64)


def figures(doc: dict, workdir: pathlib.Path) -> list[pathlib.Path]:
    """Two panels against the batch size m (log axes): the relative error of the mini-batch
    gradient with the 1/sqrt(m) line, and its cosine with the full-set gradient; with and
    without BN, at init and at the last evaluation, mean over seeds with a +-1 std band."""
    runs = doc["runs"]
    steps = sorted({s for r in runs for s in _curve_values(r, "relerr_m1")})
    if not steps:
        return []
    shown = (steps[0], steps[-1])
    fig = plotting.new_figure(12.5, 5.4)
    axes = fig.subplots(1, 2)
    panels = (("relerr", "relative error ‖g_m − g‖ / ‖g‖ (rms)", True),
              ("cosine", "cosine(g_m, g)", False))
    x = np.asarray(SIZES, dtype=np.float64)
    for ax, (prefix, ylabel, logy) in zip(axes, panels):
        for norm in (runs_lib.NO_BN, runs_lib.BN):
            arm = runs_lib.select(runs, model__norm=norm)
            for (ls, marker), step in zip(plotting.LINE_STYLES, shown):
                vals = _by_size(arm, prefix, step)
                if not np.isfinite(vals).any():
                    continue
                mean = np.nanmean(vals, 0)
                std = np.nanstd(vals, 0, ddof=1) if len(vals) > 1 else np.zeros_like(mean)
                color = plotting.NORM_COLORS[norm]
                ax.plot(x, mean, color=color, linestyle=ls, marker=marker, markersize=3.5,
                        linewidth=1.6, zorder=3)
                plotting.seed_band(ax, x, mean, std, color, log=logy)
        if logy:
            anchor = np.nanmean(_by_size(runs_lib.select(runs, model__norm=runs_lib.NO_BN),
                                         "relerr", shown[0])[:, SIZES.index(64)])
            if np.isfinite(anchor):
                ax.plot(x, anchor * np.sqrt(64 / x), color="0.3", linestyle=":", linewidth=1.2,
                        zorder=2)
            ax.set_yscale("log")
            ax.text(2.6, 0.97, "BN over m = 2 examples:\nx̂ = ±1 whatever the input",
                    transform=ax.get_xaxis_transform(), fontsize=8, color="0.35", va="top")
        ax.axvline(FIT_MIN, color="0.75", linewidth=0.8)
        ax.set_xscale("log", base=2)
        plotting.style_plain_axes(ax, "mini-batch size m", ylabel)
    handles = [Line2D([], [], color=plotting.NORM_COLORS[n], linewidth=2,
                      label=plotting.NORM_LONG_LABELS[n]) for n in (runs_lib.NO_BN, runs_lib.BN)]
    handles += [Line2D([], [], color="0.3", linestyle=ls, marker=mk,
                       label="at init" if step == 0 else f"at step {step:,}")
                for (ls, mk), step in zip(plotting.LINE_STYLES, shown)]
    handles += [Line2D([], [], color="0.3", linestyle=":", label="∝ 1/√m"),
                Line2D([], [], color="0.75", label=f"fit from m = {FIT_MIN}"),
                plotting.seed_band_handle()]
    seeds = len({runs_lib.cfg(r, "seed") for r in runs})
    plotting.suptitle(fig, "Mini-batch gradient vs the gradient over all 60,000 training images "
                      "(Ioffe & Szegedy, Sec. 1), at fixed parameters; with BN the reference uses "
                      f"full-set statistics\n{plotting.shared_config_line(runs)}; {seeds} seeds")
    plotting.legend_below(fig, handles, max_cols=4)
    return [plotting.save_png(fig, pathlib.Path(workdir) / FIGURE)]


register(Experiment("gradient_quality", claims=claims, figures=figures,
                    probe=Probe(measure, batch_size=REFERENCE)))

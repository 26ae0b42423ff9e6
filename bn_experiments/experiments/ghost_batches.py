"""BN's mini-batch noise, dialled by the batch its statistics come from (ghost batches).

Ioffe & Szegedy (2015, Sec. 3.4) argue that BN regularizes: in training an example is normalized
with the statistics of the mini-batch it happens to be in, so the network no longer gives a
deterministic output for it, and this noise helps generalization. The size of the batch the
statistics come from is the dial: within one SGD batch of 512, "ghost batches" (Hoffer et al.
2017) normalize each slice of m examples with its own mean and variance, m = 512, 128, 32, 8. It
is also the question of data-parallel BN: per-device statistics on 512/m devices compute exactly
the ghost batches of size m (tests/test_data_parallel.py holds the two to 1e-5 on 8 emulated
devices), while synchronized statistics are those of the whole batch (m = 512). The paper's own
distributed training (Sec. 4.2) normalized per replica.

The probe, at every evaluation, on a fixed pool of training examples:

- `noise_m<m>`: how much one example's output depends on the batch it is in. The first 4,096
  examples of the probe batch are cut into batches of m in 4 random ways (training-mode BN with
  each batch's statistics, the raw model, not the run's own ghost setting); for each example and
  class, the standard deviation of its logit over the 4 batchings, averaged, divided by the
  spread of the logits between examples (their mean over batchings): a noise-to-signal ratio.
  0 exactly without BN. Measured at every m in every run, so the dial is read at fixed
  parameters as well as across trained networks. The companions come from a pool of 4,096, not
  from the whole training set: sampling without replacement lowers the spread of a batch's
  statistics by sqrt(1 - m/4096), about 6% at m = 512 and under 2% below, which the fitted
  slope barely feels (a pool of 512, tried first, gave exactly 0 at m = 512).
- `train_set_loss`, `train_set_accuracy`: inference-mode (running statistics) loss and accuracy
  on the 10,000 training examples of the probe batch, beside the test set's: the generalization
  gap is test loss minus training loss.

Claims (paired by seed; `bn_experiments.stats`):

1. `noise_shrinks_with_batch`: the noise falls as the batch grows, like 1/sqrt(m) for batch
   statistics: the slope of log2(noise) against log2(m), fitted per seed on the BN runs at the
   whole batch (m = 512 statistics in training), its interval over seeds.
2. `bn_narrows_generalization_gap`: the final gap without BN minus with BN at the paper-like
   ghost batch of 32 (IS Sec. 3.4: BN regularizes).
3. `smaller_statistics_batches_generalize_better`: final gap with statistics of the whole batch
   (synchronized, m = 512) minus with per-device statistics of 8 examples (m = 8, the noisiest),
   and the paired difference of final test accuracy (Hoffer et al. 2017; what per-replica BN
   buys in data-parallel training).
4. `per_device_statistics_train_as_fast`: steps to the target test accuracy, per-device
   statistics of 32 (16 devices' worth) against synchronized statistics of 512, as the paired
   log2 ratio, tested for non-inferiority: reproduced when the interval excludes per-device
   statistics needing more than 1.25x the steps.
"""
from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax
from matplotlib.lines import Line2D

from bn_experiments import models, plotting, stats
from bn_experiments import runs as runs_lib
from bn_experiments.experiments import Experiment, register
from bn_experiments.probe import Probe, ProbeInputs

SIZES = (8, 32, 128, 512)   # batch sizes the statistics come from, in the probe and the arms
POOL = 4096                 # examples whose outputs are measured in many batchings
BATCHINGS = 4               # random ways of cutting the pool into batches, per size
PROBE_EXAMPLES = 10_000     # training examples for the inference-mode training loss
PAPER_LIKE = 32             # the ghost batch closest to the paper's batch of 60
SLOWER_MARGIN = 1.25        # "as fast": per-device statistics need at most this many times the steps
FIGURE = "ghost_batches.png"


def noise_key(m: int) -> str:
    return f"noise_m{m}"


def batch_noise(apply_fn, x: jax.Array, m: int, key: jax.Array) -> jax.Array:
    """Noise-to-signal ratio of the outputs of the examples `x` (POOL of them) when each is
    normalized within a random batch of `m` (see the module docstring). `apply_fn(batch)` gives
    training-mode logits of one batch with that batch's statistics."""
    n = x.shape[0]

    def one_batching(k):
        perm = jax.random.permutation(k, n)
        batches = x[perm].reshape(n // m, m, *x.shape[1:])
        logits = jax.vmap(apply_fn)(batches).reshape(n, -1)
        return jnp.zeros_like(logits).at[perm].set(logits)  # back in the pool's order

    outs = jax.vmap(one_batching)(jax.random.split(key, BATCHINGS))  # (batchings, n, classes)
    noise = jnp.mean(jnp.std(outs, axis=0))
    signal = jnp.mean(jnp.std(jnp.mean(outs, axis=0), axis=0))
    return noise / signal


def train_set_fit(inp: ProbeInputs) -> dict:
    """Inference-mode (running statistics, no dropout) loss and accuracy on the probe's training
    examples: with the test set's, the generalization gap (`gap`)."""
    logits = inp.apply(inp.params, inp.state, inp.x, train=False)[0]
    return {"train_set_loss": jnp.mean(
                optax.softmax_cross_entropy_with_integer_labels(logits, inp.y)),
            "train_set_accuracy": jnp.mean(jnp.argmax(logits, -1) == inp.y)}


def measure(inp: ProbeInputs) -> dict:
    """Inference-mode training-set loss and accuracy; the output noise at every size in SIZES."""
    out = train_set_fit(inp)
    family = models.get("mlp")
    pool = inp.x[:POOL]

    def apply_fn(batch):
        return family.apply(inp.params, inp.state, batch, cfg=inp.model, train=True)[0]
    key = jax.random.PRNGKey(0)
    for m in SIZES:
        out[noise_key(m)] = (batch_noise(apply_fn, pool, m, jax.random.fold_in(key, m))
                             if inp.model.use_bn else jnp.zeros(()))
    return out


# ------------------------------------------------------------------------------------ reading

def statistics_batch(run: dict) -> int | None:
    """The number of examples BN's statistics come from in training (None: no BN)."""
    c = run["config"]
    if c.get("model.norm") != runs_lib.BN:
        return None
    return c["batch_size"] // c.get("data_parallel.ghost_batches", 1)


def arms(runs: list[dict]) -> dict:
    """Runs by arm ("none" or the statistics batch m) and seed."""
    out: dict = {}
    for r in runs:
        m = statistics_batch(r)
        out.setdefault("none" if m is None else m, {})[r["config"]["seed"]] = r
    return out


def last(run: dict, metric: str) -> float | None:
    _, values = runs_lib.curve(run, metric)
    values = [v for v in values if runs_lib.finite(v)]
    return float(values[-1]) if values else None


def gap(run: dict) -> float | None:
    """Final test loss minus final inference-mode training loss."""
    test, train = last(run, "test_loss"), last(run, "probe_train_set_loss")
    return None if test is None or train is None else test - train


def noise_slope(run: dict) -> float | None:
    """Slope of log2(noise) against log2(m), over the evaluations after step 0 (their mean)."""
    pts = [(np.log2(m), np.log2(run["final"].get(f"mean_probe_{noise_key(m)}") or np.nan))
           for m in SIZES]
    pts = [(a, b) for a, b in pts if np.isfinite(b)]
    if len(pts) < 2:
        return None
    return float(np.polyfit(*zip(*pts), 1)[0])


# ------------------------------------------------------------------------------------- claims

def _row(cid, claim, source, measured, paper, iv, rule) -> dict:
    return runs_lib.row(f"ghost_batches.{cid}", claim, source, measured, paper,
                        stats.verdict(iv), FIGURE, stats.evidence(iv, rule))


def _by_seed(arm: dict, f) -> dict:
    return {s: v for s, r in arm.items() if (v := f(r)) is not None}


def claims(runs: list[dict]) -> list[dict]:
    a = arms(runs)
    out = []
    full = max((k for k in a if k != "none"), default=None)
    if full is not None:
        slopes = _by_seed(a[full], noise_slope)
        iv = stats.interval(slopes.values())
        falls = stats.interval(-v for v in slopes.values())  # the claim: a negative slope
        noise = {m: stats.mean_std([r["final"].get(f"mean_probe_{noise_key(m)}")
                                    for r in a[full].values()], 3) for m in SIZES}
        out.append(_row(
            "noise_shrinks_with_batch",
            "BN makes an example's output depend on the other examples of its mini-batch, less "
            "so the larger the batch its statistics come from",
            "IS Sec. 3.4",
            f"noise-to-signal of an example's logits over {BATCHINGS} random batchings (BN, trained with "
            f"statistics of {full}): " + ", ".join(f"m={m}: {v}" for m, v in noise.items())
            + f"; slope of log2(noise) vs log2(m) {stats.fmt(iv)} (batch statistics: -0.5)",
            "In training an example is seen together with the other examples of its "
            "mini-batch, so the network no longer produces a deterministic value for it (Sec. "
            "3.4); no number given",
            falls,
            stats.rule_single("minus the slope of log2(noise) against log2(m) (each m's noise "
                              "the mean over the evaluations after step 0), one per seed",
                              expect_text="above zero (the noise falls as m grows)")))
    if "none" in a and PAPER_LIKE in a:
        iv = stats.paired(_by_seed(a["none"], gap), _by_seed(a[PAPER_LIKE], gap))
        out.append(_row(
            "bn_narrows_generalization_gap",
            f"BN regularizes: the gap between test and training loss is smaller with BN "
            f"(statistics of {PAPER_LIKE} examples) than without",
            "IS Sec. 3.4",
            f"final test loss minus inference-mode training loss: no BN "
            f"{stats.mean_std(_by_seed(a['none'], gap).values(), 3)}, BN "
            f"{stats.mean_std(_by_seed(a[PAPER_LIKE], gap).values(), 3)}; paired difference "
            f"(no BN - BN) {stats.fmt(iv)}",
            "BN regularizes the model; in some cases Dropout is no longer needed (Sec. 3.4); "
            "no number for MNIST",
            iv, stats.rule_single("final gap without BN minus with BN", expect_text="above zero")))
    small = min((k for k in a if k != "none"), default=None)
    if full is not None and small is not None and small != full:
        iv = stats.paired(_by_seed(a[full], gap), _by_seed(a[small], gap))
        acc = stats.paired(_by_seed(a[small], lambda r: last(r, "test_accuracy")),
                           _by_seed(a[full], lambda r: last(r, "test_accuracy")))
        out.append(_row(
            "smaller_statistics_batches_generalize_better",
            f"Per-device BN statistics of small batches ({small} examples) generalize better "
            f"than synchronized statistics of the whole batch ({full})",
            "IS Sec. 3.4; Hoffer et al. 2017",
            f"final gap: m={full} {stats.mean_std(_by_seed(a[full], gap).values(), 3)}, "
            f"m={small} {stats.mean_std(_by_seed(a[small], gap).values(), 3)}, paired "
            f"difference {stats.fmt(iv)}; final test accuracy m={small} minus m={full} "
            f"{stats.fmt(acc)}",
            "More noise, more regularization (Sec. 3.4); ghost batches of a large batch improve "
            "generalization (Hoffer et al. 2017); the paper's distributed training normalized "
            "per replica (Sec. 4.2)",
            iv, stats.rule_single(f"final gap with statistics of {full} minus with {small}",
                                  expect_text="above zero")))
    if full is not None and PAPER_LIKE in a and PAPER_LIKE != full:
        steps = lambda r: r["final"].get("steps_to_target")  # noqa: E731
        log2 = lambda arm: {s: float(np.log2(v)) for s, v in _by_seed(arm, steps).items()  # noqa: E731
                            if v and v > 0}
        sync, per_device = log2(a[full]), log2(a[PAPER_LIKE])
        diffs = [sync[s] - per_device[s] for s in sorted(set(sync) & set(per_device))]
        iv = stats.interval(diffs)
        margin = float(np.log2(SLOWER_MARGIN))
        shifted = stats.interval(d + margin for d in diffs)
        out.append(_row(
            "per_device_statistics_train_as_fast",
            f"Per-device BN statistics ({PAPER_LIKE} examples per device) train at least as "
            f"fast as statistics synchronized over the whole batch ({full})",
            "IS Sec. 4.2",
            f"log2 ratio of steps to the target test accuracy (synchronized / per device) "
            f"{stats.fmt(iv)}, i.e. per device takes {2 ** -iv.mean:.2f}x the steps"
            if iv.mean is not None else "no pair of runs reached the target",
            "Inception was trained with per-replica statistics (Sec. 4.2); no comparison given",
            shifted, stats.rule_single(
                f"log2 of steps to target, synchronized minus per device, plus log2 "
                f"{SLOWER_MARGIN:g} (a non-inferiority margin: per device at most "
                f"{SLOWER_MARGIN:g}x slower counts as as fast)", expect_text="above zero")))
    return out


# ------------------------------------------------------------------------------------ figures

def figures(doc: dict, workdir: pathlib.Path) -> list[pathlib.Path]:
    """Left: noise against the statistics batch m, for each trained arm (median over seeds,
    min-max band). Middle: test and training loss over training per arm. Right: final gap per
    arm, one dot per seed."""
    a = arms(doc["runs"])
    if not a:
        return []
    fig = plotting.new_figure(14.5, 4.8)
    ax_noise, ax_loss, ax_gap = fig.subplots(1, 3)
    labels = {k: ("no BN" if k == "none" else f"BN, statistics of {k}") for k in a}
    keys = sorted(a, key=lambda k: (k != "none", 0 if k == "none" else -k))
    bn_keys = [k for k in keys if k != "none"]
    colors = {"none": plotting.NORM_COLORS["none"], **{
        k: matplotlib.colormaps["viridis"](x)
        for k, x in zip(bn_keys, np.linspace(0.05, 0.8, max(len(bn_keys), 1)))}}
    anchor = None
    for k in keys:
        if k == "none":
            continue
        vals = np.array([[r["final"].get(f"mean_probe_{noise_key(m)}") or np.nan for m in SIZES]
                         for r in a[k].values()], float)
        ax_noise.plot(SIZES, np.nanmedian(vals, 0), marker="o", color=colors[k])
        anchor = np.nanmedian(vals, 0)[0] if anchor is None else anchor
        ax_noise.fill_between(SIZES, np.nanmin(vals, 0), np.nanmax(vals, 0), color=colors[k],
                              alpha=0.15, linewidth=0)
    if anchor is not None and np.isfinite(anchor):
        ref = np.array(SIZES, float)
        ax_noise.plot(ref, anchor * (ref / ref[0]) ** -0.5, color="0.5", linestyle=":")
    ax_noise.set_xscale("log", base=2)
    ax_noise.set_yscale("log")
    ax_noise.set_xlabel("batch the statistics come from (m)")
    ax_noise.set_ylabel("output noise / signal")
    ax_noise.set_title("an example's output across batchings")
    for k in keys:
        for metric, style in (("test_loss", "-"), ("probe_train_set_loss", "--")):
            curves = [runs_lib.curve(r, metric) for r in a[k].values()]
            curves = [c for c in curves if c[0]]
            if not curves:
                continue
            steps = np.asarray(curves[0][0])
            vals = np.array([[np.nan if v is None else v for v in c[1][:len(steps)]]
                             for c in curves if len(c[1]) >= len(steps)], float)
            ax_loss.plot(steps, np.nanmedian(vals, 0), color=colors[k], linestyle=style)
    ax_loss.set_yscale("log")
    plotting.style_step_axes(ax_loss, "training step", "loss (solid: test, dashed: training)")
    for i, k in enumerate(keys):
        g = [v for v in (_by_seed(a[k], gap)).values()]
        ax_gap.scatter([i] * len(g), g, color=colors[k], s=18, zorder=3)
        if g:
            ax_gap.hlines(np.median(g), i - 0.3, i + 0.3, color=colors[k])
    ax_gap.set_xticks(range(len(keys)), [("no BN" if k == "none" else f"m={k}") for k in keys])
    ax_gap.set_ylabel("final test loss − training loss")
    ax_gap.set_title("generalization gap (one dot per seed)")
    handles = [Line2D([], [], color=colors[k], linewidth=2, label=labels[k]) for k in keys]
    handles.append(Line2D([], [], color="0.5", linestyle=":", label="slope −1/2 (reference)"))
    seeds = len({r["config"]["seed"] for r in doc["runs"]})
    plotting.suptitle(fig, "BN's mini-batch noise and the batch its statistics come from (ghost "
                      "batches = per-device statistics)\n"
                      f"{plotting.shared_config_line(doc['runs'])}; {seeds} seeds")
    plotting.legend_below(fig, handles, max_cols=3)
    return [plotting.save_png(fig, pathlib.Path(workdir) / FIGURE)]


register(Experiment("ghost_batches", claims=claims, figures=figures,
                    probe=Probe(measure, batch_size=PROBE_EXAMPLES)))

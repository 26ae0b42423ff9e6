"""Inference with population statistics (Ioffe & Szegedy 2015, Sec. 3.1 and Algorithm 2).

In training, BN normalizes with the statistics of the mini-batch, so an example's output depends
on the other examples in its batch. For inference the paper wants an output that depends on the
input alone, and normalizes with population statistics instead: the mean over many training
mini-batches of their means, and the unbiased estimate m/(m-1) E[sigma_B^2] of the variance
(Algorithm 2). It also mentions moving averages, which track the same statistics while the
model trains, and which is what BN implementations keep (`flax.linen.BatchNorm`, this suite).
The claim under test is that the fixed statistics lose nothing: the network evaluated with them
is as accurate as with the statistics of mini-batches it was trained with.

The probe evaluates the run's current network on the evaluation split three ways, at every
evaluation: `batch` (training-mode BN over consecutive test mini-batches of the training batch
size, as in training), `running` (the moving averages the run keeps, momentum 0.99), and
`population` (Algorithm 2 over the probe's `POPULATION_EXAMPLES` training images split into
mini-batches of the training batch size). It records each accuracy and the share of test
examples on which two ways predict the same class.

Arms: Figure 1's 3 x 100 sigmoid MLP with BN, at batch 60 (the paper's MNIST batch) and batch 8
(where a mini-batch's statistics are noisy), 5 paired seeds each.

Claims (paired by seed, `bn_experiments.stats`), at the last evaluation, at each batch size:

1. `population_statistics_match_batch_statistics`: accuracy with population statistics at most
   `MARGIN` below accuracy with mini-batch statistics (non-inferiority: the fixed statistics
   lose nothing; being better is allowed).
2. `moving_averages_match_population_statistics`: the moving averages at most `MARGIN` below
   Algorithm 2.
"""
from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.lines import Line2D

from bn_experiments import batchnorm, plotting, stats
from bn_experiments import runs as runs_lib
from bn_experiments.experiments import Experiment, register
from bn_experiments.probe import Probe, ProbeInputs

POPULATION_EXAMPLES = 6_000   # training images for Algorithm 2: 100 batches of 60, 750 of 8
MODES = ("batch", "running", "population")
LABELS = {"batch": "mini-batch statistics (as in training)",
          "running": "moving averages (momentum 0.99)",
          "population": "population statistics (Algorithm 2)"}
COLORS = {"batch": plotting.OTHER_COLORS[0], "running": plotting.OTHER_COLORS[3],
          "population": plotting.NORM_COLORS["batchnorm"]}
MARGIN = 0.005  # "matches": within half a point of test accuracy
FIGURE = "population_inference.png"


def _accuracy(logits: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.mean(jnp.argmax(logits, -1) == y)


def measure(inp: ProbeInputs) -> dict:
    """Accuracy of the current network on the evaluation split under the three ways of
    normalizing, and the agreement of their predictions."""
    b = int(inp.batch_size or inp.x.shape[0])
    n = (inp.test_x.shape[0] // b) * b            # whole mini-batches of the test set
    x, y = inp.test_x[:n], inp.test_y[:n]
    running = inp.apply(inp.params, inp.state, x, train=False)[0]
    batches = x.reshape(n // b, b, *x.shape[1:])
    batch = jax.lax.map(lambda xb: inp.apply(inp.params, inp.state, xb, train=True)[0],
                        batches).reshape(n, -1)
    k = inp.x.shape[0] // b
    train_batches = inp.x[:k * b].reshape(k, b, *inp.x.shape[1:])

    def moments_fn(xb):
        inter = inp.apply(inp.params, inp.state, xb, train=True)[2]
        return {"bn": [batchnorm.batch_moments(z) for z in inter["bn_inputs"]]}
    population_state = {**inp.state, **batchnorm.population_statistics(moments_fn, train_batches)}
    population = inp.apply(inp.params, population_state, x, train=False)[0]
    pred = {m: jnp.argmax(v, -1) for m, v in
            (("batch", batch), ("running", running), ("population", population))}
    return {"acc_batch": _accuracy(batch, y), "acc_running": _accuracy(running, y),
            "acc_population": _accuracy(population, y),
            "agree_population_batch": jnp.mean(pred["population"] == pred["batch"]),
            "agree_population_running": jnp.mean(pred["population"] == pred["running"])}


PROBE = Probe(measure, batch_size=POPULATION_EXAMPLES)


def last(run: dict, key: str) -> float | None:
    _, values = runs_lib.curve(run, f"probe_{key}")
    return values[-1] if values and runs_lib.finite(values[-1]) else None


def by_batch(runs: list[dict]) -> dict[int, dict[int, dict]]:
    out: dict = {}
    for r in runs:
        if r["config"].get("model.norm") == runs_lib.BN:
            out.setdefault(int(r["config"]["batch_size"]), {})[r["config"]["seed"]] = r
    return dict(sorted(out.items(), reverse=True))


def non_inferior(a: dict, b: dict, margin: float) -> tuple[str, stats.Interval]:
    """Whether a is at most `margin` below b (by seed): "agree" when the paired interval of
    d + margin (d = a - b) lies above zero, "oppose" when below, "noise" otherwise; and the raw
    paired interval of d."""
    shifted = stats.paired({s: v + margin for s, v in a.items()}, b)
    raw = stats.paired(a, b)
    if shifted.n < stats.MIN_SEEDS:
        return "too_few_seeds", raw
    return {1: "agree", -1: "oppose", 0: "noise"}[shifted.side()], raw


def _verdict(outcomes: list[str]) -> str:
    firm = [o for o in outcomes if o in ("agree", "oppose")]
    if not firm:
        return stats.INCONCLUSIVE
    if "agree" in firm and "oppose" in firm:
        return stats.PARTLY
    if all(o == "agree" for o in outcomes):
        return stats.REPRODUCED
    if all(o == "oppose" for o in outcomes):
        return stats.NOT_REPRODUCED
    return stats.INCONCLUSIVE


def _rule(a: str, b: str) -> str:
    return (f"paired by seed at each batch size: d = test accuracy with {a} - with {b} at the "
            f"last evaluation; non-inferiority by the 95% t-interval of d + {MARGIN:g} (at least "
            f"{stats.MIN_SEEDS} seeds): a batch size agrees when it lies above zero ({a} at most "
            f"{MARGIN:g} below) and opposes when it lies below zero. "
            f"Reproduced when every batch size agrees; not reproduced when every one opposes; "
            f"partly reproduced when some agree and others oppose; inconclusive otherwise. "
            f"Effect: the mean d at the largest batch size.")


def _claim(arms: dict, a: str, b: str, cid: str, claim: str, paper: str) -> dict:
    outcomes, parts, effect, ci, seeds = [], [], None, None, 0
    for size, arm in arms.items():
        va = {s: v for s, r in arm.items() if (v := last(r, f"acc_{a}")) is not None}
        vb = {s: v for s, r in arm.items() if (v := last(r, f"acc_{b}")) is not None}
        outcome, raw = non_inferior(va, vb, MARGIN)
        outcomes.append(outcome)
        seeds = max(seeds, raw.n)
        if effect is None and raw.mean is not None:
            effect, ci = raw.mean, raw.ci95
        agree = [last(r, f"agree_population_{b if a == 'population' else a}")
                 for r in arm.values()]
        accs = ", ".join(f"{m} " + stats.mean_std([last(r, "acc_" + m) for r in arm.values()], 4)
                         for m in MODES)
        parts.append(f"batch {size}: {accs}; {a} - {b} {stats.fmt(raw)} "
                     f"({outcome.replace('_', ' ')}); same prediction on "
                     f"{stats.mean_std(agree, 4)} of the test examples")
    return runs_lib.row(
        f"population_inference.{cid}", claim, "IS Sec. 3.1, Algorithm 2",
        "test accuracy at the last evaluation (the test set in whole mini-batches): "
        + "; ".join(parts), paper, _verdict(outcomes), FIGURE,
        {"seeds": max(seeds, 1),
         "effect": None if effect is None else float(f"{effect:.6g}"),
         "ci95": None if ci is None else [float(f"{v:.6g}") for v in ci],
         "rule": _rule(LABELS[a], LABELS[b])})


def claims(runs: list[dict]) -> list[dict]:
    arms = by_batch(runs)
    if not arms:
        return []
    return [
        _claim(arms, "population", "batch", "population_statistics_match_batch_statistics",
               "Inference with population statistics (Algorithm 2) is as accurate as with the "
               "mini-batch statistics the network was trained with (or more)",
               "Sec. 3.1: once trained, normalize with population rather than mini-batch "
               "statistics, so the output depends on the input alone (Algorithm 2: E[mu_B], "
               "m/(m-1) E[sigma_B^2]); no accuracy cost is reported"),
        _claim(arms, "running", "population", "moving_averages_match_population_statistics",
               "Moving averages of the batch statistics serve inference as well as Algorithm 2's "
               "population statistics",
               "Sec. 3.1: moving averages track the model's accuracy as it trains; Algorithm 2 "
               "computes the population statistics after training"),
    ]


def figures(doc: dict, workdir: pathlib.Path) -> list[pathlib.Path]:
    """One panel per batch size: test accuracy over training under each way of normalizing,
    mean over seeds with a ± 1 std band."""
    arms = by_batch(doc["runs"])
    if not arms:
        return []
    fig = plotting.new_figure(6.5 * len(arms), 4.8)
    axes = np.atleast_1d(fig.subplots(1, len(arms)))
    for ax, (size, arm) in zip(axes, arms.items()):
        for mode in MODES:
            mc = plotting.mean_curve(list(arm.values()), f"probe_acc_{mode}")
            if mc is None:
                continue
            steps, mean, std, _ = mc
            keep = steps > 0
            ax.plot(steps[keep], mean[keep], color=COLORS[mode], marker="o", markersize=3)
            plotting.seed_band(ax, steps[keep], mean[keep], std[keep], COLORS[mode])
        ax.set_xscale("log")
        ax.set_ylim(0.5, 1.0)
        ax.set_title(f"batch {size}")
        plotting.style_plain_axes(ax, "training step", "test accuracy")
    handles = [Line2D([], [], color=COLORS[m], linewidth=2, label=LABELS[m]) for m in MODES]
    handles.append(plotting.seed_band_handle())
    seeds = len({r["config"]["seed"] for r in doc["runs"]})
    plotting.suptitle(fig, "BN at inference: population statistics vs mini-batch statistics "
                      "(IS Sec. 3.1, Algorithm 2)\n"
                      f"{plotting.shared_config_line(doc['runs'])}; {seeds} seeds")
    plotting.legend_below(fig, handles, max_cols=4)
    return [plotting.save_png(fig, pathlib.Path(workdir) / FIGURE)]


register(Experiment("population_inference", claims=claims, figures=figures, probe=PROBE))

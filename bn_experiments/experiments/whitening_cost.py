"""Why BN standardizes each unit instead of whitening the layer (Ioffe & Szegedy 2015, Sec. 2-3).

The paper's argument for its simplification, in two steps. Sec. 2: whitening each layer's inputs
inside the gradient step would need the covariance of the mini-batch, its inverse square root
and their derivatives at every step, which is expensive; so BN normalizes each scalar feature on
its own. Sec. 3: per-unit statistics are also what makes mini-batches usable, because a
mini-batch is usually smaller than the number of units to whiten and its joint covariance is then
singular. The later literature (Huang et al. 2018, "Decorrelated Batch Normalization") whitens
groups of units smaller than the batch and reports faster training than BN.

Arms, on Figure 1's 3 x 100 sigmoid MLP (batch 60, lr 0.5, 5 paired seeds): BN, group whitening
(`model.bn_whiten_group=20`: five groups of 20 units per layer, each ZCA-whitened from the batch,
`bn_experiments.whitening`), and full whitening (`model.bn_whiten_group=100`: the whole layer
from 60 examples, a covariance of rank at most 59); and, as the control of claim 2, full
whitening from batches of 200 (wider than the layer).

The probe measures the cost of a training step (forward and backward on one batch of the
config's size, the update left out) for the run's normalization at each width in `WIDTHS` (every
hidden layer that wide): the floating-point operations of the compiled program as XLA counts
them (`Compiled.cost_analysis()`), the same on every run and machine with the same jax. Wall-clock
times are in `scripts/bench_whitening.py` (results/bench), since a summary holds no timings.

Claims (paired by seed where seeds vary, `bn_experiments.stats`):

1. `full_whitening_is_expensive`: the step with the whole layer whitened costs at least
   `EXPENSIVE`x BN's at every width, and the ratio does not fall as the width grows.
2. `joint_covariance_needs_large_batches`: full whitening from batches smaller than the layer
   ends with lower test accuracy than BN (paired difference above zero).
3. `standardization_trains_as_well_as_whitening`: BN's final test accuracy at most `MARGIN` below
   group whitening's (non-inferiority), the paper's bet that the simplification costs little,
   against Huang et al.'s report of an advantage for whitening.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.lines import Line2D

from bn_experiments import models, plotting, stats
from bn_experiments import runs as runs_lib
from bn_experiments.experiments import Experiment, register
from bn_experiments.probe import Probe, ProbeInputs

WIDTHS = (100, 200, 400, 800, 1600)
ARMS = ("bn", "group", "full", "full_large_batch")
LABELS = {"bn": "BN (each unit standardized)", "group": "group whitening (groups of 20)",
          "full": "full whitening (whole layer), batch 60",
          "full_large_batch": "full whitening, batch 200 (wider than the layer)"}
COLORS = {"bn": plotting.NORM_COLORS["batchnorm"], "group": plotting.OTHER_COLORS[0],
          "full": plotting.OTHER_COLORS[3], "full_large_batch": plotting.OTHER_COLORS[4]}
EXPENSIVE = 2.0   # "expensive": a training step at least twice BN's
MARGIN = 0.01     # "as well": at most one point of test accuracy below group whitening
FIGURE = "whitening_cost.png"


def flops_key(width: int) -> str:
    return f"step_mflops_w{width}"


@functools.lru_cache(maxsize=None)
def step_flops(model_cfg, batch_size: int, width: int) -> float:
    """XLA's count of floating-point operations of one training step's forward and backward
    pass (loss and gradient with respect to every parameter, training-mode normalization) for
    the MLP `model_cfg` with every hidden layer `width` wide, on a batch of `batch_size`. A
    network that whitens whole layers does so at every width; groups keep their size.
    Lowered and compiled from shapes alone (nothing runs); NaN if the backend has no count."""
    family = models.get("mlp")
    group = model_cfg.bn_whiten_group
    if group >= max(model_cfg.widths):  # whole-layer whitening stays whole-layer at any width
        group = width
    cfg = dataclasses.replace(model_cfg, widths=(width,) * len(model_cfg.widths),
                              bn_whiten_group=group, bn_axis_name=None, bn_noise=False)
    params, state = jax.eval_shape(lambda k: family.init(k, cfg), jax.random.PRNGKey(0))
    x = jax.ShapeDtypeStruct((batch_size, cfg.input_size), jnp.float32)
    y = jax.ShapeDtypeStruct((batch_size,), jnp.int32)

    def loss(p, s, x, y):
        logits, _, _ = family.apply(p, s, x, cfg=cfg, train=True)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], 1))

    cost = jax.jit(jax.grad(loss)).lower(params, state, x, y).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = (cost or {}).get("flops")
    return float(flops) if flops is not None and flops >= 0 else math.nan


def measure(inp: ProbeInputs) -> dict:
    """The step cost (millions of operations) of this run's normalization at every width in
    `WIDTHS`: constants of the run's static structure, computed while the probe is traced."""
    batch = int(inp.x.shape[0])
    return {flops_key(w): jnp.float32(step_flops(inp.model, batch, w) / 1e6) for w in WIDTHS}


PROBE = Probe(measure)


def arm_of(run: dict) -> str | None:
    c = run["config"]
    if c.get("model.norm") != runs_lib.BN:
        return None
    group = c.get("model.bn_whiten_group", 0) or 0
    if group == 0:
        return "bn"
    width = max(c.get("model.widths") or [0])
    if group < width:
        return "group"
    return "full_large_batch" if (c.get("batch_size") or 0) > width else "full"


def by_arm(runs: list[dict]) -> dict[str, dict[int, dict]]:
    out: dict = {}
    for r in runs:
        if (arm := arm_of(r)) is not None:
            out.setdefault(arm, {})[r["config"]["seed"]] = r
    return out


def cost(run: dict, width: int) -> float | None:
    """The run's recorded step cost (MFLOP) at `width`, or None."""
    _, values = runs_lib.curve(run, "probe_" + flops_key(width))
    vals = [v for v in values if runs_lib.finite(v)]
    return vals[-1] if vals else None


def _arm_cost(arm: dict, width: int) -> float | None:
    vals = [c for r in arm.values() if (c := cost(r, width)) is not None]
    return vals[0] if vals and all(v == vals[0] for v in vals) else None


def _final(arm: dict) -> dict:
    """Final test accuracy per seed; a run that diverged counts as chance (0.1)."""
    out = {}
    for s, r in arm.items():
        v = r["final"].get("test_accuracy")
        out[s] = v if runs_lib.finite(v) else (0.1 if r.get("diverged_at_step") is not None
                                               else None)
    return {s: v for s, v in out.items() if v is not None}


def _steps(arm: dict) -> str:
    vals = [r["final"].get("steps_to_target") for r in arm.values()]
    reached = [v for v in vals if runs_lib.finite(v)]
    return (f"{stats.mean_std(reached, 3)} steps in {len(reached)} of {len(vals)} seeds"
            if reached else f"not reached in {len(vals)} seeds")


def late_train_loss(run: dict) -> float | None:
    """Mean training loss (training mode, batch statistics) over the last 10% of the steps."""
    steps, values = runs_lib.curve(run, "train_loss")
    if not steps:
        return None
    start = 0.9 * steps[-1]
    vals = [v for s, v in zip(steps, values) if s >= start and runs_lib.finite(v)]
    return float(np.mean(vals)) if vals else None


def _cost_claim(a: dict) -> dict | None:
    if "bn" not in a or "full" not in a:
        return None
    table = {arm: [_arm_cost(a[arm], w) for w in WIDTHS] for arm in ("bn", "group", "full")
             if arm in a}
    if any(v is None for v in table["bn"] + table["full"]):
        return None
    ratios = [f / b for f, b in zip(table["full"], table["bn"])]
    rising = all(r2 >= r1 * 0.999 for r1, r2 in zip(ratios, ratios[1:]))
    seeds = min(len(a["bn"]), len(a["full"]))
    verdict = (stats.INCONCLUSIVE if seeds < stats.MIN_SEEDS
               else stats.REPRODUCED if min(ratios) >= EXPENSIVE and rising
               else stats.NOT_REPRODUCED if max(ratios) < 1.2 else stats.PARTLY)
    parts = []
    for arm, vals in table.items():
        parts.append(f"{LABELS[arm]} " + ", ".join(
            f"{v:,.0f}" if v is not None else "n/a" for v in vals))
    group = table.get("group")
    group_text = ("; group whitening / BN " + ", ".join(
        f"{g / b:.2g}x" for g, b in zip(group, table["bn"]))) if group and None not in group else ""
    return runs_lib.row(
        "whitening_cost.full_whitening_is_expensive",
        "Whitening each layer inside the gradient step costs far more than BN's per-unit "
        "standardization", "IS Sec. 2",
        f"millions of floating-point operations of one training step (forward and backward, "
        f"batch {a['bn'][min(a['bn'])]['config'].get('batch_size')}, 3 hidden layers, XLA's "
        f"count of the compiled step) at widths {', '.join(map(str, WIDTHS))}: "
        + "; ".join(parts) + "; full whitening / BN "
        + ", ".join(f"{r:.3g}x" for r in ratios) + group_text
        + f" (identical in all {seeds} seeds: the count depends on the structure alone)",
        "Sec. 2: whitening inside the gradient step needs the covariance, its inverse square "
        "root and their derivatives at every step, which is expensive; hence Sec. 3's "
        "per-unit normalization", verdict, FIGURE,
        {"seeds": max(seeds, 1), "effect": float(f"{ratios[0]:.6g}"), "ci95": None,
         "rule": f"deterministic count (no interval): r(w) = operations of a training step with "
                 f"the whole layer whitened / with BN, at each width w. Reproduced when r >= "
                 f"{EXPENSIVE:g} at every width and r does not fall as the width grows; not "
                 f"reproduced when r < 1.2 at every width; partly reproduced otherwise; inconclusive with "
                 f"fewer than {stats.MIN_SEEDS} runs per arm. Effect: "
                 f"r at the smallest width ({WIDTHS[0]}, the paper's)."})


def claims(runs: list[dict]) -> list[dict]:
    a = by_arm(runs)
    rows = []
    if (row := _cost_claim(a)) is not None:
        rows.append(row)
    if "bn" not in a:
        return rows
    acc = {arm: _final(a[arm]) for arm in a}
    arms_text = "; ".join(f"{LABELS[arm]} {stats.mean_std(acc[arm].values(), 4)} "
                          f"(to the target: {_steps(a[arm])}; diverged in "
                          f"{sum(r.get('diverged_at_step') is not None for r in a[arm].values())})"
                          for arm in ARMS if arm in a)
    if "full" in a:
        iv = stats.paired(acc["bn"], acc["full"])
        control = ""
        if "full_large_batch" in a:
            big = a["full_large_batch"][min(a["full_large_batch"])]["config"].get("batch_size")
            control = (f". Control, the same whitening from batches of {big} (wider than the "
                       f"layer, so the covariances are not singular): final test accuracy minus "
                       f"that at batch 60 "
                       f"{stats.fmt(stats.paired(acc['full_large_batch'], acc['full']))}")
        rows.append(runs_lib.row(
            "whitening_cost.joint_covariance_needs_large_batches",
            "Whitening a layer from mini-batches smaller than its width fails (singular "
            "covariances); per-unit statistics do not need large batches", "IS Sec. 3",
            f"final test accuracy (a run that diverged counts as chance, 0.1): {arms_text}; "
            f"paired BN - full whitening {stats.fmt(iv)}. Training loss over the last 10% of "
            f"the steps (training mode, the batch's own statistics): " + ", ".join(
                f"{LABELS[arm]} {stats.mean_std([late_train_loss(r) for r in a[arm].values()], 3)}"
                for arm in ARMS if arm in a) + control,
            "Sec. 3: per-unit variances make mini-batches usable; joint covariances from a "
            "mini-batch smaller than the number of units would be singular and need "
            "regularization", stats.verdict(iv), FIGURE,
            stats.evidence(iv, stats.rule_single(
                "final test accuracy of BN - full whitening (batch 60, 100 units per layer)",
                expect_text="above zero"))))
    if "group" in a:
        iv = stats.paired({s: v + MARGIN for s, v in acc["bn"].items()}, acc["group"])
        raw = stats.paired(acc["bn"], acc["group"])
        rows.append(runs_lib.row(
            "whitening_cost.standardization_trains_as_well_as_whitening",
            "Per-unit standardization trains as well as whitening, so the simplification costs "
            "little", "IS Sec. 3; Huang et al. 2018",
            f"final test accuracy: {arms_text}; paired BN - group whitening {stats.fmt(raw)}",
            "Sec. 3: normalizing each unit speeds up convergence even when the units are not "
            "decorrelated; Huang et al. 2018 (decorrelated BN, groups of 16) report faster "
            "training and better accuracy than BN", stats.verdict(iv), FIGURE,
            stats.evidence(iv, stats.rule_single(
                f"(BN - group whitening) + {MARGIN:g} of the final test accuracy",
                expect_text=f"above zero (BN at most {MARGIN:g} below: non-inferiority)"))))
    return rows


def figures(doc: dict, workdir: pathlib.Path) -> list[pathlib.Path]:
    """Left: operations per training step against width, per arm (log-log). Right: test
    accuracy over training per arm, mean over seeds with a ± 1 std band."""
    a = by_arm(doc["runs"])
    if not a:
        return []
    fig = plotting.new_figure(13.0, 4.8)
    ax_cost, ax_acc = fig.subplots(1, 2)
    shown = [arm for arm in ARMS if arm in a]
    for arm in shown:
        vals = [_arm_cost(a[arm], w) for w in WIDTHS]
        pts = [(w, v) for w, v in zip(WIDTHS, vals) if v is not None]
        if pts and arm != "full_large_batch":  # costs are per batch of the config's 60
            ax_cost.plot(*zip(*pts), color=COLORS[arm], marker="o")
        plotting.mean_band(ax_acc, list(a[arm].values()), "test_accuracy", COLORS[arm],
                           step_floor=1, marker="o", markersize=3)
    ax_cost.set_xscale("log")
    ax_cost.set_yscale("log")
    ax_cost.set_xticks(WIDTHS, [str(w) for w in WIDTHS])
    plotting.style_plain_axes(ax_cost, "units per hidden layer",
                              "MFLOP per training step (XLA count)")
    ax_acc.set_xscale("log")
    ax_acc.set_ylim(0.0, 1.0)
    plotting.style_plain_axes(ax_acc, "training step (step 0 drawn at 1)", "test accuracy")
    handles = [Line2D([], [], color=COLORS[arm], linewidth=2, label=LABELS[arm])
               for arm in shown]
    handles.append(plotting.seed_band_handle())
    seeds = len({r["config"]["seed"] for r in doc["runs"]})
    plotting.suptitle(fig, "Whitening vs BN's per-unit standardization (IS Sec. 2-3)\n"
                      f"{plotting.shared_config_line(doc['runs'])}; {seeds} seeds")
    plotting.legend_below(fig, handles, max_cols=4)
    return [plotting.save_png(fig, pathlib.Path(workdir) / FIGURE)]


register(Experiment("whitening_cost", claims=claims, figures=figures, probe=PROBE))

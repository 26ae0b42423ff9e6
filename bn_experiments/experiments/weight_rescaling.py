"""Training from rescaled weights (Ioffe & Szegedy 2015, Sec. 3.3; configs/weight_rescaling.py).

The paper: with BN, back-propagation through a layer is unaffected by the scale of its
parameters, BN(Wu) = BN((aW)u), and larger weights get smaller gradients, so training "is more
resilient to the parameter scale". The experiment starts the same network (same seed, same draw)
with every hidden layer's initial weights multiplied by a in {0.1, 1, 10}
(`model.hidden_scale`; the output layer is left alone) and trains it with the same SGD, with and
without BN. At step 0 a BN network computes the same function for every a (up to BN's epsilon);
without BN a changes it. What happens next is the question: SGD moves aW by the gradient
(1/a) g, i.e. a relative step 1/a^2 as large, so BN's invariance of the function does not carry
over to the trajectory unless the learning rate is rescaled by a^2 (the "effective learning
rate" lr/||W||^2 of later work: van Laarhoven 2017; Hoffer et al. 2018).

Measures, paired by seed against a = 1:

- `trajectory_gap`: the mean over recorded steps of |log10 L(a) - log10 L(1)|, L the
  training-mode mini-batch loss (the same batches for every arm of a seed);
- the per-layer weight norms (the sweeps' probe, `probe_weight_norm_layer<l>`) and from them the
  effective learning rate lr / ||W_l||^2 of each hidden layer over training.

Claims:

1. `bn_output_independent_of_weight_scale_at_init`: the step-0 loss with a = 10 (and 0.1)
   differs from a = 1 by far less with BN than without (log10 of the ratio of the gaps).
2. `bn_training_resilient_to_weight_scale`: the trajectory gap (a = 10 and a = 0.1 against 1) is
   smaller with BN than without, over the two scales (`stats.verdict_over`).
"""
from __future__ import annotations

import pathlib

import matplotlib
import numpy as np
from matplotlib.lines import Line2D

from bn_experiments import plotting, stats, sweep_probes
from bn_experiments import runs as runs_lib
from bn_experiments.experiments import Experiment, register

SCALES = (0.1, 1.0, 10.0)
FIGURE = "weight_rescaling.png"


def arms(runs: list[dict]) -> dict:
    """{(norm, a): {seed: run}}."""
    out: dict = {}
    for r in runs:
        c = r["config"]
        out.setdefault((c["model.norm"], float(c.get("model.hidden_scale", 1.0))), {})[
            c["seed"]] = r
    return out


def _log_loss(run: dict) -> tuple[list, np.ndarray]:
    """log10 of the training-mode mini-batch loss at each recorded step: BN with the batch's
    statistics, on the same batches for every arm of a seed. (The test loss uses the running
    averages, which start at mean 0 and variance 1, so early evaluations would not normalize.)"""
    steps, values = runs_lib.curve(run, "train_loss")
    return steps, np.array([np.log10(v) if runs_lib.finite(v) and v > 0 else np.nan
                            for v in values])


def trajectory_gap(run: dict, reference: dict) -> float | None:
    """Mean over the common recorded steps of |log10 training loss - the reference's| (None: no
    overlap or a non-finite loss)."""
    s1, l1 = _log_loss(run)
    s0, l0 = _log_loss(reference)
    n = min(len(s1), len(s0))
    if n == 0 or list(s1[:n]) != list(s0[:n]):
        return None
    d = np.abs(l1[:n] - l0[:n])
    return float(np.mean(d)) if np.all(np.isfinite(d)) else None


def initial_gap(run: dict, reference: dict) -> float | None:
    """|log10 training loss at step 0 - the reference's|: the function at init, on the first
    batch, in training mode."""
    _, l1 = _log_loss(run)
    _, l0 = _log_loss(reference)
    return float(abs(l1[0] - l0[0])) if len(l1) and len(l0) and np.isfinite(l1[0] - l0[0]) \
        else None


def _gaps(a: dict, norm: str, scale: float, f) -> dict:
    ref, arm = a.get((norm, 1.0), {}), a.get((norm, scale), {})
    return {s: v for s in sorted(set(ref) & set(arm)) if (v := f(arm[s], ref[s])) is not None}


def _log10_ratio(no: dict, bn: dict) -> dict:
    """{seed: log10(no / bn)} where both are positive (an exact 0 with BN counts as 1e-12)."""
    return {s: float(np.log10(no[s] / max(bn[s], 1e-12))) for s in set(no) & set(bn)
            if no[s] > 0}


def claims(runs: list[dict]) -> list[dict]:
    a = arms(runs)
    scales = [x for x in SCALES if x != 1.0 and (runs_lib.BN, x) in a and (runs_lib.NO_BN, x) in a]
    if not scales or (runs_lib.BN, 1.0) not in a or (runs_lib.NO_BN, 1.0) not in a:
        return []
    out = []
    for cid, claim, f, what, paper in (
        ("bn_output_independent_of_weight_scale_at_init",
         "With BN the network computes the same function whatever the scale of its hidden "
         "weights", initial_gap, "|log10 training loss at step 0, a vs 1|",
         "BN(Wu) = BN((aW)u) (Sec. 3.3, an identity)"),
        ("bn_training_resilient_to_weight_scale",
         "With BN, training is resilient to the scale of the weights: the loss trajectory "
         "hardly depends on it", trajectory_gap,
         "mean over steps of |log10 training loss, a vs 1|",
         "Back-propagation through a BN layer is unaffected by the scale of its parameters; "
         "larger weights get smaller gradients, which stabilizes their growth (Sec. 3.3)"),
    ):
        ivs, texts = [], []
        for x in scales:
            bn, no = _gaps(a, runs_lib.BN, x, f), _gaps(a, runs_lib.NO_BN, x, f)
            iv = stats.paired({s: np.log10(max(v, 1e-12)) for s, v in no.items()},
                              {s: np.log10(max(v, 1e-12)) for s, v in bn.items()})
            ivs.append(iv)
            texts.append(f"a = {x:g}: BN {stats.mean_std(bn.values(), 3)}, no BN "
                         f"{stats.mean_std(no.values(), 3)}, log10 ratio (no BN / BN) "
                         f"{stats.fmt(iv)}")
        verdict, _ = stats.verdict_over(ivs)
        rule = stats.rule_over(f"log10 of ({what}) without BN minus with BN", "scale a",
                               expect_text="above zero (BN less affected by a)")
        out.append(runs_lib.row(f"weight_rescaling.{cid}", claim, "IS Sec. 3.3",
                                f"{what}: " + "; ".join(texts), paper, verdict, FIGURE,
                                stats.evidence_over(ivs, rule, seeds=max(iv.n for iv in ivs),
                                                    over="scales")))
    return out


# ------------------------------------------------------------------------------------ figures

def effective_lr(run: dict, layer: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(steps, lr / ||W_layer||^2) from the weight-norm probe."""
    c = plotting.read_curve(run, f"probe_weight_norm_layer{layer}")
    if c is None:
        return None
    return c[0], run["config"]["learning_rate"] / np.asarray(c[1], float) ** 2


def figures(doc: dict, workdir: pathlib.Path) -> list[pathlib.Path]:
    """Left, middle: the training-mode mini-batch loss over training for each a (median over seeds, min-max band),
    without and with BN. Right: the effective learning rate lr/||W_2||^2 of the second hidden
    layer for each a and arm."""
    a = arms(doc["runs"])
    if not a:
        return []
    fig = plotting.new_figure(15.0, 4.8)
    axes = fig.subplots(1, 3)
    colors = {x: matplotlib.colormaps["plasma"](v) for x, v in zip(SCALES, (0.1, 0.45, 0.8))}
    for ax, norm in zip(axes[:2], (runs_lib.NO_BN, runs_lib.BN)):
        for x in SCALES:
            curves = [plotting.read_curve(r, "train_loss") for r in a.get((norm, x), {}).values()]
            curves = [c for c in curves if c is not None]
            if not curves:
                continue
            steps = curves[0][0]
            raw = np.array([c[1][:len(steps)] for c in curves if len(c[1]) >= len(steps)], float)
            k = max(1, len(steps) // 50)  # a short running median keeps batch noise out of the way
            vals = np.array([[np.nanmedian(v[max(0, i - k):i + 1]) for i in range(len(v))]
                             for v in raw])
            ax.plot(np.maximum(steps, 1), np.nanmedian(vals, 0), color=colors[x])
            ax.fill_between(np.maximum(steps, 1), np.nanmin(vals, 0), np.nanmax(vals, 0),
                            color=colors[x], alpha=0.15, linewidth=0)
        ax.set_xscale("log")
        ax.set_yscale("log")
        plotting.style_plain_axes(ax, "training step (step 0 drawn at 1)",
                                  "training loss (mini-batch, running median)")
        ax.set_title(plotting.NORM_LONG_LABELS[norm])
    ax = axes[2]
    for norm, style in ((runs_lib.NO_BN, "--"), (runs_lib.BN, "-")):
        for x in SCALES:
            curves = [effective_lr(r, 2) for r in a.get((norm, x), {}).values()]
            curves = [c for c in curves if c is not None]
            if curves:
                ax.plot(np.maximum(curves[0][0], 1),
                        np.median([c[1][:len(curves[0][0])] for c in curves], 0),
                        color=colors[x], linestyle=style)
    ax.set_xscale("log")
    ax.set_yscale("log")
    plotting.style_plain_axes(ax, "training step", "lr / ||W||² (hidden layer 2)")
    ax.set_title("effective learning rate")
    handles = [Line2D([], [], color=colors[x], linewidth=2, label=f"hidden weights × {x:g}")
               for x in SCALES]
    handles += [Line2D([], [], color="0.3", linestyle="--", label="without BN (right panel)"),
                Line2D([], [], color="0.3", linestyle="-", label="with BN (right panel)")]
    seeds = len({r["config"]["seed"] for r in doc["runs"]})
    plotting.suptitle(fig, "Training from rescaled hidden weights (Ioffe & Szegedy, Sec. 3.3): "
                      "the same draw times a\n"
                      f"{plotting.shared_config_line(doc['runs'])}; {seeds} seeds; lines: "
                      "median, bands: min-max over seeds")
    plotting.legend_below(fig, handles, max_cols=5)
    return [plotting.save_png(fig, pathlib.Path(workdir) / FIGURE)]


register(Experiment("weight_rescaling", claims=claims, figures=figures, probe=sweep_probes.PROBE))

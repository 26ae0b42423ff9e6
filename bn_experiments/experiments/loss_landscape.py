"""Santurkar et al. (2018), Sec. 3: BN makes the loss landscape smoother along the gradient.

Santurkar, Tsipras, Ilyas & Madry argue that BN helps optimization not by reducing internal
covariate shift but by making the loss and its gradient change more gently along the direction
training moves in. At points along training they step along the gradient by [0.5, 4] x the
learning rate and record (their Fig. 4): the range of the loss over those steps, the "gradient
predictiveness" (the l2 distance between the gradient at the current point and the gradients
along that line) and the "effective beta-smoothness" (the largest gradient change divided by the
distance moved). With BN (VGG on CIFAR-10) all three are markedly smaller.

The probe does the same at every evaluation of a training run, on `BATCHES` mini-batches of
`BATCH` training images each (a fixed probe set split in parts: each part is one point of the
landscape, with BN's statistics over that mini-batch as in the gradient step). For each part, with
g the gradient of the training-mode loss L at the current parameters theta (every parameter, as
the SGD step moves them) and theta_c = theta - c * lr * g for c in `MULTIPLIERS`:

- `loss_range`: max_c L(theta_c) - min_c L(theta_c);
- `grad_change`: max_c ||g(theta_c) - g||  (gradient predictiveness; smaller = more predictive);
- `beta_smoothness`: max_c ||g(theta_c) - g|| / ||theta_c - theta||;

each averaged over the parts. The claim pairs seeds, with and without BN, in two phases of
training (the first and the second half of the evaluations after step 0), so each phase averages
(evaluations in it) x `BATCHES` points, and compares log10 of each measure. The raw l2 norms
depend on the parametrization (BN's network has other parameters than the plain one), exactly as
in the paper's measurements.
"""
from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.lines import Line2D

from bn_experiments import plotting, stats
from bn_experiments import runs as runs_lib
from bn_experiments.experiments import Experiment, register
from bn_experiments.probe import Probe, ProbeInputs

MULTIPLIERS = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0)
BATCH, BATCHES = 60, 5
MEASURES = ("loss_range", "grad_change", "beta_smoothness")
PHASES = ("early", "late")
FIGURE = "loss_landscape.png"


def _norm(tree) -> jax.Array:
    return jnp.sqrt(sum(jnp.sum(leaf ** 2) for leaf in jax.tree.leaves(tree)))


def along_gradient(loss_and_grad, params, lr, multipliers=MULTIPLIERS) -> dict:
    """The three measures of one mini-batch: `loss_and_grad(params) -> (loss, grads)`."""
    _, g = loss_and_grad(params)
    cs = jnp.asarray(multipliers, jnp.float32)

    def at(c):
        moved = jax.tree.map(lambda p, d: p - c * lr * d, params, g)
        loss, g_c = loss_and_grad(moved)
        change = _norm(jax.tree.map(jnp.subtract, g_c, g))
        return loss, change, change / _norm(jax.tree.map(jnp.subtract, moved, params))

    losses, changes, betas = jax.vmap(at)(cs)
    return {"loss_range": losses.max() - losses.min(), "grad_change": changes.max(),
            "beta_smoothness": betas.max()}


def measure(inp: ProbeInputs) -> dict:
    """The three measures averaged over the probe set's `BATCHES` mini-batches."""
    xs = inp.x.reshape(BATCHES, BATCH, *inp.x.shape[1:])
    ys = inp.y.reshape(BATCHES, BATCH)

    def one(x, y):
        def loss_and_grad(params):
            return jax.value_and_grad(lambda p: inp.loss_fn(p, inp.state, x, y)[0])(params)
        return along_gradient(loss_and_grad, inp.params, inp.learning_rate)

    return {k: v.mean() for k, v in jax.vmap(one)(xs, ys).items()}


# ------------------------------------------------------------------------------------ claims

def phase_mean(run: dict, measure_name: str, phase: str) -> float | None:
    """Mean of a measure over the first (`early`) or second (`late`) half of the evaluations after
    step 0 (None when that half has no finite value)."""
    steps, vals = runs_lib.curve(run, f"probe_{measure_name}")
    vals = [v for s, v in zip(steps, vals) if s > 0]
    half = len(vals) // 2
    part = [v for v in (vals[:half] if phase == "early" else vals[half:]) if runs_lib.finite(v)]
    return float(np.mean(part)) if part else None


def points_per_phase(runs: list[dict]) -> int:
    """Landscape points behind each phase mean: evaluations in the shorter half x mini-batches."""
    n = min((len([s for s in runs_lib.curve(r, "probe_loss_range")[0] if s > 0]) for r in runs),
            default=0)
    return (n // 2) * BATCHES


def _log(arm: dict, measure_name: str, phase: str) -> dict:
    out = {}
    for s, run in arm.items():
        v = phase_mean(run, measure_name, phase)
        if v is not None and v > 0:
            out[s] = float(np.log10(v))
    return out


ROWS = {
    "loss_range": ("smaller_loss_range", "With BN the loss varies less along the gradient "
                   "direction", "range of the loss"),
    "grad_change": ("more_predictive_gradients", "With BN the gradient changes less along the "
                    "gradient direction (more predictive gradients)",
                    "l2 change of the gradient (predictiveness)"),
    "beta_smoothness": ("smaller_effective_beta", "With BN the effective beta-smoothness along "
                        "the gradient direction is smaller", "effective beta-smoothness"),
}


def activations(runs: list[dict]) -> list[str | None]:
    """The runs' activations, the paper's sigmoid first (None: the runs do not record one)."""
    acts = runs_lib.values(runs, "model.activation")
    return sorted(acts, key=lambda a: (a != "sigmoid", repr(a)))


def phase_boundary(runs: list[dict]) -> float | None:
    """The step between the early and the late half of the evaluations (for the figure)."""
    steps = [s for s in runs_lib.curve(runs[0], "probe_loss_range")[0] if s > 0] if runs else []
    half = len(steps) // 2
    return (steps[half - 1] + steps[half]) / 2 if half else None


def _claim(runs: list[dict], measure_name: str) -> dict:
    cid, claim, what = ROWS[measure_name]
    intervals, parts, n = [], [], None
    for act in activations(runs):
        arms = runs_lib.arms(runs_lib.select(runs, model__activation=act))
        if arms is None:
            continue
        bn, no = arms
        n = min(len(bn), len(no)) if n is None else min(n, len(bn), len(no))
        for phase in PHASES:
            iv = stats.paired(_log(no, measure_name, phase), _log(bn, measure_name, phase))
            intervals.append(iv)
            val = lambda arm: stats.mean_std(  # noqa: E731
                [phase_mean(r, measure_name, phase) for r in arm.values()], 3)
            parts.append(f"{act or ''} {phase}: without BN {val(no)}, with BN {val(bn)}, paired "
                         f"log10 ratio {stats.fmt(iv, 2)}".strip())
    verdict, counts = stats.verdict_over(intervals)
    n = n or 0
    rule = stats.rule_over(f"log10 of the {what} without BN minus with BN, averaged over the "
                           "phase's evaluations and mini-batches",
                           "(activation, phase: early / late half) setting",
                           expect_text="above zero (smoother with BN)")
    measured = (f"{what} along the gradient ({MULTIPLIERS[0]:g} to {MULTIPLIERS[-1]:g} x lr), "
                f"mean over {points_per_phase(runs)} points per phase and run: "
                + "; ".join(parts) + stats.seeds_note(n, stats.MIN_SEEDS))
    paper = ("all three markedly smaller with BN, the gradient change up to ~100x early in "
             "training (ST Sec. 3.1, Fig. 4: VGG on CIFAR-10)")
    return runs_lib.row(f"loss_landscape.{cid}", claim, "ST Sec. 3", measured, paper, verdict,
                        FIGURE, stats.evidence_over(intervals, rule, seeds=n, over="settings"))


def claims(runs: list[dict]) -> list[dict]:
    """Three claim rows (loss range, gradient predictiveness, beta-smoothness), BN vs no BN."""
    if runs_lib.arms(runs) is None or not any("probe_loss_range" in r["curves"] for r in runs):
        return []
    return [_claim(runs, m) for m in MEASURES]


# ----------------------------------------------------------------------------------- figures

PANELS = (("loss_range", "range of the loss"),
          ("grad_change", "max ‖∇L(θ_c) − ∇L(θ)‖ (predictiveness)"),
          ("beta_smoothness", "effective β-smoothness"))


def figures(doc: dict, workdir: pathlib.Path) -> list[pathlib.Path]:
    """One figure as Santurkar et al.'s Fig. 4: a column per measure, a row per activation, each
    measure over training on a log axis, mean over seeds with a ± 1 std band, with and without
    BN."""
    runs = doc["runs"]
    if not any("probe_loss_range" in r["curves"] for r in runs):
        return []
    acts, boundary = activations(runs), phase_boundary(runs)
    fig = plotting.new_figure(13.5, 1.0 + 3.3 * len(acts))
    axes = np.atleast_2d(fig.subplots(len(acts), len(PANELS), squeeze=False))
    for row, act in zip(axes, acts):
        arm = runs_lib.select(runs, model__activation=act) if act is not None else runs
        for ax, (name, ylabel) in zip(row, PANELS):
            for norm in ("none", "batchnorm"):
                plotting.mean_band(ax, runs_lib.select(arm, model__norm=norm), f"probe_{name}",
                                   plotting.NORM_COLORS[norm], log=True, linewidth=1.6, zorder=3)
            if boundary is not None:
                ax.axvline(boundary, color="0.4", linestyle=":", linewidth=1)
            ax.set_yscale("log")
            plotting.style_step_axes(ax, "training step", ylabel)
            if act is not None:
                ax.set_title(act, fontsize=10)
    handles = [Line2D([], [], color=plotting.NORM_COLORS[n], linewidth=2,
                      label=plotting.NORM_LONG_LABELS[n]) for n in ("none", "batchnorm")]
    handles.append(plotting.seed_band_handle())
    handles.append(Line2D([], [], color="0.4", linestyle=":", label="early | late phase"))
    seeds = len({r["config"].get("seed") for r in runs})
    plotting.suptitle(fig, "Loss landscape along the gradient (Santurkar et al., Sec. 3): steps of "
                      f"{MULTIPLIERS[0]:g} to {MULTIPLIERS[-1]:g} x lr from the current point, "
                      f"{BATCHES} mini-batches of {BATCH} per evaluation\n"
                      f"{plotting.shared_config_line(runs)}; {seeds} seeds")
    plotting.legend_below(fig, handles, max_cols=4)
    return [plotting.save_png(fig, pathlib.Path(workdir) / FIGURE)]


register(Experiment("loss_landscape", claims=claims, figures=figures,
                    probe=Probe(measure, batch_size=BATCH * BATCHES)))

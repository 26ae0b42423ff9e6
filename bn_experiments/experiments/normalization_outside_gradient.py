"""Secs. 2 and 3 of Ioffe & Szegedy (2015): normalization must take part in the gradient step.

Sec. 2's argument: if a layer computes x_hat = x - E[x] with x = u + b, and the gradient step
ignores that E[x] depends on b, the update to b is undone by the normalization: the output and the
loss do not change, and b grows without bound while the loss stays flat ("with scaling too, the
model blows up"). Sec. 3 therefore lets the mini-batch statistics "fully participate in the
gradient backpropagation". Santurkar et al. do not dispute this one; it is the suite's check that
BN's gradient through its statistics matters.

Arms: BN, and BN whose batch mean and variance are constants to the gradient
(`model.bn_stop_gradient=True`, `batchnorm.apply(stop_gradient_stats=True)`); the forward pass is
the same, only the gradient differs. Both with and without gamma/beta (`model.bn_affine`): in
this MLP the layer's input to BN is z = W u (BN's beta replaces the bias), so what normalization
removes is the mean and scale of W u, and the parameter that can grow unseen is W. Without
gamma/beta nothing else can absorb a change the loss asks of a layer's scale or shift, which is
the paper's Sec. 2 situation (normalization, no learned affine map after it).

The probe measures, at every evaluation, for each BN layer l:
- `weight_norm`: ||W_l||_F, the weights feeding the BN layer (the paper's "b" and "scale");
- `input_mean`, `input_std`: rms over units of the batch mean and std of z = W_l u on the fixed
  probe batch: the shift and scale that normalization removes;
- `gamma_rms`, `beta_rms`: rms over units of BN's gamma and beta (runs with gamma/beta).

Claims: the training loss (claim 10: BN vs stop-gradient BN), and the growth of ||W_l|| over the
second half of training while the loss is flat (claim 8).
"""
from __future__ import annotations

import math
import pathlib

import jax.numpy as jnp
import numpy as np
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter

from bn_experiments import batchnorm, plotting, stats
from bn_experiments import runs as runs_lib
from bn_experiments.experiments import Experiment, register
from bn_experiments.probe import Probe, ProbeInputs

STOP, AFFINE = "model.bn_stop_gradient", "model.bn_affine"
CHANCE_LOSS = math.log(10)  # a diverged run counts as the loss of a uniform 10-way guess
FIGURE = "normalization_outside_gradient.png"
COLORS = {False: plotting.NORM_COLORS["batchnorm"], True: "#d1495b"}
LABELS = {False: "BN (statistics in the gradient)", True: "BN, statistics outside the gradient"}


def _rms(v: jnp.ndarray) -> jnp.ndarray:
    return jnp.sqrt(jnp.mean(v ** 2))


def measure(inp: ProbeInputs) -> dict:
    """Per BN layer: ||W||, the rms batch mean and std of W u, and the rms of gamma and beta."""
    _, _, inter = inp.apply(inp.params, inp.state, inp.x, True)
    out = {"weight_norm": [], "input_mean": [], "input_std": []}
    for layer, z in zip(inp.params["hidden"], inter["bn_inputs"]):
        mean, var = batchnorm.moments(z)
        out["weight_norm"].append(jnp.linalg.norm(layer["w"]))
        out["input_mean"].append(_rms(mean))
        out["input_std"].append(jnp.sqrt(jnp.mean(var)))
        if "bn" in layer:
            out.setdefault("gamma_rms", []).append(_rms(layer["bn"]["scale"]))
            out.setdefault("beta_rms", []).append(_rms(layer["bn"]["bias"]))
    return out


# ------------------------------------------------------------------------------------ claims

def arm(runs: list[dict], stop: bool, affine: bool) -> dict[int, dict]:
    return runs_lib.by_seed([r for r in runs if runs_lib.cfg(r, STOP, False) is stop
                             and runs_lib.cfg(r, AFFINE, True) is affine])


def final_loss(run: dict) -> float | None:
    """The final training loss; a diverged run counts as chance (ln 10)."""
    if run.get("diverged_at_step") is not None:
        return CHANCE_LOSS
    return run["final"].get("train_loss")


def layers(run: dict) -> list[int]:
    return sorted(int(k.rsplit("layer", 1)[1]) for k in run["curves"]
                  if k.startswith("probe_weight_norm_layer"))


def _finite_curve(run: dict, key: str) -> tuple[list, list]:
    steps, vals = runs_lib.curve(run, key)
    pairs = [(s, v) for s, v in zip(steps, vals) if runs_lib.finite(v)]
    return [s for s, _ in pairs], [v for _, v in pairs]


def late_growth(run: dict, key: str) -> float | None:
    """log(value at the last evaluation / value at the middle of training): growth over the
    second half (0: it stopped growing). None when the run did not reach the middle."""
    steps, vals = _finite_curve(run, key)
    total = runs_lib.cfg(run, "steps")
    if not steps or total is None or steps[-1] < total / 2:
        return None
    mid = min(range(len(steps)), key=lambda i: abs(steps[i] - total / 2))
    if vals[mid] <= 0 or vals[-1] <= 0 or mid == len(steps) - 1:
        return None
    return math.log(vals[-1] / vals[mid])


def loss_change(run: dict, half: int) -> float | None:
    """Relative change of the training loss over the first (`half`=1) or second (2) half of
    training (per-step curve, means over windows of 5% of it at each end)."""
    steps, vals = _finite_curve(run, "train_loss")
    if len(steps) < 40:
        return None
    n = len(vals)
    w = max(1, n // 20)
    a, b = (vals[:w], vals[n // 2 - w:n // 2]) if half == 1 else (vals[n // 2 - w:n // 2], vals[-w:])
    a, b = float(np.mean(a)), float(np.mean(b))
    return (b - a) / a if a > 0 else None


def _settings(runs: list[dict]):
    """(affine, BN runs by seed, stop-gradient runs by seed) for each γ/β setting with both arms."""
    for affine in (True, False):
        bn, sg = arm(runs, False, affine), arm(runs, True, affine)
        if bn and sg:
            yield affine, bn, sg


def _setting(affine: bool) -> str:
    return "with γ/β" if affine else "without γ/β"


def _loss_row(runs: list[dict]) -> dict | None:
    ivs, parts = [], []
    for affine, bn, sg in _settings(runs):
        lb = {s: final_loss(r) for s, r in bn.items()}
        ls = {s: final_loss(r) for s, r in sg.items()}
        iv = stats.paired(ls, lb)
        ivs.append(iv)
        div = sum(r.get("diverged_at_step") is not None for r in sg.values())
        parts.append(f"{_setting(affine)}: BN {stats.mean_std(lb.values(), 3)}, statistics "
                     f"outside {stats.mean_std(ls.values(), 3)} ({div} of {len(sg)} diverged), "
                     f"difference {stats.fmt(iv)}")
    if not ivs:
        return None
    verdict, counts = stats.verdict_over(ivs)
    rule = stats.rule_over(
        "final training loss (mean of the last steps; a diverged run counts as ln 10) with the "
        "statistics outside the gradient minus with BN", "setting (with / without γ, β)",
        expect_text="above zero (BN trains better)")
    return runs_lib.row(
        "normalization_outside_gradient.statistics_in_backprop",
        "BN trains better when its batch statistics take part in backpropagation than with the "
        "same normalization outside the gradient step",
        "IS Sec. 2, Sec. 3", "final training loss, " + "; ".join(parts) + f" (settings {counts})",
        "the statistics used for normalization fully participate in the gradient "
        "backpropagation (Sec. 3); a gradient step that ignores the normalization is "
        "ineffective (Sec. 2)", verdict, FIGURE, stats.evidence_over(ivs, rule, seeds=min(iv.n for iv in ivs)))


GROWTH = (("weight_norm", "||W_l||"), ("input_mean", "|E[W_l u]|"))


def _growth_row(runs: list[dict]) -> dict | None:
    ivs, parts = [], []
    for affine, bn, sg in _settings(runs):
        for key, name in GROWTH:
            for layer in layers(next(iter(bn.values()))):
                curve = f"probe_{key}_layer{layer}"
                gs = {s: late_growth(r, curve) for s, r in sg.items()}
                gb = {s: late_growth(r, curve) for s, r in bn.items()}
                iv = stats.paired(gs, gb)
                ivs.append(iv)
                parts.append(f"{_setting(affine)} {name.replace('_l', f'_{layer}')}: "
                             f"{stats.mean_std(gs.values(), 2)} vs {stats.mean_std(gb.values(), 2)}, "
                             f"difference {stats.fmt(iv, 2)}")
        first = [loss_change(r, 1) for r in sg.values()]
        second = [loss_change(r, 2) for r in sg.values()]
        parts.append(f"{_setting(affine)}, training loss with the statistics outside: "
                     f"{stats.mean_std(first, 2)} over the first half, {stats.mean_std(second, 2)} "
                     "over the second (relative change)")
    if not ivs:
        return None
    verdict, counts = stats.verdict_over(ivs)
    rule = stats.rule_over(
        "growth over the second half of training, log(value at the end / at mid-training), with "
        "the statistics outside the gradient minus with BN, for ||W_l|| (the weights feeding BN "
        "layer l) and |E[W_l u]| (rms batch mean of BN's input: the shift normalization removes, "
        "the paper's b)", "(γ/β setting, quantity, layer)",
        expect_text="above zero (they keep growing faster outside the gradient)")
    return runs_lib.row(
        "normalization_outside_gradient.parameters_grow_outside_gradient",
        "With the normalization outside the gradient step, the weights feeding it and the shift it "
        "removes keep growing late in training, when the loss has nearly stopped improving, much "
        "faster than with BN's full gradient",
        "IS Sec. 2",
        "growth over the second half of training (log ratio), statistics outside vs BN: "
        + "; ".join(parts) + f" (settings {counts}). Growth continues to the end; whether it is "
        "unbounded cannot be seen in a finite run, and the loss did not blow up",
        "b grows indefinitely while the loss remains fixed; with scaling as well, the model blows "
        "up (Sec. 2, for x_hat = x - E[x] with the gradient ignoring E[x]'s dependence on b)",
        verdict, FIGURE, stats.evidence_over(ivs, rule, seeds=min(iv.n for iv in ivs)))


def claims(runs: list[dict]) -> list[dict]:
    """Claim 10 (training loss) and claim 8 (late parameter growth), over the γ/β settings."""
    return [r for r in (_loss_row(runs), _growth_row(runs)) if r is not None]


# ----------------------------------------------------------------------------------- figures

def _layer_mean_curve(runs: list[dict], key: str, relative: bool):
    """Each run's mean over layers of `key` (divided by its value at step 0 when `relative`),
    then the mean and std over runs, per step."""
    per_run = []
    for run in runs:
        curves = [_finite_curve(run, f"probe_{key}_layer{l}") for l in layers(run)]
        curves = [c for c in curves if c[0]]
        if not curves:
            continue
        steps = curves[0][0]
        n = min(len(c[0]) for c in curves)
        vals = np.mean([np.asarray(c[1][:n]) / (c[1][0] if relative else 1) for c in curves], 0)
        per_run.append({"curves": {"v": {"step": steps[:n], "value": list(vals)}}})
    return plotting.mean_curve(per_run, "v")


def _draw(ax, curve, color, linestyle, log=False):
    if curve is None:
        return
    steps, mean, std, _ = curve
    ax.plot(steps, mean, color=color, linestyle=linestyle, linewidth=1.6, zorder=3)
    plotting.seed_band(ax, steps, mean, std, color, log=log)


def figures(doc: dict, workdir: pathlib.Path) -> list[pathlib.Path]:
    """Four panels over training, BN vs statistics outside the gradient (color), with and without
    γ/β (solid / dashed): the training loss; ||W|| relative to init; the rms batch mean of W u
    (what centering removes); the rms of γ and β. Layer-averaged, mean over seeds, ± 1 std."""
    runs = doc["runs"]
    if not any(layers(r) for r in runs):
        return []
    fig = plotting.new_figure(15.0, 4.8)
    axes = fig.subplots(1, 4)
    styles = {True: "-", False: "--"}
    for stop in (False, True):
        for affine in (True, False):
            group = list(arm(runs, stop, affine).values())
            if not group:
                continue
            color, ls = COLORS[stop], styles[affine]
            _draw(axes[0], plotting.mean_curve(group, "train_loss"), color, ls, log=True)
            _draw(axes[1], _layer_mean_curve(group, "weight_norm", True), color, ls, log=True)
            _draw(axes[2], _layer_mean_curve(group, "input_mean", False), color, ls, log=True)
            if affine:
                _draw(axes[3], _layer_mean_curve(group, "gamma_rms", False), color, "-")
                _draw(axes[3], _layer_mean_curve(group, "beta_rms", False), color, ":")
    labels = ("training loss (per step)", "‖W‖ / ‖W at init‖ (mean over layers)",
              "rms batch mean of W u (the shift BN removes)", "rms of γ (solid) and β (dotted)")
    for ax, label, log in zip(axes, labels, (True, True, True, False)):
        if log:
            ax.set_yscale("log")
            if ax is not axes[0]:  # narrow ranges: plain numbers on the major and minor ticks
                ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
                ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        plotting.style_step_axes(ax, "training step", label)
    handles = [Line2D([], [], color=COLORS[s], linewidth=2, label=LABELS[s]) for s in (False, True)]
    handles += [Line2D([], [], color="0.3", linestyle=styles[a],
                       label="with γ, β" if a else "without γ, β") for a in (True, False)]
    handles += [Line2D([], [], color="0.3", linestyle=":", label="β (last panel)"),
                plotting.seed_band_handle()]
    seeds = len({runs_lib.cfg(r, "seed") for r in runs})
    plotting.suptitle(fig, "Normalization inside vs outside the gradient step (Ioffe & Szegedy, "
                      "Sec. 2-3): the same forward pass, the batch statistics constant to the "
                      f"gradient or not\n{plotting.shared_config_line(runs)}; {seeds} seeds")
    plotting.legend_below(fig, handles, max_cols=3)
    return [plotting.save_png(fig, pathlib.Path(workdir) / FIGURE)]


register(Experiment("normalization_outside_gradient", claims=claims, figures=figures,
                    probe=Probe(measure)))

"""Internal covariate shift (ICS), the title claim of Ioffe & Szegedy (2015), under two definitions,
with the noisy-BN test of Santurkar et al. (2018, Sec. 2.1).

The probe (measures in `bn_experiments.covariate_shift`) runs at every evaluation on 10 fixed
batches of 60 training images (`PROBE_BATCHES` x `PROBE_BATCH`), in training mode: each batch is
normalized with its own statistics and, in the noisy arms, gets a noise draw, as in a training
step. It compares the run at this evaluation with the run at the previous one (`prev_params`):

- `full_w1` / `full_ks` (per hidden layer): the shift of the layer's pre-activation distribution
  (scale-free W1: W1 / the unit's std at the previous evaluation; KS), everything changed;
- `input_w1` / `input_ks`: its input-induced part, Ioffe & Szegedy's definition (Sec. 1-2: the
  inputs change because the layers below change): the layer and those above at their previous
  parameters, on the input the new layers below produce. 0 for layer 1 (its input is the data);
- `grad_rel` / `grad_cos` (per weight layer, the output layer last): Santurkar et al.'s Def. 2.1,
  ||G - G'|| / ||G|| and cos(G, G') of the gradient of the layer's W before and after the layers
  below take their SGD step on the same batch (lr of the run), averaged over the 10 batches.

Noise keys. In the noisy arms the distributional measure gives all 10 batches of an evaluation
at step t one noise draw from a fixed key folded with t: one training step's per-unit shift and
scale (mu_t, sigma_t), which is what makes the distribution the network sees change from step to
step; the previous evaluation's distribution is recomputed with the draw it had. A layer's own
draw is held fixed in its input-induced part (one key for both terms), so the input-induced part
of the noisy arms contains the noise of the layers below, the shift Santurkar et al. inject. The
gradient ICS draws one noise key per batch (the same for G, the step and G'). Test accuracy is
measured without noise (evaluation mode).

Phases. The early phase (the initial transient) is every evaluation up to `phase_boundary` (the
end of the extra early evaluations `eval_steps`: steps 10 to 500 in the committed config), the
late phase the rest (every `eval_every` = 500 steps). A run's value in a phase is the mean over its
evaluations in the phase and over the layers a claim names; the intervals between evaluations
differ in length (10 to 100 steps early, 500 late), the same for every arm, so arms are compared
phase by phase, never one phase against the other.
"""
from __future__ import annotations

import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter

from bn_experiments import covariate_shift as cs
from bn_experiments import plotting, stats
from bn_experiments import runs as runs_lib
from bn_experiments.experiments import Experiment, register
from bn_experiments.models import mlp
from bn_experiments.probe import Probe, ProbeInputs

PROBE_BATCH = 60     # the paper's mini-batch: BN's statistics as the network sees them in training
PROBE_BATCHES = 10   # batches per evaluation: 600 examples per unit and 10 gradient-ICS samples
_NOISE_SALT = 20_181_105
PHASES = ("early", "late")
# "Trains as well": noisy BN's test accuracy at most this far below BN's (non-inferiority margin,
# one percentage point, fixed before the run).
MARGIN = 0.01
ARMS = {"standard": ("none", False), "BN": ("batchnorm", False),
        "noisy BN": ("batchnorm", True), "standard + noise": ("none", True)}
FIGURE, LAYERS_FIGURE = "internal_covariate_shift.png", "internal_covariate_shift_layers.png"


def _keys(step, salt: int, n: int, *, shared: bool = False) -> jax.Array:
    """(n,) noise keys for the probe's batches at `step`: one per batch, or (`shared`) the same
    key for all of them, i.e. one training step's noise (its per-unit shift and scale)."""
    base = jax.random.fold_in(jax.random.fold_in(jax.random.key(_NOISE_SALT), salt), step)
    return jnp.broadcast_to(base, (n,)) if shared else jax.random.split(base, n)


def measure(inp: ProbeInputs) -> dict:
    """Both ICS measures between the previous evaluation and this one (module docstring)."""
    n = inp.x.shape[0] // PROBE_BATCH
    xs = inp.x[:n * PROBE_BATCH].reshape(n, PROBE_BATCH, *inp.x.shape[1:])
    ys = inp.y[:n * PROBE_BATCH].reshape(n, PROBE_BATCH)
    out = cs.distributional_shift(
        inp.apply, inp.prev_params, inp.params, inp.prev_state, inp.state, xs,
        activation=mlp.ACTIVATIONS[inp.model.activation],
        keys_prev=_keys(inp.prev_step, 0, n, shared=True),
        keys_now=_keys(inp.step, 0, n, shared=True), keys_upper=_keys(inp.step, 1, n, shared=True))
    out.update(cs.gradient_ics_batches(inp.apply, inp.params, inp.state, xs, ys,
                                       _keys(inp.step, 2, n), inp.learning_rate))
    return out


# ------------------------------------------------------------------------------ reading runs

def arm_of(run: dict) -> str | None:
    key = (runs_lib.cfg(run, "model.norm"), bool(runs_lib.cfg(run, "model.bn_noise", False)))
    return next((name for name, arm in ARMS.items() if arm == key), None)


def by_arm(runs: list[dict]) -> dict[str, dict[int, dict]]:
    """{arm: {seed: run}} for the arms present."""
    out: dict[str, dict[int, dict]] = {}
    for r in runs:
        if arm_of(r) is not None:
            out.setdefault(arm_of(r), {})[runs_lib.cfg(r, "seed", 0)] = r
    return out


def phase_boundary(run: dict) -> int:
    """The last step of the early phase: where the dense `eval_steps` schedule ends (the first
    regular evaluation at or after the last extra one), or the first evaluation without any."""
    every = int(runs_lib.cfg(run, "eval_every", 1))
    extra = runs_lib.cfg(run, "eval_steps") or ()
    return every * max(1, math.ceil(max(extra) / every)) if extra else every


def layer_keys(run: dict, key: str) -> list[int]:
    prefix = f"probe_{key}_layer"
    return sorted(int(k[len(prefix):]) for k in run["curves"] if k.startswith(prefix))


def phase_value(run: dict, key: str, phase: str, first_layer: int = 1) -> float | None:
    """Mean over the phase's evaluations (after step 0) and the layers >= `first_layer`."""
    bound, per_layer = phase_boundary(run), []
    for layer in layer_keys(run, key):
        if layer < first_layer:
            continue
        steps, vals = runs_lib.curve(run, f"probe_{key}_layer{layer}")
        sel = [v for s, v in zip(steps, vals) if s > 0 and (s <= bound) == (phase == "early")
               and runs_lib.finite(v)]
        if sel:
            per_layer.append(float(np.mean(sel)))
    return float(np.mean(per_layer)) if per_layer else None


def phase_points(runs: list[dict]) -> dict[str, int]:
    """Evaluations per phase (of the first run), for the measured text."""
    if not runs:
        return {p: 0 for p in PHASES}
    run, bound = runs[0], phase_boundary(runs[0])
    steps = [s for s in runs_lib.curve(run, "test_accuracy")[0] if s > 0]
    return {"early": sum(s <= bound for s in steps), "late": sum(s > bound for s in steps)}


# ------------------------------------------------------------------------------------ claims

def _values(arm: dict[int, dict], key: str, phase: str, first_layer: int) -> dict[int, float]:
    return {s: phase_value(r, key, phase, first_layer) for s, r in arm.items()}


def _log10(values: dict) -> dict:
    return {s: math.log10(v) for s, v in values.items() if runs_lib.finite(v) and v > 0}


def _ratio_claim(arms, cid, claim, source, paper, key, first_layer, top, bottom, what, expect_text,
                 min_seeds, extra: str = "") -> dict:
    """d = log10(arm `top` / arm `bottom`) of `key`'s phase value, paired by seed, per phase;
    reproduced when both phases have the interval above zero (`verdict_over`, share 1)."""
    intervals, parts = [], []
    for phase in PHASES:
        a = _values(arms[top], key, phase, first_layer)
        b = _values(arms[bottom], key, phase, first_layer)
        iv = stats.paired(_log10(a), _log10(b))
        intervals.append(iv)
        parts.append(f"{phase}: {top} {stats.mean_std(a.values(), 3)}, {bottom} "
                     f"{stats.mean_std(b.values(), 3)}, paired log10({top} / {bottom}) "
                     f"{stats.fmt(iv)}")
    verdict, counts = stats.verdict_over(intervals, min_seeds=min_seeds, share=1.0)
    seeds = max(iv.n for iv in intervals)
    rule = stats.rule_over(f"log10({top} / {bottom}) of {what}", "phase (early, late)",
                           expect_text=expect_text, min_seeds=min_seeds, share=1.0)
    measured = ("; ".join(parts) + f" [phases agreeing {counts['agree']}, opposing "
                f"{counts['oppose']}, inside the noise {counts['noise']}]" + extra
                + stats.seeds_note(seeds, min_seeds))
    return runs_lib.row(f"internal_covariate_shift.{cid}", claim, source, measured, paper, verdict,
                        FIGURE, stats.evidence_over(intervals, rule, seeds=seeds, over="phases"))


def _context(arms, key: str, first_layer: int, names=("standard", "BN")) -> str:
    """Each arm's value of another measure per phase, for a row's measured text."""
    out = []
    for phase in PHASES:
        vals = ", ".join(f"{n} {stats.mean_std(_values(arms[n], key, phase, first_layer).values(), 3)}"
                         for n in names if n in arms)
        out.append(f"{phase} {vals}")
    return "; ".join(out)


def _cosine_context(arms) -> str:
    """The cosine side of Def. 2.1 (not in the verdict): paired log10 of (1 - cos) standard / BN
    per phase, above zero where BN's gradients turn less when the layers below step."""
    parts = []
    for phase in PHASES:
        turn = {n: {s: 1 - v for s, v in _values(arms[n], "grad_cos", phase, 2).items()
                    if runs_lib.finite(v)} for n in ("standard", "BN")}
        parts.append(f"{phase} {stats.fmt(stats.paired(_log10(turn['standard']), _log10(turn['BN'])))}")
    return "paired log10((1 - cos) standard / (1 - cos) BN): " + ", ".join(parts)


def _gain_kept(vals: dict) -> str:
    """Context for the accuracy row: BN's gain over the standard network and noisy BN's position
    between them, d = noisy BN - (standard + BN) / 2 (above zero: closer to BN)."""
    std, bn, noisy = vals.get("standard", {}), vals["BN"], vals["noisy BN"]
    gain = stats.paired(bn, std)
    mid = {s: (bn[s] + std[s]) / 2 for s in set(bn) & set(std)
           if runs_lib.finite(bn[s]) and runs_lib.finite(std[s])}
    return (f"; BN - standard {stats.fmt(gain)}, noisy BN - (standard + BN) / 2 "
            f"{stats.fmt(stats.paired(noisy, mid))}")


def _trains_as_well(arms) -> dict:
    """Non-inferiority of noisy BN to BN, on final test accuracy and on the mean test accuracy over
    training: d = (noisy BN - BN) + MARGIN, reproduced when both intervals lie above zero."""
    measures = (("test_accuracy", "final test accuracy"),
                ("auc_test_accuracy", "mean test accuracy over the regular evaluations"))
    intervals, parts = [], []
    for key, what in measures:
        vals = {n: {s: r["final"].get(key) for s, r in arm.items()} for n, arm in arms.items()}
        iv = stats.paired({s: v + MARGIN for s, v in vals["noisy BN"].items()
                           if runs_lib.finite(v)}, vals["BN"])
        diff = stats.paired(vals["noisy BN"], vals["BN"])
        intervals.append(iv)
        arm_text = ", ".join(f"{n} {stats.mean_std(v.values(), 4)}" for n, v in vals.items())
        parts.append(f"{what}: {arm_text}; paired noisy BN - BN {stats.fmt(diff)}"
                     + (_gain_kept(vals) if "standard" in vals else ""))
    verdict, _ = stats.verdict_over(intervals, share=1.0)
    seeds = max(iv.n for iv in intervals)
    rule = stats.rule_over(f"(noisy BN - BN) + {MARGIN:g} of the test accuracy (final; mean over "
                           "training)", "accuracy measure", share=1.0,
                           expect_text=f"above zero (noisy BN at most {MARGIN:g} below BN: "
                           "non-inferiority)")
    return runs_lib.row(
        "internal_covariate_shift.noisy_bn_trains_as_well_as_bn",
        "Noisy BN (BN followed by time-varying random shift and scale) trains as well as BN",
        "ST Sec. 2.1", "; ".join(parts) + stats.seeds_note(seeds, stats.MIN_SEEDS),
        "ST Sec. 2.1, Fig. 2: the network with noisy BN trains about as well as the one with BN "
        "(and better than the standard one) although its layer inputs are less stable (VGG on "
        "CIFAR-10)", verdict, FIGURE, stats.evidence_over(intervals, rule, seeds=seeds,
                                                          over="accuracy measures"))


def claims(runs: list[dict]) -> list[dict]:
    """Four rows: BN vs standard under both ICS definitions; noisy BN vs BN (accuracy, ICS)."""
    arms = by_arm(runs)
    rows = []
    n = phase_points(runs)
    points = f" Evaluations per phase: early {n['early']}, late {n['late']}."
    if "standard" in arms and "BN" in arms:
        rows.append(_ratio_claim(
            arms, "bn_reduces_ics_input_induced",
            "BN reduces internal covariate shift: the shift of a layer's input distribution caused "
            "by the layers below (distributional, input-induced part)", "IS Sec. 1-2",
            "ICS is the change of each layer's input distribution as the parameters of the layers "
            "below change; BN reduces it (title, abstract, Sec. 2-3); the paper shows it only as "
            "one sigmoid's input percentiles over training (Fig. 1(b,c)) and gives no measure",
            "input_w1", 2, "standard", "BN",
            "the input-induced shift between consecutive evaluations (W1 / std of the unit, mean "
            "over units and hidden layers 2-3, mean over the phase's evaluations)",
            "above zero (smaller with BN)", stats.HEADLINE_SEEDS,
            " KS distance of the same: " + _context(arms, "input_ks", 2) + ". Full shift "
            "(W1 / std, layers 1-3, the layer's own update included): "
            + _context(arms, "full_w1", 1) + "." + points))
        rows.append(_ratio_claim(
            arms, "bn_reduces_ics_gradient",
            "BN reduces internal covariate shift measured by gradients (Santurkar et al. Def. 2.1:"
            " the change of a layer's gradient when the layers below take their step)",
            "ST Sec. 2.2, Def. 2.1",
            "IS: BN reduces ICS; ST measure ICS as ||G - G'|| and cos(G, G') (Def. 2.1) and find "
            "that BN often does not reduce it, and can increase it (VGG, deep linear network)",
            "grad_rel", 2, "standard", "BN",
            "||G - G'|| / ||G|| of the weight layers above the first (hidden layers 2-3 and the "
            "output layer), mean over the 10 probe batches and the phase's evaluations",
            "above zero (smaller with BN)", stats.HEADLINE_SEEDS,
            " cos(G, G'): " + _context(arms, "grad_cos", 2) + "; " + _cosine_context(arms)
            + "." + points))
    if "BN" in arms and "noisy BN" in arms:
        rows.append(_trains_as_well(arms))
        rows.append(_ratio_claim(
            arms, "noisy_bn_larger_distributional_ics",
            "Noisy BN's layer input distributions shift more than BN's", "ST Sec. 2.1",
            "ST Sec. 2.1, Fig. 2: with the injected noise the layer input distributions are less "
            "stable than those of the standard network, yet it trains as well as BN",
            "full_w1", 1, "noisy BN", "BN",
            "the full shift of each hidden layer's pre-activation between consecutive evaluations "
            "(W1 / std of the unit, mean over units and hidden layers 1-3, mean over the phase)",
            "above zero (noisy BN shifts more)", stats.MIN_SEEDS,
            " Against the standard network: " + _context(
                arms, "full_w1", 1, ("standard", "standard + noise", "noisy BN")) + ". The "
            "input-induced part (layers 2-3: the noise of the layers below, its own draw held): "
            + _context(arms, "input_w1", 2, ("BN", "noisy BN", "standard", "standard + noise"))
            + "." + points))
    return rows


# ----------------------------------------------------------------------------------- figures

STYLE = {"standard": (plotting.NORM_COLORS["none"], "-"), "BN": (plotting.NORM_COLORS["batchnorm"], "-"),
         "noisy BN": ("#30638e", "--"), "standard + noise": ("#edae49", "--")}
ROWS = (("full_w1", "full shift, W1 / std"), ("input_w1", "input-induced shift, W1 / std"),
        ("grad_rel", "gradient ICS ‖G − G′‖ / ‖G‖"), ("grad_cos", "gradient ICS cos(G, G′)"))


def _curve(run: dict, key: str, layers: list[int]):
    """(steps > 0, the mean over `layers` of the run's per-layer curves `probe_<key>_layer<l>`, or
    the curve `key` itself when `layers` is empty), or None."""
    names = [f"probe_{key}_layer{l}" for l in layers] or [key]
    curves = [plotting.read_curve(run, name) for name in names]
    if any(c is None for c in curves):
        return None
    steps, vals = curves[0][0], np.nanmean([c[1] for c in curves], axis=0)
    return steps[steps > 0], vals[steps > 0]


def _draw_arms(ax, arms, key: str, layers: list[int], log_y: bool) -> None:
    """Each arm's mean over seeds with its ± 1 std band, on a log step axis."""
    for name, arm in arms.items():
        curves = [c for c in (_curve(r, key, layers) for r in arm.values()) if c is not None]
        if not curves:
            continue
        n = min(len(c[0]) for c in curves)
        vals = np.stack([c[1][:n] for c in curves])
        mean = np.nanmean(vals, 0)
        std = np.nanstd(vals, 0, ddof=1) if len(vals) > 1 else np.zeros(n)
        color, style = STYLE[name]
        ax.plot(curves[0][0][:n], mean, color=color, linestyle=style, linewidth=1.5, zorder=3)
        plotting.seed_band(ax, curves[0][0][:n], mean, std, color, log=log_y)
    ax.set_xscale("log")
    if log_y:
        ax.set_yscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(plotting.fmt_steps))


def _legend(fig, bound: int, every: int, early: str) -> None:
    handles = [Line2D([], [], color=c, linestyle=ls, linewidth=2, label=name)
               for name, (c, ls) in STYLE.items()]
    handles += [Line2D([], [], color="0.4", linestyle=":", label=f"end of the early phase (step "
                       f"{bound}): intervals of {early} steps before, {every} after"),
                plotting.seed_band_handle()]
    plotting.legend_below(fig, handles, max_cols=3)


def figures(doc: dict, workdir: pathlib.Path) -> list[pathlib.Path]:
    """Two figures: accuracy and each measure averaged over layers; each measure per layer."""
    runs = doc["runs"]
    arms = by_arm(runs)
    if not arms or not layer_keys(runs[0], "full_w1"):
        return []
    run0 = runs[0]
    bound, every = phase_boundary(run0), int(runs_lib.cfg(run0, "eval_every", 1))
    steps = [s for s in runs_lib.curve(run0, "test_accuracy")[0] if s <= bound]
    gaps = sorted({int(b - a) for a, b in zip(steps, steps[1:])}) or [every]
    early = f"{gaps[0]}" if len(gaps) == 1 else f"{gaps[0]}-{gaps[-1]}"
    hidden, weights = layer_keys(run0, "full_w1"), layer_keys(run0, "grad_rel")
    seeds = len({runs_lib.cfg(r, "seed") for r in runs})
    setup = f"{plotting.shared_config_line(runs)}; {seeds} seeds paired"
    out = []

    fig = plotting.new_figure(12.5, 8.6)
    axes = fig.subplots(2, 2).ravel()
    _draw_arms(axes[0], arms, "test_accuracy", [], False)
    plotting.style_plain_axes(axes[0], "training step (log)", "test accuracy (no noise)")
    for ax, key, layers, label in (
            (axes[1], "full_w1", hidden, "full shift of the pre-activation, W1 / std\n(mean over "
             "hidden layers)"),
            (axes[2], "input_w1", hidden[1:], "input-induced shift, W1 / std\n(mean over hidden "
             "layers 2+)"),
            (axes[3], "grad_rel", weights[1:], "gradient ICS ‖G − G′‖ / ‖G‖\n(mean over weight "
             "layers 2+)")):
        _draw_arms(ax, arms, key, layers, True)
        plotting.style_plain_axes(ax, "training step (log)", label)
    for ax in axes:
        ax.axvline(bound, color="0.4", linestyle=":", linewidth=1)
    plotting.suptitle(fig, "Internal covariate shift, two definitions (Ioffe & Szegedy Sec. 2; "
                      "Santurkar et al. Def. 2.1), with noisy BN (Santurkar et al. Sec. 2.1): "
                      "the shift between consecutive evaluations, training mode, 10 fixed "
                      f"batches of 60\n{setup}")
    _legend(fig, bound, every, early)
    out.append(plotting.save_png(fig, workdir / FIGURE))

    cols = max(len(hidden), len(weights))
    fig = plotting.new_figure(3.4 * cols, 2.9 * len(ROWS) + 1.4)
    grid = fig.subplots(len(ROWS), cols, squeeze=False)
    for row, (key, label) in enumerate(ROWS):
        layers = weights if key.startswith("grad") else hidden
        for col in range(cols):
            ax = grid[row][col]
            name = "output layer" if col == len(weights) - 1 else f"hidden layer {col + 1}"
            if col >= len(layers):
                plotting.blank_no_data(ax, "no nonlinearity:\nnot measured")
                continue
            if col == 0 and key != "full_w1":
                plotting.blank_no_data(ax, f"{'1' if key == 'grad_cos' else '0'} by definition"
                                           "\n(nothing below layer 1)")
                ax.set_ylabel(label)
                continue
            _draw_arms(ax, arms, key, [layers[col]], key != "grad_cos")
            ax.axvline(bound, color="0.4", linestyle=":", linewidth=1)
            plotting.style_plain_axes(ax, "training step (log)" if row == len(ROWS) - 1 else "",
                                      label if col == 0 else "")
            if row == 0 or (key.startswith("grad") and row == 2):
                ax.set_title(name, fontsize=10)
    plotting.suptitle(fig, f"Internal covariate shift per layer (layer 1's input-induced and "
                      f"gradient ICS are 0 by definition)\n{setup}")
    _legend(fig, bound, every, early)
    out.append(plotting.save_png(fig, workdir / LAYERS_FIGURE))
    return out


PROBE = Probe(measure, batch_size=PROBE_BATCH * PROBE_BATCHES)  # also lp_normalization's
register(Experiment("internal_covariate_shift", claims=claims, figures=figures, probe=PROBE))

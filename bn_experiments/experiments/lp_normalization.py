"""lp normalizations against BN (Santurkar et al. 2018, Sec. 3.3; configs/lp_normalization.py).

Santurkar et al. ask whether BN is the only normalization that helps and try dividing the centred
activations by other spreads than the standard deviation (lp norms of the batch, p = 1, 2, inf):
the lp variants trained about as well as BN although their layer inputs' distributions were no
more stable (their Sec. 3.3 and appendix), which speaks against internal covariate shift as
the mechanism. Here `model.bn_norm_p` picks the spread BN divides by (`batchnorm.lp_moments`):
"l2" (BN), "l1" (mean absolute deviation), "linf" (largest absolute deviation).

Arms: no normalization, l2 (BN), l1, linf on Figure 1's 3 x 100 sigmoid MLP; the probe of
`internal_covariate_shift` measures, on 10 fixed training batches of 60 in training mode, the
distributional shift of each hidden layer's pre-activations between consecutive evaluations
(`full_w1`: W1 in units of the unit's spread) and its input-induced part (`input_w1`).

Claims (paired by seed, `bn_experiments.stats`):

1. `lp_normalizations_train_as_well_as_bn`: final test accuracy of l1 and of linf at most
   `MARGIN` below BN's (non-inferiority), one verdict over the two.
2. `lp_normalizations_not_more_stable`: the late-phase distributional shift (`full_w1`, mean over
   hidden layers) of l1 and linf against BN, as log10 ratios: reproduced when it is not smaller
   than BN's in either (Santurkar et al.: no more stable), i.e. each interval lies above -0.1
   (a 20% margin).
3. `lp_normalizations_beat_no_normalization`: final test accuracy of l1 and linf above the
   unnormalized network's.
"""
from __future__ import annotations

import pathlib

import numpy as np
from matplotlib.lines import Line2D

from bn_experiments import plotting, stats
from bn_experiments import runs as runs_lib
from bn_experiments.experiments import Experiment, register
from bn_experiments.experiments import internal_covariate_shift as ics

ARMS = ("none", "l2", "l1", "linf")
LABELS = {"none": "no normalization", "l2": "BN (l2)", "l1": "l1 normalization",
          "linf": "l-inf normalization"}
COLORS = {"none": plotting.NORM_COLORS["none"], "l2": plotting.NORM_COLORS["batchnorm"],
          "l1": plotting.OTHER_COLORS[0], "linf": plotting.OTHER_COLORS[3]}
MARGIN = 0.01            # "as well": at most one percentage point of test accuracy below BN
STABLE_MARGIN = -0.1     # log10: "not more stable" allows lp's shift down to 0.8x BN's
FIGURE = "lp_normalization.png"


def arm_of(run: dict) -> str:
    c = run["config"]
    return "none" if c.get("model.norm") == runs_lib.NO_BN else c.get("model.bn_norm_p", "l2")


def by_arm(runs: list[dict]) -> dict[str, dict[int, dict]]:
    out: dict = {}
    for r in runs:
        out.setdefault(arm_of(r), {})[r["config"]["seed"]] = r
    return out


def _final(arm: dict) -> dict:
    return {s: r["final"].get("test_accuracy") for s, r in arm.items()
            if runs_lib.finite(r["final"].get("test_accuracy"))}


def _shift(arm: dict) -> dict:
    return {s: np.log10(v) for s, r in arm.items()
            if (v := ics.phase_value(r, "full_w1", "late")) is not None and v > 0}


def claims(runs: list[dict]) -> list[dict]:
    a = by_arm(runs)
    lps = [p for p in ("l1", "linf") if p in a]
    if "l2" not in a or not lps:
        return []
    rows = []
    acc = {p: _final(a[p]) for p in a}
    ivs = [stats.paired({s: v + MARGIN for s, v in acc[p].items()}, acc["l2"]) for p in lps]
    diffs = {p: stats.paired(acc[p], acc["l2"]) for p in lps}
    verdict, _ = stats.verdict_over(ivs, share=1.0)
    rows.append(runs_lib.row(
        "lp_normalization.lp_normalizations_train_as_well_as_bn",
        "lp normalizations (l1, l-inf) train as well as BN", "ST Sec. 3.3",
        "final test accuracy: " + ", ".join(f"{LABELS[p]} {stats.mean_std(acc[p].values(), 4)}"
                                           for p in a)
        + "; paired lp - BN: " + ", ".join(f"{p} {stats.fmt(diffs[p])}" for p in lps),
        "ST Sec. 3.3: l1, l2 and l-inf normalization all perform comparably to BN (VGG on "
        "CIFAR-10)", verdict, FIGURE,
        stats.evidence_over(ivs, stats.rule_over(
            f"(lp - BN) + {MARGIN:g} of the final test accuracy", "lp norm", share=1.0,
            expect_text=f"above zero (at most {MARGIN:g} below BN: non-inferiority)"),
            seeds=max(iv.n for iv in ivs), over="lp norms")))
    shift = {p: _shift(a[p]) for p in a}
    raw = {p: stats.paired(shift[p], shift["l2"]) for p in lps}
    ivs = [stats.paired({s: v - STABLE_MARGIN for s, v in shift[p].items()}, shift["l2"])
           for p in lps]
    verdict, _ = stats.verdict_over(ivs, share=1.0)
    rows.append(runs_lib.row(
        "lp_normalization.lp_normalizations_not_more_stable",
        "lp normalizations do not make the layer inputs' distributions more stable than BN does",
        "ST Sec. 3.3",
        "late-phase shift of the pre-activations between evaluations (W1 / spread, mean over "
        "hidden layers): " + ", ".join(
            f"{LABELS[p]} {stats.mean_std([10 ** v for v in shift[p].values()], 3)}"
            for p in a) + "; paired log10 ratio lp / BN: "
        + ", ".join(f"{p} {stats.fmt(raw[p])}" for p in lps),
        "ST Sec. 3.3: the lp normalizations' distributions are not more stable than BN's, yet "
        "they train as well: the performance is not explained by distributional stability",
        verdict, FIGURE,
        stats.evidence_over(ivs, stats.rule_over(
            f"log10(shift lp / shift BN) + {-STABLE_MARGIN:g}", "lp norm", share=1.0,
            expect_text="above zero (lp's shift at least 0.8x BN's)"),
            seeds=max(iv.n for iv in ivs), over="lp norms")))
    if "none" in a:
        ivs = [stats.paired(acc[p], acc["none"]) for p in lps]
        verdict, _ = stats.verdict_over(ivs, share=1.0)
        rows.append(runs_lib.row(
            "lp_normalization.lp_normalizations_beat_no_normalization",
            "lp normalizations, like BN, train better than no normalization", "ST Sec. 3.3",
            "paired final test accuracy lp - none: "
            + ", ".join(f"{p} {stats.fmt(iv)}" for p, iv in zip(lps, ivs)),
            "ST Sec. 3.3: the lp normalizations improve on the unnormalized network as BN does",
            verdict, FIGURE,
            stats.evidence_over(ivs, stats.rule_over(
                "final test accuracy, lp minus no normalization", "lp norm", share=1.0,
                expect_text="above zero"), seeds=max(iv.n for iv in ivs), over="lp norms")))
    return rows


def figures(doc: dict, workdir: pathlib.Path) -> list[pathlib.Path]:
    """Left: test accuracy over training per arm. Right: the distributional shift (full_w1, mean
    over hidden layers) per evaluation. Median over seeds, min-max band."""
    a = by_arm(doc["runs"])
    if not a:
        return []
    fig = plotting.new_figure(13.0, 4.8)
    ax_acc, ax_shift = fig.subplots(1, 2)
    for p in [p for p in ARMS if p in a]:
        curves = [runs_lib.curve(r, "test_accuracy") for r in a[p].values()]
        steps = np.asarray(curves[0][0], float)
        vals = np.array([[np.nan if v is None else v for v in c[1][:len(steps)]]
                         for c in curves if len(c[1]) >= len(steps)], float)
        ax_acc.plot(np.maximum(steps, 1), np.nanmedian(vals, 0), color=COLORS[p], marker="o",
                    markersize=3)
        ax_acc.fill_between(np.maximum(steps, 1), np.nanmin(vals, 0), np.nanmax(vals, 0),
                            color=COLORS[p], alpha=0.15, linewidth=0)
        per_run = []
        for r in a[p].values():
            layers = ics.layer_keys(r, "full_w1")
            if not layers:
                continue
            s, _ = runs_lib.curve(r, f"probe_full_w1_layer{layers[0]}")
            stack = np.array([[np.nan if v is None else v for v in
                               runs_lib.curve(r, f"probe_full_w1_layer{l}")[1]] for l in layers])
            per_run.append((np.asarray(s, float), np.nanmean(stack, 0)))
        if per_run:
            s = per_run[0][0]
            vals = np.array([v[:len(s)] for _, v in per_run])
            keep = s > 0
            ax_shift.plot(s[keep], np.nanmedian(vals, 0)[keep], color=COLORS[p], marker="o",
                          markersize=3)
            ax_shift.fill_between(s[keep], np.nanmin(vals, 0)[keep], np.nanmax(vals, 0)[keep],
                                  color=COLORS[p], alpha=0.15, linewidth=0)
    ax_acc.set_xscale("log")
    ax_acc.set_ylim(0.8, 1.0)
    plotting.style_plain_axes(ax_acc, "training step (step 0 drawn at 1)", "test accuracy")
    ax_shift.set_xscale("log")
    ax_shift.set_yscale("log")
    plotting.style_plain_axes(ax_shift, "training step",
                              "shift since the previous evaluation (W1 / spread)")
    handles = [Line2D([], [], color=COLORS[p], linewidth=2, label=LABELS[p])
               for p in ARMS if p in a]
    handles.append(plotting.seed_band_handle())
    handles[-1].set_label("min-max over seeds (line: median)")
    seeds = len({r["config"]["seed"] for r in doc["runs"]})
    plotting.suptitle(fig, "lp normalizations vs BN (Santurkar et al., Sec. 3.3)\n"
                      f"{plotting.shared_config_line(doc['runs'])}; {seeds} seeds")
    plotting.legend_below(fig, handles, max_cols=5)
    return [plotting.save_png(fig, pathlib.Path(workdir) / FIGURE)]


register(Experiment("lp_normalization", claims=claims, figures=figures, probe=ics.PROBE))

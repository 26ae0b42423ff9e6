"""BN as a regularizer in place of dropout (Ioffe & Szegedy 2015, Sec. 3.4 and 4.2.1).

Sec. 3.4: in training, BN normalizes an example with the statistics of its mini-batch, so the
network's output for it is no longer deterministic; the paper found this regularizes, and that in
a batch-normalized network dropout "can be either removed or reduced in strength". Sec. 4.2.1
removes dropout from BN-Inception without increased overfitting. `ghost_batches` dials the batch
noise at batch 512; this experiment sets BN beside dropout itself at the paper's MNIST batch.

Arms: Figure 1's 3 x 100 sigmoid MLP, without and with BN, each without and with dropout (rate
`RATE` on every hidden layer's output), 5 paired seeds, trained for 30 epochs so that the
networks fit their training set. The probe (`ghost_batches.train_set_fit`) measures the
inference-mode loss on 6,000 training examples at every evaluation; the generalization gap is
the test loss minus that training loss.

Claims (paired by seed, `bn_experiments.stats`):

1. `bn_narrows_generalization_gap`: the final gap without BN minus with BN (neither with
   dropout), above zero.
2. `bn_makes_dropout_unnecessary`: with BN, dropout does not raise the final test accuracy:
   BN alone at most `MARGIN` below BN with dropout (non-inferiority). Dropout's own effect on
   the network without BN is in the measured text (the control: does this dropout regularize?).
"""
from __future__ import annotations

import pathlib

import numpy as np
from matplotlib.lines import Line2D

from bn_experiments import plotting, stats
from bn_experiments import runs as runs_lib
from bn_experiments.experiments import Experiment, register
from bn_experiments.experiments import ghost_batches as gb
from bn_experiments.probe import Probe

RATE = 0.2
ARMS = ("none", "none_dropout", "bn", "bn_dropout")
LABELS = {"none": "no BN", "none_dropout": f"no BN + dropout {RATE:g}", "bn": "BN",
          "bn_dropout": f"BN + dropout {RATE:g}"}
COLORS = {"none": plotting.NORM_COLORS["none"], "none_dropout": plotting.OTHER_COLORS[0],
          "bn": plotting.NORM_COLORS["batchnorm"], "bn_dropout": plotting.OTHER_COLORS[3]}
PROBE_EXAMPLES = 6_000  # training examples for the inference-mode training loss
MARGIN = 0.005  # "unnecessary": BN alone at most half a point below BN + dropout
FIGURE = "dropout_regularization.png"


def measure(inp):
    return gb.train_set_fit(inp)


PROBE = Probe(measure, batch_size=PROBE_EXAMPLES)


def arm_of(run: dict) -> str:
    c = run["config"]
    base = "bn" if c.get("model.norm") == runs_lib.BN else "none"
    return base + ("_dropout" if (c.get("model.dropout") or 0) > 0 else "")


def by_arm(runs: list[dict]) -> dict[str, dict[int, dict]]:
    out: dict = {}
    for r in runs:
        out.setdefault(arm_of(r), {})[r["config"]["seed"]] = r
    return out


def _per_seed(arm: dict, f) -> dict:
    return {s: v for s, r in arm.items() if (v := f(r)) is not None}


def _acc(run: dict) -> float | None:
    return gb.last(run, "test_accuracy")


def _summary(a: dict) -> str:
    return "; ".join(
        f"{LABELS[k]}: test accuracy {stats.mean_std(_per_seed(a[k], _acc).values(), 4)}, gap "
        f"{stats.mean_std(_per_seed(a[k], gb.gap).values(), 3)}" for k in ARMS if k in a)


def claims(runs: list[dict]) -> list[dict]:
    a = by_arm(runs)
    rows = []
    if "none" in a and "bn" in a:
        iv = stats.paired(_per_seed(a["none"], gb.gap), _per_seed(a["bn"], gb.gap))
        rows.append(runs_lib.row(
            "dropout_regularization.bn_narrows_generalization_gap",
            "BN regularizes: the gap between test and training loss is smaller with BN",
            "IS Sec. 3.4",
            f"final values (gap: test loss - inference-mode loss on {PROBE_EXAMPLES:,} training "
            f"examples): "
            f"{_summary(a)}; paired gap no BN - BN {stats.fmt(iv)}",
            "Sec. 3.4: BN's mini-batch noise regularizes the network", stats.verdict(iv), FIGURE,
            stats.evidence(iv, stats.rule_single("final gap without BN minus with BN (no dropout)",
                                                 expect_text="above zero"))))
    if "bn" in a and "bn_dropout" in a:
        acc_bn, acc_drop = _per_seed(a["bn"], _acc), _per_seed(a["bn_dropout"], _acc)
        iv = stats.paired({s: v + MARGIN for s, v in acc_bn.items()}, acc_drop)
        raw = stats.paired(acc_bn, acc_drop)
        control = ""
        if "none" in a and "none_dropout" in a:
            gaps = stats.paired(_per_seed(a["none"], gb.gap), _per_seed(a["none_dropout"], gb.gap))
            accs = stats.paired(_per_seed(a["none_dropout"], _acc), _per_seed(a["none"], _acc))
            control = (f"; control, without BN: dropout narrows the gap by {stats.fmt(gaps)} and "
                       f"changes test accuracy by {stats.fmt(accs)}")
        rows.append(runs_lib.row(
            "dropout_regularization.bn_makes_dropout_unnecessary",
            "With BN, dropout can be removed without losing accuracy", "IS Sec. 3.4, 4.2.1",
            f"final values: {_summary(a)}; paired test accuracy BN - (BN + dropout) "
            f"{stats.fmt(raw)}{control}",
            "Sec. 3.4: in a batch-normalized network dropout can be removed or reduced in "
            "strength; Sec. 4.2.1: BN-Inception without dropout reaches higher validation "
            "accuracy", stats.verdict(iv), FIGURE,
            stats.evidence(iv, stats.rule_single(
                f"(BN - (BN + dropout {RATE:g})) + {MARGIN:g} of the final test accuracy",
                expect_text=f"above zero (BN alone at most {MARGIN:g} below: non-inferiority)"))))
    return rows


def figures(doc: dict, workdir: pathlib.Path) -> list[pathlib.Path]:
    """Left: test accuracy over training per arm. Middle: the gap (test loss - training loss)
    over training. Right: final gap, one dot per seed. Mean over seeds with a ± 1 std band."""
    a = by_arm(doc["runs"])
    if not a:
        return []
    fig = plotting.new_figure(15.0, 4.8)
    ax_acc, ax_gap, ax_final = fig.subplots(1, 3)
    shown = [k for k in ARMS if k in a]
    for i, k in enumerate(shown):
        plotting.mean_band(ax_acc, list(a[k].values()), "test_accuracy", COLORS[k], step_floor=1,
                           marker="o", markersize=3)
        gaps = []
        for r in a[k].values():
            s_test, v_test = runs_lib.curve(r, "test_loss")
            s_train, v_train = runs_lib.curve(r, "probe_train_set_loss")
            train = dict(zip(s_train, v_train))
            gaps.append({s: t - train[s] for s, t in zip(s_test, v_test)
                         if runs_lib.finite(t) and runs_lib.finite(train.get(s))})
        steps = sorted(set.intersection(*(set(g) for g in gaps))) if gaps else []
        if steps:
            vals = np.array([[g[s] for s in steps] for g in gaps])
            x = np.maximum(np.asarray(steps, float), 1)
            ax_gap.plot(x, vals.mean(0), color=COLORS[k], marker="o", markersize=3)
            plotting.seed_band(ax_gap, x, vals.mean(0), vals.std(0, ddof=1) if len(vals) > 1
                               else np.zeros(len(steps)), COLORS[k])
        final = list(_per_seed(a[k], gb.gap).values())
        ax_final.scatter([i] * len(final), final, color=COLORS[k], s=18, zorder=3)
        if final:
            ax_final.hlines(np.mean(final), i - 0.3, i + 0.3, color=COLORS[k])
    ax_acc.set_xscale("log")
    ax_acc.set_ylim(0.8, 1.0)
    plotting.style_plain_axes(ax_acc, "training step (step 0 drawn at 1)", "test accuracy")
    ax_gap.set_xscale("log")
    plotting.style_plain_axes(ax_gap, "training step (step 0 drawn at 1)",
                              "test loss − training loss")
    ax_final.set_xticks(range(len(shown)), [LABELS[k] for k in shown], rotation=15)
    ax_final.set_ylabel("final test loss − training loss")
    ax_final.set_title("final gap (one dot per seed, line: mean)")
    handles = [Line2D([], [], color=COLORS[k], linewidth=2, label=LABELS[k]) for k in shown]
    handles.append(plotting.seed_band_handle())
    seeds = len({r["config"]["seed"] for r in doc["runs"]})
    plotting.suptitle(fig, "BN and dropout as regularizers (IS Sec. 3.4, 4.2.1)\n"
                      f"{plotting.shared_config_line(doc['runs'])}; {seeds} seeds")
    plotting.legend_below(fig, handles, max_cols=5)
    return [plotting.save_png(fig, pathlib.Path(workdir) / FIGURE)]


register(Experiment("dropout_regularization", claims=claims, figures=figures, probe=PROBE))

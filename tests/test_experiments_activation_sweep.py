"""The deep sigmoid comparison (bn_experiments/experiments/activation_sweep.py): claims on known
answers and figures, fast."""
from __future__ import annotations

import pytest
from claim_fixtures import by_id, point
from figure_fixtures import NORMS, check_pngs, make_sweep_summary

from bn_experiments import experiments, summary
from bn_experiments.experiments import activation_sweep

SHALLOW, DEEP = [100] * 3, [100] * 10


def _sweep(deep_no_bn_gain4_acc=0.95, seeds=3):
    """BN trains everywhere (0.97 at lr 1, 0.94 at lr 0.25). Without BN: the shallow nets train
    (0.95, slope 0.15 at gain 4), the deep one fails at gain 1 and, at gain 4, trains only at lr 1
    with `deep_no_bn_gain4_acc` (slope 0.08)."""
    runs = []
    for s in range(seeds):
        for widths in (SHALLOW, DEEP):
            for gain in (1.0, 4.0):
                for lr in (0.25, 1.0):
                    runs.append(point("batchnorm", lr, s, True, init=gain, acc=0.97 if lr == 1 else 0.94,
                                      **{"model.widths": widths}))
                    deep = widths == DEEP
                    ok = not deep or (gain == 4.0 and lr == 1.0)
                    runs.append(point("none", lr, s, ok, init=gain,
                                      acc=deep_no_bn_gain4_acc if deep else 0.95,
                                      slope=0.08 if deep else (0.15 if gain == 4 else 0.2),
                                      **{"model.widths": widths}))
    return runs


def test_bn_that_only_repairs_the_init_is_partly_reproduced():
    # Gain 1: BN 0.97 vs chance. Gain 4: without BN the deep net trains to 0.95 >= 0.9, so its
    # failure at gain 1 was the init: partly reproduced, though BN is still better (0.97).
    row = by_id(activation_sweep.claims(_sweep()))["deep_sigmoid_trains_with_bn"]
    assert row["verdict"] == "partly reproduced"
    assert row["evidence"]["effect"] == pytest.approx(0.87)
    assert "no BN 0.1 ± 1.7e-17 (lr none trains)" in row["measured"]
    assert "BN - no BN 0.02 [0.02, 0.02] (n=3)" in row["measured"]
    assert "At init gain 4 the network without BN reaches 0.9 in most seeds" in row["measured"]
    # With the corrected init it still misses the target: BN is needed either way.
    row = by_id(activation_sweep.claims(_sweep(deep_no_bn_gain4_acc=0.85)))[
        "deep_sigmoid_trains_with_bn"]
    assert row["verdict"] == "reproduced"
    assert "does not reach 0.9" in row["measured"]


def test_trainable_depths_with_each_arm_tuned_over_gain_and_rate():
    row = by_id(activation_sweep.claims(_sweep()))["saturating_nonlinearities_train_with_bn"]
    # Tuned over the gain too, the deep net trains without BN (gain 4): no difference.
    assert row["evidence"]["effect"] == pytest.approx(0.0)
    assert row["verdict"] == "inconclusive"
    assert "no BN 10 layers/gain 1" in row["measured"]
    row = by_id(activation_sweep.claims(_sweep(deep_no_bn_gain4_acc=0.85)))[
        "saturating_nonlinearities_train_with_bn"]
    assert row["evidence"]["effect"] == pytest.approx(1.0) and row["verdict"] == "reproduced"


def test_saturation_of_runs_that_trained():
    row = by_id(activation_sweep.claims(_sweep()))["bn_reduces_saturation"]
    assert "10 layers, gain 1: 0 seeds where both arms trained" in row["measured"]
    # 3 settings where both trained: slope BN 0.2 vs 0.2 / 0.15 / 0.08 -> two agree, one noise.
    assert row["verdict"] == "reproduced"
    assert row["evidence"]["effect"] == pytest.approx((0.0 + 0.05 + 0.12) / 3)


def test_activation_sweep_figures(tmp_path):
    grid = [("model.widths", ((100,) * 3, (100,) * 10)), NORMS, ("model.init_std", (1.0, 4.0)),
            ("learning_rate", (0.25, 1.0)), ("seed", (0, 1))]
    doc = make_sweep_summary(tmp_path, "activation_sweep", grid, steps=600, eval_every=100,
                             **{"model.init": "glorot", "data.source": "validation:10:synthetic"})
    for run in doc["runs"]:
        run["final"].update({f"mean_probe_slope_layer{l}": 0.2 - 0.01 * l
                             for l in range(1, len(run["config"]["model.widths"]) + 1)})
    summary.write(tmp_path / "summary.json", doc)
    check_pngs(experiments.draw_figures(tmp_path), tmp_path,
               ["activation_sweep_curves.png", "activation_sweep_saturation.png"])


def test_no_probe_curves_and_no_arms(tmp_path):
    grid = [("model.widths", ((50, 50),)), NORMS, ("model.init_std", (1.0,)), ("seed", (0,))]
    make_sweep_summary(tmp_path, "activation_sweep", grid, steps=400)
    check_pngs(experiments.draw_figures(tmp_path), tmp_path, ["activation_sweep_curves.png"])
    assert activation_sweep.claims([point("none", 1.0, 0, True)]) == []

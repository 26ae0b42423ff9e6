"""The learning-rate sweep (bn_experiments/experiments/lr_sweep.py): claims on known answers and
figures, fast."""
from __future__ import annotations

import math

import pytest
from claim_fixtures import by_id, lr_runs, point
from figure_fixtures import (
    NORMS,
    SEEDS,
    check_pngs,
    diverge_high_lr,
    make_sweep_summary,
)

from bn_experiments import experiments, summary
from bn_experiments.experiments import lr_sweep

GRID = tuple(round(2 ** (k / 2), 3) for k in range(14))  # 1 ... 90.51, as the config


def _with_weight_norms(doc: dict, workdir) -> dict:
    """Adds the sweep probe's weight-norm curves to a synthetic sweep: growing with the learning
    rate, 100x before a divergence."""
    for run in doc["runs"]:
        acc = run["curves"]["test_accuracy"]
        lr = run["config"]["learning_rate"]
        grow = 100.0 if run["diverged_at_step"] is not None else 1 + 0.05 * lr
        for layer in (1, 2, 3):
            run["curves"][f"probe_weight_norm_layer{layer}"] = {
                "step": acc["step"], "value": [10.0 * grow ** (i / max(len(acc["step"]) - 1, 1))
                                               for i in range(len(acc["step"]))]}
    summary.write(workdir / "summary.json", doc)
    return doc


def test_lr_sweep_figures(tmp_path):
    grid = [("model.activation", ("sigmoid", "relu")), NORMS,
            ("learning_rate", (0.01, 0.1, 1.0, 3.0, 10.0, 100.0)), SEEDS]
    _with_weight_norms(make_sweep_summary(tmp_path, "lr_sweep", grid, diverge=diverge_high_lr,
                                          **{"data.source": "validation:100:synthetic"}), tmp_path)
    paths = experiments.draw_figures(tmp_path)
    check_pngs(paths, tmp_path, ["lr_sweep_accuracy.png", "lr_sweep_weight_norms.png"])
    assert not (tmp_path / "lr_sweep_steps_to_target.png").exists()


def test_lr_sweep_single_seed_and_no_probe_curves(tmp_path):
    # One seed, no grid recorded, every run at lr 100 diverged, no weight norms (an old summary).
    grid = [NORMS, ("learning_rate", (0.1, 100.0)), ("seed", (0,))]
    make_sweep_summary(tmp_path, "lr_sweep", grid, record_grid=False, target_accuracy=0.999,
                       diverge=lambda c: 150 if c["learning_rate"] > 1 else None)
    check_pngs(experiments.draw_figures(tmp_path), tmp_path, ["lr_sweep_accuracy.png"])


# ------------------------------------------------------------------ claims (known answers)

def test_the_ratio_of_the_largest_trainable_rates_with_the_grid_resolution():
    rows = by_id(lr_sweep.claims(lr_runs(bn_max=64.0, no_max=8.0, lrs=GRID)))
    row = rows["bn_allows_higher_lr"]
    assert row["verdict"] == "reproduced"  # 8x >= the paper's 5x, 5 seeds
    assert row["evidence"]["effect"] == pytest.approx(math.log10(8))
    assert "ratio 8x" in row["measured"] and "steps of 1.41x" in row["measured"]
    # Only 4x: higher, but below the paper's 5x.
    assert by_id(lr_sweep.claims(lr_runs(bn_max=32.0, no_max=8.0, lrs=GRID)))[
        "bn_allows_higher_lr"]["verdict"] == "partly reproduced"
    assert by_id(lr_sweep.claims(lr_runs(bn_max=8.0, no_max=8.0, lrs=GRID)))[
        "bn_allows_higher_lr"]["verdict"] == "inconclusive"
    # A headline claim: 3 seeds give no verdict.
    assert by_id(lr_sweep.claims(lr_runs(bn_max=64.0, no_max=8.0, lrs=GRID, seeds=3)))[
        "bn_allows_higher_lr"]["verdict"] == "inconclusive"


def test_runs_stuck_at_chance_are_failures_not_trainable_rates():
    # Above bn_max BN neither diverges nor trains (lr_runs leaves it at chance): a
    # divergence-only rule would call every rate trainable with BN (ratio 100/8).
    rows = by_id(lr_sweep.claims(lr_runs(bn_max=16.0, no_max=8.0, lrs=GRID)))
    assert rows["bn_allows_higher_lr"]["evidence"]["effect"] == pytest.approx(math.log10(2))
    measured = rows["bn_prevents_divergence"]["measured"]
    assert "BN: 22.6 5/5 (5 chance), 32 5/5 (5 chance)" in measured
    assert "no BN: 11.3 5/5 (5 diverged)" in measured
    bn_fails = sum(lr > 16 for lr in GRID)
    no_fails = sum(lr > 8 for lr in GRID)
    assert rows["bn_prevents_divergence"]["evidence"]["effect"] == pytest.approx(no_fails - bn_fails)
    assert rows["bn_prevents_divergence"]["verdict"] == "reproduced"


def test_growth_exponent_on_known_growth():
    runs = [point("none", lr, 0, True, growth=lr ** 2) for lr in (1.0, 4.0, 16.0)]
    assert lr_sweep.growth_exponent(runs) == pytest.approx(2.0)
    assert lr_sweep.growth_exponent(runs[:1]) is None


def test_bn_stabilizes_the_weight_growth():
    row = by_id(lr_sweep.claims(lr_runs(bn_max=64.0, no_max=8.0, lrs=GRID)))[
        "bn_stabilizes_weight_growth"]
    # No BN jumps from 1.2x to 100x above 8; BN from 1.2x to only 3x above 64.
    assert row["verdict"] == "reproduced" and row["evidence"]["effect"] > 0
    assert "at the largest trainable rate 1.2 ± 0x, at the next rate (which fails) 100 ± 0x" \
        in row["measured"]
    runs = [point(n, lr, s, True, growth=lr) for n in ("none", "batchnorm") for lr in GRID
            for s in range(3)]
    row = by_id(lr_sweep.claims(runs))["bn_stabilizes_weight_growth"]
    assert row["verdict"] == "inconclusive"  # the same growth in both arms


def test_missing_arm_or_a_single_rate_states_no_claim():
    assert lr_sweep.claims([{"name": "x", "config": {"model.norm": "none"}, "curves": {},
                             "final": {}, "diverged_at_step": None}]) == []
    assert lr_sweep.claims(lr_runs(bn_max=1.0, no_max=1.0, lrs=(1.0,))) == []

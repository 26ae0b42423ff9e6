"""Selecting and pairing the runs of a summary."""
import math

from bn_experiments import runs as runs_lib


def _run(norm, seed, lr, reached=True):
    return {"name": f"{norm}-{seed}-{lr}", "config": {"model.norm": norm, "seed": seed, "learning_rate": lr},
            "curves": {"test_accuracy": {"step": [0, 10], "value": [0.1, None]}},
            "final": {"steps_to_target": 10 if reached else None}, "diverged_at_step": None}


RUNS = [_run(n, s, lr, reached=lr <= (1.0 if n == "none" else 10.0))
        for n in ("none", "batchnorm") for s in (0, 1) for lr in (0.1, 1.0, 10.0)]


def test_select_by_seed_and_arms():
    assert len(runs_lib.select(RUNS, model__norm="none", seed=1)) == 3
    bn, no = runs_lib.arms(RUNS)
    assert sorted(bn) == [0, 1] and all(r["config"]["model.norm"] == "batchnorm" for r in bn.values())
    assert runs_lib.arms(runs_lib.select(RUNS, model__norm="none")) is None


def test_values_sorted_numbers_and_strings():
    assert runs_lib.values(RUNS, "learning_rate") == [0.1, 1.0, 10.0]
    assert runs_lib.values(RUNS, "model.norm") == ["batchnorm", "none"]


def test_reaching_counts_and_ranges():
    none = runs_lib.select(RUNS, model__norm="none")
    assert runs_lib.largest_reaching(runs_lib.select(none, seed=0), "learning_rate") == 1.0
    assert runs_lib.count_reaching(none) == {0: 2.0, 1: 2.0}
    assert runs_lib.majority_range(none, "learning_rate") == "0.1 to 1 (2 grid values)"
    assert math.isclose(runs_lib.grid_step([0.1, 1.0, 10.0]), 10.0)


def test_curves_and_finite():
    steps, vals = runs_lib.curve(RUNS[0], "test_accuracy")
    assert steps == [0, 10] and not runs_lib.finite(vals[1]) and runs_lib.finite(vals[0])
    assert runs_lib.curve(RUNS[0], "absent") == ([], [])

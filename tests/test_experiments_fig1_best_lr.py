"""Figure 1 at each network's own best learning rate: the selection and the paired claims."""
import math

import pytest

from bn_experiments.experiments import fig1_best_lr as best
from tests import figure_fixtures
from tests.claim_fixtures import by_id


def _run(norm, lr, seed, curve: dict, diverged=None):
    steps = sorted(curve)
    return {"name": f"{norm}-{lr}-{seed}",
            "config": {"model.norm": norm, "learning_rate": lr, "seed": seed},
            "curves": {"test_accuracy": {"step": steps, "value": [curve[s] for s in steps]}},
            "final": {}, "diverged_at_step": diverged}


def _curve(speed: float, top: float) -> dict:
    """Accuracy rising to `top`, `speed` times as fast as the slow reference."""
    return {s: min(top, 0.1 + (top - 0.1) * min(1.0, speed * s / 8000))
            for s in (0, 50, 100, 200, 500, 1000, 2000, 4000, 6000, 8000, 9000, 10000)}


def _grid(bn_speed=4.0, bn_top=0.975, no_top=0.96, seeds=3, jitter=0.002):
    runs = []
    for seed in range(seeds):
        j = jitter * (seed - 1)
        runs += [_run("none", 0.1, seed, _curve(1.0, no_top - 0.02 + j)),
                 _run("none", 0.3, seed, _curve(1.0, no_top + j)),
                 _run("none", 3.0, seed, _curve(1.0, 0.1), diverged=None if seed else 300),
                 _run("batchnorm", 0.3, seed, _curve(bn_speed, bn_top - 0.01 + j)),
                 _run("batchnorm", 1.0, seed, _curve(bn_speed, bn_top + j))]
    return runs


def test_late_accuracy_and_best_rate():
    run = _run("none", 0.1, 0, {0: 0.1, 9000: 0.5, 9500: 0.9, 10000: 0.8})
    assert best.late_accuracy(run) == pytest.approx(2.2 / 3)   # steps >= 9,000: 0.5, 0.9, 0.8
    assert best.late_accuracy({**run, "diverged_at_step": 50}) is None
    runs = _grid()
    no = [r for r in runs if r["config"]["model.norm"] == "none"]
    assert best.best_rate(no) == 0.3      # 3.0 diverged in one seed: never "best"
    assert best.best_rate([r for r in runs if r["config"]["model.norm"] == "batchnorm"]) == 1.0


def test_speedup_is_log2_of_the_step_ratio():
    slow = _run("none", 0.1, 0, {0: 0.1, 100: 0.5, 400: 0.9})
    fast = _run("batchnorm", 0.1, 0, {0: 0.1, 100: 0.9, 400: 0.95})
    assert best.speedup(slow, fast, [0.9]) == pytest.approx(2.0)
    assert best.speedup(slow, fast, [0.5, 0.9]) == pytest.approx(1.0)   # (0 + 2) / 2
    assert best.speedup(slow, fast, [0.96]) is None


def test_claims_reproduce_a_clear_effect_and_stay_inconclusive_on_one_seed():
    rows = by_id(best.claims(_grid()))
    assert rows["faster_at_best_lr"]["verdict"] == "reproduced"
    assert rows["faster_at_best_lr"]["evidence"]["effect"] == pytest.approx(2.0, abs=0.3)
    assert rows["higher_accuracy_at_best_lr"]["verdict"] == "reproduced"
    assert "0.3 without BN, 1 with BN" in rows["faster_at_best_lr"]["measured"]
    assert "at the grid's edge with BN" in rows["faster_at_best_lr"]["measured"]  # 1 is the top
    one = by_id(best.claims(_grid(seeds=1)))
    assert {r["verdict"] for r in one.values()} == {"inconclusive"}
    same = by_id(best.claims(_grid(bn_speed=1.0, bn_top=0.96, jitter=0.004)))
    assert same["faster_at_best_lr"]["verdict"] == "inconclusive"
    assert same["higher_accuracy_at_best_lr"]["verdict"] == "inconclusive"
    worse = by_id(best.claims(_grid(bn_speed=1.0, bn_top=0.94)))
    assert worse["higher_accuracy_at_best_lr"]["verdict"] == "not reproduced"


def test_figure(tmp_path):
    paths = best.figures({"experiment": "fig1_best_lr", "runs": _grid()}, tmp_path)
    figure_fixtures.check_pngs(paths, tmp_path, [best.FIGURE])
    assert best.claims([]) == [] and math.isfinite(best.TARGETS[0])

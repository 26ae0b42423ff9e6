"""Claim verdicts follow their documented rules over measured numbers."""
import pytest

from bn_experiments import claims


def _run(name, s2t, final, mx, median, band, steps=1000):
    evals = list(range(0, steps + 1, 100))
    curves = {"test_preact_p50": {"step": evals, "value": median},
              "test_preact_p15": {"step": evals, "value": [m - b / 2 for m, b in zip(median, band)]},
              "test_preact_p85": {"step": evals, "value": [m + b / 2 for m, b in zip(median, band)]}}
    return {"name": name, "config": {"steps": steps, "target_accuracy": 0.9, "model.tracked_units": [0]},
            "curves": curves, "diverged_at_step": None,
            "final": {"steps_to_target": s2t, "test_accuracy": final, "max_test_accuracy": mx}}


FLAT = [0.0] * 11
MOVING = [0.1 * i for i in range(11)]


def test_drift_measures_median_and_band_movement_after_warmup():
    run = _run("bn", 1, 1, 1, MOVING, [1.0] * 11)
    assert claims.drift(run) == pytest.approx(0.9)  # steps >= 50: evaluations 100..1000
    assert claims.drift(_run("bn", 1, 1, 1, FLAT, [1.0] * 11)) == 0.0


@pytest.mark.parametrize("s_bn,s_no,verdict", [
    (100, 300, "reproduced"), (100, None, "reproduced"), (200, 300, "partly reproduced"),
    (300, 300, "not reproduced"), (None, 300, "not reproduced")])
def test_faster_rule(s_bn, s_no, verdict):
    out = claims.fig1([_run("no_bn", s_no, 0.9, 0.9, MOVING, [1] * 11),
                       _run("bn", s_bn, 0.9, 0.9, FLAT, [1] * 11)])
    assert out[0]["verdict"] == verdict


def test_accuracy_and_stability_rules():
    out = claims.fig1([_run("no_bn", 300, 0.95, 0.97, MOVING, [1] * 11),
                       _run("bn", 100, 0.96, 0.96, FLAT, [1] * 11)])
    assert out[1]["verdict"] == "partly reproduced"
    assert out[2]["verdict"] == "reproduced"
    out = claims.fig1([_run("no_bn", 300, 0.95, 0.97, FLAT, [1] * 11),
                       _run("bn", 100, 0.96, 0.98, MOVING, [1] * 11)])
    assert out[1]["verdict"] == "reproduced"
    assert out[2]["verdict"] == "not reproduced"


def test_experiments_without_claims_state_none():
    assert claims.compute("something_else", []) == []

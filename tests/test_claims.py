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


def _point(seed, s2t, div=None, acc=0.95, **cfg):
    return {"name": f"{cfg}-{seed}", "config": {"seed": seed, "target_accuracy": 0.9, "steps": 100, **cfg},
            "curves": {}, "diverged_at_step": div,
            "final": {"steps_to_target": s2t, "max_test_accuracy": acc, "test_accuracy": acc}}


def _lr_runs(bn_max, nobn_max, lrs=(0.1, 1.0, 10.0, 100.0)):
    runs = []
    for act in ("sigmoid", "relu"):
        for norm, mx in (("none", nobn_max), ("batchnorm", bn_max)):
            for lr in lrs:
                for seed in range(3):
                    ok = mx is not None and lr <= mx
                    runs.append(_point(seed, 100 if ok else None, None if ok or norm == "batchnorm" else 5,
                                       **{"model.activation": act, "model.norm": norm, "learning_rate": lr}))
    return runs


@pytest.mark.parametrize("bn_max,nobn_max,verdict", [
    (100.0, 1.0, "reproduced"), (10.0, 1.0, "reproduced"), (1.0, 0.1, "reproduced"),
    (10.0, 10.0, "not reproduced"), (100.0, None, "reproduced"), (1.0, 10.0, "not reproduced")])
def test_lr_sweep_rule(bn_max, nobn_max, verdict):
    out = claims.compute("lr_sweep", _lr_runs(bn_max, nobn_max))
    assert out[0]["verdict"] == verdict, out[0]["measured"]
    assert out[1]["verdict"] in ("reproduced", "not reproduced")


def test_settings_need_a_majority_of_seeds():
    runs = [_point(0, 100, lr=1.0), _point(1, None, lr=1.0), _point(2, 50, lr=1.0),
            _point(0, None, lr=2.0), _point(1, None, lr=2.0), _point(2, 50, lr=2.0)]
    groups = claims.settings(runs)
    assert [claims.trains(g) for g in groups.values()] == [True, False]


def test_init_sweep_rule():
    def runs(bn_ok, nobn_ok):
        return [_point(s, 10 if std in ok else None, **{"model.norm": n, "model.init_std": std})
                for n, ok in (("batchnorm", bn_ok), ("none", nobn_ok))
                for std in (0.001, 0.01, 0.1, 1.0, 10.0) for s in range(3)]
    assert claims.compute("init_sweep", runs({0.001, 0.01, 0.1, 1.0}, {0.1, 1.0}))[0]["verdict"] == "reproduced"
    assert claims.compute("init_sweep", runs({0.01, 0.1, 1.0}, {0.1, 1.0}))[0]["verdict"] == "partly reproduced"
    assert claims.compute("init_sweep", runs({0.1}, {0.1, 1.0}))[0]["verdict"] == "not reproduced"


def test_lr_init_grid_rule():
    runs = [_point(0, 10 if (n == "batchnorm" or lr < 1) else None,
                   **{"model.norm": n, "learning_rate": lr, "model.init_std": std})
            for n in ("none", "batchnorm") for lr in (0.1, 1.0, 10.0) for std in (0.01, 0.1)]
    out = claims.compute("lr_init_grid", runs)
    assert out[0]["verdict"] == "reproduced" and "BN 6/6, no BN 2/6" in out[0]["measured"]


def test_activation_sweep_rules():
    runs = []
    for act in ("sigmoid", "tanh", "relu"):
        for widths in ([100] * 3, [100] * 10):
            for norm in ("none", "batchnorm"):
                for seed in range(3):
                    bad = norm == "none" and act == "sigmoid" and len(widths) == 10
                    r = _point(seed, None if bad else 100, acc=0.11 if bad else 0.95,
                               **{"model.activation": act, "model.widths": widths, "model.norm": norm})
                    r["final"].update({"mean_saturation_layer1": 0.3 if norm == "none" else 0.01,
                                       "mean_ics_w1_layer1": 0.2 if norm == "none" else 0.1})
                    runs.append(r)
    out = {c["id"].split(".")[1]: c["verdict"] for c in claims.compute("activation_sweep", runs)}
    assert out == {"deep_sigmoid_trains_with_bn": "reproduced",
                   "saturating_nonlinearities_train_with_bn": "reproduced",
                   "bn_reduces_saturation": "reproduced",
                   "bn_reduces_internal_covariate_shift": "reproduced"}


def test_fig1_seeds_summarizes_per_seed_verdicts():
    runs = []
    for seed, s_bn in ((0, 100), (1, 100), (2, 300)):
        for name, s2t, med in (("no_bn", 300, MOVING), ("bn", s_bn, FLAT)):
            r = _run(name, s2t, 0.9, 0.9, med, [1] * 11)
            r["config"].update({"seed": seed, "model.norm": "batchnorm" if name == "bn" else "none"})
            runs.append(r)
    out = claims.compute("fig1_seeds", runs)
    assert out[0]["id"] == "fig1_seeds.bn_trains_faster"
    assert out[0]["verdict"] == "partly reproduced" and "2 reproduced" in out[0]["measured"]
    assert out[2]["verdict"] == "reproduced"

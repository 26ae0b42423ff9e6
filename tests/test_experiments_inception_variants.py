"""The Inception variants experiment: its claims on synthetic runs with known answers, its figure,
its configs, and what the variants added to the trainer (exponential decay, L2 on the weights) and
to the data sources (a validation split, a test subset). No training beyond a few jitted steps."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from bn_experiments.configs import default, inception_lr_calibration
from bn_experiments.configs import inception_variants as cfg_mod
from claim_fixtures import by_id
from figure_fixtures import check_pngs

from bn_experiments import config as config_lib
from bn_experiments import data as data_lib
from bn_experiments import stats, sweep, train
from bn_experiments.experiments import inception_variants as iv

STEPS, EVERY = 800, 40


def _run(variant, seed, reach_at=None, best=0.9, chance=False, diverged=None):
    """A run whose test accuracy climbs linearly to `best` at step `reach_at` and stays there
    (`chance`: flat at 0.1)."""
    steps = list(range(0, STEPS + 1, EVERY))
    if chance:
        acc = [0.1] * len(steps)
    else:
        acc = [round(min(best, 0.1 + (best - 0.1) * s / reach_at), 6) for s in steps]
    if diverged is not None:
        steps = [s for s in steps if s < diverged]
        acc = acc[:len(steps)]
    final = {"max_test_accuracy": max(acc), "did_not_train": float(max(acc) < 0.15),
             "diverged": float(diverged is not None),
             "mean_saturation_layer1": 0.5 if variant == "Inception-Sigmoid" else 0.01,
             "mean_saturation_layer2": 0.3 if variant == "Inception-Sigmoid" else 0.02,
             "mean_ics_w1_layer1": (0.2 if "BN" in variant else 0.5) + 0.01 * seed}
    return {"name": f"{variant},seed={seed}",
            "config": {"seed": seed, "steps": STEPS, "eval_every": EVERY, "model.norm": "none",
                       "batch_size": 32, "data.source": "synthetic"},
            "curves": {"test_accuracy": {"step": steps, "value": acc}},
            "final": final, "diverged_at_step": diverged}


def _table(seeds=5, x5_reach=100, x5_best=0.97, sigmoid_chance=(True,) * 3, hot_diverges=True):
    runs = []
    for s in range(seeds):
        runs.append(_run("Inception", s, reach_at=760 - 40 * (s % 2), best=0.9 + 0.004 * s))
        runs.append(_run("BN-x5", s, reach_at=x5_reach + 20 * s, best=x5_best))
        runs.append(_run("BN-x30", s, reach_at=160, best=0.98))
    for s in range(3):
        runs.append(_run("BN-Baseline", s, reach_at=400, best=0.95))
        runs.append(_run("BN-x5-Sigmoid", s, reach_at=300, best=0.93))
        runs.append(_run("Inception-Sigmoid", s, reach_at=700, best=0.5,
                         chance=sigmoid_chance[s]))
        runs.append(_run("Inception-x5", s, reach_at=500, best=0.88,
                         diverged=30 if hot_diverges else None))
    return runs


def test_steps_to_reach_and_the_censoring_bound():
    run = _run("BN-x5", 0, reach_at=200, best=0.95)
    assert iv.steps_to(run, 0.5) == 120   # 0.1 + 0.85 * s / 200 >= 0.5 first at s = 120
    assert iv.steps_to(run, 0.99) == STEPS + EVERY  # never: one evaluation after the end
    # A final max rounded in the curve still counts as reached.
    assert iv.steps_to(run, 0.95 + 4e-7) == 200


def test_claims_on_known_answers():
    rows = by_id(iv.claims(_table()))
    fast = rows["bn_x5_reaches_inception_best_sooner"]
    assert fast["verdict"] == stats.REPRODUCED and fast["evidence"]["seeds"] == 5
    assert 4 < math.exp(fast["evidence"]["effect"]) < 7  # ~740 / ~150 steps
    assert rows["bn_x30_reaches_inception_best_sooner"]["verdict"] == stats.REPRODUCED
    assert rows["bn_x5_faster_than_bn_baseline"]["verdict"] == stats.REPRODUCED
    assert rows["bn_x30_higher_accuracy"]["verdict"] == stats.REPRODUCED
    assert rows["bn_x30_higher_accuracy_than_bn_x5"]["verdict"] == stats.REPRODUCED
    assert rows["saturating_nonlinearities_train_with_bn"]["verdict"] == stats.REPRODUCED
    assert rows["bn_prevents_divergence"]["verdict"] == stats.REPRODUCED
    assert rows["bn_reduces_saturation"]["verdict"] == stats.REPRODUCED
    # The paper's title claim is a headline claim: BN-Baseline ran 3 seeds here, it needs 5.
    ics = rows["bn_reduces_internal_covariate_shift"]
    assert ics["verdict"] == stats.INCONCLUSIVE and ics["evidence"]["ci95"][0] > 0
    assert "a verdict needs at least 5 seeds; 3 ran" in ics["measured"]
    for row in rows.values():
        assert set(row) == {"id", "claim", "source", "measured", "paper", "verdict", "figure",
                            "evidence"}


def test_headline_claims_need_five_seeds():
    rows = by_id(iv.claims(_table(seeds=3)))
    row = rows["bn_x5_reaches_inception_best_sooner"]
    assert row["verdict"] == stats.INCONCLUSIVE and "at least 5 seeds" in row["measured"]
    # BN-Baseline is not a headline comparison: 3 seeds give a verdict.
    assert rows["bn_baseline_reaches_inception_best_sooner"]["verdict"] == stats.REPRODUCED


def test_a_variant_that_never_reaches_counts_against_the_claim():
    rows = by_id(iv.claims(_table(x5_reach=100, x5_best=0.5)))  # BN-x5 stalls at 0.5
    row = rows["bn_x5_reaches_inception_best_sooner"]
    assert row["verdict"] == stats.NOT_REPRODUCED
    assert rows["bn_x5_higher_accuracy"]["verdict"] == stats.NOT_REPRODUCED


def test_sigmoid_without_bn_that_trains_makes_it_partly_reproduced():
    rows = by_id(iv.claims(_table(sigmoid_chance=(True, False, True))))
    assert rows["saturating_nonlinearities_train_with_bn"]["verdict"] == stats.PARTLY


def test_high_learning_rate_that_trains_is_not_a_failure():
    rows = by_id(iv.claims(_table(hot_diverges=False)))
    row = rows["bn_prevents_divergence"]
    # Inception-x5 trains to 0.88 against Inception's ~0.91: worse but not failed -> partly.
    assert row["verdict"] == stats.PARTLY and "0 of 3 seeds" in row["measured"]
    runs = [r for r in _table(hot_diverges=False) if not r["name"].startswith("Inception-x5")]
    runs += [_run("Inception-x5", s, reach_at=600, best=0.9 + 0.004 * s) for s in range(3)]
    assert by_id(iv.claims(runs))["bn_prevents_divergence"]["verdict"] == stats.NOT_REPRODUCED


def test_missing_variants_give_fewer_rows_never_a_crash():
    only = [r for r in _table() if r["name"].startswith(("Inception,", "BN-x5,"))]
    ids = set(by_id(iv.claims(only)))
    assert ids == {"bn_x5_reaches_inception_best_sooner", "bn_x5_higher_accuracy"}
    assert iv.claims([r for r in _table() if r["name"].startswith("BN-")]) == []


def test_figure(tmp_path):
    paths = iv.figures({"runs": _table()}, tmp_path)
    check_pngs(paths, tmp_path, [iv.FIGURE])


# --------------------------------------------------------------------------------- the configs

def _runs(config):
    return {r.name: r for r in sweep.expand(config)}


def test_variants_config_sets_each_variant_as_the_paper_describes():
    runs = _runs(cfg_mod.get_config())
    assert len(runs) == 5 * 3 + 3 * 4
    base = runs["Inception,seed=0"]
    assert base.static.model.norm == "none" and base.static.model.dropout == cfg_mod.DROPOUT
    assert base.numbers.learning_rate == cfg_mod.BASE_LR and base.numbers.momentum == 0.9
    assert base.static.schedule == "exponential" and base.static.decay_rate == 0.96
    for name, lr in (("BN-x5,seed=0", 5), ("BN-x30,seed=4", 30), ("BN-x5-Sigmoid,seed=2", 5)):
        run = runs[name]
        assert run.numbers.learning_rate == pytest.approx(lr * cfg_mod.BASE_LR)
        assert run.static.model.norm == "batchnorm" and run.static.model.dropout == 0.0
        assert run.static.weight_decay == pytest.approx(base.static.weight_decay / 5)
        assert run.static.decay_steps * 6 == base.static.decay_steps
    assert runs["BN-x5-Sigmoid,seed=0"].static.model.activation == "sigmoid"
    baseline = runs["BN-Baseline,seed=1"]
    assert baseline.static.model.norm == "batchnorm"
    assert (baseline.static.model.dropout, baseline.static.weight_decay, baseline.numbers
            .learning_rate) == (base.static.model.dropout, base.static.weight_decay,
                                base.numbers.learning_rate)
    hot = runs["Inception-x5,seed=0"]
    assert hot.numbers.learning_rate == pytest.approx(5 * cfg_mod.BASE_LR)
    assert hot.static == base.static  # the same program: only the learning rate differs
    assert runs["Inception-Sigmoid,seed=0"].static.model.norm == "none"


def test_full_width_is_one_override_and_calibration_grid():
    config = cfg_mod.get_config()
    config_lib.set_dotted(config, "model.width", 1.0)
    run = sweep.expand(config, input_shape=(32, 32, 3))[0]
    assert run.static.model.plan[0].features == 96
    cal = _runs(inception_lr_calibration.get_config())
    assert sorted({r.numbers.learning_rate for r in cal.values()}) == sorted(
        inception_lr_calibration.LEARNING_RATES)
    assert cfg_mod.BASE_LR in inception_lr_calibration.LEARNING_RATES


def test_calibration_rule_picks_the_best_mean_and_breaks_ties_toward_the_smaller_rate():
    def run(lr, acc):
        return {"config": {"learning_rate": lr}, "final": {"max_test_accuracy": acc}}
    runs = [run(0.01, 0.90), run(0.01, 0.92), run(0.03, 0.95), run(0.03, 0.93), run(0.1, None)]
    assert inception_lr_calibration.choose(runs) == 0.03
    runs += [run(0.003, 0.941), run(0.003, 0.938)]  # 0.9395 vs 0.94: a tie
    assert inception_lr_calibration.choose(runs) == 0.003


# -------------------------------------------------------------- trainer: decay and weight decay

def _static(**over):
    config = default.get_config()
    for key, value in over.items():
        config_lib.set_dotted(config, key, value)
    return config_lib.runs(config)[0].static


def test_exponential_schedule():
    schedule = train._schedule(_static(**{"optimizer.schedule": "exponential",
                                          "optimizer.decay_steps": 10,
                                          "optimizer.decay_rate": 0.5}))
    np.testing.assert_allclose([schedule(0), schedule(10), schedule(25)],
                               [1.0, 0.5, 0.5 ** 2.5], rtol=1e-6)


def test_weight_decay_adds_l2_on_weights_only():
    params = {"convs": [{"w": jnp.ones((2, 2)), "bn": {"scale": jnp.ones(2)}, "b": jnp.ones(2)}],
              "dense": {"w": 2 * jnp.ones(3)}}
    grads = jax.tree.map(jnp.zeros_like, params)
    tx = train._optimizer(_static(**{"optimizer.weight_decay": 0.1}))
    state = tx.init(params)
    updates, _ = tx.update(grads, state, params)  # learning rate 1: update = -(0.1 * w)
    np.testing.assert_allclose(updates["convs"][0]["w"], -0.1)
    np.testing.assert_allclose(updates["dense"]["w"], -0.2)
    np.testing.assert_array_equal(updates["convs"][0]["b"], 0)
    np.testing.assert_array_equal(updates["convs"][0]["bn"]["scale"], 0)


def test_defaults_keep_the_optimizer_of_every_existing_run():
    tx = train._optimizer(_static())
    expected = optax.inject_hyperparams(optax.sgd)(learning_rate=1.0, momentum=None)
    params = {"w": jnp.ones(3)}
    assert jax.tree.structure(tx.init(params)) == jax.tree.structure(expected.init(params))


@pytest.mark.parametrize("key,value,words", [
    ("optimizer.weight_decay", -1.0, "optimizer.weight_decay=-1.0 is invalid"),
    ("optimizer.decay_rate", 1.5, "optimizer.decay_rate=1.5 is invalid"),
    ("optimizer.decay_steps", 0, "optimizer.decay_steps=0 is invalid"),
    ("optimizer.schedule", "step", "use one of ['constant', 'cosine', 'exponential']")])
def test_new_optimizer_fields_are_validated_in_one_line(key, value, words):
    config = default.get_config()
    config_lib.set_dotted(config, key, value)
    with pytest.raises(config_lib.ConfigError) as err:
        config_lib.validate(config)
    assert words in str(err.value) and "\n" not in str(err.value)


# ------------------------------------------------------------------------------- data sources

def test_validation_split_holds_out_training_examples():
    full = data_lib.load("synthetic:300:50")
    ds = data_lib.load("validation:100:synthetic:300:50")
    assert (ds.num_train, ds.num_test) == (200, 100)
    rows = {x.tobytes() for x in full.x_train}
    held = {x.tobytes() for x in ds.x_test}
    kept = {x.tobytes() for x in ds.x_train}
    assert held <= rows and kept <= rows and not held & kept
    again = data_lib.load("validation:100:synthetic:300:50")
    np.testing.assert_array_equal(again.x_test, ds.x_test)


def test_test_subset_keeps_the_training_set():
    full = data_lib.load("synthetic:300:50")
    ds = data_lib.load("test_subset:20:synthetic:300:50")
    np.testing.assert_array_equal(ds.x_train, full.x_train)
    assert ds.num_test == 20 and {x.tobytes() for x in ds.x_test} <= {x.tobytes()
                                                                       for x in full.x_test}


@pytest.mark.parametrize("source,words", [("validation:0:synthetic", "positive integer"),
                                          ("test_subset:9:", "positive integer"),
                                          ("validation:2048:synthetic", "too large"),
                                          ("test_subset:513:synthetic", "too large")])
def test_bad_subsets_are_one_line_errors(source, words):
    with pytest.raises(data_lib.DataError) as err:
        data_lib.load(source)
    assert words in str(err.value) and "\n" not in str(err.value)

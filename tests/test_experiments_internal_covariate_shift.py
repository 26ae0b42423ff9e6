"""The internal-covariate-shift probe on known answers, its claims, its figures (no training)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from claim_fixtures import by_id
from figure_fixtures import check_pngs
from probe_fixtures import mlp_config, mlp_inputs

from bn_experiments import experiments, summary
from bn_experiments.configs import internal_covariate_shift as config_file
from bn_experiments.experiments import internal_covariate_shift as ics

N = 2 * ics.PROBE_BATCH  # two probe batches keep the test fast


def _probe(norm: str, noise: bool = False, move_layer: int | None = None, steps=(0, 0)):
    """The probe at step `steps[1]` with the previous evaluation at `steps[0]`; `move_layer`
    (1-based) is the one hidden layer whose weights changed since (None: nothing changed)."""
    inp = mlp_inputs(N, norm=norm, bn_noise=noise)
    prev = inp.params
    now = prev
    if move_layer is not None:
        hidden = list(prev["hidden"])
        w = hidden[move_layer - 1]["w"]
        hidden[move_layer - 1] = {**hidden[move_layer - 1],
                                  "w": w + 0.1 * jax.random.normal(jax.random.key(9), w.shape)}
        now = {**prev, "hidden": hidden}
    inp = inp._replace(model=mlp_config(norm=norm, bn_noise=noise), prev_state=inp.state,
                       prev_step=jnp.int32(steps[0]), step=jnp.int32(steps[1]))
    out = jax.jit(lambda p, q: ics.measure(inp._replace(params=p, prev_params=q)))(now, prev)
    return {k: np.asarray(v) for k, v in out.items()}


@pytest.mark.parametrize("norm", ["none", "batchnorm"])
def test_probe_known_answers(norm):
    same = _probe(norm)  # step 0: the previous evaluation is this one
    assert same["full_w1"].shape == (3,) and same["grad_rel"].shape == (4,)
    for key in ("full_w1", "input_w1"):
        np.testing.assert_allclose(same[key], 0.0, atol=1e-6)
    # KS moves in steps of 1/n: float rounding between the two passes may move one example.
    for key in ("full_ks", "input_ks"):
        np.testing.assert_allclose(same[key], 0.0, atol=1 / N + 1e-6)
    assert same["grad_rel"][0] == pytest.approx(0.0, abs=1e-6)  # nothing below layer 1
    assert (same["grad_rel"][1:] > 0).all() and (same["grad_cos"] <= 1.0 + 1e-6).all()
    # Only layer 2's weights changed: its full shift is not 0, its input-induced part is.
    moved = _probe(norm, move_layer=2, steps=(10, 20))
    assert moved["full_w1"][1] > 0.01 and moved["full_w1"][0] == pytest.approx(0.0, abs=1e-6)
    assert moved["input_w1"][1] == pytest.approx(0.0, abs=1e-6)
    assert moved["input_w1"][2] > 1e-3


def test_noise_moves_the_distributions_between_evaluations_only_in_the_noisy_arms():
    """Same parameters, a later step: only the noise draw differs. Without noise nothing moves."""
    quiet = _probe("batchnorm", steps=(10, 20))
    np.testing.assert_allclose(quiet["full_w1"], 0.0, atol=1e-6)
    noisy = _probe("batchnorm", noise=True, steps=(10, 20))
    # One noise draw per evaluation: per-unit shifts ~U(-0.5, 0.5) move each unit by ~1/3 of its
    # spread; layer 1's input-induced part stays 0 (its input is the data).
    assert (noisy["full_w1"] > 0.15).all()
    assert noisy["input_w1"][0] == 0.0 and (noisy["input_w1"][1:] > 0).all()
    standard_noise = _probe("none", noise=True, steps=(10, 20))
    assert (standard_noise["full_w1"] > 0.05).all()


def test_phase_boundary_follows_the_dense_schedule():
    run = {"config": {"eval_every": 100, "eval_steps": list(range(10, 500, 10))}}
    assert ics.phase_boundary(run) == 500
    assert ics.phase_boundary({"config": {"eval_every": 100, "eval_steps": [50, 200]}}) == 200
    assert ics.phase_boundary({"config": {"eval_every": 250}}) == 250


def test_config_has_fifty_points_per_phase_and_the_four_arms():
    cfg = config_file.get_config()
    steps = sorted(set(cfg.eval_steps) | set(range(cfg.eval_every, cfg.steps + 1, cfg.eval_every)))
    bound = ics.phase_boundary({"config": {"eval_every": cfg.eval_every,
                                           "eval_steps": list(cfg.eval_steps)}})
    # At least 50 gradient-ICS measurements per phase: evaluations x probe batches.
    for n in (sum(s <= bound for s in steps), sum(s > bound for s in steps)):
        assert n >= 5 and n * ics.PROBE_BATCHES >= 50
    grid = dict(cfg.grid)
    assert set(grid["model.norm"]) == {"none", "batchnorm"} and set(grid["model.bn_noise"]) == {
        False, True}
    assert len(grid["seed"]) == 5
    quick = config_file.get_config("quick")
    assert max(quick.eval_steps) < quick.steps


# ------------------------------------------------------------------------- claims (no JAX)

LEVELS = {"standard": {"input_w1": 0.3, "full_w1": 1.0, "grad_rel": 0.03, "acc": 0.95},
          "BN": {"input_w1": 0.03, "full_w1": 0.04, "grad_rel": 0.2, "acc": 0.97},
          "noisy BN": {"input_w1": 0.035, "full_w1": 0.3, "grad_rel": 0.22, "acc": 0.968},
          "standard + noise": {"input_w1": 0.6, "full_w1": 1.2, "grad_rel": 0.04, "acc": 0.94}}
STEPS = [0, 10, 20, 30, 100, 200, 300]


def _run(arm, seed, levels):
    norm, noise = ics.ARMS[arm]
    lv = levels[arm]
    jitter = 1 + 0.05 * seed
    curves = {"test_accuracy": {"step": STEPS, "value": [0.1] + [lv["acc"]] * (len(STEPS) - 1)}}
    for key, layers in (("full_w1", 3), ("full_ks", 3), ("input_w1", 3), ("input_ks", 3),
                        ("grad_rel", 4), ("grad_cos", 4)):
        base = lv.get(key, 0.5 if key.endswith("ks") else 0.99)
        for l in range(1, layers + 1):
            zero = l == 1 and key in ("input_w1", "input_ks", "grad_rel")
            value = 0.0 if zero else (1.0 if l == 1 and key == "grad_cos" else base * jitter)
            curves[f"probe_{key}_layer{l}"] = {"step": STEPS, "value": [0.0] + [value] * 6}
    acc = lv["acc"] - 0.001 * seed
    return {"name": f"model.norm={norm},model.bn_noise={noise},seed={seed}",
            "config": {"model.norm": norm, "model.bn_noise": noise, "seed": seed, "eval_every": 100,
                       "eval_steps": [10, 20, 30], "steps": 300, "learning_rate": 0.5,
                       "batch_size": 60},
            "curves": curves, "diverged_at_step": None,
            "final": {"test_accuracy": acc, "auc_test_accuracy": acc - 0.05}}


def _runs(seeds=5, levels=LEVELS):
    return [_run(arm, s, levels) for arm in ics.ARMS for s in range(seeds)]


def test_claims_known_answers():
    rows = by_id(ics.claims(_runs()))
    assert set(rows) == {"bn_reduces_ics_input_induced", "bn_reduces_ics_gradient",
                         "noisy_bn_trains_as_well_as_bn", "noisy_bn_larger_distributional_ics"}
    assert rows["bn_reduces_ics_input_induced"]["verdict"] == "reproduced"
    assert rows["bn_reduces_ics_input_induced"]["evidence"]["effect"] == pytest.approx(1.0, abs=0.01)
    # BN's gradient ICS is larger here (as Santurkar et al. find): the claim is not reproduced.
    assert rows["bn_reduces_ics_gradient"]["verdict"] == "not reproduced"
    assert rows["noisy_bn_trains_as_well_as_bn"]["verdict"] == "reproduced"
    assert rows["noisy_bn_larger_distributional_ics"]["verdict"] == "reproduced"
    for row in rows.values():
        assert row["evidence"]["seeds"] == 5 and row["figure"] == ics.FIGURE
    assert not summary.problems({"experiment": "internal_covariate_shift", "runs": _runs(),
                                 "claims": list(rows.values())})


def test_title_claims_need_five_seeds_and_accuracy_is_non_inferiority():
    rows = by_id(ics.claims(_runs(seeds=3)))
    assert rows["bn_reduces_ics_input_induced"]["verdict"] == "inconclusive"
    assert rows["noisy_bn_larger_distributional_ics"]["verdict"] == "reproduced"
    worse = {**LEVELS, "noisy BN": {**LEVELS["noisy BN"], "acc": 0.90}}
    assert by_id(ics.claims(_runs(levels=worse)))["noisy_bn_trains_as_well_as_bn"][
        "verdict"] == "not reproduced"
    same_ics = {**LEVELS, "BN": {**LEVELS["BN"], "input_w1": 0.3}}
    assert by_id(ics.claims(_runs(levels=same_ics)))["bn_reduces_ics_input_induced"][
        "verdict"] == "inconclusive"
    assert ics.claims(_runs()[:5]) == []  # the standard arm alone: nothing to compare


def test_phase_values_split_at_the_boundary():
    run = _run("BN", 0, LEVELS)
    # eval_steps (10, 20, 30), eval_every 100: the early phase is steps 10-100, the late 200-300.
    run["curves"]["probe_full_w1_layer2"]["value"] = [9.0, 1.0, 1.0, 1.0, 1.0, 3.0, 3.0]
    early, late = ics.phase_value(run, "full_w1", "early"), ics.phase_value(run, "full_w1", "late")
    assert early == pytest.approx((0.04 + 1.0 + 0.04) / 3)
    assert late == pytest.approx((0.04 + 3.0 + 0.04) / 3)
    assert ics.phase_value(run, "full_w1", "late", first_layer=2) == pytest.approx((3.0 + 0.04) / 2)
    assert ics.phase_points([run]) == {"early": 4, "late": 2}


def test_figures(tmp_path):
    runs = _runs(3)
    summary.write(tmp_path / "summary.json", {"experiment": "internal_covariate_shift",
                                              "runs": runs, "claims": ics.claims(runs)})
    check_pngs(experiments.draw_figures(tmp_path), tmp_path, [ics.FIGURE, ics.LAYERS_FIGURE])

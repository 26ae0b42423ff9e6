"""Normalization outside the gradient step: Sec. 2's mechanism on known answers, the probe, the
growth measures, the claims, the figure (no training)."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from claim_fixtures import by_id
from figure_fixtures import check_pngs
from probe_fixtures import mlp_inputs, run_probe

from bn_experiments import batchnorm, experiments, summary
from bn_experiments.experiments import normalization_outside_gradient as nog


def test_sec2_bias_update_outside_the_gradient_changes_nothing():
    """IS Sec. 2: x_hat = x - E[x] with x = u + b. BN's gradient w.r.t. b is 0 (b has no effect);
    with the mean constant to the gradient it is not, and the step on b leaves the loss unchanged."""
    u = jax.random.normal(jax.random.key(0), (32, 4))
    target = jax.random.normal(jax.random.key(1), (32, 4))
    state = batchnorm.init(4)[1]

    def loss(b, stop):
        y, _ = batchnorm.apply({}, state, u + b, train=True, use_scale=False, use_bias=False,
                               stop_gradient_stats=stop)
        return jnp.mean((y - target) ** 2)

    b = jnp.zeros(4)
    assert float(jnp.max(jnp.abs(jax.grad(loss)(b, False)))) < 1e-6
    g = jax.grad(loss)(b, True)
    assert float(jnp.max(jnp.abs(g))) > 1e-3
    stepped = b - 10.0 * g
    assert float(loss(stepped, False)) == pytest.approx(float(loss(b, False)), rel=1e-5)


def test_stop_gradient_statistics_give_the_weights_a_radial_gradient():
    """BN is invariant to each unit's weight scale, so its gradient is orthogonal to each column
    of W; with the statistics outside the gradient it is not, so SGD changes ||W||."""
    inner = {}
    for stop in (False, True):
        inp = mlp_inputs(n=60, norm="batchnorm", bn_stop_gradient=stop)
        g = jax.grad(lambda p: inp.loss_fn(p, inp.state, inp.x, inp.y)[0])(inp.params)
        w, gw = inp.params["hidden"][1]["w"], g["hidden"][1]["w"]
        cos = jnp.sum(w * gw, 0) / (jnp.linalg.norm(w, axis=0) * jnp.linalg.norm(gw, axis=0))
        inner[stop] = float(jnp.max(jnp.abs(cos)))
    assert inner[False] < 1e-3 and inner[True] > 1e-2


@pytest.mark.parametrize("affine", [True, False])
def test_probe_known_answers(affine):
    inp = mlp_inputs(n=60, norm="batchnorm", bn_affine=affine)
    out = run_probe(nog.measure, inp)
    _, _, inter = inp.apply(inp.params, inp.state, inp.x, True)
    for l, z in enumerate(inter["bn_inputs"]):
        z = np.asarray(z, np.float64)
        assert out["weight_norm"][l] == pytest.approx(float(jnp.linalg.norm(inp.params["hidden"][l]["w"])), rel=1e-5)
        assert out["input_mean"][l] == pytest.approx(np.sqrt(np.mean(z.mean(0) ** 2)), rel=1e-4)
        assert out["input_std"][l] == pytest.approx(np.sqrt(np.mean(z.var(0))), rel=1e-4)
    if affine:  # gamma = 1, beta = 0 at init
        assert out["gamma_rms"] == pytest.approx([1, 1, 1]) and out["beta_rms"] == [0, 0, 0]
    else:
        assert "gamma_rms" not in out and "beta_rms" not in out


def test_late_growth_and_flat_loss():
    steps = list(range(0, 1001, 100))
    run = {"config": {"steps": 1000},
           "curves": {"w": {"step": steps, "value": [1 + s / 1000 for s in steps]},
                      "train_loss": {"step": list(range(1000)), "value": [0.5] * 1000}}}
    assert nog.late_growth(run, "w") == pytest.approx(math.log(2 / 1.5))
    assert nog.loss_change(run, 2) == pytest.approx(0)
    run["curves"]["train_loss"]["value"] = [1.0] * 50 + [0.5] * 950
    assert nog.loss_change(run, 1) == pytest.approx(-0.5) and nog.loss_change(run, 2) == 0
    run["curves"]["w"]["value"][7:] = [None] * 4  # diverged before the end: last finite value
    assert nog.late_growth(run, "w") == pytest.approx(math.log(1.6 / 1.5))
    run["curves"]["w"]["value"][6:] = [None] * 5  # nothing after the middle
    assert nog.late_growth(run, "w") is None
    run["curves"]["w"]["value"][4:] = [None] * 7  # never reached the middle
    assert nog.late_growth(run, "w") is None


def _run(stop, affine, seed, growth, loss, diverged=None):
    steps = list(range(0, 1001, 100))
    curves = {f"probe_{k}_layer{l}": {"step": steps, "value": [math.exp(growth * s / 500) for s in steps]}
              for k in ("weight_norm", "input_mean", "input_std") for l in (1, 2, 3)}
    if affine:
        curves.update({f"probe_{k}_layer{l}": {"step": steps, "value": [v] * len(steps)}
                       for k, v in (("gamma_rms", 1.2), ("beta_rms", 0.3)) for l in (1, 2, 3)})
    curves["train_loss"] = {"step": list(range(1000)), "value": [loss] * 1000}
    return {"name": f"model.bn_stop_gradient={stop},model.bn_affine={affine},seed={seed}",
            "config": {"model.bn_stop_gradient": stop, "model.bn_affine": affine, "seed": seed,
                       "model.norm": "batchnorm", "steps": 1000, "learning_rate": 0.1},
            "curves": curves, "final": {"train_loss": loss}, "diverged_at_step": diverged}


def _runs(seeds=3, sg_growth=1.0, sg_loss=0.5):
    return [_run(stop, affine, s, (sg_growth if stop else 0.05) * (1 + 0.1 * s),
                 (sg_loss if stop else 0.1) + 0.01 * s)
            for stop in (False, True) for affine in (True, False) for s in range(seeds)]


def test_claims_known_answers():
    rows = by_id(nog.claims(_runs()))
    assert rows["statistics_in_backprop"]["verdict"] == "reproduced"
    assert rows["statistics_in_backprop"]["evidence"]["effect"] == pytest.approx(0.4)
    grow = rows["parameters_grow_outside_gradient"]
    assert grow["verdict"] == "reproduced" and "settings" in grow["measured"]
    assert grow["evidence"]["effect"] == pytest.approx(0.95 * 1.1, rel=1e-6)
    rows = by_id(nog.claims(_runs(sg_growth=0.05, sg_loss=0.05)))
    assert rows["statistics_in_backprop"]["verdict"] == "not reproduced"
    assert rows["parameters_grow_outside_gradient"]["verdict"] == "inconclusive"
    assert {r["verdict"] for r in nog.claims(_runs(seeds=1))} == {"inconclusive"}
    assert nog.claims(_runs()[:6]) == []  # no stop-gradient arm


def test_a_diverged_run_counts_as_chance_loss():
    runs = _runs()
    runs[6] = _run(True, True, 0, 1.0, float("nan"), diverged=300)
    runs[6]["final"]["train_loss"] = None
    assert nog.final_loss(runs[6]) == pytest.approx(math.log(10))
    assert "1 of 3 diverged" in by_id(nog.claims(runs))["statistics_in_backprop"]["measured"]


def test_figure(tmp_path):
    runs = _runs()
    summary.write(tmp_path / "summary.json", {"experiment": "normalization_outside_gradient",
                                              "runs": runs, "claims": nog.claims(runs)})
    check_pngs(experiments.draw_figures(tmp_path), tmp_path, [nog.FIGURE])

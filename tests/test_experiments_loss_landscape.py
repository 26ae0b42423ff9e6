"""The loss-landscape probe on known answers (quadratic and linear losses), its claims, its figure."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from claim_fixtures import by_id
from figure_fixtures import check_pngs
from probe_fixtures import mlp_inputs, run_probe

from bn_experiments import experiments, summary
from bn_experiments.experiments import loss_landscape as ll

LR = 0.1


def _along(loss, params):
    out = jax.jit(lambda p: ll.along_gradient(jax.value_and_grad(loss), p, jnp.float32(LR)))(params)
    return {k: float(v) for k, v in out.items()}


def run_measure(measure, inp):
    """The probe's outputs as numpy arrays (lists of per-layer values become vectors)."""
    return {k: np.asarray(v) for k, v in run_probe(measure, inp).items()}


def test_quadratic_bowl_has_beta_equal_to_its_curvature():
    """L = a/2 ||theta||^2: g = a theta, so ||g(theta_c) - g|| / ||theta_c - theta|| = a for every
    step, the gradient change is largest at c = 4, and the loss is a parabola in c."""
    a = 3.0
    theta = {"w": jnp.asarray([1.0, -2.0, 0.5]), "b": [jnp.asarray(2.0)]}
    sq = float(sum(jnp.sum(x ** 2) for x in jax.tree.leaves(theta)))
    out = _along(lambda p: 0.5 * a * sum(jnp.sum(x ** 2) for x in jax.tree.leaves(p)), theta)
    assert out["beta_smoothness"] == pytest.approx(a, rel=1e-5)
    assert out["grad_change"] == pytest.approx(a * a * 4 * LR * np.sqrt(sq), rel=1e-5)
    losses = [0.5 * a * (1 - c * LR * a) ** 2 * sq for c in ll.MULTIPLIERS]
    assert out["loss_range"] == pytest.approx(max(losses) - min(losses), rel=1e-5)


def test_linear_loss_has_constant_gradient():
    w = jnp.asarray([0.3, -1.0, 2.0])
    out = _along(lambda p: jnp.dot(w, p), jnp.zeros(3))
    assert out["grad_change"] == 0 and out["beta_smoothness"] == 0
    span = (ll.MULTIPLIERS[-1] - ll.MULTIPLIERS[0]) * LR
    assert out["loss_range"] == pytest.approx(span * float(jnp.dot(w, w)), rel=1e-5)


def test_beta_lies_between_the_curvatures_of_an_anisotropic_bowl():
    curv = jnp.asarray([0.5, 1.0, 8.0])
    out = _along(lambda p: 0.5 * jnp.sum(curv * p ** 2), jnp.ones(3))
    assert 0.5 < out["beta_smoothness"] <= 8.0 * (1 + 1e-6)


def test_probe_on_an_mlp_averages_its_mini_batches():
    inp = mlp_inputs(ll.BATCH * ll.BATCHES, norm="batchnorm", widths=(16, 16))
    out = run_measure(ll.measure, inp)
    assert set(out) == set(ll.MEASURES)
    assert all(out[k].shape == () and out[k] > 0 for k in ll.MEASURES)

    @jax.jit
    def one(x, y):
        grad = jax.value_and_grad(lambda q: inp.loss_fn(q, inp.state, x, y)[0])
        return ll.along_gradient(grad, inp.params, inp.learning_rate)
    parts = [one(inp.x[i * ll.BATCH:(i + 1) * ll.BATCH], inp.y[i * ll.BATCH:(i + 1) * ll.BATCH])
             for i in range(ll.BATCHES)]
    for k in ll.MEASURES:
        np.testing.assert_allclose(out[k], np.mean([float(p[k]) for p in parts]), rtol=1e-4)
    assert np.std([float(p["grad_change"]) for p in parts]) > 0  # the batches differ


def _run(act, norm, seed, level, evals=8):
    steps = [100 * i for i in range(evals + 1)]
    curves = {f"probe_{m}": {"step": steps, "value": [level * (1 + 0.05 * seed)] * len(steps)}
              for m in ll.MEASURES}
    return {"name": f"model.activation={act},model.norm={norm},seed={seed}",
            "config": {"model.activation": act, "model.norm": norm, "seed": seed, "steps": 800,
                       "learning_rate": 0.1},
            "curves": curves, "final": {}, "diverged_at_step": None}


def _runs(seeds, bn_level, no_level, acts=("sigmoid", "relu")):
    return [_run(a, n, s, bn_level if n == "batchnorm" else no_level)
            for a in acts for n in ("none", "batchnorm") for s in range(seeds)]


def test_phase_means_split_the_evaluations_after_step_zero():
    run = _run("relu", "none", 0, 1.0)
    run["curves"]["probe_loss_range"]["value"] = [100.0, 1, 1, 1, 1, 3, 3, 3, 3]
    assert ll.phase_mean(run, "loss_range", "early") == 1.0
    assert ll.phase_mean(run, "loss_range", "late") == 3.0
    assert ll.points_per_phase([run]) == 4 * ll.BATCHES
    assert ll.phase_boundary([run]) == 450
    assert ll.activations(_runs(2, 0.1, 1.0, ("relu", "sigmoid"))) == ["sigmoid", "relu"]


def test_claims_known_answers():
    rows = by_id(ll.claims(_runs(3, 0.1, 1.0)))
    assert set(rows) == {"smaller_loss_range", "more_predictive_gradients", "smaller_effective_beta"}
    assert {r["verdict"] for r in rows.values()} == {"reproduced"}
    assert rows["smaller_loss_range"]["evidence"]["effect"] == pytest.approx(1.0)
    assert {r["verdict"] for r in ll.claims(_runs(3, 1.0, 0.1))} == {"not reproduced"}
    assert {r["verdict"] for r in ll.claims(_runs(3, 1.0, 1.0))} == {"inconclusive"}
    assert {r["verdict"] for r in ll.claims(_runs(1, 0.1, 1.0))} == {"inconclusive"}
    mixed = _runs(3, 0.1, 1.0, ("sigmoid",)) + _runs(3, 1.0, 0.1, ("relu",))
    assert {r["verdict"] for r in ll.claims(mixed)} == {"partly reproduced"}
    assert ll.claims([r for r in _runs(3, 0.1, 1.0) if r["config"]["model.norm"] == "none"]) == []


def test_figure(tmp_path):
    runs = _runs(3, 0.1, 1.0)
    summary.write(tmp_path / "summary.json", {"experiment": "loss_landscape", "runs": runs,
                                              "claims": ll.claims(runs)})
    check_pngs(experiments.draw_figures(tmp_path), tmp_path, [ll.FIGURE])

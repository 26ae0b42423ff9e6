"""gamma = sqrt(var + eps), beta = mean restores the un-normalized layer: the identity on known
answers, the distance measure, the probe on the MLP, the claims, the figure (no training)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from claim_fixtures import by_id
from figure_fixtures import check_pngs
from probe_fixtures import MLP, mlp_config, mlp_inputs, run_probe

from bn_experiments import batchnorm, experiments, summary
from bn_experiments.experiments import gamma_beta_identity as gb


@pytest.mark.parametrize("shift,scale", [(0.0, 1.0), (3.0, 0.2), (-50.0, 7.0)])
def test_identity_gamma_beta_make_bn_the_identity(shift, scale):
    z = shift + scale * jax.random.normal(jax.random.key(0), (64, 20))
    params = gb.identity_affine(z)
    y, _ = batchnorm.apply(params, batchnorm.init(20)[1], z, train=True)
    np.testing.assert_allclose(y, z, rtol=1e-5, atol=1e-5 * (abs(shift) + scale))
    assert float(gb.restore_error(z)) < 1e-6
    # Any other gamma / beta is not the identity.
    y2, _ = batchnorm.apply({**params, "scale": 1.1 * params["scale"]}, batchnorm.init(20)[1], z,
                            train=True)
    assert float(jnp.linalg.norm(y2 - z) / jnp.linalg.norm(z)) > 1e-3


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_restored_network_equals_the_unnormalized_network(activation):
    """Every BN layer restored: the network computes z = W u at every layer and the logits of the
    network without BN with the same weights and zero biases."""
    inp = mlp_inputs(n=60, norm="batchnorm", activation=activation)
    params = gb.restored(inp.params, inp.state, inp.x, inp.apply)
    logits, _, inter = inp.apply(params, inp.state, inp.x, True)
    for p, z in zip(inter["preacts"], inter["bn_inputs"]):
        np.testing.assert_allclose(p, z, rtol=1e-4, atol=1e-5)
    plain = mlp_config(norm="none", activation=activation)
    plain_params = {"hidden": [{"w": l["w"], "b": jnp.zeros(l["w"].shape[1])}
                               for l in inp.params["hidden"]], "output": inp.params["output"]}
    expected, _, _ = MLP.apply(plain_params, {"bn": []}, inp.x, cfg=plain, train=True)
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-5)


def test_distances_known_answers():
    z = 2.0 + 3.0 * jax.random.normal(jax.random.key(1), (512, 8))
    mean, var = batchnorm.moments(z)
    sigma = jnp.sqrt(var + gb.EPSILON)
    at_identity = gb.distances(z, sigma, mean)
    assert all(float(v) < 1e-6 for v in at_identity.values())
    doubled = gb.distances(z, 2 * sigma, mean)  # output = 2 (z - mu) + mu: one input std off
    assert float(doubled["scale_gap"]) == pytest.approx(1, rel=1e-5)
    assert float(doubled["identity_distance"]) == pytest.approx(1, rel=1e-5)
    shifted = gb.distances(z, sigma, mean + 0.5 * sigma)
    assert float(shifted["shift_gap"]) == pytest.approx(0.5, rel=1e-5)
    both = gb.distances(z, 2 * sigma, mean + 0.5 * sigma)
    assert float(both["identity_distance"]) == pytest.approx(np.sqrt(1.25), rel=1e-5)


@pytest.mark.parametrize("affine", [True, False])
def test_probe_on_the_mlp(affine):
    inp = mlp_inputs(n=60, norm="batchnorm", bn_affine=affine)
    out = run_probe(gb.measure, inp)
    assert len(out["restore_error"]) == 3 and max(out["restore_error"]) < gb.TOLERANCE
    assert ("network_restore_error" in out) == affine
    if affine:
        assert out["network_restore_error"] < gb.TOLERANCE
    # At init gamma = 1, beta = 0; layer 1's input here has a std near 0.9: the distance equals
    # sqrt(mean (1/sigma - 1)^2 + (mu/sigma)^2) computed by hand.
    _, _, inter = inp.apply(inp.params, inp.state, inp.x, True)
    z = np.asarray(inter["bn_inputs"][0], np.float64)
    sigma = np.sqrt(z.var(0) + gb.EPSILON)
    expected = np.sqrt(np.mean((1 / sigma - 1) ** 2 + (z.mean(0) / sigma) ** 2))
    assert out["identity_distance"][0] == pytest.approx(expected, rel=1e-3)


def _run(affine, seed, err, d0, d1, loss):
    steps = [0, 500, 1000]
    curves = {f"probe_{k}_layer{l}": {"step": steps, "value": v}
              for l in (1, 2, 3) for k, v in (("restore_error", [err] * 3),
                                               ("identity_distance", [d0, (d0 + d1) / 2, d1]))}
    curves["train_loss"] = {"step": [0, 1000], "value": [2.3, loss]}
    if affine:
        curves["probe_network_restore_error"] = {"step": steps, "value": [err] * 3}
    return {"name": f"model.bn_affine={affine},seed={seed}",
            "config": {"model.bn_affine": affine, "model.norm": "batchnorm", "seed": seed,
                       "steps": 1000, "learning_rate": 0.1},
            "curves": curves, "final": {"train_loss": loss, "test_accuracy": 0.9},
            "diverged_at_step": None}


def _runs(seeds=3, err=1e-7, d1=1.5, loss_without=0.3):
    """`d1`: the trained distance with gamma/beta; without them it is 1.0."""
    return [_run(a, s, err * (1 + s), 0.8, (d1 if a else 1.0) * (1 + 0.05 * s),
                 (0.1 if a else loss_without) + 0.01 * s)
            for a in (True, False) for s in range(seeds)]


def test_claims_known_answers():
    rows = by_id(gb.claims(_runs()))
    assert rows["gamma_beta_restore_identity"]["verdict"] == "reproduced"
    assert rows["trained_bn_stays_away_from_identity"]["verdict"] == "reproduced"
    assert rows["gamma_beta_add_representation_power"]["verdict"] == "reproduced"
    assert rows["gamma_beta_add_representation_power"]["evidence"]["effect"] == pytest.approx(0.2)
    rows = by_id(gb.claims(_runs(err=1e-2, d1=0.4, loss_without=0.1)))
    assert rows["gamma_beta_restore_identity"]["verdict"] == "not reproduced"
    assert rows["trained_bn_stays_away_from_identity"]["verdict"] == "not reproduced"
    assert rows["gamma_beta_add_representation_power"]["verdict"] == "inconclusive"
    assert {r["verdict"] for r in gb.claims(_runs(seeds=1))} == {"inconclusive"}
    assert len(gb.claims(_runs()[:3])) == 1  # no arm without gamma/beta: the identity only
    assert gb.claims(_runs()[3:]) == []


def test_figure(tmp_path):
    runs = _runs()
    summary.write(tmp_path / "summary.json", {"experiment": "gamma_beta_identity", "runs": runs,
                                              "claims": gb.claims(runs)})
    check_pngs(experiments.draw_figures(tmp_path), tmp_path, [gb.FIGURE])

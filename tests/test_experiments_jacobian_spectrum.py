"""The layer-Jacobian probe on known linear maps, the spectrum statistics, the claim, the figure."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from claim_fixtures import by_id
from figure_fixtures import check_pngs
from probe_fixtures import mlp_inputs, run_probe

from bn_experiments import experiments, summary
from bn_experiments.experiments import jacobian_spectrum as js


def _std(z):
    z = np.asarray(z, np.float64)
    return np.sqrt(z.var(0) + js.EPSILON)


@pytest.mark.parametrize("norm", ["none", "batchnorm"])
def test_jacobian_of_a_linear_network_is_its_weight_matrix(norm):
    """Identity activation: x_hat_{l+1} = (a_l W - mu) / sigma_{l+1} with a_l = c_l x_hat_l + ...,
    so J = diag(1/sigma_{l+1}) W^T diag(c_l), c = gamma with BN and sigma_l without."""
    inp = mlp_inputs(n=60, norm=norm, activation="identity", widths=(12, 9, 7))
    if norm == "batchnorm":  # a non-trivial gamma
        hidden = list(inp.params["hidden"])
        hidden[1] = {**hidden[1], "bn": {**hidden[1]["bn"], "scale": jnp.linspace(0.5, 2, 9)}}
        inp = inp._replace(params={**inp.params, "hidden": hidden})
    _, _, inter = inp.apply(inp.params, inp.state, inp.x, True)
    nxt = inter["bn_inputs" if norm == "batchnorm" else "preacts"][2]
    c = (np.asarray(inp.params["hidden"][1]["bn"]["scale"]) if norm == "batchnorm"
         else _std(inter["preacts"][1]))
    w = np.asarray(inp.params["hidden"][2]["w"], np.float64)
    expected = (w.T * c[None, :]) / _std(nxt)[:, None]
    jac = np.asarray(js.layer_jacobians(inp, 1, examples=5))
    assert jac.shape == (5, 7, 9)
    for j in jac:  # the same linear map for every example
        np.testing.assert_allclose(j, expected, rtol=1e-4, atol=1e-6)


def test_orthogonal_weights_on_whitened_units_give_singular_values_one():
    """BN, identity activation, orthogonal W and a batch whose normalized units are exactly
    uncorrelated: x_hat_{l+1} = x_hat_l Q has unit variances, so J = Q^T, all singular values 1."""
    inp = mlp_inputs(n=64, norm="batchnorm", activation="identity", widths=(16, 16))
    q = np.linalg.qr(np.random.default_rng(0).normal(size=(16, 16)))[0]
    # The first layer maps the inputs to an exactly whitened batch: x W1 = H (Hadamard columns).
    h = np.array([[1.0]])
    while h.shape[0] < 64:
        h = np.block([[h, h], [h, -h]])
    target = h[:, 1:17]                                    # 64 x 16, zero mean, orthogonal columns
    x = np.asarray(inp.x, np.float64).reshape(64, -1)
    w1 = np.linalg.lstsq(x, target, rcond=None)[0]
    hidden = [{**inp.params["hidden"][0], "w": jnp.asarray(w1, jnp.float32)},
              {**inp.params["hidden"][1], "w": jnp.asarray(q, jnp.float32)}]
    inp = inp._replace(params={**inp.params, "hidden": hidden})
    out = js.spectrum_stats(js.layer_jacobians(inp, 0, examples=4))
    assert float(out["sv_mean_sq"]) == pytest.approx(1, abs=1e-3)
    assert float(out["sv_log_rms"]) < 1e-3
    assert float(out["sv_p10"]) == pytest.approx(1, abs=1e-3)


def test_spectrum_stats_known_answers():
    jac = jnp.stack([jnp.diag(jnp.array([0.5, 1.0, 2.0, 4.0]))] * 3)
    out = {k: float(v) for k, v in js.spectrum_stats(jac).items()}
    assert out["sv_mean_sq"] == pytest.approx((0.25 + 1 + 4 + 16) / 4)
    assert out["sv_log_rms"] == pytest.approx(np.sqrt(np.mean(np.log([0.5, 1, 2, 4]) ** 2)), rel=1e-5)
    assert out["sv_p50"] == pytest.approx(1.5)
    singular = js.spectrum_stats(jnp.zeros((1, 3, 3)))  # floored, not -inf
    assert float(singular["sv_log_rms"]) == pytest.approx(-np.log(js.FLOOR), rel=1e-5)


@pytest.mark.parametrize("norm", ["none", "batchnorm"])
def test_probe_on_the_sigmoid_mlp(norm):
    out = run_probe(js.measure, mlp_inputs(n=60, norm=norm))
    assert set(out) == set(js.STATS) and all(len(v) == 2 for v in out.values())
    for l in range(2):
        assert 0 < out["sv_p10"][l] <= out["sv_p50"][l] <= out["sv_p90"][l]
        assert out["sv_mean_sq"][l] > 0 and out["sv_log_rms"][l] > 0


def _run(norm, seed, spread):
    steps = [0, 500, 1000]
    curves, final = {}, {}
    for l in (1, 2):
        for k, v in (("sv_log_rms", spread), ("sv_mean_sq", 1.1), ("sv_p10", 0.3),
                     ("sv_p50", 0.9), ("sv_p90", 1.6)):
            curves[f"probe_{k}_layer{l}"] = {"step": steps, "value": [v * (1 + 0.02 * seed)] * 3}
            final[f"mean_probe_{k}_layer{l}"] = v * (1 + 0.02 * seed)
    return {"name": f"model.norm={norm},seed={seed}",
            "config": {"model.norm": norm, "seed": seed, "steps": 1000, "learning_rate": 0.1},
            "curves": curves, "final": final, "diverged_at_step": None}


def _runs(seeds=3, bn=0.5, no=0.9):
    return [_run(n, s, bn if n == "batchnorm" else no) for n in ("none", "batchnorm")
            for s in range(seeds)]


def test_claims_known_answers():
    row = by_id(js.claims(_runs()))["bn_jacobian_singular_values_near_one"]
    assert row["verdict"] == "reproduced"
    assert row["evidence"]["effect"] == pytest.approx(0.4 * 1.02, rel=1e-6)
    assert "gradient_explosion" in row["claim"]
    assert js.claims(_runs(bn=0.9, no=0.5))[0]["verdict"] == "not reproduced"
    assert js.claims(_runs(seeds=1))[0]["verdict"] == "inconclusive"
    assert js.claims(_runs()[:3]) == []


def test_figure(tmp_path):
    runs = _runs()
    summary.write(tmp_path / "summary.json", {"experiment": "jacobian_spectrum", "runs": runs,
                                              "claims": js.claims(runs)})
    check_pngs(experiments.draw_figures(tmp_path), tmp_path, [js.FIGURE])

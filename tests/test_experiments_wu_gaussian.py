"""The wu_gaussian probe on known answers (Gaussian, uniform, ReLU'd samples; the layer inputs of
a real MLP), its claims, its figure (no training)."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from claim_fixtures import by_id
from figure_fixtures import check_pngs
from probe_fixtures import mlp_inputs, run_probe

from bn_experiments import experiments, summary
from bn_experiments.experiments import wu_gaussian as wg
from bn_experiments.models import mlp

N = 200_000


def _stats(v):
    return {k: float(x) for k, x in jax.jit(wg.shape_stats)(jnp.asarray(v)).items()}


def _relu_gaussian_moments():
    """Skewness and excess kurtosis of max(0, Z), Z ~ N(0, 1), from its raw moments."""
    m1, m2, m3, m4 = 1 / math.sqrt(2 * math.pi), 0.5, math.sqrt(2 / math.pi), 1.5
    var = m2 - m1 ** 2
    c3 = m3 - 3 * m1 * m2 + 2 * m1 ** 3
    c4 = m4 - 4 * m1 * m3 + 6 * m1 ** 2 * m2 - 3 * m1 ** 4
    return c3 / var ** 1.5, c4 / var ** 2 - 3


def run_measure(measure, inp):
    """The probe's outputs as numpy arrays (lists of per-layer values become vectors)."""
    return {k: np.asarray(v) for k, v in run_probe(measure, inp).items()}


def test_shape_stats_known_distributions():
    rng = np.random.default_rng(0)
    gauss = _stats(rng.normal(2.0, 3.0, (N, 3)).astype(np.float32))
    assert gauss["skew"] < 0.02 and gauss["kurt"] < 0.05 and gauss["zeros"] == 0
    uniform = _stats(rng.uniform(0, 1, (N, 3)).astype(np.float32))
    assert uniform["skew"] < 0.02 and uniform["kurt"] == pytest.approx(1.2, abs=0.02)
    relu = _stats(np.maximum(rng.normal(0, 1, (N, 3)), 0).astype(np.float32))
    skew, kurt = _relu_gaussian_moments()
    assert relu["zeros"] == pytest.approx(0.5, abs=0.01)
    assert relu["skew"] == pytest.approx(skew, abs=0.03)
    assert relu["kurt"] == pytest.approx(abs(kurt), abs=0.1)


def test_constant_units_are_left_out_of_the_medians_but_count_as_zeros():
    rng = np.random.default_rng(1)
    v = np.zeros((N, 2), np.float32)
    v[:, 0] = rng.exponential(1.0, N)  # skewness 2, excess kurtosis 6
    out = _stats(v)
    assert out["skew"] == pytest.approx(2.0, abs=0.1)
    assert out["kurt"] == pytest.approx(6.0, abs=0.6)
    assert out["zeros"] == pytest.approx(0.5)
    assert math.isnan(_stats(np.zeros((10, 3), np.float32))["skew"])  # nothing varies


@pytest.mark.parametrize("norm", ["none", "batchnorm"])
@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_layer_inputs_are_the_previous_layers_activations_exactly(norm, activation):
    inp = mlp_inputs(32, norm=norm, activation=activation, widths=(16, 16, 16))
    g = mlp.ACTIVATIONS[activation]

    def both(p):
        inter = inp.apply(p, inp.state, inp.x, True)[2]
        return wg.inputs_and_preacts(inp._replace(params=p)), inter, \
            [g(z) for z in inter["preacts"]]
    (us, xs), inter, acts = jax.jit(both)(inp.params)
    np.testing.assert_array_equal(us[0], np.asarray(inp.x).reshape(32, -1))
    for i in (1, 2):
        np.testing.assert_array_equal(us[i], acts[i - 1])
    through = inter["bn_inputs"] if norm == "batchnorm" else inter["preacts"]
    for x, want in zip(xs, through):
        np.testing.assert_allclose(x, want, rtol=1e-6, atol=1e-6)
    if activation == "relu":  # the sparse case the paper's argument is about
        out = run_measure(wg.measure, inp)
        assert out["u_zeros"][1] > 0.2 and out["x_zeros"][1] == 0


def _run(act, norm, seed, u_level, x_level, layers=3):
    final, curves = {}, {}
    for which, level in (("u", u_level), ("x", x_level)):
        for s in wg.STATS:
            for layer in range(1, layers + 1):
                v = level * (1 + 0.05 * seed)
                final[f"mean_probe_{which}_{s}_layer{layer}"] = v
                curves[f"probe_{which}_{s}_layer{layer}"] = {"step": [0, 100], "value": [v, v]}
    return {"name": f"model.activation={act},model.norm={norm},seed={seed}",
            "config": {"model.activation": act, "model.norm": norm, "seed": seed, "steps": 100,
                       "learning_rate": 0.1},
            "curves": curves, "final": final, "diverged_at_step": None}


def _runs(seeds, u_level, x_level):
    return [_run(a, n, s, u_level, x_level) for a in ("sigmoid", "relu")
            for n in ("none", "batchnorm") for s in range(seeds)]


def test_claims_known_answers():
    rows = by_id(wg.claims(_runs(3, 0.5, 0.1)))
    assert set(rows) == {"wu_more_symmetric", "wu_closer_to_gaussian_tails", "wu_less_sparse"}
    assert {r["verdict"] for r in rows.values()} == {"reproduced"}
    assert rows["wu_less_sparse"]["evidence"]["effect"] == pytest.approx(0.4 * 1.05)
    assert {r["verdict"] for r in wg.claims(_runs(3, 0.1, 0.5))} == {"not reproduced"}
    assert {r["verdict"] for r in wg.claims(_runs(3, 0.3, 0.3))} == {"inconclusive"}
    assert {r["verdict"] for r in wg.claims(_runs(1, 0.5, 0.1))} == {"inconclusive"}
    assert wg.settings(_runs(2, 0.5, 0.1))[:2] == [("sigmoid", "none", 1), ("sigmoid", "none", 2)]
    assert wg.settings(_runs(2, 0.5, 0.1), 2)[:2] == [("sigmoid", "none", 2), ("sigmoid", "none", 3)]


def test_the_pixels_of_layer_one_are_reported_but_not_counted():
    runs = _runs(3, 0.3, 0.3)
    for r in runs:  # only layer 1 differs: pixels far from Gaussian, Wu near it
        for s in wg.STATS:
            r["final"][f"mean_probe_u_{s}_layer1"] = 5.0
    rows = wg.claims(runs)
    assert {r["verdict"] for r in rows} == {"inconclusive"}
    assert all(r["measured"].startswith("Layer 1 (u = the pixels; not counted): u 5 ± 0 vs x 0.315")
               for r in rows)


def test_figure(tmp_path):
    runs = _runs(3, 0.5, 0.1)
    summary.write(tmp_path / "summary.json", {"experiment": "wu_gaussian", "runs": runs,
                                              "claims": wg.claims(runs)})
    check_pngs(experiments.draw_figures(tmp_path), tmp_path, [wg.FIGURE])

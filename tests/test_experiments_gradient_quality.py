"""The gradient-quality probe on known answers, the slope fit, its claims, its figure (no training)."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from claim_fixtures import by_id
from figure_fixtures import check_pngs
from probe_fixtures import mlp_inputs, run_probe

from bn_experiments import experiments, stats, summary
from bn_experiments.experiments import gradient_quality as gq


def _linear_problem(n=4, d=5, seed=0):
    """Least squares: per-example gradient x_i (x_i . w - y_i), known in closed form."""
    kx, ky, kw = jax.random.split(jax.random.key(seed), 3)
    x, y, w = jax.random.normal(kx, (n, d)), jax.random.normal(ky, (n,)), jax.random.normal(kw, (d,))

    def loss(params, xx, yy):
        return 0.5 * jnp.mean((xx @ params["w"] - yy) ** 2)

    return loss, {"w": w}, x, y


def test_error_of_single_examples_is_the_population_spread():
    """m = 1 with K = N disjoint batches visits every example once: the rms error is exactly the
    spread of the per-example gradients around their mean, and the cosine their mean cosine."""
    loss, params, x, y = _linear_problem()
    out = gq.gradient_errors(loss, params, x, y, jax.random.key(3), sizes=(1, 4), repeats=4)
    per_example = np.asarray(x * (x @ params["w"] - y)[:, None])
    g = per_example.mean(0)
    expected = np.sqrt(np.mean(np.sum((per_example - g) ** 2, 1))) / np.linalg.norm(g)
    cosines = per_example @ g / (np.linalg.norm(per_example, axis=1) * np.linalg.norm(g))
    assert float(out["relerr_m1"]) == pytest.approx(expected, rel=1e-5)
    assert float(out["cosine_m1"]) == pytest.approx(cosines.mean(), rel=1e-5)
    # m = N: the one mini-batch is the whole set (permuted), so the error vanishes.
    assert float(out["relerr_m4"]) < 1e-6 and float(out["cosine_m4"]) == pytest.approx(1, abs=1e-6)


def test_error_falls_like_inverse_sqrt_m_for_independent_examples():
    """Many i.i.d. examples: E||g_m - g||^2 = tr(Sigma)/m (N-m)/(N-1), so the fitted slope is -1/2."""
    loss, params, x, y = _linear_problem(n=8192, d=200, seed=1)
    sizes = (1, 4, 16, 64, 256)
    out = gq.gradient_errors(loss, params, x, y, jax.random.key(0), sizes=sizes, repeats=32)
    errs = [float(out[f"relerr_m{m}"]) for m in sizes]
    assert gq.fit_slope(sizes, errs) == pytest.approx(-0.5, abs=0.05)
    assert all(a > b for a, b in zip(errs, errs[1:]))


@pytest.mark.parametrize("norm", ["none", "batchnorm"])
def test_the_mlp_probe_reports_every_size_and_is_exact_at_the_full_set(norm, monkeypatch):
    monkeypatch.setattr(gq, "SIZES", (1, 8, 64))
    monkeypatch.setattr(gq, "REPEATS", 4)
    inp = mlp_inputs(n=64, norm=norm, widths=(16, 16))
    out = run_probe(gq.measure, inp)
    assert set(out) == {f"{k}_m{m}" for k in ("relerr", "cosine") for m in (1, 8, 64)}
    # m = 64 = N: the batch is the whole probe set, with BN its statistics too: no error.
    assert out["relerr_m64"] < 1e-5 and out["cosine_m64"] == pytest.approx(1, abs=1e-5)
    assert out["relerr_m1"] > out["relerr_m8"] > out["relerr_m64"]


def test_fit_slope_known_answers_and_ignores_degenerate_small_batches():
    sizes = gq.SIZES
    errs = [3.0 * m ** -0.5 if m >= gq.FIT_MIN else 1e3 for m in sizes]
    assert gq.fit_slope(sizes, errs) == pytest.approx(-0.5, abs=1e-12)
    assert gq.fit_slope(sizes, [2.0 / m for m in sizes]) == pytest.approx(-1.0, abs=1e-12)
    assert gq.fit_slope((4, 8), (1.0, 0.5)) is None  # too few points


@pytest.mark.parametrize("values,verdict", [
    ((-0.50, -0.51, -0.49), "reproduced"),
    ((-0.30, -0.31, -0.29), "partly reproduced"),
    ((0.20, 0.21, 0.19), "not reproduced"),
    ((-0.5, 0.5, 0.1), "inconclusive"),
    ((-0.5,), "inconclusive"),
])
def test_band_rule(values, verdict):
    assert gq.band_verdict(stats.interval(values)) == verdict


def _run(norm, seed, slope):
    steps = [0, 1000, 2000]
    curves = {}
    for m in gq.SIZES:
        err = 2.0 * m ** slope * (1 + 0.01 * seed)
        curves[f"probe_relerr_m{m}"] = {"step": steps, "value": [err, 1.5 * err, 1.5 * err]}
        curves[f"probe_cosine_m{m}"] = {"step": steps, "value": [1 - 1 / (1 + m)] * 3}
    return {"name": f"model.norm={norm},seed={seed}",
            "config": {"model.norm": norm, "seed": seed, "steps": 2000, "learning_rate": 0.1},
            "curves": curves, "final": {}, "diverged_at_step": None}


def _runs(seeds, bn_slope, no_slope):
    return [_run(n, s, (bn_slope if n == "batchnorm" else no_slope) + 0.005 * s)
            for n in ("none", "batchnorm") for s in range(seeds)]


def test_claims_known_answers():
    rows = by_id(gq.claims(_runs(3, -0.3, -0.5)))
    no, bn = (rows["minibatch_gradient_error_inverse_sqrt_batch"],
              rows["bn_minibatch_gradient_error_inverse_sqrt_batch"])
    assert no["verdict"] == "reproduced" and bn["verdict"] == "partly reproduced"
    assert no["evidence"]["effect"] == pytest.approx(-0.495, abs=1e-6)
    assert no["evidence"]["seeds"] == 3 and "m = 64" in no["measured"]
    assert {r["verdict"] for r in gq.claims(_runs(1, -0.5, -0.5))} == {"inconclusive"}
    assert gq.claims(_runs(3, -0.5, -0.5)[:3]) == []  # no BN arm: no claim
    assert all(not summary.problems({"experiment": "gradient_quality", "runs": _runs(3, -.5, -.5),
                                     "claims": [r]}) for r in rows.values())


def test_slopes_per_evaluation():
    assert gq.slopes(_run("none", 0, -0.5)) == pytest.approx({0: -0.5, 1000: -0.5, 2000: -0.5})
    assert math.isclose(gq.slopes(_run("none", 0, -0.25))[0], -0.25)


def test_figure(tmp_path):
    runs = _runs(3, -0.5, -0.5)
    summary.write(tmp_path / "summary.json", {"experiment": "gradient_quality", "runs": runs,
                                              "claims": gq.claims(runs)})
    check_pngs(experiments.draw_figures(tmp_path), tmp_path, [gq.FIGURE])

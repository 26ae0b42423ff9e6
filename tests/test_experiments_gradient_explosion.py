"""Gradient explosion at init (Yang et al. 2019): the growth fit, the probe on deep ReLU networks
against the mean-field rate pi/(pi-1), the claims, the figure (no training)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from claim_fixtures import by_id
from figure_fixtures import check_pngs
from probe_fixtures import mlp_inputs, run_probe

from bn_experiments import experiments, stats, summary
from bn_experiments.experiments import gradient_explosion as ge


def test_growth_rate_of_a_geometric_profile():
    depth, rate = 12, 1.3
    profile = [5.0 * rate ** (depth - l) for l in range(1, depth + 1)]
    profile[0] = 1e6  # the input layer is left out of the fit
    assert ge.growth_rate(profile) == pytest.approx(rate, rel=1e-9)
    assert ge.growth_rate([1.0] * depth) == pytest.approx(1.0)
    assert ge.growth_rate([1.0, 2.0, None]) is None  # too few points


def test_committed_run_names_fit_a_file_name():
    """The runner names each finished point's files after the run (`.<name>.npz.<8>.tmp` while
    writing): every name must stay under the 255-byte file-name limit."""
    from bn_experiments import sweep
    from bn_experiments.configs import gradient_explosion
    names = [r.name for r in sweep.expand(gradient_explosion.get_config())]
    assert len(names) == 2 * 3 * len(gradient_explosion.DEPTHS)
    assert max(len(n.encode()) + len(".") + len(".npz.") + 8 + len(".tmp") for n in names) <= 255


def test_pair_layers():
    assert ge.pair_layers(2) == {"first": 0, "middle": 0, "last": 0}
    assert ge.pair_layers(50) == {"first": 0, "middle": 24, "last": 48}


@pytest.fixture(scope="module")
def deep():
    """ReLU, He init, width 128, 10 hidden layers, batch 1024, with and without BN."""
    return {norm: run_probe(ge.measure, mlp_inputs(n=1024, norm=norm, activation="relu",
                                                   init="he", init_std=1.0, widths=(128,) * 10))
            for norm in ("none", "batchnorm")}


def test_bn_gradients_grow_at_about_pi_over_pi_minus_1_and_not_without_bn(deep):
    bn = ge.growth_rate(deep["batchnorm"]["grad_sq"])
    no = ge.growth_rate(deep["none"]["grad_sq"])
    assert bn == pytest.approx(ge.RATE, rel=0.15)
    assert no == pytest.approx(1.0, abs=0.15)


def test_layer_jacobian_gain_is_the_per_layer_factor(deep):
    """E[relu'^2] / Var[relu] = pi/(pi-1) for BN's unit Gaussians: one layer's mean squared
    singular value is the per-layer factor. Without BN the standardized units see a smaller gain,
    and it does not compound: the standardization is not part of that network."""
    for pair in ge.PAIRS:
        assert deep["batchnorm"][f"jac_mean_sq_{pair}"] == pytest.approx(ge.RATE, rel=0.1)
        assert deep["none"][f"jac_mean_sq_{pair}"] < deep["batchnorm"][f"jac_mean_sq_{pair}"]
    assert len(deep["batchnorm"]["grad_sq"]) == 10


def _run(norm, d, seed, rate):
    steps = [0, 25, 50]
    curves = {f"probe_grad_sq_layer{l}": {"step": steps, "value": [rate ** (d - l) * (1 + 0.01 * seed)] * 3}
              for l in range(1, d + 1)}
    curves.update({f"probe_jac_mean_sq_{p}": {"step": steps, "value": [rate] * 3} for p in ge.PAIRS})
    return {"name": f"model.widths={(100,) * d},model.norm={norm},seed={seed}",
            "config": {"model.widths": [100] * d, "model.norm": norm, "seed": seed, "steps": 50,
                       "learning_rate": 0.01},
            "curves": curves, "final": {}, "diverged_at_step": None}


def _runs(bn_rate=1.47, seeds=3, depths=(5, 10)):
    return [_run(n, d, s, (bn_rate if n == "batchnorm" else 1.0) * (1 + 0.01 * s))
            for d in depths for n in ("none", "batchnorm") for s in range(seeds)]


def test_claims_known_answers():
    rows = by_id(ge.claims(_runs()))
    assert rows["bn_gradient_explodes_at_init"]["verdict"] == "reproduced"
    assert rows["bn_gradient_growth_rate_pi_over_pi_minus_1"]["verdict"] == "reproduced"
    assert rows["bn_gradient_growth_rate_pi_over_pi_minus_1"]["evidence"]["effect"] == \
        pytest.approx(1.47 * 1.01, rel=1e-6)
    assert "jacobian_spectrum" in rows["bn_gradient_explodes_at_init"]["claim"]
    rows = by_id(ge.claims(_runs(bn_rate=2.5)))
    assert rows["bn_gradient_explodes_at_init"]["verdict"] == "reproduced"
    assert rows["bn_gradient_growth_rate_pi_over_pi_minus_1"]["verdict"] == "not reproduced"
    rows = by_id(ge.claims(_runs(bn_rate=1.0)))
    assert rows["bn_gradient_explodes_at_init"]["verdict"] == "inconclusive"
    assert {r["verdict"] for r in ge.claims(_runs(seeds=1))} == {"inconclusive"}


def test_band_verdict():
    assert ge.band_verdict(stats.interval([1.4, 1.45, 1.5]), 1.3, 1.6) == "reproduced"
    assert ge.band_verdict(stats.interval([2.0, 2.1, 2.2]), 1.3, 1.6) == "not reproduced"
    assert ge.band_verdict(stats.interval([1.0, 1.5, 2.0]), 1.3, 1.6) == "inconclusive"


def test_figure(tmp_path):
    runs = _runs()
    summary.write(tmp_path / "summary.json", {"experiment": "gradient_explosion", "runs": runs,
                                              "claims": ge.claims(runs)})
    check_pngs(experiments.draw_figures(tmp_path), tmp_path, [ge.FIGURE])
    assert math.isclose(ge.RATE, 1.4669, rel_tol=1e-4)
    assert np.isfinite(ge.RATE)

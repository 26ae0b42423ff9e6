"""The sweeps' probe (bn_experiments/sweep_probes.py): weight norms and saturation on known
answers, fast."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from probe_fixtures import mlp_config, mlp_inputs, run_probe

from bn_experiments import sweep_probes


def test_mean_slope_on_known_inputs():
    x = jnp.asarray([[0.0, 0.0], [0.0, 0.0]])
    assert float(sweep_probes.mean_slope("sigmoid", x)) == pytest.approx(0.25)
    assert float(sweep_probes.mean_slope("tanh", x)) == pytest.approx(1.0)
    # sigmoid'(2) = s(1 - s) with s = 1 / (1 + e^-2); sigmoid' is even, so -2 gives the same.
    s = 1 / (1 + np.exp(-2.0))
    assert float(sweep_probes.mean_slope("sigmoid", jnp.asarray([2.0, -2.0]))) == \
        pytest.approx(s * (1 - s), rel=1e-6)
    # Deep in the tails the slope vanishes: half the units at 0, half at |x| = 20.
    assert float(sweep_probes.mean_slope("sigmoid", jnp.asarray([0.0, 20.0, -20.0, 0.0]))) == \
        pytest.approx(0.125, abs=1e-8)
    assert float(sweep_probes.mean_slope("relu", jnp.asarray([-1.0, 2.0, 3.0, -4.0]))) == 0.5
    with pytest.raises(ValueError, match="softplus"):
        sweep_probes.mean_slope("softplus", x)


def test_saturated_share_counts_beyond_the_threshold():
    x = jnp.asarray([-5.0, -3.9, 0.0, 4.0, 4.1, 10.0])
    assert float(sweep_probes.saturated_share(x)) == pytest.approx(3 / 6)


@pytest.mark.parametrize("norm", ["none", "batchnorm"])
def test_measure_on_the_mlp(norm):
    inp = mlp_inputs(n=40, init_std=0.1, norm=norm, widths=(30, 20))
    inp = inp._replace(model=mlp_config(norm=norm, widths=(30, 20)))
    out = run_probe(sweep_probes.measure, inp)
    assert out["weight_norm"] == pytest.approx(
        [float(np.linalg.norm(np.asarray(layer["w"]))) for layer in inp.params["hidden"]], rel=1e-5)
    assert out["output_weight_norm"] == pytest.approx(
        float(np.linalg.norm(np.asarray(inp.params["output"]["w"]))), rel=1e-5)
    assert len(out["slope"]) == len(out["saturated"]) == 2
    assert all(0 < v <= 0.25 for v in out["slope"])
    # A 100x larger init drives the sigmoid into its tails without BN; with BN it changes nothing
    # (BN(Wu) = BN((aW)u)): the same weights, rescaled.
    big = inp._replace(params={**inp.params, "hidden": [{**layer, "w": layer["w"] * 100}
                                                       for layer in inp.params["hidden"]]})
    out_big = run_probe(sweep_probes.measure, big)
    if norm == "none":
        assert max(out_big["slope"]) < 0.05 and min(out_big["saturated"]) > 0.8
    else:
        assert out_big["slope"] == pytest.approx(out["slope"], rel=1e-3)


def test_measure_needs_the_model_config():
    with pytest.raises(ValueError, match="ProbeInputs.model"):
        sweep_probes.measure(mlp_inputs(n=8))


def test_weight_growth_and_layer_mean_read_a_summary_run():
    run = {"curves": {"probe_weight_norm_layer1": {"step": [0, 10, 20], "value": [2.0, 3.0, None]},
                      "probe_weight_norm_layer2": {"step": [0, 10, 20], "value": [1.0, 5.0, 4.0]},
                      "probe_slope_layer1": {"step": [0], "value": [0.2]}},
           "final": {"mean_probe_slope_layer1": 0.2, "mean_probe_slope_layer2": 0.1,
                     "mean_probe_slope_layer3": None}}
    assert sweep_probes.weight_growth(run) == pytest.approx(5.0)
    assert sweep_probes.layer_mean(run, "slope") == pytest.approx(0.15)
    assert sweep_probes.weight_growth({"curves": {}, "final": {}}) is None
    assert sweep_probes.layer_mean({"curves": {}, "final": {}}, "slope") is None

"""The scale-invariance probe on known answers, its claims, its figure (no training)."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from claim_fixtures import by_id
from figure_fixtures import check_pngs

from bn_experiments import experiments, models, summary
from bn_experiments.experiments import scale_invariance as si
from bn_experiments.probe import ProbeInputs

MLP = models.get("mlp")


def _inputs(norm: str, epsilon: float = 1e-5, widths=(100, 100, 100)):
    cfg = dataclasses.replace(MLP.make_config(models.default_config("mlp"), (28, 28, 1)),
                              norm=norm, widths=widths, bn_epsilon=epsilon)
    params, state = MLP.init(jax.random.key(0), cfg, {"init_std": 0.1})
    x = jax.random.uniform(jax.random.key(1), (60, 28, 28, 1))
    y = jax.random.randint(jax.random.key(2), (60,), 0, 10)

    def apply(p, s, xx, train):
        return MLP.apply(p, s, xx, cfg=cfg, train=train)

    def loss_fn(p, s, xx, yy):
        logits, new_state, inter = apply(p, s, xx, True)
        return optax.softmax_cross_entropy_with_integer_labels(logits, yy).mean(), (new_state, inter)

    return ProbeInputs(params, state, x, y, loss_fn, apply, jnp.float32(0.1), jnp.int32(0))


def _measure(inp):
    out = jax.jit(lambda p, s: si.measure(inp._replace(params=p, state=s)))(inp.params, inp.state)
    return {k: np.asarray(v) for k, v in out.items()}


def test_rescale_touches_one_weight_matrix_and_a_of_one_is_identity():
    params = _inputs("batchnorm").params
    scaled = si.rescale(params, 1, 3.0)
    np.testing.assert_array_equal(scaled["hidden"][1]["w"], 3.0 * params["hidden"][1]["w"])
    np.testing.assert_array_equal(scaled["hidden"][0]["w"], params["hidden"][0]["w"])
    np.testing.assert_array_equal(scaled["hidden"][1]["bn"]["scale"], params["hidden"][1]["bn"]["scale"])
    jax.tree.map(np.testing.assert_array_equal, si.rescale(params, 2, 1.0), params)


def test_bn_identities_hold_to_float_tolerance_and_fail_without_bn():
    bn, no = _measure(_inputs("batchnorm")), _measure(_inputs("none"))
    for name in si.MEASURES:
        at_check = si.key(name, si.CHECK_SCALE)
        assert bn[at_check].shape == (3,)  # one per hidden layer
        assert bn[at_check].max() < si.TOLERANCE, name
        assert no[at_check].min() > 10 * si.TOLERANCE, name


def test_the_small_scale_deviation_is_bn_epsilon():
    """At a = 0.1 BN's epsilon counts 100x more; with epsilon near 0 the identity is exact again."""
    small = si.key("grad_scaling_error", min(si.SCALES))
    usual = _measure(_inputs("batchnorm"))[small]
    tiny = _measure(_inputs("batchnorm", epsilon=1e-12))[small]
    assert usual.max() > 10 * tiny.max()
    assert tiny.max() < si.TOLERANCE


def _run(norm, seed, level):
    curves = {f"probe_{si.key(m, a)}_layer{l}": {"step": [0, 100], "value": [level * l, level]}
              for m in si.MEASURES for a in si.SCALES for l in (1, 2, 3)}
    return {"name": f"model.norm={norm},seed={seed}",
            "config": {"model.norm": norm, "seed": seed, "steps": 100, "learning_rate": 0.1},
            "curves": curves, "final": {}, "diverged_at_step": None}


def _runs(seeds, bn_level, no_level):
    return [_run(n, s, (bn_level if n == "batchnorm" else no_level) * (1 + 0.1 * s))
            for n in ("none", "batchnorm") for s in range(seeds)]


def test_claims_known_answers():
    rows = by_id(si.claims(_runs(3, 1e-5, 0.5)))
    assert rows["bn_output_scale_invariant"]["verdict"] == "reproduced"
    assert rows["bn_gradient_scales_inversely"]["evidence"]["effect"] == pytest.approx(np.log10(0.5 / 1e-5))
    # Less sensitive than without BN, but above the tolerance: partly reproduced.
    assert {r["verdict"] for r in si.claims(_runs(3, 0.05, 0.5))} == {"partly reproduced"}
    assert {r["verdict"] for r in si.claims(_runs(3, 0.5, 0.5))} == {"inconclusive"}
    assert {r["verdict"] for r in si.claims(_runs(1, 1e-5, 0.5))} == {"inconclusive"}
    assert si.claims(_runs(3, 1e-5, 0.5)[:3]) == []  # no BN arm: no claim


def test_figure(tmp_path):
    runs = _runs(3, 1e-5, 0.5)
    summary.write(tmp_path / "summary.json", {"experiment": "scale_invariance", "runs": runs,
                                              "claims": si.claims(runs)})
    check_pngs(experiments.draw_figures(tmp_path), tmp_path, [si.FIGURE])

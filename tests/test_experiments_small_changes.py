"""The small-changes probe on known answers, its claims, its figure (no training)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from claim_fixtures import by_id
from figure_fixtures import check_pngs
from probe_fixtures import mlp_inputs, run_probe

from bn_experiments import experiments, summary
from bn_experiments.experiments import small_changes as sc

WIDTHS = (32, 32, 32)


def run_measure(measure, inp):
    """The probe's outputs as numpy arrays (lists of per-layer values become vectors)."""
    return {k: np.asarray(v) for k, v in run_probe(measure, inp).items()}


def test_perturb_moves_each_weight_matrix_by_eps_of_its_norm_and_nothing_else():
    params = mlp_inputs(norm="batchnorm", widths=WIDTHS).params
    moved = jax.jit(sc.perturb)(params, jax.random.key(3), 0.01)
    for path in sc.weight_paths(params):
        old, new = sc._get(params, path), sc._get(moved, path)
        np.testing.assert_allclose(np.linalg.norm(new - old), 0.01 * np.linalg.norm(old), rtol=1e-4)
    for i, layer in enumerate(params["hidden"]):
        jax.tree.map(np.testing.assert_array_equal, moved["hidden"][i]["bn"], layer["bn"])
    np.testing.assert_array_equal(moved["output"]["b"], params["output"]["b"])
    jax.tree.map(np.testing.assert_array_equal, jax.jit(sc.perturb)(params, jax.random.key(3), 0.0),
                 params)


def test_size_zero_changes_nothing_and_small_sizes_respond_linearly(monkeypatch):
    monkeypatch.setattr(sc, "SIZES", (0.0, 1e-3, 1e-2))
    for norm in ("none", "batchnorm"):
        out = run_measure(sc.measure, mlp_inputs(norm=norm, widths=WIDTHS))
        for name in sc.MEASURES:
            assert out[sc.key(name, 0.0)].shape == (len(WIDTHS) + 1,)  # hidden layers + output
            np.testing.assert_array_equal(out[sc.key(name, 0.0)], 0.0)
            small, large = out[sc.key(name, 1e-3)], out[sc.key(name, 1e-2)]
            assert small.min() > 0
            np.testing.assert_allclose(large / 1e-2, small / 1e-3, rtol=0.05)


def test_one_linear_layer_changes_exactly_as_its_weights():
    """Identity activation, no BN, zero biases: z = xW, so ||z' - z|| / ||z|| = ||x dW|| / ||xW||."""
    inp = mlp_inputs(norm="none", activation="identity", widths=(20,))._replace(step=jnp.int32(7))
    out = run_measure(sc.measure, inp)
    eps = sc.SIZES[0]
    moved = sc.perturb(inp.params, sc.direction_key(jnp.int32(7)), eps)
    x = np.asarray(inp.x).reshape(len(inp.x), -1)
    w, w2 = np.asarray(inp.params["hidden"][0]["w"]), np.asarray(moved["hidden"][0]["w"])
    expect = np.linalg.norm(x @ (w2 - w)) / np.linalg.norm(x @ w)
    np.testing.assert_allclose(out[sc.key("act_change", eps)][0], expect, rtol=1e-3)


def test_the_direction_depends_on_the_step_only():
    k = lambda s: jax.random.key_data(sc.direction_key(jnp.int32(s)))  # noqa: E731
    np.testing.assert_array_equal(k(5), k(5))
    assert not np.array_equal(k(5), k(6))


def _run(norm, seed, level, layers=4):
    curves, final = {}, {}
    for m in sc.MEASURES:
        for e in sc.SIZES:
            for layer in range(1, layers + 1):
                name = f"probe_{sc.key(m, e)}_layer{layer}"
                v = e * level * (1 + 0.05 * seed) * (1 + 0.1 * layer)
                curves[name] = {"step": [0, 100, 200], "value": [v, v, v]}
                final[f"mean_{name}"] = v
    return {"name": f"model.norm={norm},seed={seed}",
            "config": {"model.norm": norm, "seed": seed, "steps": 200, "learning_rate": 0.1},
            "curves": curves, "final": final, "diverged_at_step": None}


def _runs(seeds, bn_level, no_level):
    return [_run(n, s, bn_level if n == "batchnorm" else no_level)
            for n in ("none", "batchnorm") for s in range(seeds)]


def test_amplification_reads_init_and_training():
    run = _run("none", 0, 2.0)
    run["curves"][f"probe_{sc.key('act_change', sc.CHECK_SIZE)}_layer1"]["value"][0] = 5e-3
    assert sc.amplification(run, "act_change", 1, "init") == pytest.approx(5.0)
    assert sc.amplification(run, "act_change", 1, "training") == pytest.approx(2.0 * 1.1)
    assert sc.layers([run]) == [1, 2, 3, 4]


def test_claims_known_answers():
    rows = by_id(sc.claims(_runs(3, 1.0, 10.0)))
    assert {r["verdict"] for r in rows.values()} == {"reproduced"}
    assert rows["activation_changes_not_amplified"]["evidence"]["effect"] == pytest.approx(1.0)
    assert {r["verdict"] for r in sc.claims(_runs(3, 10.0, 1.0))} == {"not reproduced"}
    assert {r["verdict"] for r in sc.claims(_runs(3, 2.0, 2.0))} == {"inconclusive"}
    assert {r["verdict"] for r in sc.claims(_runs(1, 1.0, 10.0))} == {"inconclusive"}
    assert sc.claims(_runs(3, 1.0, 10.0)[:3]) == []  # no BN arm: no claim


def test_figure(tmp_path):
    runs = _runs(3, 1.0, 3.0)
    summary.write(tmp_path / "summary.json", {"experiment": "small_changes", "runs": runs,
                                              "claims": sc.claims(runs)})
    check_pngs(experiments.draw_figures(tmp_path), tmp_path, [sc.FIGURE])

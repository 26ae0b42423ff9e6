"""Figure 1's measures (bn_experiments/experiments/_fig1_measures.py): the probe on known answers,
the per-run numbers on synthetic curves, and the probe inside a real (tiny) training run."""
from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from bn_experiments.configs import default
from fig1_fixtures import NO_BN_LIKE, run

from bn_experiments import runner
from bn_experiments.experiments import _fig1_measures as m
from bn_experiments.models import mlp
from bn_experiments.probe import ProbeInputs


def _fake_apply(params, state, x, train):
    """A 'network' whose last pre-activation is x * scale + shift, per unit."""
    z = x.reshape(x.shape[0], -1) * params["scale"] + params["shift"]
    return z, state, {"preacts": [z]}


def _inputs(apply, params, prev_params, x, state=None, prev_state=None):
    return ProbeInputs(params=params, state=state, x=x, y=jnp.zeros(x.shape[0], jnp.int32),
                       loss_fn=None, apply=apply, learning_rate=jnp.asarray(0.1),
                       step=jnp.asarray(10), prev_params=prev_params,
                       prev_state=prev_state, prev_step=jnp.asarray(0))


X = jax.random.normal(jax.random.key(0), (600, 4))


def test_identical_parameters_give_zero_shift():
    p = {"scale": jnp.ones(4), "shift": jnp.zeros(4)}
    out = m.measure(_inputs(_fake_apply, p, p, X))
    assert float(out["median_shift"]) == 0.0 and float(out["band_change"]) == 0.0


def test_a_median_moved_by_c_bands_gives_c():
    prev = {"scale": jnp.asarray([1.0, 2.0, 0.5, 3.0]), "shift": jnp.zeros(4)}
    q = np.percentile(np.asarray(X) * np.asarray(prev["scale"]), [15, 50, 85], axis=0)
    band = q[2] - q[0]
    c = np.asarray([0.5, 1.0, 2.0, 0.25])
    now = {"scale": prev["scale"], "shift": jnp.asarray(c * band, jnp.float32)}
    out = m.measure(_inputs(_fake_apply, now, prev, X))
    assert float(out["median_shift"]) == pytest.approx(c.mean(), rel=1e-5)
    assert float(out["band_change"]) == pytest.approx(0.0, abs=1e-5)
    assert float(out["band_width"]) == pytest.approx(band.mean(), rel=1e-5)
    assert float(out["abs_median"]) == pytest.approx(np.abs(q[1] + c * band).mean(), rel=1e-5)


def test_a_band_scaled_by_k_changes_by_k_minus_1():
    prev = {"scale": jnp.ones(4), "shift": jnp.zeros(4)}
    now = {"scale": jnp.asarray([2.0, 2.0, 0.5, 0.5]), "shift": jnp.zeros(4)}
    out = m.measure(_inputs(_fake_apply, now, prev, X))
    assert float(out["band_change"]) == pytest.approx(0.75, rel=1e-5)   # (1 + 1 + .5 + .5) / 4


def _mlp(norm):
    cfg = mlp.MLPConfig(input_size=16, widths=(8, 6), norm=norm, init_std=0.5)
    params, state = mlp.init(jax.random.key(1), cfg)
    apply = lambda p, s, x, train, rng=None: mlp.apply(p, s, x, cfg=cfg, train=train, rng=rng)
    x = jax.random.uniform(jax.random.key(2), (600, 4, 4, 1))
    return params, state, apply, x


def test_the_real_mlp_beta_shift_is_the_median_shift():
    # With BN, the last layer's pre-activation is gamma * x_hat + beta: moving beta by d moves every
    # unit's distribution by d, so its median moves d / band bands and its band does not change.
    params, state, apply, x = _mlp("batchnorm")
    assert float(m.measure(_inputs(apply, params, params, x, state, state))["median_shift"]) == 0.0
    d = jnp.linspace(0.1, 0.6, 6)
    moved = jax.tree.map(lambda a: a, params)
    moved["hidden"][-1]["bn"] = {**params["hidden"][-1]["bn"],
                                 "bias": params["hidden"][-1]["bn"]["bias"] + d}
    q = m.last_layer_percentiles(apply, params, state, x)
    out = m.measure(_inputs(apply, moved, params, x, state, state))
    assert float(out["median_shift"]) == pytest.approx(float(jnp.mean(d / (q[2] - q[0]))), rel=1e-4)
    assert float(out["band_change"]) == pytest.approx(0.0, abs=1e-5)


def test_percentiles_are_training_mode_per_batch_of_60_pooled():
    params, state, apply, x = _mlp("batchnorm")
    z = np.concatenate([np.asarray(apply(params, state, x[i:i + 60], True)[2]["preacts"][-1])
                        for i in range(0, 600, 60)])
    np.testing.assert_allclose(np.asarray(m.last_layer_percentiles(apply, params, state, x)),
                               np.percentile(z, [15, 50, 85], axis=0), rtol=1e-5, atol=1e-6)
    # Not the statistics of all 600 at once (that is what one big batch would give).
    whole = np.asarray(apply(params, state, x, True)[2]["preacts"][-1])
    assert not np.allclose(np.percentile(whole, 50, axis=0), np.percentile(z, 50, axis=0), atol=1e-4)


# ------------------------------------------------------------------------- per-run numbers

def test_steps_to_target_and_the_bound():
    r = run("none", 0, **{**NO_BN_LIKE, "ceiling": 0.9})
    assert m.steps_to(r, 0.5) == (2500, False)  # 0.9 - 0.8 e^(-s/2940) crosses 0.5 at ~1,900
    assert m.steps_to(r, 0.95) == (50_000, True)
    assert m.log2_speedup(r, r, 0.95) == (None, False)  # neither arm reaches it
    assert m.log2_speedup(r, r, 0.5) == (0.0, False)


def test_late_accuracy_and_windows():
    r = run("none", 0, accuracy=lambda s: 0.9 if s < 45_000 else 0.95, shift=0.1,
            transient=(0.7, 0.7), jitter=0.0)
    assert m.late_accuracy(r) == pytest.approx(0.95)
    assert m.transient_end(r) == 1000
    assert m.window_mean(r, "median_shift", "transient") == pytest.approx(0.7)  # 50 .. 1000
    assert m.window_mean(r, "median_shift", "after") == pytest.approx(0.1)
    assert m.window_mean(r, "missing", "after") is None
    assert m.window_mean(r, "median_shift", "late") == pytest.approx(0.1)
    # "late" is the second half of training only: a shift that halves at 25,000 steps shows it
    steps, vals = r["curves"]["probe_median_shift"]["step"], r["curves"]["probe_median_shift"]["value"]
    r["curves"]["probe_median_shift"]["value"] = [v / 2 if s > 25_000 else v
                                                  for s, v in zip(steps, vals)]
    assert m.window_mean(r, "median_shift", "late") == pytest.approx(0.05)
    assert 0.05 < m.window_mean(r, "median_shift", "after") < 0.1
    assert m.late_accuracy(run("none", 0, diverged_at=100)) is None
    assert m.log2_ratio(0.4, 0.1) == pytest.approx(2.0) and m.log2_ratio(0.0, 0.1) is None


def test_tracked_shape_finds_the_early_swing():
    r = run("none", 0, peak=1.0, jitter=0.0)
    shape = m.tracked_shape(r)
    assert shape["peak"] == pytest.approx(1.0, abs=0.02)          # the bump peaks at 5% of training
    assert shape["peak_step"] == pytest.approx(2500, abs=300)
    assert shape["end_p85"] - shape["end_p15"] == pytest.approx(2 * (1.25 + 0.7 * 0.95), abs=0.02)
    assert m.tracked_shape(run("none", 0, peak=-0.8, jitter=0.0))["peak"] == pytest.approx(-0.8, abs=0.02)


def test_the_probe_inside_a_training_run(tmp_path):
    # One BN run on synthetic data: the probe compiles into the evaluation, sees the previous
    # evaluation (0 at step 0, where it compares the run with itself) and writes its curves.
    cfg = default.get_config()
    cfg.experiment = "fig1"
    cfg.steps, cfg.eval_every, cfg.eval_steps = 20, 10, (5,)
    cfg.checkpoint_every = 0
    cfg.data.source = "synthetic"
    cfg.model.widths = (16, 16)
    cfg.model.norm = "batchnorm"
    runner.train_and_evaluate(cfg, tmp_path)
    doc = json.loads((tmp_path / "summary.json").read_text())
    for r in doc["runs"]:
        c = r["curves"]["probe_median_shift"]
        assert c["step"] == [0, 5, 10, 20] and c["value"][0] == 0.0
        assert all(v > 0 for v in c["value"][1:])
        assert {"probe_band_change", "probe_abs_median", "probe_band_width"} <= set(r["curves"])
    assert doc["runs"][0]["final"]["mean_probe_median_shift"] > 0


def test_the_memo_gives_the_bits_of_recomputing_the_previous_percentiles(tmp_path):
    # The probe keeps each evaluation's percentiles for the next (Probe(memo=True)) instead of
    # recomputing them at `prev_params`: seeds vmapped together, an uneven schedule, every probe
    # curve bit for bit as the recomputing probe gives it, and the memo itself is no curve.
    from bn_experiments import experiments
    from bn_experiments.probe import Probe

    name = "fig1_recomputing_probe_test"
    recompute = lambda inputs: {k: v for k, v in m.measure(inputs).items() if k != "memo"}  # noqa: E731
    experiments.register(experiments.Experiment(name, probe=Probe(
        recompute, batch_size=m.PROBE.batch_size)))
    assert m.PROBE.memo
    try:
        docs = []
        for experiment in ("fig1", name):
            cfg = default.get_config()
            cfg.experiment = experiment
            cfg.steps, cfg.eval_every, cfg.eval_steps = 30, 10, (5,)
            cfg.checkpoint_every = 0
            cfg.data.source = "synthetic:1024:64"
            cfg.model.widths = (16, 16)
            cfg.model.norm = "batchnorm"
            cfg.grid = (("seed", (0, 1)),)
            docs.append(runner.train_and_evaluate(cfg, tmp_path / experiment, progress=False,
                                                  plot=False))
    finally:
        experiments._REGISTRY.pop(name, None)
    kept, recomputed = docs
    for a, b in zip(kept["runs"], recomputed["runs"]):
        probe = sorted(k for k in a["curves"] if k.startswith("probe_"))
        assert probe == [f"probe_{k}" for k in sorted(m.PROBE_KEYS)]
        for k in probe:
            assert a["curves"][k] == b["curves"][k], k
        assert a["curves"]["probe_median_shift"]["value"][0] == 0.0

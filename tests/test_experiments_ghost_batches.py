"""The ghost-batch experiment: the noise probe on known answers, its claims, its figure."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from claim_fixtures import by_id
from figure_fixtures import check_pngs

from bn_experiments import config as config_lib
from bn_experiments import models
from bn_experiments.configs import ghost_batches as ghost_config
from bn_experiments.experiments import ghost_batches as gb
from bn_experiments.probe import ProbeInputs

MLP = models.get("mlp")


def test_noise_is_zero_when_outputs_do_not_depend_on_the_batch():
    x = jax.random.normal(jax.random.key(0), (gb.POOL, 5))
    noise = gb.batch_noise(lambda b: 2.0 * b + 1.0, x, 8, jax.random.key(1))
    assert float(noise) == 0.0


def test_noise_of_batch_standardization_falls_like_one_over_sqrt_m():
    # Outputs standardized with their batch's mean and std: the mean's error is ~1/sqrt(m).
    x = jax.random.normal(jax.random.key(0), (gb.POOL, 3)) * 2.0 + 1.0

    def standardize(b):
        return (b - b.mean(0)) / b.std(0)
    noise = {m: float(gb.batch_noise(standardize, x, m, jax.random.key(m))) for m in gb.SIZES}
    slope = np.polyfit(np.log2(gb.SIZES), np.log2([noise[m] for m in gb.SIZES]), 1)[0]
    assert -0.6 < slope < -0.4, noise
    assert 0.25 < noise[8] < 0.5  # about 1/sqrt(8) = 0.35 of the between-example spread


def _inputs(norm: str):
    cfg = dataclasses.replace(MLP.make_config(models.default_config("mlp"), (28, 28, 1)),
                              norm=norm, widths=(16, 16))
    params, state = MLP.init(jax.random.key(0), cfg, {"init_std": 0.1})
    x = jax.random.uniform(jax.random.key(1), (gb.POOL, 28, 28, 1))
    y = jax.random.randint(jax.random.key(2), (gb.POOL,), 0, 10)

    def apply(p, s, xx, train):
        return MLP.apply(p, s, xx, cfg=cfg, train=train)

    def loss_fn(p, s, xx, yy):
        logits, new_state, inter = apply(p, s, xx, True)
        return optax.softmax_cross_entropy_with_integer_labels(logits, yy).mean(), (new_state, inter)
    return ProbeInputs(params, state, x, y, loss_fn, apply, jnp.float32(0.1), jnp.int32(0),
                       model=cfg)


def test_probe_measures_training_set_loss_and_noise_only_with_bn():
    for norm in ("none", "batchnorm"):
        inp = _inputs(norm)
        out = {k: float(v) for k, v in jax.jit(lambda: gb.measure(inp))().items()}
        logits = MLP.apply(inp.params, inp.state, inp.x, cfg=inp.model, train=False)[0]
        want = float(optax.softmax_cross_entropy_with_integer_labels(logits, inp.y).mean())
        assert out["train_set_loss"] == pytest.approx(want, rel=1e-5)
        noise = [out[gb.noise_key(m)] for m in gb.SIZES]
        if norm == "none":
            assert noise == [0.0] * len(gb.SIZES)
        else:
            assert all(a > b > 0 for a, b in zip(noise, noise[1:])), noise


def _run(m, seed, *, noise8=0.3, gap=0.02, steps=1000, acc=0.98):
    """A summary run with statistics batch `m` (None: no BN)."""
    ghosts = 1 if m is None else 512 // m
    finals = {f"mean_probe_{gb.noise_key(k)}": (0.0 if m is None else noise8 * (k / 8) ** -0.5
                                                * (1 + 0.01 * seed)) for k in gb.SIZES}
    finals["steps_to_target"] = steps
    return {"name": f"{m}-{seed}", "diverged_at_step": None, "final": finals,
            "config": {"model.norm": "none" if m is None else "batchnorm", "seed": seed,
                       "batch_size": 512, "data_parallel.ghost_batches": ghosts,
                       "learning_rate": 1.0, "steps": 2000, "data.source": "synthetic"},
            "curves": {"test_loss": {"step": [0, 1000, 2000], "value": [2.3, 0.2, 0.1 + gap]},
                       "probe_train_set_loss": {"step": [0, 1000, 2000],
                                                "value": [2.3, 0.15, 0.1]},
                       "test_accuracy": {"step": [0, 1000, 2000], "value": [0.1, 0.9, acc]}}}


def _runs(per_device_steps=1000, seeds=5):
    runs = [_run(None, s, gap=0.05 + 0.001 * s) for s in range(seeds)]
    for m, g in ((512, 0.03), (128, 0.025), (32, 0.02), (8, 0.015)):
        runs += [_run(m, s, gap=g + 0.001 * s, acc=0.98 + (512 - m) * 1e-5 + 1e-4 * s,
                      steps=per_device_steps if m == 32 else 1000) for s in range(seeds)]
    return runs


def test_claims_on_known_answers():
    rows = by_id(gb.claims(_runs()))
    assert set(rows) == {"noise_shrinks_with_batch", "bn_narrows_generalization_gap",
                         "smaller_statistics_batches_generalize_better",
                         "per_device_statistics_train_as_fast"}
    assert all(r["verdict"] == "reproduced" for r in rows.values()), rows
    assert rows["noise_shrinks_with_batch"]["evidence"]["effect"] == pytest.approx(0.5, abs=1e-6)
    assert rows["bn_narrows_generalization_gap"]["evidence"]["effect"] == pytest.approx(0.03)
    # Per-device statistics needing twice the steps is not "as fast"; 1.1x is inside the margin.
    slow = by_id(gb.claims(_runs(per_device_steps=2000)))["per_device_statistics_train_as_fast"]
    assert slow["verdict"] == "not reproduced"
    near = by_id(gb.claims(_runs(per_device_steps=1100)))["per_device_statistics_train_as_fast"]
    assert near["verdict"] == "reproduced"


def test_claims_need_their_arms_and_one_seed_gives_no_verdict():
    assert gb.claims([r for r in _runs() if r["config"]["model.norm"] == "none"]) == []
    rows = gb.claims(_runs(seeds=1))
    assert rows and all(r["verdict"] == "inconclusive" for r in rows)


def test_figure(tmp_path):
    paths = gb.figures({"experiment": "ghost_batches", "runs": _runs(), "claims": []}, tmp_path)
    check_pngs(paths, tmp_path, [gb.FIGURE])


def test_config_pairs_every_arm_by_seed_and_quick_is_a_smoke_run():
    runs = config_lib.runs(ghost_config.get_config())
    assert len(runs) == 25
    ghosts = sorted({(r.flat["model.norm"], r.static.ghost_batches) for r in runs})
    assert ghosts == [("batchnorm", 1), ("batchnorm", 4), ("batchnorm", 16), ("batchnorm", 64),
                      ("none", 1)]
    assert {r.numbers.seed for r in runs} == {0, 1, 2, 3, 4}
    assert ghost_config.get_config("quick").smoke is True

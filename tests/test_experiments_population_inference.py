"""The population-inference experiment: the probe's three evaluations on known answers, claims on
known answers, its figure, its config."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from claim_fixtures import by_id
from figure_fixtures import check_pngs

from bn_experiments import config as config_lib
from bn_experiments.configs import population_inference as pi_config
from bn_experiments.experiments import population_inference as pi
from bn_experiments.models import mlp
from bn_experiments.probe import ProbeInputs


def _inputs(cfg, params, state, batch=10, seed=0):
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    test_x = 1.0 + jax.random.normal(k1, (95, 6))   # 9 whole batches of 10 (5 left out)
    test_y = jax.random.randint(k2, (95,), 0, 10)
    train_x = 1.0 + jax.random.normal(k3, (40, 6))  # 4 batches for Algorithm 2
    apply = lambda p, s, x, train, rng=None: mlp.apply(p, s, x, cfg=cfg, train=train)  # noqa: E731
    return ProbeInputs(params=params, state=state, x=train_x, y=test_y[:40], loss_fn=None,
                       apply=apply, learning_rate=jnp.float32(0.1), step=jnp.int32(0), model=cfg,
                       test_x=test_x, test_y=test_y, batch_size=batch)


def test_probe_on_known_answers():
    cfg = mlp.MLPConfig(input_size=6, widths=(5,), norm="batchnorm")
    params, state = mlp.init(jax.random.key(1), cfg)
    inp = _inputs(cfg, params, state)
    out = pi.measure(inp)
    x, y = inp.test_x[:90], inp.test_y[:90]
    acc = lambda logits: float(np.mean(np.argmax(logits, -1) == np.asarray(y)))  # noqa: E731
    # Mini-batch statistics: each batch of 10 normalized by itself, exactly as in training.
    batch_logits = np.concatenate([mlp.apply(params, state, x[i:i + 10], cfg=cfg, train=True)[0]
                                   for i in range(0, 90, 10)])
    np.testing.assert_allclose(out["acc_batch"], acc(batch_logits), atol=1e-6)
    np.testing.assert_allclose(out["acc_running"],
                               acc(mlp.apply(params, state, x, cfg=cfg, train=False)[0]), atol=1e-6)
    # Algorithm 2 by hand: mean of the batch means, m/(m-1) times the mean batch variance.
    wu = np.stack([np.asarray(inp.x[i:i + 10] @ params["hidden"][0]["w"]) for i in range(0, 40, 10)])
    pop = {"bn": [{"mean": jnp.asarray(wu.mean(1).mean(0)),
                   "var": jnp.asarray(10 / 9 * wu.var(1).mean(0))}]}
    np.testing.assert_allclose(out["acc_population"],
                               acc(mlp.apply(params, pop, x, cfg=cfg, train=False)[0]), atol=1e-6)
    # The moving averages set to the population statistics agree with Algorithm 2 everywhere.
    same = pi.measure(_inputs(cfg, params, pop))
    np.testing.assert_allclose(same["agree_population_running"], 1.0)
    assert float(out["agree_population_batch"]) <= 1.0


def _run(batch, seed, accs):
    steps = [0, 10, 500, 1000]
    curves = {f"probe_acc_{m}": {"step": steps, "value": [0.1, 0.5, 0.9, accs[m]]}
              for m in pi.MODES}
    curves.update({f"probe_agree_population_{m}": {"step": steps, "value": [1.0, 0.9, 0.95, 0.97]}
                   for m in ("batch", "running")})
    return {"name": f"b{batch}-{seed}", "diverged_at_step": None, "final": {},
            "config": {"model.norm": "batchnorm", "batch_size": batch, "seed": seed,
                       "steps": 1000, "eval_every": 500, "learning_rate": 0.5,
                       "data.source": "synthetic"},
            "curves": curves}


def _runs(pop_minus_batch=(0.0, 0.05), running_minus_pop=(-0.001, -0.002), seeds=5):
    runs = []
    for size, dp, dr in zip((60, 8), pop_minus_batch, running_minus_pop):
        for s in range(seeds):
            b = 0.95 + 0.002 * s
            runs.append(_run(size, s, {"batch": b, "population": b + dp + 0.0003 * s,
                                       "running": b + dp + dr + 0.0002 * s}))
    return runs


def test_claims_on_known_answers():
    rows = by_id(pi.claims(_runs()))
    assert rows["population_statistics_match_batch_statistics"]["verdict"] == "reproduced"
    assert rows["moving_averages_match_population_statistics"]["verdict"] == "reproduced"
    worse = by_id(pi.claims(_runs(pop_minus_batch=(0.0, -0.03), running_minus_pop=(-0.02, -0.02))))
    assert worse["population_statistics_match_batch_statistics"]["verdict"] == "partly reproduced"
    assert worse["moving_averages_match_population_statistics"]["verdict"] == "not reproduced"
    assert all(r["verdict"] == "inconclusive" for r in pi.claims(_runs(seeds=1)))


def test_figure(tmp_path):
    paths = pi.figures({"experiment": "population_inference", "runs": _runs(), "claims": []},
                       tmp_path)
    check_pngs(paths, tmp_path, [pi.FIGURE])


def test_config_has_two_batch_sizes_paired_by_seed():
    runs = config_lib.runs(pi_config.get_config())
    assert len(runs) == 2 * 5
    assert {(r.flat["batch_size"], r.flat["learning_rate"]) for r in runs} == {
        (60, 0.5), (8, 0.5 * 8 / 60)}
    assert all(r.static.model.norm == "batchnorm" for r in runs)

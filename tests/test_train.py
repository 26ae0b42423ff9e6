"""The compiled trainer: per-step metrics from inside the step, determinism, divergence, no retrace."""
import dataclasses

import jax
import numpy as np
import pytest

from bn_experiments import config as config_lib
from bn_experiments import data as data_lib
from bn_experiments import models
from bn_experiments import train
from bn_experiments.configs import fig1_mnist


@pytest.fixture(scope="module")
def data():
    return data_lib.to_device(data_lib.load("synthetic:512:128"))


def _run(norm="batchnorm", steps=40, eval_every=20, **overrides):
    cfg = fig1_mnist.get_config("quick")
    cfg.steps, cfg.eval_every = steps, eval_every
    cfg.model.widths = (32, 16)
    cfg.model.tracked_units = (3, 5)
    cfg.data.source = "synthetic"
    cfg.runs = (f"r: model.norm={norm}",)
    for k, v in overrides.items():
        config_lib.set_dotted(cfg, k, v)
    return config_lib.runs(cfg)[0]


def test_percentiles_match_numpy():
    x = np.random.default_rng(0).normal(size=(60, 10)).astype(np.float32)
    got = np.asarray(train.tracked_percentiles(jax.numpy.asarray(x), (2, 7)))
    np.testing.assert_allclose(got, np.percentile(x[:, [2, 7]], [15, 50, 85], axis=0), atol=1e-6)


@pytest.mark.parametrize("norm", ["none", "batchnorm"])
def test_step_metrics_are_those_of_the_training_batch(data, norm):
    run = _run(norm, steps=1, eval_every=1)
    program = train.make_program(run.static, data)
    numbers = train.numbers_to_arrays(run.numbers)
    carry = program.init(numbers)
    idx = data_lib.batch_indices(carry["data_key"], 0, 1, run.static.batch_size, data.num_train)[0]
    family = models.get(run.static.model_name)
    logits, _, inter = family.apply(carry["params"], carry["bn_state"], data.x_train[idx],
                                    cfg=run.static.model, train=True)
    pre = np.asarray(inter["preacts"][-1])[:, [3, 5]]
    _, metrics = jax.jit(program.chunk)(carry, numbers)
    np.testing.assert_allclose(metrics["preact_percentiles"][0],
                               np.percentile(pre, [15, 50, 85], axis=0), rtol=1e-5, atol=1e-6)
    labels = np.asarray(data.y_train[idx])
    logp = np.asarray(jax.nn.log_softmax(logits))
    np.testing.assert_allclose(metrics["train_loss"][0], -logp[np.arange(len(labels)), labels].mean(),
                               rtol=1e-5)


def _train(data, run, chunks):
    program = train.make_program(run.static, data)
    numbers = train.numbers_to_arrays(run.numbers)
    carry = jax.jit(program.init)(numbers)
    chunk = jax.jit(program.chunk)
    out = []
    for _ in range(chunks):
        carry, m = chunk(carry, numbers)
        out.append(jax.device_get(m))
    return carry, out


def test_same_config_and_seed_give_the_same_numbers(data):
    run = _run()
    (c1, m1), (c2, m2) = _train(data, run, 2), _train(data, run, 2)
    jax.tree.map(np.testing.assert_array_equal, m1, m2)
    jax.tree.map(np.testing.assert_array_equal, c1["params"], c2["params"])
    other = dataclasses.replace(run, numbers=dataclasses.replace(run.numbers, seed=1))
    _, m3 = _train(data, other, 1)
    assert not np.array_equal(m1[0]["train_loss"], m3[0]["train_loss"])


@pytest.mark.parametrize("norm", ["none", "batchnorm"])
def test_huge_learning_rate_diverges_cleanly(data, norm):
    run = _run(norm, steps=40, eval_every=20, learning_rate=1e10, **{"model.activation": "relu"})
    carry, metrics = _train(data, run, 2)
    d = int(carry["diverged_at"])
    assert 1 <= d <= 40
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(carry["params"]))  # frozen, finite
    losses = np.concatenate([m["train_loss"] for m in metrics])
    assert np.all(np.isnan(losses[d:]))
    assert np.all(np.isfinite(losses[:d - 1]))


def test_chunks_compile_once_for_any_numbers(data):
    run = _run()
    program = train.make_program(run.static, data)
    traces = []

    def counted(carry, numbers):
        traces.append(1)
        return program.chunk(carry, numbers)

    _chunks_for_several_numbers(run, program, jax.jit(counted), chunks=3)
    assert len(traces) == 1


def _chunks_for_several_numbers(run, program, chunk, chunks):
    """Trains `chunks` chunks for each of three (learning rate, seed) pairs of one structure."""
    for lr, seed in ((0.1, 0), (0.5, 1), (2.0, 2)):
        numbers = train.numbers_to_arrays(dataclasses.replace(run.numbers, learning_rate=lr, seed=seed))
        carry = program.init(numbers)
        for _ in range(chunks):
            carry, _ = chunk(carry, numbers)


def test_population_evaluation_runs_and_is_close_to_running_average(data):
    run = _run(steps=200, eval_every=100, population_batches=20)
    carry, _ = _train(data, run, 2)
    program = train.make_program(run.static, data)
    ema = jax.jit(program.evaluate)(carry, train.numbers_to_arrays(run.numbers))["test_accuracy"]
    pop = jax.jit(program.evaluate_population)(carry)["test_accuracy"]
    assert 0.0 <= float(pop) <= 1.0
    assert abs(float(pop) - float(ema)) < 0.2


def test_sgd_momentum_is_a_number_inside_the_program(data):
    plain = _run()
    heavy = _run(**{"optimizer.momentum": 0.9})
    light = _run(**{"optimizer.momentum": 0.5})
    assert not plain.static.use_momentum and heavy.static == light.static
    _, m_plain = _train(data, plain, 1)
    _, m_heavy = _train(data, heavy, 1)
    assert np.all(np.isfinite(m_heavy[0]["train_loss"]))
    assert not np.allclose(m_plain[0]["train_loss"][5:], m_heavy[0]["train_loss"][5:])


def test_uint8_gather_reproduces_the_float_pixels_exactly():
    ds = data_lib.load("mnist_embedded")
    x = jax.numpy.asarray(ds.x_train[:500])
    u = train._as_uint8(x)
    assert u is not None and u.dtype == jax.numpy.uint8
    np.testing.assert_array_equal(jax.numpy.asarray(train._PIXELS)[u], x)
    assert train._as_uint8(x * 0.5 + 0.001) is None  # standardized or synthetic data: floats kept


def test_rank_percentiles_are_bit_for_bit_jnp_percentile():
    """Small batches take order statistics from ranks; the bits must be jnp.percentile's (jitted)."""
    units = (0, 2, 3)
    ours = jax.jit(lambda z: train.tracked_percentiles(z, units))
    ref = jax.jit(lambda z: jax.numpy.percentile(z[:, jax.numpy.asarray(units)],
                                                 jax.numpy.asarray(train.PERCENTILES), axis=0))
    rng = np.random.default_rng(0)
    for t in range(60):
        n = (1, 2, 7, 60, 61, train._RANK_MAX)[t % 6]  # few shapes: each one compiles
        z = (rng.normal(size=(n, 4)) * 10.0 ** rng.uniform(-3, 3)).astype(np.float32)
        if t % 3 == 0:
            z = np.round(z)  # ties
        if t % 5 == 0:
            z[rng.integers(n), rng.integers(4)] = rng.choice([np.nan, np.inf, -np.inf])
        if t % 7 == 0:
            z[rng.integers(n, size=3), 2] = -0.0
        a, b = np.asarray(ours(z)).view(np.int32), np.asarray(ref(z)).view(np.int32)
        if JNP_PERCENTILE_IS_CURRENT:
            np.testing.assert_array_equal(a, b, err_msg=f"case {t}, n={n}")
        else:  # same order statistics; interpolation weights rounded 1-2 ulp apart
            scale = np.max(np.abs(z[np.isfinite(z)]), initial=1.0)
            np.testing.assert_allclose(a.view(np.float32), b.view(np.float32), rtol=1e-6,
                                       atol=1e-6 * scale, err_msg=f"case {t}, n={n}")


# jnp.percentile's interpolation weights changed in jax 0.10.1 (by 1-2 ulp); the rank percentiles
# follow the current formula, so on an older jax (the oldest supported set) they agree to 1e-6.
JNP_PERCENTILE_IS_CURRENT = tuple(int(p) for p in jax.__version__.split(".")[:3]) >= (0, 10, 1)


def _bits(tree):
    def leaf(x):
        if jax.numpy.issubdtype(x.dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        x = np.asarray(x)
        return x.view(np.int32) if x.dtype == np.float32 else x
    return jax.tree.map(leaf, tree)


@pytest.fixture(scope="module")
def mnist():
    return data_lib.to_device(data_lib.load("mnist_embedded"))


@pytest.mark.parametrize("norm,momentum", [("none", 0.0), ("batchnorm", 0.0), ("batchnorm", 0.9)])
def test_fast_chunk_gives_the_bits_of_the_checked_chunk(mnist, norm, momentum):
    """The optimistic chunk skips the per-step divergence check; on a finite run it must change no bit."""
    run = _run(norm, steps=400, eval_every=200, checkpoint_every=0,
               **{"data.source": "mnist_embedded", "model.widths": (100, 100),
                  "optimizer.momentum": momentum})
    program = train.make_program(run.static, mnist)
    numbers = train.numbers_to_arrays(run.numbers)
    fast, checked = jax.jit(program.fast_chunk), jax.jit(program.chunk)
    carry = jax.jit(program.init)(numbers)
    for _ in range(2):
        want = checked(carry, numbers)
        got_carry, got_metrics, replay = fast(carry, numbers)
        assert not bool(replay)
        jax.tree.map(np.testing.assert_array_equal, _bits((got_carry, got_metrics)), _bits(want))
        carry = want[0]


def _stack(*trees):
    return jax.tree.map(lambda *xs: jax.numpy.stack(xs), *trees)


def test_optimistic_chunks_replay_divergence_exactly(data):
    """chunk_runner == program.chunk bit for bit, through a divergence and after it, alone and vmapped."""
    runs = [_run("none", steps=60, eval_every=20, learning_rate=lr, **{"model.activation": "relu"})
            for lr in (1e10, 0.1)]
    program = train.make_program(runs[0].static, data)
    numbers = [train.numbers_to_arrays(r.numbers) for r in runs]
    checked = jax.jit(program.chunk)
    alone = train.chunk_runner(program)
    batched = train.chunk_runner(program, batched=True)
    want = []
    for n in numbers:
        carry, rows = jax.jit(program.init)(n), []
        for _ in range(3):
            carry, m = checked(carry, n)
            rows.append(_bits((carry, m)))
        want.append(rows)
    assert 1 <= int(want[0][-1][0]["diverged_at"]) <= 20  # the huge lr dies in the first chunk
    assert int(want[1][-1][0]["diverged_at"]) == -1

    for p, n in enumerate(numbers):
        carry = jax.jit(program.init)(n)
        for k in range(3):
            carry, m = alone(carry, n)
            jax.tree.map(np.testing.assert_array_equal, _bits((carry, m)), want[p][k])

    stacked = _stack(*numbers)
    carry = jax.jit(jax.vmap(program.init))(stacked)
    for k in range(3):
        carry, m = batched(carry, stacked)
        for p in range(2):
            jax.tree.map(np.testing.assert_array_equal,
                         _bits(jax.tree.map(lambda x, p=p: x[p], (carry, m))), want[p][k])


def test_optimistic_chunks_compile_once_and_replay_only_on_divergence(data):
    run = _run(**{"model.activation": "relu"})
    program = train.make_program(run.static, data)
    traces = {"fast": 0, "checked": 0}

    def counted(name, f):
        def g(*args):
            traces[name] += 1
            return f(*args)
        return g

    counted_program = program._replace(fast_chunk=counted("fast", program.fast_chunk),
                                       chunk=counted("checked", program.chunk))
    chunk = train.chunk_runner(counted_program)
    _chunks_for_several_numbers(run, program, chunk, chunks=2)
    assert traces == {"fast": 1, "checked": 0}
    numbers = train.numbers_to_arrays(dataclasses.replace(run.numbers, learning_rate=1e10))
    carry, _ = chunk(program.init(numbers), numbers)
    assert int(carry["diverged_at"]) >= 1 and traces == {"fast": 1, "checked": 1}


def test_evaluations_without_ics_quantiles_keep_every_other_number(data):
    """`ics_quantiles=False` (Figure 1's config) drops the per-unit test-set quantiles and the
    two shifts made of them (ics_w1, ics_p50_shift); every other number of the evaluation and
    the mean/std shifts keep their bits."""
    outs = {}
    for flag in (True, False):
        run = _run(ics_quantiles=flag)
        assert run.static.ics_quantiles is flag
        program = train.make_program(run.static, data)
        numbers = train.numbers_to_arrays(run.numbers)
        carry = jax.jit(program.init)(numbers)
        before = jax.jit(program.evaluate)(carry, numbers)
        carry, _ = jax.jit(program.chunk)(carry, numbers)
        after = jax.jit(program.evaluate)(carry, numbers)
        outs[flag] = (after, jax.jit(train.ics_drift)(before.pop("ics"), after.pop("ics")))
    (with_q, drift_q), (without, drift) = outs[True], outs[False]
    assert set(drift_q) == {"ics_w1", "ics_mean_shift", "ics_std_shift", "ics_p50_shift"}
    assert set(drift) == {"ics_mean_shift", "ics_std_shift"}
    assert float(drift_q["ics_w1"][0]) > 0
    jax.tree.map(np.testing.assert_array_equal, _bits(without), _bits(with_q))
    jax.tree.map(np.testing.assert_array_equal, _bits(drift),
                 _bits({k: drift_q[k] for k in drift}))


@pytest.mark.parametrize("bad", ["1", "yes", "None"])
def test_a_bad_ics_quantiles_is_refused_with_the_field(bad):
    cfg = fig1_mnist.get_config("quick")
    cfg.runs = (f"r: ics_quantiles={bad}",)
    with pytest.raises(config_lib.ConfigError, match="ics_quantiles"):
        config_lib.runs(cfg)

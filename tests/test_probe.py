"""The probe hook: an experiment's measurement compiled into every evaluation, through the real runner.

A tiny probe (the loss on the probe batch, per-layer weight norms, and a few inputs it was given)
is registered as the experiment "probe_test_xyz" and removed afterwards. It must become evaluation
curves named `probe_*`, see the same training examples at every evaluation, never change the
training trajectory, and work for one run and for runs vmapped together.
"""
import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bn_experiments import config as config_lib
from bn_experiments import data as data_lib
from bn_experiments import experiments, models, runner, sweep, train
from bn_experiments.configs import default
from bn_experiments.probe import Probe, ProbeInputs

NAME = "probe_test_xyz"
SOURCE = "synthetic:256:64"
STEPS, EVERY, LAYERS = 40, 10, 2


def _measure(inputs: ProbeInputs) -> dict:
    loss, (_, inter) = inputs.loss_fn(inputs.params, inputs.state, inputs.x, inputs.y)
    logits, _, _ = inputs.apply(inputs.params, inputs.state, inputs.x, False)
    return {"loss": loss,
            "w_norm": [jnp.linalg.norm(layer["w"]) for layer in inputs.params["hidden"]],
            "x_sum": jnp.sum(inputs.x), "y_sum": jnp.sum(inputs.y).astype(jnp.float32),
            "lr": inputs.learning_rate, "step": inputs.step.astype(jnp.float32),
            "eval_logit_mean": jnp.mean(logits), "units": float(inter["preacts"][-1].shape[-1])}


PROBE = Probe(_measure, batch_size=24)


@pytest.fixture
def registered():
    experiments.register(experiments.Experiment(NAME, probe=PROBE))
    yield
    experiments._REGISTRY.pop(NAME, None)


@pytest.fixture(scope="module")
def data():
    return data_lib.to_device(data_lib.load(SOURCE))


def _cfg(grid=(), **overrides):
    cfg = default.get_config()
    cfg.experiment = NAME
    cfg.steps, cfg.eval_every, cfg.batch_size, cfg.checkpoint_every = STEPS, EVERY, 32, 0
    cfg.learning_rate = 0.1
    cfg.model.widths, cfg.model.tracked_units = (16, 8), (0,)
    cfg.data.source = SOURCE
    cfg.grid = grid
    for k, v in overrides.items():
        config_lib.set_dotted(cfg, k, v)
    return cfg


def _probe_batch_sum(data, seed: int) -> tuple[float, float]:
    """x and y sums of the probe batch a run with `seed` must see (the trainer's key split)."""
    data_key = jax.random.split(jax.random.key(seed), 3)[1]
    idx = np.asarray(train.probe_indices(data_key, PROBE.batch_size, data.num_train))
    assert len(set(idx.tolist())) == PROBE.batch_size  # drawn without replacement
    return float(np.sum(np.asarray(data.x_train)[idx])), float(np.sum(np.asarray(data.y_train)[idx]))


def test_probe_curves_through_the_runner_vmapped_and_alone(registered, data, tmp_path):
    cfg = _cfg(grid=(("model.norm", ("none", "batchnorm")), ("seed", (0, 1))))
    doc = runner.train_and_evaluate(cfg, tmp_path / "w", progress=False, plot=False)
    names = {f"probe_{k}" for k in ("loss", "x_sum", "y_sum", "lr", "step", "eval_logit_mean",
                                    "units")} | {f"probe_w_norm_layer{l}" for l in (1, 2)}
    steps = list(range(0, STEPS + 1, EVERY))
    x_sums = {}
    for run in doc["runs"]:
        curves, final = run["curves"], run["final"]
        assert names <= set(curves), sorted(set(curves))
        assert "probe_w_norm_layer3" not in curves
        for k in names:
            assert curves[k]["step"] == steps, k
            assert final[f"mean_{k}"] == pytest.approx(np.mean(curves[k]["value"][1:]), rel=1e-6)
        assert curves["probe_step"]["value"] == steps
        assert curves["probe_lr"]["value"] == pytest.approx([0.1] * len(steps))
        assert curves["probe_units"]["value"] == [8.0] * len(steps)
        # The same examples at every evaluation: those of the run's data key.
        seed = run["config"]["seed"]
        x_sum, y_sum = _probe_batch_sum(data, seed)
        assert curves["probe_x_sum"]["value"] == pytest.approx([x_sum] * len(steps), rel=1e-5)
        assert curves["probe_y_sum"]["value"] == [y_sum] * len(steps)
        x_sums[seed] = x_sum
        # Training moves the weights, so the per-layer norms change between evaluations.
        assert len(set(curves["probe_w_norm_layer1"]["value"])) > 1
    assert x_sums[0] != x_sums[1]  # each seed its own probe batch
    rows = [json.loads(line) for line in (tmp_path / "w" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 4 * len(steps) and all(names <= set(r) for r in rows)

    # One run alone (no vmap) measures what it measured inside the vmapped program.
    alone = runner.train_and_evaluate(
        _cfg(**{"model.norm": "batchnorm", "seed": 1}), tmp_path / "alone", progress=False,
        plot=False)["runs"][0]
    together = next(r for r in doc["runs"] if r["name"] == "model.norm=batchnorm,seed=1")
    for k in names:
        np.testing.assert_allclose(alone["curves"][k]["value"], together["curves"][k]["value"],
                                   rtol=2e-3, atol=2e-4, err_msg=k)


def test_probe_loss_is_the_training_loss_on_the_probe_batch(data):
    run = config_lib.runs(_cfg(**{"model.norm": "batchnorm"}))[0]
    program = train.make_program(run.static, data, PROBE)
    numbers = train.numbers_to_arrays(run.numbers)
    carry = jax.jit(program.init)(numbers)
    got = jax.jit(program.evaluate)(carry, numbers)["probe"]
    idx = train.probe_indices(carry["data_key"], PROBE.batch_size, data.num_train)
    family = models.get(run.static.model_name)
    logits, _, _ = family.apply(carry["params"], carry["bn_state"], data.x_train[idx],
                                cfg=run.static.model, train=True)
    labels = np.asarray(data.y_train[idx])
    want = -np.asarray(jax.nn.log_softmax(logits))[np.arange(len(labels)), labels].mean()
    np.testing.assert_allclose(got["loss"], want, rtol=1e-5)
    assert isinstance(got["w_norm"], list) and len(got["w_norm"]) == LAYERS


@pytest.mark.parametrize("norm", ["none", "batchnorm"])
def test_the_probe_does_not_change_the_trajectory(data, norm):
    """With and without the probe: the same bits in every training and evaluation metric."""
    runs = sweep.expand(_cfg(grid=(("model.norm", (norm,)), ("seed", (0, 1)))))
    for group in (runs, runs[:1]):  # vmapped and alone
        plain = runner.train_runs(group, data, target=0.5, progress=False)
        probed = runner.train_runs(group, data, target=0.5, progress=False, probe=PROBE)
        for a, b in zip(plain, probed):
            assert set(b.evals) - set(a.evals) == {k for k in b.evals if k.startswith("probe_")}
            for k in a.train:
                np.testing.assert_array_equal(a.train[k], b.train[k], err_msg=k)
            for k in a.evals:
                np.testing.assert_array_equal(a.evals[k], b.evals[k], err_msg=k)
            assert {k for k in b.final if k.startswith("mean_probe_")} == {
                f"mean_{k}" for k in b.evals if k.startswith("probe_")}


def test_probe_curves_stop_at_divergence(data):
    runs = sweep.expand(_cfg(grid=(("learning_rate", (1e10, 0.1)),), **{"model.activation": "relu"}))
    diverged, fine = runner.train_runs(runs, data, target=0.5, progress=False, probe=PROBE)
    d = diverged.diverged_at
    assert d is not None and fine.diverged_at is None
    assert all(s < d for s in diverged.eval_steps)
    assert len(diverged.evals["probe_loss"]) == len(diverged.eval_steps)
    assert np.all(np.isfinite(fine.evals["probe_loss"]))


def test_evaluate_with_a_probe_compiles_once_for_any_numbers(data):
    run = config_lib.runs(_cfg())[0]
    program = train.make_program(run.static, data, PROBE)
    traces = []

    def counted(carry, numbers):
        traces.append(1)
        return program.evaluate(carry, numbers)

    evaluate = jax.jit(counted)
    values = []
    for lr, std, seed in ((0.1, 0.1, 0), (0.5, 0.3, 1), (2.0, 0.05, 2)):
        numbers = train.numbers_to_arrays(dataclasses.replace(
            run.numbers, learning_rate=lr, init_std=std, seed=seed))
        values.append(float(evaluate(program.init(numbers), numbers)["probe"]["lr"]))
    assert len(traces) == 1
    assert values == pytest.approx([0.1, 0.5, 2.0])


def test_a_bad_probe_is_refused_with_its_key(data):
    run = config_lib.runs(_cfg())[0]
    bad = Probe(lambda inputs: {"per_example": inputs.y.astype(jnp.float32)})
    program = train.make_program(run.static, data, bad)
    numbers = train.numbers_to_arrays(run.numbers)
    with pytest.raises(ValueError, match="'per_example' must be a scalar"):
        program.evaluate(program.init(numbers), numbers)
    with pytest.raises(ValueError, match="probe batch_size=999"):
        train.make_program(run.static, data, Probe(_measure, batch_size=999))


def _moved(inputs: ProbeInputs) -> dict:
    """How far the params moved since the previous evaluation, and the steps it saw."""
    sq = jax.tree.map(lambda a, b: jnp.sum((a - b) ** 2), inputs.params, inputs.prev_params)
    memo = inputs.prev_memo or {"w1": jnp.zeros(()), "mark": jnp.zeros(())}  # None: no memo yet
    return {"moved": jnp.sqrt(sum(jax.tree.leaves(sq))),
            "w1": jnp.linalg.norm(inputs.params["hidden"][0]["w"]),
            "prev_w1": jnp.linalg.norm(inputs.prev_params["hidden"][0]["w"]),
            "prev_step": inputs.prev_step.astype(jnp.float32),
            "use_bn": float(inputs.model.use_bn),
            # Its memo (Probe(memo=True)): what it measured, for the next evaluation to read.
            "memo_w1": memo["w1"], "memo_mark": memo["mark"],
            "memo": {"w1": jnp.linalg.norm(inputs.params["hidden"][0]["w"]),
                     "mark": inputs.step.astype(jnp.float32) + 1}}


@pytest.mark.parametrize("resumed", [False, True])
def test_probe_sees_the_previous_evaluation_on_an_uneven_schedule(data, tmp_path, monkeypatch,
                                                                   resumed):
    """`prev_params` is the run at the previous evaluation (itself at step 0), including the extra
    early evaluations of `eval_steps`, and survives an interrupt and resume from a checkpoint; so
    does the probe's memo (zeros before the first evaluation)."""
    name = NAME + "_prev"
    experiments.register(experiments.Experiment(name, probe=Probe(_moved, batch_size=8, memo=True)))
    try:
        cfg = _cfg(**{"model.norm": "batchnorm", "eval_steps": (3, 5), "checkpoint_every": 20})
        cfg.experiment = name
        wd = tmp_path / "w"
        if resumed:  # interrupted at an evaluation (checkpointed there), then resumed
            # Saved as False first, so the teardown restores False (not the True set below).
            monkeypatch.setattr(runner.interrupt, "_requested", False)
            calls = iter(range(1000))

            def ctrl_c_at_the_fourth_evaluation() -> bool:  # as the SIGINT handler would
                runner.interrupt._requested = next(calls) >= 3
                return runner.interrupt._requested
            monkeypatch.setattr(runner.interrupt, "requested", ctrl_c_at_the_fourth_evaluation)
            with pytest.raises(runner.interrupt.Interrupted):
                runner.train_and_evaluate(cfg, wd, progress=False, plot=False)
            runner.interrupt._requested = False
            monkeypatch.setattr(runner.interrupt, "requested", lambda: False)
        run = runner.train_and_evaluate(cfg, wd, progress=False, plot=False)["runs"][0]
    finally:
        experiments._REGISTRY.pop(name, None)
    c = run["curves"]
    steps = [0, 3, 5] + list(range(EVERY, STEPS + 1, EVERY))
    assert c["probe_moved"]["step"] == steps
    assert c["probe_prev_step"]["value"] == [0.0] + [float(s) for s in steps[:-1]]
    assert c["probe_moved"]["value"][0] == 0.0 and min(c["probe_moved"]["value"][1:]) > 0
    assert c["probe_prev_w1"]["value"][1:] == pytest.approx(c["probe_w1"]["value"][:-1], rel=1e-6)
    assert c["probe_use_bn"]["value"] == [1.0] * len(steps)
    assert c["probe_memo_mark"]["value"] == [0.0] + [s + 1.0 for s in steps[:-1]]
    assert c["probe_memo_w1"]["value"] == [0.0] + c["probe_w1"]["value"][:-1]  # the same bits
    assert "probe_memo" not in c and not any(k.startswith("probe_memo_w1_") for k in c)


def test_extra_early_evaluations_do_not_change_the_trajectory(data, tmp_path):
    """Chunks of uneven length (eval_steps) train on the same batches: the curves at the regular
    steps and the training loss of every step are those of the plain schedule."""
    plain = runner.train_and_evaluate(_cfg(), tmp_path / "plain", progress=False, plot=False)
    early = runner.train_and_evaluate(_cfg(eval_steps=(1, 2, 5)), tmp_path / "early",
                                      progress=False, plot=False)
    a, b = plain["runs"][0]["curves"], early["runs"][0]["curves"]
    assert b["test_accuracy"]["step"] == [0, 1, 2, 5, 10, 20, 30, 40]
    assert config_lib.eval_schedule(40, 10, (5, 40, 45)) == [5, 10, 20, 30, 40]  # past the end: out
    np.testing.assert_array_equal(a["train_loss"]["value"], b["train_loss"]["value"])
    regular = [i for i, s in enumerate(b["test_loss"]["step"]) if s % EVERY == 0]
    np.testing.assert_allclose(a["test_loss"]["value"],
                               [b["test_loss"]["value"][i] for i in regular], rtol=1e-6)
    assert plain["runs"][0]["final"]["auc_test_accuracy"] == pytest.approx(
        early["runs"][0]["final"]["auc_test_accuracy"], rel=1e-6)


@pytest.mark.parametrize("bad", [(0,), (-5,), (5.0,), "5"])
def test_bad_eval_steps_are_refused_with_the_field(bad):
    with pytest.raises(config_lib.ConfigError, match="eval_steps"):
        config_lib.validate(_cfg(eval_steps=bad), reference=default.get_config())

"""Checkpoint and resume: a run killed with SIGKILL and resumed gives the same summary.json bytes."""
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np

from bn_experiments import checkpoint, cli

ARGS = ["--config", "fig1_mnist:quick", "--progress=false", "--config.data.source=synthetic",
        "--config.steps=1200", "--config.eval_every=50", "--config.checkpoint_every=100",
        "--config.model.widths=(64, 32)"]


def test_checkpointer_round_trips_carry_with_prng_keys(tmp_path):
    carry = {"params": {"w": jax.numpy.arange(6.0).reshape(2, 3)}, "step": jax.numpy.int32(7),
             "data_key": jax.random.key(1), "noise_key": jax.random.split(jax.random.key(2), 3)}
    host = {"losses": np.ones((2, 4)), "metrics_bytes": np.asarray(123)}
    ck = checkpoint.Checkpointer(tmp_path / "ck")
    assert not ck.exists()
    ck.save(5, carry, host)
    ck.save(10, carry, host)
    assert ck.exists()
    step, restored, host2 = checkpoint.Checkpointer(tmp_path / "ck").restore(carry)
    assert step == 10 and int(host2["metrics_bytes"]) == 123
    np.testing.assert_array_equal(restored["params"]["w"], carry["params"]["w"])
    np.testing.assert_array_equal(jax.random.key_data(restored["noise_key"]),
                                  jax.random.key_data(carry["noise_key"]))
    ck.delete()
    assert not (tmp_path / "ck").exists()


def test_a_checkpoint_of_another_training_state_is_refused_with_the_fix(tmp_path):
    # Written by a version whose carry had no probe batch (or a memo of another shape): resuming
    # it into this version's carry says so in one line, with --restart, instead of mis-assigning.
    import pytest

    from bn_experiments.workdir import WorkdirError
    carry = {"params": {"w": jax.numpy.ones((2, 3))}, "step": jax.numpy.int32(7),
             "data_key": jax.random.key(1), "noise_key": jax.random.key(2)}
    checkpoint.Checkpointer(tmp_path / "ck").save(5, carry, {"metrics_bytes": np.asarray(0)})
    for now in ({**carry, "probe_idx": jax.numpy.arange(4)},
                {**carry, "params": {"w": jax.numpy.ones((3, 3))}}):
        with pytest.raises(WorkdirError, match="another training state.*--restart"):
            checkpoint.Checkpointer(tmp_path / "ck").restore(now)
    step, same, _ = checkpoint.Checkpointer(tmp_path / "ck").restore(carry)
    assert step == 5 and int(same["step"]) == 7


def _finished_checkpoints(workdir: pathlib.Path) -> list[int]:
    steps = []
    for group in (workdir / "checkpoints").glob("*"):
        steps += [int(p.name) for p in group.iterdir() if p.name.isdigit()]
    return steps


def test_killed_run_resumes_to_the_same_bytes(tmp_path):
    reference = tmp_path / "reference"
    assert cli.main(["run", "--workdir", str(reference), *ARGS]) == 0

    workdir = tmp_path / "killed"
    cmd = [sys.executable, "-m", "bn_experiments.cli", "run", "--workdir", str(workdir), *ARGS]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if any(s > 0 for s in _finished_checkpoints(workdir)):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before a checkpoint was seen: make it longer"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (workdir / "summary.json").exists()

    assert cli.main(["run", "--workdir", str(workdir), *ARGS]) == 0
    assert (workdir / "summary.json").read_bytes() == (reference / "summary.json").read_bytes()
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    ref_rows = [json.loads(line) for line in (reference / "metrics.jsonl").read_text().splitlines()]
    assert rows == ref_rows  # rows after the checkpoint were dropped, none duplicated
    assert not (workdir / "checkpoints").exists()


def test_resuming_with_a_different_config_names_the_fields(tmp_path, capsys):
    workdir = tmp_path / "w"
    workdir.mkdir()
    saved = cli._load_config(ARGS)[0].to_dict()
    saved["steps"], saved["learning_rate"] = 5, 0.7  # an unfinished run of another config
    (workdir / "config.json").write_text(json.dumps(saved))
    assert cli.main(["run", "--workdir", str(workdir), *ARGS]) == 2
    err = capsys.readouterr().err
    assert "differs in: learning_rate, steps)" in err

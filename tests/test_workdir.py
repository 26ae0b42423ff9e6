"""The workdir guard, driven as a user drives it: `bn-exp` in subprocesses, signals, other processes.

Work is never lost, never mixed up, never mistaken for a result: Ctrl-C exits 130 in one line that
says how to resume and the resumed workdir ends byte-for-byte as an uninterrupted one (curves.npz
holding every run, provenance.json every invocation); a second `bn-exp` on a workdir in use is
refused in one line, a stale lock is not; an unwritable workdir is one line before training;
--restart leaves no figure of the previous run; result files get the permissions of a plain write.
"""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

from bn_experiments import cli

# Figure 1's runs (2 networks x 5 seeds) of a small MLP on synthetic data: long enough to interrupt
# three times.
ARGS = ["--config", "fig1_mnist", "--progress=false", "--config.data.source=synthetic",
        "--config.steps=2000", "--config.eval_every=50", "--config.checkpoint_every=500",
        "--config.model.widths=(16,)", "--config.population_batches=0"]
TINY = ["--progress=false", "--config.data.source=synthetic", "--config.steps=20",
        "--config.eval_every=10", "--config.checkpoint_every=0", "--config.model.widths=(8,)",
        "--config.population_batches=0"]
FOREVER = ["--config", "fig1_mnist", "--progress=false", "--config.data.source=synthetic",
           "--config.steps=1000000", "--config.eval_every=100", "--config.checkpoint_every=0",
           "--config.model.widths=(8,)", "--config.population_batches=0"]


def _env(home: pathlib.Path | None = None) -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if home is not None:  # a user without a writable HOME: matplotlib must not warn on stderr
        env.update(HOME=str(home), MPLCONFIGDIR=str(home / "mpl"))
    return env


def _start(workdir: pathlib.Path, args: list[str], *prefix: str, env=None) -> subprocess.Popen:
    cmd = [*prefix, sys.executable, "-m", "bn_experiments.cli", "run", "--workdir", str(workdir),
           *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env or _env())


def _bn_exp(workdir: pathlib.Path, args: list[str], *prefix: str, env=None):
    proc = _start(workdir, args, *prefix, env=env)
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


def _wait_for_training(proc: subprocess.Popen, workdir: pathlib.Path, rows: int = 1) -> None:
    """Until metrics.jsonl holds `rows` rows (the program is compiled and training)."""
    deadline = time.time() + 240
    path = workdir / "metrics.jsonl"
    while time.time() < deadline and proc.poll() is None:
        if path.exists() and path.read_text().count("\n") >= rows:
            return
        time.sleep(0.05)
    raise AssertionError(f"training did not start (exit {proc.poll()}): {proc.stderr.read()}")


def _one_error_line(rc: int, err: str, *names: str) -> str:
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1, (rc, err)
    assert lines[0].startswith("bn-exp run: error: ") and "Traceback" not in err, err
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


def _rows(workdir: pathlib.Path) -> list[tuple[str, int]]:
    return [(r["run"], r["step"]) for r in map(json.loads, (workdir / "metrics.jsonl").read_text()
                                               .splitlines())]


# ------------------------------------------------------------------------------- Ctrl-C, resume


def test_ctrl_c_exits_130_cleanly_and_the_resumed_workdir_equals_an_uninterrupted_one(tmp_path):
    reference = tmp_path / "reference"
    assert cli.main(["run", "--workdir", str(reference), *ARGS]) == 0

    workdir = tmp_path / "interrupted"
    for i, delay in enumerate((0.0, 0.3, 0.6)):  # several tries, at different points of training
        before = len(_rows(workdir)) if (workdir / "metrics.jsonl").exists() else 0
        proc = _start(workdir, ARGS)
        _wait_for_training(proc, workdir, rows=before + 1)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 130, f"try {i}: exit {proc.returncode} (139 = segfault): {err}"
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "rerun the same command to resume" in lines[0], err
        assert "Traceback" not in err and not (workdir / "summary.json").exists()
        assert not (workdir / ".lock").exists() and not list(workdir.glob("*.png"))

    assert cli.main(["run", "--workdir", str(workdir), *ARGS]) == 0
    assert (workdir / "summary.json").read_bytes() == (reference / "summary.json").read_bytes()
    assert _rows(workdir) == _rows(reference)  # rows after a checkpoint dropped, none repeated
    with np.load(workdir / "curves.npz") as got, np.load(reference / "curves.npz") as want:
        assert sorted(got.files) == sorted(want.files)  # every run's full data, both invocations'
        assert {k.split("/")[0] for k in got.files} == {
            f"model.norm={n},seed={s}" for n in ("none", "batchnorm") for s in range(5)}
        for k in want.files:
            np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    prov = json.loads((workdir / "provenance.json").read_text())
    assert [i["outcome"] for i in prov["invocations"]] == ["interrupted"] * 3 + ["finished"]
    assert prov["resumed"] is True and all(i["command"] for i in prov["invocations"])
    assert sum(len(i["trained"]) for i in prov["invocations"]) == 10  # 2 networks x 5 seeds
    assert prov["wall_seconds"] == pytest.approx(sum(i["wall_seconds"] for i in prov["invocations"]),
                                                 abs=0.05)


# ---------------------------------------------------------------------------------- the lock


def test_a_second_bn_exp_on_a_workdir_in_use_is_refused_in_one_line(tmp_path):
    workdir = tmp_path / "w"
    first = _start(workdir, FOREVER)
    try:
        _wait_for_training(first, workdir)
        rc, _, err = _bn_exp(workdir, FOREVER)
        _one_error_line(rc, err, "--workdir", "in use", str(first.pid))
        rows = _rows(workdir)
        assert len(rows) == len(set(rows)), "two writers interleaved metrics.jsonl"
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=120)
    assert first.returncode == 130


def test_a_stale_lock_of_a_killed_process_does_not_block(tmp_path):
    workdir = tmp_path / "w"
    holder = subprocess.run(
        [sys.executable, "-c", "import os, signal, sys\n"
         "from bn_experiments.workdir import Workdir\n"
         "with Workdir.open(sys.argv[1]):\n    os.kill(os.getpid(), signal.SIGKILL)\n",
         str(workdir)], capture_output=True)
    assert holder.returncode == -signal.SIGKILL and (workdir / ".lock").exists()
    rc, _, err = _bn_exp(workdir, ["--config", "fig1_mnist", *TINY])
    assert rc == 0, err
    assert (workdir / "summary.json").exists() and not (workdir / ".lock").exists()


# -------------------------------------------------------------------------- unwritable workdirs


def _as_another_user() -> tuple[str, ...]:
    if os.geteuid() != 0:
        return ()
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: permissions cannot stop a write")
    return ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")


def test_an_existing_but_unwritable_workdir_is_one_line_before_training():
    prefix = _as_another_user()
    root = pathlib.Path(tempfile.mkdtemp(prefix="bn-exp-ro-"))
    workdir = root / "readonly"
    try:
        root.chmod(0o777)
        home = root / "home"
        home.mkdir()
        home.chmod(0o777)
        workdir.mkdir()
        workdir.chmod(0o555)
        rc, _, err = _bn_exp(workdir, [*ARGS[:3], "--config.steps=20", "--config.eval_every=10"],
                               *prefix, env=_env(home))
        _one_error_line(rc, err, f"--workdir {workdir}", "cannot write")
        assert list(workdir.iterdir()) == []
        # The same line as for a path that cannot be created at all.
        rc, _, err = _bn_exp(workdir / "sub", [*ARGS[:3], "--config.steps=20",
                                                 "--config.eval_every=10"], *prefix, env=_env(home))
        _one_error_line(rc, err, f"--workdir {workdir / 'sub'}", "cannot create")
    finally:
        if workdir.exists():
            workdir.chmod(0o755)
        shutil.rmtree(root)


# ------------------------------------------------------------------------------------- restart



def test_restart_as_another_experiment_leaves_no_old_figure(tmp_path):
    workdir = tmp_path / "w"
    assert cli.main(["run", "--workdir", str(workdir), "--config", "fig1_mnist", *TINY]) == 0
    assert {p.name for p in workdir.glob("fig1*.png")}
    (workdir / "notes.txt").write_text("mine\n")
    assert cli.main(["sweep", "--workdir", str(workdir), "--restart", "--config", "lr_sweep", *TINY,
                     "--config.grid=(('learning_rate', (0.1, 0.2)),)"]) == 0
    assert not list(workdir.glob("fig1*.png"))
    doc = json.loads((workdir / "summary.json").read_text())
    assert doc["experiment"] == "lr_sweep" and len(doc["runs"]) == 2
    assert (workdir / "notes.txt").read_text() == "mine\n"  # only our outputs are removed


def test_restart_clears_the_old_result_before_training_starts(tmp_path):
    workdir = tmp_path / "w"
    assert cli.main(["run", "--workdir", str(workdir), "--config", "fig1_mnist", *TINY,
                     "--config.experiment=generic", "--config.runs=()"]) == 0
    assert list(workdir.glob("*.png"))
    proc = _start(workdir, ["--restart", *FOREVER])
    try:
        deadline = time.time() + 240  # until the new invocation is recorded, then trains
        while proc.poll() is None and time.time() < deadline and '"running"' not in (
                (workdir / "provenance.json").read_text() if (workdir / "provenance.json").exists()
                else ""):
            time.sleep(0.05)
        _wait_for_training(proc, workdir)
        assert not (workdir / "summary.json").exists() and not list(workdir.glob("*.png"))
        assert not (workdir / "points").exists() or not list((workdir / "points").iterdir())
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=120)


# --------------------------------------------------------------------------------- permissions


def test_result_files_get_the_permissions_of_a_plain_write(tmp_path):
    old = os.umask(0o002)
    try:
        workdir = tmp_path / "w"
        assert cli.main(["run", "--workdir", str(workdir), "--config", "fig1_mnist", *TINY,
                         "--config.experiment=generic", "--config.runs=()"]) == 0
        files = [p for p in workdir.rglob("*") if p.is_file()]
        assert files and {stat.S_IMODE(p.stat().st_mode) for p in files} == {0o664}, \
            {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
        png = next(workdir.glob("*.png"))
        png.chmod(0o644)  # e.g. committed: `bn-exp plot` keeps the mode a file already has
        assert cli.main(["plot", str(workdir)]) == 0
        assert stat.S_IMODE(png.stat().st_mode) == 0o644
    finally:
        os.umask(old)

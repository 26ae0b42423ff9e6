"""Every device of one host: programs side by side, one per device, numbers unchanged.

The device count is fixed when a process's JAX backend starts (this process already has its own),
so the runs on 1, 2 and 4 emulated CPU devices are `bn-exp` subprocesses (`--devices N`), and their
summary.json files are compared byte for byte.
"""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from bn_experiments import cli, devices, loop, placement, sweep, waves
from bn_experiments import data as data_lib
from bn_experiments.configs import default

# Two structures (no BN, BN) x 5 seeds in programs of 2: per structure two groups of 2 and a run
# alone (6 programs): one at a time on 1 device, in waves of 2 on 2, of 4 on 4 devices.
ARGS = ["--config", "fig1_mnist:quick", "--progress=false", "--config.data.source=synthetic:256:64",
        "--config.experiment=test_devices", "--config.runs=()",
        "--config.grid=(('model.norm', ('none', 'batchnorm')), ('seed', (0, 1, 2, 3, 4)))",
        "--config.points_per_program=2", "--config.steps=20", "--config.eval_every=10",
        "--config.eval_steps=(5,)", "--config.model.widths=(8,)", "--config.population_batches=2",
        "--config.checkpoint_every=0"]


def _rows(workdir) -> list[str]:
    return sorted((workdir / "metrics.jsonl").read_text().splitlines())


def _start(workdir, count: int, cache) -> subprocess.Popen:
    env = {**os.environ, devices.CACHE_ENV: str(cache)}
    return subprocess.Popen([sys.executable, "-m", "bn_experiments.cli", "sweep", "--workdir",
                             str(workdir), f"--devices={count}", *ARGS], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> None:
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err


def test_the_same_summary_on_1_2_and_4_devices_with_and_without_compilation_cache(tmp_path):
    cache = tmp_path / "cache"
    # 1 device compiling everything; 4 devices filling a compilation cache, at the same time ...
    first = [_start(tmp_path / "d1", 1, "off"), _start(tmp_path / "d4", 4, cache)]
    for proc in first:
        _finish(proc)
    assert any(cache.iterdir())
    # ... then 2 devices with that cache (what it finds there it loads instead of compiling).
    _finish(_start(tmp_path / "d2", 2, cache))
    one = tmp_path / "d1"
    for n in (1, 2, 4):
        prov = json.loads((tmp_path / f"d{n}" / "provenance.json").read_text())
        assert prov["device"]["count"] == n and prov["device"]["source"] == "--devices", prov
        assert prov["device"].get("compilation_cache") == (None if n == 1 else str(cache))
        assert (tmp_path / f"d{n}" / "summary.json").read_bytes() == (one / "summary.json").read_bytes()
        assert _rows(tmp_path / f"d{n}") == _rows(one)  # the same rows, in another order
    # Programs side by side: on 4 devices 6 programs in 2 waves (a wave's programs share its time).
    prov4 = json.loads((tmp_path / "d4" / "provenance.json").read_text())
    assert len(prov4["program_seconds"]) == 6 and len(set(prov4["program_seconds"].values())) == 2


def test_programs_side_by_side_compile_once_however_many_chunks():
    # Two groups on two devices, trained side by side for 6 chunks: after the first chunk and its
    # evaluation nothing compiles again, and each program's arrays stay on its own device.
    script = textwrap.dedent("""
        import jax, json
        jax.config.update("jax_num_cpu_devices", 2)
        from jax import monitoring
        from bn_experiments import data as data_lib, loop, placement, sweep, waves
        from bn_experiments.configs import default
        compiles, at_step = [], {}
        monitoring.register_event_duration_secs_listener(
            lambda event, secs, **kw: compiles.append(event)
            if event == "/jax/core/compile/backend_compile_duration" else None)
        cfg = default.get_config()
        cfg.experiment, cfg.data.source, cfg.model.widths = "x", "synthetic:256:64", (8,)
        cfg.steps, cfg.eval_every, cfg.batch_size, cfg.population_batches = 30, 5, 16, 0
        cfg.grid = (("learning_rate", (0.1, 0.2, 0.3, 0.4)),)
        ds = data_lib.to_device(data_lib.load(cfg.data.source))
        runs = sweep.expand(cfg, num_train=ds.num_train)
        programs = [loop.ProgramRun(runs[2 * d:2 * d + 2], placement.put_data(ds, dev),
                                    target=0.9, device=dev) for d, dev in enumerate(jax.devices())]
        waves.train_wave(programs, progress=False,
                         log=lambda row: at_step.setdefault(row["step"], len(compiles)))
        where = [sorted({str(d) for x in jax.tree.leaves(p.carry) for d in x.devices()})
                 for p in programs]
        print(json.dumps({"at_step": at_step, "where": where}))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    at = {int(k): v for k, v in got["at_step"].items()}
    assert sorted(at) == [0, 5, 10, 15, 20, 25, 30] and at[5] > at[0] > 0, got
    assert at[30] == at[5], got  # chunks 2 to 6 and their evaluations compiled nothing
    assert [len(w) for w in got["where"]] == [1, 1] and got["where"][0] != got["where"][1], got


def test_uneven_chunks_composed_of_one_length_give_the_same_bits():
    # Evaluations at 5, 10, then every 20 steps: chunks of 5, 5, 10, 20, 20 steps run as chunks of
    # 5 and 20 (two compiled scans instead of three) against each length compiled on its own,
    # through a divergence (learning rate 1e10) and BN's running statistics.
    cfg = default.get_config()
    cfg.experiment, cfg.data.source, cfg.model.widths = "x", "synthetic:256:64", (8,)
    cfg.model.activation, cfg.model.norm, cfg.batch_size = "relu", "batchnorm", 16
    cfg.steps, cfg.eval_every, cfg.eval_steps, cfg.population_batches = 60, 20, (5, 10), 2
    cfg.grid = (("learning_rate", (0.1, 1e10)),)
    ds = data_lib.to_device(data_lib.load(cfg.data.source))
    runs = sweep.expand(cfg, num_train=ds.num_train)
    composed = loop.ProgramRun(runs, ds, target=0.9)
    alone = loop.ProgramRun(runs, ds, target=0.9, fns=composed.fns)
    alone.unit = cfg.eval_every  # each length its own chunk
    assert composed.unit == 5 and loop.pieces(10, 20, 5) == [5, 5] and loop.pieces(20, 20, 5) == [None]
    got, want = (waves.train_wave([p], progress=False) for p in (composed, alone))
    assert got[0][1].diverged_at is not None and got[0][0].diverged_at is None
    for a, b in zip(got[0], want[0]):
        assert a.diverged_at == b.diverged_at and a.eval_steps == b.eval_steps
        for k in b.train:
            np.testing.assert_array_equal(a.train[k], b.train[k], err_msg=k)
        for k in b.evals:
            np.testing.assert_array_equal(a.evals[k], b.evals[k], err_msg=k)
        assert json.dumps(a.final) == json.dumps(b.final)


def test_waves_are_consecutive_groups_one_per_device():
    groups = [["a1", "a2"], ["a3"], ["b1", "b2"], ["b3"], ["c"]]
    assert placement.waves(groups, 1) == [[g] for g in groups]
    assert placement.waves(groups, 2) == [groups[0:2], groups[2:4], groups[4:]]
    assert placement.waves(groups, 8) == [groups]
    # A data-parallel program spans the devices: a wave of its own, the order kept.
    spans = lambda g: g in ("c", "f")  # noqa: E731
    assert placement.waves(list("abcdefg"), 2, alone=spans) == [
        ["a", "b"], ["c"], ["d", "e"], ["f"], ["g"]]


@pytest.mark.parametrize("flag", ["--devices=0", "--devices=two", "--devices=-3"])
def test_bad_device_counts_are_one_line(flag, capsys):
    assert cli.main(["run", flag, "--config", "fig1_mnist:quick", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--devices" in err[0] and "positive whole number" in err[0], err


def test_the_device_count_comes_from_the_flag_the_environment_or_the_cores():
    script = ("import json, os; from bn_experiments import devices; import jax; "
              "c = devices.configure({arg}); print(json.dumps([c, len(jax.devices())]))")
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", devices.ENV)}
    cases = [("3", {}, (3, "--devices")), ("None", {devices.ENV: "2"}, (2, devices.ENV)),
             ("None", {}, (devices.cores(), "cores")),
             ("None", {"XLA_FLAGS": "--xla_force_host_platform_device_count=3"}, (3, "XLA_FLAGS"))]
    for arg, extra, (count, source) in cases:
        out = subprocess.run([sys.executable, "-c", script.format(arg=arg)], capture_output=True,
                             text=True, timeout=120, env={**env, **extra})
        assert out.returncode == 0, out.stderr
        chosen, seen = json.loads(out.stdout.strip().splitlines()[-1])
        assert chosen == {"requested": count, "source": source} and seen == count, (arg, extra)
    with pytest.raises(devices.DeviceError, match="BN_EXP_DEVICES='x'"):
        devices.parse_count("x", devices.ENV)

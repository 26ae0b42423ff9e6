"""`bn-exp` end to end: the quick Figure 1 run, plot, claims, compare, help, list, --dry-run, and
one-line config errors (in-process, and through the real command in a subprocess)."""
import contextlib
import io
import json
import shutil
import subprocess
import sys

import pytest

from bn_experiments import cli, summary


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("fig1") / "run"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = cli.main(["run", "--config", "fig1_mnist:quick", "--workdir", str(workdir),
                       "--progress=false", "--config.steps=100", "--config.eval_every=50"])
    assert rc == 0
    (workdir.parent / "stdout.txt").write_text(out.getvalue())
    return workdir


def test_quick_run_writes_every_file(quick_run):
    for name in ("config.json", "metrics.jsonl", "provenance.json", "summary.json", "curves.npz",
                 "fig1a_test_accuracy.png", "fig1bc_percentiles.png", "fig1_input_shift.png",
                 "fig1_combined.png"):
        assert (quick_run / name).is_file(), name
    doc = summary.load(quick_run / "summary.json")
    assert [r["name"] for r in doc["runs"]] == ["no_bn", "bn"]
    bn = doc["runs"][1]
    assert bn["config"]["model.norm"] == "batchnorm" and bn["config"]["steps"] == 100
    assert bn["curves"]["train_loss"]["step"] == list(range(100))
    assert bn["curves"]["test_accuracy"]["step"] == [0, 10, 20, 50, 100]  # eval_steps (10, 20)
    assert {"preact_p15", "preact_p50", "preact_p85", "preact_p50_unit1", "test_preact_p50"} \
        <= set(bn["curves"])
    assert {"test_accuracy", "max_test_accuracy", "steps_to_target",
            "test_accuracy_population"} <= set(bn["final"])
    assert [c["id"] for c in doc["claims"]] == [
        "fig1.bn_trains_faster", "fig1.bn_higher_accuracy", "fig1.bn_stabilizes_sigmoid_input"]
    rows = [json.loads(line) for line in (quick_run / "metrics.jsonl").read_text().splitlines()]
    # The two programs train side by side when there are two devices: rows of one evaluation
    # round follow each other, each run's rows in order of steps.
    assert sorted((r["run"], r["step"]) for r in rows) == sorted(
        (n, s) for n in ("no_bn", "bn") for s in (0, 10, 20, 50, 100))
    assert [r["step"] for r in rows if r["run"] == "bn"] == [0, 10, 20, 50, 100]
    prov = json.loads((quick_run / "provenance.json").read_text())
    assert prov["versions"]["jax"] and prov["device"]["platform"] and prov["wall_seconds"] > 0
    assert "wall" not in (quick_run / "summary.json").read_text()


def test_same_command_gives_the_same_summary(quick_run, tmp_path):
    rc = cli.main(["run", "--config", "fig1_mnist:quick", "--workdir", str(tmp_path / "again"),
                   "--progress=false", "--config.steps=100", "--config.eval_every=50"])
    assert rc == 0
    assert (tmp_path / "again" / "summary.json").read_bytes() == (quick_run / "summary.json").read_bytes()


def test_finished_workdir_is_not_overwritten_without_restart(quick_run, capsys):
    before = (quick_run / "summary.json").read_bytes()
    assert cli.main(["run", "--config", "fig1_mnist:quick", "--workdir", str(quick_run)]) == 2
    assert "--restart" in capsys.readouterr().err
    assert (quick_run / "summary.json").read_bytes() == before


def test_plot_regenerates_figures_from_summary(quick_run):
    png = quick_run / "fig1a_test_accuracy.png"
    png.unlink()
    assert cli.main(["plot", str(quick_run)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_divergence_is_a_result_not_an_error(tmp_path):
    rc = cli.main(["run", "--config", "fig1_mnist:quick", "--workdir", str(tmp_path / "d"),
                   "--progress=false", "--config.steps=20", "--config.eval_every=10",
                   "--config.learning_rate=1e10", "--config.model.activation=relu",
                   "--config.data.source=synthetic"])
    assert rc == 0
    doc = summary.load(tmp_path / "d" / "summary.json")
    for run in doc["runs"]:
        d = run["diverged_at_step"]
        assert d is not None and 1 <= d <= 20
        assert run["curves"]["train_loss"]["step"][-1] == d - 1
        assert all(s < d for s in run["curves"]["test_accuracy"]["step"])


@pytest.mark.parametrize("args,field", [
    (["--config.steps=-5"], "steps"),
    (["--config.steps=abc"], "config.steps"),
    (["--config.batch_size=100000"], "batch_size"),
    (["--config.learning_rate=nan"], "learning_rate"),
    (["--config.learning_rate=0"], "learning_rate"),
    (["--config.model.activation=swish"], "model.activation"),
    (["--config.data.source=nope"], "nope"),
    (["--config.model.widht=3"], "model.widths"),
    (["--config.eval_every=7"], "eval_every"),
    (["--config", "no_such_config"], "no_such_config"),
    (["--config.data_parallel.ghost_batches=7"], "data_parallel.ghost_batches"),
    (["--config.data_parallel.devices=64"], "data_parallel.devices"),
])
def test_bad_input_exits_2_with_one_line_naming_the_field(args, field, tmp_path, capsys):
    workdir = tmp_path / "w"
    config = [] if "--config" in args else ["--config", "fig1_mnist:quick"]
    rc = cli.main(["run", *config, "--workdir", str(workdir), *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and field in err, err
    assert not workdir.exists()


def test_help_and_unknown_command(capsys):
    assert cli.main(["--help"]) == 0
    assert "bn-exp run" in capsys.readouterr().out
    assert cli.main(["frobnicate"]) == 2


def test_claims_are_recomputed_from_the_summary(quick_run):
    path = quick_run / "summary.json"
    before = path.read_bytes()
    doc = summary.load(path)
    doc["claims"] = []
    summary.write(path, doc)
    assert cli.main(["claims", str(quick_run)]) == 0
    assert path.read_bytes() == before
    # Claim rows written under an older contract (no source/evidence) are replaced, not refused:
    # this is how committed results migrate to new rules without retraining.
    text = json.loads(path.read_text())
    text["claims"] = [{"id": "fig1.old", "claim": "c", "measured": "m", "paper": "p",
                       "verdict": "partly reproduced"}]
    path.write_text(json.dumps(text))
    assert cli.main(["claims", str(quick_run)]) == 0
    assert path.read_bytes() == before


def test_plot_and_claims_on_a_missing_summary_fail_cleanly(tmp_path, capsys):
    assert cli.main(["plot", str(tmp_path)]) == 2
    assert cli.main(["claims", str(tmp_path)]) == 2
    assert "summary.json" in capsys.readouterr().err


# ------------------------------------------------------------------------------ smoke runs


def test_a_quick_run_is_marked_smoke_and_gives_no_verdict(quick_run):
    doc = summary.load(quick_run / "summary.json")
    assert doc["smoke"] is True and doc["claims"]
    for claim in doc["claims"]:
        assert claim["verdict"] == "inconclusive"
        assert claim["evidence"]["rule"].startswith(summary.SMOKE_RULE)
    out = (quick_run.parent / "stdout.txt").read_text()
    assert "smoke run" in out and "[reproduced]" not in out and "[not reproduced]" not in out
    # Recomputing the claims keeps the marking.
    assert cli.main(["claims", str(quick_run)]) == 0
    assert summary.load(quick_run / "summary.json") == doc


def test_final_numbers_print_rounded(quick_run):
    out = (quick_run.parent / "stdout.txt").read_text()
    line = next(x for x in out.splitlines() if x.startswith("bn: "))
    value = line.split("test_accuracy ")[1].split(",")[0]
    assert len(value.split(".")[1]) == 4, line


def test_a_long_run_list_says_how_many_it_left_out(capsys):
    runs = [{"name": f"seed={i}", "final": {"test_accuracy": 0.5}, "diverged_at_step": None}
            for i in range(cli.MAX_LISTED + 7)]
    cli._print_results({"runs": runs, "claims": []}, "W")
    out = capsys.readouterr().out
    assert f"seed={cli.MAX_LISTED - 1}: " in out and f"seed={cli.MAX_LISTED}: " not in out
    assert "... and 7 more runs (all of them in W/summary.json)" in out


# ---------------------------------------------------------------------------------- compare


def test_compare_overlays_workdirs_and_prints_their_finals(quick_run, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(quick_run, other)
    png = tmp_path / "cmp.png"
    assert cli.main(["compare", str(quick_run), str(other), "--output", str(png)]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith((str(quick_run), str(other)))]
    assert len(rows) == 4 and all(" bn " in r or " no_bn " in r for r in rows)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert cli.main(["compare", str(quick_run), str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "missing" in err


# ------------------------------------------------------------------------ help, list, dry run


def test_help_documents_every_flag_and_lists_the_shipped_configs(capsys):
    from bn_experiments import config_load
    assert cli.main(["--help"]) == 0
    top = capsys.readouterr().out
    for command in cli.COMMANDS:
        assert f"bn-exp {command}" in top
    assert cli.main(["run", "--help"]) == 0
    text = capsys.readouterr().out
    for flag in ("--config NAME", "--config.FIELD=VALUE", "--workdir", "--restart", "--progress",
                 "--dry-run", "Exit status"):
        assert flag in text and flag in top, flag
    for name in config_load.shipped_configs():
        line = next(x for x in text.splitlines() if x.strip().startswith(name + " "))
        assert " runs x " in line or " run  x " in line, line
        assert line.split("steps")[1].strip().startswith("~"), line  # an expected time
    assert cli.main(["list"]) == 0
    assert capsys.readouterr().out.strip() in text


def test_dry_run_prints_the_config_and_its_runs_and_writes_nothing(tmp_path, capsys):
    workdir = tmp_path / "w"
    assert cli.main(["sweep", "--config", "lr_sweep", "--workdir", str(workdir), "--dry-run",
                     "--config.grid=(('learning_rate', (0.1, 1.0)), ('seed', (0, 1)))"]) == 0
    out = capsys.readouterr().out
    assert '"experiment": "lr_sweep"' in out and "4 run(s) in 1 program(s)" in out
    assert "learning_rate=1.0,seed=1" in out and not workdir.exists()


def test_the_progress_bar_names_the_runs_it_trains(tmp_path, capfd):
    assert cli.main(["sweep", "--config", "lr_sweep", "--workdir", str(tmp_path / "w"),
                     "--config.data.source=synthetic", "--config.steps=20", "--config.eval_every=10",
                     "--config.model.widths=(8,)", "--config.checkpoint_every=0",
                     "--config.grid=(('learning_rate', (0.1, 0.2, 0.3)),)"]) == 0
    err = capfd.readouterr().err
    assert "runs learning_rate=0.1, learning_rate=0.2 (+1 more)" in err
    assert "best test_accuracy of 3 runs" in err and "program 1/" not in err


def test_the_real_command_fails_in_one_line_on_a_broken_config_file(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def get_config(arg=None):\n    return 1 +\n")
    proc = subprocess.run([sys.executable, "-m", "bn_experiments.cli", "run", "--config", str(bad),
                           "--workdir", str(tmp_path / "w")], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == (f"bn-exp run: error: config file {bad} line 2: invalid syntax "
                                   f"(SyntaxError); fix the file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.py"]


def test_the_documented_layouts_of_metrics_and_curves(quick_run):
    """README "Outputs of a run": curves.npz keys `<run>/<metric>` (per step) and
    `<run>/eval/<metric>` (per evaluation, steps in metrics.jsonl)."""
    import numpy as np
    rows = [json.loads(line) for line in (quick_run / "metrics.jsonl").read_text().splitlines()]
    assert {"run", "step", "test_accuracy", "test_loss"} <= set(rows[0])
    with np.load(quick_run / "curves.npz") as curves:
        assert curves["bn/train_loss"].shape == (100,)
        bn_rows = [r for r in rows if r["run"] == "bn"]
        np.testing.assert_allclose(curves["bn/eval/test_accuracy"],
                                   [r["test_accuracy"] for r in bn_rows], rtol=1e-6)
        assert list(curves["bn/eval/step"]) == [r["step"] for r in bn_rows] == [0, 10, 20, 50, 100]


@pytest.mark.parametrize("env, name", [
    ({"BN_EXP_NUM_PROCESSES": "2"}, "BN_EXP_COORDINATOR"),
    ({"BN_EXP_COORDINATOR": "nohost", "BN_EXP_NUM_PROCESSES": "2", "BN_EXP_PROCESS_ID": "0"},
     "BN_EXP_COORDINATOR='nohost'"),
    ({"BN_EXP_COORDINATOR": "127.0.0.1:1", "BN_EXP_NUM_PROCESSES": "2",
      "BN_EXP_PROCESS_ID": "2"}, "BN_EXP_PROCESS_ID=2"),
])
def test_bad_multi_process_settings_exit_2_before_joining(env, name, tmp_path, capsys,
                                                          monkeypatch):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    rc = cli.main(["run", "--config", "fig1_mnist:quick", "--workdir", str(tmp_path / "w")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and name in err, err
    assert not (tmp_path / "w").exists()

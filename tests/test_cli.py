"""`bn-exp` in-process: the quick Figure 1 run end to end, plot, and one-line config errors."""
import json

import pytest

from bn_experiments import cli, summary


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("fig1") / "run"
    rc = cli.main(["run", "--config", "fig1_mnist:quick", "--workdir", str(workdir),
                   "--progress=false", "--config.steps=100", "--config.eval_every=50"])
    assert rc == 0
    return workdir


def test_quick_run_writes_every_file(quick_run):
    for name in ("config.json", "metrics.jsonl", "provenance.json", "summary.json", "curves.npz",
                 "fig1a_test_accuracy.png", "fig1b_no_bn_percentiles.png",
                 "fig1c_bn_percentiles.png", "fig1_combined.png"):
        assert (quick_run / name).is_file(), name
    doc = summary.load(quick_run / "summary.json")
    assert [r["name"] for r in doc["runs"]] == ["no_bn", "bn"]
    bn = doc["runs"][1]
    assert bn["config"]["model.norm"] == "batchnorm" and bn["config"]["steps"] == 100
    assert bn["curves"]["train_loss"]["step"] == list(range(100))
    assert bn["curves"]["test_accuracy"]["step"] == [0, 50, 100]
    assert {"preact_p15", "preact_p50", "preact_p85", "preact_p50_unit1", "test_preact_p50"} \
        <= set(bn["curves"])
    assert {"test_accuracy", "max_test_accuracy", "steps_to_target",
            "test_accuracy_population"} <= set(bn["final"])
    assert [c["id"] for c in doc["claims"]] == [
        "fig1.bn_trains_faster", "fig1.bn_higher_accuracy", "fig1.bn_stabilizes_sigmoid_input"]
    rows = [json.loads(line) for line in (quick_run / "metrics.jsonl").read_text().splitlines()]
    assert [(r["run"], r["step"]) for r in rows] == [(n, s) for n in ("no_bn", "bn") for s in (0, 50, 100)]
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
])
def test_bad_input_exits_2_with_one_line_naming_the_field(args, field, tmp_path, capsys):
    workdir = tmp_path / "w"
    rc = cli.main(["run", "--config", "fig1_mnist:quick", "--workdir", str(workdir), *args])
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

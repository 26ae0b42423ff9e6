"""Sweeps: grid expansion, one vmapped program per structure, isolation of diverging points, resume."""

import numpy as np
import pytest

from bn_experiments import cli, config as config_lib, data as data_lib, runner, sweep, summary
from bn_experiments.configs import default


def _cfg(grid, **overrides):
    cfg = default.get_config()
    cfg.experiment = "test_sweep"
    cfg.steps, cfg.eval_every, cfg.batch_size = 40, 20, 32
    cfg.model.widths, cfg.model.activation = (16, 8), "relu"
    cfg.data.source = "synthetic:256:64"
    cfg.grid = grid
    for k, v in overrides.items():
        config_lib.set_dotted(cfg, k, v)
    return cfg


def test_grid_expands_in_order_with_key_value_names():
    runs = sweep.expand(_cfg((("learning_rate", (0.1, 1.0)), ("model.norm", ("none", "batchnorm")))))
    assert [r.name for r in runs] == [
        "learning_rate=0.1,model.norm=none", "learning_rate=0.1,model.norm=batchnorm",
        "learning_rate=1.0,model.norm=none", "learning_rate=1.0,model.norm=batchnorm"]
    assert runs[3].flat["learning_rate"] == 1.0 and runs[3].flat["model.norm"] == "batchnorm"
    assert "grid" not in runs[0].flat


@pytest.mark.parametrize("grid,match", [
    ((("seed", ()),), "empty"),
    ((("learning_rat", (0.1,)),), "did you mean 'learning_rate'"),
    ((("seed", (0,)), ("seed", (1,))), "twice"),
    ((("learning_rate", (0.1, -1.0)),), "learning_rate"),
    (("seed",), "pair"),
])
def test_bad_grids_are_refused_before_compiling(grid, match):
    with pytest.raises(config_lib.ConfigError, match=match):
        sweep.expand(_cfg(grid))


def test_programs_group_by_structure_and_size():
    runs = sweep.expand(_cfg((("model.norm", ("none", "batchnorm")), ("model.init_std", (0.1, 1.0)),
                              ("seed", (0, 1, 2)))))
    groups = runner._groups(runs, per_program=4)
    assert [len(g) for g in groups] == [4, 2, 4, 2]
    assert all(len({r.static.model.norm for r in g}) == 1 for g in groups)


def test_vmapped_sweep_equals_each_point_alone_even_when_one_diverges():
    cfg = _cfg((("learning_rate", (0.05, 1e10, 0.5)), ("model.norm", ("batchnorm",)), ("seed", (0, 1))))
    runs = sweep.expand(cfg)
    data = data_lib.to_device(data_lib.load(cfg.data.source))
    together = runner.train_runs(runs, data, target=0.5, progress=False)
    diverged = [r.diverged_at for r in together]
    assert diverged[2] is not None and diverged[3] is not None  # lr=1e10
    assert diverged[0] is None and diverged[5] is None
    for run, res in zip(runs, together):
        alone = runner.train_runs([run], data, target=0.5, progress=False)[0]
        assert alone.diverged_at == res.diverged_at
        for k in alone.train:
            np.testing.assert_allclose(res.train[k], alone.train[k], rtol=2e-3, atol=2e-4, err_msg=k)
        for k in ("test_accuracy", "test_loss", "ics_w1_layer1"):
            np.testing.assert_allclose(res.evals[k], alone.evals[k], rtol=2e-3, atol=2e-3, err_msg=k)


def test_sweep_command_resumes_finished_points(tmp_path, monkeypatch):
    cfg_args = ["--config", "fig1_mnist:quick", "--progress=false", "--config.steps=20",
                "--config.eval_every=10", "--config.runs=()", "--config.data.source=synthetic",
                "--config.grid=(('learning_rate', (0.1, 0.2)), ('seed', (0, 1)))"]
    workdir = tmp_path / "s"
    assert cli.main(["sweep", "--workdir", str(workdir), *cfg_args,
                     "--config.points_per_program=2"]) == 0
    first = (workdir / "summary.json").read_bytes()
    doc = summary.load(workdir / "summary.json")
    assert len(doc["runs"]) == 4 and doc["runs"][1]["name"] == "learning_rate=0.1,seed=1"
    # Interrupted sweep: one point and the summary missing. Only that point's program is retrained
    # (whole, so its numbers match the uninterrupted sweep bit for bit).
    (workdir / "summary.json").unlink()
    (workdir / "points" / "learning_rate=0.2,seed=0.json").unlink()
    trained = []
    real = runner.waves.train_wave
    monkeypatch.setattr(runner.waves, "train_wave", lambda programs, **k: trained.extend(
        r.name for p in programs for r in p.runs) or real(programs, **k))
    assert cli.main(["sweep", "--workdir", str(workdir), *cfg_args,
                     "--config.points_per_program=2"]) == 0
    assert trained == ["learning_rate=0.2,seed=0", "learning_rate=0.2,seed=1"]
    assert (workdir / "summary.json").read_bytes() == first
    # A different config does not silently mix with the unfinished points.
    (workdir / "summary.json").unlink()
    assert cli.main(["sweep", "--workdir", str(workdir), *cfg_args,
                     "--config.points_per_program=2", "--config.steps=40"]) == 2


def test_sweep_needs_a_grid(tmp_path, capsys):
    assert cli.main(["sweep", "--config", "fig1_mnist:quick", "--workdir", str(tmp_path / "x")]) == 2
    assert "grid" in capsys.readouterr().err


def test_a_config_json_from_before_model_name_resumes_as_an_mlp():
    """Workdirs started before `model.name` existed hold a config.json without it: an MLP's."""
    import json
    new = json.loads(json.dumps(default.get_config().to_dict()))
    old = json.loads(json.dumps(new))
    del old["model"]["name"]
    assert runner._config_differences(old, new) == []
    old["model"]["widths"] = [5]
    assert runner._config_differences(old, new) == ["model.widths"]


def test_a_config_json_from_before_data_whiten_and_data_parallel_resumes_unchanged():
    import json
    new = json.loads(json.dumps(default.get_config().to_dict()))
    old = json.loads(json.dumps(new))
    del old["data"]["whiten"], old["data_parallel"]
    assert runner._config_differences(old, new) == []


def test_a_grid_over_the_input_transform_trains_each_point_on_its_own_data(tmp_path):
    # Runs that differ in data.* keys train on their own data: each point equals its config
    # run alone, and the transforms give different numbers (nothing silently ignored).
    cfg = _cfg((("data.whiten", ("none", "zca")), ("seed", (0,))))
    doc = runner.train_and_evaluate(cfg, tmp_path / "grid", progress=False, plot=False)
    loss = {r["config"]["data.whiten"]: r["curves"]["train_loss"]["value"] for r in doc["runs"]}
    assert loss["none"] != loss["zca"]
    for kind in ("none", "zca"):
        alone = _cfg((), **{"data.whiten": kind})
        one = runner.train_and_evaluate(alone, tmp_path / kind, progress=False, plot=False)
        assert one["runs"][0]["curves"]["train_loss"]["value"] == loss[kind]
    bad = _cfg((("data.whiten", ("none", "pca")),), **{"data.standardize": True})
    with pytest.raises(data_lib.DataError, match="choose one input transform"):
        runner.train_and_evaluate(bad, tmp_path / "bad", progress=False, plot=False)
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("config,grid", [
    ("lr_sweep", "(('seed', (0, 1)),)"),
    ("lr_init_grid", "(('seed', (0, 1)),)"),
    ("activation_sweep", "(('model.norm', ('none',)), ('seed', (0, 1)))"),
])
def test_a_grid_without_the_arms_a_claim_compares_still_writes_summary_and_figures(
        tmp_path, capsys, config, grid):
    """Overriding a shipped sweep's grid: the claims that lack their runs are absent or
    inconclusive, never a crash, and the summary and figures are written once training is done."""
    workdir = tmp_path / "w"
    assert cli.main(["sweep", "--config", config, "--workdir", str(workdir), "--progress=false",
                     "--config.data.source=synthetic", "--config.steps=20",
                     "--config.eval_every=10", "--config.checkpoint_every=0",
                     f"--config.grid={grid}"]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "warning" not in err, err
    doc = summary.load(workdir / "summary.json")
    assert len(doc["runs"]) == 2 and list(workdir.glob("*.png"))
    assert all(c["verdict"] == "inconclusive" for c in doc["claims"]), doc["claims"]
    assert "[reproduced]" not in out and "[not reproduced]" not in out


def test_claims_that_raise_leave_the_summary_written(tmp_path, monkeypatch, capsys):
    """The shared guard: an experiment whose claim code fails on these runs gets none (a one-line
    warning), and the trained runs are written, not lost."""
    from bn_experiments import experiments

    def broken(runs):
        raise KeyError("model.norm")
    monkeypatch.setattr(experiments, "compute_claims", lambda name, runs: broken(runs))
    workdir = tmp_path / "w"
    assert cli.main(["sweep", "--config", "lr_sweep", "--workdir", str(workdir), "--progress=false",
                     "--config.data.source=synthetic", "--config.steps=20", "--config.eval_every=10",
                     "--config.checkpoint_every=0", "--config.grid=(('seed', (0, 1)),)"]) == 0
    err = capsys.readouterr().err
    assert "warning: the claims of experiment 'lr_sweep' could not be computed" in err
    assert summary.load(workdir / "summary.json")["claims"] == []

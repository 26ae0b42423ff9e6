"""Shared figure helpers (bn_experiments/plotting.py), the generic figure, and the dispatcher
`experiments.draw_figures`, from synthetic summary.json files (no training, no JAX): fast."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from figure_fixtures import (
    NORMS, check_pngs, diverge_high_lr, fig1_run, make_fig1_summary, make_sweep_summary)

from bn_experiments import experiments, plotting, summary
from bn_experiments.experiments import Experiment, fig1


@pytest.mark.parametrize("experiment", ["lr_sweep", "no_such_module"])
def test_generic_experiment_gets_test_accuracy_plot(tmp_path, experiment):
    # lr_sweep: runs not swept over the learning rate fall back to it; an experiment without a
    # module gets it from the dispatcher.
    make_fig1_summary(tmp_path, experiment=experiment)
    paths = experiments.draw_figures(tmp_path)
    check_pngs(paths, tmp_path, ["test_accuracy.png"])
    assert not (tmp_path / "fig1a_test_accuracy.png").exists()


def test_generic_many_runs_and_no_accuracy(tmp_path):
    runs = [dict(fig1_run(f"lr_{i}", bool(i % 2), 300, 50, None, i), name=f"lr_{i}") for i in range(14)]
    for i, r in enumerate(runs):
        r["config"]["learning_rate"] = 0.1 * (i + 1)
    summary.write(tmp_path / "summary.json", {"experiment": "sweep", "runs": runs, "claims": []})
    check_pngs(experiments.draw_figures(tmp_path), tmp_path, ["test_accuracy.png"])
    for r in runs:
        r["curves"].pop("test_accuracy")
    other = tmp_path / "other"
    summary.write(other / "summary.json", {"experiment": "sweep", "runs": runs, "claims": []})
    assert experiments.draw_figures(other) == []


def test_registry_is_the_extension_point(tmp_path, monkeypatch):
    experiments.names()  # every module registered before the registry is copied
    monkeypatch.setattr(experiments, "_REGISTRY", dict(experiments._REGISTRY))
    seen = []

    def _custom(doc, workdir):
        seen.append(doc["experiment"])
        return []

    experiments.register(Experiment("custom", figures=_custom))
    assert experiments.get("fig1").figures is fig1.figures
    make_fig1_summary(tmp_path, experiment="custom")
    assert experiments.draw_figures(tmp_path) == [] and seen == ["custom"]


def test_invalid_summary_is_refused(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps({"experiment": "fig1", "runs": []}))
    with pytest.raises(ValueError, match="runs"):
        experiments.draw_figures(tmp_path)


def test_no_pyplot_figures_leak(tmp_path):
    import matplotlib.pyplot as plt
    before = plt.get_fignums()
    make_fig1_summary(tmp_path, steps=300, eval_every=100)
    experiments.draw_figures(tmp_path)
    assert plt.get_fignums() == before


def test_sweep_plots_deterministic(tmp_path):
    grid = [NORMS, ("learning_rate", (0.1, 10.0)), ("seed", (0, 1))]
    make_sweep_summary(tmp_path, "lr_sweep", grid, steps=400, diverge=diverge_high_lr)
    for experiment in ("lr_sweep",):
        doc = json.loads((tmp_path / "summary.json").read_text())
        doc["experiment"] = experiment
        summary.write(tmp_path / "summary.json", doc)
        first = [p.read_bytes() for p in experiments.draw_figures(tmp_path)]
        # the accuracy figure (the weight-norm figure needs the probe's curves)
        assert len(first) == 1 and first == [p.read_bytes() for p in experiments.draw_figures(tmp_path)]


# ---------------------------------------------------------------------------------------------
# The helpers themselves


def _run(name="r", curve=None, final=None, diverged_at=None, **config):
    curves = {"test_accuracy": {"step": list(curve[0]), "value": list(curve[1])}} if curve else {}
    return {"name": name, "config": config, "curves": curves, "final": final,
            "diverged_at_step": diverged_at}


def test_read_curve_nulls_are_nan_and_an_all_null_curve_is_absent():
    steps, values = plotting.read_curve(_run(curve=([0, 10, 20], [0.1, None, 0.9])), "test_accuracy")
    assert steps.tolist() == [0, 10, 20] and math.isnan(values[1]) and values[2] == 0.9
    assert plotting.read_curve(_run(curve=([0, 10], [None, None])), "test_accuracy") is None
    assert plotting.read_curve(_run(), "test_accuracy") is None


def test_steps_to_target_prefers_final_and_never_reads_nan():
    run = _run(curve=([0, 10, 20, 30], [0.1, None, 0.95, 0.97]))
    assert plotting.first_reach(*plotting.read_curve(run, "test_accuracy"), 0.95) == 20
    assert plotting.steps_to_target(run, 0.96) == 30.0
    assert plotting.steps_to_target(run, 0.99) is None
    assert plotting.steps_to_target(dict(run, final={"steps_to_target": 7}), 0.96) == 7.0
    assert plotting.steps_to_target(dict(run, final={"steps_to_target": None}), 0.96) is None


def test_formatting():
    assert [plotting.fmt_steps(x) for x in (0, 500, 2500, 50000)] == ["0", "500", "2.5K", "50K"]
    assert plotting.fmt_num(50000) == "50,000" and plotting.fmt_num(0.1) == "0.1"
    assert plotting.fmt_num([100, 100, 100]) == "100-100-100" and plotting.fmt_num(True) == "True"
    runs = [_run("no_bn", learning_rate=0.1, batch_size=60), _run("bn", learning_rate=1.0, batch_size=60)]
    assert plotting.config_line(runs) == "lr 0.1 (Without BN) / 1 (With BN), batch 60"
    assert plotting.shared_config_line(runs) == "batch 60"


def test_grouping_by_swept_keys_keeps_grid_order():
    runs = [_run(f"model.norm={n},seed={s}", **{"model.norm": n, "seed": s, "steps": 10})
            for n in ("none", "batchnorm") for s in (0, 1)]
    assert plotting.swept_keys(runs) == ["model.norm", "seed"]
    groups = plotting.group_runs(runs, ["model.norm"])
    assert list(groups) == [("none",), ("batchnorm",)]
    assert [len(g) for g in groups.values()] == [2, 2]
    assert plotting.target_accuracy([_run(target_accuracy=0.9), _run(target_accuracy=0.8)]) == 0.8


def test_mean_std_and_mean_curve_skip_missing_values():
    assert plotting.mean_std([1.0, None, 3.0, float("nan")]) == (2.0, math.sqrt(2.0), 2)
    assert plotting.mean_std([5.0]) == (5.0, 0.0, 1)
    assert math.isnan(plotting.mean_std([None])[0])
    runs = [_run(curve=([0, 10], [0.2, 0.4])), _run(curve=([0, 10], [0.4, None]))]
    steps, mean, std, count = plotting.mean_curve(runs, "test_accuracy")
    assert steps.tolist() == [0, 10] and np.allclose(mean, [0.3, 0.4]) and count.tolist() == [2, 1]
    assert std[1] == 0.0


def test_accuracy_ylim_ignores_the_start_of_training():
    steps = np.arange(0, 1001, 100, dtype=float)
    values = np.full_like(steps, 0.95)
    values[0] = 0.1  # chance at step 0 does not pull the axis down
    assert plotting.accuracy_ylim([(steps, values)]) == (0.7, 1.005)
    values[5:] = 0.5
    assert plotting.accuracy_ylim([(steps, values)])[0] == 0.45


def test_mean_band_draws_the_mean_and_its_seed_band():
    fig = plotting.new_figure(4.0, 3.0)
    ax = fig.add_subplot()
    runs = [_run(curve=([0, 10, 20], [0.2, 0.4, 0.6])), _run(curve=([0, 10, 20], [0.4, 0.6, 0.6]))]
    assert plotting.mean_band(ax, runs, "test_accuracy", "C1", step_floor=1, marker="o")
    (line,) = ax.get_lines()
    assert line.get_xdata().tolist() == [1, 10, 20]  # step 0 drawn at the floor
    assert np.allclose(line.get_ydata(), [0.3, 0.5, 0.6]) and line.get_marker() == "o"
    (band,) = ax.collections  # ± 1 std where the seeds differ
    ys = band.get_paths()[0].vertices[:, 1]
    assert math.isclose(ys.max(), 0.5 + math.sqrt(0.02), rel_tol=1e-9)
    assert not plotting.mean_band(ax, runs, "no_such_metric", "C2")
    assert len(ax.get_lines()) == 1

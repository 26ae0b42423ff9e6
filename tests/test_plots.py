"""Figures drawn from synthetic summary.json files (no training, no JAX): fast."""
from __future__ import annotations

import json
import pathlib
import struct

import numpy as np
import pytest

from bn_experiments import plots, summary

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FIG1_FILES = ["fig1a_test_accuracy.png", "fig1b_no_bn_percentiles.png", "fig1c_bn_percentiles.png",
              "fig1_combined.png"]


def _config(**over) -> dict:
    cfg = {"learning_rate": 0.5, "model.norm": "batchnorm", "model.tracked_units": [0, 7, 42],
           "batch_size": 60, "steps": 50000, "model.init": "gaussian", "model.init_std": 0.1,
           "model.activation": "sigmoid", "model.widths": [100, 100, 100], "eval_every": 500,
           "optimizer.momentum": 0.0, "data.source": "mnist_embedded", "target_accuracy": 0.97}
    cfg.update(over)
    return cfg


def _run(name: str, bn: bool, steps: int, eval_every: int, diverged_at: int | None, seed: int,
         drop: tuple[str, ...] = ()) -> dict:
    """A run shaped like the Figure 1 experiment's: per-step and per-evaluation curves."""
    rng = np.random.default_rng(seed)
    end = diverged_at if diverged_at is not None else steps - 1
    s = np.arange(0, end + 1)
    e = np.arange(0, (diverged_at if diverged_at is not None else steps) + 1, eval_every)
    rate = 1500.0 if bn else 6000.0
    ceiling = 0.982 if bn else 0.972
    acc = ceiling - (ceiling - 0.1) * np.exp(-e / rate)
    if bn:
        center, spread = 0.05 * np.sin(s / 3000), 1.25 + 0.7 * s / steps
        t_center, t_spread = 0.05 * np.sin(e / 3000), 1.25 + 0.7 * e / steps
    else:
        center, spread = 1.0 * np.exp(-s / 8000) * (s / (s + 500)), 1.0 + 2.0 * s / steps
        t_center, t_spread = np.exp(-e / 8000) * (e / (e + 500)), 1.0 + 2.0 * e / steps
    noise = rng.normal(0, 0.15, size=(3, len(s)))
    per_step = {
        "train_loss": 2.3 * np.exp(-s / rate) + 0.05 + 0.05 * np.abs(noise[0]),
        "preact_p15": center - spread + noise[0],
        "preact_p50": center + noise[1],
        "preact_p85": center + spread + noise[2],
        "preact_p50_unit7": center + 0.3 + noise[1],
    }
    per_eval = {
        "test_accuracy": acc,
        "test_loss": 2.3 * np.exp(-e / rate) + 0.08,
        "test_preact_p15": t_center - t_spread,
        "test_preact_p50": t_center,
        "test_preact_p85": t_center + t_spread,
        "test_preact_p50_unit7": t_center + 0.3,
    }
    curves = {k: summary.thin(s, v) for k, v in per_step.items()}
    curves.update({k: summary.thin(e, v) for k, v in per_eval.items()})
    # Non-finite values become null in the file.
    curves["preact_p50"]["value"][len(curves["preact_p50"]["value"]) // 3] = None
    curves["test_accuracy"]["value"][1] = None
    if diverged_at is not None:
        for c in curves.values():
            c["value"][-1] = None
    for k in drop:
        curves.pop(k, None)
    final = {"test_accuracy": None if diverged_at is not None else float(acc[-1]),
             "max_test_accuracy": float(np.max(acc)), "steps_to_target": None if not bn else 4500}
    config = _config(**{"model.norm": "batchnorm" if bn else "none", "steps": steps,
                        "eval_every": eval_every})
    return {"name": name, "config": config,
            "curves": curves, "final": final, "diverged_at_step": diverged_at}


def make_fig1_summary(workdir: pathlib.Path, steps: int = 2000, eval_every: int = 100,
                      diverged_at: int | None = 1234, drop: tuple[str, ...] = (),
                      experiment: str = "fig1") -> pathlib.Path:
    """Writes WORKDIR/summary.json for a two-run Figure 1 experiment (no_bn diverges by default)."""
    doc = {"experiment": experiment,
           "runs": [_run("no_bn", False, steps, eval_every, diverged_at, 0, drop),
                    _run("bn", True, steps, eval_every, None, 1, drop)],
           "claims": [{"id": "fig1.faster", "claim": "BN trains faster", "measured": "x",
                       "paper": "y", "verdict": "reproduced", "figure": "fig1a_test_accuracy.png"}]}
    summary.write(workdir / "summary.json", doc)
    return workdir / "summary.json"


def png_size(path: pathlib.Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path.name} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def _check_pngs(paths, workdir, names):
    assert [p.name for p in paths] == names
    for p in paths:
        assert p.parent == workdir and p.is_file()
        w, h = png_size(p)
        assert 600 <= w <= 4000 and 400 <= h <= 2000, (p.name, w, h)
    assert not list(workdir.glob(".*.tmp")), "temporary files left behind"


def test_fig1_writes_four_pngs(tmp_path):
    make_fig1_summary(tmp_path)
    paths = plots.plot(tmp_path)
    _check_pngs(paths, tmp_path, FIG1_FILES)
    w, h = png_size(tmp_path / "fig1_combined.png")
    assert w > 2 * h, "combined figure should be three panels side by side"


def test_fig1_deterministic(tmp_path):
    make_fig1_summary(tmp_path, steps=600, eval_every=100)
    first = [p.read_bytes() for p in plots.plot(tmp_path)]
    second = [p.read_bytes() for p in plots.plot(tmp_path)]
    assert first == second


def test_fig1_thinned_long_run_without_divergence(tmp_path):
    # 50,000 steps thinned to summary.MAX_POINTS points, like the real experiment.
    make_fig1_summary(tmp_path, steps=50000, eval_every=500, diverged_at=None)
    _check_pngs(plots.plot(tmp_path), tmp_path, FIG1_FILES)


def test_fig1_missing_curves_still_plots(tmp_path):
    make_fig1_summary(tmp_path, drop=("test_preact_p15", "test_preact_p85", "preact_p85",
                                      "test_preact_p50"))
    _check_pngs(plots.plot(tmp_path), tmp_path, FIG1_FILES)


def test_fig1_without_percentiles_or_accuracy(tmp_path):
    make_fig1_summary(tmp_path, drop=("preact_p15", "preact_p50", "preact_p85", "test_preact_p15",
                                      "test_preact_p50", "test_preact_p85"))
    _check_pngs(plots.plot(tmp_path), tmp_path, ["fig1a_test_accuracy.png", "fig1_combined.png"])
    # Nothing at all to draw: no files, no crash.
    empty = tmp_path / "empty"
    make_fig1_summary(empty, drop=tuple(_run("x", True, 10, 5, None, 0)["curves"]))
    assert plots.plot(empty) == []


def test_fig1_single_run_and_all_null_curve(tmp_path):
    make_fig1_summary(tmp_path)
    doc = json.loads((tmp_path / "summary.json").read_text())
    doc["runs"] = [r for r in doc["runs"] if r["name"] == "bn"]
    acc = doc["runs"][0]["curves"]["test_accuracy"]
    acc["value"] = [None] * len(acc["value"])
    summary.write(tmp_path / "summary.json", doc)
    _check_pngs(plots.plot(tmp_path), tmp_path, ["fig1c_bn_percentiles.png", "fig1_combined.png"])


def test_generic_experiment_gets_test_accuracy_plot(tmp_path):
    make_fig1_summary(tmp_path, experiment="lr_sweep")
    paths = plots.plot(tmp_path)
    _check_pngs(paths, tmp_path, ["test_accuracy.png"])
    assert not (tmp_path / "fig1a_test_accuracy.png").exists()


def test_generic_many_runs_and_no_accuracy(tmp_path):
    runs = [dict(_run(f"lr_{i}", bool(i % 2), 300, 50, None, i), name=f"lr_{i}") for i in range(14)]
    for i, r in enumerate(runs):
        r["config"]["learning_rate"] = 0.1 * (i + 1)
    summary.write(tmp_path / "summary.json", {"experiment": "sweep", "runs": runs, "claims": []})
    _check_pngs(plots.plot(tmp_path), tmp_path, ["test_accuracy.png"])
    for r in runs:
        r["curves"].pop("test_accuracy")
    other = tmp_path / "other"
    summary.write(other / "summary.json", {"experiment": "sweep", "runs": runs, "claims": []})
    assert plots.plot(other) == []


def test_registry_is_the_extension_point(tmp_path, monkeypatch):
    monkeypatch.setattr(plots, "PLOTTERS", dict(plots.PLOTTERS))
    seen = []

    @plots.register("custom")
    def _custom(doc, workdir):
        seen.append(doc["experiment"])
        return []

    assert plots.PLOTTERS["fig1"] is plots.plot_fig1
    make_fig1_summary(tmp_path, experiment="custom")
    assert plots.plot(tmp_path) == [] and seen == ["custom"]


def test_invalid_summary_is_refused(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps({"experiment": "fig1", "runs": []}))
    with pytest.raises(ValueError, match="runs"):
        plots.plot(tmp_path)


def test_no_pyplot_figures_leak(tmp_path):
    import matplotlib.pyplot as plt
    before = plt.get_fignums()
    make_fig1_summary(tmp_path, steps=300, eval_every=100)
    plots.plot(tmp_path)
    assert plt.get_fignums() == before

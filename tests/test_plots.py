"""Figures drawn from synthetic summary.json files (no training, no JAX): fast."""
from __future__ import annotations

import itertools
import json
import pathlib
import struct
import zlib

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


# ---------------------------------------------------------------------------------------------
# Sweeps: synthetic summaries shaped like `bn-exp sweep` output (one run per grid point)


def _point_name(point: dict) -> str:
    return ",".join(f"{k}={tuple(v) if isinstance(v, list) else v}" for k, v in point.items())


def _sweep_run(point: dict, *, steps: int, eval_every: int, diverge, nulls: bool,
               record_grid, base: dict) -> dict:
    """One grid point: accuracy that rises to a ceiling set by the point's settings, per-layer
    drift and saturation, and the `final` block the runner writes."""
    cfg = dict(base, **{k: list(v) if isinstance(v, tuple) else v for k, v in point.items()})
    if record_grid is not None:
        cfg["grid"] = record_grid
    seed = cfg.get("seed", 0)
    rng = np.random.default_rng(zlib.crc32(_point_name(point).encode()))
    bn = cfg["model.norm"] == "batchnorm"
    lr, std, act = cfg["learning_rate"], cfg["model.init_std"], cfg["model.activation"]
    depth = len(cfg["model.widths"])
    ceiling = (0.975 if bn else 0.955) - 0.004 * seed
    if not bn and (std <= 0.003 or (act == "sigmoid" and depth > 5)):
        ceiling = 0.113
    rate = steps / 6 * (0.1 / lr) ** 0.5 * (0.5 if bn else 1.5)
    div = diverge(cfg)
    end = div if div is not None else steps
    e = np.arange(0, end + 1, eval_every)
    acc = ceiling - (ceiling - 0.1) * np.exp(-e / rate) + rng.normal(0, 0.004, len(e))
    s = np.arange(0, end)
    curves = {"train_loss": summary.thin(s, 2.3 * np.exp(-s / rate) + 0.1, 500),
              "test_accuracy": summary.thin(e, acc, 500),
              "test_loss": summary.thin(e, 2.3 * np.exp(-e / rate) + 0.1, 500)}
    final_extra = {}
    for layer in range(1, depth + 1):
        w1 = (0.02 if bn else 0.3 / layer) * np.exp(-e / steps) * (1 + 0.1 * rng.random(len(e)))
        w1[0] = np.nan  # no previous evaluation at step 0
        sat_level = 0.0 if bn or act == "relu" else min(0.9, 0.05 * layer * (1 + std))
        sat = sat_level * (1 - np.exp(-e / rate))
        curves[f"ics_w1_layer{layer}"] = summary.thin(e, w1, 500)
        curves[f"saturation_layer{layer}"] = summary.thin(e, sat, 500)
        final_extra[f"mean_ics_w1_layer{layer}"] = float(np.nanmean(w1[1:])) if len(e) > 1 else None
        final_extra[f"mean_saturation_layer{layer}"] = float(np.mean(sat[1:])) if len(e) > 1 else None
    if nulls:
        curves["test_accuracy"]["value"][len(e) // 2] = None
    if div is not None:
        for c in curves.values():
            c["value"][-1] = None
    hit = [int(t) for t, a in zip(e, acc) if a >= cfg["target_accuracy"]]
    final = {"test_accuracy": None if div is not None else float(acc[-1]),
             "max_test_accuracy": float(np.max(acc)),
             "steps_to_target": hit[0] if hit else None,
             "auc_test_accuracy": float(np.mean(acc)), "train_loss": 0.3,
             "diverged": float(div is not None), "did_not_train": float(acc.max() < 0.15),
             **final_extra}
    return {"name": _point_name(point), "config": cfg, "curves": curves, "final": final,
            "diverged_at_step": div}


def make_sweep_summary(workdir: pathlib.Path, experiment: str, grid: list, *, steps: int = 1000,
                       eval_every: int = 100, diverge=lambda cfg: None, nulls: bool = True,
                       record_grid: bool = True, **base_over) -> dict:
    """Writes WORKDIR/summary.json for a sweep over `grid` ((key, values) pairs, grid order)."""
    base = _config(**{"steps": steps, "eval_every": eval_every, "target_accuracy": 0.9,
                      "learning_rate": 0.1, "model.norm": "none", "seed": 0,
                      "model.tracked_units": [0], **base_over})
    keys = [k for k, _ in grid]
    recorded = [[k, [list(v) if isinstance(v, tuple) else v for v in vals]] for k, vals in grid] \
        if record_grid else None
    runs = [_sweep_run(dict(zip(keys, values)), steps=steps, eval_every=eval_every,
                       diverge=diverge, nulls=nulls, record_grid=recorded, base=base)
            for values in itertools.product(*[v for _, v in grid])]
    doc = {"experiment": experiment, "runs": runs, "claims": []}
    summary.write(workdir / "summary.json", doc)
    return doc


NORMS = ("model.norm", ("none", "batchnorm"))
SEEDS = ("seed", (0, 1, 2))


def _diverge_high_lr(cfg):
    """No BN diverges at lr >= 10 (seed 1 also at 3), BN only at lr 100 for seed 2."""
    lr, bn, seed = cfg["learning_rate"], cfg["model.norm"] == "batchnorm", cfg["seed"]
    if (not bn and (lr >= 10 or (lr >= 3 and seed == 1))) or (bn and lr >= 100 and seed == 2):
        return int(cfg["eval_every"] * (1 + seed) + 7)
    return None


def test_lr_sweep_figures(tmp_path):
    grid = [("model.activation", ("sigmoid", "relu")), NORMS,
            ("learning_rate", (0.01, 0.1, 1.0, 3.0, 10.0, 100.0)), SEEDS]
    make_sweep_summary(tmp_path, "lr_sweep", grid, diverge=_diverge_high_lr)
    paths = plots.plot(tmp_path)
    _check_pngs(paths, tmp_path, ["lr_sweep_accuracy.png", "lr_sweep_steps_to_target.png"])
    assert not (tmp_path / "test_accuracy.png").exists()


def test_lr_sweep_single_seed_all_diverged_and_names_only(tmp_path):
    # One seed, no grid recorded in the config (swept keys read from the run names), a learning
    # rate where every run diverged, and nothing ever reaching the target.
    grid = [NORMS, ("learning_rate", (0.1, 100.0)), ("seed", (0,))]
    make_sweep_summary(tmp_path, "lr_sweep", grid, record_grid=False, target_accuracy=0.999,
                       diverge=lambda c: 150 if c["learning_rate"] > 1 else None)
    _check_pngs(plots.plot(tmp_path), tmp_path,
                ["lr_sweep_accuracy.png", "lr_sweep_steps_to_target.png"])
    assert plots._swept_keys(json.loads((tmp_path / "summary.json").read_text())["runs"]) == \
        ["model.norm", "learning_rate", "seed"]


def test_init_sweep_figures(tmp_path):
    grid = [NORMS, ("model.init_std", (0.001, 0.01, 0.1, 1.0, 10.0)), SEEDS]
    make_sweep_summary(tmp_path, "init_sweep", grid,
                       diverge=lambda c: 230 if c["model.init_std"] >= 10 and c["seed"] == 0 else None)
    _check_pngs(plots.plot(tmp_path), tmp_path,
                ["init_sweep_accuracy.png", "init_sweep_steps_to_target.png"])


def test_activation_sweep_figures(tmp_path):
    grid = [("model.activation", ("sigmoid", "relu")),
            ("model.widths", ((100,) * 3, (100,) * 10)), NORMS, SEEDS]
    make_sweep_summary(tmp_path, "activation_sweep", grid, steps=600, eval_every=100,
                       diverge=lambda c: 333 if c["model.activation"] == "relu" and c["seed"] == 2
                       and c["model.norm"] == "none" else None)
    _check_pngs(plots.plot(tmp_path), tmp_path,
                ["activation_sweep_curves.png", "activation_sweep_saturation.png",
                 "activation_sweep_drift.png"])


def test_activation_sweep_missing_per_layer_curves(tmp_path):
    # Single seed, relu only (nothing saturating), and no per-layer measures at all: the
    # accuracy curves are still drawn, the per-layer figures are skipped.
    grid = [("model.activation", ("relu",)), ("model.widths", ((50, 50),)), NORMS, ("seed", (0,))]
    doc = make_sweep_summary(tmp_path, "activation_sweep", grid, steps=400)
    for run in doc["runs"]:
        run["curves"] = {k: v for k, v in run["curves"].items() if "layer" not in k}
        run["final"] = {k: v for k, v in run["final"].items() if "layer" not in k}
    summary.write(tmp_path / "summary.json", doc)
    _check_pngs(plots.plot(tmp_path), tmp_path, ["activation_sweep_curves.png"])


def test_lr_init_grid_heatmap(tmp_path):
    grid = [NORMS, ("learning_rate", (0.01, 0.1, 1.0, 10.0)), ("model.init_std", (0.001, 0.1, 1.0))]
    make_sweep_summary(tmp_path, "lr_init_grid", grid, steps=2000, eval_every=250,
                       diverge=lambda c: 600 if c["learning_rate"] >= 10 and
                       c["model.norm"] == "none" else None)
    paths = plots.plot(tmp_path)
    _check_pngs(paths, tmp_path, ["lr_init_grid_heatmap.png"])
    w, h = png_size(paths[0])
    assert w > h, "two heatmaps side by side"


def test_lr_init_grid_with_seeds_and_nothing_reached(tmp_path):
    grid = [NORMS, ("learning_rate", (0.1, 1.0)), ("model.init_std", (0.1,)), ("seed", (0, 1))]
    make_sweep_summary(tmp_path, "lr_init_grid", grid, target_accuracy=0.999)
    _check_pngs(plots.plot(tmp_path), tmp_path, ["lr_init_grid_heatmap.png"])


def test_fig1_seeds_figures(tmp_path):
    make_sweep_summary(tmp_path, "fig1_seeds", [NORMS, SEEDS], steps=2000, eval_every=100,
                       target_accuracy=0.95,
                       diverge=lambda c: 1234 if c["model.norm"] == "none" and c["seed"] == 1 else None)
    _check_pngs(plots.plot(tmp_path), tmp_path, ["fig1_seeds_accuracy.png", "fig1_seeds_drift.png"])


def test_fig1_seeds_single_seed_without_drift(tmp_path):
    doc = make_sweep_summary(tmp_path, "fig1_seeds", [NORMS, ("seed", (0,))], steps=500)
    for run in doc["runs"]:
        for k in [k for k in run["curves"] if k.startswith("ics_")]:
            run["curves"].pop(k)
    summary.write(tmp_path / "summary.json", doc)
    _check_pngs(plots.plot(tmp_path), tmp_path, ["fig1_seeds_accuracy.png"])


def test_sweep_plots_deterministic(tmp_path):
    grid = [NORMS, ("learning_rate", (0.1, 10.0)), ("seed", (0, 1))]
    make_sweep_summary(tmp_path, "lr_sweep", grid, steps=400, diverge=_diverge_high_lr)
    for experiment in ("lr_sweep", "fig1_seeds"):
        doc = json.loads((tmp_path / "summary.json").read_text())
        doc["experiment"] = experiment
        summary.write(tmp_path / "summary.json", doc)
        first = [p.read_bytes() for p in plots.plot(tmp_path)]
        assert len(first) == 2 and first == [p.read_bytes() for p in plots.plot(tmp_path)]

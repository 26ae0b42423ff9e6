"""Synthetic summary.json files for the figure tests (no training, no JAX), and PNG checks.

`make_fig1_summary` writes a two-run Figure 1 experiment (per-step and per-evaluation curves, nulls,
a divergence); `make_sweep_summary` one run per grid point, shaped like `bn-exp sweep` output.
Shared by tests/test_plotting*.py and tests/test_experiments_*.py.
"""
from __future__ import annotations

import itertools
import pathlib
import struct
import zlib

import numpy as np

from bn_experiments import summary

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def base_config(**over) -> dict:
    cfg = {"learning_rate": 0.5, "model.norm": "batchnorm", "model.tracked_units": [0, 7, 42],
           "batch_size": 60, "steps": 50000, "model.init": "gaussian", "model.init_std": 0.1,
           "model.activation": "sigmoid", "model.widths": [100, 100, 100], "eval_every": 500,
           "optimizer.momentum": 0.0, "data.source": "mnist_embedded", "target_accuracy": 0.97}
    cfg.update(over)
    return cfg


def fig1_run(name: str, bn: bool, steps: int, eval_every: int, diverged_at: int | None, seed: int,
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
    config = base_config(**{"model.norm": "batchnorm" if bn else "none", "steps": steps,
                        "eval_every": eval_every})
    return {"name": name, "config": config,
            "curves": curves, "final": final, "diverged_at_step": diverged_at}


def make_fig1_summary(workdir: pathlib.Path, steps: int = 2000, eval_every: int = 100,
                      diverged_at: int | None = 1234, drop: tuple[str, ...] = (),
                      experiment: str = "fig1") -> pathlib.Path:
    """Writes WORKDIR/summary.json for a two-run Figure 1 experiment (no_bn diverges by default)."""
    doc = {"experiment": experiment,
           "runs": [fig1_run("no_bn", False, steps, eval_every, diverged_at, 0, drop),
                    fig1_run("bn", True, steps, eval_every, None, 1, drop)],
           # Figures are drawn from the runs alone; the claims' schema is summary.py's business.
           "claims": []}
    summary.write(workdir / "summary.json", doc)
    return workdir / "summary.json"


def png_size(path: pathlib.Path) -> tuple[int, int]:
    """(width, height) read from the PNG header, after checking it is one."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path.name} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def check_pngs(paths, workdir, names):
    """`paths` are exactly `names`, in order, PNGs of a sane size in `workdir`, no temp files left."""
    assert [p.name for p in paths] == names
    for p in paths:
        assert p.parent == workdir and p.is_file()
        w, h = png_size(p)
        assert 600 <= w <= 4000 and 400 <= h <= 2000, (p.name, w, h)
    assert not list(workdir.glob(".*.tmp")), "temporary files left behind"


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
    base = base_config(**{"steps": steps, "eval_every": eval_every, "target_accuracy": 0.9,
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


def diverge_high_lr(cfg):
    """No BN diverges at lr >= 10 (seed 1 also at 3), BN only at lr 100 for seed 2."""
    lr, bn, seed = cfg["learning_rate"], cfg["model.norm"] == "batchnorm", cfg["seed"]
    if (not bn and (lr >= 10 or (lr >= 3 and seed == 1))) or (bn and lr >= 100 and seed == 2):
        return int(cfg["eval_every"] * (1 + seed) + 7)
    return None

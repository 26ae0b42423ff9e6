"""Synthetic Figure 1 runs with known answers (no training), shaped like `configs/fig1_mnist.py`'s
grid: `model.norm` x `seed`, evaluations at 0, 50, 100, 200, 500, 1000, ... every 500, the fig1
probe's curves, and the tracked unit's per-step percentiles (thinned, as summaries are).
Shared by tests/test_experiments_fig1*.py."""
from __future__ import annotations

import pathlib

import numpy as np

from bn_experiments import summary

NORMS = ("none", "batchnorm")


def eval_steps(steps: int, every: int = 500, early=(50, 100, 200)) -> list[int]:
    return sorted({0, *[s for s in early if s < steps], *range(every, steps + 1, every)})


def run(norm: str, seed: int, *, steps: int = 50_000, rate: float = 3000.0, ceiling: float = 0.97,
        shift: float = 0.05, band: float = 0.05, transient: tuple[float, float] = (0.5, 0.5),
        peak: float = 1.0, jitter: float = 0.02, diverged_at: int | None = None,
        accuracy=None, name: str | None = None) -> dict:
    """One run. `accuracy(step)` overrides the default curve ceiling - (ceiling - 0.1) e^(-s/rate);
    `shift` / `band` are the probe's median shift and band change after the transient (the first
    2% of `steps`), `transient` theirs inside it; `peak` the tracked unit's early median swing.
    Seeds differ by a small multiplicative jitter (`jitter`) so intervals are finite."""
    e = np.asarray(eval_steps(steps), dtype=np.float64)
    wobble = 1 + jitter * ((seed * 7919) % 5 - 2) / 2
    acc = (np.asarray([accuracy(s) for s in e]) if accuracy is not None
           else ceiling - (ceiling - 0.1) * np.exp(-e / (rate * wobble)))
    after = e > 0.02 * steps
    med = np.where(after, shift, transient[0]) * wobble
    bnd = np.where(after, band, transient[1]) * wobble
    med[0] = bnd[0] = 0.0
    s = np.linspace(0, steps - 1, min(steps, 500)).round()
    p50 = peak * (s / (0.05 * steps)) * np.exp(1 - s / (0.05 * steps)) * wobble
    width = 1.25 + 0.7 * s / steps
    curves = {"test_accuracy": summary.thin(e, acc),
              "probe_median_shift": summary.thin(e, med),
              "probe_band_change": summary.thin(e, bnd),
              "probe_abs_median": summary.thin(e, 0.1 + 0.5 * (norm == "none") + 0 * e),
              "probe_band_width": summary.thin(e, 2.5 + 1.4 * e / steps),
              "preact_p15": summary.thin(s, p50 - width),
              "preact_p50": summary.thin(s, p50),
              "preact_p85": summary.thin(s, p50 + width)}
    if diverged_at is not None:
        for c in curves.values():
            keep = [i for i, st in enumerate(c["step"]) if st < diverged_at]
            c["step"], c["value"] = [c["step"][i] for i in keep], [c["value"][i] for i in keep]
    final = {"test_accuracy": None if diverged_at is not None else float(acc[-1]),
             "max_test_accuracy": float(np.max(acc)),
             "steps_to_target": next((int(t) for t, a in zip(e, acc) if a >= 0.9), None),
             "auc_test_accuracy": float(np.mean(acc))}
    if norm == "batchnorm":
        final["test_accuracy_population"] = float(acc[-1]) + 0.001
    config = {"experiment": "fig1", "model.norm": norm, "seed": seed, "steps": steps,
              "eval_every": 500, "eval_steps": [50, 100, 200], "batch_size": 60,
              "learning_rate": 0.5, "model.init": "gaussian", "model.init_std": 0.1,
              "model.activation": "sigmoid", "model.widths": [100, 100, 100],
              "model.tracked_units": [0], "target_accuracy": 0.95, "optimizer.momentum": 0.0,
              "data.source": "idx:../shared/data/mnist",
              "grid": [["model.norm", list(NORMS)], ["seed", [0, 1, 2, 3, 4]]]}
    return {"name": name or f"model.norm={norm},seed={seed}", "config": config, "curves": curves,
            "final": final, "diverged_at_step": diverged_at}


def pairs(seeds: int, bn: dict | None = None, no: dict | None = None) -> list[dict]:
    """Both arms for seeds 0..seeds-1, each arm's keyword arguments for `run`."""
    return [run(norm, s, **(kw or {})) for s in range(seeds)
            for norm, kw in (("none", no), ("batchnorm", bn))]


# A paper-like pair: BN faster (rate 3x smaller), higher (0.982 vs 0.972), its input 4x stiller.
BN_LIKE = {"rate": 1000.0, "ceiling": 0.982, "shift": 0.02, "band": 0.02, "peak": 0.05}
NO_BN_LIKE = {"rate": 3000.0, "ceiling": 0.972, "shift": 0.08, "band": 0.08, "peak": 1.0}


def write(workdir: pathlib.Path, runs: list[dict], experiment: str = "fig1") -> pathlib.Path:
    doc = {"experiment": experiment, "runs": runs, "claims": []}
    summary.write(workdir / "summary.json", doc)
    return workdir / "summary.json"

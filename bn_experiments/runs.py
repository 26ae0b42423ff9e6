"""Selecting and pairing the runs of a summary, for the experiments' claims.

A summary's runs are dicts with a flat `config` (dotted keys). Claims compare arms (with and
without BN: `model.norm`) paired by `seed`, over settings (grid values); these helpers select,
pair and count runs the same way for every experiment, and build a claim row in the contract's
shape (see `bn_experiments.summary`).
"""
from __future__ import annotations

import math

import numpy as np

BN, NO_BN = "batchnorm", "none"


def cfg(run: dict, key: str, default=None):
    """A run's config value (dotted key)."""
    return run["config"].get(key, default)


def select(runs: list[dict], **where) -> list[dict]:
    """Runs whose config matches `where` (`model__norm="none"` means `model.norm`)."""
    return [r for r in runs if all(cfg(r, k.replace("__", ".")) == v for k, v in where.items())]


def by_seed(runs: list[dict]) -> dict[int, dict]:
    """Runs keyed by their seed (one arm, one setting)."""
    return {cfg(r, "seed", 0): r for r in runs}


def arms(runs: list[dict]) -> tuple[dict[int, dict], dict[int, dict]] | None:
    """(BN runs by seed, no-BN runs by seed), or None when either arm is missing."""
    bn, no = by_seed(select(runs, model__norm=BN)), by_seed(select(runs, model__norm=NO_BN))
    return (bn, no) if bn and no else None


def values(runs: list[dict], key: str) -> list:
    """The distinct values of config `key` over `runs`: numbers in order, anything else by repr."""
    distinct = list({repr(cfg(r, key)): cfg(r, key) for r in runs}.values())
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in distinct)
    return sorted(distinct) if numeric else sorted(distinct, key=repr)


def reached(run: dict) -> bool:
    """The run reached its config's target test accuracy."""
    return run["final"].get("steps_to_target") is not None


def curve(run: dict, metric: str) -> tuple[list, list]:
    """(steps, values) of a curve; empty lists when the run does not have it."""
    c = run["curves"].get(metric) or {"step": [], "value": []}
    return c["step"], c["value"]


def finite(v) -> bool:
    """A JSON number that is not null (summaries write non-finite numbers as null)."""
    return v is not None and math.isfinite(v)


def row(cid: str, claim: str, source: str, measured: str, paper: str, verdict: str, figure: str,
        evidence: dict) -> dict:
    """A claim row of summary.json (the contract of `bn_experiments.summary`)."""
    return {"id": cid, "claim": claim, "source": source, "measured": measured, "paper": paper,
            "verdict": verdict, "figure": figure, "evidence": evidence}


def largest_reaching(runs: list[dict], key: str) -> float | None:
    """The largest value of config `key` among `runs` (one seed, one arm) that reached the target."""
    ok = [cfg(r, key) for r in runs if reached(r)]
    return max(ok) if ok else None


def grid_step(vals: list[float]) -> float:
    """The median ratio between neighbouring grid values (the resolution of a ratio measured on it)."""
    v = sorted(x for x in vals if x and x > 0)
    return float(np.median([b / a for a, b in zip(v, v[1:])])) if len(v) > 1 else float("nan")


def count_reaching(runs: list[dict]) -> dict[int, float]:
    """Per seed, how many of its runs reach the target."""
    return {s: float(sum(reached(r) for r in select(runs, seed=s)))
            for s in sorted({cfg(r, "seed") for r in runs})}


def majority_range(runs: list[dict], key: str) -> str:
    """The values of `key` at which a majority of the seeds reach the target."""
    ok = [v for v in values(runs, key)
          if 2 * sum(reached(r) for r in runs if cfg(r, key) == v)
          > sum(cfg(r, key) == v for r in runs)]
    return f"{min(ok):g} to {max(ok):g} ({len(ok)} grid values)" if ok else "none"

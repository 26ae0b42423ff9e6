"""Synthetic runs with known answers for the claim tests (no training)."""
from __future__ import annotations


def by_id(rows: list[dict]) -> dict[str, dict]:
    """Claim rows keyed by their id without the experiment prefix."""
    return {r["id"].split(".", 1)[1]: r for r in rows}


def point(norm, lr, seed, ok, div=None, act="sigmoid"):
    return {"name": f"{act}-{norm}-{lr}-{seed}",
            "config": {"model.activation": act, "model.norm": norm, "learning_rate": lr, "seed": seed,
                       "target_accuracy": 0.9, "steps": 100, "model.init_std": lr},
            "curves": {}, "diverged_at_step": div,
            "final": {"steps_to_target": 100 if ok else None}}


def lr_runs(bn_max, no_max, seeds=5, lrs=(0.1, 1.0, 10.0, 100.0)):
    return [point(norm, lr, s, lr <= mx, div=(5 if lr > mx and norm == "none" else None))
            for norm, mx in (("none", no_max), ("batchnorm", bn_max)) for lr in lrs
            for s in range(seeds)]

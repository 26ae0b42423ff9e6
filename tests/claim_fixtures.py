"""Synthetic runs with known answers for the claim tests (no training)."""
from __future__ import annotations


def by_id(rows: list[dict]) -> dict[str, dict]:
    """Claim rows keyed by their id without the experiment prefix."""
    return {r["id"].split(".", 1)[1]: r for r in rows}


def point(norm, lr, seed, ok, div=None, act="sigmoid", init=0.1, growth=1.0, slope=0.2, acc=0.95,
          **cfg):
    """One sweep run: `ok` trains (final accuracy `acc`); otherwise it diverged at `div` or, with
    `div=None`, stayed at chance. Its hidden weight norms grow by `growth` over training; the
    probe's slope / saturated finals are `slope` and 1 - 4 * slope."""
    norms = {f"probe_weight_norm_layer{l}": {"step": [0, 25, 100],
                                             "value": [10.0, 10.0 * growth ** 0.5, 10.0 * growth]}
             for l in (1, 2, 3)}
    final = {"steps_to_target": 100 if ok and acc >= 0.9 else None,
             "test_accuracy": acc if ok else (None if div else 0.1),
             "max_test_accuracy": acc if ok else 0.11, "diverged": float(div is not None)}
    final.update({f"mean_probe_slope_layer{l}": slope for l in (1, 2, 3)})
    final.update({f"mean_probe_saturated_layer{l}": 1 - 4 * slope for l in (1, 2, 3)})
    return {"name": f"{act}-{norm}-{lr}-{init}-{seed}",
            "config": {"model.activation": act, "model.norm": norm, "learning_rate": lr, "seed": seed,
                       "target_accuracy": 0.9, "steps": 100, "model.init_std": init,
                       "data.source": "validation:10:synthetic", **cfg},
            "curves": norms, "diverged_at_step": div, "final": final}


def lr_runs(bn_max, no_max, seeds=5, lrs=(0.1, 1.0, 10.0, 100.0), act="sigmoid"):
    """An lr sweep whose arms train up to `bn_max` / `no_max`; above it no BN diverges (after its
    weights grew 100x), BN stays at chance (weights grown 3x)."""
    return [point(norm, lr, s, lr <= mx, div=(5 if lr > mx and norm == "none" else None), act=act,
                  growth=(100.0 if norm == "none" else 3.0) if lr > mx else 1.2)
            for norm, mx in (("none", no_max), ("batchnorm", bn_max)) for lr in lrs
            for s in range(seeds)]

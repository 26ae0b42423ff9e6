"""Figure 1 over seeds (bn_experiments/experiments/fig1_seeds.py) from synthetic sweeps: fast."""
from __future__ import annotations

from figure_fixtures import NORMS, SEEDS, check_pngs, make_sweep_summary

from bn_experiments import experiments, summary


def test_fig1_seeds_figures(tmp_path):
    make_sweep_summary(tmp_path, "fig1_seeds", [NORMS, SEEDS], steps=2000, eval_every=100,
                       target_accuracy=0.95,
                       diverge=lambda c: 1234 if c["model.norm"] == "none" and c["seed"] == 1 else None)
    check_pngs(experiments.draw_figures(tmp_path), tmp_path,
               ["fig1_seeds_accuracy.png", "fig1_seeds_drift.png"])


def test_fig1_seeds_single_seed_without_drift(tmp_path):
    doc = make_sweep_summary(tmp_path, "fig1_seeds", [NORMS, ("seed", (0,))], steps=500)
    for run in doc["runs"]:
        for k in [k for k in run["curves"] if k.startswith("ics_")]:
            run["curves"].pop(k)
    summary.write(tmp_path / "summary.json", doc)
    check_pngs(experiments.draw_figures(tmp_path), tmp_path, ["fig1_seeds_accuracy.png"])

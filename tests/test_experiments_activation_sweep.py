"""The activation sweep's figures (bn_experiments/experiments/activation_sweep.py): fast."""
from __future__ import annotations

from figure_fixtures import NORMS, SEEDS, check_pngs, make_sweep_summary

from bn_experiments import experiments, summary


def test_activation_sweep_figures(tmp_path):
    grid = [("model.activation", ("sigmoid", "relu")),
            ("model.widths", ((100,) * 3, (100,) * 10)), NORMS, SEEDS]
    make_sweep_summary(tmp_path, "activation_sweep", grid, steps=600, eval_every=100,
                       diverge=lambda c: 333 if c["model.activation"] == "relu" and c["seed"] == 2
                       and c["model.norm"] == "none" else None)
    check_pngs(experiments.draw_figures(tmp_path), tmp_path,
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
    check_pngs(experiments.draw_figures(tmp_path), tmp_path, ["activation_sweep_curves.png"])

"""The learning rate x init std heatmap (bn_experiments/experiments/lr_init_grid.py): fast."""
from __future__ import annotations

from figure_fixtures import NORMS, check_pngs, make_sweep_summary, png_size

from bn_experiments import experiments


def test_lr_init_grid_heatmap(tmp_path):
    grid = [NORMS, ("learning_rate", (0.01, 0.1, 1.0, 10.0)), ("model.init_std", (0.001, 0.1, 1.0))]
    make_sweep_summary(tmp_path, "lr_init_grid", grid, steps=2000, eval_every=250,
                       diverge=lambda c: 600 if c["learning_rate"] >= 10 and
                       c["model.norm"] == "none" else None)
    paths = experiments.draw_figures(tmp_path)
    check_pngs(paths, tmp_path, ["lr_init_grid_heatmap.png"])
    w, h = png_size(paths[0])
    assert w > h, "two heatmaps side by side"


def test_lr_init_grid_with_seeds_and_nothing_reached(tmp_path):
    grid = [NORMS, ("learning_rate", (0.1, 1.0)), ("model.init_std", (0.1,)), ("seed", (0, 1))]
    make_sweep_summary(tmp_path, "lr_init_grid", grid, target_accuracy=0.999)
    check_pngs(experiments.draw_figures(tmp_path), tmp_path, ["lr_init_grid_heatmap.png"])

"""The initialization sweep's figures (bn_experiments/experiments/init_sweep.py): fast."""
from __future__ import annotations

from claim_fixtures import lr_runs
from figure_fixtures import NORMS, SEEDS, check_pngs, make_sweep_summary

from bn_experiments import experiments
from bn_experiments.experiments import init_sweep


def test_init_sweep_figures(tmp_path):
    grid = [NORMS, ("model.init_std", (0.001, 0.01, 0.1, 1.0, 10.0)), SEEDS]
    make_sweep_summary(tmp_path, "init_sweep", grid,
                       diverge=lambda c: 230 if c["model.init_std"] >= 10 and c["seed"] == 0 else None)
    check_pngs(experiments.draw_figures(tmp_path), tmp_path,
               ["init_sweep_accuracy.png", "init_sweep_steps_to_target.png"])


# ------------------------------------------------------------------ claims (known answers)

def test_init_sweep_rule():
    runs = lr_runs(bn_max=100.0, no_max=1.0)  # model.init_std mirrors learning_rate here
    assert init_sweep.claims(runs)[0]["verdict"] == "reproduced"
    assert init_sweep.claims(lr_runs(bn_max=1.0, no_max=100.0))[0]["verdict"] == "not reproduced"

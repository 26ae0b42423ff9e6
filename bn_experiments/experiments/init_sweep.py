"""Initialization sweep: does BN let us "be less careful about initialization" (Ioffe & Szegedy
2015, abstract; Sec. 3.3 on scale invariance)?

`configs/init_sweep.py`: the std of the Gaussian weight init on a log grid from 1e-3 to 10 x
{no BN, BN} x seeds 0-2, on Figure 1's 3 x 100 sigmoid MLP. An init std "trains" when at least 2
of its 3 seeds reach the target test accuracy; the claim compares the ranges. Figures (one line
per BN setting, mean ± std over seeds):

* `init_sweep_accuracy.png` - max and final test accuracy against the init std, diverged seeds
  counted in a strip;
* `init_sweep_steps_to_target.png` - steps to the target accuracy, a "never" row on top.
"""
from __future__ import annotations

import pathlib

from bn_experiments import runs as runs_lib
from bn_experiments import stats
from bn_experiments.experiments import Experiment, register
from bn_experiments.plotting import config_value
from bn_experiments.plotting_sweeps import figures_vs_x


def figures(doc: dict, workdir: pathlib.Path) -> list[pathlib.Path]:
    """`init_sweep_accuracy.png` and `init_sweep_steps_to_target.png` against the init std."""
    init = config_value(doc["runs"], "model.init")
    return figures_vs_x(doc, pathlib.Path(workdir), xkey="model.init_std", prefix="init_sweep",
                        title="Initialization sweep",
                        xlabel="init std (" + (f"{init} " if init and "(" not in init else "")
                               + "weight init scale)")


# ------------------------------------------------------------------------------------ claims

def claims(runs: list[dict]) -> list[dict]:
    """Rule (in the evidence): per seed, the number of init stds that reach the target with BN
    minus without; a headline claim (5 seeds)."""
    if runs_lib.arms(runs) is None:
        return []
    bn, no = runs_lib.select(runs, model__norm=runs_lib.BN), runs_lib.select(runs, model__norm=runs_lib.NO_BN)
    iv = stats.paired(runs_lib.count_reaching(bn), runs_lib.count_reaching(no))
    need = stats.HEADLINE_SEEDS
    return [runs_lib.row(
        "init_sweep.bn_less_careful_init", "With BN one can be less careful about initialization",
        "IS abstract, Sec. 3.3",
        f"init stds that train (a majority of seeds reach the target): BN {runs_lib.majority_range(bn, 'model.init_std')}; "
        f"no BN {runs_lib.majority_range(no, 'model.init_std')}; per seed, count with BN minus without: {stats.fmt(iv)}"
        + stats.seeds_note(iv.n, need),
        "stated, no numbers; Sec. 3.3: BN(Wu) = BN((aW)u), so the output does not depend on the "
        "weights' scale", stats.verdict(iv, min_seeds=need), "init_sweep_accuracy.png",
        stats.evidence(iv, stats.rule_single(
            "number of init stds (of the grid) reaching the target with BN - without",
            expect_text="above zero", min_seeds=need)))]


register(Experiment("init_sweep", claims=claims, figures=figures))

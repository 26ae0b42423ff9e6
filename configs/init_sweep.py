"""Initialization sweep: does BN let us "be less careful about initialization" (Ioffe & Szegedy
2015, abstract; Sec. 3.3 on scale invariance)?

Grid: the std of the Gaussian weight init on a log grid from 1e-3 to 10 x {no BN, BN} x seeds
0-2, on Figure 1's 3 x 100 sigmoid MLP (plain SGD, lr 0.1, batch 60). An init std "trains" when
at least 2 of its 3 seeds reach the target test accuracy (0.90); the claim compares the ranges.

Scaled to 10,000 steps so the 54 runs finish in about 10 minutes on a 2-core CPU; full size:
`--config.steps=50000`.
"""
from bn_experiments.configs import default

INIT_STDS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)


def get_config(arg: str | None = None):
    config = default.sweep("init_sweep", learning_rate=0.1)
    config.grid = (("model.norm", ("none", "batchnorm")), ("model.init_std", INIT_STDS),
                   ("seed", (0, 1, 2)))
    config.points_per_program = 27
    if arg == "quick":
        default.shrink(config)
        config.grid = (("model.norm", ("none", "batchnorm")), ("model.init_std", (0.001, 0.1)),
                       ("seed", (0,)))
    return config

"""Learning-rate sweep: does BN "allow us to use much higher learning rates" (Ioffe & Szegedy
2015, abstract and Sec. 3.3)?

Grid: learning rate on a log grid from 0.01 to 100 x {no BN, BN} x {sigmoid, relu} x seeds 0-2,
on the 3 x 100 MLP of Figure 1 (plain SGD, N(0, 0.1^2) init, batch 60). A learning rate "trains"
a model when at least 2 of its 3 seeds reach the target test accuracy (0.90); the claim compares
the largest such rate with and without BN.

Scaled to 10,000 steps (not Figure 1's 50,000) so the 108 runs finish in about 20 minutes on a
2-core CPU; the full-size sweep is one override away: `--config.steps=50000`.
"""
from bn_experiments.configs import default

LEARNING_RATES = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)


def get_config(arg: str | None = None):
    config = default.sweep("lr_sweep")
    config.grid = (("model.activation", ("sigmoid", "relu")), ("model.norm", ("none", "batchnorm")),
                   ("learning_rate", LEARNING_RATES), ("seed", (0, 1, 2)))
    config.points_per_program = 27
    if arg == "quick":
        default.shrink(config)
        config.grid = (("model.activation", ("sigmoid",)), ("model.norm", ("none", "batchnorm")),
                       ("learning_rate", (0.1, 100.0)), ("seed", (0,)))
    return config

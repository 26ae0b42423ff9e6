"""Learning rate x init std, jointly: where in that plane does each network train?

Grid: 7 learning rates (0.01 to 10) x 7 Gaussian init stds (1e-3 to 1) x {no BN, BN}, one seed,
Figure 1's 3 x 100 sigmoid MLP, plain SGD, batch 60, 5,000 steps (reduced; the heatmaps show
steps to the target test accuracy 0.90, so they are read at this budget). About 9 minutes on a
2-core CPU; full size: `--config.steps=50000`.
"""
from bn_experiments.configs import default

LEARNING_RATES = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
INIT_STDS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)


def get_config(arg: str | None = None):
    config = default.sweep("lr_init_grid", steps=5_000, eval_every=250)
    config.grid = (("model.norm", ("none", "batchnorm")), ("learning_rate", LEARNING_RATES),
                   ("model.init_std", INIT_STDS))
    config.points_per_program = 25
    if arg == "quick":
        default.shrink(config)
        config.grid = (("model.norm", ("none", "batchnorm")), ("learning_rate", (0.1, 10.0)),
                       ("model.init_std", (0.001, 0.1)))
    return config

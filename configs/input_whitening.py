"""Whitened inputs converge faster (LeCun et al. 1998; Wiesler & Ney 2011), the starting point of
Ioffe & Szegedy (2015, Sec. 2), with and without BN (bn_experiments/experiments/input_whitening.py).

Arms: `data.whiten` in {none (raw pixels in [0, 1]), standardize (per pixel), pca, zca} x
`model.norm` in {none, batchnorm}, on Figure 1's 3 x 100 sigmoid MLP (batch 60, plain SGD,
N(0, 0.1^2) init). The transforms use statistics of the training split only (epsilon 1e-3 added
to each eigenvalue, so MNIST's near-empty directions are not blown up). Each arm runs at its own
best learning rate of {0.1, 0.3, 1, 3, 10, 30} (chosen by the experiment on the training loss;
a first run over {0.03, ..., 3} put every arm's best rate at 3, the grid's edge, so the grid was
extended upwards), 3 paired seeds (a seed gives every arm the same initial W and batch order).

3,000 steps (about 3.6 epochs of the 50,000 training images; convergence speed is an early-phase
question), evaluated every 500 steps on a 10,000-image validation split held out of the training
set (`--config.data.source=validation:10000:mnist`; nothing here looks at the test set). About 10
minutes on a 2-core CPU. `quick`: a seconds-long smoke run.
"""
from bn_experiments.configs import default


def get_config(arg: str | None = None):
    config = default.get_config()
    config.experiment = "input_whitening"
    config.steps = 3_000
    config.eval_every = 500
    config.target_accuracy = 0.95
    config.model.tracked_units = (0,)
    config.points_per_program = 18  # one program per arm: 6 rates x 3 seeds
    arms = (("data.whiten", ("none", "standardize", "pca", "zca")),
            ("model.norm", ("none", "batchnorm")),
            ("learning_rate", (0.1, 0.3, 1.0, 3.0, 10.0, 30.0)))
    quick = (("data.whiten", ("none", "zca")), ("model.norm", ("none", "batchnorm")),
             ("learning_rate", (0.1, 1.0)))
    return default.paired_seeds(config, arg, arms, seeds=(0, 1, 2), quick_axes=quick)

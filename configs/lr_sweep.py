"""Learning-rate sweep: does BN "allow us to use much higher learning rates" (Ioffe & Szegedy
2015, abstract and Sec. 3.3), and does a too-large rate without BN grow the weights until the
model fails?

Grid: the learning rate in steps of sqrt(2) from 1 to 90.5 (14 rates; both stability edges lie
inside with a factor of 2 or more to spare: a calibration run found the network without BN
failing from 16 and with BN from 64, and both training best near 2-4) x {no BN, BN} x seeds 0-4
(5 seeds: higher learning rates is a headline claim of the abstract), on Figure 1's 3 x 100
sigmoid MLP (plain SGD, N(0, 0.1^2) init, batch 60). A run fails when it diverges or ends at chance
(best or final validation accuracy below 0.2); the claim compares each seed's largest trainable
rate with and without BN, with the grid's resolution (sqrt(2)) beside it. The sweep probe logs
every hidden layer's weight norm at each evaluation; an extra evaluation at step 25 catches the
early blow-ups. A ReLU network is one override away (`--config.model.activation=relu`; its edges
are lower, about 1 without BN and 8 with it, so extend the grid down).

Committed on the official MNIST with 10,000 training images held out for validation
(`--config.data.source=validation:10000:idx:../shared/data/mnist`; the run's "test" metrics are
then validation metrics). Scaled to 2,000 steps (140 runs; 10.5 minutes measured on a 2-core CPU):
in a calibration run every failure showed within 1,500 steps. Full size (Figure 1's budget):
`--config.steps=50000`.
"""
from bn_experiments.configs import default

LEARNING_RATES = tuple(round(2 ** (k / 2), 3) for k in range(14))  # 1, 1.414, ... 90.51
SEEDS = (0, 1, 2, 3, 4)


def get_config(arg: str | None = None):
    config = default.sweep("lr_sweep", steps=2_000, eval_every=500)
    config.eval_steps = (25,)
    config.checkpoint_every = 0
    config.grid = (("model.norm", ("none", "batchnorm")), ("learning_rate", LEARNING_RATES),
                   ("seed", SEEDS))
    # One program per arm: 14 rates x 5 seeds vmapped together.
    config.points_per_program = len(LEARNING_RATES) * len(SEEDS)
    if arg == "quick":
        default.shrink(config)
        config.checkpoint_every = 0
        config.eval_steps = (25,)
        config.grid = (("model.norm", ("none", "batchnorm")), ("learning_rate", (1.0, 90.51)),
                       ("seed", (0, 1)))
    return config

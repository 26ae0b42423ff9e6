"""A deep sigmoid network with and without BN: does BN make a saturating nonlinearity trainable
(Ioffe & Szegedy 2015, Sec. 1 and Sec. 4.2.2), and is that BN fixing saturation or BN fixing a
bad init?

Grid: depth {3, 10 hidden layers of 100} x {no BN, BN} x init gain {1, 4} x learning rate
{0.25, 1, 4} x seeds 0-2, sigmoid units, plain SGD, batch 60, Glorot init (`model.init=glorot`,
std = gain * sqrt(2 / (fan_in + fan_out)); `model.init_std` is the gain). Gain 1 gives the 100-wide
layers exactly the paper-like N(0, 0.1^2): a 10-layer sigmoid network without BN then starts with
gradients that shrink about 4x per layer (sigmoid'(0) = 1/4), so it fails from its init. Gain 4
is Glorot and Bengio's correction for the sigmoid's slope, the fair no-BN baseline. Each arm is
taken at its best learning rate (on the validation split). The sweep probe measures, per layer,
the mean of sigmoid'(x) over units and the share of |x| > 4 at every evaluation.

Committed on the official MNIST with 10,000 training images held out for validation
(`--config.data.source=validation:10000:idx:../shared/data/mnist`). Scaled to 3,000 steps (72
runs; 15.5 minutes measured on a 2-core CPU shared with other work); full size:
`--config.steps=50000`. Tanh and ReLU networks are one override away
(`--config.model.activation=tanh`; their slope-correcting gains are 1 and about 1.4).
"""
from bn_experiments.configs import default

SHALLOW, DEEP = (100,) * 3, (100,) * 10
GAINS = (1.0, 4.0)
LEARNING_RATES = (0.25, 1.0, 4.0)
SEEDS = (0, 1, 2)


def get_config(arg: str | None = None):
    config = default.sweep("activation_sweep", steps=3_000, eval_every=500)
    config.checkpoint_every = 0
    config.model.init = "glorot"
    config.grid = (("model.widths", (SHALLOW, DEEP)), ("model.norm", ("none", "batchnorm")),
                   ("model.init_std", GAINS), ("learning_rate", LEARNING_RATES), ("seed", SEEDS))
    config.points_per_program = len(GAINS) * len(LEARNING_RATES) * len(SEEDS)
    if arg == "quick":
        default.shrink(config)
        config.checkpoint_every = 0
        config.grid = (("model.widths", (SHALLOW, DEEP)), ("model.norm", ("none", "batchnorm")),
                       ("model.init_std", GAINS), ("learning_rate", (1.0,)), ("seed", (0, 1)))
    return config

"""Gradient explosion at init in deep BN networks (Yang et al. 2019), beside the layer-Jacobian
conjecture of Ioffe & Szegedy (2015, Sec. 3.3).

Yang et al. show that at initialization the gradients of a fully connected BN network without skip
connections grow exponentially toward the input, for ReLU and large batches by about pi/(pi-1) ~
1.47 per layer in squared norm. The probe of `bn_experiments.experiments.gradient_explosion`
measures ||dL/dW_l||^2 of every hidden layer on a fixed batch of 1,024 training images, and the
mean squared singular value of three layer Jacobians at the normalized units, at init (the claim)
and over 100 steps of training (their note that gradients settle after a few steps).

Setup: ReLU MLPs of 100 units per hidden layer, 5, 10, 20 and 35 hidden layers, He init (std
sqrt(2 / fan_in): the critical init without BN, so the no-BN arm is the control whose gradients
should stay level), with and without BN, 3 seeds paired; SGD at lr 0.01, batch 60, an evaluation
every 25 steps. Committed on the official MNIST
(`--config.data.source=idx:<folder with the four MNIST files>`).

Why not 50 layers: a grid point's name spells out `model.widths`, and the runner names each
finished point's file after it; at 50 layers that name passes the 255-byte file-name limit
(`OSError: File name too long`), at 35 it fits (tests/test_experiments_gradient_explosion.py).
"""
from bn_experiments.configs import default

DEPTHS = (5, 10, 20, 35)


def get_config(arg: str | None = None):
    config = default.sweep("gradient_explosion", steps=100, eval_every=25, learning_rate=0.01)
    config.checkpoint_every = 0
    config.model.activation = "relu"
    config.model.init = "he"
    config.model.init_std = 1.0
    depths = DEPTHS
    seeds = (0, 1, 2)
    if arg == "quick":
        default.shrink(config)
        config.steps, config.eval_every, config.checkpoint_every = 20, 10, 0
        depths, seeds = (4, 6), (0, 1)
    config.grid = (("model.widths", tuple((100,) * d for d in depths)),
                   ("model.norm", ("none", "batchnorm")), ("seed", seeds))
    return config

"""Saturating nonlinearities: does BN make them trainable (Ioffe & Szegedy 2015, Sec. 1 and
Sec. 4.2.2, where plain Inception with sigmoids stays at chance)?

Grid: activation {sigmoid, tanh, relu} x depth {3, 10 hidden layers of 100} x {no BN, BN} x
seeds 0-2 (plain SGD, lr 0.1, N(0, 0.1^2) init, batch 60). Saturation is the fraction of a layer's
pre-activations with |x| > 4 (sigmoid'(4) = 0.018) on the test set, per layer, at every
evaluation. The deep sigmoid network is where the network without BN should fail outright.

Scaled to 10,000 steps (36 runs, about 12 minutes on a 2-core CPU); full size:
`--config.steps=50000`.
"""
from bn_experiments.configs import default

SHALLOW, DEEP = (100,) * 3, (100,) * 10


def get_config(arg: str | None = None):
    config = default.sweep("activation_sweep", learning_rate=0.1)
    config.grid = (("model.activation", ("sigmoid", "tanh", "relu")), ("model.widths", (SHALLOW, DEEP)),
                   ("model.norm", ("none", "batchnorm")), ("seed", (0, 1, 2)))
    if arg == "quick":
        default.shrink(config)
        config.grid = (("model.activation", ("sigmoid",)), ("model.widths", (SHALLOW, DEEP)),
                       ("model.norm", ("none", "batchnorm")), ("seed", (0,)))
    return config

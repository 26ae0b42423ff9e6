"""Normalization inside vs outside the gradient step (Ioffe & Szegedy 2015, Sec. 2 and Sec. 3).

BN against BN whose batch mean and variance are constants to the gradient
(`model.bn_stop_gradient=True`): the same forward pass, a gradient that ignores how the
statistics depend on the parameters. Both with and without gamma/beta (`model.bn_affine`), since
without them nothing but the weights feeding BN can respond to the loss's demands on a layer's
scale and shift (the paper's Sec. 2 setting). The probe of
`bn_experiments.experiments.normalization_outside_gradient` records each BN layer's ||W||, the
batch mean and std of W u, and gamma and beta at every evaluation.

Setup: Figure 1's 3 x 100 sigmoid MLP with BN (batch 60, plain SGD at lr 0.1, N(0, 0.1^2) init),
3 seeds paired (same initial W and batch order), 10,000 steps with an evaluation every 500 (the
growth is read over the second half of training). Committed on the official MNIST
(`--config.data.source=idx:<folder with the four MNIST files>`).
"""
from bn_experiments.configs import default


def get_config(arg: str | None = None):
    config = default.sweep("normalization_outside_gradient", steps=10_000, eval_every=500,
                           learning_rate=0.1)
    config.model.norm = "batchnorm"
    return default.paired_seeds(config, arg, (("model.bn_stop_gradient", (False, True)),
                                              ("model.bn_affine", (True, False))))

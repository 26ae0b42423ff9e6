"""The loss landscape along the gradient, with and without BN (Santurkar et al. 2018, Sec. 3).

Santurkar et al. step from points along training in the gradient direction by 0.5 to 4 times the
learning rate and find, with BN, a markedly smaller range of the loss, more predictive gradients
and a smaller effective beta-smoothness. The probe of `bn_experiments.experiments.loss_landscape`
does the same at every evaluation, on 5 mini-batches of 60 training images (8 points on the line).

Setup: Figure 1's 3 x 100 MLP (batch 60, plain SGD at lr 0.1, N(0, 0.1^2) init) with sigmoid (the
paper's MNIST network) and ReLU (as in Santurkar et al.'s VGG), with and without BN, 3 seeds
paired, 4,000 steps with an evaluation every 100: 20 evaluations x 5 mini-batches = 100 landscape
points per phase (early: steps 100-2,000; late: 2,100-4,000) and run. Committed on the official
MNIST (`--config.data.source=idx:<folder with the four MNIST files>`).
"""
from bn_experiments.configs import default


def get_config(arg: str | None = None):
    config = default.sweep("loss_landscape", steps=4_000, eval_every=100, learning_rate=0.1)
    axes = (("model.activation", ("sigmoid", "relu")), ("model.norm", ("none", "batchnorm")))
    return default.paired_seeds(config, arg, axes, quick_axes=(("model.norm", ("none", "batchnorm")),))

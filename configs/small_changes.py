"""Small parameter changes are not amplified (Ioffe & Szegedy 2015, Sec. 3.3), measured by a probe.

The paper states that normalizing the activations throughout the network keeps small changes of
the parameters from growing into large changes of the activations and gradients. The probe of
`bn_experiments.experiments.small_changes` moves every weight matrix by eps = 1e-3 and 1e-2 of its
norm in a random direction (a fresh direction at every evaluation, the same for every run at that
step) and measures each layer's relative change of pre-activations and weight gradients on a
fixed batch of 60 training images, at init and at every evaluation of training.

Setup: Figure 1's 3 x 100 sigmoid MLP (batch 60, plain SGD at lr 0.1, N(0, 0.1^2) init), with and
without BN, 3 seeds paired (the same seed gives both arms the same initial W and batch order),
5,000 steps with an evaluation every 250 (20 points of training per run). Committed on the
official MNIST (`--config.data.source=idx:<folder with the four MNIST files>`).
"""
from bn_experiments.configs import default


def get_config(arg: str | None = None):
    config = default.sweep("small_changes", steps=5_000, eval_every=250, learning_rate=0.1)
    return default.paired_seeds(config, arg, (("model.norm", ("none", "batchnorm")),))

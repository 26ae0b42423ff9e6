"""BN's scale invariance (Ioffe & Szegedy 2015, Sec. 3.3), measured by a probe during training.

The paper's argument for why BN tolerates large learning rates: a BN layer's output does not
depend on the scale of the weights feeding it, BN(Wu) = BN((aW)u), its Jacobian with respect to
the layer input u is unchanged, and the gradient with respect to the rescaled weights is 1/a
times the original. The probe of `bn_experiments.experiments.scale_invariance` checks these three
identities at every evaluation of a real training run, on a fixed batch of 60 training images:
each hidden layer's W is rescaled by a in {0.1, 10} and the network's output, the gradient with
respect to the rescaled W (times a) and the gradient with respect to the input are compared with
the unscaled network's. Without BN the same rescaling changes all three, which is the contrast.

Setup: Figure 1's 3 x 100 sigmoid MLP (batch 60, plain SGD at lr 0.1, N(0, 0.1^2) init), with and
without BN, 5 seeds paired (the same seed gives both arms the same initial W and batch order),
5,000 steps with an evaluation every 500. Committed on the official MNIST
(`--config.data.source=idx:<folder with the four MNIST files>`); about a minute on a 2-core CPU.
"""
from bn_experiments.configs import default


def get_config(arg: str | None = None):
    config = default.get_config()
    config.experiment = "scale_invariance"
    config.steps = 5_000
    config.eval_every = 500
    config.learning_rate = 0.1
    config.target_accuracy = 0.9
    config.checkpoint_every = 0
    config.model.tracked_units = (0,)
    config.grid = (("model.norm", ("none", "batchnorm")), ("seed", (0, 1, 2, 3, 4)))
    if arg == "quick":
        default.shrink(config)
        config.checkpoint_every = 0
        config.grid = (("model.norm", ("none", "batchnorm")), ("seed", (0, 1)))
    return config

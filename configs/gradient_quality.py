"""Mini-batch gradient quality against batch size (Ioffe & Szegedy 2015, Sec. 1), by a probe.

The paper's motivation for mini-batches: the gradient over a mini-batch estimates the gradient
over the training set, better as the batch grows. The probe of
`bn_experiments.experiments.gradient_quality` measures it at fixed parameters, at init and at each
evaluation of a training run: the gradient over all 60,000 training images against mini-batch
gradients for m = 1, 2, 4, ..., 4096 (32 mini-batches each, fewer where 32 m > 60,000), giving
the relative error and the cosine similarity, with and without BN.

Setup: Figure 1's 3 x 100 sigmoid MLP (batch 60, plain SGD at lr 0.1, N(0, 0.1^2) init), with and
without BN, 3 seeds paired; 3,000 steps with an evaluation every 1,000, so the gradients are
measured at init and at three points of training (each measurement costs about 4 s per run).
The probe needs a training set of 60,000 images: committed on the official MNIST
(`--config.data.source=idx:<folder with the four MNIST files>`); `quick` uses `synthetic:60000`.
"""
from bn_experiments.configs import default


def get_config(arg: str | None = None):
    config = default.sweep("gradient_quality", steps=3_000, eval_every=1_000, learning_rate=0.1)
    config.checkpoint_every = 0
    config.grid = (("model.norm", ("none", "batchnorm")), ("seed", (0, 1, 2)))
    if arg == "quick":
        default.shrink(config)
        config.steps, config.eval_every, config.checkpoint_every = 100, 100, 0
        config.data.source = "synthetic:60000:500"
        config.grid = (("model.norm", ("none", "batchnorm")), ("seed", (0, 1)))
    return config

"""Is Wu + b "more Gaussian" than the layer input u? (Ioffe & Szegedy 2015, Sec. 3.2), by a probe.

The paper's reason for normalizing Wu + b rather than u: Wu + b is more likely symmetric, non-sparse
and "more Gaussian" than u, the output of another nonlinearity. The probe of
`bn_experiments.experiments.wu_gaussian` measures, for each hidden layer, the median |skewness|
and |excess kurtosis| over units and the share of exact zeros of u and of Wu (+ b without BN) on
a fixed batch of 1,000 training images, at every evaluation.

Setup: Figure 1's 3 x 100 MLP (batch 60, plain SGD at lr 0.1, N(0, 0.1^2) init) with sigmoid (the
paper's) and ReLU (whose outputs are sparse: the case the paper's argument is about), with and
without BN, 3 seeds, 5,000 steps with an evaluation every 500. Committed on the official MNIST
(`--config.data.source=idx:<folder with the four MNIST files>`).
"""
from bn_experiments.configs import default


def get_config(arg: str | None = None):
    config = default.sweep("wu_gaussian", steps=5_000, eval_every=500, learning_rate=0.1)
    axes = (("model.activation", ("sigmoid", "relu")), ("model.norm", ("none", "batchnorm")))
    return default.paired_seeds(config, arg, axes)

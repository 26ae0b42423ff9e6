"""The layer-Jacobian conjecture (Ioffe & Szegedy 2015, Sec. 3.3), measured by a probe.

The paper conjectures that BN leads the Jacobian between consecutive layers' normalized units to
have singular values close to 1. The probe of `bn_experiments.experiments.jacobian_spectrum`
computes that Jacobian for every example of a fixed batch of 60 training images (the batch
statistics held fixed, the paper's linearization) at init and at every evaluation, and
summarizes its singular values; without BN the same Jacobian is taken between pre-activations
standardized by their batch statistics, so both arms are measured on the same footing.

Setup: Figure 1's 3 x 100 sigmoid MLP (batch 60, plain SGD at lr 0.1, N(0, 0.1^2) init), with and
without BN, 3 seeds paired; 5,000 steps with an evaluation every 500. Committed on the official
MNIST (`--config.data.source=idx:<folder with the four MNIST files>`). Its other side, the
gradient growth across depth at init (Yang et al. 2019), is `configs/gradient_explosion.py`.
"""
from bn_experiments.configs import default


def get_config(arg: str | None = None):
    config = default.sweep("jacobian_spectrum", steps=5_000, eval_every=500, learning_rate=0.1)
    return default.paired_seeds(config, arg, (("model.norm", ("none", "batchnorm")),))

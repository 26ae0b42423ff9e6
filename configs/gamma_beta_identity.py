"""BN's gamma and beta can restore the identity (Ioffe & Szegedy 2015, Sec. 3), by a probe and an
ablation.

The probe of `bn_experiments.experiments.gamma_beta_identity` checks, at every evaluation of a
training run, that gamma = sqrt(Var[x] + eps), beta = E[x] turn each BN layer (and the whole
network) back into the un-normalized one, and measures how far the learned gamma and beta are
from those identity values. The ablation trains the same network with BN but without gamma and
beta (`model.bn_affine=False`), the paper's reason for having them.

Setup: Figure 1's 3 x 100 sigmoid MLP with BN (batch 60, plain SGD at lr 0.1, N(0, 0.1^2) init),
with and without gamma/beta, 3 seeds paired (same initial W and batch order); 10,000 steps with an
evaluation every 1,000. Committed on the official MNIST
(`--config.data.source=idx:<folder with the four MNIST files>`).
"""
from bn_experiments.configs import default


def get_config(arg: str | None = None):
    config = default.sweep("gamma_beta_identity", steps=10_000, eval_every=1_000,
                           learning_rate=0.1)
    config.model.norm = "batchnorm"
    return default.paired_seeds(config, arg, (("model.bn_affine", (True, False)),))

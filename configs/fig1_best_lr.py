"""Figure 1 with each network at its own best learning rate, chosen on a validation split.

Figure 1 (`configs/fig1_mnist.py`) runs both networks at one setting, calibrated on the paper's
no-BN curve (`configs/fig1_calibration.py`). A reviewer's objection: the network without BN might
just prefer another rate. So here both networks train over the same learning-rate grid (factors
of about 3, from 0.1 to 30, wide enough that neither network's best rate lies at an edge) at Figure 1's init std, 3 seeds each; each network's best rate is the
one with the highest mean validation accuracy at the end; and BN's claims ("faster", "higher
accuracy") are tested at those rates, paired by seed. Validation = 10,000 images held out of
MNIST's 60,000 training images; the test set is not used.

Scaled to 10,000 steps (about 12 epochs of the 50,000 remaining images; Figure 1 has 50,000) so the
36 runs take about 10 minutes on a 2-core CPU; full length: `--config.steps=50000`.
"""
from bn_experiments.configs import default, fig1_mnist

LEARNING_RATES = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0)


def get_config(arg: str | None = None):
    config = fig1_mnist.get_config()
    config.experiment = "fig1_best_lr"
    config.data.source = "validation:10000:mnist"
    config.steps = 10_000
    config.population_batches = 0
    config.runs = ()
    # The quantile-based ICS measures, which Figure 1 leaves out: the committed results were
    # made with them, and a rerun reproduces those files.
    config.ics_quantiles = True
    default.paired_seeds(config, arg, (("model.norm", ("none", "batchnorm")),
                                       ("learning_rate", LEARNING_RATES)),
                         quick_axes=(("model.norm", ("none", "batchnorm")),
                                     ("learning_rate", (0.1, 1.0))))
    if arg == "quick":
        config.eval_steps = ()
    return config

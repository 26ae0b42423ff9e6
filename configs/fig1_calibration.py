"""Figure 1's protocol, calibrated: the learning rate and init scale the paper does not give.

Ioffe & Szegedy (2015, Sec. 4.1) give the network (3 x 100 sigmoid, batch 60, 50,000 steps) but
neither the learning rate nor the std of the "small random Gaussian" weights, and the comparison
depends on both. The only numbers the paper offers are its curves: Figure 1(a)'s accuracy of the
network WITHOUT BN at about 4K, 10K, 20K and 40K steps (read off in FACTS.md). So this experiment
trains the network without BN over a small grid declared before any result (4 learning rates x 3
init stds, one seed, 40,000 steps), measures the accuracy on a validation split held out from the
training set (the test set stays unseen) at those steps, and picks the point whose curve is
closest to the paper's readings in least squares (`bn_experiments.experiments.fig1_calibration`).
Figure 1 (`configs/fig1_mnist.py`) then runs BN with exactly those settings.

Why this is fair to both sides: the choice looks only at the network without BN, and only at the
paper's own numbers for it; BN gets whatever setting best reproduces the paper's baseline, with no
tuning of its own. Whether BN also wins when each network gets its own best learning rate is
`configs/fig1_best_lr.py`.

Official MNIST (50,000 training / 10,000 validation images drawn from the 60,000). About 10 minutes
on a 2-core CPU.
"""
from bn_experiments.configs import default, fig1_mnist

LEARNING_RATES = (0.03, 0.05, 0.1, 0.2)
INIT_STDS = (0.1, 0.2, 0.3)


def get_config(arg: str | None = None):
    config = fig1_mnist.get_config()
    config.experiment = "fig1_calibration"
    config.data.source = "validation:10000:mnist"
    config.steps = 40_000
    config.eval_every = 2_000
    config.eval_steps = (1_000,)
    config.population_batches = 0
    config.checkpoint_every = 0
    config.runs = ()
    # The quantile-based ICS measures, which Figure 1 leaves out: the committed results were
    # made with them, and a rerun reproduces those files.
    config.ics_quantiles = True
    config.grid = (("model.norm", ("none",)), ("learning_rate", LEARNING_RATES),
                   ("model.init_std", INIT_STDS), ("seed", (0,)))
    if arg == "quick":
        default.shrink(config)
        config.checkpoint_every = 0
        config.eval_steps = ()
        config.grid = (("model.norm", ("none",)), ("learning_rate", (0.05, 0.1)),
                       ("model.init_std", (0.1,)), ("seed", (0,)))
    return config

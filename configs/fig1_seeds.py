"""Figure 1 over seeds 0, 1, 2: the `fig1_mnist` config, both runs, each with three seeds.

The same setup as `fig1_mnist` (3 x 100 sigmoid MLP, batch 60, 50,000 steps, lr 0.1, N(0, 0.1^2)
init); the three seeds of each norm share one vmapped program. The claims are Figure 1's, with
mean and spread over the seeds (Ioffe & Szegedy 2015, Sec. 4.1). About 6 minutes on a 2-core CPU.
"""
from bn_experiments.configs import default, fig1_mnist


def get_config(arg: str | None = None):
    config = fig1_mnist.get_config()
    config.experiment = "fig1_seeds"
    config.runs = ()
    config.grid = (("model.norm", ("none", "batchnorm")), ("seed", (0, 1, 2)))
    if arg == "quick":
        default.shrink(config)
    return config

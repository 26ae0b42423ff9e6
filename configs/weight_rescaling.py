"""Training from rescaled hidden weights, with and without BN (Ioffe & Szegedy 2015, Sec. 3.3;
bn_experiments/experiments/weight_rescaling.py).

Arms: `model.hidden_scale` a in {0.1, 1, 10} (every hidden layer's initial weights times a; the
output layer unchanged) x `model.norm` in {none, batchnorm}, on Figure 1's 3 x 100 sigmoid MLP
(batch 60, N(0, 0.1^2) init before the scaling), plain SGD at lr 0.5 for every arm (inside the
range where both networks train well at a = 1: the lr sweep), 3 paired seeds: a seed gives every
arm the same draw of the weights (then scaled) and the same batch order.

3,000 steps with evaluations at steps 10, 20, 50, 100, 200 and every 250 (the early phase is where
the scale matters most), on the official MNIST's test set (`--config.data.source=mnist`; nothing
is selected). The sweeps' probe records every layer's weight norm, hence the effective learning
rate lr / ||W||^2. A few minutes on a 2-core CPU. `quick`: a seconds-long smoke run.
"""
from bn_experiments.configs import default


def get_config(arg: str | None = None):
    config = default.get_config()
    config.experiment = "weight_rescaling"
    config.steps = 3_000
    config.eval_every = 250
    config.eval_steps = (10, 20, 50, 100, 200)
    config.learning_rate = 0.5
    config.target_accuracy = 0.95
    config.model.tracked_units = (0,)
    arms = (("model.norm", ("none", "batchnorm")), ("model.hidden_scale", (0.1, 1.0, 10.0)))
    default.paired_seeds(config, arg, arms, seeds=(0, 1, 2))
    if arg == "quick":
        config.eval_steps = (10, 20)
    return config

"""BN before the nonlinearity (on W u + b, the paper's choice) or after it (on the next layer's
input u), Ioffe & Szegedy (2015), Sec. 3.2 (bn_experiments/experiments/bn_position.py).

Arms: `model.bn_position` in {before, after} x `model.activation` in {sigmoid, relu}, on Figure
1's 3 x 100 MLP with BN (batch 60, plain SGD, N(0, 0.1^2) init), each arm at its own best learning
rate of {0.1, 0.3, 1, 3, 10} (chosen by the experiment on the training loss), 3 paired seeds (a
seed gives every arm the same initial W and batch order).

5,000 steps (6 epochs of the 50,000 training images), evaluated every 500 steps on a 10,000-image
validation split held out of the training set (`--config.data.source=validation:10000:mnist`).
About 10 minutes on a 2-core CPU. `quick`: a seconds-long smoke run.
"""
from bn_experiments.configs import default


def get_config(arg: str | None = None):
    config = default.get_config()
    config.experiment = "bn_position"
    config.steps = 5_000
    config.eval_every = 500
    config.target_accuracy = 0.97
    config.model.norm = "batchnorm"
    config.model.tracked_units = (0,)
    arms = (("model.bn_position", ("before", "after")), ("model.activation", ("sigmoid", "relu")),
            ("learning_rate", (0.1, 0.3, 1.0, 3.0, 10.0)))
    quick = (("model.bn_position", ("before", "after")), ("model.activation", ("sigmoid",)),
             ("learning_rate", (0.3, 1.0)))
    return default.paired_seeds(config, arg, arms, seeds=(0, 1, 2), quick_axes=quick)

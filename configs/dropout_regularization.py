"""BN and dropout as regularizers (Ioffe & Szegedy 2015, Sec. 3.4 and 4.2.1;
bn_experiments/experiments/dropout_regularization.py).

Arms (named runs, 5 paired seeds each: a seed gives every arm the same initial W and batch
order): Figure 1's 3 x 100 sigmoid MLP without BN, without BN + dropout 0.2, with BN, with BN +
dropout 0.2 (on every hidden layer's output, training only). Everything else is shared: batch 60,
plain SGD at lr 0.5 (the protocol of `internal_covariate_shift`), N(0, 0.1^2) init.

30,000 steps (30 epochs of MNIST's 60,000 training images, long enough to fit the training set),
evaluated at steps 100, 200, 500 and then every 1,000 on the official MNIST's test set
(`--config.data.source=mnist`; nothing is selected). About 5 minutes on a 2-core CPU. `quick`:
a seconds-long smoke run.
"""
from bn_experiments.configs import default

SEEDS = (0, 1, 2, 3, 4)
RATE = 0.2
ARMS = {"no_bn": "model.norm=none", "no_bn_dropout": f"model.norm=none, model.dropout={RATE}",
        "bn": "model.norm=batchnorm", "bn_dropout": f"model.norm=batchnorm, model.dropout={RATE}"}


def get_config(arg: str | None = None):
    config = default.get_config()
    config.experiment = "dropout_regularization"
    config.steps = 30_000
    config.eval_every = 1_000
    config.eval_steps = (100, 200, 500)
    config.learning_rate = 0.5
    config.target_accuracy = 0.97
    config.model.tracked_units = (0,)  # per-step percentiles of one unit: a smaller summary
    return default.named_arms(config, arg, ARMS, seeds=SEEDS, quick_eval_steps=(10, 20))

"""Whitening inside the gradient step vs BN's per-unit standardization (Ioffe & Szegedy 2015,
Sec. 2-3; bn_experiments/experiments/whitening_cost.py).

Arms (named runs, 5 paired seeds each: a seed gives every arm the same initial W and batch
order), on Figure 1's 3 x 100 sigmoid MLP (batch 60, plain SGD at lr 0.5, N(0, 0.1^2) init):
BN; group whitening (`model.bn_whiten_group=20`: each layer's 100 units in five groups of 20,
each ZCA-whitened from the batch, as decorrelated BN does with groups smaller than the batch);
full whitening (`model.bn_whiten_group=100`: the whole layer from 60 examples); and the control,
full whitening from batches of 200 (wider than the layer: covariances of full rank; everything
else equal, the same lr). The probe records
the operations of a training step of each arm's network at widths 100-1600.

5,000 steps with the early phase resolved by evaluations at steps 10, 20, 50, 100, 200, 300, 400,
then every 500, on the official MNIST's test set (`--config.data.source=mnist`; nothing is
selected): the protocol of `internal_covariate_shift` and `lp_normalization`. About 6 minutes
on a 2-core CPU. `quick`: a seconds-long smoke run.
"""
from bn_experiments.configs import default

SEEDS = (0, 1, 2, 3, 4)
ARMS = {"bn": "model.bn_whiten_group=0", "group": "model.bn_whiten_group=20",
        "full": "model.bn_whiten_group=100",
        "full_batch200": "model.bn_whiten_group=100, batch_size=200"}


def get_config(arg: str | None = None):
    config = default.get_config()
    config.experiment = "whitening_cost"
    config.steps = 5_000
    config.eval_every = 500
    config.eval_steps = (10, 20, 50, 100, 200, 300, 400)
    config.learning_rate = 0.5
    config.target_accuracy = 0.95
    config.population_batches = 0  # Algorithm 2 has no covariance counterpart
    config.model.norm = "batchnorm"
    config.model.tracked_units = (0,)  # per-step percentiles of one unit: a smaller summary
    return default.named_arms(config, arg, ARMS, seeds=SEEDS)

"""lp normalizations against BN (Santurkar et al. 2018, Sec. 3.3;
bn_experiments/experiments/lp_normalization.py).

Arms (named runs, 5 paired seeds each: a seed gives every arm the same initial W and batch
order): no normalization, BN (`model.bn_norm_p=l2`), l1 and l-inf normalization (the centred
batch divided by its mean or largest absolute deviation), on Figure 1's 3 x 100 sigmoid MLP
(batch 60, plain SGD at lr 0.5, N(0, 0.1^2) init): the protocol of `internal_covariate_shift`,
whose probe measures the distributional shift of every hidden layer in training mode.

5,000 steps with the early phase resolved by evaluations at steps 10, 20, 50, 100, 200, 300, 400,
then every 500, on the official MNIST's test set (`--config.data.source=mnist`; nothing is
selected). About 10 minutes on a 2-core CPU. `quick`: a seconds-long smoke run.
"""
from bn_experiments.configs import default

SEEDS = (0, 1, 2, 3, 4)


def get_config(arg: str | None = None):
    config = default.get_config()
    config.experiment = "lp_normalization"
    config.steps = 5_000
    config.eval_every = 500
    config.eval_steps = (10, 20, 50, 100, 200, 300, 400)
    config.learning_rate = 0.5
    config.target_accuracy = 0.95
    config.model.tracked_units = (0,)
    arms = {"none": "model.norm=none"}
    arms.update({p: f"model.norm=batchnorm, model.bn_norm_p={p}" for p in ("l2", "l1", "linf")})
    return default.named_arms(config, arg, arms, seeds=SEEDS)

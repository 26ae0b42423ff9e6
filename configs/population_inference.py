"""Inference with population statistics against mini-batch statistics (Ioffe & Szegedy 2015,
Sec. 3.1, Algorithm 2; bn_experiments/experiments/population_inference.py).

Arms (named runs, 5 paired seeds each): Figure 1's 3 x 100 sigmoid MLP with BN (plain SGD,
N(0, 0.1^2) init) at batch 60 (lr 0.5, the protocol of `internal_covariate_shift`) and at batch
8 (lr 0.5 x 8/60, the same learning rate per example), where a mini-batch's statistics are
noisy. The probe evaluates each network on the test set with mini-batch statistics, with its
moving averages and with Algorithm 2's population statistics (from 6,000 training images).

5,000 steps with evaluations at steps 10, 20, 50, 100, 200, 300, 400, then every 500, on the
official MNIST's test set (`--config.data.source=mnist`; nothing is selected). About 2 minutes
on a 2-core CPU. `quick`: a seconds-long smoke run.
"""
from bn_experiments.configs import default

SEEDS = (0, 1, 2, 3, 4)
BATCHES = {60: 0.5, 8: 0.5 * 8 / 60}


def get_config(arg: str | None = None):
    config = default.get_config()
    config.experiment = "population_inference"
    config.steps = 5_000
    config.eval_every = 500
    config.eval_steps = (10, 20, 50, 100, 200, 300, 400)
    config.learning_rate = 0.5
    config.target_accuracy = 0.95
    config.model.norm = "batchnorm"
    config.model.tracked_units = (0,)  # per-step percentiles of one unit: a smaller summary
    arms = {f"batch{b}": f"batch_size={b}, learning_rate={lr!r}" for b, lr in BATCHES.items()}
    return default.named_arms(config, arg, arms, seeds=SEEDS)

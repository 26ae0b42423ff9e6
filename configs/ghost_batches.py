"""BN's mini-batch noise dialled by the batch its statistics come from: ghost batches of one SGD
batch, i.e. per-device statistics of data-parallel training (Ioffe & Szegedy 2015, Sec. 3.4 and
4.2; Hoffer et al. 2017).

Arms: Figure 1's 3 x 100 sigmoid MLP on batches of 512, without BN and with BN whose statistics
come from ghost batches of m = 512 (the whole batch: synchronized statistics), 128, 32 and 8
(`data_parallel.ghost_batches` = 1, 4, 16, 64: what per-device statistics on that many devices
compute, tests/test_data_parallel.py). Everything else is shared: plain SGD at lr 1.0 (inside the
range where both networks train well at this batch: fig1_best_lr found 3 best for both at batch
60, and a batch 8.5 times larger averages its gradient noise away, not its scale), N(0, 0.1^2)
init, 5 paired seeds (a seed gives every arm the same initial W and batch order).

Schedule: 6,000 steps of 512 (about 51 epochs of MNIST's 60,000 training images, long enough for
the networks to fit the training set and show a gap), evaluated every 500 with early evaluations
at 50, 100, 200 (steps to the target 0.97 test accuracy). The probe measures, at every
evaluation, the inference-mode loss on 10,000 training examples and the output noise at every m
(bn_experiments/experiments/ghost_batches.py).

Committed on the official MNIST (`--config.data.source=mnist`), evaluated on its test set:
nothing is selected here, so no validation split is needed. About 15 minutes on a 2-core CPU.
`quick`: a seconds-long smoke run.
"""
from bn_experiments.configs import default

GHOSTS = (1, 4, 16, 64)
SEEDS = (0, 1, 2, 3, 4)


def get_config(arg: str | None = None):
    config = default.get_config()
    config.experiment = "ghost_batches"
    config.steps = 6_000
    config.eval_every = 500
    config.eval_steps = (50, 100, 200)
    config.batch_size = 512
    config.learning_rate = 1.0
    config.target_accuracy = 0.97
    config.model.tracked_units = (0,)
    arms = {"no_bn": "model.norm=none"}
    arms.update({f"bn_m{512 // g}": f"model.norm=batchnorm, data_parallel.ghost_batches={g}"
                 for g in GHOSTS})
    if arg == "quick":
        config.target_accuracy = 0.5
    return default.named_arms(config, arg, arms, seeds=SEEDS, quick_eval_steps=())

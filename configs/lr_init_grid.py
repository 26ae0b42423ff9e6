"""Learning rate x init scale, with seeds: does BN "remove the need to tune the learning rate and
the initialization together" (Ioffe & Szegedy 2015, abstract: "be less careful about
initialization"), and does it keep the sigmoid's inputs out of saturation where a large init puts
them (Sec. 1)?

Grid: 4 learning rates (0.5 to 32, steps of 4x: at the paper-like init std 0.1 the network
without BN trains best near 2-4 and fails from about 11, with BN best near 4 and failing from
about 45; see lr_sweep) x 5 Gaussian init stds (1e-3 to 10, a decade apart; from 1 up, the
sigmoid's inputs without BN start deep in its tails) x {no BN, BN} x seeds 0-4 (5 seeds: "less
careful about initialization" is a headline claim of the abstract), on Figure 1's 3 x 100 sigmoid
MLP (plain SGD, batch 60). Each arm is compared at its own best learning rate for each init std
and seed, chosen on the validation split: the claim is whether BN trains over more init scales
when both arms are tuned, not whether it wins at a learning rate that suits it. This experiment
replaces the former init_sweep (init std alone at learning rate 0.1, decided by an untuned
baseline).

Committed on the official MNIST with 10,000 training images held out for validation
(`--config.data.source=validation:10000:idx:../shared/data/mnist`). Scaled to 1,500 steps (200
runs; 16 minutes measured on a 2-core CPU shared with other work); full size:
`--config.steps=50000`. At this budget a run that starts on a plateau (tiny init without BN) may
still be climbing at the end; the claim is read at this budget.
"""
from bn_experiments.configs import default

LEARNING_RATES = (0.5, 2.0, 8.0, 32.0)
INIT_STDS = (0.001, 0.01, 0.1, 1.0, 10.0)
SEEDS = (0, 1, 2, 3, 4)


def get_config(arg: str | None = None):
    config = default.sweep("lr_init_grid", steps=1_500, eval_every=500)
    config.checkpoint_every = 0
    config.grid = (("model.norm", ("none", "batchnorm")), ("learning_rate", LEARNING_RATES),
                   ("model.init_std", INIT_STDS), ("seed", SEEDS))
    # Two programs per arm, 50 runs vmapped together in each.
    config.points_per_program = 50
    if arg == "quick":
        default.shrink(config)
        config.checkpoint_every = 0
        config.grid = (("model.norm", ("none", "batchnorm")), ("learning_rate", (0.5, 8.0)),
                       ("model.init_std", (0.001, 0.1, 3.0)), ("seed", (0, 1)))
    return config

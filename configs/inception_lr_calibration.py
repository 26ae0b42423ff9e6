"""The base learning rate of configs/inception_variants.py, chosen on a validation split.

Ioffe & Szegedy (2015, Sec. 4.2) give the plain Inception a learning rate tuned for it (0.0015 on
ImageNet) and express every BN variant's as a multiple of it (x1, x5, x30). Here the same: the
"Inception" variant (no BN) at each learning rate of a grid fixed before looking at any result,
trained exactly as in the variants' table, 2 seeds, evaluated on 2,000 images held out from the
MNIST training set (`--config.data.source=validation:2000:idx:<MNIST folder>`: the test set is not
looked at). Rule, fixed in advance: the learning rate with the highest mean (over seeds) of the
best validation accuracy over the run; ties within 0.002 go to the smaller rate. The winner is
`BASE_LR` in configs/inception_variants.py (`choose` applies the rule to the runs); the
paper's multipliers are kept as they are.

7 minutes on the shared 2-core CPU (414 s). Results: results/inception_variants/calibration.
"""
from bn_experiments.configs import default, inception_variants

LEARNING_RATES = (0.003, 0.01, 0.03, 0.1)
TIE = 0.002  # mean best validation accuracies closer than this are a tie: the smaller rate wins


def choose(runs: list[dict]) -> float:
    """The rule above, applied to the runs of the calibration's summary.json."""
    best: dict[float, list[float]] = {}
    for run in runs:
        acc = run["final"].get("max_test_accuracy")  # the validation split is the "test" split
        best.setdefault(run["config"]["learning_rate"], []).append(acc if acc is not None else 0.0)
    means = {lr: sum(v) / len(v) for lr, v in best.items()}
    top = max(means.values())
    return min(lr for lr, m in means.items() if m >= top - TIE)


def get_config(arg: str | None = None):
    config = inception_variants.base("inception_lr_calibration")
    config.eval_every = 100
    config.grid = (("learning_rate", LEARNING_RATES), ("seed", (0, 1)))
    if arg == "quick":
        default.shrink(config)
        config.steps, config.eval_every, config.checkpoint_every = 40, 20, 0
        config.grid = (("learning_rate", LEARNING_RATES[:2]), ("seed", (0,)))
    return config

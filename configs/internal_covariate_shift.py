"""Internal covariate shift under both definitions, with Santurkar et al.'s noisy BN (Sec. 2.1).

The title claim of Ioffe & Szegedy (2015): BN reduces internal covariate shift (ICS), the change of
a layer's input distribution caused by the layers below it. Santurkar et al. (2018) measure ICS by
gradients instead (their Def. 2.1) and train a "noisy BN" network whose layer inputs shift more.
The probe of `bn_experiments.experiments.internal_covariate_shift` measures, at every evaluation,
in training mode (each mini-batch of 60 normalized with its own statistics) on 10 fixed batches of
60 training images: the distributional shift of each hidden layer's pre-activation since the
previous evaluation (scale-free W1 and KS) and its input-induced part (the layer held at its old
parameters, fed what the new layers below produce), and the gradient ICS of every weight layer.

Arms (the 3 x 100 sigmoid MLP of Fig. 1, model.norm x model.bn_noise): standard, BN, noisy BN,
standard + the same noise (applied to W u + b, where noisy BN applies it). 5 seeds paired (a seed
gives every arm the same initial W and batch order): ICS is the paper's title claim.

Schedule. 5,000 steps (5 epochs of the official MNIST at batch 60). The early phase (the initial
transient) is resolved by extra evaluations at steps 10, 20, 50, 100, 200, 300, 400 and 500 (8
intervals), the late phase by one every 500 steps after (9 intervals). Every evaluation measures
10 batches of 60: the gradient ICS is averaged over 80 (early) and 90 (late) (evaluation, batch)
measurements, each a full Def. 2.1 measurement at one step; the distributional shift of each
interval pools the 600 examples per unit. Why not more evaluations: on a 2-core CPU an evaluation
of five runs costs about 5 s (the 10,000 test images and the trainer's own per-unit test-set
quantiles, plus this probe), so the 50-plus measurements per phase come from the batches, and
the committed run stays near 10 minutes.

Learning rate 0.5 (N(0, 0.1^2) init, plain SGD), the same for every arm: ICS is a change per
interval, so it grows with the step size and must be compared at one rate. 0.5 lies inside the
range where both the network without BN and the one with BN train well (the lr sweep: 0.3 to 3),
so neither arm is measured at a rate that stalls it. `--config.learning_rate=X` changes it.

Committed on the official MNIST (`--config.data.source=idx:<folder with the four MNIST files>`);
about 10 minutes on a 2-core CPU (5 seeds x 4 arms). `quick` is a seconds-long smoke run.
"""
from bn_experiments.configs import default


def get_config(arg: str | None = None):
    config = default.get_config()
    config.experiment = "internal_covariate_shift"
    config.steps = 5_000
    config.eval_every = 500
    config.eval_steps = (10, 20, 50, 100, 200, 300, 400)
    config.learning_rate = 0.5
    config.target_accuracy = 0.95
    config.model.tracked_units = (0,)
    arms = (("model.norm", ("none", "batchnorm")), ("model.bn_noise", (False, True)))
    default.paired_seeds(config, arg, arms, seeds=(0, 1, 2, 3, 4))
    if arg == "quick":
        config.eval_steps = (10, 20, 30, 40)
    return config

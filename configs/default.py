"""Every field a training config may set, with its default. Experiments override a few of them.

A config file's `get_config(arg)` returns an `ml_collections.ConfigDict`; fields are overridden
from the command line as `--config.learning_rate=0.1` or `--config.model.norm=batchnorm`. Keys not
in this file (or, for `model.`, not in the chosen model family's section) are rejected (with a
did-you-mean) before anything is compiled.
"""
import ml_collections

from bn_experiments import models


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    # Name of the experiment: selects its claims and figures; results go to results/<experiment>.
    config.experiment = "default"
    # Number of SGD updates. Step k is the state after k updates.
    config.steps = 50_000
    # Examples per mini-batch (the paper's MNIST experiment uses 60).
    config.batch_size = 60
    # Base learning rate of SGD (multiplied by the schedule).
    config.learning_rate = 0.5
    # Seeds parameter init, batch order and noise. Same config + seed = same numbers.
    config.seed = 0
    # Evaluate on the test split every this many steps (and at step 0). Must divide `steps`.
    config.eval_every = 500
    # Extra evaluation steps before the regular ones, to resolve the early phase of training
    # (e.g. (50, 100, 200) with eval_every=500). Those at or beyond `steps` are left out.
    config.eval_steps = ()
    # steps_to_target = first evaluated step whose test accuracy reaches this.
    config.target_accuracy = 0.95
    # Algorithm 2: also evaluate BN runs at the end with population statistics from this many
    # training mini-batches (0 = off). Reported beside the moving-average result.
    config.population_batches = 0
    # A unit counts as saturated when |pre-activation| exceeds this (sigmoid'(4) = 0.018).
    config.saturation_threshold = 4.0
    # Internal covariate shift at every evaluation, per hidden layer: the shifts of each unit's
    # test-set mean and std since the previous evaluation, and (True) of its whole distribution,
    # from 32 quantiles (ics_w1, ics_p50_shift). The quantiles sort every unit's test-set
    # values: most of an evaluation's time (~85 of ~150 ms for Figure 1's 5 seeds on one core).
    config.ics_quantiles = True
    # Named runs, each "name: key=value, key=value" overriding fields of this config.
    # Empty: a single run named after the experiment.
    config.runs = ()
    # A sweep: ((key, (value, ...)), ...) over dotted keys; every point of the cartesian product
    # is a run named "key=value,key=value". A config sets either `runs` or `grid`.
    config.grid = ()
    # Save the full training state every this many steps (a multiple of eval_every; 0 = never),
    # so `bn-exp run` on the same workdir resumes a killed run to the same numbers.
    config.checkpoint_every = 10_000
    # Runs that differ only in numbers (learning rate, init scale, seed, momentum) are trained
    # together as one vmapped program, this many at a time.
    config.points_per_program = 16

    # The model, from the registry bn_experiments.models (each field's comment is where it is
    # defined): model.name picks the family ("mlp", the paper's fully connected network); the
    # fields every family shares are models.common_fields() (activation, norm, init, init_std,
    # tracked_units, bn_momentum, bn_epsilon), the family's own are its fields() (the MLP's:
    # widths, default (100, 100, 100)). --config.model.name=NAME swaps in NAME's own fields.
    config.model = models.default_config(models.DEFAULT)

    config.data = ml_collections.ConfigDict()
    # mnist_embedded (10,000 real MNIST digits shipped in the package) | idx:<dir> | tfds:<name> |
    # synthetic.
    config.data.source = "mnist_embedded"
    # Subtract the training mean pixel and divide by its std (the raw [0, 1] pixels otherwise).
    config.data.standardize = False
    # Input transform with statistics of the training split (bn_experiments.transforms): none |
    # standardize (per pixel) | pca | zca (whitened). Not together with `standardize`.
    config.data.whiten = "none"

    config.optimizer = ml_collections.ConfigDict()
    # SGD momentum (0 = plain SGD).
    config.optimizer.momentum = 0.0
    # constant | cosine (decay to 0 over `steps`) | exponential (times decay_rate every
    # decay_steps steps, smoothly: decay_rate ** (step / decay_steps)).
    config.optimizer.schedule = "constant"
    # schedule=exponential: steps per factor decay_rate (GoogLeNet: 0.96 every 8 epochs).
    config.optimizer.decay_steps = 1000
    config.optimizer.decay_rate = 0.96
    # L2 regularization: loss + weight_decay / 2 * ||w||^2 on the weights (not biases, not BN's
    # gamma and beta), as a gradient term before momentum. 0 = none.
    config.optimizer.weight_decay = 0.0

    # Data-parallel training (bn_experiments.data_parallel): each run's batch split over this
    # many devices of every process (1: one device; 0: every device), parameters replicated,
    # gradients averaged. Runs that span devices train one at a time.
    config.data_parallel = ml_collections.ConfigDict()
    config.data_parallel.devices = 1
    # BN statistics synchronized across the devices (those of the whole batch, as on one device)
    # instead of each device's own shard (what the paper's distributed training did).
    config.data_parallel.bn_sync = False
    # On one device: BN statistics of this many equal slices of each batch ("ghost batches",
    # Hoffer et al. 2017), i.e. what per-device statistics on that many devices compute.
    config.data_parallel.ghost_batches = 1

    if arg == "quick":
        shrink(config)
    return config


def sweep(experiment: str, *, steps: int = 10_000, eval_every: int = 500,
          learning_rate: float | None = None) -> ml_collections.ConfigDict:
    """The base of the sweeps: a reduced step budget (each sweep must fit in about an hour on a
    2-core CPU), target test accuracy 0.90 (reachable within it), one tracked unit."""
    config = get_config()
    config.experiment = experiment
    config.steps = steps
    config.eval_every = eval_every
    config.target_accuracy = 0.90
    config.model.tracked_units = (0,)
    if learning_rate is not None:
        config.learning_rate = learning_rate
    return config


def shrink(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A seconds-long smoke run of the same experiment: for tests, notebooks and CI."""
    config.steps = 200
    config.eval_every = 50
    config.checkpoint_every = 100
    config.population_batches = min(config.population_batches, 4)
    # Marks the run as a smoke run: summary.json says `"smoke": true`, its claims give no verdict
    # and `bn-exp report` leaves it out of the ledger (bn_experiments.config.SMOKE_KEY).
    config.smoke = True
    return config


def paired_seeds(config: ml_collections.ConfigDict, arg: str | None, axes: tuple, *,
                 seeds: tuple = (0, 1, 2), quick_axes: tuple | None = None
                 ) -> ml_collections.ConfigDict:
    """The shape most probe experiments share: a grid of `axes` x `seeds` (arms paired by seed),
    no checkpoints (each run takes minutes); `arg == "quick"` shrinks it to a smoke run over
    `quick_axes` (default `axes`) and two seeds."""
    config.checkpoint_every = 0
    config.grid = (*axes, ("seed", tuple(seeds)))
    if arg == "quick":
        shrink(config)
        config.checkpoint_every = 0
        config.grid = (*(axes if quick_axes is None else quick_axes), ("seed", (0, 1)))
    return config


def named_arms(config: ml_collections.ConfigDict, arg: str | None, arms: dict[str, str], *,
               seeds: tuple = (0, 1, 2, 3, 4), quick_eval_steps: tuple = (10, 20, 30, 40)
               ) -> ml_collections.ConfigDict:
    """The shape of the named-run experiments: for every arm (name -> its overrides) and seed, a
    run `<arm>_seed<s>: <overrides>, seed=<s>` (arms paired by seed), no checkpoints;
    `arg == "quick"` shrinks it to a smoke run of two seeds evaluated at `quick_eval_steps`."""
    config.checkpoint_every = 0
    if arg == "quick":
        shrink(config)
        config.checkpoint_every = 0
        config.eval_steps = tuple(quick_eval_steps)
        seeds = (0, 1)
    config.runs = tuple(f"{arm}_seed{s}: {override}, seed={s}"
                        for arm, override in arms.items() for s in seeds)
    return config

"""A training run as one compiled program: `lax.scan` over SGD steps, chunked between evaluations.

`make_program(static, data, probe)` returns pure functions of (numbers, carry): the learning rate,
SGD momentum, init scale and seed are arrays inside the program, so one compiled program serves
every run of the same shape, and `jax.vmap` over them trains a whole grid at once
(bn_experiments.sweep).

The trainer knows no model: it gets the family by name from the registry (`models.get(
static.model_name)`) and relies only on the family contract (bn_experiments.models): `init`,
`apply` returning the input of every nonlinearity and of every BN layer, the BN state list. So a
new model family trains, evaluates, gets Algorithm 2 and probes with nothing changed here.

Metrics of every step (training loss, the 15/50/85th percentiles of tracked units' input to the
nonlinearity, as the paper's Figure 1(b, c) draws them) come out of the compiled step itself.
Every evaluation measures the test set and, when the experiment has a `probe`
(bn_experiments.probe), the probe's quantities on a fixed batch of training examples: compiled
into `evaluate`, never touching the training state, so the trajectory is the same with or without.

Divergence. A step whose loss or gradients are non-finite freezes the run: its state stops
changing, `diverged_at` records the step, and its later metrics are NaN (written as null). With
finite parameters, a finite learning rate and finite gradients, the SGD update can only make the
parameters non-finite by overflowing float32 (|lr * grad| > 3e38); such a step is caught one step
later, by its non-finite loss. `Program.chunk` checks this at every step. Checking every step costs
~15% of a CPU step (a pass over the gradients plus the freeze), for an event that happens at most
once per run, so the runner trains each chunk optimistically (`chunk_runner`): `fast_chunk` runs
the same steps without the per-step check and then checks once that every loss of the chunk and
every final parameter is finite. That check is exact: a non-finite gradient makes its parameter
non-finite, and a non-finite parameter stays non-finite under SGD (NaN and inf absorb finite
updates), so "all finite at the end" means no step of the chunk would have frozen, and both
functions give the same bits (tested). Only when it fails is the chunk replayed, from its start,
with the per-step check.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bn_experiments import data as data_lib
from bn_experiments import models, quantiles
from bn_experiments.config import Numbers, Static
from bn_experiments.probe import Probe, ProbeInputs

PERCENTILES = (15.0, 50.0, 85.0)
# Quantile levels of each unit's test-set pre-activation kept at every evaluation, for the
# 1-Wasserstein distance between consecutive evaluations (W1 = mean |Q_t(u) - Q_s(u)| over u).
ICS_LEVELS = tuple((i + 0.5) / 32 for i in range(32))
ICS_MAX_ROWS = 16_384  # conv layers: rows (example, position) the ICS quantiles sample
# fold_in constants of the run's data key: the batches of Algorithm 2, the fixed probe batch.
_POPULATION_SALT, _PROBE_SALT = 2**31 - 1, 2**31 - 2
NUMBER_FIELDS = tuple(f.name for f in dataclasses.fields(Numbers))
_STATE = ("params", "bn_state", "opt_state")  # what a step updates (and a divergence freezes)
_RANK_MAX = 256  # batches up to this size take percentiles from pairwise ranks, larger ones sort


class Program(NamedTuple):
    """Pure functions of one run; `jax.jit` them, or `jax.vmap` then jit for a sweep."""
    init: Callable[[dict], dict]                      # numbers -> carry
    # (carry, numbers, length=eval_every) -> carry, per-step metrics: `length` SGD steps (a static
    # Python int: each distinct length is its own compiled scan).
    chunk: Callable[..., tuple[dict, dict]]
    # (carry, numbers, length=eval_every) -> carry, per-step metrics, replay: `chunk` without the
    # per-step divergence check; where `replay` is True the result is not valid and `chunk` must
    # be run instead.
    fast_chunk: Callable[..., tuple[dict, dict, jax.Array]]
    # (carry, numbers, prev) -> test metrics (running statistics), and the probe's under "probe";
    # `prev` = {"params", "bn_state", "step"} of the previous evaluation (the probe's
    # `prev_params`, `prev_state`, `prev_step`; at step 0 the carry's own). A probe with a memo
    # returns it under "probe_memo": the caller puts it in the carry for the next evaluation.
    evaluate: Callable[..., dict]
    evaluate_population: Callable[[dict], dict]       # carry -> test metrics (Algorithm 2)


def numbers_to_arrays(numbers: Numbers) -> dict:
    """The dynamic numbers as float32/int32 scalars (the program's dynamic inputs)."""
    return {k: jnp.asarray(getattr(numbers, k), jnp.int32 if k == "seed" else jnp.float32)
            for k in NUMBER_FIELDS}


def _optimizer(static: Static) -> optax.GradientTransformation:
    # Learning rate and momentum are hyperparameter arrays in the optimizer state: set per run.
    # Without momentum there is no trace buffer to update every step (~7% of a CPU step).
    momentum = 0.0 if static.use_momentum else None
    if not static.weight_decay:
        return optax.inject_hyperparams(optax.sgd)(learning_rate=1.0, momentum=momentum)

    def sgd_l2(learning_rate, momentum):
        # L2 regularization (loss + weight_decay / 2 * ||w||^2) on the weights only: the gradient
        # of every "w"/"depthwise" leaf gets weight_decay * w before momentum and learning rate;
        # biases and BN's gamma and beta are not decayed.
        return optax.chain(optax.add_decayed_weights(static.weight_decay, mask=_weights_mask),
                           optax.sgd(learning_rate, momentum))
    return optax.inject_hyperparams(sgd_l2)(learning_rate=1.0, momentum=momentum)


def _weights_mask(params: Any) -> Any:
    return jax.tree_util.tree_map_with_path(
        lambda path, _: getattr(path[-1], "key", None) in ("w", "depthwise"), params)


def _schedule(static: Static) -> Callable[[jax.Array], jax.Array]:
    if static.schedule == "cosine":
        return optax.cosine_decay_schedule(1.0, static.steps)
    if static.schedule == "exponential":  # decay_rate ** (step / decay_steps), not staircased
        return optax.exponential_decay(1.0, static.decay_steps, static.decay_rate)
    return lambda step: jnp.ones((), jnp.float32)


def _all_finite(tree: Any) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def chunk_runner(program: Program, batched: bool = False) -> Callable[[dict, dict],
                                                                      tuple[dict, dict]]:
    """`program.chunk` as the runner calls it: jitted (vmapped when `batched`), optimistic.

    Runs the jitted `fast_chunk`; if any run needs it, runs the jitted `chunk` from the same start
    instead (compiled on first use). Either way the result is `program.chunk`'s, bit for bit. The
    caller's carry is not donated: it is the replay's starting point.
    """
    wrap = jax.vmap if batched else (lambda f: f)
    compiled: dict[int | None, tuple[Callable, Callable]] = {}

    def jitted(length: int | None) -> tuple[Callable, Callable]:
        # One pair of jitted functions per chunk length (a static scan length).
        if length not in compiled:
            bind = (lambda f: f) if length is None else (
                lambda f: lambda c, n: f(c, n, length=length))
            compiled[length] = (jax.jit(wrap(bind(program.fast_chunk))),
                                jax.jit(wrap(bind(program.chunk))))
        return compiled[length]

    def run(carry: dict, numbers: dict, length: int | None = None) -> tuple[dict, dict]:
        fast, checked = jitted(length)
        out, metrics, replay = fast(carry, numbers)
        if bool(np.any(jax.device_get(replay))):
            return checked(carry, numbers)
        return out, metrics

    return run


def _cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def tracked_percentiles(preacts: jax.Array, units: tuple[int, ...]) -> jax.Array:
    """(3, len(units)): the 15/50/85th percentiles over the batch of each tracked unit.

    Bit-for-bit `jnp.percentile` (linear interpolation; NaN if a unit has a NaN). A batch of up to
    `_RANK_MAX` rows takes its order statistics from ranks (all pairwise comparisons, ties broken
    by position) instead of sorting: on a CPU, a sort of 60 values is ~5% of a training step.
    """
    z = preacts[:, jnp.asarray(units)]
    n = z.shape[0]
    if n > _RANK_MAX:
        return jnp.percentile(z, jnp.asarray(PERCENTILES), axis=0)
    # Positions and weights of linear interpolation, in float32 exactly as jnp.percentile gets them
    # under jit; a test holds the two bit-equal.
    low, high, low_w, high_w = quantiles.interpolation(quantiles.percentile_levels(PERCENTILES), n)
    key = jnp.where(z == 0, jnp.zeros_like(z), z)  # -0 and 0 compare equal, as in lax.sort
    pos = jnp.arange(n)
    before = (key[None, :, :] < key[:, None, :]) | (
        (key[None, :, :] == key[:, None, :]) & (pos[None, :, None] < pos[:, None, None]))
    rank = jnp.sum(before, axis=1, dtype=jnp.int32)  # (n, units): position in sorted order

    def order_stat(k: np.ndarray) -> jax.Array:  # (3,) positions -> (3, units) values
        hit = rank[None] == jnp.asarray(k, jnp.int32)[:, None, None]
        return jnp.min(jnp.where(hit, z[None], jnp.inf), axis=1)

    out = order_stat(low) * low_w[:, None] + order_stat(high) * high_w[:, None]
    return jnp.where(jnp.any(jnp.isnan(z), axis=0), jnp.nan, out)


def ics_drift(prev: dict, now: dict) -> dict:
    """Internal covariate shift between two evaluations, per hidden layer (lists of scalars).

    Each statistic is taken per unit over the whole test set, then averaged over the layer's
    units: `ics_w1` the 1-Wasserstein distance between the unit's pre-activation distributions,
    `ics_mean_shift` / `ics_std_shift` / `ics_p50_shift` the absolute change of its mean, std and
    median. This is the paper's notion (Ioffe & Szegedy, Sec. 2: the distribution of each layer's
    inputs changes as the parameters of the layers below change), measured directly.
    Without quantiles (a config with `ics_quantiles=False`) only the mean and std shifts.
    """
    mid = len(ICS_LEVELS) // 2
    shift = lambda a, b: jnp.mean(jnp.abs(a - b))  # noqa: E731
    out = {"ics_mean_shift": [shift(a, b) for a, b in zip(prev["mean"], now["mean"])],
           "ics_std_shift": [shift(a, b) for a, b in zip(prev["std"], now["std"])]}
    if "quantiles" in now:
        pairs = list(zip(prev["quantiles"], now["quantiles"]))
        out["ics_w1"] = [shift(a, b) for a, b in pairs]
        out["ics_p50_shift"] = [shift(a[mid - 1:mid + 1].mean(0), b[mid - 1:mid + 1].mean(0))
                                for a, b in pairs]
    return out  # (key order: jit returns a dict's keys sorted)


# float32(k) / float32(255) as numpy (and data.py) computes it; XLA would multiply by 1/255 instead.
_PIXELS = np.arange(256, dtype=np.uint8).astype(np.float32) / np.float32(255.0)


def _as_uint8(x: jax.Array) -> jax.Array | None:
    """`x` as uint8 when every value is exactly a raw pixel k/255, else None.

    Gathering a training batch as uint8 and looking the floats up in a 256-entry table gives
    bit-for-bit the same float32 batch at a quarter of the memory traffic (the gather is ~8% of a
    CPU step).
    """
    u = jnp.clip(jnp.round(x * 255.0), 0, 255).astype(jnp.uint8)
    return u if bool(jnp.all(jnp.asarray(_PIXELS)[u] == x)) else None


def probe_indices(data_key: jax.Array, size: int, num_train: int) -> jax.Array:
    """The fixed probe batch of a run: `size` training examples drawn without replacement from its
    data key, the same at every evaluation (and independent of the training batches' order)."""
    return jax.random.permutation(jax.random.fold_in(data_key, _PROBE_SALT), num_train)[:size]


def _per_unit(z: jax.Array) -> jax.Array:
    """(examples, units): an NHWC activation's units are its channels, over batch and space."""
    return z if z.ndim == 2 else z.reshape(-1, z.shape[-1])


def _ics_rows(z: jax.Array) -> jax.Array:
    """The rows the per-unit ICS quantiles are taken over: every example of a (examples, units)
    layer; of an NHWC layer (a channel's values over examples x positions, millions of rows on a
    test set) a fixed random subset of `ICS_MAX_ROWS`, since sorting them all costs seconds per
    layer and evaluation on a CPU. Means, stds and saturation still use every row."""
    rows = _per_unit(z)
    if z.ndim == 2 or rows.shape[0] <= ICS_MAX_ROWS:
        return rows
    pick = np.sort(np.random.default_rng(0).choice(rows.shape[0], ICS_MAX_ROWS, replace=False))
    return rows[jnp.asarray(pick)]


def _probe_outputs(out: dict) -> dict:
    """Checks a probe's `measure` output: {key: scalar or list of scalars (one per layer)}."""
    if not isinstance(out, dict):
        raise TypeError(f"probe measure must return a dict, got {type(out).__name__}")
    checked = {}
    for key, value in out.items():
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if jnp.ndim(v) != 0:
                raise ValueError(f"probe output {key!r} must be a scalar or a list of scalars "
                                 f"(one per layer), got shape {jnp.shape(v)}")
        arrays = [jnp.asarray(v, jnp.float32) for v in values]
        checked[key] = arrays if isinstance(value, (list, tuple)) else arrays[0]
    return checked


def previous_evaluation(carry: dict) -> dict:
    """What a probe sees of the previous evaluation: the carry's params, BN state and step."""
    return {"params": carry["params"], "bn_state": carry["bn_state"], "step": carry["step"]}


def make_program(static: Static, data: data_lib.Dataset, probe: Probe | None = None) -> Program:
    """Builds the run's pure functions over `data` (arrays already on the device). `probe`: the
    experiment's extra measurement, compiled into `evaluate` (see bn_experiments.probe)."""
    family = models.get(static.model_name)
    cfg, tx, schedule = static.model, _optimizer(static), _schedule(static)
    needs_rng = bool(getattr(cfg, "needs_rng", False))
    num_train = data.x_train.shape[0]
    x_u8 = _as_uint8(data.x_train)
    probe_size = (probe.batch_size or static.batch_size) if probe is not None else 0
    if probe is not None and not 0 < probe_size <= num_train:
        raise ValueError(f"probe batch_size={probe_size} must be in [1, {num_train}] (the training "
                         f"examples of {data.name!r})")

    def train_images(idx):
        if x_u8 is None:
            return data.x_train[idx]
        return jnp.asarray(_PIXELS)[x_u8[idx]]

    def init(numbers: dict) -> dict:
        k_init, k_data, k_noise = jax.random.split(jax.random.key(numbers["seed"]), 3)
        params, bn_state = family.init(k_init, cfg, numbers)
        opt_state = tx.init(params)
        hyper = {"learning_rate": numbers["learning_rate"]}
        if static.use_momentum:
            hyper["momentum"] = numbers["momentum"]
        opt_state = opt_state._replace(hyperparams={**opt_state.hyperparams, **hyper})
        carry = {"params": params, "bn_state": bn_state, "opt_state": opt_state,
                 "step": jnp.zeros((), jnp.int32), "diverged_at": jnp.full((), -1, jnp.int32),
                 "data_key": k_data, "noise_key": k_noise}
        if probe is not None:
            # The fixed probe batch, drawn once: a permutation of the training set at every
            # evaluation cost more than the probe itself (12 ms for 5 seeds of 8,000 examples,
            # 86 ms of 50,000, on one core).
            carry["probe_idx"] = probe_indices(k_data, probe_size, num_train)
            if probe.memo:  # zeros until the first evaluation gives the probe's memo
                shapes = jax.eval_shape(lambda c: probe.measure(
                    probe_inputs(c, numbers, previous_evaluation(c), None)), carry)["memo"]
                carry["probe_memo"] = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), shapes)
        return carry

    def train_step(numbers, carry, idx, checked: bool):
        x, y = train_images(idx), data.y_train[idx]
        step = carry["step"]
        noise_rng = jax.random.fold_in(carry["noise_key"], step) if needs_rng else None

        def loss_fn(params):
            logits, bn_state, inter = family.apply(params, carry["bn_state"], x, cfg=cfg,
                                                   train=True, rng=noise_rng)
            return _cross_entropy(logits, y), (bn_state, inter["preacts"][-1])

        (loss, (bn_state, preacts)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            carry["params"])
        opt_state = carry["opt_state"]
        opt_state = opt_state._replace(hyperparams={
            **opt_state.hyperparams, "learning_rate": numbers["learning_rate"] * schedule(step)})
        updates, opt_state = tx.update(grads, opt_state, carry["params"])
        params = optax.apply_updates(carry["params"], updates)
        new = {"params": params, "bn_state": bn_state, "opt_state": opt_state}
        metrics = {"train_loss": loss,
                   "preact_percentiles": tracked_percentiles(_per_unit(preacts),
                                                             static.tracked_units)}
        alive = carry["diverged_at"] < 0
        if not checked:
            # The running statistics still go through a select, as in `chunk`: without it XLA
            # fuses their update differently and rounds its last bit differently.
            new["bn_state"] = jax.tree.map(lambda n, o: jnp.where(alive, n, o), bn_state,
                                           carry["bn_state"])
            return {**carry, **new, "step": step + 1}, metrics

        finite = jnp.isfinite(loss) & _all_finite(grads)
        keep = alive & finite
        frozen = jax.tree.map(lambda n, o: jnp.where(keep, n, o), new,
                              {k: carry[k] for k in new})
        metrics = jax.tree.map(lambda m: jnp.where(alive, m, jnp.nan), metrics)
        carry = {**carry, **frozen, "step": step + 1,
                 "diverged_at": jnp.where(alive & ~finite, step + 1, carry["diverged_at"])}
        return carry, metrics

    def scan_chunk(carry: dict, numbers: dict, checked: bool, length: int | None
                   ) -> tuple[dict, dict]:
        idx = data_lib.batch_indices(carry["data_key"], carry["step"], length or static.eval_every,
                                     static.batch_size, num_train)
        return jax.lax.scan(lambda c, i: train_step(numbers, c, i, checked), carry, idx)

    def chunk(carry: dict, numbers: dict, length: int | None = None) -> tuple[dict, dict]:
        return scan_chunk(carry, numbers, checked=True, length=length)

    def fast_chunk(carry: dict, numbers: dict, length: int | None = None
                   ) -> tuple[dict, dict, jax.Array]:
        out, metrics = scan_chunk(carry, numbers, checked=False, length=length)
        alive = carry["diverged_at"] < 0
        # A frozen run stays frozen (as `chunk` keeps it): old state, NaN metrics.
        out = {**out, **jax.tree.map(lambda n, o: jnp.where(alive, n, o),
                                     {k: out[k] for k in _STATE}, {k: carry[k] for k in _STATE})}
        metrics = jax.tree.map(lambda m: jnp.where(alive, m, jnp.nan), metrics)
        replay = alive & ~(jnp.all(jnp.isfinite(metrics["train_loss"]))
                           & _all_finite(out["params"]))
        return out, metrics, replay

    def _test_metrics(params, bn_state) -> dict:
        logits, _, inter = family.apply(params, bn_state, data.x_test, cfg=cfg, train=False)
        preacts = [_per_unit(z) for z in inter["preacts"]]
        ics = {"mean": [z.mean(0) for z in preacts], "std": [z.std(0) for z in preacts]}
        if static.ics_quantiles:  # sorting every unit's test-set values: most of an evaluation
            ics["quantiles"] = [quantiles.columns(_ics_rows(z), ICS_LEVELS)
                                for z in inter["preacts"]]
        return {"test_accuracy": jnp.mean(jnp.argmax(logits, -1) == data.y_test),
                "test_loss": _cross_entropy(logits, data.y_test),
                "test_preact_percentiles": tracked_percentiles(preacts[-1], static.tracked_units),
                "per_layer": {"saturation": [jnp.mean(jnp.abs(z) > static.saturation_threshold)
                                             for z in preacts]},
                "ics": ics}

    def bound_apply(params, state, x, train: bool, rng=None):
        return family.apply(params, state, x, cfg=cfg, train=train, rng=rng)

    def probe_loss(params, state, x, y):
        """The loss the SGD step differentiates: training mode, batch statistics, no BN noise."""
        logits, new_state, inter = family.apply(params, state, x, cfg=cfg, train=True, rng=None)
        return _cross_entropy(logits, y), (new_state, inter)

    def probe_inputs(carry: dict, numbers: dict, prev: dict, memo) -> ProbeInputs:
        idx = carry["probe_idx"]
        return ProbeInputs(
            params=carry["params"], state=carry["bn_state"], x=train_images(idx),
            y=data.y_train[idx], loss_fn=probe_loss, apply=bound_apply,
            learning_rate=numbers["learning_rate"] * schedule(carry["step"]), step=carry["step"],
            prev_params=prev["params"], prev_state=prev["bn_state"], prev_step=prev["step"],
            model=cfg, test_x=data.x_test, test_y=data.y_test, batch_size=static.batch_size,
            prev_memo=memo)

    def evaluate(carry: dict, numbers: dict, prev: dict | None = None) -> dict:
        out = _test_metrics(carry["params"], carry["bn_state"])
        if probe is not None:
            prev = previous_evaluation(carry) if prev is None else prev
            measured = dict(probe.measure(probe_inputs(carry, numbers, prev,
                                                       carry.get("probe_memo"))))
            if probe.memo:
                out["probe_memo"] = measured.pop("memo")
            out["probe"] = _probe_outputs(measured)
        return out

    def evaluate_population(carry: dict) -> dict:
        """Algorithm 2: test metrics with population statistics from K training batches."""
        if not cfg.use_bn:
            return _test_metrics(carry["params"], carry["bn_state"])
        k = static.population_batches
        idx = data_lib.batch_indices(jax.random.fold_in(carry["data_key"], _POPULATION_SALT), 0, k,
                                     static.batch_size, num_train)
        state = models.population_state(family, carry["params"], carry["bn_state"],
                                        data.x_train[idx], cfg=cfg)
        return _test_metrics(carry["params"], state)

    return Program(init, chunk, fast_chunk, evaluate, evaluate_population)

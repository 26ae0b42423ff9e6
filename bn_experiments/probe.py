"""The hook through which an experiment adds a measurement to the compiled run.

Most mechanism claims of Ioffe & Szegedy (2015) and Santurkar et al. (2018) are not about test
accuracy but about quantities of the network at given parameters: a layer's Jacobian spectrum,
the gradient of a layer before and after the layers below it take their step, the loss along the
gradient direction, the gradient after rescaling the weights. An experiment measures such a
quantity by giving its module a `Probe`:

    def measure(inputs: ProbeInputs) -> dict[str, jax.Array | list[jax.Array]]: ...
    register(Experiment("my_experiment", claims=..., figures=..., probe=Probe(measure)))

`measure` is a pure JAX function. The trainer traces it into the compiled evaluation, so it runs
at step 0 and at every evaluation (`eval_every` steps and `eval_steps`), for every run of the program (vmapped
with them in a sweep), on the run's current parameters and a fixed probe batch of training
examples (drawn from the run's seed, `train.probe_indices`: the same examples at every
evaluation of the run). It never changes the training trajectory: it runs in the evaluation,
whose results are never fed back into training (tests/test_probe.py checks the bits). Its
outputs become evaluation curves:

- a scalar `v` under key `k`      -> curve `probe_<k>`
- a list of scalars (one per layer) -> curves `probe_<k>_layer1`, `probe_<k>_layer2`, ...

and each curve's mean over the evaluations after step 0 becomes `final["mean_probe_<k>..."]`.
Nothing in the runner or the trainer changes for a new probe.

A probe that compares two evaluations can keep what it measured for the next one instead of
recomputing it at `prev_params`: `Probe(measure, memo=True)`, and `measure` returns it under the
key "memo" (see `ProbeInputs.prev_memo`; Figure 1's probe keeps its percentiles this way).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax


class ProbeInputs(NamedTuple):
    """What a probe sees at one evaluation. Everything is an array or a pure function."""
    params: Any              # the run's current parameters (the model's pytree)
    state: Any               # the model's running state (BN running statistics)
    x: jax.Array             # a fixed batch of training inputs, in the shape the model takes
    y: jax.Array             # its integer labels
    # (params, state, x, y) -> (loss, (new_state, intermediates)): training-mode cross-entropy,
    # BN with batch statistics, exactly the loss the SGD step differentiates.
    loss_fn: Callable[..., tuple[jax.Array, tuple[Any, dict]]]
    # (params, state, x, train) -> (logits, new_state, intermediates): the model's `apply`.
    apply: Callable[..., tuple[jax.Array, Any, dict]]
    learning_rate: jax.Array  # the learning rate of the next step (schedule applied)
    step: jax.Array           # the number of updates taken so far
    # The run at its previous evaluation (at step 0: the current params/state/step), so a probe
    # can measure what changed between two evaluations (e.g. the shift of a layer's inputs that
    # the layers below caused).
    prev_params: Any = None
    prev_state: Any = None
    prev_step: Any = None
    model: Any = None         # the model family's static config (e.g. `model.use_bn`, widths)
    # The run's evaluation split (the test set, or the validation split when selecting), in the
    # shape the model takes, and the config's training batch size: for probes that compare ways
    # of evaluating the same network (e.g. Algorithm 2's population statistics).
    test_x: Any = None
    test_y: Any = None
    batch_size: int = 0
    # With `Probe(memo=True)`: what `measure` returned under "memo" at the previous evaluation of
    # the run (kept in the carry, so a resumed run has it too); zeros of its shape at the first
    # evaluation, where `prev_step == step`. None when measure is called without one.
    prev_memo: Any = None


@dataclasses.dataclass(frozen=True)
class Probe:
    """An extra measurement compiled into every evaluation of a run (see the module docstring).

    `measure(inputs) -> {key: scalar or [scalar per layer]}`; `batch_size` is the size of the
    fixed probe batch (0: the config's training batch size).
    """
    measure: Callable[[ProbeInputs], dict]
    batch_size: int = 0
    # measure also returns "memo" (any pytree, not a curve), which the next evaluation receives
    # as `inputs.prev_memo`: e.g. a measurement at the current parameters that the next
    # evaluation would otherwise recompute at its `prev_params`.
    memo: bool = False

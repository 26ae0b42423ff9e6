"""One program's training loop, a round at a time: a chunk of SGD steps, then an evaluation.

A program is runs of one structure (only numbers differ) trained as one compiled function,
`jax.vmap`-ed over them; a run alone uses the same program without vmap. A diverging run freezes
itself inside the program and never affects the others' numbers (the chunk it diverges in is
replayed with the per-step check, `train.chunk_runner`, which gives every run the same bits either
way). `ProgramRun` keeps everything the host records and exposes the loop as steps (`init`,
`begin`, `advance`, `results`) so bn_experiments.waves can advance several programs, each on its
own device, side by side; `device` says where its arrays live (None: the default device).
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from bn_experiments import config as config_lib
from bn_experiments import data as data_lib
from bn_experiments import placement, train
from bn_experiments.probe import Probe

NOT_DIVERGED = np.iinfo(np.int64).max
CHANCE_MARGIN = 0.05  # "did not train": max test accuracy within this of chance (1 / classes)


@dataclasses.dataclass
class RunResult:
    """What one run measured, on the host, at full resolution."""
    name: str
    flat: dict
    train: dict[str, np.ndarray]          # metric -> values at steps 0..n-1 (n = diverged or steps)
    eval_steps: list[int]
    evals: dict[str, list[float]]         # metric -> values at eval_steps
    diverged_at: int | None
    final: dict[str, float | None]


def _percentile_names(prefix: str, units: tuple[int, ...]) -> list[tuple[int, int, str]]:
    """(percentile row, unit column, curve name): the first unit is the one the figures show."""
    return [(i, j, f"{prefix}p{int(q)}" + ("" if j == 0 else f"_unit{u}"))
            for j, u in enumerate(units) for i, q in enumerate(train.PERCENTILES)]


def _eval_columns(metrics: dict, units: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Scalar test metrics of one evaluation, each an array over the program's runs."""
    m = jax.device_get(metrics)
    cols = {k: np.asarray(m[k], np.float64) for k in ("test_accuracy", "test_loss")}
    pct = np.asarray(m["test_preact_percentiles"], np.float64)
    cols.update({name: pct[:, i, j] for i, j, name in _percentile_names("test_preact_", units)})
    for k, per_layer in m["per_layer"].items():
        cols.update({f"{k}_layer{l + 1}": np.asarray(v, np.float64) for l, v in enumerate(per_layer)})
    # The experiment's probe: scalar k -> probe_k, one value per layer -> probe_k_layer<l>.
    for k, v in m.get("probe", {}).items():
        if isinstance(v, (list, tuple)):
            cols.update({f"probe_{k}_layer{l + 1}": np.asarray(x, np.float64)
                         for l, x in enumerate(v)})
        else:
            cols[f"probe_{k}"] = np.asarray(v, np.float64)
    return cols


def compiled(program: train.Program, batched: bool):
    """jit-ed (init, chunk, evaluate, drift, population) with a leading run axis either way; they
    run on the device their inputs are on."""
    if batched:
        v = jax.vmap
        # The runs' initial states one run at a time (`lax.map`), not vmapped: the same bits
        # (tests/test_loop.py), and XLA:CPU compiles the unbatched random draws in half the time
        # (Figure 1's init on one core: 3.2 -> 1.7 s, of ~13 s a program compiled on a first run).
        return (jax.jit(lambda n: jax.lax.map(program.init, n)),
                train.chunk_runner(program, batched=True),
                jax.jit(v(program.evaluate)), jax.jit(v(train.ics_drift)),
                jax.jit(v(program.evaluate_population)))
    add = lambda f: lambda *a: jax.tree.map(lambda x: x[None], f(*a))  # noqa: E731
    drop = lambda t: jax.tree.map(lambda x: x[0], t)  # noqa: E731
    init, chunk = jax.jit(program.init), train.chunk_runner(program)
    evaluate, drift = jax.jit(program.evaluate), jax.jit(train.ics_drift)
    population = jax.jit(program.evaluate_population)
    return (lambda n: add(init)(drop(n)),
            lambda c, n, length=None: add(lambda *a: chunk(*a, length=length))(drop(c), drop(n)),
            lambda c, n, p: add(evaluate)(drop(c), drop(n), drop(p)),
            lambda a, b: add(drift)(drop(a), drop(b)),
            lambda c: add(population)(drop(c)))


MAX_PIECES = 16  # an uneven chunk is composed of at most this many chunks of the unit length


def unit_length(schedule: list[int], eval_every: int) -> int:
    """The length the uneven chunks of `schedule` (those shorter than `eval_every`) are composed
    of: their greatest common divisor.

    Every distinct chunk length is a compilation of its own (a scan's length is static, and the
    scan is the largest program the trainer compiles): the early evaluations of Figure 1 (steps
    50, 100, 200, then every 500) make chunks of 50, 50, 100, 300 and 500 steps, four programs.
    Run as chunks of 50 and 500 they are two; the steps are the same computations in the same
    order, so the numbers are the same bits (tests/test_devices.py). The regular chunks keep
    their length: a 50-step chunk boundary costs a fetch (whether a run diverged), and 500 steps
    as 10 chunks of 50 took 6% longer on the 2-core CPU."""
    uneven = {b - a for a, b in zip([0, *schedule], schedule)} - {eval_every}
    return math.gcd(*uneven) if uneven else eval_every


def pieces(length: int, eval_every: int, unit: int) -> list[int | None]:
    """The chunk lengths that train `length` steps (None: `eval_every`, the default length)."""
    if length == eval_every:
        return [None]
    if length % unit == 0 and length // unit <= MAX_PIECES:
        return [unit] * (length // unit)
    return [length]


def describe(runs: list[config_lib.Run], shown: int = 2) -> str:
    """`run a`, `runs a, b` or `runs a, b (+3 more)`: what a program trains, for people."""
    names = [r.name for r in runs]
    more = f" (+{len(names) - shown} more)" if len(names) > shown else ""
    return ("run " if len(names) == 1 else "runs ") + ", ".join(names[:shown]) + more


class ProgramRun:
    """The training of `runs` (one structure) as one program, with everything the host records.

    `data` must be on `device`. `fns`: `compiled(...)` of this structure and width on this device
    when the caller already has them (compiled once, not once per group);
    `make_program`: what builds the program's pure functions (`train.make_program`)."""

    def __init__(self, runs: list[config_lib.Run], data: data_lib.Dataset, *, target: float,
                 probe: Probe | None = None, device: jax.Device | None = None, fns=None,
                 make_program=train.make_program):
        self.runs, self.static, self.n = runs, runs[0].static, len(runs)
        self.units, self.device, self.target = self.static.tracked_units, device, target
        self.num_classes = data.num_classes
        self.fns = fns or compiled(make_program(self.static, data, probe), self.n > 1)
        self.numbers = placement.put(jax.tree.map(
            lambda *xs: jnp.stack(xs), *[train.numbers_to_arrays(r.numbers) for r in runs]),
            device)
        self.schedule = self.static.schedule_steps()
        self.unit = unit_length(self.schedule, self.static.eval_every)
        self.carry = None
        self.step = 0
        self.eval_steps: list[int] = []
        self.evals: dict[str, list[np.ndarray]] = {}  # metric -> one (n,) array per evaluation
        self.chunks: dict[str, list[np.ndarray]] = {"train_loss": [], "preact_percentiles": []}
        self.diverged = np.full(self.n, NOT_DIVERGED)
        self.prev_ics = None  # the previous evaluation's per-unit statistics, for the ICS drift
        self.prev_eval = None  # the previous evaluation's params/state/step, for the probe

    # ------------------------------------------------------------------ state and checkpoints

    def init(self) -> None:
        self.carry = self.fns[0](self.numbers)

    @property
    def done(self) -> bool:
        return self.step >= self.static.steps or bool((self.diverged < NOT_DIVERGED).all())

    def host_state(self) -> dict:
        """Everything the host recorded, as numpy arrays (saved with the carry in checkpoints)."""
        host = {"diverged": self.diverged}
        if self.step > 0:
            host.update({
                "eval_steps": np.asarray(self.eval_steps),
                "evals": {k: np.stack(v) for k, v in self.evals.items()},
                # The metrics' order (a checkpoint's dict comes back sorted by key): it is the
                # order of the `mean_*` finals in summary.json.
                "eval_order": np.asarray([sorted(self.evals).index(k) for k in self.evals]),
                "chunks": {k: np.concatenate(v, axis=1) for k, v in self.chunks.items()},
                "prev_ics": jax.tree.map(np.asarray, jax.device_get(self.prev_ics)),
                "prev_eval": jax.tree.map(np.asarray, jax.device_get(self.prev_eval))})
        return host

    def restore(self, step: int, carry: dict, host: dict) -> None:
        """Continues from a checkpoint's `carry` and `host_state()` at `step` (> 0)."""
        back = lambda t: placement.put(jax.tree.map(jnp.asarray, t), self.device)  # noqa: E731
        self.step, self.carry = step, placement.put(carry, self.device)
        self.eval_steps = [int(s) for s in host["eval_steps"]]
        keys = sorted(host["evals"])
        order = host["eval_order"] if "eval_order" in host else range(len(keys))
        self.evals = {keys[i]: list(host["evals"][keys[i]]) for i in order}
        self.chunks = {k: [v] for k, v in host["chunks"].items()}
        self.diverged = host["diverged"]
        self.prev_ics, self.prev_eval = back(host["prev_ics"]), back(host["prev_eval"])

    # ------------------------------------------------------------------------- the loop

    def begin(self) -> list[dict]:
        """The evaluation at step 0 (nothing when resumed); its metrics.jsonl rows."""
        return self._record(0) if self.step == 0 else []

    def advance(self) -> list[dict]:
        """One chunk of steps up to the next evaluation, then that evaluation (unless every run
        has diverged); its metrics.jsonl rows."""
        chunk = self.fns[1]
        length = next(s for s in self.schedule if s > self.step) - self.step
        for piece in pieces(length, self.static.eval_every, self.unit):
            self.carry, metrics = chunk(self.carry, self.numbers, length=piece)
            metrics = jax.device_get(metrics)
            for k in self.chunks:
                self.chunks[k].append(np.asarray(metrics[k]))
        d = np.asarray(jax.device_get(self.carry["diverged_at"]))
        self.diverged = np.where(d >= 0, d, self.diverged)
        self.step += length
        return [] if (self.diverged < NOT_DIVERGED).all() else self._record(self.step)

    def _record(self, at: int) -> list[dict]:
        evaluate, drift = self.fns[2], self.fns[3]
        now = train.previous_evaluation(self.carry)
        metrics = evaluate(self.carry, self.numbers, now if self.prev_eval is None else self.prev_eval)
        self.prev_eval = now
        if "probe_memo" in metrics:  # the probe's memo, for the next evaluation
            self.carry = {**self.carry, "probe_memo": metrics.pop("probe_memo")}
        ics = metrics.pop("ics")
        shifts = drift(ics if self.prev_ics is None else self.prev_ics, ics)
        if self.prev_ics is None:  # no previous evaluation to compare with at step 0
            shifts = jax.tree.map(lambda x: jnp.full_like(x, jnp.nan), shifts)
        metrics["per_layer"] = {**shifts, **metrics["per_layer"]}
        self.prev_ics = ics
        self.eval_steps.append(at)
        cols = _eval_columns(metrics, self.units)
        for k, v in cols.items():
            self.evals.setdefault(k, []).append(np.where(at >= self.diverged, np.nan, v))
        return [{"run": self.runs[p].name, "step": at, **{k: v[p] for k, v in cols.items()}}
                for p in range(self.n) if at < self.diverged[p]]

    def best_accuracy(self) -> float:
        return float(np.nanmax(self.evals["test_accuracy"][-1])) if self.evals else float("nan")

    def num_diverged(self) -> int:
        return int((self.diverged < NOT_DIVERGED).sum())

    @property
    def uses_population(self) -> bool:
        """Whether `results` evaluates Algorithm 2's population statistics (BN runs asking for it)."""
        return self.static.population_batches > 0 and self.static.model.use_bn

    def prepare_results(self, carry: dict) -> None:
        """Compiles what `results` computes once, at the end (Algorithm 2's population
        statistics), by running it on `carry`, a state of this program's, and discarding the
        numbers: `waves` does it in the background while the programs train, so a first run does
        not compile it after the last step (2.4 s on one core for Figure 1's BN program)."""
        if self.uses_population:
            jax.block_until_ready(self.fns[4](carry))

    def results(self) -> list[RunResult]:
        """Every run's measures at full resolution (Algorithm 2's population statistics too)."""
        static = self.static
        losses = np.concatenate(self.chunks["train_loss"], axis=1)           # (n, steps)
        pct = np.concatenate(self.chunks["preact_percentiles"], axis=1)      # (n, steps, 3, units)
        pop = (jax.device_get(self.fns[4](self.carry)["test_accuracy"])
               if self.uses_population else None)
        out = []
        for p, run in enumerate(self.runs):
            d = int(self.diverged[p]) if self.diverged[p] < NOT_DIVERGED else None
            end = d if d is not None else static.steps
            train_metrics = {"train_loss": losses[p, :end]}
            train_metrics.update({name: pct[p, :end, i, j]
                                  for i, j, name in _percentile_names("preact_", self.units)})
            keep = [i for i, s in enumerate(self.eval_steps) if d is None or s < d]
            run_evals = {k: [float(v[i][p]) for i in keep] for k, v in self.evals.items()}
            final = final_measures(run_evals, [self.eval_steps[i] for i in keep], losses[p, :end],
                                   d, target=self.target, window=static.eval_every,
                                   scheduled=static.steps // static.eval_every + 1,
                                   regular=static.eval_every, chance=1.0 / self.num_classes)
            if pop is not None and d is None:
                final["test_accuracy_population"] = float(pop[p])
            out.append(RunResult(run.name, run.flat, train_metrics,
                                 [self.eval_steps[i] for i in keep], run_evals, d, final))
        return out


def final_measures(evals: dict, steps: list[int], losses: np.ndarray, diverged_at: int | None, *,
                   target: float, window: int, scheduled: int, chance: float,
                   regular: int | None = None) -> dict:
    """Final measures: accuracy, steps to target, area under the accuracy curve, outcomes, drift."""
    acc = np.asarray(evals["test_accuracy"], dtype=float)
    # Mean test accuracy over the regular evaluations (step 0 and every `regular` steps; the extra
    # early ones would weigh the start more): the area under the curve over its length;
    # evaluations a diverged run never reached count as chance.
    on_grid = np.asarray([regular is None or s % regular == 0 for s in steps], bool)
    finite = np.isfinite(acc) & on_grid
    auc = (np.nansum(np.where(on_grid, acc, np.nan)) + chance * (scheduled - finite.sum())
           ) / scheduled
    reached = [s for s, a in zip(steps, acc) if a >= target]
    max_acc = float(np.nanmax(acc)) if finite.any() else None
    final = {
        "test_accuracy": None if diverged_at is not None else float(acc[-1]),
        "max_test_accuracy": max_acc,
        "steps_to_target": reached[0] if reached else None,
        "auc_test_accuracy": float(auc),
        "train_loss": float(np.mean(losses[-window:])) if len(losses) else None,
        "diverged": float(diverged_at is not None),
        "did_not_train": float(max_acc is None or max_acc < chance + CHANCE_MARGIN),
    }
    for k, v in evals.items():
        if k.startswith(("ics_", "saturation_", "probe_")):
            vals = np.asarray(v[1:], dtype=float)
            final[f"mean_{k}"] = float(np.nanmean(vals)) if np.isfinite(vals).any() else None
    return final

"""`train_and_evaluate(config, workdir)`: trains an experiment's runs and writes every output file.

Runs come from the config's named `runs` or its sweep `grid` (bn_experiments.sweep). Runs that share
their structure (only numbers differ: learning rate, init scale, seed, SGD momentum) are trained
together as ONE compiled program, `jax.vmap`-ed over them, `points_per_program` at a time; a run
alone uses the same program without vmap. A diverging run freezes itself inside the program and
never affects the others' numbers (the chunk it diverges in is replayed with the per-step check,
`train.chunk_runner`, which gives every run the same bits either way).

WORKDIR/config.json (the config as given), metrics.jsonl (one row per evaluation and run, appended
as it happens), points/<run>.json and .npz (each finished run's summary row and full-resolution
data; a rerun resumes by skipping them), provenance.json (commit, command, versions, device, wall
time, every invocation), summary.json (the contract of bn_experiments.summary; no timings, so the
same run gives the same file), curves.npz (full-resolution per-step curves of every run, not
committed) and the experiment's figures. The workdir itself (writable, locked, cleared on
--restart) is bn_experiments.workdir's; the config passes `config.check` first, the gate the CLI
uses too; Ctrl-C stops at the next evaluation boundary (bn_experiments.interrupt).

What is generic and what belongs to an experiment: the runner knows no model (the trainer takes the
family from `model.name`, bn_experiments.models) and no experiment. The experiment registry
(bn_experiments.experiments) gives, by `config.experiment`, the probe compiled into every
evaluation (its outputs become `probe_*` evaluation curves and `mean_probe_*` finals, like the
built-in `ics_*` and `saturation_*`), the claims computed from the finished runs and the figures.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
import shutil
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm.auto import tqdm

from bn_experiments import checkpoint as checkpoint_lib
from bn_experiments import config as config_lib
from bn_experiments import data as data_lib
from bn_experiments import experiments
from bn_experiments import interrupt
from bn_experiments import models
from bn_experiments import summary as summary_lib
from bn_experiments import train
from bn_experiments.probe import Probe
from bn_experiments import workdir as workdir_lib
from bn_experiments.workdir import OUTPUT_FILES, Workdir, WorkdirError  # noqa: F401 (re-exported)


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


def _compiled(program: train.Program, batched: bool):
    """jit-ed (init, chunk, evaluate, drift, population) with a leading run axis either way."""
    if batched:
        v = jax.vmap
        return (jax.jit(v(program.init)), train.chunk_runner(program, batched=True),
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


NOT_DIVERGED = np.iinfo(np.int64).max


def train_runs(runs: list[config_lib.Run], data: data_lib.Dataset, *, target: float,
               log=None, progress: bool = True, desc: str | None = None,
               checkpointer: checkpoint_lib.Checkpointer | None = None, checkpoint_every: int = 0,
               metrics_file=None, probe: Probe | None = None) -> list[RunResult]:
    """Trains runs of one structure as one program (vmapped when there are several).

    `probe`: the experiment's measurement, compiled into every evaluation (vmapped with the runs).
    With `checkpointer`, the program's full state is saved every `checkpoint_every` steps (at
    chunk boundaries) and, when a checkpoint exists, training resumes from it; `metrics_file`
    (the open metrics.jsonl) is then cut back to its length at that checkpoint.
    """
    static, units, n = runs[0].static, runs[0].static.tracked_units, len(runs)
    init, chunk, evaluate, drift, population = _compiled(
        train.make_program(static, data, probe), n > 1)
    numbers = jax.tree.map(lambda *xs: jnp.stack(xs),
                           *[train.numbers_to_arrays(r.numbers) for r in runs])

    carry = init(numbers)
    # Everything the host records; saved with the carry in checkpoints.
    eval_steps: list[int] = []
    evals: dict[str, list[np.ndarray]] = {}       # metric -> one (n,) array per evaluation
    chunks: dict[str, list[np.ndarray]] = {"train_loss": [], "preact_percentiles": []}
    diverged = np.full(n, NOT_DIVERGED)
    prev_ics = None  # the previous evaluation's per-unit statistics, for the ICS drift
    prev_eval = None  # the previous evaluation's params/state/step, for the probe
    step = 0
    schedule = static.schedule_steps()

    def save(at: int) -> None:
        if metrics_file is not None:
            metrics_file.flush()
        host = {"diverged": diverged,
                "metrics_bytes": np.asarray(metrics_file.tell() if metrics_file is not None else 0)}
        if at > 0:
            host.update({
                "eval_steps": np.asarray(eval_steps),
                "evals": {k: np.stack(v) for k, v in evals.items()},
                "chunks": {k: np.concatenate(v, axis=1) for k, v in chunks.items()},
                "prev_ics": jax.tree.map(np.asarray, jax.device_get(prev_ics)),
                "prev_eval": jax.tree.map(np.asarray, jax.device_get(prev_eval))})
        checkpointer.save(at, carry, host)

    if checkpointer is not None and checkpointer.exists():
        step, restored, host = checkpointer.restore(carry)
        if metrics_file is not None:  # rows written after the checkpoint are dropped
            metrics_file.truncate(int(host["metrics_bytes"]))
            metrics_file.seek(int(host["metrics_bytes"]))
        if step > 0:
            carry = restored
            eval_steps = [int(s) for s in host["eval_steps"]]
            evals = {k: list(v) for k, v in host["evals"].items()}
            chunks = {k: [v] for k, v in host["chunks"].items()}
            diverged = host["diverged"]
            prev_ics = jax.tree.map(jnp.asarray, host["prev_ics"])
            prev_eval = jax.tree.map(jnp.asarray, host["prev_eval"])
    elif checkpointer is not None and checkpoint_every:
        save(0)  # remembers where this program's metrics.jsonl rows begin

    def record(at: int) -> None:
        nonlocal prev_ics, prev_eval
        now = train.previous_evaluation(carry)
        metrics = evaluate(carry, numbers, now if prev_eval is None else prev_eval)
        prev_eval = now
        ics = metrics.pop("ics")
        shifts = drift(ics if prev_ics is None else prev_ics, ics)
        if prev_ics is None:  # no previous evaluation to compare with at step 0
            shifts = jax.tree.map(lambda x: jnp.full_like(x, jnp.nan), shifts)
        metrics["per_layer"] = {**shifts, **metrics["per_layer"]}
        prev_ics = ics
        eval_steps.append(at)
        cols = _eval_columns(metrics, units)
        for k, v in cols.items():
            evals.setdefault(k, []).append(np.where(at >= diverged, np.nan, v))
        if log is not None:
            for p in range(n):
                if at < diverged[p]:
                    log({"run": runs[p].name, "step": at, **{k: v[p] for k, v in cols.items()}})

    if step == 0:
        record(0)
    bar = tqdm(total=static.steps, initial=step, desc=desc or runs[0].name, unit="step",
               disable=not progress, leave=False)
    while step < static.steps and not (diverged < NOT_DIVERGED).all():
        length = next(s for s in schedule if s > step) - step
        carry, metrics = chunk(carry, numbers,
                               length=None if length == static.eval_every else length)
        metrics = jax.device_get(metrics)
        for k in chunks:
            chunks[k].append(np.asarray(metrics[k]))
        d = np.asarray(jax.device_get(carry["diverged_at"]))
        diverged = np.where(d >= 0, d, diverged)
        step += length
        bar.update(length)
        if (diverged < NOT_DIVERGED).all():
            break
        record(step)
        acc = evals["test_accuracy"][-1]
        bar.set_postfix_str((f"test_accuracy {np.nanmax(acc):.4f}" if n == 1 else
                             f"best test_accuracy of {n} runs {np.nanmax(acc):.4f}")
                            + (f", {int((d >= 0).sum())} diverged" if (d >= 0).any() else ""))
        stop = interrupt.requested() and step < static.steps
        if checkpointer is not None and checkpoint_every and step < static.steps \
                and (step % checkpoint_every == 0 or stop):
            save(step)
        if stop:
            bar.close()
            kept = ("its state at this step is checkpointed" if checkpointer is not None
                    and checkpoint_every else "no checkpoint (checkpoint_every=0): it restarts")
            interrupt.check(f"interrupted at step {step:,} of {static.steps:,} of "
                            f"{_describe(runs)}; {kept}")
    bar.close()

    losses = np.concatenate(chunks["train_loss"], axis=1)           # (n, steps)
    pct = np.concatenate(chunks["preact_percentiles"], axis=1)      # (n, steps, 3, units)
    pop = (jax.device_get(population(carry)["test_accuracy"])
           if static.population_batches > 0 and static.model.use_bn else None)
    results = []
    for p, run in enumerate(runs):
        d = int(diverged[p]) if diverged[p] < NOT_DIVERGED else None
        end = d if d is not None else static.steps
        train_metrics = {"train_loss": losses[p, :end]}
        train_metrics.update({name: pct[p, :end, i, j]
                              for i, j, name in _percentile_names("preact_", units)})
        keep = [i for i, s in enumerate(eval_steps) if d is None or s < d]
        run_evals = {k: [float(v[i][p]) for i in keep] for k, v in evals.items()}
        final = _final(run_evals, [eval_steps[i] for i in keep], losses[p, :end], d,
                       target=target, window=static.eval_every,
                       scheduled=static.steps // static.eval_every + 1,
                       regular=static.eval_every,
                       chance=1.0 / data.num_classes)
        if pop is not None and d is None:
            final["test_accuracy_population"] = float(pop[p])
        results.append(RunResult(run.name, run.flat, train_metrics, [eval_steps[i] for i in keep],
                                 run_evals, d, final))
    return results


def _describe(runs: list[config_lib.Run], shown: int = 2) -> str:
    """`run a`, `runs a, b` or `runs a, b (+3 more)`: what a program trains, for people."""
    names = [r.name for r in runs]
    more = f" (+{len(names) - shown} more)" if len(names) > shown else ""
    return ("run " if len(names) == 1 else "runs ") + ", ".join(names[:shown]) + more


CHANCE_MARGIN = 0.05  # "did not train": max test accuracy within this of chance (1 / classes)


def _final(evals: dict, steps: list[int], losses: np.ndarray, diverged_at: int | None, *,
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


def to_summary_run(result: RunResult, max_points: int = summary_lib.MAX_POINTS) -> dict:
    steps = np.arange(len(result.train["train_loss"]))
    curves = {k: summary_lib.thin(steps, v, max_points) for k, v in result.train.items()}
    curves.update({k: summary_lib.thin(result.eval_steps, v, max_points)
                   for k, v in result.evals.items()})
    return {"name": result.name, "config": result.flat, "curves": dict(sorted(curves.items())),
            "final": result.final, "diverged_at_step": result.diverged_at}


def _group_id(group: list[config_lib.Run]) -> str:
    """A stable folder name for one program's checkpoint."""
    import hashlib
    return hashlib.sha256("\n".join(r.name for r in group).encode()).hexdigest()[:16]


def _structure(static: config_lib.Static) -> config_lib.Static:
    """`static` with the model's `init_std` default blanked: every family's static config has
    one (the contract of bn_experiments.models), but the trainer takes the traced number."""
    return dataclasses.replace(static, model=dataclasses.replace(static.model, init_std=0.0))


def _groups(runs: list[config_lib.Run], per_program: int) -> list[list[config_lib.Run]]:
    """Runs grouped by compiled structure (model family and its static config, steps, batch, ...;
    init_std is a number, not structure), then chunked."""
    by_key: dict = {}
    for run in runs:
        by_key.setdefault(_structure(run.static), []).append(run)
    return [g[i:i + per_program] for g in by_key.values() for i in range(0, len(g), per_program)]


def _config_differences(old: dict, new: dict) -> list[str]:
    """The dotted keys whose values differ between two config.json documents. One written before
    `model.name` existed is an MLP's: the missing key counts as "mlp"."""
    old, new = config_lib.flatten(old), config_lib.flatten(new)
    if any(k.startswith("model.") for k in old):
        old.setdefault("model.name", models.DEFAULT)
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def plan(cfg: ml_collections.ConfigDict) -> tuple[list[config_lib.Run], list[list[config_lib.Run]]]:
    """The runs `cfg` trains and their programs, validated (data loaded, nothing compiled):
    what `bn-exp run --dry-run` prints."""
    runs, groups, _, _ = _plan(cfg)
    return runs, groups


def _plan(cfg: ml_collections.ConfigDict):
    """(runs, programs, dataset, probe) of `cfg`, through the one gate `config.check`."""
    from bn_experiments import sweep

    config_lib.check(cfg)
    ds = data_lib.load(cfg.data.source, standardize=cfg.data.standardize)
    runs = sweep.expand(cfg, input_shape=tuple(ds.input_shape), num_train=ds.num_train)
    probe = experiments.get(cfg.experiment).probe
    if probe is not None and probe.batch_size > ds.num_train:
        raise config_lib.ConfigError(
            f"experiment {cfg.experiment!r} probes {probe.batch_size} training examples, more than "
            f"the {ds.num_train} of data.source={cfg.data.source!r}; use a larger data source")
    return runs, _groups(runs, int(cfg.get("points_per_program", 16))), ds, probe


def _warn(message: str) -> None:
    print(f"bn-exp: warning: {message}", file=sys.stderr)


def _claims(cfg: ml_collections.ConfigDict, runs_doc: list[dict]) -> list[dict]:
    """The experiment's claims; never an exception once training is done (the runs are kept):
    claims that cannot be computed from these runs are left out, with a warning."""
    try:
        return experiments.compute_claims(cfg.experiment, runs_doc)
    except Exception as err:  # noqa: BLE001
        _warn(f"the claims of experiment {cfg.experiment!r} could not be computed from these runs "
              f"({type(err).__name__}: {err}); summary.json holds none")
        return []


def train_and_evaluate(cfg: ml_collections.ConfigDict, workdir: str | pathlib.Path, *,
                       restart: bool = False, progress: bool = True, plot: bool = True) -> dict:
    """Validates `cfg` (the gate the CLI uses, `config.check`), trains its runs (resuming finished
    ones), writes the workdir. Ctrl-C stops at a safe point: `interrupt.Interrupted`, with the
    workdir resumable by the same call."""
    t0, commit = time.perf_counter(), workdir_lib.git_commit()  # the code as it was when the run started
    runs, all_groups, ds, probe = _plan(cfg)
    is_sweep = bool(cfg.get("grid"))
    max_points = summary_lib.MAX_POINTS_SWEEP if is_sweep else summary_lib.MAX_POINTS
    with Workdir.open(workdir, restart=restart) as wd, interrupt.deferred():
        old_config = wd.path / "config.json"
        new_config = json.dumps(cfg.to_dict(), indent=1, sort_keys=True) + "\n"
        fields = (_config_differences(json.loads(old_config.read_text()), json.loads(new_config))
                  if old_config.exists() and old_config.read_text() != new_config else [])
        if fields:
            raise WorkdirError(f"--workdir {wd.path} holds unfinished runs of a different config "
                               f"(differs in: {', '.join(fields)}); resume with the same config, "
                               f"pass --restart to discard them, or choose another --workdir")
        summary_lib.atomic_write(old_config, new_config)
        wd.begin({"command": workdir_lib.command(), "git_commit": commit})
        trained, group_seconds = [], {}
        try:
            done = _train(wd, cfg, runs, all_groups, data_lib.to_device(ds), probe, max_points,
                          progress, trained, group_seconds)
        except BaseException as err:
            wd.end("interrupted" if isinstance(err, (interrupt.Interrupted, KeyboardInterrupt))
                   else f"failed ({type(err).__name__})", wall_seconds=time.perf_counter() - t0,
                   trained=trained, program_seconds=group_seconds, machine=workdir_lib.machine())
            raise
        missing = wd.write_curves([r.name for r in runs])
        if missing:
            _warn(f"curves.npz lacks {len(missing)} run(s) finished by an older version without "
                  f"full-resolution data (e.g. {missing[0]!r}); --restart retrains them")
        runs_doc = [done[r.name] for r in runs]
        doc = {"experiment": cfg.experiment, "runs": runs_doc, "claims": _claims(cfg, runs_doc)}
        if cfg.get(config_lib.SMOKE_KEY):
            doc = summary_lib.mark_smoke(doc)
        summary_lib.write(wd.path / "summary.json", doc)
        if plot:
            try:
                experiments.draw_figures(wd.path)
            except Exception as err:  # noqa: BLE001 (the summary is written; figures are redrawable)
                _warn(f"the figures of experiment {cfg.experiment!r} could not be drawn "
                      f"({type(err).__name__}: {err}); summary.json is written, "
                      f"`bn-exp plot {wd.path}` redraws them")
        wd.end("finished", wall_seconds=time.perf_counter() - t0, trained=trained,
               program_seconds=group_seconds, machine=workdir_lib.machine())
    return doc


def _train(wd: Workdir, cfg, runs, all_groups, ds, probe, max_points, progress,
           trained: list[str], group_seconds: dict) -> dict[str, dict]:
    """Trains every program with an unfinished run; returns every run's summary row by name.
    Groups are formed over ALL runs, and a group with any unfinished run is retrained whole: a
    run's numbers then never depend on which other runs happened to be unfinished."""
    done = wd.finished([r.name for r in runs])
    groups = [g for g in all_groups if any(r.name not in done for r in g)]
    summary_lib.drop_torn_line(wd.path / "metrics.jsonl")
    with open(wd.path / "metrics.jsonl", "a") as metrics_file:
        def log(row: dict) -> None:
            metrics_file.write(json.dumps(summary_lib.clean(row)) + "\n")
            metrics_file.flush()
        for gi, group in enumerate(groups):
            interrupt.check(f"interrupted before program {gi + 1} of {len(groups)}")
            t = time.perf_counter()
            desc = (f"[{gi + 1}/{len(groups)}] " if len(groups) > 1 else "") + _describe(group)
            ckpt = checkpoint_lib.Checkpointer(wd.path / "checkpoints" / _group_id(group))
            for res in train_runs(group, ds, target=cfg.target_accuracy, log=log,
                                  progress=progress, desc=desc, checkpointer=ckpt,
                                  checkpoint_every=cfg.checkpoint_every, metrics_file=metrics_file,
                                  probe=probe):
                arrays = {**res.train, "eval/step": np.asarray(res.eval_steps),
                          **{f"eval/{m}": np.asarray(x) for m, x in res.evals.items()}}
                done[res.name] = wd.save_point(res.name, to_summary_run(res, max_points), arrays)
                trained.append(res.name)
            ckpt.delete()
            group_seconds[_describe(group)] = time.perf_counter() - t
    shutil.rmtree(wd.path / "checkpoints", ignore_errors=True)
    interrupt.check("interrupted after training, before summary.json was written")
    return done

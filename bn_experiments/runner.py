"""`train_and_evaluate(config, workdir)`: runs an experiment's runs and writes every output file.

WORKDIR/config.json (the config as given), metrics.jsonl (one row per evaluation, appended as it
happens), provenance.json (commit, command, versions, device, wall time), summary.json (the
contract of bn_experiments.summary; no timings, so the same run gives the same file), curves.npz
(full-resolution per-step curves, not committed) and the experiment's figures.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
import platform
import subprocess
import sys
import time
import jax
import ml_collections
import numpy as np
from tqdm.auto import tqdm

from bn_experiments import claims as claims_lib
from bn_experiments import config as config_lib
from bn_experiments import data as data_lib
from bn_experiments import summary as summary_lib
from bn_experiments import train

OUTPUT_FILES = ("config.json", "metrics.jsonl", "provenance.json", "summary.json", "curves.npz")


class WorkdirError(RuntimeError):
    """The workdir cannot be used as asked; the message says what to do."""


@dataclasses.dataclass
class RunResult:
    """What one run measured, on the host, at full resolution."""
    name: str
    flat: dict
    train_steps: np.ndarray               # steps 0..n-1 whose per-step metrics were recorded
    train: dict[str, np.ndarray]          # metric name -> values at train_steps
    eval_steps: list[int]
    evals: dict[str, list[float]]         # metric name -> values at eval_steps
    diverged_at: int | None
    final: dict[str, float | None]


def _percentile_names(prefix: str, units: tuple[int, ...]) -> list[tuple[int, int, str]]:
    """(percentile row, unit column, curve name): the first unit is the one the figures show."""
    out = []
    for j, u in enumerate(units):
        for i, q in enumerate(train.PERCENTILES):
            out.append((i, j, f"{prefix}p{int(q)}" + ("" if j == 0 else f"_unit{u}")))
    return out


def _eval_row(metrics: dict, units: tuple[int, ...]) -> dict[str, float]:
    row = {"test_accuracy": float(metrics["test_accuracy"]), "test_loss": float(metrics["test_loss"])}
    pct = np.asarray(metrics["test_preact_percentiles"])
    for i, j, name in _percentile_names("test_preact_", units):
        row[name] = float(pct[i, j])
    return row


def run_one(run: config_lib.Run, data: data_lib.Dataset, *, target: float,
            log=None, progress: bool = True) -> RunResult:
    """Trains one run chunk by chunk (one compiled scan per chunk) and evaluates between chunks."""
    static, units = run.static, run.static.tracked_units
    program = train.make_program(static, data)
    init, chunk = jax.jit(program.init), jax.jit(program.chunk, donate_argnums=0)
    evaluate = jax.jit(program.evaluate)
    numbers = train.numbers_to_arrays(run.numbers)

    carry = init(numbers)
    eval_steps, evals = [], {}
    train_chunks = {"train_loss": [], "preact_percentiles": []}

    def record(step: int, carry) -> None:
        row = _eval_row(evaluate(carry), units)
        eval_steps.append(step)
        for k, v in row.items():
            evals.setdefault(k, []).append(v)
        if log is not None:
            log({"run": run.name, "step": step, **row})

    record(0, carry)
    diverged_at = None
    bar = tqdm(total=static.steps, desc=run.name, unit="step", disable=not progress, leave=False)
    for start in range(0, static.steps, static.eval_every):
        carry, metrics = chunk(carry, numbers)
        metrics = jax.device_get(metrics)
        for k in train_chunks:
            train_chunks[k].append(np.asarray(metrics[k]))
        bar.update(static.eval_every)
        d = int(carry["diverged_at"])
        if d >= 0:
            diverged_at = d
            bar.set_postfix_str(f"diverged at step {d}")
            break
        record(start + static.eval_every, carry)
        bar.set_postfix(test_accuracy=f"{evals['test_accuracy'][-1]:.4f}")
    bar.close()

    n = diverged_at if diverged_at is not None else static.steps
    losses = np.concatenate(train_chunks["train_loss"])[:n]
    pct = np.concatenate(train_chunks["preact_percentiles"])[:n]
    train_metrics = {"train_loss": losses}
    for i, j, name in _percentile_names("preact_", units):
        train_metrics[name] = pct[:, i, j]

    acc = np.asarray(evals["test_accuracy"], dtype=float)
    reached = [s for s, a in zip(eval_steps, acc) if a >= target]
    final = {"test_accuracy": None if diverged_at is not None else float(acc[-1]),
             "max_test_accuracy": float(np.nanmax(acc)) if np.isfinite(acc).any() else None,
             "steps_to_target": reached[0] if reached else None,
             "train_loss": float(np.mean(losses[-static.eval_every:])) if len(losses) else None}
    if static.population_batches > 0 and static.model.use_bn and diverged_at is None:
        pop = jax.jit(program.evaluate_population)(carry)
        final["test_accuracy_population"] = float(pop["test_accuracy"])
    return RunResult(run.name, run.flat, np.arange(n), train_metrics, eval_steps, evals,
                     diverged_at, final)


def to_summary_run(result: RunResult, max_points: int = summary_lib.MAX_POINTS) -> dict:
    curves = {k: summary_lib.thin(result.train_steps, v, max_points) for k, v in result.train.items()}
    curves.update({k: summary_lib.thin(result.eval_steps, v, max_points)
                   for k, v in result.evals.items()})
    return {"name": result.name, "config": result.flat, "curves": curves,
            "final": result.final, "diverged_at_step": result.diverged_at}


def _git_commit() -> str | None:
    try:
        root = pathlib.Path(__file__).resolve().parent.parent
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (out.stdout.strip() + ("-dirty" if dirty else "")) if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def provenance(wall_seconds: float, run_seconds: dict[str, float]) -> dict:
    from importlib import metadata
    versions = {}
    for pkg in ("bn-experiments", "jax", "jaxlib", "flax", "optax", "numpy", "ml-collections",
                "orbax-checkpoint"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    dev = jax.devices()[0]
    return {"git_commit": _git_commit(), "command": " ".join(["bn-exp", *sys.argv[1:]])
            if pathlib.Path(sys.argv[0]).name == "bn-exp" else " ".join(sys.argv),
            "python": platform.python_version(), "versions": versions,
            "device": {"platform": dev.platform, "kind": dev.device_kind, "count": jax.device_count()},
            "wall_seconds": round(wall_seconds, 2),
            "run_seconds": {k: round(v, 2) for k, v in run_seconds.items()}}


def prepare_workdir(workdir: pathlib.Path, *, restart: bool) -> None:
    """Refuses to overwrite a finished run without `restart`; clears our files when restarting."""
    if workdir.exists() and not workdir.is_dir():
        raise WorkdirError(f"--workdir {workdir}: exists and is not a directory; choose another path")
    if (workdir / "summary.json").exists() and not restart:
        raise WorkdirError(f"--workdir {workdir} already holds a finished run (summary.json); "
                           f"pass --restart to overwrite it or choose another --workdir")
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise WorkdirError(f"--workdir {workdir}: cannot create it ({err.strerror}); "
                           f"choose a writable path") from None
    for name in OUTPUT_FILES:
        (workdir / name).unlink(missing_ok=True)


def train_and_evaluate(cfg: ml_collections.ConfigDict, workdir: str | pathlib.Path, *,
                       restart: bool = False, progress: bool = True, plot: bool = True) -> dict:
    """Validates `cfg`, trains its runs, writes the workdir; returns the summary dict."""
    t0 = time.perf_counter()
    workdir = pathlib.Path(workdir)
    ds = data_lib.load(cfg.data.source, standardize=cfg.data.standardize)
    input_size = int(np.prod(ds.input_shape))
    runs = config_lib.runs(cfg, input_size=input_size, num_train=ds.num_train)
    prepare_workdir(workdir, restart=restart)
    summary_lib.atomic_write(workdir / "config.json", json.dumps(cfg.to_dict(), indent=1) + "\n")
    ds = data_lib.to_device(ds)

    results, run_seconds = [], {}
    with open(workdir / "metrics.jsonl", "a") as metrics_file:
        def log(row: dict) -> None:
            metrics_file.write(json.dumps(summary_lib.clean(row)) + "\n")
            metrics_file.flush()
        for run in runs:
            t_run = time.perf_counter()
            results.append(run_one(run, ds, target=cfg.target_accuracy, log=log, progress=progress))
            run_seconds[run.name] = time.perf_counter() - t_run

    np.savez_compressed(workdir / "curves.npz", **{
        f"{r.name}/{k}": v for r in results for k, v in {**r.train, **{
            f"eval/{m}": np.asarray(vals) for m, vals in r.evals.items()}}.items()})
    runs_doc = [to_summary_run(r) for r in results]
    doc = {"experiment": cfg.experiment, "runs": runs_doc,
           "claims": claims_lib.compute(cfg.experiment, runs_doc)}
    summary_lib.write(workdir / "summary.json", doc)
    if plot:
        from bn_experiments import plots
        plots.plot(workdir)
    summary_lib.atomic_write(workdir / "provenance.json", json.dumps(
        provenance(time.perf_counter() - t0, run_seconds), indent=1) + "\n")
    return doc

"""`train_and_evaluate(config, workdir)`: trains an experiment's runs and writes every output file.

Runs come from the config's named `runs` or its sweep `grid` (bn_experiments.sweep). Runs that share
their structure (only numbers differ: learning rate, init scale, seed, SGD momentum) are trained
together as ONE compiled program, `jax.vmap`-ed over them, `points_per_program` at a time; a run
alone uses the same program without vmap; a diverging run never affects the others' numbers
(bn_experiments.loop). Programs are spread over the local devices, one per device, and train side
by side (bn_experiments.placement, bn_experiments.waves); a run's numbers are the same on 1 and
on N devices.

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
import hashlib
import json
import pathlib
import shutil
import sys
import time

import jax
import ml_collections
import numpy as np

from bn_experiments import checkpoint as checkpoint_lib
from bn_experiments import config as config_lib
from bn_experiments import data as data_lib
from bn_experiments import data_parallel, experiments, interrupt, models, placement, train, waves
from bn_experiments import summary as summary_lib
from bn_experiments import workdir as workdir_lib
from bn_experiments.loop import ProgramRun, RunResult, describe
from bn_experiments.probe import Probe
from bn_experiments.workdir import OUTPUT_FILES, Workdir, WorkdirError  # noqa: F401 (re-exported)


def train_runs(runs: list[config_lib.Run], data: data_lib.Dataset, *, target: float,
               log=None, progress: bool = True, desc: str | None = None,
               checkpointer: checkpoint_lib.Checkpointer | None = None, checkpoint_every: int = 0,
               metrics_file=None, probe: Probe | None = None) -> list[RunResult]:
    """Trains runs of one structure as one program (vmapped when there are several), on the
    default device (bn_experiments.loop).

    `probe`: the experiment's measurement, compiled into every evaluation (vmapped with the runs).
    With `checkpointer`, the program's full state is saved every `checkpoint_every` steps (at
    chunk boundaries) and, when a checkpoint exists, training resumes from it; `metrics_file`
    (the open metrics.jsonl) is then cut back to its length at that checkpoint.
    """
    program = ProgramRun(runs, data, target=target, probe=probe, make_program=_make_program)
    return waves.train_wave([program], log=log, progress=progress, desc=desc or runs[0].name,
                            checkpointer=checkpointer, checkpoint_every=checkpoint_every,
                            metrics_file=metrics_file)[0]


def _make_program(static, *args):
    """`train.make_program` (looked up when called: a caller may swap this module's `train`), or
    the data-parallel program of `static`'s `data_parallel` fields."""
    if data_parallel.is_plain(static):
        return train.make_program(static, *args)
    return data_parallel.program_for(static, *args)


def to_summary_run(result: RunResult, max_points: int = summary_lib.MAX_POINTS) -> dict:
    steps = np.arange(len(result.train["train_loss"]))
    curves = {k: summary_lib.thin(steps, v, max_points) for k, v in result.train.items()}
    curves.update({k: summary_lib.thin(result.eval_steps, v, max_points)
                   for k, v in result.evals.items()})
    return {"name": result.name, "config": result.flat, "curves": dict(sorted(curves.items())),
            "final": result.final, "diverged_at_step": result.diverged_at}


def _group_id(group: list[config_lib.Run]) -> str:
    """A stable folder name for one program's checkpoint."""
    return hashlib.sha256("\n".join(r.name for r in group).encode()).hexdigest()[:16]


def _structure(static: config_lib.Static) -> config_lib.Static:
    """`static` with the model's `init_std` default blanked: every family's static config has
    one (the contract of bn_experiments.models), but the trainer takes the traced number."""
    return dataclasses.replace(static, model=dataclasses.replace(static.model, init_std=0.0))


def data_key(flat: dict) -> tuple:
    """What a run trains on: (data.source, data.standardize, data.whiten) of its config. Runs may
    differ in it (a grid over `data.whiten`); each distinct key is loaded once."""
    return (flat["data.source"], bool(flat.get("data.standardize", False)),
            flat.get("data.whiten", "none"))


def _groups(runs: list[config_lib.Run], per_program: int) -> list[list[config_lib.Run]]:
    """Runs grouped by compiled structure (model family and its static config, steps, batch, ...;
    init_std is a number, not structure) and by the data they train on, then chunked."""
    by_key: dict = {}
    for run in runs:
        by_key.setdefault((_structure(run.static), data_key(run.flat)), []).append(run)
    return [g[i:i + per_program] for g in by_key.values() for i in range(0, len(g), per_program)]


def _config_differences(old: dict, new: dict) -> list[str]:
    """The dotted keys whose values differ between two config.json documents. One written before
    `model.name` existed is an MLP's: the missing key counts as "mlp"; a field added since
    (`data.whiten`, the `data_parallel` section, `model.hidden_scale`) counts as its default."""
    from bn_experiments.configs import default

    old, new = config_lib.flatten(old), config_lib.flatten(new)
    if any(k.startswith("model.") for k in old):
        old.setdefault("model.name", models.DEFAULT)
    # Fields added since the old file was written count as their defaults.
    defaults = {k: v for k, v in config_lib.flatten(default.get_config()).items()
                if not k.startswith("model.")}
    defaults.update({f"model.{k}": v for k, v in config_lib.flatten(
        models.default_config(old.get("model.name", models.DEFAULT))).items()})
    for key in set(new) - set(old):
        if key in defaults:
            old[key] = defaults[key]
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def plan(cfg: ml_collections.ConfigDict) -> tuple[list[config_lib.Run], list[list[config_lib.Run]]]:
    """The runs `cfg` trains and their programs, validated (data loaded, nothing compiled):
    what `bn-exp run --dry-run` prints."""
    runs, groups, _, _ = _plan(cfg)
    return runs, groups


def _load(key: tuple) -> data_lib.Dataset:
    source, standardize, whiten = key
    return data_lib.load(source, standardize=standardize, whiten=whiten)


def _plan(cfg: ml_collections.ConfigDict):
    """(runs, programs, datasets by `data_key`, probe) of `cfg`, through the one gate
    `config.check`; every dataset the runs need is loaded (and checked) here."""
    from bn_experiments import sweep

    config_lib.check(cfg)
    base = data_key(config_lib.flatten(cfg))
    datasets = {base: _load(base)}
    ds = datasets[base]
    runs = sweep.expand(cfg, input_shape=tuple(ds.input_shape), num_train=ds.num_train)
    for key in dict.fromkeys(data_key(r.flat) for r in runs):
        if key not in datasets:
            datasets[key] = _load(key)
            other = datasets[key]
            if (tuple(other.input_shape), other.num_classes) != (tuple(ds.input_shape),
                                                                  ds.num_classes):
                raise config_lib.ConfigError(
                    f"data.source={key[0]!r} has inputs {tuple(other.input_shape)} and "
                    f"{other.num_classes} classes, unlike data.source={base[0]!r}; runs of one "
                    f"config must share them: use separate configs")
    probe = experiments.get(cfg.experiment).probe
    for key, d in datasets.items():
        if probe is not None and probe.batch_size > d.num_train:
            raise config_lib.ConfigError(
                f"experiment {cfg.experiment!r} probes {probe.batch_size} training examples, more "
                f"than the {d.num_train} of data.source={key[0]!r}; use a larger data source")
    for static in dict.fromkeys(r.static for r in runs):
        data_parallel.check_static(static)
    return runs, _groups(runs, int(cfg.get("points_per_program", 16))), datasets, probe


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
    runs, all_groups, datasets, probe = _plan(cfg)
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
        spread = [d for d in dict.fromkeys(
            json.dumps(data_parallel.describe_static(r.static), sort_keys=True) for r in runs)
            if d != "null"]
        wd.begin({"command": workdir_lib.command(), "git_commit": commit,
                  **({"data_parallel": [json.loads(d) for d in spread]} if spread else {})})
        trained, group_seconds = [], {}
        try:
            done = _train(wd, cfg, runs, all_groups,
                          {k: data_lib.to_device(d) for k, d in datasets.items()}, probe,
                          max_points, progress, trained, group_seconds)
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


def _train(wd: Workdir, cfg, runs, all_groups, datasets, probe, max_points, progress,
           trained: list[str], group_seconds: dict) -> dict[str, dict]:
    """Trains every group with an unfinished run, up to one per local device at a time; returns
    every run's summary row by name. Groups are formed over ALL runs, and a group with any
    unfinished run is retrained whole: a run's numbers then never depend on which other runs
    happened to be unfinished (nor on the device it trains on, bn_experiments.placement)."""
    done = wd.finished([r.name for r in runs])
    devices = jax.local_devices()
    todo = placement.waves([g for g in all_groups if any(r.name not in done for r in g)],
                           len(devices), alone=lambda g: g[0].static.spans_devices)
    ids = [_wave_id(wave) for wave in todo]
    _drop_stale_checkpoints(wd.path / "checkpoints", keep=set(ids))
    metrics_path = wd.path / "metrics.jsonl"
    summary_lib.drop_torn_line(metrics_path)
    logged = _logged_runs(metrics_path)
    compiled: dict = {}  # one compiled program per structure, data, width and device
    placed: dict = {}    # each dataset on each device
    with open(metrics_path, "a") as metrics_file:
        def log(row: dict) -> None:
            metrics_file.write(json.dumps(summary_lib.clean(row)) + "\n")
            metrics_file.flush()
        for wi, (wave, wave_id) in enumerate(zip(todo, ids)):
            interrupt.check(f"interrupted before program {wi + 1} of {len(todo)}")
            t = time.perf_counter()
            # A program spanning the devices (data parallel) places its own arrays (None).
            programs = [_program(group, devices[d] if len(devices) > 1
                                 and not group[0].static.spans_devices else None,
                                 datasets, cfg, probe, compiled, placed)
                        for d, group in enumerate(wave)]
            names = {r.name for group in wave for r in group}
            ckpt = checkpoint_lib.Checkpointer(wd.path / "checkpoints" / wave_id)
            if not ckpt.exists() and logged & names:  # rows of an attempt that left no checkpoint
                _drop_rows(metrics_file, names)
                logged -= names
            desc = (f"[{wi + 1}/{len(todo)}] " if len(todo) > 1 else "") + (
                " | ".join(describe(group) for group in wave))
            results = waves.train_wave(programs, log=log, progress=progress, desc=desc,
                                       checkpointer=ckpt, checkpoint_every=cfg.checkpoint_every,
                                       metrics_file=metrics_file)
            for res in (r for program_results in results for r in program_results):
                arrays = {**res.train, "eval/step": np.asarray(res.eval_steps),
                          **{f"eval/{m}": np.asarray(x) for m, x in res.evals.items()}}
                done[res.name] = wd.save_point(res.name, to_summary_run(res, max_points), arrays)
                trained.append(res.name)
            ckpt.delete()
            for group in wave:  # programs trained side by side share their wave's time
                group_seconds[describe(group)] = time.perf_counter() - t
    shutil.rmtree(wd.path / "checkpoints", ignore_errors=True)
    interrupt.check("interrupted after training, before summary.json was written")
    return done


def _program(group: list[config_lib.Run], device, datasets, cfg, probe, compiled: dict,
             placed: dict) -> ProgramRun:
    """The ProgramRun of one group on `device` (None: the default device), with its data there
    and the program compiled once per structure, data, width and device."""
    dkey = data_key(group[0].flat)
    if (device, dkey) not in placed:
        placed[device, dkey] = placement.put_data(datasets[dkey], device)
    key = (_structure(group[0].static), dkey, len(group), device)
    program = ProgramRun(group, placed[device, dkey], target=cfg.target_accuracy, probe=probe,
                         device=device, fns=compiled.get(key), make_program=_make_program)
    compiled[key] = program.fns
    return program


def _wave_id(wave: list[list[config_lib.Run]]) -> str:
    """A stable folder name for one wave's checkpoint (a lone group: the name it always had)."""
    if len(wave) == 1:
        return _group_id(wave[0])
    return "wave-" + _group_id([r for group in wave for r in group])


def _drop_stale_checkpoints(folder: pathlib.Path, keep: set[str]) -> None:
    """Checkpoints of waves this run does not have (written with another device count): their
    offsets into metrics.jsonl no longer hold once rows are dropped, so they are removed."""
    if folder.is_dir():
        for path in folder.iterdir():
            if path.name not in keep:
                shutil.rmtree(path, ignore_errors=True)


def _logged_runs(path: pathlib.Path) -> set[str]:
    """The runs with rows in metrics.jsonl."""
    return {row.get("run") for row in summary_lib.read_jsonl(path)} if path.exists() else set()


def _drop_rows(metrics_file, names: set[str]) -> None:
    """Removes the rows of `names` from the open metrics.jsonl: rows of an earlier attempt that
    left no checkpoint, which the retrained runs write again."""
    metrics_file.flush()
    with open(metrics_file.name) as f:
        kept = [line for line in f if json.loads(line).get("run") not in names]
    metrics_file.seek(0)
    metrics_file.truncate()
    metrics_file.writelines(kept)
    metrics_file.flush()

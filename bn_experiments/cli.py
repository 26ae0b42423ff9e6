"""`bn-exp`: run, list, compare, plot and report experiments from the command line.

A thin layer over importable functions (`config_load.load`, `runner.train_and_evaluate`,
`experiments.draw_figures`, `experiments.compute_claims`, `compare`, `report.write`), so notebooks
can call them directly. Bad input exits with status 2 and one line naming the field and the fix,
before anything is compiled; Ctrl-C stops at a safe point and exits 130 saying how to resume.
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import pathlib
import sys

FLAGS_HELP = """\
  --config NAME[:ARG] | PATH[:ARG]   the config: a shipped one by name (list: `bn-exp list`) or a
                                     file with get_config(arg); ARG `quick` shrinks it to a
                                     seconds-long smoke run (no verdicts; left out of the ledger).
                                     Default: fig1_mnist.
  --config.FIELD=VALUE               override a field (any number of them), typed as the field:
                                     --config.steps=5000  --config.learning_rate=0.5
                                     --config.model.widths='(200, 200)'  (tuples, not lists)
                                     --config.grid="(('seed', (0, 1, 2)),)"
                                     --config.model.name=NAME swaps the model section first.
  --workdir DIR                      where to write (default runs/<config name>). Rerunning the
                                     same command on an unfinished DIR resumes it.
  --restart                          discard what DIR holds (a finished or unfinished run,
                                     its figures) and start over
  --progress=true|false              show progress bars (default true); also --noprogress
  --dry-run                          print the resolved config and the runs it would train,
                                     then stop (validates everything, trains nothing)
  --devices N                        CPU devices to train on (default: one per core, or
                                     $BN_EXP_DEVICES): independent programs run side by side,
                                     one per device; the numbers never depend on N.
                                     --config.data_parallel.devices=K splits each batch
                                     over K devices instead (0: all; see README)
  Several processes (hosts): every process runs the same command with BN_EXP_COORDINATOR=
  host:port (process 0's), BN_EXP_NUM_PROCESSES=N and BN_EXP_PROCESS_ID=i (or
  BN_EXP_COORDINATOR=auto on a TPU pod slice, SLURM, Open MPI); process 0 writes DIR.
  -h, --help                         this text

Exit status: 0 done; 2 bad input (one line naming the field, nothing written); 130 interrupted
(Ctrl-C): the workdir is kept resumable, rerun the same command."""

HELP = """\
bn-exp: train, compare and report the Batch Normalization experiments.

  bn-exp run     [--config NAME[:quick]|PATH] [--workdir DIR] [FLAGS] [--config.FIELD=VALUE ...]
  bn-exp sweep   --config NAME [--workdir DIR] [FLAGS] [--config.FIELD=VALUE ...]
  bn-exp list                        the shipped configs: what each tests, runs, expected time
  bn-exp plot    WORKDIR ...         redraw the figures of each WORKDIR from its summary.json
  bn-exp claims  WORKDIR             recompute WORKDIR's claims from its runs (no training)
  bn-exp compare WORKDIR WORKDIR ... [--output PNG] [--metric NAME]
                                     overlay several workdirs' curves, print their final metrics
  bn-exp report  [--results DIR]     regenerate the claims ledger DIR/README.md (default results)

Flags of run and sweep:
""" + FLAGS_HELP + """

`bn-exp COMMAND --help` describes a command (for run and sweep: with the shipped configs)."""

RUN_HELP = """\
bn-exp {command}: train a config's runs{grid} and write WORKDIR (config.json, metrics.jsonl,
points/, summary.json with the claims, figures, curves.npz, provenance.json).

""" + FLAGS_HELP + """

{configs}"""

# Flags of run/sweep: name -> whether it takes a value (bool flags take an optional =true|false).
FLAGS = {"--config": True, "--workdir": True, "--restart": False, "--progress": False,
         "--dry-run": False, "--devices": True}


class UsageError(Exception):
    pass


@dataclasses.dataclass
class Options:
    spec: str = "fig1_mnist"
    workdir: str | None = None
    restart: bool = False
    progress: bool = True
    dry_run: bool = False
    devices: int | None = None   # CPU devices (bn_experiments.devices); None: the default
    overrides: list = dataclasses.field(default_factory=list)   # [(dotted key, text)]


def _bool(flag: str, text: str) -> bool:
    words = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
    if text.lower() not in words:
        raise UsageError(f"{flag}={text}: use {flag}=true or {flag}=false")
    return words[text.lower()]


def parse_args(argv: list[str]) -> Options:
    """The flags of `bn-exp run/sweep` (absl-style: --flag=value, --flag value, --noflag)."""
    opts, seen, i = Options(), set(), 0
    while i < len(argv):
        arg = argv[i]
        name, eq, value = arg.partition("=")
        if name.startswith("--config."):
            if not eq:
                if i + 1 >= len(argv):
                    raise UsageError(f"{arg} needs a value: {arg}=VALUE")
                value, i = argv[i + 1], i + 1
            opts.overrides.append((name[len("--config."):], value))
        elif name in ("--config", "--workdir", "--devices"):
            if name in seen:
                raise UsageError(f"{name} is given twice; give it once")
            seen.add(name)
            if not eq:
                if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                    raise UsageError(f"{name} needs a value: {name} VALUE")
                value, i = argv[i + 1], i + 1
            if name == "--config":
                opts.spec = value
            elif name == "--devices":
                opts.devices = _device_count(value)
            else:
                opts.workdir = value
        elif name in ("--restart", "--progress", "--dry-run"):
            setattr(opts, name[2:].replace("-", "_"), _bool(name, value) if eq else True)
        elif name in ("--norestart", "--noprogress") and not eq:
            setattr(opts, name[4:], False)
        elif arg.startswith("-"):
            close = difflib.get_close_matches(name, list(FLAGS), n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]}?" if close else f"; known flags: {', '.join(FLAGS)}"
            raise UsageError(f"unknown flag {name}{hint} (see --help)")
        else:
            raise UsageError(f"unexpected argument {arg!r}; flags look like --workdir DIR, "
                             f"overrides like --config.steps=1000 (see --help)")
        i += 1
    return opts


def _device_count(text: str) -> int:
    from bn_experiments import devices
    try:
        return devices.parse_count(text, "--devices")
    except devices.DeviceError as err:
        raise UsageError(str(err)) from None


def _configure_devices(opts: Options) -> None:
    """The CPU device count, set before anything starts JAX's backend (loading a config may), and
    the persistent compilation cache (bn_experiments.devices)."""
    from bn_experiments import devices
    try:
        devices.configure(opts.devices)
    except devices.DeviceError as err:
        raise UsageError(str(err)) from None
    devices.compilation_cache()


def _config(opts: Options):
    """The config of `opts`: loaded (config_load.load), overridden, through the gate."""
    from bn_experiments import config as config_lib, config_load

    cfg = config_load.load(opts.spec)
    config_load.apply_overrides(cfg, opts.overrides)
    config_lib.check(cfg)
    return cfg


def _load_config(argv: list[str]):
    """(config, workdir, restart, progress) of a `bn-exp run` command line."""
    opts = parse_args(argv)
    cfg = _config(opts)
    return cfg, _workdir(opts), opts.restart, opts.progress


def _workdir(opts: Options) -> str:
    return opts.workdir or f"runs/{pathlib.Path(opts.spec.partition(':')[0]).stem}"


MAX_LISTED = 40


def _print_results(doc: dict, workdir: str) -> None:
    from bn_experiments.compare import fmt as _number
    runs = doc["runs"]
    for run in runs[:MAX_LISTED]:
        f = run["final"]
        div = run["diverged_at_step"]
        print(f"{run['name']}: test_accuracy {_number(f.get('test_accuracy'))}, "
              f"max {_number(f.get('max_test_accuracy'))}, "
              f"steps_to_target {_number(f.get('steps_to_target'))}"
              + (f", diverged at step {div:,}" if div is not None else ""))
    if len(runs) > MAX_LISTED:
        print(f"... and {len(runs) - MAX_LISTED} more runs (all of them in {workdir}/summary.json)")
    if doc.get("smoke"):
        print("smoke run (`:quick`): too short for verdicts; every claim is inconclusive and "
              "`bn-exp report` leaves this workdir out of the ledger")
    for claim in doc["claims"]:
        print(f"[{claim['verdict']}] {claim['claim']}: {claim['measured']}")
    print(f"wrote {workdir}")


def _dry_run(cfg, workdir: str) -> int:
    import json

    from bn_experiments import runner

    runs, groups = runner.plan(cfg)
    print(json.dumps(cfg.to_dict(), indent=1, sort_keys=True))
    print(f"{len(runs)} run(s) in {len(groups)} program(s), {cfg.steps:,} steps each, "
          f"into {workdir}:")
    for gi, group in enumerate(groups, 1):
        for run in group:
            print(f"  program {gi}: {run.name}")
    print("dry run: nothing trained or written")
    return 0


def cmd_run(argv: list[str], *, sweep: bool = False) -> int:
    from bn_experiments import runner

    opts = parse_args(argv)
    _configure_devices(opts)
    _join_processes()
    cfg = _config(opts)
    if sweep and not cfg.get("grid"):
        raise UsageError("this config has no `grid`; use `bn-exp run` for it, or add a grid")
    workdir = _workdir(opts)
    if opts.dry_run:
        return _dry_run(cfg, workdir)
    from bn_experiments import distributed
    writer = distributed.is_writer()
    where = distributed.process_workdir(workdir, restart=opts.restart) if not writer else workdir
    doc = runner.train_and_evaluate(cfg, where, restart=opts.restart,
                                    progress=opts.progress and writer, plot=writer)
    if writer:
        _print_results(doc, workdir)
    return 0


def _join_processes() -> None:
    """Several processes (BN_EXP_COORDINATOR, BN_EXP_NUM_PROCESSES, BN_EXP_PROCESS_ID): joins
    the group before anything starts the backend (bn_experiments.distributed); nothing for one."""
    from bn_experiments import distributed
    try:
        distributed.initialize(distributed.settings())
    except distributed.DistributedError as err:
        raise UsageError(str(err)) from None


def cmd_list(argv: list[str]) -> int:
    argparse.ArgumentParser(prog="bn-exp list", description="The shipped configs: what each "
                            "tests, how many runs, steps per run, expected time.").parse_args(argv)
    from bn_experiments import listing
    print(listing.table())
    return 0


def _load_summary(path: pathlib.Path, *, claims: bool = True) -> dict:
    from bn_experiments import summary
    try:
        return summary.load(path, claims=claims)
    except ValueError as err:
        raise UsageError(f"{err}; run the experiment first (bn-exp run/sweep)") from None


def cmd_plot(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bn-exp plot", description="Redraw figures from "
                                     "WORKDIR/summary.json (several workdirs: `bn-exp compare`).")
    parser.add_argument("workdir", nargs="+")
    args = parser.parse_args(argv)
    from bn_experiments import experiments
    for workdir in args.workdir:
        _load_summary(pathlib.Path(workdir) / "summary.json")
    for workdir in args.workdir:
        for path in experiments.draw_figures(workdir):
            print(path)
    return 0


def cmd_compare(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="bn-exp compare", description="Overlay the curves of several workdirs' runs in one "
        "figure and print a table of their final metrics (from each summary.json).")
    parser.add_argument("workdir", nargs="+")
    parser.add_argument("--output", default="compare.png", help="the figure (default compare.png)")
    parser.add_argument("--metric", default="test_accuracy",
                        help="the curve to draw (default test_accuracy; e.g. train_loss)")
    args = parser.parse_args(argv)
    from bn_experiments import compare
    for workdir in args.workdir:
        _load_summary(pathlib.Path(workdir) / "summary.json", claims=False)
    entries = compare.load(args.workdir)
    print(compare.table(entries))
    path = compare.figure(entries, args.output, args.metric)
    if path is None:
        raise UsageError(f"--metric {args.metric}: no run of these workdirs has that curve")
    print(f"wrote {path}")
    return 0


def cmd_claims(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="bn-exp claims", description="Recompute the claims of WORKDIR/summary.json from its "
        "runs with the current claim rules (no retraining); the old claim rows are replaced, "
        "whatever rules or contract they were written under.")
    parser.add_argument("workdir")
    args = parser.parse_args(argv)
    from bn_experiments import experiments, summary
    path = pathlib.Path(args.workdir) / "summary.json"
    doc = _load_summary(path, claims=False)
    doc["claims"] = experiments.compute_claims(doc["experiment"], doc["runs"])
    if doc.get(summary.SMOKE):
        doc = summary.mark_smoke(doc)
    summary.write(path, doc)
    for claim in doc["claims"]:
        print(f"[{claim['verdict']}] {claim['claim']}: {claim['measured']}")
    return 0


def cmd_report(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bn-exp report",
                                     description="Regenerate the claims ledger results/README.md.")
    parser.add_argument("--results", default="results")
    args = parser.parse_args(argv)
    from bn_experiments import report
    print(report.write(args.results))
    return 0


def cmd_sweep(argv: list[str]) -> int:
    return cmd_run(argv, sweep=True)


COMMANDS = {"run": cmd_run, "sweep": cmd_sweep, "list": cmd_list, "plot": cmd_plot,
            "claims": cmd_claims, "compare": cmd_compare, "report": cmd_report}


def run_help(command: str) -> str:
    from bn_experiments import listing
    return RUN_HELP.format(command=command, grid=" (every point of its `grid`)"
                           if command == "sweep" else "", configs=listing.table())


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(HELP)
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        close = difflib.get_close_matches(command, list(COMMANDS), n=1)
        print(f"bn-exp: error: unknown command {command!r}"
              + (f"; did you mean {close[0]!r}?" if close else f"; use one of {', '.join(COMMANDS)}"),
              file=sys.stderr)
        return 2
    if command in ("run", "sweep") and any(a in ("-h", "--help") for a in rest):
        print(run_help(command))
        return 0
    from bn_experiments.config import ConfigError
    from bn_experiments.data import DataError
    from bn_experiments.interrupt import Interrupted
    from bn_experiments.report import ResultsError
    from bn_experiments.workdir import WorkdirError
    try:
        return COMMANDS[command](rest)
    except (UsageError, ConfigError, DataError, WorkdirError, ResultsError) as err:
        print(f"bn-exp {command}: error: {err}", file=sys.stderr)
        return 2
    except (Interrupted, KeyboardInterrupt) as err:
        what = str(err) if isinstance(err, Interrupted) else "interrupted"
        print(f"bn-exp {command}: {what}; finished runs are kept: rerun the same command to "
              f"resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

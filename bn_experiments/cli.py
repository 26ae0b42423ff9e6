"""`bn-exp`: run, plot and report experiments from the command line.

    bn-exp run [--config fig1_mnist[:quick]] [--workdir DIR] [--restart] [--config.FIELD=VALUE ...]
    bn-exp sweep --config lr_sweep [--workdir DIR] [--restart] [--config.FIELD=VALUE ...]
    bn-exp plot WORKDIR
    bn-exp claims WORKDIR
    bn-exp report [--results results]

A thin layer over importable functions (`runner.train_and_evaluate`,
`experiments.draw_figures`, `experiments.compute_claims`, `report.write`), so notebooks can call
them directly. Bad input exits with status 2 and one line naming the field and the fix, before
anything is compiled. `--config.model.name=NAME` swaps the model section to family NAME
(`config.set_model`) before the other overrides, so NAME's own fields can be overridden after it.
"""
from __future__ import annotations

import argparse
import pathlib
import sys

from absl import flags
from ml_collections import config_flags

USAGE = __doc__.split("\n\n")[1]


class UsageError(Exception):
    pass


def _load_config(argv: list[str]):
    """absl-style parsing of `--config PATH[:ARG]` plus `--config.FIELD=VALUE` overrides."""
    from bn_experiments import config as config_lib

    model_name, argv = _pop_model_name(list(argv))
    spec, where, spec_args = "fig1_mnist", None, set()
    for i, a in enumerate(argv):
        if a == "--config" and i + 1 < len(argv):
            spec, where = argv[i + 1], i + 1
            spec_args |= {i, i + 1}
        elif a.startswith("--config="):
            spec, where = a.split("=", 1)[1], i
            spec_args.add(i)
    overrides = [a for i, a in enumerate(argv) if i not in spec_args]
    path = config_lib.resolve_path(spec)
    if where is None:
        argv = ["--config", path, *argv]
    elif argv[where].startswith("--config="):
        argv[where] = "--config=" + path
    else:
        argv[where] = path

    fv = flags.FlagValues()
    if model_name is None:
        config_flags.DEFINE_config_file("config", None, "experiment config file", flag_values=fv,
                                        lock_config=False, sys_argv=["bn-exp run", *argv])
    else:
        # The file's config with its model section swapped first; the other overrides then apply
        # to it exactly as to a config file (absl parses them against this ConfigDict).
        loaded = config_lib.set_model(_read_config_file(path), model_name)
        argv = overrides
        config_flags.DEFINE_config_dict("config", loaded, "experiment config", flag_values=fv,
                                        lock_config=False, sys_argv=["bn-exp run", *argv])
    flags.DEFINE_string("workdir", None, "output directory", flag_values=fv)
    flags.DEFINE_bool("restart", False, "overwrite a finished workdir", flag_values=fv)
    flags.DEFINE_bool("progress", True, "show progress bars", flag_values=fv)
    try:
        fv(["bn-exp run", *argv])
    except flags.Error as err:
        raise UsageError(str(err).splitlines()[0]) from None
    except (KeyError, AttributeError, TypeError, ValueError) as err:
        cfg = _read_config_file(path)
        if model_name is not None:
            config_lib.set_model(cfg, model_name)
        _explain_unknown_override(cfg, argv)
        raise UsageError(f"bad --config override: {err}") from None
    stem = pathlib.Path(path.partition(":")[0]).stem
    return fv.config, fv.workdir or f"runs/{stem}", fv.restart, fv.progress


def _pop_model_name(argv: list[str]) -> tuple[str | None, list[str]]:
    """Takes `--config.model.name=NAME` (or `--config.model.name NAME`; the last wins) out of
    argv: it is applied with `config.set_model`, not as a plain override."""
    name, rest, i = None, [], 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("--config.model.name="):
            name = a.split("=", 1)[1]
        elif a == "--config.model.name" and i + 1 < len(argv):
            name, i = argv[i + 1], i + 1
        else:
            rest.append(a)
        i += 1
    return name, rest


def _read_config_file(path: str):
    """`get_config(arg)` of a config file `PATH[:ARG]`."""
    import importlib.util

    file, _, arg = path.partition(":")
    spec = importlib.util.spec_from_file_location("_bn_exp_config", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg or None)


def _explain_unknown_override(cfg, argv: list[str]) -> None:
    """Raises a did-you-mean error for the first `--config.KEY` the config does not have."""
    from bn_experiments import config as config_lib

    for a in argv:
        if a.startswith("--config."):
            key = a[len("--config."):].partition("=")[0]
            if key not in config_lib.flatten(cfg):
                config_lib.set_dotted(cfg, key, None)  # raises ConfigError with a did-you-mean


def cmd_run(argv: list[str], *, sweep: bool = False) -> int:
    from bn_experiments import config as config_lib, runner
    from bn_experiments.configs import default

    cfg, workdir, restart, progress = _load_config(argv)
    config_lib.validate(cfg, reference=default.get_config())
    if sweep and not cfg.get("grid"):
        raise UsageError("this config has no `grid`; use `bn-exp run` for it, or add a grid")
    doc = runner.train_and_evaluate(cfg, workdir, restart=restart, progress=progress)
    for run in doc["runs"][:40]:
        f = run["final"]
        div = f", diverged at step {run['diverged_at_step']}" if run["diverged_at_step"] else ""
        print(f"{run['name']}: test_accuracy={f.get('test_accuracy')} "
              f"max={f.get('max_test_accuracy')} steps_to_target={f.get('steps_to_target')}{div}")
    for claim in doc["claims"]:
        print(f"[{claim['verdict']}] {claim['claim']}: {claim['measured']}")
    print(f"wrote {workdir}")
    return 0


def _load_summary(path: pathlib.Path, *, claims: bool = True) -> dict:
    from bn_experiments import summary
    try:
        return summary.load(path, claims=claims)
    except ValueError as err:
        raise UsageError(f"{err}; run the experiment first (bn-exp run/sweep)") from None


def cmd_plot(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bn-exp plot", description="Redraw figures from summary.json.")
    parser.add_argument("workdir")
    args = parser.parse_args(argv)
    from bn_experiments import experiments
    _load_summary(pathlib.Path(args.workdir) / "summary.json")
    for path in experiments.draw_figures(args.workdir):
        print(path)
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


COMMANDS = {"run": cmd_run, "sweep": cmd_sweep, "plot": cmd_plot, "claims": cmd_claims,
            "report": cmd_report}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(__doc__.strip())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"bn-exp: error: unknown command {command!r}; use one of {', '.join(COMMANDS)}",
              file=sys.stderr)
        return 2
    if command in ("run", "sweep") and rest and rest[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    from bn_experiments.config import ConfigError
    from bn_experiments.data import DataError
    from bn_experiments.runner import WorkdirError
    try:
        return COMMANDS[command](rest)
    except (UsageError, ConfigError, DataError, WorkdirError) as err:
        print(f"bn-exp {command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"bn-exp {command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

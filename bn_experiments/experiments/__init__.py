"""Experiments, one module each: what an experiment owns (claims, figures, probe), by name.

An experiment is a config file `configs/<name>.py` (what to run) and a module
`bn_experiments/experiments/<name>.py` (what to conclude and draw), which ends with

    register(Experiment("<name>", claims=claims, figures=figures, probe=None))

- `claims(runs) -> list[dict]`: claim rows of summary.json computed from the runs' measured
  numbers through `bn_experiments.stats` (the verdict rule in words in each row's evidence);
- `figures(doc, workdir) -> list[pathlib.Path]`: PNG files drawn from summary.json alone, with the
  shared style of `bn_experiments.plotting`;
- `probe`: an optional `bn_experiments.probe.Probe`, a measurement compiled into the run's
  evaluations (see that module).

Modules in this package are found by name, so adding an experiment edits nothing else: not the
runner, not the trainer, not this file. An experiment name with no module gets no claims and the
generic figure (test accuracy of every run).
"""
from __future__ import annotations

import dataclasses
import importlib
import pathlib
import pkgutil
from typing import Callable

from bn_experiments.probe import Probe

Claims = Callable[[list[dict]], list[dict]]
Figures = Callable[[dict, pathlib.Path], list[pathlib.Path]]


def _no_claims(runs: list[dict]) -> list[dict]:
    return []


@dataclasses.dataclass(frozen=True)
class Experiment:
    name: str
    claims: Claims = _no_claims
    figures: Figures | None = None   # None: the generic test-accuracy figure
    probe: Probe | None = None


_REGISTRY: dict[str, Experiment] = {}
_DISCOVERED = False


def register(experiment: Experiment) -> Experiment:
    """Adds `experiment` to the registry (a module calls this once, at import)."""
    if experiment.name in _REGISTRY and _REGISTRY[experiment.name] != experiment:
        raise ValueError(f"experiment {experiment.name!r} is registered twice")
    _REGISTRY[experiment.name] = experiment
    return experiment


def _discover() -> None:
    """Imports every module of this package once, so each registers itself."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    _DISCOVERED = True
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


def get(name: str) -> Experiment:
    """The registered experiment `name`, or a plain one (no claims, generic figure)."""
    _discover()
    return _REGISTRY.get(name, Experiment(name))


def names() -> list[str]:
    _discover()
    return sorted(_REGISTRY)


def compute_claims(name: str, runs: list[dict]) -> list[dict]:
    """The claim rows of experiment `name` recomputed from its runs."""
    return get(name).claims(runs)


def draw_figures(workdir: str | pathlib.Path) -> list[pathlib.Path]:
    """Redraws the figures of `workdir/summary.json` (refused if it breaks the contract)."""
    from bn_experiments import plotting, summary

    workdir = pathlib.Path(workdir)
    doc = summary.load(workdir / "summary.json")
    figures = get(doc["experiment"]).figures or plotting.generic_figures
    return figures(doc, workdir)

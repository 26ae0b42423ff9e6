"""`bn-exp list` (and the end of `bn-exp run --help`): the shipped configs at a glance.

For each config: the first sentence of its docstring (what it tests), its runs, steps per run and
an expected wall time on a 2-core CPU. The time is an estimate from the work (steps x batch x
parameters, plus the evaluations on the test set) at the rate measured for Figure 1's run (the
Speed section of the README), plus a few seconds of compilation per program; models whose work per
parameter is larger (convolutions) take longer than it says. Nothing is compiled or trained.
"""
from __future__ import annotations

import ast
import math
import re

# Figure 1 (2 runs x 50,000 steps of a 99,400-parameter MLP at batch 60, 101 evaluations of
# 2,000 test images) took 65 s on the 2-core CPU: about 1e10 multiply-adds per second, all in.
RATE = 1.0e10
COMPILE_SECONDS = 4.0
TEST_EXAMPLES = 2_000  # mnist_embedded's test split
_SENTENCE_END = re.compile(r"(?<!\bSec)(?<!\bal)(?<!\be\.g)(?<!\bi\.e)(?<!\bvs)\.(?=\s|$)")


def describe(path) -> str:
    """The first sentence of a config file's docstring, on one line."""
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    text = " ".join(doc.split("\n\n")[0].split())
    end = _SENTENCE_END.search(text)
    return text if end is None else text[:end.start() + 1]


def _parameters(run) -> int:
    import jax

    from bn_experiments import models, train
    family = models.get(run.static.model_name)
    numbers = train.numbers_to_arrays(run.numbers)
    shapes = jax.eval_shape(lambda k: family.init(k, run.static.model, numbers)[0],
                            jax.random.key(0))
    return sum(math.prod(x.shape) for x in jax.tree.leaves(shapes))


def estimate_seconds(runs, groups) -> float:
    """Expected wall time of training `runs` (grouped in programs) on a 2-core CPU."""
    work, sizes = 0.0, {}
    for run in runs:
        s = run.static
        key = (s.model_name, s.model)
        if key not in sizes:
            sizes[key] = _parameters(run)
        evals = len(s.schedule_steps()) + 1
        work += sizes[key] * (s.steps * s.batch_size + evals * TEST_EXAMPLES)
    return work / RATE + COMPILE_SECONDS * len(groups)


def fmt_seconds(seconds: float) -> str:
    if seconds < 90:
        return f"~{max(5, round(seconds / 5) * 5):.0f} s"
    if seconds < 5400:
        return f"~{round(seconds / 60):.0f} min"
    return f"~{seconds / 3600:.1f} h"


def rows() -> list[tuple[str, str, int, int, str]]:
    """(name, description, runs, steps per run, expected time) per shipped config."""
    from bn_experiments import config as config_lib, config_load, runner, sweep
    out = []
    for name in config_load.shipped_configs():
        path = config_lib.config_dir() / f"{name}.py"
        try:
            cfg = config_load.load(name)
            runs = sweep.expand(cfg)
            groups = runner._groups(runs, int(cfg.get("points_per_program", 16)))
            time = fmt_seconds(estimate_seconds(runs, groups))
        except Exception as err:  # noqa: BLE001 (one broken config must not hide the others)
            out.append((name, f"(cannot be expanded: {type(err).__name__}: {err})", 0, 0, "?"))
            continue
        out.append((name, describe(path), len(runs), int(cfg.steps), time))
    return out


def table() -> str:
    lines = ["Shipped configs (--config NAME; NAME:quick for a seconds-long smoke run). Times are "
             "rough estimates (within about 2x) for a 2-core CPU:", ""]
    found = rows()
    width = max((len(r[0]) for r in found), default=0)
    for name, description, n, steps, time in found:
        lines.append(f"  {name:<{width}} {n:>4} run{'s' if n != 1 else ' '} x {steps:>6,} steps  "
                     f"{time:>8}  {description}")
    return "\n".join(lines)

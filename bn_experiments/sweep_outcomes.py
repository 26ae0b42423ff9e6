"""What a sweep's run achieved: the fail rule and the selections the sweep claims rest on.

A learning rate or an init scale "fails" a network when training either blows up or goes
nowhere. Counting only non-finite losses (the old sweeps' "divergence") misses the runs that stay
finite at chance accuracy, which is how a plain sigmoid network usually fails at a large learning
rate or a bad init: its units saturate, or its weights grow until every input lands in the same
class. So a run's outcome is one of

- `diverged`: its loss or gradients went non-finite (the trainer's `diverged_at_step`);
- `chance`: finite, but its best validation accuracy stayed below `CHANCE_LIMIT` (0.2; chance is
  0.1 on 10 classes);
- `collapsed`: it left chance, but its final validation accuracy is back below `CHANCE_LIMIT`;
- `trains`: finite with a final validation accuracy of at least `CHANCE_LIMIT`;

and it fails unless it `trains`. "Validation" is the evaluation split of the run's data source
(`validation:<n>:<source>` holds n training images out; the summary calls it `test_accuracy`).

Selections (one arm, one seed, its runs over one swept key): the largest value of the key that
trains (`largest_training`), and the value with the best final validation accuracy among the runs
that train (`best_over`) -- "each arm at its best learning rate".
"""
from __future__ import annotations

from bn_experiments import runs as runs_lib

CHANCE_LIMIT = 0.2
OUTCOMES = ("trains", "collapsed", "chance", "diverged")


def final_accuracy(run: dict) -> float | None:
    """Validation accuracy at the last evaluation; None for a run that diverged."""
    if run.get("diverged_at_step") is not None:
        return None
    v = run["final"].get("test_accuracy")
    return v if runs_lib.finite(v) else None


def outcome(run: dict) -> str:
    """`trains`, `collapsed`, `chance` or `diverged` (the module docstring)."""
    if run.get("diverged_at_step") is not None or run["final"].get("diverged"):
        return "diverged"
    best = run["final"].get("max_test_accuracy")
    if not runs_lib.finite(best) or best < CHANCE_LIMIT:
        return "chance"
    final = final_accuracy(run)
    return "trains" if final is not None and final >= CHANCE_LIMIT else "collapsed"


def fails(run: dict) -> bool:
    """The run diverged or ended at chance (best or final validation accuracy below 0.2)."""
    return outcome(run) != "trains"


def counts_by_value(runs: list[dict], key: str) -> dict:
    """{value of `key`: {outcome: number of runs}} over `runs`, values in grid order."""
    out: dict = {}
    for v in runs_lib.values(runs, key):
        here = [outcome(r) for r in runs if runs_lib.cfg(r, key) == v]
        out[v] = {o: here.count(o) for o in OUTCOMES}
    return out


def largest_training(runs: list[dict], key: str) -> float | None:
    """The largest value of config `key` among `runs` (one arm, one seed) whose run trains."""
    ok = [runs_lib.cfg(r, key) for r in runs if not fails(r)]
    return max(ok) if ok else None


def best_over(runs: list[dict], key: str) -> tuple[float | None, float | None]:
    """(value of `key`, final validation accuracy) of the best run among `runs` (one arm, one
    seed, one setting of everything else) that trains; (None, None) when none does. Ties go to
    the smaller value."""
    best = (None, None)
    for r in sorted(runs, key=lambda r: runs_lib.cfg(r, key)):
        acc = final_accuracy(r)
        if not fails(r) and (best[1] is None or acc > best[1]):
            best = (runs_lib.cfg(r, key), acc)
    return best


def fail_table(runs: list[dict], key: str, fmt=lambda v: f"{v:g}") -> str:
    """'0.25 0/3, 0.35 0/3, ..., 64 3/3 (2 chance, 1 diverged)': failed seeds per value."""
    parts = []
    for v, c in counts_by_value(runs, key).items():
        n, bad = sum(c.values()), sum(c[o] for o in OUTCOMES[1:])
        why = ", ".join(f"{c[o]} {o}" for o in OUTCOMES[1:] if c[o])
        parts.append(f"{fmt(v)} {bad}/{n}" + (f" ({why})" if bad else ""))
    return ", ".join(parts)

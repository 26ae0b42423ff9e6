"""Statistics under every verdict: paired seeds, intervals of the paired difference, and the rules.

A claim compares two arms (with and without BN, say) that share everything but the one thing the
claim is about. Runs with the same seed share their initial weights (where the shapes agree) and
their batch order, so the comparison is PAIRED by seed: for each seed s the difference
d_s = measure(arm A, s) - measure(arm B, s), and the claim rests on the mean of d over seeds with a
95% t-interval (mean +- t_{0.975, n-1} * sd / sqrt(n), sd with ddof=1). A t-interval rather than a
bootstrap because there are 3 to 10 seeds: a bootstrap over so few values understates the spread.

The verdict of one comparison (`verdict`):
- fewer seeds than the claim needs (one seed never suffices; headline claims need
  `HEADLINE_SEEDS`): `inconclusive`;
- the interval lies on the side the paper predicts: `reproduced`;
- the interval lies on the other side: `not reproduced`;
- the interval contains zero (the difference is inside the noise of the seeds run): `inconclusive`.

A claim measured in several settings (activations, depths, thresholds) uses `verdict_over`: each
setting's interval is classified as above and the verdict counts them (see its docstring).
`partly reproduced` is never a default: it is given only by an explicit rule, when settings
significantly disagree or when the effect has the paper's sign but not its stated magnitude.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Mapping

REPRODUCED, PARTLY, NOT_REPRODUCED, INCONCLUSIVE = (
    "reproduced", "partly reproduced", "not reproduced", "inconclusive")
VERDICTS = (REPRODUCED, PARTLY, NOT_REPRODUCED, INCONCLUSIVE)
MIN_SEEDS = 2        # one seed never gives a verdict
HEADLINE_SEEDS = 5   # the paper's headline claims need at least this many

# t_{0.975, df} for df = 1..30 (two-sided 95%); beyond 30 the Cornish-Fisher expansion is exact to
# 3 decimals.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t975(df: int) -> float:
    """The 97.5% quantile of Student's t with `df` degrees of freedom."""
    if df < 1:
        raise ValueError(f"t975 needs df >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


@dataclasses.dataclass(frozen=True)
class Interval:
    """Mean, std (ddof=1) and 95% t-interval of `n` paired differences (None where undefined)."""
    n: int
    mean: float | None
    std: float | None
    low: float | None
    high: float | None

    @property
    def ci95(self) -> list[float] | None:
        return None if self.low is None else [self.low, self.high]

    def side(self) -> int:
        """+1 when the interval lies above zero, -1 below, 0 when it contains zero or is undefined."""
        if self.low is None or self.n < MIN_SEEDS:
            return 0
        return 1 if self.low > 0 else -1 if self.high < 0 else 0


def _finite(v) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def interval(values: Iterable[float | None]) -> Interval:
    """The t-interval of `values` (non-finite ones dropped)."""
    vals = [float(v) for v in values if _finite(v)]
    n = len(vals)
    if n == 0:
        return Interval(0, None, None, None, None)
    mean = math.fsum(vals) / n
    if n == 1:
        return Interval(1, mean, None, None, None)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in vals) / (n - 1))
    half = t975(n - 1) * std / math.sqrt(n)
    return Interval(n, mean, std, mean - half, mean + half)


def paired(a: Mapping, b: Mapping) -> Interval:
    """The interval of a[s] - b[s] over the seeds s where both arms have a finite value."""
    return interval(a[s] - b[s] for s in sorted(set(a) & set(b), key=repr)
                    if _finite(a[s]) and _finite(b[s]))


def verdict(iv: Interval, *, expect: int = 1, min_seeds: int = MIN_SEEDS) -> str:
    """The verdict of one paired comparison; `expect` is the sign of the difference the paper
    predicts (+1: arm A larger)."""
    if iv.n < max(min_seeds, MIN_SEEDS):
        return INCONCLUSIVE
    side = iv.side() * expect
    return REPRODUCED if side > 0 else NOT_REPRODUCED if side < 0 else INCONCLUSIVE


def verdict_over(intervals: Iterable[Interval], *, expect: int = 1, min_seeds: int = MIN_SEEDS,
                 share: float = 0.5) -> tuple[str, dict[str, int]]:
    """The verdict of a claim measured in several settings, and the counts it rests on.

    Each setting's interval (with at least `min_seeds` seeds) agrees with the paper, opposes it,
    or is inside the noise. Reproduced: at least `share` of the settings agree and none opposes.
    Not reproduced: at least `share` oppose and none agrees. Partly reproduced: some settings
    significantly agree and others significantly oppose (the answer depends on the setting).
    Otherwise inconclusive.
    """
    counts = {"agree": 0, "oppose": 0, "noise": 0, "too_few_seeds": 0}
    for iv in intervals:
        if iv.n < max(min_seeds, MIN_SEEDS):
            counts["too_few_seeds"] += 1
            continue
        side = iv.side() * expect
        counts["agree" if side > 0 else "oppose" if side < 0 else "noise"] += 1
    total = sum(counts.values())
    if total == 0:
        return INCONCLUSIVE, counts
    if counts["agree"] and counts["oppose"]:
        return PARTLY, counts
    if counts["agree"] >= share * total and counts["agree"]:
        return REPRODUCED, counts
    if counts["oppose"] >= share * total and counts["oppose"]:
        return NOT_REPRODUCED, counts
    return INCONCLUSIVE, counts


def rule_single(what: str, *, expect_text: str, min_seeds: int = MIN_SEEDS) -> str:
    """The rule of `verdict` in words, for a claim row's evidence."""
    return (f"paired by seed: d = {what}; 95% t-interval of mean d over seeds. Reproduced when the "
            f"interval lies {expect_text}, not reproduced when it lies on the other side of zero, "
            f"inconclusive when it contains zero or fewer than {max(min_seeds, MIN_SEEDS)} seeds "
            f"ran.")


def rule_over(what: str, settings: str, *, expect_text: str, min_seeds: int = MIN_SEEDS,
              share: float = 0.5) -> str:
    """The rule of `verdict_over` in words, for a claim row's evidence."""
    return (f"paired by seed in each {settings}: d = {what}, with its 95% t-interval (at least "
            f"{max(min_seeds, MIN_SEEDS)} seeds). Reproduced when at least {share:.0%} of the "
            f"{settings}s have the interval {expect_text} and none the opposite; not reproduced "
            f"in the mirror case; partly reproduced when some {settings}s significantly agree "
            f"and others significantly disagree; inconclusive otherwise.")


def seeds_note(n: int, need: int) -> str:
    """A clause for a measured text when fewer seeds ran than the claim's verdict needs."""
    need = max(need, MIN_SEEDS)
    return "" if n >= need else f" [a verdict needs at least {need} seeds; {n} ran]"


def fmt(iv: Interval, digits: int = 3, unit: str = "") -> str:
    """'mean 0.012 [0.004, 0.020] (n=3)' for a measured-text field."""
    if iv.n == 0:
        return "no data"
    g = lambda v: f"{v:.{digits}g}{unit}"  # noqa: E731
    if iv.low is None:
        return f"{g(iv.mean)} (n=1, no interval)"
    return f"{g(iv.mean)} [{g(iv.low)}, {g(iv.high)}] (n={iv.n})"


def mean_std(values: Iterable[float | None], digits: int = 4) -> str:
    """'0.951 ± 0.004' over the finite values (std ddof=1), for the arms of a comparison."""
    vals = [float(v) for v in values if _finite(v)]
    if not vals:
        return "n/a"
    if len(vals) == 1:
        return f"{vals[0]:.{digits}g}"
    m = math.fsum(vals) / len(vals)
    sd = math.sqrt(math.fsum((v - m) ** 2 for v in vals) / (len(vals) - 1))
    return f"{m:.{digits}g} ± {sd:.2g}"


def evidence(iv: Interval | None, rule: str, *, seeds: int | None = None) -> dict:
    """The `evidence` object of a claim row: seeds, effect (mean paired difference), ci95, rule."""
    n = seeds if seeds is not None else (iv.n if iv is not None else 0)
    return {"seeds": max(int(n), 1),
            "effect": None if iv is None or iv.mean is None else float(f"{iv.mean:.6g}"),
            "ci95": None if iv is None or iv.ci95 is None
            else [float(f"{iv.low:.6g}"), float(f"{iv.high:.6g}")],
            "rule": rule}


def evidence_over(intervals: Iterable[Interval], rule: str, *, seeds: int,
                  over: str = "settings") -> dict:
    """The `evidence` of a claim measured over several settings (`verdict_over`): the effect is
    the mean over settings of each setting's mean paired difference, and there is no single
    interval (each setting's interval is in the row's measured text; the verdict counts them)."""
    means = [iv.mean for iv in intervals if iv.mean is not None]
    return {"seeds": max(int(seeds), 1),
            "effect": float(f"{math.fsum(means) / len(means):.6g}") if means else None,
            "ci95": None,
            "rule": f"{rule} Effect: the mean over {over} of the mean paired difference; each "
                    f"{over.rstrip('s')}'s 95% interval is in the measured text."}


def first_reach(steps, values, target: float) -> int | None:
    """The first step whose value is at least `target` (None if never)."""
    for s, v in zip(steps, values):
        if _finite(v) and v >= target:
            return int(s)
    return None

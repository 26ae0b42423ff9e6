"""Claims computed from measured runs: each verdict is a rule over numbers, never typed by hand.

`CLAIMS[experiment](runs) -> list of claim rows` (the summary.json `claims` list); `runs` are the
summary's run dicts. An experiment without an entry states no claims.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from bn_experiments.summary import verdict

# The paper's reading of its Figure 1 (Ioffe & Szegedy 2015, Sec. 4.1), values read off the plot.
PAPER_FIG1A = ("Fig. 1(a), read off the plot: with BN ~0.953 at ~4K steps vs 0.71-0.79 without; "
               "0.966 vs 0.926 at 10K; end ~0.982 vs ~0.972 (60K MNIST images)")
PAPER_FIG1BC = ("Fig. 1(b,c): without BN the median swings to about +1.0 early and drifts; with BN "
                "it stays near 0 and the 15-85 band widens slowly (-1.2..+1.3 to -1.9..+2.0)")


def _by_name(runs: list[dict]) -> dict[str, dict]:
    return {r["name"]: r for r in runs}


def _fmt_steps(s) -> str:
    return "never" if s is None else f"{s:,} steps"


def _fmt_acc(a) -> str:
    return "n/a" if a is None else f"{a:.4f}"


def drift(run: dict, start_fraction: float = 0.05) -> float | None:
    """Drift of the tracked sigmoid inputs over training, on the whole test set.

    For each tracked unit u, over the evaluations after the first `start_fraction` of the steps:
    (max - min of the median) + (max - min of the 15-85 band width), in the units of the
    nonlinearity's input; averaged over the tracked units. Test-set percentiles (2,000 images)
    are used rather than the per-step 60-example batch ones, whose sampling noise would dominate.
    Zero means the distribution never moved. None when the run has no such curves.
    """
    cfg, curves = run["config"], run["curves"]
    units = cfg.get("model.tracked_units") or [0]
    start = start_fraction * cfg.get("steps", 0)
    values = []
    for i, u in enumerate(units):
        suffix = "" if i == 0 else f"_unit{u}"
        try:
            steps = np.asarray(curves[f"test_preact_p50{suffix}"]["step"])
            p = {q: np.asarray(curves[f"test_preact_p{q}{suffix}"]["value"], dtype=float)
                 for q in (15, 50, 85)}
        except KeyError:
            continue
        keep = (steps >= start) & np.isfinite(p[15]) & np.isfinite(p[50]) & np.isfinite(p[85])
        if keep.sum() < 2:
            continue
        median, band = p[50][keep], (p[85] - p[15])[keep]
        values.append(np.ptp(median) + np.ptp(band))
    return float(np.mean(values)) if values else None


def fig1(runs: list[dict]) -> list[dict]:
    """Figure 1 claims. Rules:

    - bn_trains_faster: steps to reach `target_accuracy` (first evaluation at or above it).
      Reproduced when BN gets there at least 2x sooner (or only BN gets there); partly when BN
      is sooner by less than 2x; not reproduced otherwise.
    - bn_higher_accuracy: final and max test accuracy. Reproduced when BN is higher on both;
      partly when on one.
    - bn_stabilizes_sigmoid_input: `drift` of the tracked units. Reproduced when BN's drift is
      under half of the drift without BN; partly when under it; not reproduced otherwise.
    """
    r = _by_name(runs)
    if not {"bn", "no_bn"} <= set(r):
        return []
    bn, nobn = r["bn"], r["no_bn"]
    target = bn["config"].get("target_accuracy")
    s_bn, s_no = bn["final"].get("steps_to_target"), nobn["final"].get("steps_to_target")
    faster = s_bn is not None and (s_no is None or s_bn * 2 <= s_no)
    sooner = s_bn is not None and (s_no is None or s_bn < s_no)
    ratio = f" ({s_no / s_bn:.1f}x sooner)" if s_bn and s_no else ""
    claims = [{
        "id": "fig1.bn_trains_faster",
        "claim": "BN reaches a target test accuracy in far fewer steps (Sec. 4.1, Fig. 1a)",
        "measured": f"steps to {target:.0%} test accuracy: BN {_fmt_steps(s_bn)}, "
                    f"no BN {_fmt_steps(s_no)}{ratio}",
        "paper": PAPER_FIG1A, "verdict": verdict(faster, sooner), "figure": "fig1a_test_accuracy.png"}]

    f_bn, f_no = bn["final"].get("test_accuracy"), nobn["final"].get("test_accuracy")
    m_bn, m_no = bn["final"].get("max_test_accuracy"), nobn["final"].get("max_test_accuracy")
    higher = [a is not None and (b is None or a > b) for a, b in ((f_bn, f_no), (m_bn, m_no))]
    claims.append({
        "id": "fig1.bn_higher_accuracy",
        "claim": "BN reaches a higher test accuracy (Sec. 4.1, Fig. 1a)",
        "measured": f"final test accuracy BN {_fmt_acc(f_bn)} vs no BN {_fmt_acc(f_no)}; "
                    f"max BN {_fmt_acc(m_bn)} vs no BN {_fmt_acc(m_no)}",
        "paper": PAPER_FIG1A, "verdict": verdict(all(higher), any(higher)),
        "figure": "fig1a_test_accuracy.png"})

    d_bn, d_no = drift(bn), drift(nobn)
    known = d_bn is not None and d_no is not None
    claims.append({
        "id": "fig1.bn_stabilizes_sigmoid_input",
        "claim": "BN keeps the distribution of a sigmoid's input stable over training "
                 "(Sec. 4.1, Fig. 1b,c)",
        "measured": (f"drift of the tracked last-layer units' test-set median + 15-85 band after "
                     f"5% of training: BN {d_bn:.3f} vs no BN {d_no:.3f}" if known
                     else "drift not measurable (missing curves)"),
        "paper": PAPER_FIG1BC,
        "verdict": verdict(known and d_bn < 0.5 * d_no, known and d_bn < d_no),
        "figure": "fig1_combined.png"})
    return claims


CLAIMS: dict[str, Callable[[list[dict]], list[dict]]] = {"fig1": fig1}


def compute(experiment: str, runs: list[dict]) -> list[dict]:
    return CLAIMS.get(experiment, lambda _: [])(runs)

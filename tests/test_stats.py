"""Verdict statistics on known answers: intervals match a direct computation, rules classify right."""
import math

import numpy as np
import pytest

from bn_experiments import stats


def test_t975_table_and_expansion():
    assert stats.t975(1) == pytest.approx(12.706)
    assert stats.t975(4) == pytest.approx(2.776)
    assert stats.t975(30) == pytest.approx(2.042)
    # Beyond the table: the Cornish-Fisher expansion, continuous with the table and -> 1.96.
    assert stats.t975(31) == pytest.approx(2.040, abs=2e-3)
    assert stats.t975(60) == pytest.approx(2.000, abs=2e-3)
    assert stats.t975(10_000) == pytest.approx(1.960, abs=1e-3)
    with pytest.raises(ValueError):
        stats.t975(0)


def test_interval_matches_direct_computation():
    values = [0.3, 0.1, 0.45, 0.2, 0.25]
    iv = stats.interval(values)
    mean, sd = np.mean(values), np.std(values, ddof=1)
    half = 2.776 * sd / math.sqrt(5)
    assert iv.n == 5 and iv.mean == pytest.approx(mean) and iv.std == pytest.approx(sd)
    assert iv.ci95 == pytest.approx([mean - half, mean + half])


def test_paired_uses_common_finite_seeds_only():
    a = {0: 1.0, 1: 2.0, 2: None, 3: float("nan"), 4: 5.0}
    b = {0: 0.5, 1: 1.0, 2: 1.0, 3: 1.0}
    iv = stats.paired(a, b)
    assert iv.n == 2 and iv.mean == pytest.approx(0.75)


def test_identical_arms_are_inconclusive():
    a = {s: 0.9 + 0.01 * s for s in range(5)}
    iv = stats.paired(a, dict(a))
    assert iv.mean == 0 and iv.ci95 == [0, 0]
    assert stats.verdict(iv) == "inconclusive"


def test_large_consistent_effect_is_reproduced_and_opposite_is_not():
    rng = np.random.default_rng(0)
    b = {s: float(v) for s, v in enumerate(rng.normal(0.9, 0.01, 5))}
    a = {s: v + 0.05 + float(rng.normal(0, 0.005)) for s, v in b.items()}
    assert stats.verdict(stats.paired(a, b)) == "reproduced"
    assert stats.verdict(stats.paired(b, a)) == "not reproduced"
    # The paper predicting the other sign flips both.
    assert stats.verdict(stats.paired(a, b), expect=-1) == "not reproduced"


def test_noise_is_inconclusive_never_not_reproduced():
    rng = np.random.default_rng(1)
    a = {s: float(v) for s, v in enumerate(rng.normal(0.9, 0.02, 5))}
    b = {s: float(v) for s, v in enumerate(rng.normal(0.9, 0.02, 5))}
    iv = stats.paired(a, b)
    assert iv.low < 0 < iv.high
    assert stats.verdict(iv) == "inconclusive"


def test_one_seed_and_too_few_seeds_are_inconclusive():
    assert stats.verdict(stats.paired({0: 1.0}, {0: 0.0})) == "inconclusive"
    three = stats.paired({s: 1.0 + s * 0.01 for s in range(3)}, {s: 0.0 for s in range(3)})
    assert stats.verdict(three) == "reproduced"
    assert stats.verdict(three, min_seeds=stats.HEADLINE_SEEDS) == "inconclusive"


def test_verdict_over_settings():
    up = stats.interval([1.0, 1.1, 0.9])
    down = stats.interval([-1.0, -1.1, -0.9])
    noise = stats.interval([-1.0, 1.0, 0.1])
    one = stats.interval([1.0])
    assert stats.verdict_over([up, up, noise]) == ("reproduced", {"agree": 2, "oppose": 0, "noise": 1,
                                                                 "too_few_seeds": 0})
    assert stats.verdict_over([up, noise, noise])[0] == "inconclusive"
    assert stats.verdict_over([down, down])[0] == "not reproduced"
    assert stats.verdict_over([up, down, up])[0] == "partly reproduced"
    assert stats.verdict_over([one, one])[0] == "inconclusive"
    assert stats.verdict_over([])[0] == "inconclusive"
    assert stats.verdict_over([up, up], expect=-1)[0] == "not reproduced"


def test_evidence_row_and_formatting():
    iv = stats.interval([0.1, 0.2, 0.3])
    ev = stats.evidence(iv, "rule text")
    assert ev["seeds"] == 3 and ev["effect"] == pytest.approx(0.2) and ev["rule"] == "rule text"
    assert ev["ci95"][0] < 0.2 < ev["ci95"][1]
    assert stats.evidence(stats.interval([0.5]), "r") == {"seeds": 1, "effect": 0.5, "ci95": None,
                                                          "rule": "r"}
    assert stats.fmt(iv).endswith("(n=3)")
    assert stats.mean_std([1.0, 3.0]) == "2 ± 1.4"
    assert stats.first_reach([0, 10, 20], [0.1, None, 0.95], 0.9) == 20
    assert stats.first_reach([0, 10], [0.1, 0.2], 0.9) is None


def test_evidence_over_settings_has_an_effect_but_no_single_interval():
    ivs = [stats.interval([1.0, 1.2, 0.8]), stats.interval([3.0, 3.1, 2.9]), stats.interval([5.0])]
    ev = stats.evidence_over(ivs, "r.", seeds=3, over="depths")
    assert ev["effect"] == pytest.approx(3.0) and ev["ci95"] is None and ev["seeds"] == 3
    assert ev["rule"].startswith("r. Effect: the mean over depths") and "each depth's" in ev["rule"]
    assert stats.evidence_over([], "r", seeds=0)["effect"] is None

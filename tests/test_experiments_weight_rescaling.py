"""The weight-rescaling experiment: its gaps, claims and figure on known answers (no training)."""
from __future__ import annotations

import pytest
from claim_fixtures import by_id
from figure_fixtures import check_pngs

from bn_experiments import sweep
from bn_experiments.configs import weight_rescaling as rescaling_config
from bn_experiments.experiments import weight_rescaling as wr


def _run(norm, scale, seed, losses):
    steps = list(range(len(losses)))
    return {"name": f"{norm}-{scale}-{seed}", "diverged_at_step": None, "final": {},
            "config": {"model.norm": norm, "model.hidden_scale": scale, "seed": seed,
                       "learning_rate": 0.5, "steps": len(losses), "batch_size": 60,
                       "data.source": "synthetic"},
            "curves": {"train_loss": {"step": steps, "value": losses},
                       "probe_weight_norm_layer2": {"step": [0, len(losses) - 1],
                                                    "value": [scale * 10.0, scale * 11.0]}}}


def _runs(bn_gap=0.01, no_gap=1.0, seeds=3):
    """Losses 1.0 at a = 1; a != 1 multiplies them by 10**gap (10**(gap/100) at step 0 with BN)."""
    runs = []
    for norm, gap in (("batchnorm", bn_gap), ("none", no_gap)):
        for scale in wr.SCALES:
            for s in range(seeds):
                g = 0.0 if scale == 1.0 else gap * (1 + 0.05 * s)
                first = 10 ** (g / 100) if norm == "batchnorm" else 10 ** g
                runs.append(_run(norm, scale, s, [first] + [10 ** g] * 9))
    return runs


def test_gaps_are_mean_absolute_log10_differences():
    ref, other = _run("none", 1.0, 0, [1.0] * 4), _run("none", 10.0, 0, [10.0, 1.0, 1.0, 100.0])
    assert wr.initial_gap(other, ref) == pytest.approx(1.0)
    assert wr.trajectory_gap(other, ref) == pytest.approx((1 + 0 + 0 + 2) / 4)
    assert wr.trajectory_gap(_run("none", 10.0, 0, [1.0, float("nan")]), ref) is None


def test_claims_on_known_answers():
    rows = by_id(wr.claims(_runs()))
    assert rows["bn_output_independent_of_weight_scale_at_init"]["verdict"] == "reproduced"
    assert rows["bn_training_resilient_to_weight_scale"]["verdict"] == "reproduced"
    reversed_ = by_id(wr.claims(_runs(bn_gap=1.0, no_gap=0.01)))
    assert reversed_["bn_training_resilient_to_weight_scale"]["verdict"] == "not reproduced"
    assert all(r["verdict"] == "inconclusive" for r in wr.claims(_runs(seeds=1)))
    assert wr.claims([r for r in _runs() if r["config"]["model.norm"] == "none"]) == []


def test_figure(tmp_path):
    paths = wr.figures({"experiment": "weight_rescaling", "runs": _runs(), "claims": []},
                       tmp_path)
    check_pngs(paths, tmp_path, [wr.FIGURE])


def test_config_crosses_norm_and_scale_with_paired_seeds():
    runs = sweep.expand(rescaling_config.get_config(), num_train=8000)
    assert len(runs) == 2 * 3 * 3
    assert {r.static.model.hidden_scale for r in runs} == set(wr.SCALES)
    assert {r.numbers.init_std for r in runs} == {0.1}

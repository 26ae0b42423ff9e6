"""The lp-normalization experiment: claims on known answers, its figure, its config."""
from __future__ import annotations

from claim_fixtures import by_id
from figure_fixtures import check_pngs

from bn_experiments import config as config_lib
from bn_experiments.configs import lp_normalization as lp_config
from bn_experiments.experiments import lp_normalization as lp


def _run(arm, seed, acc, shift):
    steps = [0, 10, 20, 500, 1000]
    norm = {"none": ("none", "l2")}.get(arm, ("batchnorm", arm))
    curves = {f"probe_full_w1_layer{l}": {"step": steps, "value": [0.0] + [shift] * 4}
              for l in (1, 2, 3)}
    curves["test_accuracy"] = {"step": steps, "value": [0.1, 0.5, 0.7, 0.9, acc]}
    return {"name": f"{arm}-{seed}", "diverged_at_step": None,
            "final": {"test_accuracy": acc},
            "config": {"model.norm": norm[0], "model.bn_norm_p": norm[1], "seed": seed,
                       "eval_every": 500, "eval_steps": [10, 20], "learning_rate": 0.5,
                       "steps": 1000, "data.source": "synthetic"},
            "curves": curves}


def _runs(lp_acc=0.975, lp_shift=0.05, seeds=5):
    runs = []
    for s in range(seeds):
        runs += [_run("none", s, 0.95 + 0.001 * s, 1.0), _run("l2", s, 0.976 + 0.001 * s, 0.04)]
        runs += [_run(p, s, lp_acc + 0.0012 * s, lp_shift * (1 + 0.01 * s))
                 for p in ("l1", "linf")]
    return runs


def test_claims_on_known_answers():
    rows = by_id(lp.claims(_runs()))
    assert rows["lp_normalizations_train_as_well_as_bn"]["verdict"] == "reproduced"
    assert rows["lp_normalizations_not_more_stable"]["verdict"] == "reproduced"
    assert rows["lp_normalizations_beat_no_normalization"]["verdict"] == "reproduced"
    # Two points worse than BN is not "as well"; a shift half of BN's is "more stable".
    worse = by_id(lp.claims(_runs(lp_acc=0.955, lp_shift=0.02)))
    assert worse["lp_normalizations_train_as_well_as_bn"]["verdict"] == "not reproduced"
    assert worse["lp_normalizations_not_more_stable"]["verdict"] == "not reproduced"
    assert all(r["verdict"] == "inconclusive" for r in lp.claims(_runs(seeds=1)))
    assert lp.claims([r for r in _runs() if lp.arm_of(r) == "none"]) == []


def test_figure(tmp_path):
    paths = lp.figures({"experiment": "lp_normalization", "runs": _runs(), "claims": []},
                       tmp_path)
    check_pngs(paths, tmp_path, [lp.FIGURE])


def test_config_has_four_arms_paired_by_seed():
    runs = config_lib.runs(lp_config.get_config())
    assert len(runs) == 4 * 5
    assert {(r.static.model.norm, r.static.model.bn_norm_p) for r in runs} == {
        ("none", "l2"), ("batchnorm", "l2"), ("batchnorm", "l1"), ("batchnorm", "linf")}

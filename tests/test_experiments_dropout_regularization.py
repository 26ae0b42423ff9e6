"""The dropout-regularization experiment: claims on known answers, its figure, its config."""
from __future__ import annotations

from claim_fixtures import by_id
from figure_fixtures import check_pngs

from bn_experiments import config as config_lib
from bn_experiments.configs import dropout_regularization as dr_config
from bn_experiments.experiments import dropout_regularization as dr


def _run(arm, seed, acc, gap):
    steps = [0, 100, 1000, 2000]
    norm = "batchnorm" if arm.startswith("bn") else "none"
    train_loss = [2.3, 0.5, 0.2, 0.05]
    test_loss = [2.3, 0.5 + gap / 3, 0.2 + gap / 2, 0.05 + gap]
    return {"name": f"{arm}-{seed}", "diverged_at_step": None, "final": {"test_accuracy": acc},
            "config": {"model.norm": norm, "model.dropout": 0.2 if "dropout" in arm else 0.0,
                       "seed": seed, "steps": 2000, "eval_every": 1000, "learning_rate": 0.5,
                       "data.source": "synthetic"},
            "curves": {"test_accuracy": {"step": steps, "value": [0.1, 0.8, 0.95, acc]},
                       "test_loss": {"step": steps, "value": test_loss},
                       "probe_train_set_loss": {"step": steps, "value": train_loss}}}


def _runs(bn_gap=0.04, bn_acc=0.978, drop_acc=0.977, seeds=5):
    runs = []
    for s in range(seeds):
        e = 0.001 * s
        runs += [_run("none", s, 0.970 + e, 0.08 + e), _run("none_dropout", s, 0.972 + e, 0.05 + e),
                 _run("bn", s, bn_acc + 1.2 * e, bn_gap + 1.3 * e),
                 _run("bn_dropout", s, drop_acc + e, 0.03 + e)]
    return runs


def test_claims_on_known_answers():
    rows = by_id(dr.claims(_runs()))
    assert rows["bn_narrows_generalization_gap"]["verdict"] == "reproduced"
    assert rows["bn_makes_dropout_unnecessary"]["verdict"] == "reproduced"
    assert "control, without BN: dropout narrows the gap" in rows[
        "bn_makes_dropout_unnecessary"]["measured"]
    worse = by_id(dr.claims(_runs(bn_gap=0.12, bn_acc=0.965, drop_acc=0.978)))
    assert worse["bn_narrows_generalization_gap"]["verdict"] == "not reproduced"
    assert worse["bn_makes_dropout_unnecessary"]["verdict"] == "not reproduced"
    assert all(r["verdict"] == "inconclusive" for r in dr.claims(_runs(seeds=1)))


def test_figure(tmp_path):
    paths = dr.figures({"experiment": "dropout_regularization", "runs": _runs(), "claims": []},
                       tmp_path)
    check_pngs(paths, tmp_path, [dr.FIGURE])


def test_config_has_four_arms_paired_by_seed():
    runs = config_lib.runs(dr_config.get_config())
    assert len(runs) == 4 * 5
    assert {(r.static.model.norm, r.static.model.dropout) for r in runs} == {
        ("none", 0.0), ("none", 0.2), ("batchnorm", 0.0), ("batchnorm", 0.2)}
    assert all(r.static.model.needs_rng == (r.static.model.dropout > 0) for r in runs)

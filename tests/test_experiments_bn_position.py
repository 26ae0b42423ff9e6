"""The BN-position experiment: claims on known answers, the figure, the config (no training)."""
from __future__ import annotations

from claim_fixtures import by_id
from figure_fixtures import check_pngs

from bn_experiments import sweep
from bn_experiments.configs import bn_position as position_config
from bn_experiments.experiments import bn_position as bp


def _run(position, act, lr, seed, level, acc):
    steps = list(range(0, 100, 10))
    return {"name": f"{position}-{act}-{lr}-{seed}", "diverged_at_step": None, "final": {},
            "config": {"model.bn_position": position, "model.activation": act,
                       "model.norm": "batchnorm", "learning_rate": lr, "seed": seed,
                       "steps": 100, "batch_size": 60, "data.source": "synthetic"},
            "curves": {"train_loss": {"step": steps, "value": [10.0 ** level] * len(steps)},
                       "test_accuracy": {"step": steps, "value": [0.5] * 6 + [acc] * 4}}}


def _runs(faster=0.2, better=0.01, seeds=3):
    """`before` has a lower log-loss area by `faster` and a higher accuracy by `better`."""
    runs = []
    for act in bp.ACTIVATIONS:
        for s in range(seeds):
            for position, d in (("before", 1), ("after", 0)):
                level = -1.0 - faster * d + 0.01 * s
                runs += [_run(position, act, 1.0, s, level, 0.95 + better * d + 0.001 * s),
                         _run(position, act, 0.1, s, level + 0.5, 0.9)]
    return runs


def test_late_accuracy_is_the_mean_of_the_last_quarter():
    run = _run("before", "relu", 1.0, 0, -1.0, 0.97)
    assert bp.late_accuracy(run) == 0.97  # the last 2 of 10 evaluations (a quarter, rounded)


def test_claims_on_known_answers():
    rows = by_id(bp.claims(_runs()))
    assert rows["bn_before_nonlinearity_trains_faster"]["verdict"] == "reproduced"
    assert rows["bn_before_nonlinearity_more_accurate"]["verdict"] == "reproduced"
    flipped = by_id(bp.claims(_runs(faster=-0.2, better=-0.01)))
    assert {r["verdict"] for r in flipped.values()} == {"not reproduced"}
    assert all(r["verdict"] == "inconclusive" for r in bp.claims(_runs(seeds=1)))


def test_figure(tmp_path):
    paths = bp.figures({"experiment": "bn_position", "runs": _runs(), "claims": []}, tmp_path)
    check_pngs(paths, tmp_path, [bp.FIGURE])


def test_config_crosses_position_activation_and_rate_with_bn():
    runs = sweep.expand(position_config.get_config(), num_train=8000)
    assert len(runs) == 2 * 2 * 5 * 3
    assert {r.static.model.bn_position for r in runs} == set(bp.POSITIONS)
    assert {r.static.model.norm for r in runs} == {"batchnorm"}

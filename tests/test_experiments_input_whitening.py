"""The input-whitening experiment: its convergence measure, rate selection, claims and figure."""
from __future__ import annotations

import numpy as np
import pytest
from claim_fixtures import by_id
from figure_fixtures import check_pngs

from bn_experiments import sweep
from bn_experiments.configs import input_whitening as whitening_config
from bn_experiments.experiments import input_whitening as iw


def _run(whiten, norm, lr, seed, level, diverged=None):
    """A run whose training loss is 10**level at every recorded step (10**(level+1) at step 0)."""
    steps = list(range(0, 100, 10))
    values = [10.0 ** (level + 1)] + [10.0 ** level] * (len(steps) - 1)
    return {"name": f"{whiten}-{norm}-{lr}-{seed}", "diverged_at_step": diverged, "final": {},
            "config": {"data.whiten": whiten, "model.norm": norm, "learning_rate": lr,
                       "seed": seed, "steps": 100, "batch_size": 60, "data.source": "synthetic"},
            "curves": {"train_loss": {"step": steps, "value": values}}}


def test_log_loss_area_is_the_mean_log10_training_loss_and_none_when_diverged():
    run = _run("none", "none", 0.1, 0, -1.0)
    assert iw.log_loss_area(run) == pytest.approx((0.0 + 9 * -1.0) / 10)
    assert iw.log_loss_area(_run("none", "none", 0.1, 0, -1.0, diverged=5)) is None


def _runs(benefit_no_bn=0.3, benefit_bn=0.05, seeds=3):
    """Without BN every transform lowers the area by `benefit_no_bn` at its best rate (1.0); with
    BN by `benefit_bn`. The rate 0.1 is worse everywhere; 10 diverges."""
    runs = []
    for norm, benefit in (("none", benefit_no_bn), ("batchnorm", benefit_bn)):
        for w in iw.TRANSFORMS:
            base = -1.0 - (0.0 if w == "none" else benefit)
            for s in range(seeds):
                jitter = 0.01 * s * (1 if w == "none" else -1)
                runs += [_run(w, norm, 1.0, s, base + jitter),
                         _run(w, norm, 0.1, s, base + 0.5),
                         _run(w, norm, 10.0, s, 5.0, diverged=3)]
    return runs


def test_best_rate_is_the_lowest_mean_area_and_never_a_diverging_rate():
    runs = iw.arm(_runs(), "zca", "none")
    assert iw.best_rate(runs) == 1.0
    lr, areas = iw.at_best(_runs(), "pca", "batchnorm")
    assert lr == 1.0 and sorted(areas) == [0, 1, 2]


def test_claims_on_known_answers():
    rows = by_id(iw.claims(_runs()))
    assert rows["whitened_inputs_converge_faster"]["verdict"] == "reproduced"
    assert rows["bn_reduces_the_benefit_of_whitening"]["verdict"] == "reproduced"
    # Whitening that slows convergence without BN is "not reproduced"; equal benefits are noise.
    assert by_id(iw.claims(_runs(benefit_no_bn=-0.3)))[
        "whitened_inputs_converge_faster"]["verdict"] == "not reproduced"
    same = by_id(iw.claims(_runs(benefit_no_bn=0.1, benefit_bn=0.1)))
    assert same["bn_reduces_the_benefit_of_whitening"]["verdict"] in ("inconclusive",
                                                                      "not reproduced")
    assert all(r["verdict"] == "inconclusive" for r in iw.claims(_runs(seeds=1)))


def test_figure(tmp_path):
    paths = iw.figures({"experiment": "input_whitening", "runs": _runs(), "claims": []}, tmp_path)
    check_pngs(paths, tmp_path, [iw.FIGURE])


def test_config_crosses_every_transform_norm_and_rate_with_paired_seeds():
    runs = sweep.expand(whitening_config.get_config(), num_train=8000)
    assert len(runs) == 4 * 2 * 6 * 3
    assert {r.flat["data.whiten"] for r in runs} == set(iw.TRANSFORMS)
    assert np.unique([r.numbers.seed for r in runs]).tolist() == [0, 1, 2]

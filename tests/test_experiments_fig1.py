"""Figure 1's figures (bn_experiments/experiments/fig1.py) from synthetic summaries: fast."""
from __future__ import annotations

import json

import numpy as np
import pytest
from claim_fixtures import by_id
from figure_fixtures import check_pngs, fig1_run, make_fig1_summary, png_size

from bn_experiments import experiments, summary
from bn_experiments.experiments import fig1

FIG1_FILES = ["fig1a_test_accuracy.png", "fig1b_no_bn_percentiles.png", "fig1c_bn_percentiles.png",
              "fig1_combined.png"]


def test_fig1_writes_four_pngs(tmp_path):
    make_fig1_summary(tmp_path)
    paths = experiments.draw_figures(tmp_path)
    check_pngs(paths, tmp_path, FIG1_FILES)
    w, h = png_size(tmp_path / "fig1_combined.png")
    assert w > 2 * h, "combined figure should be three panels side by side"


def test_fig1_deterministic(tmp_path):
    make_fig1_summary(tmp_path, steps=600, eval_every=100)
    first = [p.read_bytes() for p in experiments.draw_figures(tmp_path)]
    second = [p.read_bytes() for p in experiments.draw_figures(tmp_path)]
    assert first == second


def test_fig1_thinned_long_run_without_divergence(tmp_path):
    # 50,000 steps thinned to summary.MAX_POINTS points, like the real experiment.
    make_fig1_summary(tmp_path, steps=50000, eval_every=500, diverged_at=None)
    check_pngs(experiments.draw_figures(tmp_path), tmp_path, FIG1_FILES)


def test_fig1_missing_curves_still_plots(tmp_path):
    make_fig1_summary(tmp_path, drop=("test_preact_p15", "test_preact_p85", "preact_p85",
                                      "test_preact_p50"))
    check_pngs(experiments.draw_figures(tmp_path), tmp_path, FIG1_FILES)


def test_fig1_without_percentiles_or_accuracy(tmp_path):
    make_fig1_summary(tmp_path, drop=("preact_p15", "preact_p50", "preact_p85", "test_preact_p15",
                                      "test_preact_p50", "test_preact_p85"))
    check_pngs(experiments.draw_figures(tmp_path), tmp_path,
               ["fig1a_test_accuracy.png", "fig1_combined.png"])
    # Nothing at all to draw: no files, no crash.
    empty = tmp_path / "empty"
    make_fig1_summary(empty, drop=tuple(fig1_run("x", True, 10, 5, None, 0)["curves"]))
    assert experiments.draw_figures(empty) == []


def test_fig1_single_run_and_all_null_curve(tmp_path):
    make_fig1_summary(tmp_path)
    doc = json.loads((tmp_path / "summary.json").read_text())
    doc["runs"] = [r for r in doc["runs"] if r["name"] == "bn"]
    acc = doc["runs"][0]["curves"]["test_accuracy"]
    acc["value"] = [None] * len(acc["value"])
    summary.write(tmp_path / "summary.json", doc)
    check_pngs(experiments.draw_figures(tmp_path), tmp_path,
               ["fig1c_bn_percentiles.png", "fig1_combined.png"])


def test_fig1_legends_and_labels_inside_the_figure(tmp_path, monkeypatch):
    # The percentile panels' legends sit below the axes: every legend and text must lie within
    # the figure (a two-column legend there used to be cut off at both edges).
    seen = {}
    save = fig1.save_png

    def checked_save(fig, path):
        fig.canvas.draw()
        box = fig.bbox
        artists = [a for ax in fig.axes for a in [ax.get_legend(), ax.xaxis.label, ax.yaxis.label,
                                                   ax.title] if a is not None]
        seen[path.name] = [a.get_window_extent() for a in artists if a.get_visible()]
        for extent in seen[path.name]:
            assert box.x0 - 1 <= extent.x0 and extent.x1 <= box.x1 + 1, (path.name, extent)
            assert box.y0 - 1 <= extent.y0 and extent.y1 <= box.y1 + 1, (path.name, extent)
        return save(fig, path)

    monkeypatch.setattr(fig1, "save_png", checked_save)
    for steps, diverged_at in ((2000, 1234), (50000, None)):
        make_fig1_summary(tmp_path, steps=steps, eval_every=500 if steps > 2000 else 100,
                          diverged_at=diverged_at)
        experiments.draw_figures(tmp_path)
        assert sorted(seen) == sorted(FIG1_FILES)


# ------------------------------------------------------------------ claims (known answers)

def _fig1_run(norm, seed, acc_curve, drift_scale=0.0, steps=1000):
    evals = list(range(0, steps + 1, 100))
    median = [drift_scale * i for i in range(len(evals))]
    return {"name": f"{norm}-{seed}",
            "config": {"experiment": "fig1_seeds", "model.norm": norm, "seed": seed, "steps": steps,
                       "model.tracked_units": [0]},
            "curves": {"test_accuracy": {"step": evals, "value": list(acc_curve)},
                       "test_preact_p50": {"step": evals, "value": median},
                       "test_preact_p15": {"step": evals, "value": [m - 1 for m in median]},
                       "test_preact_p85": {"step": evals, "value": [m + 1 for m in median]}},
            "diverged_at_step": None,
            "final": {"max_test_accuracy": max(acc_curve), "test_accuracy": acc_curve[-1],
                      "auc_test_accuracy": float(np.mean(acc_curve))}}


def _curve(rate, ceiling, jitter=0.0):
    return [0.1 + (ceiling + jitter - 0.1) * (1 - np.exp(-i / rate)) for i in range(11)]


def _pairs(seeds, bn_rate, no_rate, bn_ceiling=0.97, no_ceiling=0.97, bn_drift=0.0, no_drift=0.1):
    runs = []
    for s in range(seeds):
        j = 0.002 * ((s * 7919) % 5 - 2)
        runs.append(_fig1_run("none", s, _curve(no_rate, no_ceiling, j), no_drift + 0.01 * s))
        runs.append(_fig1_run("batchnorm", s, _curve(bn_rate, bn_ceiling, j), bn_drift + 0.01 * s))
    return runs


def test_fig1_large_consistent_effects_reproduce_with_five_seeds():
    rows = by_id(fig1.claims(_pairs(5, bn_rate=0.5, no_rate=3.0, bn_ceiling=0.98)))
    assert rows["bn_trains_faster"]["verdict"] == "reproduced"
    assert rows["bn_trains_faster"]["evidence"]["effect"] > 1
    assert rows["bn_higher_accuracy"]["verdict"] == "reproduced"
    assert rows["bn_stabilizes_sigmoid_input"]["verdict"] == "reproduced"
    for row in rows.values():
        assert row["source"].startswith("IS Sec. 4.1") and row["evidence"]["seeds"] == 5


def test_fig1_identical_arms_are_inconclusive_and_reversed_arms_not_reproduced():
    same = by_id(fig1.claims(_pairs(5, bn_rate=1.0, no_rate=1.0, no_drift=0.0)))
    assert {r["verdict"] for r in same.values()} == {"inconclusive"}
    reversed_ = by_id(fig1.claims(_pairs(5, bn_rate=3.0, no_rate=0.5, no_ceiling=0.98,
                                          bn_drift=0.1, no_drift=0.0)))
    assert {r["verdict"] for r in reversed_.values()} == {"not reproduced"}


def test_fig1_headline_needs_five_seeds_and_one_seed_is_an_illustration():
    three = by_id(fig1.claims(_pairs(3, bn_rate=0.5, no_rate=3.0, bn_ceiling=0.98)))
    assert {r["verdict"] for r in three.values()} == {"inconclusive"}
    assert "a verdict needs at least 5 seeds; 3 ran" in three["bn_trains_faster"]["measured"]
    one = fig1.claims(_pairs(1, bn_rate=0.5, no_rate=3.0))
    assert all(r["evidence"]["seeds"] == 1 and r["evidence"]["ci95"] is None for r in one)


def test_fig1_target_range_counts_targets():
    rows = by_id(fig1.claims(_pairs(5, bn_rate=0.5, no_rate=3.0)))
    assert "significantly sooner at 20, later at 0" in rows["bn_trains_faster"]["measured"]


def test_speedup_uses_the_lower_ceiling():
    bn = _fig1_run("batchnorm", 0, [0.1, 0.9, 0.99] + [0.99] * 8)
    no = _fig1_run("none", 0, [0.1, 0.5, 0.8, 0.9] + [0.9] * 7)
    # Ceiling 0.9: 99% of it (0.891) is reached at step 100 with BN and 300 without.
    assert fig1.speedup(bn, no, 0.99) == pytest.approx(np.log2(3))


def test_missing_arm_states_no_claim():
    assert fig1.claims([r for r in _pairs(5, 1, 1) if r["config"]["model.norm"] == "none"]) == []

"""Figure 1's figures (bn_experiments/experiments/_fig1_figures.py) from synthetic summaries: fast."""
from __future__ import annotations

import pytest
from fig1_fixtures import BN_LIKE, NO_BN_LIKE, pairs, write
from figure_fixtures import check_pngs, make_fig1_summary

from bn_experiments import experiments
from bn_experiments.experiments import _fig1_figures as f

ALL = [f.FIGURE_ACCURACY, f.FIGURE_PERCENTILES, f.FIGURE_SHIFT, f.FIGURE_COMBINED]


@pytest.fixture
def inspected(monkeypatch):
    """Every saved figure's axes and artists, checked to lie inside the figure (no clipped
    legend, title or label)."""
    seen = {}
    save = f.save_png

    def checked(fig, path):
        fig.canvas.draw()
        box = fig.bbox
        artists = [*fig.legends, *fig.texts] + [a for ax in fig.axes for a in
                                               (ax.get_legend(), ax.xaxis.label, ax.yaxis.label,
                                                ax.title) if a is not None and a.get_visible()]
        for a in artists:
            e = a.get_window_extent()
            if e.width and e.height:
                assert box.x0 - 1 <= e.x0 and e.x1 <= box.x1 + 1, (path.name, a)
                assert box.y0 - 1 <= e.y0 and e.y1 <= box.y1 + 1, (path.name, a)
        seen[path.name] = {
            "legend": [t.get_text() for lg in fig.legends for t in lg.get_texts()],
            "axes": [{"xscale": ax.get_xscale(), "yscale": ax.get_yscale(), "ylim": ax.get_ylim(),
                      "title": ax.get_title(), "containers": len(ax.containers)}
                     for ax in fig.axes]}
        return save(fig, path)

    monkeypatch.setattr(f, "save_png", checked)
    return seen


def test_five_seeds_draw_four_figures_with_the_papers_points(tmp_path, inspected):
    write(tmp_path, pairs(5, BN_LIKE, NO_BN_LIKE))
    check_pngs(experiments.draw_figures(tmp_path), tmp_path, ALL)
    acc = inspected[f.FIGURE_ACCURACY]
    assert "Without BN: paper's Fig. 1(a), read off" in acc["legend"]
    assert "With BN: mean over 5 seeds" in acc["legend"]
    assert [a["xscale"] for a in acc["axes"]] == ["linear", "log"]
    # The paper's readings of both arms (one errorbar container per arm), on both panels.
    assert [a["containers"] for a in acc["axes"]] == [2, 2]
    pct = inspected[f.FIGURE_PERCENTILES]["axes"]
    assert pct[0]["ylim"] == pct[1]["ylim"]
    assert "(b) Without BN, seed 0" in pct[0]["title"] and "(c) With BN, seed 0" in pct[1]["title"]
    shift = inspected[f.FIGURE_SHIFT]
    assert any("initial transient" in t for t in shift["legend"])
    assert [a["yscale"] for a in shift["axes"]] == ["log", "log", "linear", "linear"]


def test_a_short_run_draws_no_paper_point_past_its_end(tmp_path, inspected):
    write(tmp_path, pairs(2, {"steps": 2000, "rate": 50.0}, {"steps": 2000, "rate": 200.0}))
    check_pngs(experiments.draw_figures(tmp_path), tmp_path, ALL)
    assert not any(a["containers"] for a in inspected[f.FIGURE_ACCURACY]["axes"])


def test_one_seed_and_missing_probe_curves(tmp_path, inspected):
    runs = pairs(1, BN_LIKE, NO_BN_LIKE)
    for r in runs:
        for k in [k for k in r["curves"] if k.startswith("probe_")]:
            r["curves"].pop(k)
    write(tmp_path, runs)
    check_pngs(experiments.draw_figures(tmp_path), tmp_path,
               [f.FIGURE_ACCURACY, f.FIGURE_PERCENTILES, f.FIGURE_COMBINED])
    assert "Without BN: mean over 1 seed" in inspected[f.FIGURE_ACCURACY]["legend"]


def test_the_old_two_run_summary_and_a_divergence_still_draw(tmp_path):
    make_fig1_summary(tmp_path, steps=2000, eval_every=100, diverged_at=1234)
    check_pngs(experiments.draw_figures(tmp_path), tmp_path,
               [f.FIGURE_ACCURACY, f.FIGURE_PERCENTILES, f.FIGURE_COMBINED])


def test_one_arm_only_and_nothing_to_draw(tmp_path):
    write(tmp_path, [r for r in pairs(2) if r["config"]["model.norm"] == "batchnorm"])
    names = [p.name for p in experiments.draw_figures(tmp_path)]
    assert names == ALL
    empty = tmp_path / "empty"
    write(empty, [{**r, "curves": {}} for r in pairs(1)])
    assert experiments.draw_figures(empty) == []


def test_figures_are_deterministic(tmp_path):
    write(tmp_path, pairs(2, BN_LIKE, NO_BN_LIKE))
    first = [p.read_bytes() for p in experiments.draw_figures(tmp_path)]
    assert first == [p.read_bytes() for p in experiments.draw_figures(tmp_path)]

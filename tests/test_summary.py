"""The summary.json contract: thinning, null for non-finite, validation, canonical atomic writes."""
import json
import math

import numpy as np
import pytest

from bn_experiments import summary


def _doc(**run_overrides):
    run = {"name": "a", "config": {"steps": 3}, "curves": {"train_loss": summary.thin(range(3), [1.0, float("nan"), 0.5])},
           "final": {"test_accuracy": 0.9}, "diverged_at_step": None, **run_overrides}
    return {"experiment": "x", "runs": [run],
            "claims": [{"id": "c", "claim": "t", "measured": "m", "paper": "p", "verdict": "reproduced"}]}


def test_thin_keeps_every_point_up_to_the_limit_then_thins_evenly_keeping_the_last():
    c = summary.thin(range(10), np.arange(10.0), max_points=20)
    assert c["step"] == list(range(10))
    c = summary.thin(range(50_000), np.arange(50_000.0))
    assert len(c["step"]) == summary.MAX_POINTS
    assert c["step"][0] == 0 and c["step"][-1] == 49_999
    gaps = np.diff(c["step"])
    assert gaps.min() >= 9 and gaps.max() <= 11
    assert c["value"] == [float(s) for s in c["step"]]


def test_non_finite_values_become_null():
    c = summary.thin([0, 1, 2], [float("inf"), float("nan"), 1.0])
    assert c["value"] == [None, None, 1.0]
    text = summary.dumps({"x": [math.nan, np.float32(2.5), np.int64(3)], "y": float("-inf")})
    assert json.loads(text) == {"x": [None, 2.5, 3], "y": None}
    assert "NaN" not in text and "Infinity" not in text


def test_valid_document_passes_and_round_trips(tmp_path):
    summary.write(tmp_path / "summary.json", _doc())
    doc = summary.load(tmp_path / "summary.json")
    assert doc["runs"][0]["curves"]["train_loss"]["value"] == [1.0, None, 0.5]
    assert summary.dumps(doc) == (tmp_path / "summary.json").read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]  # no temporary left behind


@pytest.mark.parametrize("mutate,problem", [
    (lambda d: d.pop("claims"), "claims"),
    (lambda d: d["runs"][0].pop("diverged_at_step"), "diverged_at_step"),
    (lambda d: d["runs"][0].update(diverged_at_step=1.5), "diverged_at_step"),
    (lambda d: d["runs"][0]["curves"]["train_loss"].update(step=[0, 2, 1]), "strictly increasing"),
    (lambda d: d["runs"][0]["curves"]["train_loss"].update(step=[0, 1]), "2 steps but 3 values"),
    (lambda d: d["claims"][0].update(verdict="sort of"), "verdict"),
    (lambda d: d["runs"].append(dict(d["runs"][0])), "unique"),
    (lambda d: d.update(experiment=""), "experiment"),
])
def test_contract_violations_are_named(mutate, problem, tmp_path):
    doc = json.loads(summary.dumps(_doc()))
    mutate(doc)
    assert any(problem in p for p in summary.problems(doc))
    with pytest.raises(ValueError, match="contract"):
        summary.write(tmp_path / "s.json", doc)
    assert not (tmp_path / "s.json").exists()


def test_verdict_is_computed():
    assert summary.verdict(True) == "reproduced"
    assert summary.verdict(False, True) == "partly reproduced"
    assert summary.verdict(False) == "not reproduced"


def test_atomic_write_replaces_whole_files(tmp_path):
    path = tmp_path / "f.txt"
    summary.atomic_write(path, "old")
    summary.atomic_write(path, b"new")
    assert path.read_text() == "new"

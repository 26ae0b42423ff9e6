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
            "claims": [{"id": "c", "claim": "t", "source": "IS Sec. 4.1", "measured": "m", "paper": "p",
                        "verdict": "reproduced", "figure": "f.png",
                        "evidence": {"seeds": 5, "effect": 0.1, "ci95": [0.05, 0.15], "rule": "r"}}]}


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
    (lambda d: d["claims"][0].pop("source"), "source"),
    (lambda d: d["claims"][0].pop("evidence"), "evidence must be an object"),
    (lambda d: d["claims"][0]["evidence"].update(seeds=0), "seeds"),
    (lambda d: d["claims"][0]["evidence"].pop("effect"), "effect"),
    (lambda d: d["claims"][0]["evidence"].update(ci95=[0.2, 0.1]), "ci95"),
    (lambda d: d["claims"][0]["evidence"].pop("ci95"), "ci95"),
    (lambda d: d["claims"][0]["evidence"].update(rule=""), "rule"),
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


def test_inconclusive_is_a_verdict_and_null_effect_passes():
    doc = json.loads(summary.dumps(_doc()))
    doc["claims"][0].update(verdict="inconclusive",
                            evidence={"seeds": 1, "effect": None, "ci95": None, "rule": "r"})
    assert summary.problems(doc) == []


def test_atomic_write_replaces_whole_files(tmp_path):
    path = tmp_path / "f.txt"
    summary.atomic_write(path, "old")
    summary.atomic_write(path, b"new")
    assert path.read_text() == "new"


def test_a_killed_writer_leaves_a_readable_jsonl(tmp_path):
    """A writer appending rows is SIGKILLed mid-stream: every complete row reads back, a torn
    last line is dropped, and appending after `drop_torn_line` stays line-aligned."""
    import os
    import signal
    import subprocess
    import sys
    import time

    path = tmp_path / "metrics.jsonl"
    writer = ("import json, sys\n"
              "f = open(sys.argv[1], 'a')\n"
              "i = 0\n"
              "while True:\n"
              "    f.write(json.dumps({'step': i, 'pad': 'x' * 5000}) + '\\n'); f.flush(); i += 1\n")
    proc = subprocess.Popen([sys.executable, "-c", writer, str(path)])
    while not path.exists() or path.stat().st_size < 200_000:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with open(path, "a") as f:
        f.write('{"step": -1, "pad": "torn')  # make sure the last line is torn, whatever the timing
    rows = summary.read_jsonl(path)
    assert [r["step"] for r in rows] == list(range(len(rows))) and len(rows) > 10
    summary.drop_torn_line(path)
    with open(path, "a") as f:
        f.write(json.dumps({"step": "next"}) + "\n")
    assert summary.read_jsonl(path)[-1] == {"step": "next"}
    (tmp_path / "bad.jsonl").write_text('{"a": 1}\nnot json\n{"b": 2}\n')
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        summary.read_jsonl(tmp_path / "bad.jsonl")


def test_a_killed_atomic_writer_never_leaves_half_a_file(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    path = tmp_path / "summary.json"
    writer = ("import sys\nfrom bn_experiments import summary\ni = 0\n"
              "while True:\n"
              "    summary.atomic_write(sys.argv[1], (str(i % 10) * 2_000_000) + 'END'); i += 1\n")
    proc = subprocess.Popen([sys.executable, "-c", writer, str(path)])
    for _ in range(5):
        while not path.exists():
            time.sleep(0.01)
        time.sleep(0.3)
        text = path.read_text()
        assert len(text) == 2_000_003 and text.endswith("END") and len(set(text[:-3])) == 1
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    text = path.read_text()
    assert len(text) == 2_000_003 and text.endswith("END")


def test_a_smoke_run_is_marked_and_its_claims_give_no_verdict():
    doc = _doc()
    doc["claims"] = [{"id": "x.a", "claim": "c", "source": "IS Sec. 4.1", "measured": "m",
                      "paper": "p", "verdict": "reproduced", "figure": "f.png",
                      "evidence": {"seeds": 5, "effect": 0.3, "ci95": [0.1, 0.5], "rule": "rule"}}]
    marked = summary.mark_smoke(doc)
    assert list(marked)[:2] == ["experiment", "smoke"] and marked["smoke"] is True
    (claim,) = marked["claims"]
    assert claim["verdict"] == "inconclusive" and claim["evidence"]["effect"] == 0.3
    assert claim["evidence"]["rule"] == summary.SMOKE_RULE + "rule"
    assert summary.mark_smoke(marked) == marked  # idempotent
    assert summary.problems(marked) == []
    assert doc["claims"][0]["verdict"] == "reproduced"  # the input is not changed
    assert summary.problems({**marked, "smoke": "yes"}) == ["'smoke' must be true or false"]


def test_atomic_write_gives_the_permissions_of_a_plain_write(tmp_path):
    import os
    import stat
    old = os.umask(0o027)
    try:
        summary.atomic_write(tmp_path / "new.json", "{}")
        assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == 0o640
        (tmp_path / "kept.json").write_text("{}")
        (tmp_path / "kept.json").chmod(0o604)
        summary.atomic_write(tmp_path / "kept.json", "[]")
        assert stat.S_IMODE((tmp_path / "kept.json").stat().st_mode) == 0o604
    finally:
        os.umask(old)

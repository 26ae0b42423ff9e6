"""The claims ledger rendered from fake summaries: grouped by claim, fast, no training."""
from __future__ import annotations

import json
import pathlib
import re

from bn_experiments import catalog, report, summary


def _run(name: str, final: dict, diverged_at: int | None = None) -> dict:
    return {"name": name, "config": {"learning_rate": 0.5, "steps": 100},
            "curves": {"test_accuracy": {"step": [0, 100], "value": [0.1, final.get("test_accuracy")]}},
            "final": final, "diverged_at_step": diverged_at}


def _claim(cid: str, verdict: str, seeds: int = 5, **extra) -> dict:
    return {"id": cid, "claim": f"claim {cid}", "source": "IS Sec. 4.1", "measured": f"measured {cid}",
            "paper": f"paper {cid}", "verdict": verdict,
            "evidence": {"seeds": seeds, "effect": 0.25, "ci95": [0.125, 0.375], "rule": f"rule {cid}"},
            **extra}


def make_results(root: pathlib.Path) -> pathlib.Path:
    """Three experiments: an illustration (1 seed), the seeds version, and a nested sweep."""
    summary.write(root / "fig1" / "summary.json", {
        "experiment": "fig1",
        "runs": [_run("no_bn", {"test_accuracy": 0.9712, "max_test_accuracy": 0.97301,
                                "steps_to_target": None}),
                 _run("bn", {"test_accuracy": 0.98234, "max_test_accuracy": 0.9841,
                             "steps_to_target": 4500})],
        "claims": [_claim("fig1.bn_trains_faster", "inconclusive", seeds=1,
                          figure="fig1a_test_accuracy.png")]})
    (root / "fig1" / "fig1a_test_accuracy.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    summary.write(root / "fig1_seeds" / "summary.json", {
        "experiment": "fig1_seeds",
        "runs": [_run("a", {"test_accuracy": 0.95})],
        "claims": [_claim("fig1_seeds.bn_trains_faster", "reproduced", figure="acc.png"),
                   _claim("fig1_seeds.bn_higher_accuracy", "inconclusive",
                          measured="0.982 | 0.972\nsee fig"),
                   _claim("fig1_seeds.something_new", "not reproduced")]})
    summary.write(root / "sweeps" / "lr" / "summary.json", {
        "experiment": "lr_sweep",
        "runs": [_run("lr_0.1", {"test_accuracy": 0.95}),
                 _run("lr_10", {"test_accuracy": None}, diverged_at=37)],
        "claims": [_claim("lr_sweep.bn_allows_higher_lr", "partly reproduced"),
                   _claim("lr_sweep.bn_trains_faster", "not reproduced")]})
    (root / "sweeps" / "lr" / "test_accuracy.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (root / "sweeps" / "lr" / "b_other.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    return root


def _section(text: str, title: str) -> str:
    return text.split(title, 1)[1].split("\n### ", 1)[0]


def _rows(body: str) -> list[str]:
    return [line for line in body.splitlines()
            if line.startswith("| ") and not line.startswith("| experiment ")]


def test_ledger_is_grouped_by_claim_in_catalog_order(tmp_path):
    text = report.render(make_results(tmp_path))
    assert text.startswith("# ")
    assert "`bn-exp report`" in text and "not edit by hand" in text.lower()
    # Distinct claims: trains_faster, higher_learning_rates, higher_accuracy, something_new.
    assert ("4 claims tested by 3 experiments: **0** reproduced, **2** partly reproduced, "
            "**1** not reproduced, **1** inconclusive.") in text
    statements = {c.key: c.statement for c in catalog.CLAIMS}
    order = [text.index(f"### {i}. ") for i in range(1, 5)]
    assert order == sorted(order)
    assert text.index(statements["higher_learning_rates"]) < text.index(statements["trains_faster"])
    # Each claim once, with all its evidence beneath it.
    faster = _section(text, f". {statements['trains_faster']}\n")
    rows = _rows(faster)
    assert len(rows) == 3 and [r.split(" | ")[0] for r in rows] == [
        "| [`fig1`](fig1/)", "| [`fig1_seeds`](fig1_seeds/)", "| [`sweeps/lr`](sweeps/lr/)"]
    # The single-seed row is an illustration without a verdict of its own; firm rows disagree.
    assert rows[0].endswith(
        "| 1 | 0.25 [0.125, 0.375] | illustration (1 seed) | [fig1a](fig1/fig1a_test_accuracy.png) |")
    assert "Verdict: **partly reproduced**" in faster
    assert "| 5 | 0.25 [0.125, 0.375] | reproduced | [acc](fig1_seeds/acc.png) |" in rows[1]
    # No 'figure' key: the first PNG of the folder in name order.
    assert rows[2].endswith("| not reproduced | [b_other](sweeps/lr/b_other.png) |")
    assert "- `fig1_seeds.bn_trains_faster`: rule fig1_seeds.bn_trains_faster" in faster
    # Pipes escaped and newlines turned into <br>, so the row keeps exactly 8 cells.
    acc_rows = _rows(_section(text, f". {statements['higher_accuracy']}\n"))
    assert "0.982 \\| 0.972<br>see fig" in acc_rows[0]
    assert len(re.findall(r"(?<!\\)\|", acc_rows[0])) == 9
    # A row whose id the catalog does not name gets its own entry after the catalog's.
    assert text.index("claim fig1_seeds.something_new") > text.index(statements["higher_accuracy"])
    # Untested catalog claims are listed, not counted.
    assert "## Not yet tested" in text and statements["wu_more_gaussian"] in text
    assert "claims not yet tested (listed at the end)." in text


def test_a_catalog_fully_tested_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(catalog, "CLAIMS", tuple(c for c in catalog.CLAIMS
                                                 if c.key == "trains_faster"))
    text = report.render(make_results(tmp_path))
    assert "Every claim of the catalog (`bn_experiments/catalog.py`) is tested." in text
    assert "not yet tested" not in text and "## Not yet tested" not in text


def test_combine_rule():
    row = lambda v, seeds=3: _claim("x.y", v, seeds=seeds)  # noqa: E731
    assert report.combine([row("reproduced"), row("inconclusive")]) == "reproduced"
    assert report.combine([row("inconclusive"), row("reproduced", seeds=1)]) == "inconclusive"
    assert report.combine([row("reproduced"), row("not reproduced")]) == "partly reproduced"
    assert report.combine([row("not reproduced"), row("not reproduced")]) == "not reproduced"
    assert report.combine([]) == "inconclusive"


def test_render_runs_and_final_metrics(tmp_path):
    text = report.render(make_results(tmp_path))
    assert "- `no_bn`: test_accuracy 0.9712; max_test_accuracy 0.9730; steps_to_target not reached" in text
    assert "- `bn`: test_accuracy 0.9823; max_test_accuracy 0.9841; steps_to_target 4,500" in text
    assert "- `lr_10`: test_accuracy n/a (non-finite); **diverged at step 37**" in text
    assert "Folder: [`sweeps/lr/`](sweeps/lr/); 2 runs; 2 claim rows." in text


def test_render_deterministic_and_write(tmp_path):
    root = make_results(tmp_path / "results")
    first = report.render(root)
    assert first == report.render(root)
    assert str(tmp_path) not in first  # no absolute paths
    path = report.write(root)
    assert path == root / "README.md" and path.read_text() == first
    assert report.render(root) == first  # README.md itself does not change the render
    assert report.render(make_results(tmp_path / "elsewhere")) == first


def test_no_figure_and_no_claims(tmp_path):
    summary.write(tmp_path / "silent" / "summary.json", {
        "experiment": "silent", "runs": [_run("only", {"loss": 0.5, "accuracy": 0.91})], "claims": []})
    text = report.render(tmp_path)
    assert "0 claims tested by 1 experiment" in text
    assert "- `only`: accuracy 0.9100; loss 0.5000" in text


def test_invalid_summary_is_listed_not_fatal(tmp_path):
    make_results(tmp_path)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "summary.json").write_text(json.dumps({"experiment": "x", "runs": []}))
    text = report.render(tmp_path)
    assert "### `broken` (invalid summary)" in text and "'runs' must be a non-empty list" in text
    assert "4 claims tested by 4 experiments" in text


def test_empty_results_dir(tmp_path):
    for root in (tmp_path, tmp_path / "missing"):
        text = report.render(root)
        assert text.startswith("# ") and "No experiment results yet" in text
    path = report.write(tmp_path)
    assert path.read_text() == report.render(tmp_path)


def test_smoke_runs_are_left_out_of_the_ledger(tmp_path):
    make_results(tmp_path)
    before = report.render(tmp_path)
    smoke = summary.mark_smoke({"experiment": "fig1", "runs": [_run("bn", {"test_accuracy": 0.7})],
                                "claims": [_claim("fig1.bn_higher_accuracy", "reproduced")]})
    summary.write(tmp_path / "smoke" / "summary.json", smoke)
    text = report.render(tmp_path)
    assert "Left out (smoke runs, too short for verdicts): `smoke`." in text
    assert text.replace("Left out (smoke runs, too short for verdicts): `smoke`.\n\n", "") == before


def test_report_on_a_missing_results_folder_is_an_error_and_creates_nothing(tmp_path, capsys):
    from bn_experiments import cli
    typo = tmp_path / "resluts"
    assert cli.main(["report", "--results", str(typo)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(typo) in err and "no such folder" in err
    assert not typo.exists()

"""The claims ledger rendered from fake summaries: fast, no training."""
from __future__ import annotations

import json
import pathlib
import re

from bn_experiments import report, summary


def _run(name: str, final: dict, diverged_at: int | None = None) -> dict:
    return {"name": name, "config": {"learning_rate": 0.5, "steps": 100},
            "curves": {"test_accuracy": {"step": [0, 100], "value": [0.1, final.get("test_accuracy")]}},
            "final": final, "diverged_at_step": diverged_at}


def _claim(cid: str, verdict: str, **extra) -> dict:
    return {"id": cid, "claim": f"claim {cid}", "measured": f"measured {cid}", "paper": f"paper {cid}",
            "verdict": verdict, **extra}


def make_results(root: pathlib.Path) -> pathlib.Path:
    """Two experiments: fig1 (with a figure per claim) and a nested sweep (no 'figure' keys)."""
    summary.write(root / "fig1" / "summary.json", {
        "experiment": "fig1",
        "runs": [_run("no_bn", {"test_accuracy": 0.9712, "max_test_accuracy": 0.97301,
                                "steps_to_target": None}, diverged_at=None),
                 _run("bn", {"test_accuracy": 0.98234, "max_test_accuracy": 0.9841,
                             "steps_to_target": 4500})],
        "claims": [
            _claim("fig1.faster", "reproduced", figure="fig1a_test_accuracy.png"),
            _claim("fig1.higher", "partly reproduced", figure="fig1a_test_accuracy.png",
                   measured="0.982 | 0.972\nsee fig"),
            _claim("fig1.stable", "not reproduced", figure="fig1c_bn_percentiles.png"),
        ]})
    (root / "fig1" / "fig1a_test_accuracy.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    summary.write(root / "sweeps" / "lr" / "summary.json", {
        "experiment": "lr_sweep",
        "runs": [_run("lr_0.1", {"test_accuracy": 0.95}),
                 _run("lr_10", {"test_accuracy": None}, diverged_at=37)],
        "claims": [_claim("sweep.range", "reproduced")]})
    (root / "sweeps" / "lr" / "test_accuracy.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (root / "sweeps" / "lr" / "b_other.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    return root


def _table_rows(text: str, section: str) -> list[str]:
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return [line for line in body.splitlines() if line.startswith("| ") and not line.startswith("| claim ")]


def test_render_tables_counts_links(tmp_path):
    text = report.render(make_results(tmp_path))
    assert text.startswith("# ")
    assert "`bn-exp report`" in text and "summary.json" in text and "not edit by hand" in text.lower()
    # Overview: 2 reproduced, 1 partly, 1 not.
    assert "4 claims from 2 experiments: **2** reproduced, **1** partly reproduced, **1** not reproduced." in text
    assert "| fig1 | [`fig1/`](fig1/) | 3 | 1 | 1 | 1 |" in text
    assert "| lr_sweep | [`sweeps/lr/`](sweeps/lr/) | 1 | 1 | 0 | 0 |" in text
    # Sections in folder order, with folder links.
    assert text.index("## fig1") < text.index("## lr_sweep")
    assert "Folder: [`fig1/`](fig1/)" in text and "Folder: [`sweeps/lr/`](sweeps/lr/)" in text

    rows = _table_rows(text, "fig1")
    assert rows[0] == ("| `fig1.faster` claim fig1.faster | measured fig1.faster | paper fig1.faster "
                       "| reproduced | [fig1a](fig1/fig1a_test_accuracy.png) |")
    # Pipes escaped and newlines turned into <br>, so the row keeps exactly 5 cells.
    assert "| 0.982 \\| 0.972<br>see fig |" in rows[1]
    assert len(re.findall(r"(?<!\\)\|", rows[1])) == 6  # 5 cells -> 6 unescaped pipes
    # A claim's figure is linked even if the PNG is not drawn yet.
    assert rows[2].endswith("| not reproduced | [fig1c](fig1/fig1c_bn_percentiles.png) |")
    # No 'figure' key: first PNG of the folder in name order.
    sweep_rows = _table_rows(text, "lr_sweep")
    assert sweep_rows == ["| `sweep.range` claim sweep.range | measured sweep.range | paper sweep.range "
                          "| reproduced | [b_other](sweeps/lr/b_other.png) |"]


def test_render_runs_and_final_metrics(tmp_path):
    text = report.render(make_results(tmp_path))
    assert "- `no_bn`: test_accuracy 0.9712; max_test_accuracy 0.9730; steps_to_target not reached" in text
    assert "- `bn`: test_accuracy 0.9823; max_test_accuracy 0.9841; steps_to_target 4,500" in text
    assert "- `lr_10`: test_accuracy n/a (non-finite); **diverged at step 37**" in text
    assert "diverged" not in text.split("- `no_bn`", 1)[1].split("\n", 1)[0]


def test_render_deterministic_and_write(tmp_path):
    root = make_results(tmp_path / "results")
    first = report.render(root)
    assert first == report.render(root)
    assert str(tmp_path) not in first  # no absolute paths
    path = report.write(root)
    assert path == root / "README.md" and path.read_text() == first
    # README.md itself does not change the render (it is not a summary or a figure).
    assert report.render(root) == first
    # A copy of the folder elsewhere renders the same bytes.
    other = make_results(tmp_path / "elsewhere")
    assert report.render(other) == first


def test_no_figure_and_no_claims(tmp_path):
    summary.write(tmp_path / "bare" / "summary.json", {
        "experiment": "bare", "runs": [_run("only", {"loss": 0.5, "accuracy": 0.91})],
        "claims": [_claim("bare.one", "reproduced")]})
    summary.write(tmp_path / "silent" / "summary.json", {
        "experiment": "silent", "runs": [_run("only", {})], "claims": []})
    text = report.render(tmp_path)
    assert _table_rows(text, "bare")[0].endswith("| reproduced | — |")
    assert "- `only`: accuracy 0.9100; loss 0.5000" in text
    assert "No claims stated by this experiment." in text
    assert "- `only`: no final metrics" in text


def test_invalid_summary_is_listed_not_fatal(tmp_path):
    make_results(tmp_path)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "summary.json").write_text(json.dumps({"experiment": "x", "runs": []}))
    text = report.render(tmp_path)
    assert "## `broken` (invalid summary)" in text and "'runs' must be a non-empty list" in text
    assert "4 claims from 3 experiments" in text


def test_empty_results_dir(tmp_path):
    for root in (tmp_path, tmp_path / "missing"):
        text = report.render(root)
        assert text.startswith("# ") and "No experiment results yet" in text
        assert "| claim |" not in text
    path = report.write(tmp_path)
    assert path.read_text() == report.render(tmp_path)

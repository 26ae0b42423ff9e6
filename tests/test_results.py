"""Committed results: every summary.json follows the contract and the ledger is a fresh `bn-exp report`."""
import pathlib

import pytest

from bn_experiments import report, summary

RESULTS = pathlib.Path(__file__).resolve().parent.parent / "results"
SUMMARIES = sorted(RESULTS.glob("**/summary.json"))


@pytest.mark.parametrize("path", SUMMARIES, ids=[str(p.relative_to(RESULTS)) for p in SUMMARIES])
def test_committed_summary_follows_the_contract(path):
    doc = summary.load(path)  # raises with the list of problems
    assert summary.dumps(doc) == path.read_text(), "not canonical: regenerate with bn-exp"
    for run in doc["runs"]:
        for curve in run["curves"].values():
            assert len(curve["step"]) <= summary.MAX_POINTS


def test_committed_ledger_equals_a_fresh_report():
    assert (RESULTS / "README.md").read_text() == report.render(RESULTS)


def test_results_include_figure_1():
    assert (RESULTS / "fig1" / "summary.json").is_file()

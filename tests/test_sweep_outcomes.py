"""The sweeps' fail rule and selections (bn_experiments/sweep_outcomes.py): known answers, fast."""
from __future__ import annotations

from claim_fixtures import point

from bn_experiments import sweep_outcomes as outcomes


def _run(final_acc, best_acc, div=None, lr=1.0, seed=0):
    return {"name": "r", "config": {"learning_rate": lr, "seed": seed}, "curves": {},
            "diverged_at_step": div,
            "final": {"test_accuracy": final_acc, "max_test_accuracy": best_acc,
                      "diverged": float(div is not None)}}


def test_a_run_fails_when_it_diverges_or_ends_at_chance():
    assert outcomes.outcome(_run(0.95, 0.96)) == "trains"
    assert outcomes.outcome(_run(None, 0.5, div=30)) == "diverged"
    assert outcomes.outcome(_run(0.11, 0.13)) == "chance"          # finite, never left chance
    assert outcomes.outcome(_run(0.10, 0.80)) == "collapsed"       # trained, then fell back
    assert outcomes.outcome(_run(0.2, 0.2)) == "trains"            # the limit itself trains
    assert outcomes.outcome(_run(None, None)) == "chance"
    assert [outcomes.fails(r) for r in (_run(0.95, 0.96), _run(0.11, 0.13), _run(None, 0.9, div=5))] \
        == [False, True, True]
    assert outcomes.final_accuracy(_run(0.9, 0.9, div=7)) is None


def test_largest_training_counts_chance_runs_as_failures():
    runs = [_run(0.95, 0.95, lr=1.0), _run(0.93, 0.94, lr=2.0), _run(0.1, 0.11, lr=4.0),
            _run(None, 0.3, div=3, lr=8.0)]
    assert outcomes.largest_training(runs, "learning_rate") == 2.0
    # A divergence-only rule would have called 4.0 trainable.
    assert outcomes.largest_training(runs[2:], "learning_rate") is None


def test_best_over_picks_the_best_final_accuracy_among_runs_that_train():
    runs = [_run(0.90, 0.91, lr=0.5), _run(0.95, 0.95, lr=2.0), _run(0.93, 0.97, lr=8.0),
            _run(0.15, 0.99, lr=32.0)]  # collapsed: its high best accuracy does not count
    assert outcomes.best_over(runs, "learning_rate") == (2.0, 0.95)
    assert outcomes.best_over([_run(0.9, 0.9, lr=4.0), _run(0.9, 0.9, lr=1.0)],
                              "learning_rate") == (1.0, 0.9)  # a tie goes to the smaller value
    assert outcomes.best_over(runs[3:], "learning_rate") == (None, None)


def test_fail_table_names_each_failure():
    runs = [point("none", lr, s, lr <= 1.0, div=5 if (lr > 1 and s == 0) else None)
            for lr in (1.0, 10.0) for s in range(3)]
    assert outcomes.counts_by_value(runs, "learning_rate")[10.0] == \
        {"trains": 0, "collapsed": 0, "chance": 2, "diverged": 1}
    assert outcomes.fail_table(runs, "learning_rate") == "1 0/3, 10 3/3 (2 chance, 1 diverged)"

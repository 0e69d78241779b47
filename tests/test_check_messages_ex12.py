"""Exercise 12's checks can fail, and say what is wrong in one sentence.

Each broken padding_waste below makes one classic mistake; the named check must FAIL with a
message naming it, while the reference solution and other correct ways of writing it pass.
"""

import numpy as np
import pytest
from notebook_tools import assert_fails_with, load_solution

from llmlab.checks import PASS, TODO, run_checks
from llmlab.checks.ex12_padding_waste import CHECKS

solution = load_solution("12_padding_waste").padding_waste


def statuses(fn):
    results = run_checks(CHECKS, fn, "padding_waste").results
    return {r.name: (r.status, r.message) for r in results}


def batches(lengths, b):
    return [lengths[i : i + b] for i in range(0, len(lengths), b)]


def guarded(formula):
    def padding_waste(lengths, batch_size):
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        return formula(list(lengths), batch_size)

    return padding_waste


def numpy_version(lengths, batch_size):
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    x = np.asarray(lengths, dtype=np.float64)
    pad = -len(x) % batch_size
    grid = np.concatenate([x, np.full(pad, np.nan)]).reshape(-1, batch_size)
    rows = (~np.isnan(grid)).sum(axis=1)
    slots = (rows * np.nanmax(grid, axis=1)).sum()
    return float(1 - x.sum() / slots)


MISTAKES = [
    ("global max", lambda ls, b: 1 - sum(ls) / (len(ls) * max(ls)), "ALL requests"),
    ("sorted", lambda ls, b: solution(sorted(ls), b), "sorts"),
    ("full last batch", lambda ls, b: 1 - sum(ls) / sum(b * max(x) for x in batches(ls, b)),
     "counted as full"),
    ("over used", lambda ls, b: (sum(len(x) * max(x) for x in batches(ls, b)) - sum(ls))
     / sum(ls), "used ones"),
    ("a count", lambda ls, b: sum(len(x) * max(x) for x in batches(ls, b)) - sum(ls),
     "number of wasted"),
    ("used share", lambda ls, b: 1 - solution(ls, b), "in use"),
    ("b - 1", lambda ls, b: solution(ls, max(1, b - 1)), "batch_size - 1"),
]  # fmt: skip


def test_solution_passes():
    assert all(s == PASS for s, _ in statuses(solution).values())


def test_numpy_variant_passes():
    result = statuses(numpy_version)
    assert all(s == PASS for s, _ in result.values()), result


@pytest.mark.parametrize("name, formula, words", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_mistake_is_named(name, formula, words):
    assert_fails_with(statuses(guarded(formula)), "waste share", words)


def test_mean_length_is_named():
    def mean_length(ls, b):
        slots = sum(len(x) * sum(x) / len(x) for x in batches(ls, b))
        return 1 - sum(ls) / slots

    assert_fails_with(statuses(guarded(mean_length)), "waste share", "longest answer is done")


def test_missing_validation_is_caught():
    def no_check(lengths, batch_size):
        return solution(lengths, max(batch_size, 1))

    assert_fails_with(statuses(no_check), "bad batch_size", "must raise ValueError")


def test_stub_reports_todo():
    def stub(lengths, batch_size):
        raise NotImplementedError

    assert all(s == TODO for s, _ in statuses(stub).values())

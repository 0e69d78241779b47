"""Exercise 9's checks can fail, and say what is wrong in one sentence.

Each broken latency_percentiles below makes one classic mistake; the named check must FAIL with
a message naming it, while the reference solution and other correct ways of writing it (both
percentile conventions, the standard library, float64 numpy arrays) pass.
"""

import statistics

import numpy as np
import pytest
from notebook_tools import assert_fails_with, load_solution

from llmlab.checks import PASS, TODO, run_checks
from llmlab.checks.ex09_latency_percentiles import CHECKS


def statuses(fn):
    results = run_checks(CHECKS, fn, "latency_percentiles").results
    return {r.name: (r.status, r.message) for r in results}


def served(ts):
    return [t for t in ts if not t["error"] and t["token_times"]]


def make(ttft_of, tpot_of, pct=lambda xs, q: float(np.percentile(xs, q)), tpots_from=None):
    """A latency_percentiles built from per-request formulas and a percentile function."""

    def latency_percentiles(timelines):
        ok = served(timelines)
        ttfts = [ttft_of(t) for t in ok]
        if tpots_from is not None:
            tpots = tpots_from(ok)
        else:
            tpots = [tpot_of(t) for t in ok if len(t["token_times"]) >= 2]

        def p(xs, q):
            return pct(xs, q) if xs else None

        return {"ttft_p50": p(ttfts, 50), "ttft_p95": p(ttfts, 95),
                "tpot_p50": p(tpots, 50), "tpot_p95": p(tpots, 95)}  # fmt: skip

    return latency_percentiles


def right_ttft(t):
    return t["token_times"][0] - t["arrival"]


def right_tpot(t):
    times = t["token_times"]
    return (times[-1] - times[0]) / (len(times) - 1)


def nearest_rank(xs, q):
    xs = sorted(xs)
    return xs[max(1, int(np.ceil(q / 100 * len(xs)))) - 1]


CORRECT = {
    "numpy linear": make(right_ttft, right_tpot),
    "nearest rank": make(right_ttft, right_tpot, nearest_rank),
    "statistics inclusive": make(
        right_ttft,
        right_tpot,
        lambda xs, q: (
            xs[0] if len(xs) == 1 else statistics.quantiles(xs, n=100, method="inclusive")[q - 1]
        ),
    ),  # fmt: skip
    "mean of np.diff": make(right_ttft, lambda t: float(np.mean(np.diff(t["token_times"])))),
}

MISTAKES = [
    ("from prefill start", make(lambda t: t["token_times"][0] - t["prefill_start"], right_tpot),
     "TTFT", "prefill_start"),
    ("n not n-1", make(right_ttft, lambda t: (t["token_times"][-1] - t["token_times"][0])
                       / len(t["token_times"])), "TPOT", "n - 1 gaps"),
    ("e2e / n", make(right_ttft, lambda t: (t["token_times"][-1] - t["arrival"])
                     / len(t["token_times"])), "TPOT", "folds TTFT in"),
    ("one-token as 0", make(right_ttft, None, tpots_from=lambda ok: [
        right_tpot(t) if len(t["token_times"]) > 1 else 0.0 for t in ok]),
     "TPOT", "TPOT 0"),
    ("pooled gaps", make(right_ttft, None, tpots_from=lambda ok: [
        b - a for t in ok for a, b in zip(t["token_times"], t["token_times"][1:])]),
     "TPOT", "pooled"),
    ("median gap", make(right_ttft, lambda t: float(np.median(np.diff(t["token_times"])))),
     "TPOT", "median gap"),
    ("unsorted", make(right_ttft, right_tpot, lambda xs, q: xs[int(q / 100 * (len(xs) - 1))]),
     "TTFT", "sort the values"),
    ("mean as P50", make(right_ttft, right_tpot, lambda xs, q: float(np.mean(xs)) if q == 50
                         else float(np.percentile(xs, q))), "TTFT", "P50 is the mean"),
    ("max as P95", make(right_ttft, right_tpot, lambda xs, q: max(xs) if q == 95
                        else float(np.percentile(xs, q))), "TTFT", "P95 is the maximum"),
    ("q as fraction", make(right_ttft, right_tpot,
                           lambda xs, q: float(np.percentile(xs, q / 100))), "TTFT", "fraction"),
    ("milliseconds", make(lambda t: 1e3 * right_ttft(t), lambda t: 1e3 * right_tpot(t)),
     "TTFT", "milliseconds"),
]  # fmt: skip


def test_solution_passes():
    solution = load_solution("09_latency_percentiles").latency_percentiles
    assert all(s == PASS for s, _ in statuses(solution).values())


@pytest.mark.parametrize("name", CORRECT)
def test_correct_variants_pass(name):
    result = statuses(CORRECT[name])
    assert all(s == PASS for s, _ in result.values()), result


@pytest.mark.parametrize("name, fn, check, words", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_mistake_is_named(name, fn, check, words):
    assert_fails_with(statuses(fn), check, words)


def test_crash_on_empty_input_is_explained():
    def no_guard(timelines):
        ok = served(timelines)
        ttfts = [right_ttft(t) for t in ok]
        tpots = [right_tpot(t) for t in ok]  # one-token answers divide by zero
        return {"ttft_p50": float(np.percentile(ttfts, 50)),
                "ttft_p95": float(np.percentile(ttfts, 95)),
                "tpot_p50": float(np.percentile(tpots, 50)),
                "tpot_p95": float(np.percentile(tpots, 95))}  # fmt: skip

    assert_fails_with(statuses(no_guard), "format", "one-token requests no TPOT")


def test_nan_instead_of_none_for_no_requests():
    solution = load_solution("09_latency_percentiles").latency_percentiles

    def nan_when_empty(timelines):
        out = solution(timelines)
        return {k: float("nan") if v is None else v for k, v in out.items()}

    assert_fails_with(statuses(nan_when_empty), "edge cases", "must be None")


def test_stub_reports_todo():
    def stub(timelines):
        raise NotImplementedError

    assert all(s == TODO for s, _ in statuses(stub).values())

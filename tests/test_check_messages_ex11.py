"""Exercise 11's checks can fail, and say what is wrong in one sentence.

Each broken goodput below makes one classic mistake; the named check must FAIL with a message
naming it, while the reference solution and another correct way of writing it pass.
"""

import pytest
from notebook_tools import assert_fails_with, load_solution

from llmlab.checks import PASS, TODO, run_checks
from llmlab.checks.ex11_goodput import CHECKS
from llmlab.serving_metrics import goodput as library_goodput

solution = load_solution("11_goodput").goodput


def statuses(fn):
    return {r.name: (r.status, r.message) for r in run_checks(CHECKS, fn, "goodput").results}


def served(ts):
    return [t for t in ts if not t["error"] and t["token_times"]]


def ttft(t, start="arrival"):
    return t["token_times"][0] - t[start]


def tpot(t, n_minus=1):
    n = len(t["token_times"])
    return 0.0 if n < 2 else (t["token_times"][-1] - t["token_times"][0]) / (n - n_minus)


def counting(keep, per=lambda good, ts, d: good / d):
    def goodput(timelines, ttft_slo, tpot_slo, duration):
        good = sum(1 for t in served(timelines) if keep(t, ttft_slo, tpot_slo))
        return per(good, timelines, duration)

    return goodput


def right(t, a, b):
    return ttft(t) <= a and tpot(t) <= b


MISTAKES = [
    ("throughput", counting(lambda t, a, b: True), "throughput"),
    ("missed", counting(lambda t, a, b: not right(t, a, b)), "missed"),
    ("only ttft", counting(lambda t, a, b: ttft(t) <= a), "only TTFT"),
    ("only tpot", counting(lambda t, a, b: tpot(t) <= b), "only TPOT"),
    ("drops one-token", counting(lambda t, a, b: len(t["token_times"]) > 1 and right(t, a, b)),
     "one-token"),
    ("from prefill", counting(lambda t, a, b: ttft(t, "prefill_start") <= a and tpot(t) <= b),
     "prefill_start"),
    ("tpot over n", counting(lambda t, a, b: ttft(t) <= a and tpot(t, 0) <= b), "n - 1"),
    ("a count", counting(right, per=lambda good, ts, d: good), "a count"),
    ("a share", counting(right, per=lambda good, ts, d: good / len(ts)), "share"),
    ("strict limits", counting(lambda t, a, b: ttft(t) < a and tpot(t) < b), "at most"),
]  # fmt: skip


def test_solution_passes():
    assert all(s == PASS for s, _ in statuses(solution).values())


def test_library_variant_passes():
    def via_library(timelines, ttft_slo, tpot_slo, duration):
        return library_goodput(timelines, ttft_slo, tpot_slo, duration) if timelines else 0.0

    result = statuses(via_library)
    assert all(s == PASS for s, _ in result.values()), result


@pytest.mark.parametrize("name, fn, words", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_mistake_is_named(name, fn, words):
    result = statuses(fn)
    check = "limits and empty runs" if name == "strict limits" else "goodput"
    assert_fails_with(result, check, words)


def test_crash_on_failed_request_is_explained():
    def no_guard(timelines, ttft_slo, tpot_slo, duration):
        good = sum(1 for t in timelines if right(t, ttft_slo, tpot_slo))
        return good / duration

    assert_fails_with(statuses(no_guard), "goodput", "never met the SLO")


def test_stub_reports_todo():
    def stub(*args):
        raise NotImplementedError

    assert all(s == TODO for s, _ in statuses(stub).values())

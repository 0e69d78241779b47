"""Exercise 11's checks can fail, and say what is wrong in one sentence.

Each broken goodput below makes one classic mistake; the named check must FAIL with a message
naming it, while the reference solution and other correct ways of writing it (the library,
torch in float32, NumPy, the statistics of np.diff) pass.
"""

import numpy as np
import pytest
import torch
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


def counting(keep, per=lambda good, ts, d: good / d, which=served):
    def goodput(timelines, ttft_slo, tpot_slo, duration):
        good = sum(1 for t in which(timelines) if keep(t, ttft_slo, tpot_slo))
        return per(good, timelines, duration)

    return goodput


def right(t, a, b):
    return ttft(t) <= a and tpot(t) <= b


def gaps(t):
    return np.diff(t["token_times"]) if len(t["token_times"]) > 1 else np.zeros(1)


# ---- right answers, written differently ------------------------------------------------------------
def via_library(timelines, ttft_slo, tpot_slo, duration):
    return library_goodput(timelines, ttft_slo, tpot_slo, duration) if timelines else 0.0


def torch_float32(timelines, ttft_slo, tpot_slo, duration):
    """Masks over float32 tensors (torch's default dtype); returns a 0-d tensor."""
    ok = [t for t in timelines if t["error"] is None and len(t["token_times"]) > 0]
    if not ok:
        return torch.tensor(0.0)
    first = torch.tensor([t["token_times"][0] for t in ok])
    last = torch.tensor([t["token_times"][-1] for t in ok])
    arrival = torch.tensor([t["arrival"] for t in ok])
    gaps_after_first = torch.tensor([len(t["token_times"]) - 1 for t in ok])
    per_token = (last - first) / gaps_after_first.clamp(min=1)  # 0 for one token
    met = (first - arrival <= ttft_slo) & (per_token <= tpot_slo)
    assert first.dtype == torch.float32
    return met.sum() / duration


def numpy_mean_of_diff(timelines, ttft_slo, tpot_slo, duration):
    good = 0
    for t in timelines:
        if t["error"] is not None or not t["token_times"]:
            continue
        times = np.asarray(t["token_times"], dtype=np.float32)
        fast_start = times[0] - np.float32(t["arrival"]) <= ttft_slo
        steady = len(times) == 1 or np.diff(times).mean() <= tpot_slo
        good += bool(fast_start and steady)
    return np.float64(good) / duration


def filter_then_count(timelines, ttft_slo, tpot_slo, duration):
    ok = filter(lambda t: t["error"] is None and t["token_times"], timelines)
    met = [t for t in ok if ttft(t) <= ttft_slo]
    met = [t for t in met if len(t["token_times"]) < 2 or tpot(t) <= tpot_slo]
    return len(met) / duration


def refusing_bad_durations(fn):
    """The task states it: a duration of 0 or less raises ValueError naming duration."""

    def goodput(timelines, ttft_slo, tpot_slo, duration):
        if not duration > 0:
            raise ValueError(f"duration must be positive, got {duration}")
        return fn(timelines, ttft_slo, tpot_slo, duration)

    return goodput


CORRECT = {
    "solution": solution,
    "library": refusing_bad_durations(via_library),
    "torch float32": refusing_bad_durations(torch_float32),
    "numpy float32 mean of diff": refusing_bad_durations(numpy_mean_of_diff),
    "filter then count": refusing_bad_durations(filter_then_count),
}


# ---- mistakes ----------------------------------------------------------------------------------------
def with_tokens(ts):
    return [t for t in ts if t["token_times"]]


def span(ts):
    return max(t["token_times"][-1] for t in served(ts)) - min(t["arrival"] for t in ts)


def e2e_over_n(t):
    return (t["token_times"][-1] - t["arrival"]) / len(t["token_times"])


def tokens_of_good(timelines, ttft_slo, tpot_slo, duration):
    good = [t for t in served(timelines) if right(t, ttft_slo, tpot_slo)]
    return sum(len(t["token_times"]) for t in good) / duration


def milliseconds(timelines, ttft_slo, tpot_slo, duration):
    good = [t for t in served(timelines)
            if 1e3 * ttft(t) <= ttft_slo and 1e3 * tpot(t) <= tpot_slo]  # fmt: skip
    return len(good) / duration


MISTAKES = [
    ("throughput", counting(lambda t, a, b: True), "throughput"),
    ("missed", counting(lambda t, a, b: not right(t, a, b)), "missed"),
    ("only ttft", counting(lambda t, a, b: ttft(t) <= a), "only TTFT"),
    ("only tpot", counting(lambda t, a, b: tpot(t) <= b), "only TPOT"),
    ("either limit", counting(lambda t, a, b: ttft(t) <= a or tpot(t) <= b), "either limit"),
    ("drops one-token", counting(lambda t, a, b: len(t["token_times"]) > 1 and right(t, a, b)),
     "one-token"),
    ("error with tokens", counting(right, which=with_tokens), "has an error"),
    ("from prefill", counting(lambda t, a, b: ttft(t, "prefill_start") <= a and tpot(t) <= b),
     "prefill_start"),
    ("end-to-end as ttft", counting(
        lambda t, a, b: t["token_times"][-1] - t["arrival"] <= a and tpot(t) <= b),
     "end-to-end"),
    ("tpot over n", counting(lambda t, a, b: ttft(t) <= a and tpot(t, 0) <= b), "n - 1"),
    ("tpot e2e / n", counting(lambda t, a, b: ttft(t) <= a and (
        len(t["token_times"]) < 2 or e2e_over_n(t) <= b)), "folds TTFT in"),
    ("every gap", counting(lambda t, a, b: ttft(t) <= a and gaps(t).max() <= b), "longest gap"),
    ("median gap", counting(lambda t, a, b: ttft(t) <= a and np.median(gaps(t)) <= b),
     "median gap"),
    ("limits swapped", counting(lambda t, a, b: ttft(t) <= b and tpot(t) <= a), "swapped"),
    ("a count", counting(right, per=lambda good, ts, d: good), "a count"),
    ("a share", counting(right, per=lambda good, ts, d: good / len(ts)), "share"),
    ("share of served", counting(right, per=lambda good, ts, d: good / len(served(ts))),
     "share of served"),
    ("own span", counting(right, per=lambda good, ts, d: good / span(ts)), "span"),
    ("tokens", tokens_of_good, "tokens"),
    ("milliseconds", milliseconds, "in seconds"),
]  # fmt: skip


def test_gallery_is_large_enough():
    assert len(MISTAKES) >= 15 and len(CORRECT) >= 3


@pytest.mark.parametrize("name", CORRECT)
def test_correct_variants_pass(name):
    result = statuses(CORRECT[name])
    assert all(s == PASS for s, _ in result.values()), result


@pytest.mark.parametrize("name, fn, words", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_mistake_is_named(name, fn, words):
    result = statuses(fn)
    assert_fails_with(result, "goodput", words)
    assert "expected" not in result["goodput"][1], "a known mistake is named, not described"


def test_strict_limits_are_caught():
    strict = counting(lambda t, a, b: ttft(t) < a and tpot(t) < b)
    assert statuses(strict)["goodput"][0] == PASS  # no request of the runs is on a limit
    assert_fails_with(statuses(strict), "limits and empty runs", "at most")


def test_crash_on_failed_request_is_explained():
    def no_guard(timelines, ttft_slo, tpot_slo, duration):
        good = sum(1 for t in timelines if right(t, ttft_slo, tpot_slo))
        return good / duration

    result = statuses(no_guard)
    assert_fails_with(result, "goodput", "request with an error")
    assert "raised IndexError" in result["goodput"][1]


def test_crash_on_one_token_answers_is_explained():
    def divides_by_zero(timelines, ttft_slo, tpot_slo, duration):
        ok = served(timelines)
        good = [t for t in ok if ttft(t) <= ttft_slo and (t["token_times"][-1] - t["token_times"][0])
                / (len(t["token_times"]) - 1) <= tpot_slo]  # fmt: skip
        return len(good) / duration

    result = statuses(divides_by_zero)
    assert_fails_with(result, "goodput", "one-token answer")
    assert "with an error" not in result["goodput"][1], "it does skip failed requests"


def test_crash_on_no_requests_is_explained():
    def mean_over_requests(timelines, ttft_slo, tpot_slo, duration):
        met = [right(t, ttft_slo, tpot_slo) for t in served(timelines)]
        return sum(met) / len(timelines) * len(timelines) / duration

    assert_fails_with(statuses(mean_over_requests), "limits and empty runs", "goodput is 0")


def test_returning_a_list_is_named():
    def a_list(timelines, ttft_slo, tpot_slo, duration):
        return [solution(timelines, ttft_slo, tpot_slo, duration)]

    assert_fails_with(statuses(a_list), "goodput", "one number")


def test_stub_reports_todo():
    def stub(*args):
        raise NotImplementedError

    assert all(s == TODO for s, _ in statuses(stub).values())


# ---- mistakes of fresh learners (issue #24) that the first checks let through ----------------


def no_tokens_not_skipped(timelines, ttft_slo, tpot_slo, duration):
    """Skips requests with an error, but not a request with no error and no tokens."""
    if duration <= 0:
        raise ValueError(f"duration must be > 0, got {duration}")
    good = 0
    for t in timelines:
        if t["error"]:
            continue
        times = t["token_times"]
        if times[0] - t["arrival"] <= ttft_slo and (len(times) < 2 or tpot(t) <= tpot_slo):
            good += 1
    return good / duration


def two_tokens_have_no_tpot(timelines, ttft_slo, tpot_slo, duration):
    if duration <= 0:
        raise ValueError(f"duration must be > 0, got {duration}")
    ok = [t for t in served(timelines) if ttft(t) <= ttft_slo]
    return sum(1 for t in ok if len(t["token_times"]) <= 2 or tpot(t) <= tpot_slo) / duration


def divides_by_zero_duration(timelines, ttft_slo, tpot_slo, duration):
    return len([t for t in served(timelines) if right(t, ttft_slo, tpot_slo)]) / duration


def marks_the_timelines(timelines, ttft_slo, tpot_slo, duration):
    """Writes its verdict into the caller's dicts."""
    for t in timelines:
        t["met"] = bool(t["token_times"]) and not t["error"] and right(t, ttft_slo, tpot_slo)
    return solution(timelines, ttft_slo, tpot_slo, duration)


def rounds_ttft_to_milliseconds(timelines, ttft_slo, tpot_slo, duration):
    """TTFT rounded to whole milliseconds before the comparison: a near miss passes."""
    if duration <= 0:
        raise ValueError(f"duration must be > 0, got {duration}")
    ok = [t for t in served(timelines) if round(ttft(t), 3) <= ttft_slo]
    return sum(1 for t in ok if len(t["token_times"]) < 2 or tpot(t) <= tpot_slo) / duration


FRESH = [  # (learner's goodput, check that must FAIL, words its message must contain)
    (no_tokens_not_skipped, "boundary cases", "raised IndexError"),
    (no_tokens_not_skipped, "boundary cases", "(a request with no error and no tokens was not"),
    (two_tokens_have_no_tpot, "boundary cases", "a two-token answer has a TPOT"),
    (two_tokens_have_no_tpot, "boundary cases", "gives a two-token answer no TPOT"),
    (divides_by_zero_duration, "boundary cases", "it should raise ValueError (duration must be"),
    (marks_the_timelines, "worked examples", "changed its argument timelines"),
    (marks_the_timelines, "boundary cases", "work on a copy"),
]


@pytest.mark.parametrize("fn, check, words", FRESH, ids=[f"{f.__name__}-{c}" for f, c, _ in FRESH])
def test_fresh_mistake_fails_with_its_counterexample(fn, check, words):
    assert_fails_with(statuses(fn), check, words)


def test_a_near_miss_hidden_by_rounding_fails():
    assert_fails_with(statuses(rounds_ttft_to_milliseconds), "boundary cases", "just past it")

"""Exercise 6's checks can fail, and say what is wrong in one sentence.

Each broken latency_metrics below makes one classic mistake in reading TTFT, TPOT and
end-to-end latency off token timestamps; the named check must FAIL with a sentence naming it,
while the reference solution and other correct formulas (the mean of the gaps, numpy) pass.
"""

import numpy as np
import pytest
from notebook_tools import assert_fails_with, load_solution

from llmlab.checks import run_checks
from llmlab.checks.ex06_ttft_tpot import CHECKS, check_latency_metrics


def statuses(fn):
    return {
        r.name: (r.status, r.message) for r in run_checks(CHECKS, fn, "latency_metrics").results
    }


def metrics(ttft=None, tpot=None, e2e=None, one=None):
    """A validated latency_metrics; each keyword replaces one formula with a mistaken one."""

    def latency_metrics(request_time, token_times):
        t = [float(x) for x in token_times]
        if not t or t[0] < request_time or sorted(t) != t:
            raise ValueError("bad token_times")
        n = len(t)
        right_tpot = (t[-1] - t[0]) / (n - 1) if n > 1 else None
        return {
            "ttft": ttft(request_time, t) if ttft else t[0] - request_time,
            "tpot": (one if n == 1 and one else tpot)(request_time, t)
            if (tpot or (one and n == 1))
            else right_tpot,
            "e2e": e2e(request_time, t) if e2e else t[-1] - request_time,
        }

    return latency_metrics


def unvalidated(request_time, token_times):
    t = list(token_times)
    n = len(t)
    return {
        "ttft": t[0] - request_time,
        "tpot": (t[-1] - t[0]) / (n - 1) if n > 1 else None,
        "e2e": t[-1] - request_time,
    }


def zero_division(request_time, token_times):
    t = list(token_times)
    if not t:
        raise ValueError("token_times is empty")
    return {"ttft": t[0] - request_time, "tpot": (t[-1] - t[0]) / (len(t) - 1),
            "e2e": t[-1] - request_time}  # fmt: skip


def error_without_the_name(request_time, token_times):
    if len(token_times) == 0:
        raise ValueError("no data")
    return load_solution("06_ttft_tpot").latency_metrics(request_time, token_times)


GALLERY = [
    (metrics(tpot=lambda r, t: (t[-1] - t[0]) / len(t)), "TPOT", "divide by n - 1"),
    (metrics(tpot=lambda r, t: (t[-1] - r) / len(t)), "TPOT", "includes the time to the first"),
    (metrics(tpot=lambda r, t: (t[-1] - r) / (len(t) - 1)), "TPOT", "starts at the request"),
    (metrics(tpot=lambda r, t: float(np.median(np.diff(t)))), "TPOT", "median gap"),
    (metrics(tpot=lambda r, t: max(np.diff(t))), "TPOT", "largest gap"),
    (metrics(tpot=lambda r, t: (len(t) - 1) / (t[-1] - t[0])), "TPOT", "tokens per second"),
    (metrics(tpot=lambda r, t: 1e3 * (t[-1] - t[0]) / (len(t) - 1)), "TPOT", "milliseconds"),
    (metrics(ttft=lambda r, t: t[0] - t[0]), "TTFT", "measured from the first token"),
    (metrics(ttft=lambda r, t: t[0]), "TTFT", "subtract request_time"),
    (metrics(e2e=lambda r, t: t[-1] - t[0]), "end-to-end latency", "starts at the first token"),
    (metrics(one=lambda r, t: 0.0), "one token", "TPOT is undefined: return None"),
    (zero_division, "one token", "divides by n - 1 = 0"),
    (unvalidated, "empty list", "raised IndexError"),
    (unvalidated, "bad timestamps", "out of order"),
    (error_without_the_name, "empty list", "name the argument (token_times)"),
]


@pytest.mark.parametrize("fn, check, words", GALLERY, ids=[w for _, _, w in GALLERY])
def test_each_classic_mistake_fails_with_its_sentence(fn, check, words):
    assert_fails_with(statuses(fn), check, words)


def test_reference_solution_passes_all():
    report = check_latency_metrics(load_solution("06_ttft_tpot").latency_metrics)
    assert report.solved and len(report.results) == len(CHECKS)


def mean_of_gaps(request_time, token_times):
    """Correct too: the mean of the gaps equals (last - first) / (n - 1)."""
    t = np.asarray(token_times, dtype=np.float64)
    if t.size == 0:
        raise ValueError("token_times must hold at least one timestamp")
    if t[0] < request_time or np.any(np.diff(t) < 0):
        raise ValueError("token_times must be increasing and after request_time")
    gaps = np.diff(t)
    return {
        "ttft": float(t[0] - request_time),
        "tpot": float(gaps.mean()) if gaps.size else None,
        "e2e": float(t[-1] - request_time),
    }


def from_ttft_and_tpot(request_time, token_times):
    """Correct too: e2e = TTFT + TPOT x (n - 1)."""
    times = sorted(token_times)
    if len(times) == 0 or times != list(token_times) or times[0] < request_time:
        raise ValueError(f"token_times must be non-empty, increasing, after the request: {times}")
    ttft = times[0] - request_time
    tpot = None if len(times) == 1 else (times[-1] - times[0]) / (len(times) - 1)
    return {"ttft": ttft, "tpot": tpot, "e2e": ttft + (tpot or 0.0) * (len(times) - 1)}


@pytest.mark.parametrize("fn", [mean_of_gaps, from_ttft_and_tpot])
def test_correct_variants_pass_all(fn):
    assert check_latency_metrics(fn).solved

"""Exercise 6's checks never mislead: a gallery of wrong answers and of right ones.

WRONG holds plausible mistakes in reading TTFT, TPOT and end-to-end latency off token
timestamps, each written the way a learner writes it; the named check must FAIL with the
sentence that names it. RIGHT holds correct answers written in other ways (numpy, a loop,
statistics.fmean, float32 on times relative to the request); each must PASS every check.
"""

import statistics
import warnings

import numpy as np
import pytest
import torch
from notebook_tools import assert_fails_with, load_solution

from llmlab.checks import PASS, TODO, run_checks
from llmlab.checks.ex06_ttft_tpot import CHECKS, check_latency_metrics

SOLUTION = load_solution("06_ttft_tpot").latency_metrics


def statuses(fn):
    return {
        r.name: (r.status, r.message) for r in run_checks(CHECKS, fn, "latency_metrics").results
    }


def metrics(ttft=None, tpot=None, e2e=None, one=None):
    """A validated latency_metrics; each keyword replaces one formula with a mistaken one."""

    def latency_metrics(request_time, token_times):
        t = [float(x) for x in token_times]
        if not t or t[0] < request_time or sorted(t) != t:
            raise ValueError(f"bad token_times: {t}")
        n = len(t)
        if n == 1:
            right_tpot = one(request_time, t) if one else None
        else:
            right_tpot = tpot(request_time, t) if tpot else (t[-1] - t[0]) / (n - 1)
        return {
            "ttft": ttft(request_time, t) if ttft else t[0] - request_time,
            "tpot": right_tpot,
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


def checks_only_the_order(request_time, token_times):
    t = list(token_times)
    if not t or sorted(t) != t:
        raise ValueError("token_times must be non-empty and sorted")
    return unvalidated(request_time, t)


def checks_only_the_request(request_time, token_times):
    t = list(token_times)
    if not t or t[0] < request_time:
        raise ValueError("token_times must be non-empty and after request_time")
    return unvalidated(request_time, t)


def zero_division(request_time, token_times):
    t = list(token_times)
    if not t:
        raise ValueError("token_times is empty")
    return {"ttft": t[0] - request_time, "tpot": (t[-1] - t[0]) / (len(t) - 1),
            "e2e": t[-1] - request_time}  # fmt: skip


def nan_for_one_token(request_time, token_times):
    t = np.asarray(token_times, dtype=float)
    if t.size == 0 or t[0] < request_time or np.any(np.diff(t) < 0):
        raise ValueError("bad token_times")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numpy warns "Mean of empty slice" and returns nan
        tpot = float(np.diff(t).mean())
    return {"ttft": t[0] - request_time, "tpot": tpot, "e2e": t[-1] - request_time}


def error_without_the_name(request_time, token_times):
    if len(token_times) == 0:
        raise ValueError("no data")
    return SOLUTION(request_time, token_times)


def asserts(request_time, token_times):
    assert len(token_times) > 0, "token_times is empty"
    return SOLUTION(request_time, token_times)


def strict_order(request_time, token_times):
    t = list(token_times)
    if not t or any(b <= a for a, b in zip(t, t[1:])) or t[0] < request_time:
        raise ValueError("token_times must be strictly increasing")
    return unvalidated(request_time, t)


def strict_request(request_time, token_times):
    t = list(token_times)
    if not t or sorted(t) != t or t[0] <= request_time:
        raise ValueError("token_times must come after request_time")
    return unvalidated(request_time, t)


def truthiness(request_time, token_times):
    if not token_times:  # ambiguous for a numpy array
        raise ValueError("token_times is empty")
    return SOLUTION(request_time, token_times)


def tuple_vs_sorted_list(request_time, token_times):
    if len(token_times) == 0 or sorted(token_times) != token_times:
        raise ValueError("token_times must be sorted and non-empty")
    return unvalidated(request_time, token_times)


def float32_tensor(request_time, token_times):
    t = torch.tensor(list(token_times))  # float32: torch's default
    if t.numel() == 0 or (t[1:] < t[:-1]).any() or t[0] < request_time:
        raise ValueError("bad token_times")
    n = t.numel()
    return {
        "ttft": (t[0] - request_time).item(),
        "tpot": ((t[-1] - t[0]) / (n - 1)).item() if n > 1 else None,
        "e2e": (t[-1] - request_time).item(),
    }


def returns_tensors(request_time, token_times):
    t = torch.tensor(list(token_times), dtype=torch.float64)
    if t.numel() == 0 or (t[1:] < t[:-1]).any() or t[0] < request_time:
        raise ValueError("bad token_times")
    n = t.numel()
    return {
        "ttft": t[0] - request_time,
        "tpot": (t[-1] - t[0]) / (n - 1) if n > 1 else None,
        "e2e": t[-1] - request_time,
    }


def median(r, t):
    return float(np.median(np.diff(t)))


WRONG = [  # (learner's latency_metrics, check that must FAIL, words its message must contain)
    (metrics(tpot=lambda r, t: (t[-1] - t[0]) / len(t)), "TPOT", "divide by n - 1"),
    (metrics(tpot=lambda r, t: (t[-1] - r) / len(t)), "TPOT", "includes the time to the first"),
    (metrics(tpot=lambda r, t: (t[-1] - r) / (len(t) - 1)), "TPOT", "starts at the request"),
    (metrics(tpot=median), "TPOT", "median gap"),
    (metrics(tpot=lambda r, t: max(np.diff(t))), "TPOT", "largest gap"),
    (metrics(tpot=lambda r, t: min(np.diff(t))), "TPOT", "smallest gap"),
    (metrics(tpot=lambda r, t: t[1] - t[0]), "TPOT", "only the first gap"),
    (metrics(tpot=lambda r, t: t[-1] - t[-2]), "TPOT", "only the last gap"),
    (metrics(tpot=lambda r, t: (len(t) - 1) / (t[-1] - t[0])), "TPOT", "tokens per second"),
    (metrics(tpot=lambda r, t: 1e3 * (t[-1] - t[0]) / (len(t) - 1)), "TPOT", "milliseconds"),
    (metrics(tpot=lambda r, t: (t[0] - t[-1]) / (len(t) - 1)), "TPOT", "TPOT is negative"),
    (metrics(tpot=lambda r, t: float(np.mean(t)) - t[0]), "TPOT", "mean timestamp"),
    (metrics(ttft=lambda r, t: t[0] - t[0]), "TTFT", "measured from the first token"),
    (metrics(ttft=lambda r, t: t[0]), "TTFT", "the first token's timestamp"),
    (metrics(ttft=lambda r, t: r - t[0]), "TTFT", "subtract the other way round"),
    (metrics(ttft=lambda r, t: 1e3 * (t[0] - r)), "TTFT", "milliseconds"),
    (metrics(ttft=lambda r, t: t[1] - t[0]), "TTFT", "gap between the first two tokens"),
    (metrics(e2e=lambda r, t: t[-1] - t[0]), "end-to-end latency", "starts at the first token"),
    (metrics(e2e=lambda r, t: t[-1]), "end-to-end latency", "the last token's timestamp"),
    (
        metrics(e2e=lambda r, t: (t[0] - r) + len(t) * (t[-1] - t[0]) / (len(t) - 1)),
        "end-to-end latency",
        "there are n - 1 = 5",
    ),
    (metrics(e2e=lambda r, t: t[0] - r), "end-to-end latency", "ends at the first token"),
    (metrics(one=lambda r, t: 0.0), "one token", "TPOT is undefined: return None"),
    (nan_for_one_token, "one token", "tpot is nan"),
    (zero_division, "one token", "divides by n - 1 = 0"),
    (unvalidated, "empty list", "raised IndexError"),
    (unvalidated, "bad timestamps", "out of order"),
    (checks_only_the_order, "bad timestamps", "a token before the request"),
    (checks_only_the_request, "bad timestamps", "timestamps out of order (1.2, then 1.1)"),
    (error_without_the_name, "empty list", "name the argument (token_times)"),
    (asserts, "empty list", "raised AssertionError"),
    (strict_order, "equal timestamps", "equal timestamps are in order"),
    (strict_request, "equal timestamps", "a TTFT of 0 is allowed"),
    (truthiness, "any sequence", "`if not token_times`"),
    (tuple_vs_sorted_list, "any sequence", "a tuple never equals a list"),
    (float32_tensor, "epoch timestamps", "float32"),
    (returns_tensors, "plain numbers", '"ttft" is a torch.Tensor'),
]


def test_the_gallery_is_large_enough():
    assert len(WRONG) >= 15


@pytest.mark.parametrize("fn, check, words", WRONG, ids=[w for _, _, w in WRONG])
def test_each_mistake_fails_with_the_sentence_that_names_it(fn, check, words):
    assert_fails_with(statuses(fn), check, words)


@pytest.mark.parametrize("fn, check, words", WRONG, ids=[w for _, _, w in WRONG])
def test_no_named_mistake_gets_the_generic_message(fn, check, words):
    message = statuses(fn)[check][1]
    assert ", expected" not in message or "expected {" in message, message


def test_a_float32_answer_passes_everything_but_epoch_timestamps():
    result = statuses(float32_tensor)
    failing = [name for name, (status, _) in result.items() if status != PASS]
    assert failing == ["epoch timestamps", "boundary cases", "generated inputs"]
    for name in failing:
        assert "float32" in result[name][1], result[name][1]


def test_tensor_values_are_judged_as_values():
    result = statuses(returns_tensors)
    assert [name for name, (status, _) in result.items() if status != PASS] == ["plain numbers"]


def test_wrong_values_are_not_blamed_on_the_input_type():
    status, message = statuses(metrics(tpot=median))["any sequence"]
    assert status != PASS and "not right yet" in message and "tuple gives" not in message
    status, message = statuses(metrics(tpot=median))["epoch timestamps"]
    assert status != PASS and "float32" not in message


def test_reference_solution_passes_all():
    report = check_latency_metrics(SOLUTION)
    assert report.solved and len(report.results) == len(CHECKS)


def mean_of_gaps(request_time, token_times):
    """Correct too: numpy, the mean of the gaps equals (last - first) / (n - 1)."""
    t = np.asarray(token_times, dtype=np.float64)
    if t.size == 0:
        raise ValueError("token_times must hold at least one timestamp")
    if t[0] < request_time or np.any(np.diff(t) < 0):
        raise ValueError("token_times must be increasing and after request_time")
    gaps = np.diff(t)
    return {
        "ttft": t[0] - request_time,  # numpy float64 scalars are numbers too
        "tpot": gaps.mean() if gaps.size else None,
        "e2e": t[-1] - request_time,
    }


def from_ttft_and_tpot(request_time, token_times):
    """Correct too: e2e = TTFT + TPOT x (n - 1)."""
    times = sorted(token_times)
    if len(times) == 0 or times != list(token_times) or times[0] < request_time:
        raise ValueError(f"token_times must be non-empty, increasing, after the request: {times}")
    ttft = times[0] - request_time
    tpot = None if len(times) == 1 else (times[-1] - times[0]) / (len(times) - 1)
    return {"ttft": ttft, "tpot": tpot, "e2e": ttft + (tpot or 0.0) * (len(times) - 1)}


def loop_with_fmean(request_time, token_times):
    """Correct too: a loop over the timestamps, statistics.fmean of the gaps."""
    previous, gaps = None, []
    for t in token_times:
        if t < (request_time if previous is None else previous):
            raise ValueError(f"token_times goes back in time at {t}")
        if previous is not None:
            gaps.append(t - previous)
        previous = t
    if previous is None:
        raise ValueError("token_times is empty")
    return {
        "ttft": token_times[0] - request_time,
        "tpot": statistics.fmean(gaps) if gaps else None,
        "e2e": previous - request_time,
    }


def float32_relative(request_time, token_times):
    """Correct too: float32 (torch's default) on times measured from the request."""
    rel = torch.tensor([float(t) - request_time for t in token_times])  # float32
    if rel.numel() == 0 or (rel < 0).any() or (rel[1:] < rel[:-1]).any():
        raise ValueError("token_times must be non-empty, in order, after request_time")
    n = rel.numel()
    return {
        "ttft": rel[0].item(),
        "tpot": ((rel[-1] - rel[0]) / (n - 1)).item() if n > 1 else None,
        "e2e": rel[-1].item(),
    }


RIGHT = [SOLUTION, mean_of_gaps, from_ttft_and_tpot, loop_with_fmean, float32_relative]


@pytest.mark.parametrize("fn", RIGHT, ids=lambda f: f.__name__)
def test_each_correct_variant_passes_every_check(fn):
    assert check_latency_metrics(fn).solved


def test_stub_reports_todo_everywhere():
    def latency_metrics(request_time, token_times):
        raise NotImplementedError

    assert {r.status for r in check_latency_metrics(latency_metrics).results} == {TODO}


# ---- mistakes of fresh learners (issue #24) that the first checks let through ----------------


def no_tpot_for_two_tokens(request_time, token_times):
    t = list(token_times)
    if not t or t[0] < request_time or sorted(t) != t:
        raise ValueError(f"bad token_times: {t}")
    out = unvalidated(request_time, t)
    return out | {"tpot": None} if len(t) <= 2 else out


def order_checked_but_the_last_pair(request_time, token_times):
    t = list(token_times)
    if not t or t[0] < request_time or any(t[i + 1] < t[i] for i in range(len(t) - 2)):
        raise ValueError(f"token_times must be in order and after the request: {t}")
    return unvalidated(request_time, t)


def rounded_to_milliseconds(request_time, token_times):
    out = SOLUTION(request_time, token_times)
    return {k: None if v is None else round(v, 3) for k, v in out.items()}


def clock_skew_allowed(request_time, token_times):
    """Lets a token come up to 10 ms before its request (clock skew): the task does not."""
    t = list(token_times)
    if not t or t[0] < request_time - 0.01 or sorted(t) != t:
        raise ValueError(f"bad token_times: {t}")
    return unvalidated(request_time, t)


def sorts_in_place(request_time, token_times):
    if isinstance(token_times, list):
        token_times.sort()  # the caller's list is sorted too, and the order is never checked
    return unvalidated(request_time, token_times) if token_times else SOLUTION(0.0, [])


def capitalised_keys(request_time, token_times):
    return {k.upper(): v for k, v in SOLUTION(request_time, token_times).items()}


FRESH = [  # (learner's latency_metrics, check that must FAIL, words its message must contain)
    (no_tpot_for_two_tokens, "boundary cases", "(two tokens have a TPOT, the one gap)"),
    (no_tpot_for_two_tokens, "boundary cases", "None is only for one token"),
    (order_checked_but_the_last_pair, "boundary cases", "checked up to the last pair"),
    (order_checked_but_the_last_pair, "boundary cases", "it should raise ValueError"),
    (rounded_to_milliseconds, "boundary cases", "shorter than a millisecond"),
    (rounded_to_milliseconds, "boundary cases", "return them unrounded"),
    (rounded_to_milliseconds, "generated inputs", "the answer is"),
    (clock_skew_allowed, "boundary cases", "a token before the request raises, even by 3 ms"),
    (sorts_in_place, "boundary cases", "changed its argument token_times"),
    (capitalised_keys, "equal timestamps", "lacks the key(s)"),
    (capitalised_keys, "any sequence", "lacks the key(s)"),
]


@pytest.mark.parametrize("fn, check, words", FRESH, ids=[f"{f.__name__}-{c}" for f, c, _ in FRESH])
def test_fresh_mistake_fails_with_its_counterexample(fn, check, words):
    assert_fails_with(statuses(fn), check, words)

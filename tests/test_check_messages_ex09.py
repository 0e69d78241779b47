"""Exercise 9's checks can fail, and say what is wrong in one sentence.

Each broken latency_percentiles below makes one classic mistake; the named check must FAIL with
a message naming it, while the reference solution and other correct ways of writing it (both
percentile conventions, the standard library, torch in float32, a plain loop) pass.
"""

import math
import statistics

import numpy as np
import pytest
import torch
from notebook_tools import assert_fails_with, load_solution

from llmlab.checks import PASS, TODO, CheckFailed, run_checks
from llmlab.checks.ex09_latency_percentiles import CHECKS

solution = load_solution("09_latency_percentiles").latency_percentiles


def statuses(fn):
    results = run_checks(CHECKS, fn, "latency_percentiles").results
    return {r.name: (r.status, r.message) for r in results}


def served(ts):
    return [t for t in ts if not t["error"] and t["token_times"]]


def make(ttft_of, tpot_of, pct=lambda xs, q: float(np.percentile(xs, q)), tpots_from=None,
         ttfts_from=None):  # fmt: skip
    """A latency_percentiles built from per-request formulas and a percentile function."""

    def latency_percentiles(timelines):
        ok = served(timelines)
        ttfts = ttfts_from(ok) if ttfts_from else [ttft_of(t) for t in ok]
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
    return xs[max(1, math.ceil(q / 100 * len(xs))) - 1]


def gaps(t):
    return np.diff(t["token_times"])


def torch_float32(timelines):
    """Everything in torch's default dtype, float32: quantile interpolates as numpy does."""
    ok = [t for t in timelines if t["error"] is None and len(t["token_times"]) > 0]
    first = torch.tensor([t["token_times"][0] for t in ok])
    arrival = torch.tensor([t["arrival"] for t in ok])
    multi = [t for t in ok if len(t["token_times"]) > 1]
    last = torch.tensor([t["token_times"][-1] for t in multi])
    start = torch.tensor([t["token_times"][0] for t in multi])
    n = torch.tensor([len(t["token_times"]) for t in multi])
    ttft, tpot = first - arrival, (last - start) / (n - 1)
    assert ttft.dtype == torch.float32

    def q(x, p):
        return x.quantile(p) if x.numel() else None  # a 0-d tensor

    return {"ttft_p50": q(ttft, 0.5), "ttft_p95": q(ttft, 0.95),
            "tpot_p50": q(tpot, 0.5), "tpot_p95": q(tpot, 0.95)}  # fmt: skip


def numpy_float32_inverted_cdf(timelines):
    """NumPy arrays of float32 and the nearest-rank method (numpy's 'inverted_cdf')."""
    out = {}
    ok = [t for t in timelines if not t["error"] and t["token_times"]]
    ttft = np.array([t["token_times"][0] - t["arrival"] for t in ok], dtype=np.float32)
    tpot = np.array([np.mean(gaps(t)) for t in ok if len(t["token_times"]) > 1], np.float32)
    for name, x in (("ttft", ttft), ("tpot", tpot)):
        for q in (50, 95):
            out[f"{name}_p{q}"] = np.percentile(x, q, method="inverted_cdf") if x.size else None
    return out


def plain_loop(timelines):
    """No libraries: sort, then interpolate between the two nearest ranks by hand."""

    def pct(values, q):
        if not values:
            return None
        values = sorted(values)
        rank = q / 100 * (len(values) - 1)
        low = int(rank)
        high = min(low + 1, len(values) - 1)
        return values[low] + (rank - low) * (values[high] - values[low])

    ttfts, tpots = [], []
    for t in timelines:
        if t["error"] is not None or len(t["token_times"]) == 0:
            continue
        ttfts.append(t["token_times"][0] - t["arrival"])
        n = len(t["token_times"])
        if n >= 2:
            tpots.append((t["token_times"][n - 1] - t["token_times"][0]) / (n - 1))
    return {"ttft_p50": pct(ttfts, 50), "ttft_p95": pct(ttfts, 95),
            "tpot_p50": pct(tpots, 50), "tpot_p95": pct(tpots, 95)}  # fmt: skip


def statistics_inclusive(xs, q):
    return xs[0] if len(xs) == 1 else statistics.quantiles(xs, n=100, method="inclusive")[q - 1]


CORRECT = {
    "numpy linear": make(right_ttft, right_tpot),
    "nearest rank": make(right_ttft, right_tpot, nearest_rank),
    "statistics inclusive": make(right_ttft, right_tpot, statistics_inclusive),
    "mean of np.diff": make(right_ttft, lambda t: float(np.mean(gaps(t)))),
    "torch float32 quantile": torch_float32,
    "numpy float32 inverted_cdf": numpy_float32_inverted_cdf,
    "plain loop": plain_loop,
}


def in_float16(timelines):
    """The right formulas on timestamps stored as float16 (3 significant digits)."""
    ok = served(timelines)
    first = torch.tensor([t["token_times"][0] for t in ok], dtype=torch.float16)
    arrival = torch.tensor([t["arrival"] for t in ok], dtype=torch.float16)
    multi = [t for t in ok if len(t["token_times"]) > 1]
    last = torch.tensor([t["token_times"][-1] for t in multi], dtype=torch.float16)
    start = torch.tensor([t["token_times"][0] for t in multi], dtype=torch.float16)
    n = torch.tensor([len(t["token_times"]) - 1 for t in multi], dtype=torch.float16)

    def q(x, p):
        return float(np.percentile(x.float().numpy(), p)) if x.numel() else None

    ttft, tpot = first - arrival, (last - start) / n
    return {"ttft_p50": q(ttft, 50), "ttft_p95": q(ttft, 95),
            "tpot_p50": q(tpot, 50), "tpot_p95": q(tpot, 95)}  # fmt: skip


def numpy_method(method):
    return lambda xs, q: float(np.percentile(xs, q, method=method))


def with_tpots(tpots):
    return make(right_ttft, None, tpots_from=tpots)


MISTAKES = [
    ("from prefill start", make(lambda t: t["token_times"][0] - t["prefill_start"], right_tpot),
     "TTFT", "prefill_start"),
    ("ttft to last token", make(lambda t: t["token_times"][-1] - t["arrival"], right_tpot),
     "TTFT", "end-to-end"),
    ("one-token left out of ttft", make(None, right_tpot, ttfts_from=lambda ok: [
        right_ttft(t) for t in ok if len(t["token_times"]) > 1]), "TTFT", "left out of TTFT"),
    ("n not n-1", make(right_ttft, lambda t: (t["token_times"][-1] - t["token_times"][0])
                       / len(t["token_times"])), "TPOT", "n - 1 gaps"),
    ("e2e / n", make(right_ttft, lambda t: (t["token_times"][-1] - t["arrival"])
                     / len(t["token_times"])), "TPOT", "folds TTFT in"),
    ("one-token as 0", with_tpots(lambda ok: [
        right_tpot(t) if len(t["token_times"]) > 1 else 0.0 for t in ok]), "TPOT", "TPOT 0"),
    ("truthiness drops tpot 0", with_tpots(lambda ok: [
        x for x in (right_tpot(t) if len(t["token_times"]) > 1 else None for t in ok) if x]),
     "TPOT", "truthiness"),
    ("pooled gaps", with_tpots(lambda ok: [
        b - a for t in ok for a, b in zip(t["token_times"], t["token_times"][1:])]),
     "TPOT", "pooled"),
    ("median gap", make(right_ttft, lambda t: float(np.median(gaps(t)))), "TPOT", "median gap"),
    ("longest gap", make(right_ttft, lambda t: float(np.max(gaps(t)))), "TPOT", "longest gap"),
    ("unsorted", make(right_ttft, right_tpot, lambda xs, q: xs[int(q / 100 * (len(xs) - 1))]),
     "TTFT", "sort the values"),
    ("int(q n)", make(right_ttft, right_tpot,
                      lambda xs, q: sorted(xs)[min(int(q / 100 * len(xs)), len(xs) - 1)]),
     "other runs", "one rank too high"),
    ("numpy lower", make(right_ttft, right_tpot, numpy_method("lower")), "TTFT", "'lower'"),
    ("numpy nearest", make(right_ttft, right_tpot, numpy_method("nearest")),
     "other runs", "inverted_cdf"),
    ("statistics exclusive", make(right_ttft, right_tpot, lambda xs, q: (
        xs[0] if len(xs) == 1 else statistics.quantiles(xs, n=100)[q - 1])),
     "TTFT", "method='inclusive'"),
    ("mean as P50", make(right_ttft, right_tpot, lambda xs, q: float(np.mean(xs)) if q == 50
                         else float(np.percentile(xs, q))), "TTFT", "P50 is the mean"),
    ("max as P95", make(right_ttft, right_tpot, lambda xs, q: max(xs) if q == 95
                        else float(np.percentile(xs, q))), "TTFT", "P95 is the maximum"),
    ("q as fraction", make(right_ttft, right_tpot,
                           lambda xs, q: float(np.percentile(xs, q / 100))), "TTFT", "fraction"),
    ("p50 and p95 swapped", make(right_ttft, right_tpot,
                                 lambda xs, q: float(np.percentile(xs, 145 - q))),
     "TTFT", "swapped"),
    ("milliseconds", make(lambda t: 1e3 * right_ttft(t), lambda t: 1e3 * right_tpot(t)),
     "TTFT", "milliseconds"),
    ("float16 timestamps", in_float16, "TTFT", "precision was lost"),
]  # fmt: skip


def test_solution_passes():
    result = statuses(solution)
    assert all(s == PASS for s, _ in result.values()), result


@pytest.mark.parametrize("name", CORRECT)
def test_correct_variants_pass(name):
    result = statuses(CORRECT[name])
    assert all(s == PASS for s, _ in result.values()), result


def test_gallery_is_large_enough():
    assert len(MISTAKES) >= 15 and len(CORRECT) >= 3


@pytest.mark.parametrize("name, fn, check, words", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_mistake_is_named(name, fn, check, words):
    result = statuses(fn)
    assert_fails_with(result, check, words)
    assert "expected" not in result[check][1], "a known mistake is named, not described"


def test_crash_on_one_token_answers_is_explained():
    def no_guard(timelines):
        ok = served(timelines)
        ttfts = [right_ttft(t) for t in ok]
        tpots = [right_tpot(t) for t in ok]  # one-token answers divide by zero
        return {"ttft_p50": float(np.percentile(ttfts, 50)),
                "ttft_p95": float(np.percentile(ttfts, 95)),
                "tpot_p50": float(np.percentile(tpots, 50)),
                "tpot_p95": float(np.percentile(tpots, 95))}  # fmt: skip

    result = statuses(no_guard)
    assert_fails_with(result, "format", "one-token request")
    assert "raised ZeroDivisionError" in result["format"][1]
    assert "with an error" not in result["format"][1], "it does leave failed requests out"


def test_crash_on_failed_requests_is_explained():
    def keeps_failed(timelines):
        ttfts = [right_ttft(t) for t in timelines]  # a failed request has no token_times[0]
        tpots = [right_tpot(t) for t in timelines if len(t["token_times"]) > 1]
        return {"ttft_p50": float(np.percentile(ttfts, 50)),
                "ttft_p95": float(np.percentile(ttfts, 95)),
                "tpot_p50": float(np.percentile(tpots, 50)),
                "tpot_p95": float(np.percentile(tpots, 95))}  # fmt: skip

    result = statuses(keeps_failed)
    assert_fails_with(result, "format", "request with an error")
    assert "raised IndexError" in result["format"][1]
    assert "one-token" not in result["format"][1], "it does leave one-token answers out of TPOT"


def test_crash_on_no_requests_is_explained():
    def percentile_of_empty(timelines):
        out = make(right_ttft, right_tpot)(timelines)
        if out["ttft_p50"] is None:
            np.percentile([], 50)  # what the learner's unguarded call does
        return out

    assert_fails_with(statuses(percentile_of_empty), "edge cases", "return None")


def test_nan_instead_of_none_for_no_requests():
    def nan_when_empty(timelines):
        out = solution(timelines)
        return {k: float("nan") if v is None else v for k, v in out.items()}

    assert_fails_with(statuses(nan_when_empty), "edge cases", "must be None")


def test_a_list_of_values_is_not_a_number():
    def lists(timelines):
        out = solution(timelines)
        return {k: [v] for k, v in out.items()}

    assert_fails_with(statuses(lists), "format", "is a list")


def test_missing_keys_are_named():
    def other_names(timelines):
        out = solution(timelines)
        return {"p50_ttft": out["ttft_p50"], **{k: out[k] for k in out if k != "ttft_p50"}}

    assert_fails_with(statuses(other_names), "format", "lacks the keys ['ttft_p50']")


def test_sorting_the_input_in_place_is_named():
    """The task says: leave timelines as they are (the caller may use them again)."""

    def sorts_in_place(timelines):
        timelines.sort(key=lambda t: t["arrival"])
        return solution(timelines)

    result = statuses(sorts_in_place)
    assert_fails_with(result, "boundary cases", "changed its argument timelines (timelines was")
    assert "reordered); the caller's data must stay as it was" in result["boundary cases"][1]


def test_stub_reports_todo():
    def stub(timelines):
        raise NotImplementedError

    assert all(s == TODO for s, _ in statuses(stub).values())


def rounded_to_ms(timelines):
    return {k: None if v is None else round(v, 3) for k, v in solution(timelines).items()}


def two_tokens_without_tpot(timelines):
    return solution([t if len(t["token_times"]) != 2 else {**t, "token_times": t["token_times"][:1]}
                     for t in timelines])  # fmt: skip


def error_only_filter(timelines):  # keeps a request with no error and no tokens
    ok = [t for t in timelines if not t["error"]]
    ttfts = [t["token_times"][0] - t["arrival"] for t in ok]
    return make(right_ttft, right_tpot)([t for t in ok if t["token_times"]]) | {
        "ttft_p50": float(np.percentile(ttfts, 50)) if ttfts else None
    }


# Mistakes no named check catches (issue #24): the differential checks show the smallest input.
UNLISTED = [
    ("rounded to milliseconds", rounded_to_ms, "; the answer is 0.0875; P50 TPOT is off by"),
    ("two tokens have no TPOT", two_tokens_without_tpot, "a two-token request has a TPOT"),
    ("no error, no tokens", error_only_filter, "raised IndexError"),
]


@pytest.mark.parametrize("name, fn, words", UNLISTED, ids=[u[0] for u in UNLISTED])
def test_unlisted_mistake_fails_with_its_counterexample(name, fn, words):
    result = statuses(fn)
    assert_fails_with(result, "boundary cases", words)
    assert result["boundary cases"][1].startswith("for timelines=[(arrival ")


def test_generated_inputs_shrink_to_a_small_counterexample():
    from llmlab.checks.ex09_latency_percentiles import REFERENCE_DIFF

    with pytest.raises(CheckFailed) as failure:
        REFERENCE_DIFF.check_generated(rounded_to_ms)
    text = str(failure.value)
    assert text.startswith("for timelines=[(arrival ") and text.count("(arrival") <= 2, text
    assert "your latency_percentiles() returned " in text and "; the answer is " in text


@pytest.mark.parametrize("method", ["higher", "midpoint", "hazen", "median_unbiased",
                                    "closest_observation", "interpolated_inverted_cdf"])  # fmt: skip
def test_a_percentile_convention_is_never_told_precision_was_lost(method):
    """Issue #24: other conventions were told "precision was lost"; each fails, but not so."""
    result = statuses(make(right_ttft, right_tpot, numpy_method(method)))
    failing = [message for status, message in result.values() if status != PASS]
    assert failing, f"method={method!r} passes every check"
    assert not any("precision was lost" in m for m in failing), failing

"""Checks for exercises/09_latency_percentiles.ipynb: P50/P95 TTFT and TPOT from raw timelines.

The learner writes latency_percentiles(timelines) -> {"ttft_p50", "ttft_p95", "tpot_p50",
"tpot_p95"} in seconds, from a list of dicts with "arrival", "prefill_start", "token_times" and
"error" (what the engine's Result holds). The convention is stated in the exercise: linear
interpolation between ranks (numpy.percentile's default); nearest-rank is accepted too, since
both are in use. When an answer is off, the checks recompute it with each classic mistake and
name the one that matches.
"""

import copy
import math
import numbers
import random

from llmlab.checks import CheckFailed, run_checks
from llmlab.serving_metrics import nearest_rank_percentile, percentile

KEYS = ("ttft_p50", "ttft_p95", "tpot_p50", "tpot_p95")


def _timelines(seed, n, one_token=2, failed=1):
    """n requests in arrival order shuffled, some with one token, some failed."""
    rng = random.Random(seed)
    out, t = [], 0.0
    for i in range(n):
        t += rng.uniform(0.01, 0.2)
        start = t + rng.choice([0.0, rng.uniform(0.0, 0.5)])  # some wait, some do not
        first = start + rng.uniform(0.02, 0.08)
        count = 1 if i < one_token else rng.randint(2, 30)
        gap = rng.uniform(0.005, 0.05)
        times = [first]
        for _ in range(count - 1):
            times.append(times[-1] + gap * rng.uniform(0.5, 2.0))
        out.append({"arrival": t, "prefill_start": start, "token_times": times, "error": None})
    for j in range(failed):
        out.append({"arrival": t + 0.1 * (j + 1), "prefill_start": None, "token_times": [],
                    "error": "prompt is empty: give at least one token"})  # fmt: skip
    rng.shuffle(out)
    return out


_MAIN = _timelines(9, 23)


# ---- the right answer and the mistakes, each: timelines -> dict ----------------------------------
def _served(ts):
    return [t for t in ts if not t["error"] and t["token_times"]]


def _ttfts(ts):
    return [t["token_times"][0] - t["arrival"] for t in _served(ts)]


def _tpots(ts, divide=lambda n: n - 1):
    return [
        (t["token_times"][-1] - t["token_times"][0]) / divide(len(t["token_times"]))
        for t in _served(ts)
        if len(t["token_times"]) >= 2
    ]


def _summary(ttfts, tpots, pct=percentile):
    def p(xs, q):
        return pct(xs, q) if xs else None

    return {"ttft_p50": p(ttfts, 50), "ttft_p95": p(ttfts, 95),
            "tpot_p50": p(tpots, 50), "tpot_p95": p(tpots, 95)}  # fmt: skip


def _right(ts, pct=percentile):
    return _summary(_ttfts(ts), _tpots(ts), pct)


def _unsorted_index(xs, q):
    return xs[int(q / 100 * (len(xs) - 1))]


def _mean_for_p50(xs, q):
    return sum(xs) / len(xs) if q == 50 else percentile(xs, q)


def _max_for_p95(xs, q):
    return max(xs) if q == 95 else percentile(xs, q)


def _q_as_fraction(xs, q):
    return percentile(xs, q / 100)


def _pooled_gaps(ts):
    return [b - a for t in _served(ts) for a, b in zip(t["token_times"], t["token_times"][1:])]


def _median_gap(ts):
    out = []
    for t in _served(ts):
        gaps = sorted(b - a for a, b in zip(t["token_times"], t["token_times"][1:]))
        if gaps:
            out.append(percentile(gaps, 50))
    return out


def _scaled(d, k):
    return {key: None if v is None else v * k for key, v in d.items()}


_MISTAKES = [
    (
        "TTFT is measured from prefill_start; it starts at arrival, so the time spent queueing "
        "counts (that is what the user waits)",
        lambda ts: _summary(
            [t["token_times"][0] - t["prefill_start"] for t in _served(ts)], _tpots(ts)
        ),
    ),
    (
        "TPOT divides by the number of tokens n; n tokens have n - 1 gaps after the first",
        lambda ts: _summary(_ttfts(ts), _tpots(ts, divide=lambda n: n)),
    ),
    (
        "TPOT is end-to-end latency / n, which folds TTFT in; TPOT is (last - first) / (n - 1)",
        lambda ts: _summary(
            _ttfts(ts),
            [
                (t["token_times"][-1] - t["arrival"]) / len(t["token_times"])
                for t in _served(ts)
                if len(t["token_times"]) >= 2
            ],
        ),  # fmt: skip
    ),
    (
        "one-token requests are counted with TPOT 0; a request with one token has no TPOT, "
        "leave it out",
        lambda ts: _summary(
            _ttfts(ts),
            [0.0 if len(t["token_times"]) == 1 else v for t, v in zip(_served(ts), _all_tpots(ts))],
        ),  # fmt: skip
    ),
    (
        "the TPOT percentiles are over every gap between tokens of every request pooled together; "
        "take one TPOT per request, then the percentile over requests",
        lambda ts: _summary(_ttfts(ts), _pooled_gaps(ts)),
    ),
    (
        "TPOT is each request's median gap; it is the mean gap, (last - first) / (n - 1)",
        lambda ts: _summary(_ttfts(ts), _median_gap(ts)),
    ),
    (
        "the percentile picks values[int(q/100 * (n-1))] from an unsorted list; sort the values "
        "first",
        lambda ts: _right(ts, _unsorted_index),
    ),
    ("P50 is the mean; it is the median", lambda ts: _right(ts, _mean_for_p50)),
    (
        "P95 is the maximum; it is the value 95% of requests are at or below",
        lambda ts: _right(ts, _max_for_p95),
    ),  # fmt: skip
    (
        "q is passed as a fraction (0.95) to a function that takes a percentage (95)",
        lambda ts: _right(ts, _q_as_fraction),
    ),
    ("the values are in milliseconds; return seconds", lambda ts: _scaled(_right(ts), 1e3)),
]


def _all_tpots(ts):
    return [
        (t["token_times"][-1] - t["token_times"][0]) / (len(t["token_times"]) - 1)
        if len(t["token_times"]) >= 2
        else None
        for t in _served(ts)
    ]


# ---- calling the learner's code -------------------------------------------------------------------
def _call(fn, ts):
    given = copy.deepcopy(ts)  # a solution that sorts in place must not change our data
    try:
        out = fn(given)
    except (NotImplementedError, CheckFailed):
        raise
    except (IndexError, ZeroDivisionError, TypeError, ValueError, KeyError) as error:
        raise CheckFailed(
            f"latency_percentiles() raised {type(error).__name__} ({error}); requests with an "
            f"error or no tokens have no TTFT, one-token requests no TPOT: leave them out, and "
            f"return None where no request qualifies"
        ) from None
    if not isinstance(out, dict):
        raise CheckFailed(
            f"latency_percentiles() returned {type(out).__name__}; return a dict with the keys "
            f"{', '.join(KEYS)}"
        )
    missing = [k for k in KEYS if k not in out]
    if missing:
        raise CheckFailed(f"the result lacks the keys {missing}; it needs {', '.join(KEYS)}")
    for k in KEYS:
        v = out[k]
        if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Real)):
            raise CheckFailed(f"{k} is a {type(v).__name__}; give a number of seconds or None")
    return out


def _close(a, b):
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(float(a), b, rel_tol=1e-9, abs_tol=1e-12)


def _conventions(ts):
    return [_right(ts), _right(ts, nearest_rank_percentile)]


def _diagnose(out, ts, keys=KEYS):
    for description, wrong in _MISTAKES:
        bad = wrong(ts)
        if all(_close(out[k], bad[k]) for k in keys):
            return description
    return None


def _check_keys(fn, ts, keys, what):
    out = _call(fn, ts)
    convs = _conventions(ts)
    if all(any(_close(out[k], c[k]) for c in convs) for k in keys):
        return out
    diagnosis = _diagnose(out, ts, keys)
    if diagnosis:
        raise CheckFailed(diagnosis)
    k = next(k for k in keys if not any(_close(out[k], c[k]) for c in convs))
    raise CheckFailed(
        f"{what}: {k} is {out[k]!r}, expected {convs[0][k]!r} s (linear interpolation) "
        f"or {convs[1][k]!r} s (nearest rank)"
    )


# ---- the checks ------------------------------------------------------------------------------------
def check_format(fn):
    _call(fn, _MAIN)
    return f"returns a dict with {', '.join(KEYS)}"


def check_ttft(fn):
    _check_keys(fn, _MAIN, ("ttft_p50", "ttft_p95"), "TTFT")
    return f"P50 and P95 TTFT of {len(_served(_MAIN))} served requests, from arrival"


def check_tpot(fn):
    _check_keys(fn, _MAIN, ("tpot_p50", "tpot_p95"), "TPOT")
    return "P50 and P95 TPOT: one (last - first) / (n - 1) per request with 2+ tokens"


def check_other_loads(fn):
    for seed, n in ((1, 7), (2, 40), (3, 2)):
        _check_keys(fn, _timelines(seed, n, one_token=1), KEYS, f"{n} requests")
    return "right on three more runs (2, 7 and 40 requests)"


def check_edge_cases(fn):
    empty = _call(fn, [])
    if any(empty[k] is not None for k in KEYS):
        raise CheckFailed(f"with no requests every value must be None, got {empty}")
    failed_only = _call(fn, _timelines(4, 0, failed=2))
    if any(failed_only[k] is not None for k in KEYS):
        raise CheckFailed(
            f"when every request failed there is no TTFT or TPOT: every value must be None, "
            f"got {failed_only}"
        )
    one = _timelines(5, 1, one_token=0, failed=0)
    single = _call(fn, one)
    t = one[0]["token_times"]
    want_ttft = t[0] - one[0]["arrival"]
    want_tpot = (t[-1] - t[0]) / (len(t) - 1)
    if not (_close(single["ttft_p50"], want_ttft) and _close(single["ttft_p95"], want_ttft)):
        raise CheckFailed(
            f"with a single request P50 and P95 TTFT are its own TTFT ({want_ttft:.6f} s), "
            f"got {single['ttft_p50']} and {single['ttft_p95']}"
        )
    if not (_close(single["tpot_p50"], want_tpot) and _close(single["tpot_p95"], want_tpot)):
        raise CheckFailed(
            f"with a single request P50 and P95 TPOT are its own TPOT ({want_tpot:.6f} s), "
            f"got {single['tpot_p50']} and {single['tpot_p95']}"
        )
    one_token = _call(fn, _timelines(6, 3, one_token=3, failed=0))
    if one_token["tpot_p50"] is not None or one_token["tpot_p95"] is not None:
        raise CheckFailed(
            "when every answer has one token there is no TPOT: tpot_p50 and tpot_p95 must be None"
        )
    return "no requests, only failures, one request, only one-token answers"


CHECKS = [
    ("format", check_format),
    ("TTFT", check_ttft),
    ("TPOT", check_tpot),
    ("other runs", check_other_loads),
    ("edge cases", check_edge_cases),
]


def check_latency_percentiles(latency_percentiles):
    return run_checks(CHECKS, latency_percentiles, "latency_percentiles")

"""Checks for exercises/09_latency_percentiles.ipynb: P50/P95 TTFT and TPOT from raw timelines.

The learner writes latency_percentiles(timelines) -> {"ttft_p50", "ttft_p95", "tpot_p50",
"tpot_p95"} in seconds, from a list of dicts with "arrival", "prefill_start", "token_times" and
"error" (what the engine's Result holds). The convention is stated in the exercise: linear
interpolation between ranks (numpy.percentile's default); nearest-rank is accepted too, since
both are in use. When an answer is off, the checks recompute it with each classic mistake and
name the one that matches.

The test data tells the mistakes apart: requests arrive shuffled, wait in a queue or not, have
uneven gaps between tokens (so a median gap or a pooled gap differs from the mean), some have one
token, one has all its tokens at the same time (a TPOT of exactly 0, as when a step emits several
tokens), some failed. Values are compared within 10 microseconds, far above float32's rounding of
timestamps below 16 s (about 1 microsecond) and far below any mistake (tenths of a millisecond).
"""

import copy
import math
import random
import statistics

import torch

from llmlab.checks import CheckFailed, as_number, crashed, run_checks
from llmlab.checks.differential import Difference, Differential, case, reference, show
from llmlab.serving_metrics import nearest_rank_percentile, percentile

KEYS = ("ttft_p50", "ttft_p95", "tpot_p50", "tpot_p95")
_TOL = 1e-5  # seconds: float32 timestamps below 16 s are off by at most ~1e-6 s
_NAMES = {"ttft_p50": "P50 TTFT", "ttft_p95": "P95 TTFT", "tpot_p50": "P50 TPOT",
          "tpot_p95": "P95 TPOT"}  # fmt: skip


def _timelines(seed, n, one_token=2, failed=1, same_time=1):
    """n served requests (one_token with a single token, same_time with every token at one
    instant) and `failed` failed ones, shuffled out of arrival order."""
    rng = random.Random(seed)
    out, t = [], 0.0
    for i in range(n):
        t += rng.uniform(0.01, 0.2)
        start = t + rng.choice([0.0, rng.uniform(0.0, 0.5)])  # some wait, some do not
        first = start + rng.uniform(0.02, 0.08)
        count = 1 if i < one_token else rng.randint(3, 30)
        gap = 0.0 if one_token <= i < one_token + same_time else rng.uniform(0.005, 0.05)
        times = [first]
        for _ in range(count - 1):  # uneven gaps: every gap statistic differs from the mean
            times.append(times[-1] + gap * rng.choice([0.3, 0.6, 1.0, 1.5, 2.5, 4.0]))
        out.append({"arrival": t, "prefill_start": start, "token_times": times, "error": None})
    for j in range(failed):
        out.append({"arrival": t + 0.1 * (j + 1), "prefill_start": None, "token_times": [],
                    "error": "prompt is empty: give at least one token"})  # fmt: skip
    rng.shuffle(out)
    return out


_MAIN = _timelines(9, 23)
_OTHER_RUNS = [_timelines(1, 7, one_token=1), _timelines(2, 40, one_token=1, failed=2),
               _timelines(3, 2, one_token=1, same_time=0)]  # fmt: skip


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


def _int_of_q_n(xs, q):  # sorted(xs)[int(q / 100 * n)]: one rank too high when q% of n is whole
    xs = sorted(xs)
    return xs[min(int(q / 100 * len(xs)), len(xs) - 1)]


def _lower(xs, q):  # numpy's method="lower"
    return sorted(xs)[math.floor(q / 100 * (len(xs) - 1))]


def _numpy_nearest(xs, q):  # numpy's method="nearest": the interpolation rank, rounded (to even)
    return sorted(xs)[round(q / 100 * (len(xs) - 1))]


def _exclusive(xs, q):  # statistics.quantiles' default, method="exclusive"
    if len(xs) < 2:
        return xs[0]
    return statistics.quantiles(xs, n=100, method="exclusive")[q - 1]


def _mean_for_p50(xs, q):
    return sum(xs) / len(xs) if q == 50 else percentile(xs, q)


def _max_for_p95(xs, q):
    return max(xs) if q == 95 else percentile(xs, q)


def _q_as_fraction(xs, q):
    return percentile(xs, q / 100)


def _pooled_gaps(ts):
    return [b - a for t in _served(ts) for a, b in zip(t["token_times"], t["token_times"][1:])]


def _gap_statistic(ts, statistic):
    return [
        statistic([b - a for a, b in zip(t["token_times"], t["token_times"][1:])])
        for t in _served(ts)
        if len(t["token_times"]) >= 2
    ]


def _scaled(d, k):
    return {key: None if v is None else v * k for key, v in d.items()}


def _swapped(d):
    return {"ttft_p50": d["ttft_p95"], "ttft_p95": d["ttft_p50"],
            "tpot_p50": d["tpot_p95"], "tpot_p95": d["tpot_p50"]}  # fmt: skip


def _multi_token_ttfts(ts):
    return [t["token_times"][0] - t["arrival"] for t in _served(ts) if len(t["token_times"]) > 1]


def _zero_dropped(ts):
    return [v for v in _tpots(ts) if v]


_MISTAKES = [
    (
        "TTFT is measured from prefill_start; it starts at arrival, so the time spent queueing "
        "counts (that is what the user waits)",
        lambda ts: _summary(
            [t["token_times"][0] - t["prefill_start"] for t in _served(ts)], _tpots(ts)
        ),
    ),
    (
        "TTFT runs to the last token (that is the end-to-end latency); it ends at the first token",
        lambda ts: _summary([t["token_times"][-1] - t["arrival"] for t in _served(ts)], _tpots(ts)),
    ),
    (
        "one-token requests are left out of TTFT; they have a TTFT (only no TPOT)",
        lambda ts: _summary(_multi_token_ttfts(ts), _tpots(ts)),
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
        "a TPOT of 0 (a request whose tokens share one timestamp) is dropped, as a test of "
        "truthiness drops it; keep it, and test `is None` or the token count instead",
        lambda ts: _summary(_ttfts(ts), _zero_dropped(ts)),
    ),
    (
        "the TPOT percentiles are over every gap between tokens of every request pooled together; "
        "take one TPOT per request, then the percentile over requests",
        lambda ts: _summary(_ttfts(ts), _pooled_gaps(ts)),
    ),
    (
        "TPOT is each request's median gap; it is the mean gap, (last - first) / (n - 1)",
        lambda ts: _summary(_ttfts(ts), _gap_statistic(ts, statistics.median)),
    ),
    (
        "TPOT is each request's longest gap; it is the mean gap, (last - first) / (n - 1)",
        lambda ts: _summary(_ttfts(ts), _gap_statistic(ts, max)),
    ),
    (
        "the percentile picks values[int(q/100 * (n-1))] from an unsorted list; sort the values "
        "first",
        lambda ts: _right(ts, _unsorted_index),
    ),
    (
        "the percentile takes sorted(values)[int(q/100 * n)], one rank too high when q% of n is "
        "a whole number; nearest rank is the ceil(q/100 * n)-th value, counting from 1",
        lambda ts: _right(ts, _int_of_q_n),
    ),
    (
        "the percentile rounds the rank q/100 * (n-1) down (numpy's method='lower'); interpolate "
        "between the two ranks, or take the nearest rank",
        lambda ts: _right(ts, _lower),
    ),
    (
        "the percentile is numpy's method='nearest', which rounds the interpolation rank; the "
        "nearest-rank method is method='inverted_cdf' (the ceil(q/100 * n)-th value)",
        lambda ts: _right(ts, _numpy_nearest),
    ),
    (
        "the P95 comes from statistics.quantiles' default method='exclusive'; pass "
        "method='inclusive' (numpy.percentile's linear interpolation)",
        lambda ts: _right(ts, _exclusive),
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
    ("P50 and P95 are swapped", lambda ts: _swapped(_right(ts))),
    ("the values are in milliseconds; return seconds", lambda ts: _scaled(_right(ts), 1e3)),
]


def _all_tpots(ts):
    return [
        (t["token_times"][-1] - t["token_times"][0]) / (len(t["token_times"]) - 1)
        if len(t["token_times"]) >= 2
        else None
        for t in _served(ts)
    ]


def _step(x, dtype):
    """The gap between x and the next number of a low-precision dtype (its rounding unit)."""
    t = torch.tensor(abs(x), dtype=dtype)
    return (torch.nextafter(t, torch.tensor(math.inf, dtype=dtype)) - t).double().item()


def _low_precision(ts, dtype):
    """The right answer from timestamps rounded to a low-precision dtype (float16, bfloat16)."""

    def rounded(x):
        return None if x is None else float(torch.tensor(x, dtype=dtype).double())

    return _right([
        {**t, "arrival": rounded(t["arrival"]), "prefill_start": rounded(t["prefill_start"]),
         "token_times": [rounded(x) for x in t["token_times"]]}
        for t in ts
    ])  # fmt: skip


# ---- calling the learner's code -------------------------------------------------------------------
def _works(fn, ts):
    try:
        fn(copy.deepcopy(ts))
        return True
    except Exception:  # noqa: BLE001 - any error means: not on this input
        return False


def _crash_hint(fn, ts):
    """Why the learner's code raised on ts, found by retrying on simpler inputs; None if unknown."""
    if not _served(ts):
        if _works(fn, [t for t in _MAIN if len(t["token_times"]) >= 3]):
            return (
                "it fails when no request qualifies (numpy.percentile of an empty list raises): "
                "return None for those values"
            )
        return None
    multi = [t for t in ts if len(t["token_times"]) >= 2 and t["token_times"][-1] > t["arrival"]]
    multi = [t for t in multi if t["token_times"][-1] > t["token_times"][0]]
    if not multi or not _works(fn, multi):
        return None
    failed = [t for t in ts if t["error"]]
    if failed and not _works(fn, multi + failed):
        return (
            "it fails on a request with an error (no tokens, prefill_start None): leave such "
            "requests out"
        )
    one = [t for t in ts if len(t["token_times"]) == 1]
    if one and not _works(fn, multi + one):
        return (
            "it fails on a one-token request: it has a TTFT but no TPOT (no gap after the "
            "first token), so leave it out of TPOT only"
        )
    same = [t for t in _served(ts) if len(t["token_times"]) >= 2 and t not in multi]
    if same and not _works(fn, multi + same):
        return "it fails on a request whose tokens share one timestamp: its TPOT is 0"
    return None


def _call(fn, ts):
    given = copy.deepcopy(ts)  # a solution that sorts in place must not change our data
    try:
        out = fn(given)
    except (NotImplementedError, CheckFailed):
        raise
    except Exception as error:  # noqa: BLE001 - say how it crashed, in one sentence
        raise crashed("latency_percentiles", error, _crash_hint(fn, ts)) from None
    if not isinstance(out, dict):
        raise CheckFailed(
            f"latency_percentiles() returned {type(out).__name__}; return a dict with the keys "
            f"{', '.join(KEYS)}"
        )
    missing = [k for k in KEYS if k not in out]
    if missing:
        raise CheckFailed(
            f"the result lacks the keys {missing} (it has {sorted(map(str, out))}); it needs "
            f"{', '.join(KEYS)}"
        )
    values = {}
    for k in KEYS:
        v = out[k]
        values[k] = None if v is None else as_number(v)
        if v is not None and values[k] is None:
            raise CheckFailed(
                f"{k} is a {type(v).__name__} ({str(v)[:40]}); give one number of seconds, or None"
            )
    return values


def _close(a, b, tol=_TOL):
    if a is None or b is None:
        return a is None and b is None
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= tol


def _conventions(ts):
    return [_right(ts), _right(ts, nearest_rank_percentile)]


def _diagnose(out, ts, keys=KEYS):
    right = _right(ts)
    for description, wrong in _MISTAKES:
        bad = wrong(ts)
        # a mistake is named only where it changes one of the values checked
        if all(_close(out[k], bad[k]) for k in keys) and not all(
            _close(bad[k], right[k]) for k in keys
        ):
            return description
    for dtype in (torch.float16, torch.bfloat16):
        rough = _low_precision(ts, dtype)
        # Within two of that dtype's steps of the answer from rounded timestamps (a float16
        # pipeline rounds its differences once more): a percentile convention, off by a rank
        # gap, is not told that precision was lost.
        if all(
            out[k] is not None
            and rough[k] is not None
            and abs(out[k] - rough[k]) <= 2 * _step(rough[k], dtype) + 1e-6
            for k in keys
        ) and any(not _close(out[k], right[k]) for k in keys):
            k = max(keys, key=lambda k: abs(out[k] - right[k]))
            return (
                f"{_NAMES[k]} is off by {abs(out[k] - right[k]):.2g} s: precision was lost, as "
                f"in {str(dtype)[6:]} timestamps (3 significant digits); keep times as Python "
                f"floats, float64 or float32"
            )
    return None


def _check_keys(fn, ts, keys, what):
    out = _call(fn, ts)
    convs = _conventions(ts)
    if all(any(_close(out[k], c[k]) for c in convs) for k in keys):
        return out
    prefix = f"{what}: " if what else ""
    diagnosis = _diagnose(out, ts, keys)
    if diagnosis:
        raise CheckFailed(prefix + diagnosis)
    k = next(k for k in keys if not any(_close(out[k], c[k]) for c in convs))

    def s(v):
        return "None" if v is None else f"{v:.6g} s"

    raise CheckFailed(
        f"{prefix}{k} is {s(out[k])}, expected {s(convs[0][k])} (linear interpolation) "
        f"or {s(convs[1][k])} (nearest rank)"
    )


# ---- the checks ------------------------------------------------------------------------------------
def check_format(fn):
    _call(fn, _MAIN)
    return f"returns a dict with {', '.join(KEYS)}"


def check_ttft(fn):
    _check_keys(fn, _MAIN, ("ttft_p50", "ttft_p95"), None)
    return f"P50 and P95 TTFT of {len(_served(_MAIN))} served requests, from arrival"


def check_tpot(fn):
    _check_keys(fn, _MAIN, ("tpot_p50", "tpot_p95"), None)
    return "P50 and P95 TPOT: one (last - first) / (n - 1) per request with 2+ tokens"


def check_other_loads(fn):
    for ts in _OTHER_RUNS:
        _check_keys(fn, ts, KEYS, f"on a run of {len(ts)} requests")
    sizes = sorted(len(ts) for ts in _OTHER_RUNS)
    return f"right on three more runs ({sizes[0]}, {sizes[1]} and {sizes[2]} requests)"


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
    one = _timelines(5, 1, one_token=0, failed=0, same_time=0)
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
    one_token = _call(fn, _timelines(6, 3, one_token=3, failed=0, same_time=0))
    if one_token["tpot_p50"] is not None or one_token["tpot_p95"] is not None:
        raise CheckFailed(
            "when every answer has one token there is no TPOT: tpot_p50 and tpot_p95 must be "
            f"None, got {one_token['tpot_p50']} and {one_token['tpot_p95']}"
        )
    if one_token["ttft_p50"] is None:
        raise CheckFailed(
            "when every answer has one token each still has a TTFT: ttft_p50 and ttft_p95 must "
            "be numbers, got None"
        )
    return "no requests, only failures, one request, only one-token answers"


# ---- differential: the learner's function against the reference, input by input ---------------
def _request(arrival, ttft=None, gaps=(), prefill_start=None, error=None):
    """A timeline: tokens at arrival + ttft, then after each gap (no ttft: no tokens)."""
    times = [] if ttft is None else [round(arrival + ttft, 9)]
    for gap in gaps:
        times.append(round(times[-1] + gap, 9))
    start = prefill_start if prefill_start is not None else (arrival if times else None)
    return {"arrival": arrival, "prefill_start": start, "token_times": times, "error": error}


_FAILED = "prompt is empty: give at least one token"

# The task's worked example: four requests with TTFTs of 1, 2, 3 and 4 s; P50 TTFT is 2.5 s.
_EXAMPLES = [
    case(
        [
            _request(0.0, 1.0, [0.5]),
            _request(0.5, 2.0, [0.25]),
            _request(1.0, 3.0, [0.1]),
            _request(1.5, 4.0, [0.2]),
        ]
    )
]

# One row per rule the task states.
_BOUNDARIES = [
    case([]).because("no requests: every value is None"),
    case([_request(0.0, 0.25, [0.1, 0.1], prefill_start=0.2)]).because(
        "TTFT runs from arrival, queueing included, not from prefill_start"
    ),
    case([_request(0.0, 0.25, [0.1, 0.3])]).because("a single request: P50 = P95 = its own value"),
    case([_request(0.0, 0.2), _request(0.1, 0.3, [0.05, 0.05])]).because(
        "a one-token request has a TTFT but no TPOT"
    ),
    case([_request(0.0, 0.2), _request(0.1, 0.3)]).because(
        "when no request has two tokens, both TPOT values are None"
    ),
    case([_request(0.0, 0.2, [0.125]), _request(0.1, 0.3, [0.05, 0.05])]).because(
        "a two-token request has a TPOT: its one gap"
    ),
    case([_request(0.0, 0.2, [0.0, 0.0]), _request(0.1, 0.3, [0.05, 0.05])]).because(
        "tokens may share a timestamp: a TPOT of 0 is a value"
    ),
    case([_request(0.0, error=_FAILED), _request(0.1, 0.3, [0.05, 0.05])]).because(
        "a request with an error counts in neither TTFT nor TPOT"
    ),
    case([_request(0.0), _request(0.1, 0.3, [0.05, 0.05])]).because(
        "a request without an error and without tokens counts in neither"
    ),
    case([_request(0.0, error=_FAILED), _request(0.2, error=_FAILED)]).because(
        "when no request qualifies, every value is None"
    ),
    case([_request(0.0, 0.2, [0.01, 0.09]), _request(0.1, 0.3, [0.05, 0.05])]).because(
        "one TPOT per request, (last - first) / (n - 1), then the percentile over requests"
    ),
    case(
        [_request(0.5, 0.4, [0.1]), _request(0.0, 0.2, [0.3]), _request(0.25, 0.3, [0.2])]
    ).because("requests may come in any order: sort the values, not the requests"),
    case([_request(0.0, 0.2, [0.1]), _request(0.1, 0.2, [0.1]), _request(0.2, 0.4, [0.3])]).because(
        "tied values across requests"
    ),
    case(
        [_request(0.0, 0.000_15, [0.000_125, 0.000_375]), _request(0.001, 0.000_4, [0.000_9])]
    ).because("sub-millisecond times: seconds, within 10 microseconds"),
    case(
        [
            _request(10.0, 0.2, [0.1]),
            _request(10.5, 0.5, [0.4]),
            _request(11.0, 0.3, [0.2]),
            _request(11.5, 0.9, [0.3]),
            _request(12.0, 0.6, [0.6]),
        ]
    ).because("percentiles interpolate between ranks (or take the nearest rank)"),
]


def _generate(draw):
    """Any list of timelines the task allows: shuffled, queued or not, failed, empty, one token,
    shared timestamps, times from whole seconds down to microseconds."""
    places = draw.choice([1, 3, 6])

    def one(d):
        arrival = d.decimal(0.0, 5.0, places)
        kind = d.choice(["served", "failed", "no tokens"])
        if kind == "failed":
            return _request(arrival, error=_FAILED)
        if kind == "no tokens":
            return _request(arrival)
        wait = d.decimal(0.0, 0.5, places)
        ttft = wait + d.decimal(0.0, 0.5, places)
        gaps = d.list(lambda d: d.decimal(0.0, 0.1, places), max_size=6, average=2)
        return _request(arrival, ttft, gaps, prefill_start=round(arrival + wait, 9))

    return case(draw.list(one, max_size=8, average=4))


def _show_timelines(c):
    """timelines=[(arrival 0.5, prefill_start 0.5, token_times [0.9, 1.0]), (arrival 0, error)]"""
    parts = []
    for t in c.args[0]:
        fields = [f"arrival {show(t['arrival'], exact=True)}"]
        if t["error"]:
            fields.append(f"error {t['error']!r}")
        if t["prefill_start"] is not None:
            fields.append(f"prefill_start {show(t['prefill_start'], exact=True)}")
        fields.append(f"token_times {show(t['token_times'], exact=True)}")
        parts.append("(" + ", ".join(fields) + ")")
    return f"timelines=[{', '.join(parts)}]"


def _values(got):
    """The learner's four values as floats (None kept), or a Difference saying what is off."""
    if not isinstance(got, dict) or any(k not in got for k in KEYS):
        return None
    values = {k: None if got[k] is None else as_number(got[k]) for k in KEYS}
    if any(got[k] is not None and values[k] is None for k in KEYS):
        return None
    return values


def _compare(got, expected, c):
    """Each value within 10 microseconds of the reference (linear interpolation) or of the
    nearest-rank answer; the format as check_format states it."""
    values = _values(got)
    if values is None:
        return Difference("", got, expected, "is not a dict of four numbers or None")
    nearest = _right(c.args[0], nearest_rank_percentile)
    for k in KEYS:
        if not (_close(values[k], expected[k]) or _close(values[k], nearest[k])):
            return Difference(f"[{k!r}]", values[k], expected[k])
    return None


def _named(c, got, expected):
    values = _values(got)
    return _diagnose(values, c.args[0]) if values else None


def _crash_cause(fn, c, error):
    return _crash_hint(fn, c.args[0])


REFERENCE_DIFF = Differential(
    reference("09_latency_percentiles", "latency_percentiles"),
    examples=_EXAMPLES,
    boundaries=_BOUNDARIES,
    generate=_generate,
    n_generated=150,
    compare=_compare,
    diagnose=_named,
    explain_crash=_crash_cause,
    show_input=_show_timelines,
)

CHECKS = [
    ("format", check_format),
    ("TTFT", check_ttft),
    ("TPOT", check_tpot),
    ("other runs", check_other_loads),
    ("edge cases", check_edge_cases),
    *REFERENCE_DIFF.checks(),
]


def check_latency_percentiles(latency_percentiles):
    return run_checks(CHECKS, latency_percentiles, "latency_percentiles")

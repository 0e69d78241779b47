"""Checks for exercises/11_goodput.ipynb: goodput from timelines.

The learner writes goodput(timelines, ttft_slo, tpot_slo, duration) -> requests per second that
were served and met both limits: TTFT <= ttft_slo and TPOT <= tpot_slo (a one-token answer has
no TPOT and meets that limit). Timelines are dicts with "arrival", "prefill_start",
"token_times", "error", as in exercise 9. The reference is llmlab.serving_metrics.goodput: the
rate of requests within the SLO at one load (DistServe's goodput, the highest rate at which a
target share of requests meets the SLO, is a sweep of such runs; the task names both).

The test data tells the mistakes apart: requests that miss only the TTFT limit, only the TPOT
limit, both or neither; uneven gaps between tokens (so the longest or the median gap is not the
mean); queueing (so TTFT from prefill_start differs); one-token answers; failed requests, one of
them after producing tokens. No request's TTFT or TPOT lies within 0.1 ms of a limit, so float32
timestamps (off by ~1 microsecond) decide every request as float64 does; only the boundary check
puts a request exactly on its limits, with values float32 holds exactly.
Then llmlab.checks.differential compares the learner's function with the reference in
exercises/solutions/ on the task's worked example, a boundary table (one row per rule the task
states) and generated inputs, shrunk to the smallest disagreement; the mistakes above name the
difference when exactly one of them gives the learner's answer on that input.
"""

import copy
import math
import random

from llmlab.checks import CheckFailed, as_number, crashed, run_checks
from llmlab.checks.differential import Differential, case, reference

_reference = reference("11_goodput", "goodput")
_MARGIN = 1e-4  # seconds between any request's TTFT or TPOT and a limit


def _ttft(t, start="arrival"):
    return t["token_times"][0] - t[start]


def _tpot(t, divide=lambda n: n - 1):
    n = len(t["token_times"])
    return None if n < 2 else (t["token_times"][-1] - t["token_times"][0]) / divide(n)


def _timelines(seed, n, ttft_slo, tpot_slo):
    """n requests drawn around the limits (none within _MARGIN of one), plus two failures."""
    rng = random.Random(seed)
    out, t = [], 0.0
    while len(out) < n:
        t += rng.uniform(0.02, 0.3)
        start = t + rng.choice([0.0, rng.uniform(0.0, 0.6)])
        first = start + rng.uniform(0.02, 0.1)
        count = 1 if len(out) % 7 == 3 else rng.randint(3, 25)
        gap = rng.choice([rng.uniform(0.01, 0.04), rng.uniform(0.04, 0.12)])
        times = [first]
        for _ in range(count - 1):  # uneven gaps: the longest and the median are not the mean
            times.append(times[-1] + gap * rng.choice([0.4, 0.7, 1.0, 1.3, 2.2]))
        request = {"arrival": t, "prefill_start": start, "token_times": times, "error": None}
        tpot = _tpot(request)
        if abs(_ttft(request) - ttft_slo) < _MARGIN or (
            tpot is not None and abs(tpot - tpot_slo) < _MARGIN
        ):
            continue  # too close to a limit for float32 to decide it as float64 does
        out.append(request)
    out.append({"arrival": t + 0.1, "prefill_start": None, "token_times": [],
                "error": "needs more KV blocks than the pool has"})  # fmt: skip
    fast = out[0]["arrival"] + 0.5 * ttft_slo
    out.append({"arrival": out[0]["arrival"], "prefill_start": out[0]["arrival"],
                "token_times": [fast, fast + 0.5 * tpot_slo, fast + tpot_slo],
                "error": "the client disconnected"})  # fmt: skip
    rng.shuffle(out)
    return out


def _case(seed, n, ttft_slo, tpot_slo, duration):
    return (_timelines(seed, n, ttft_slo, tpot_slo), ttft_slo, tpot_slo, duration)


_CASES = [  # timelines, ttft_slo, tpot_slo, duration
    _case(11, 40, 0.3, 0.05, 12.0),
    _case(12, 25, 0.07, 0.08, 7.5),
    _case(13, 60, 0.5, 0.045, 20.0),
]


def _served(ts):
    return [t for t in ts if not t["error"] and t["token_times"]]


def _count(ts, keep, served=_served):
    return sum(1 for t in served(ts) if keep(t))


def _meets_tpot(t, b, tpot=_tpot):
    value = tpot(t)
    return value is None or value <= b


def _gap_tpot(statistic):
    def tpot(t):
        times = t["token_times"]
        gaps = sorted(y - x for x, y in zip(times, times[1:]))
        return statistic(gaps) if gaps else None

    return tpot


def _median(xs):
    m = len(xs) // 2
    return xs[m] if len(xs) % 2 else (xs[m - 1] + xs[m]) / 2


def _with_tokens(ts):
    return [t for t in ts if t["token_times"]]


_MISTAKES = [
    (
        "it counts every served request (that is throughput); goodput counts only those that met "
        "both limits",
        lambda ts, a, b, d: len(_served(ts)) / d,
    ),
    (
        "it counts the requests that missed the SLO instead of those that met it",
        lambda ts, a, b, d: (len(_served(ts)) - _reference(ts, a, b, d) * d) / d,
    ),
    (
        "it checks only TTFT; a request must also keep TPOT within its limit",
        lambda ts, a, b, d: _count(ts, lambda t: _ttft(t) <= a) / d,
    ),
    (
        "it checks only TPOT; a request must also have its first token within the TTFT limit",
        lambda ts, a, b, d: _count(ts, lambda t: _meets_tpot(t, b)) / d,
    ),
    (
        "it counts requests that met either limit; a request must meet both",
        lambda ts, a, b, d: _count(ts, lambda t: _ttft(t) <= a or _meets_tpot(t, b)) / d,
    ),
    (
        "it leaves out one-token answers; they have no TPOT and meet the TPOT limit",
        lambda ts, a, b, d: (
            _count(ts, lambda t: _tpot(t) is not None and _ttft(t) <= a and _tpot(t) <= b) / d
        ),
    ),
    (
        "it counts a request that has an error because it produced tokens; a request with an "
        "error was not served, whatever it produced",
        lambda ts, a, b, d: (
            _count(ts, lambda t: _ttft(t) <= a and _meets_tpot(t, b), _with_tokens) / d
        ),
    ),
    (
        "it measures TTFT from prefill_start; from arrival, the queueing counts",
        lambda ts, a, b, d: (
            _count(ts, lambda t: _ttft(t, "prefill_start") <= a and _meets_tpot(t, b)) / d
        ),
    ),
    (
        "it compares the end-to-end latency (arrival to last token) with ttft_slo; TTFT ends at "
        "the first token",
        lambda ts, a, b, d: (
            _count(ts, lambda t: t["token_times"][-1] - t["arrival"] <= a and _meets_tpot(t, b)) / d
        ),
    ),
    (
        "its TPOT divides by n; n tokens leave n - 1 gaps after the first",
        lambda ts, a, b, d: (
            _count(
                ts, lambda t: _ttft(t) <= a and _meets_tpot(t, b, lambda t: _tpot(t, lambda n: n))
            )
            / d
        ),
    ),
    (
        "its TPOT is end-to-end latency / n, which folds TTFT in; TPOT is (last - first) / (n - 1)",
        lambda ts, a, b, d: (
            _count(
                ts,
                lambda t: (
                    _ttft(t) <= a
                    and (
                        len(t["token_times"]) < 2
                        or (t["token_times"][-1] - t["arrival"]) / len(t["token_times"]) <= b
                    )
                ),
            )
            / d
        ),
    ),
    (
        "it holds every gap between tokens to the TPOT limit (the longest gap); TPOT is the mean "
        "gap, (last - first) / (n - 1)",
        lambda ts, a, b, d: (
            _count(ts, lambda t: _ttft(t) <= a and _meets_tpot(t, b, _gap_tpot(max))) / d
        ),
    ),
    (
        "its TPOT is the median gap between tokens; TPOT is the mean gap, (last - first) / (n - 1)",
        lambda ts, a, b, d: (
            _count(ts, lambda t: _ttft(t) <= a and _meets_tpot(t, b, _gap_tpot(_median))) / d
        ),
    ),
    (
        "it gives a two-token answer no TPOT; two tokens leave one gap after the first, and that "
        "gap is its TPOT (only a one-token answer has none)",
        lambda ts, a, b, d: (
            _count(
                ts,
                lambda t: _ttft(t) <= a and (len(t["token_times"]) < 3 or _meets_tpot(t, b)),
            )
            / d
        ),
    ),
    (
        "it compares TTFT with tpot_slo and TPOT with ttft_slo; the limits are swapped",
        lambda ts, a, b, d: _count(ts, lambda t: _ttft(t) <= b and _meets_tpot(t, a)) / d,
    ),
    (
        "it returns a count of requests; divide by duration for requests per second",
        lambda ts, a, b, d: _reference(ts, a, b, d) * d,
    ),
    (
        "it returns the share of requests that met the SLO; goodput is requests per second",
        lambda ts, a, b, d: _reference(ts, a, b, d) * d / len(ts),
    ),
    (
        "it returns the share of served requests that met the SLO; goodput is requests per second",
        lambda ts, a, b, d: _reference(ts, a, b, d) * d / len(_served(ts)),
    ),
    (
        "it divides by the run's span (first arrival to last token), not by the given duration",
        lambda ts, a, b, d: (
            _reference(ts, a, b, d)
            * d
            / (max(t["token_times"][-1] for t in _served(ts)) - min(t["arrival"] for t in ts))
        ),
    ),
    (
        "it counts the tokens of the requests that met the SLO; goodput counts requests",
        lambda ts, a, b, d: (
            sum(len(t["token_times"]) for t in _served(ts) if _ttft(t) <= a and _meets_tpot(t, b))
            / d
        ),
    ),
]


# ---- calling the learner's code -------------------------------------------------------------------
def _works(fn, ts, a=1.0, b=1.0, d=10.0):
    try:
        fn(copy.deepcopy(ts), a, b, d)
        return True
    except Exception:  # noqa: BLE001 - any error means: not on this input
        return False


def _crash_hint(fn, ts):
    """Why the learner's code raised on ts, found by retrying on simpler inputs; None if unknown."""
    if not ts:
        if _works(fn, _CASES[0][0][:3]):
            return "it fails on an empty list of requests: with no requests goodput is 0"
        return None
    clean = [t for t in _served(ts) if len(t["token_times"]) >= 2]
    if not clean or not _works(fn, clean):
        return None
    failed = [t for t in ts if t["error"]]
    if failed and not _works(fn, clean + failed):
        return (
            "it fails on a request with an error (its token_times may be empty): such a request "
            "was not served, skip it"
        )
    one = [t for t in ts if len(t["token_times"]) == 1 and not t["error"]]
    if one and not _works(fn, clean + one):
        return (
            "it fails on a one-token answer: it has no TPOT (no gap after the first token), so "
            "it meets the TPOT limit"
        )
    return None


def _call(fn, ts, a, b, d):
    try:
        out = fn(copy.deepcopy(ts), a, b, d)
    except (NotImplementedError, CheckFailed):
        raise
    except Exception as error:  # noqa: BLE001 - say how it crashed, in one sentence
        raise crashed("goodput", error, _crash_hint(fn, ts)) from None
    value = as_number(out)
    if value is None or not math.isfinite(value):
        raise CheckFailed(
            f"goodput() returned {str(out)[:60]} ({type(out).__name__}); return requests per "
            f"second, one number"
        )
    return value


def _close(a, b):
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)


def check_goodput(fn):
    answers = [_call(fn, *case) for case in _CASES]
    if all(_close(a, _reference(*case)) for a, case in zip(answers, _CASES)):
        return f"right on {len(_CASES)} runs of 27 to 62 requests"
    for description, wrong in _MISTAKES:
        if all(_close(a, wrong(*case)) for a, case in zip(answers, _CASES)):
            raise CheckFailed(description)
    if all(a == 0 for a in answers):
        ts, a, b, d = _CASES[0]
        good = round(_reference(ts, a, b, d) * d)
        raise CheckFailed(
            f"it counts no request, while {good} of {len(ts)} met both limits on the first run "
            f"(times and limits are both in seconds)"
        )
    got, case = next((a, c) for a, c in zip(answers, _CASES) if not _close(a, _reference(*c)))
    raise CheckFailed(
        f"for {len(case[0])} requests, TTFT <= {case[1]} s, TPOT <= {case[2]} s over "
        f"{case[3]} s: got {got:.4f}, expected {_reference(*case):.4f} requests/s"
    )


def check_boundaries(fn):
    on_the_limit = [{"arrival": 0.0, "prefill_start": 0.0, "token_times": [0.25, 0.375, 0.75],
                     "error": None}]  # fmt: skip
    got = _call(fn, on_the_limit, 0.25, 0.25, 2.0)
    if not _close(got, 0.5):
        raise CheckFailed(
            f"a request exactly at the limits (TTFT = 0.25 s, TPOT = 0.25 s) meets an SLO of "
            f"'at most' 0.25 s: expected 0.5 requests/s over 2 s, got {got}"
        )
    got = _call(fn, [], 1.0, 1.0, 5.0)
    if got != 0:
        raise CheckFailed(f"with no requests goodput is 0, got {got}")
    failed = [t for t in _CASES[0][0] if t["error"]]
    got = _call(fn, failed, 1.0, 1.0, 5.0)
    if got != 0:
        raise CheckFailed(f"when every request failed goodput is 0, got {got}")
    return "a request exactly at its limits meets them; no requests, or only failures: 0"


# ---- the learner's function against the reference (llmlab.checks.differential) -------------


def _request(arrival, tokens, prefill_start=None, error=None):
    start = arrival if prefill_start is None and tokens else prefill_start
    return {"arrival": arrival, "prefill_start": start, "token_times": tokens, "error": error}


def _named(c, got, expected):
    """The one known mistake whose answer the learner's matches here (the right one does not)."""
    ts, a, b, d = c.args
    value = as_number(got)
    if value is None or d <= 0 or not ts:
        return None
    found = set()
    for description, wrong in _MISTAKES:
        try:
            mistake = wrong(copy.deepcopy(ts), a, b, d)
        except Exception:  # noqa: BLE001 - a mistake that cannot be made on this input
            continue
        if _close(value, mistake) and not _close(mistake, expected):
            found.add(description)
    return found.pop() if len(found) == 1 else None


def _names_duration(raised, expected):
    return isinstance(raised, ValueError) and "duration" in str(raised)


def _time(x):
    return f"{x:.6g}"


def _show_timeline(t):
    times = "[" + ", ".join(_time(x) for x in t["token_times"]) + "]"
    start = "None" if t["prefill_start"] is None else _time(t["prefill_start"])
    return (
        f"{{arrival {_time(t['arrival'])}, prefill_start {start}, token_times {times}, "
        f"error {t['error']!r}}}"
    )


def _show_input(c):
    ts, a, b, d = c.args
    shown = ", ".join(_show_timeline(t) for t in ts[:4]) + (", ..." if len(ts) > 4 else "")
    return f"timelines=[{shown}], ttft_slo={a:g}, tpot_slo={b:g} and duration={d:g}"


_TICK = 1 / 16  # every generated time is a multiple of 1/16 s: exact in float32 and float64, so
# a TTFT or TPOT equal to its limit is equal however it is computed, and one that is not differs
# from it by far more than float32 rounding


def _ticks(draw, lo, hi):
    return draw.integer(lo, hi) * _TICK


def _generated_request(draw):
    arrival = _ticks(draw, 0, 160)
    start = arrival + _ticks(draw, 0, 8)
    error = draw.choice([None, None, None, None, "the client disconnected", "out of KV blocks"])
    n = draw.integer(0, 6) if error or draw.boolean(0.1) else draw.integer(1, 6)
    times = [start + _ticks(draw, 0, 12)] if n else []
    for _ in range(n - 1):
        times.append(times[-1] + _ticks(draw, 0, 6))
    return _request(arrival, times, start if n else None, error)


def _generate(draw):
    timelines = draw.list(_generated_request, max_size=8, average=4)
    ttft_slo, tpot_slo = _ticks(draw, 1, 16), _ticks(draw, 1, 8)
    duration = _ticks(draw, -16, 0) if draw.boolean(0.05) else _ticks(draw, 16, 320)
    return case(timelines, ttft_slo, tpot_slo, duration)


_BOUNDARY = [  # (rule, timelines, ttft_slo, tpot_slo, duration)
    ("a request with no error and no tokens was not served",
     [_request(0.0, []), _request(0.0, [0.25])], 0.5, 0.25, 2.0),
    ("a request with an error was not served, even after streaming tokens",
     [_request(0.0, [0.25, 0.375], error="the client disconnected")], 0.5, 0.25, 2.0),
    ("a limit is met at the limit (TTFT = ttft_slo, TPOT = tpot_slo)",
     [_request(0.0, [0.25, 0.375, 0.75])], 0.25, 0.25, 2.0),
    ("a limit is missed just past it (TTFT 0.4 ms over ttft_slo)",
     [_request(0.0, [0.5004])], 0.5, 0.25, 2.0),
    ("a one-token answer has no TPOT and meets the TPOT limit",
     [_request(0.0, [0.125])], 0.25, 0.0625, 2.0),
    ("a two-token answer has a TPOT: the gap between its tokens",
     [_request(0.0, [0.125, 0.625]), _request(1.0, [1.125, 1.5, 1.875])], 0.25, 0.25, 2.0),
    ("TTFT runs from arrival, so the queueing before prefill_start counts",
     [_request(0.0, [0.5, 0.5625], prefill_start=0.375)], 0.25, 0.25, 2.0),
    ("TPOT is the mean gap, (last - first) / (n - 1), not the longest",
     [_request(0.0, [0.125, 0.25, 0.75, 0.875])], 0.25, 0.25, 2.0),
    ("TTFT is held to ttft_slo and TPOT to tpot_slo",
     [_request(0.0, [0.5, 0.5625]), _request(1.0, [1.125, 1.5])], 0.5, 0.25, 4.0),
    ("a request must meet both limits",
     [_request(0.0, [0.75, 0.8125]), _request(1.0, [1.125, 1.625])], 0.5, 0.25, 4.0),
    ("goodput counts requests, not their tokens, per second of duration",
     [_request(0.0, [0.125, 0.25, 0.375]), _request(1.0, [1.25])], 0.5, 0.25, 8.0),
    ("with no requests goodput is 0", [], 0.5, 0.25, 2.0),
    ("when every request failed goodput is 0",
     [_request(0.0, [], error="out of KV blocks"), _request(0.5, [], error="cancelled")],
     0.5, 0.25, 2.0),
    ("a duration of 0 raises ValueError naming duration", [_request(0.0, [0.25])], 0.5, 0.25, 0.0),
    ("a negative duration raises ValueError too", [_request(0.0, [0.25])], 0.5, 0.25, -1.0),
]  # fmt: skip

_EXAMPLE = [  # the task's worked example: 2 of 4 requests meet both limits over 10 s
    _request(0.0, [0.3, 0.35, 0.45]),
    _request(1.0, [1.6, 1.7], prefill_start=1.4),
    _request(2.0, [2.2]),
    _request(3.0, [3.1, 3.2], error="the client disconnected"),
]

DIFF = Differential(
    _reference,
    examples=[case(_EXAMPLE, 0.5, 0.1, 10.0)],
    boundaries=[case(ts, a, b, d).because(rule) for rule, ts, a, b, d in _BOUNDARY],
    generate=_generate,
    n_generated=150,
    seed=11,
    rtol=1e-6,
    atol=1e-9,
    diagnose=_named,
    show_input=_show_input,
    same_error=_names_duration,
    name="goodput",
)
_examples, _boundaries, _generated = DIFF.checks()

CHECKS = [
    _examples,
    ("goodput", check_goodput),
    ("limits and empty runs", check_boundaries),
    _boundaries,
    _generated,
]


def check_goodput_fn(goodput):
    return run_checks(CHECKS, goodput, "goodput")

"""Checks for exercises/11_goodput.ipynb: goodput from timelines.

The learner writes goodput(timelines, ttft_slo, tpot_slo, duration) -> requests per second that
were served and met both limits: TTFT <= ttft_slo and TPOT <= tpot_slo (a one-token answer has
no TPOT and meets that limit). Timelines are dicts with "arrival", "prefill_start",
"token_times", "error", as in exercise 9. The reference is llmlab.serving_metrics.goodput; when
an answer is off, the checks recompute it with each classic mistake and name the one that
matches.
"""

import copy
import math
import numbers
import random

from llmlab.checks import CheckFailed, run_checks
from llmlab.serving_metrics import goodput as _reference


def _timelines(seed, n):
    rng = random.Random(seed)
    out, t = [], 0.0
    for i in range(n):
        t += rng.uniform(0.02, 0.3)
        start = t + rng.choice([0.0, rng.uniform(0.0, 0.6)])
        first = start + rng.uniform(0.02, 0.1)
        count = 1 if i % 7 == 3 else rng.randint(2, 25)
        gap = rng.choice([rng.uniform(0.01, 0.04), rng.uniform(0.05, 0.12)])
        times = [first + k * gap for k in range(count)]
        out.append({"arrival": t, "prefill_start": start, "token_times": times, "error": None})
    out.append({"arrival": t + 0.1, "prefill_start": None, "token_times": [],
                "error": "needs more KV blocks than the pool has"})  # fmt: skip
    rng.shuffle(out)
    return out


_CASES = [  # timelines, ttft_slo, tpot_slo, duration
    (_timelines(11, 40), 0.3, 0.05, 12.0),
    (_timelines(12, 25), 0.07, 0.08, 7.5),
    (_timelines(13, 60), 0.5, 0.045, 20.0),
]


def _served(ts):
    return [t for t in ts if not t["error"] and t["token_times"]]


def _ttft(t):
    return t["token_times"][0] - t["arrival"]


def _tpot(t, divide=lambda n: n - 1):
    n = len(t["token_times"])
    return None if n < 2 else (t["token_times"][-1] - t["token_times"][0]) / divide(n)


def _count(ts, keep):
    return sum(1 for t in _served(ts) if keep(t))


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
        lambda ts, a, b, d: _count(ts, lambda t: _tpot(t) is None or _tpot(t) <= b) / d,
    ),
    (
        "it leaves out one-token answers; they have no TPOT and meet the TPOT limit",
        lambda ts, a, b, d: (
            _count(ts, lambda t: _tpot(t) is not None and _ttft(t) <= a and _tpot(t) <= b) / d
        ),
    ),
    (
        "it measures TTFT from prefill_start; from arrival, the queueing counts",
        lambda ts, a, b, d: (
            _count(
                ts,
                lambda t: (
                    t["token_times"][0] - t["prefill_start"] <= a
                    and (_tpot(t) is None or _tpot(t) <= b)
                ),
            )
            / d
        ),
    ),
    (
        "its TPOT divides by n; n tokens leave n - 1 gaps after the first",
        lambda ts, a, b, d: (
            _count(
                ts,
                lambda t: _ttft(t) <= a and (_tpot(t) is None or _tpot(t, divide=lambda n: n) <= b),
            )
            / d
        ),
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
        "it divides by the number of served requests' span, not by the given duration",
        lambda ts, a, b, d: (
            _reference(ts, a, b, d)
            * d
            / (max(t["token_times"][-1] for t in _served(ts)) - min(t["arrival"] for t in ts))
        ),
    ),
]


def _call(fn, ts, a, b, d):
    try:
        out = fn(copy.deepcopy(ts), a, b, d)
    except (NotImplementedError, CheckFailed):
        raise
    except (IndexError, ZeroDivisionError, TypeError, KeyError) as error:
        raise CheckFailed(
            f"goodput() raised {type(error).__name__} ({error}); requests with an error or no "
            f"tokens never met the SLO, and one-token answers have no TPOT"
        ) from None
    if isinstance(out, bool) or not isinstance(out, numbers.Real) or not math.isfinite(out):
        raise CheckFailed(f"goodput() returned {out!r}; return requests per second (a float)")
    return float(out)


def _close(a, b):
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def check_goodput(fn):
    answers = [_call(fn, *case) for case in _CASES]
    if all(_close(a, _reference(*case)) for a, case in zip(answers, _CASES)):
        return f"right on {len(_CASES)} runs of 25 to 60 requests"
    for description, wrong in _MISTAKES:
        if all(_close(a, wrong(*case)) for a, case in zip(answers, _CASES)):
            raise CheckFailed(description)
    got, case = next((a, c) for a, c in zip(answers, _CASES) if not _close(a, _reference(*c)))
    raise CheckFailed(
        f"for {len(case[0])} requests, TTFT <= {case[1]} s, TPOT <= {case[2]} s over "
        f"{case[3]} s: got {got:.4f}, expected {_reference(*case):.4f} requests/s"
    )


def check_boundaries(fn):
    on_the_limit = [{"arrival": 0.0, "prefill_start": 0.0, "token_times": [0.25, 0.5, 0.75],
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
    return "a request exactly at its limits meets them; no requests: 0"


CHECKS = [("goodput", check_goodput), ("limits and empty runs", check_boundaries)]


def check_goodput_fn(goodput):
    return run_checks(CHECKS, goodput, "goodput")

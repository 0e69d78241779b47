"""Checks for exercises/06_ttft_tpot.ipynb: TTFT, TPOT and end-to-end latency from timestamps.

The learner writes latency_metrics(request_time, token_times) -> {"ttft", "tpot", "e2e"} in
seconds: time to first token from the request's arrival, mean time per output token after the
first ((last - first) / (n - 1), None with a single token), and end-to-end latency from the
request to the last token. The timestamps have uneven gaps, so the mean gap, the median gap,
the largest gap and every off-by-one give different numbers, and each mistake can be named.
"""

import math
import numbers

from llmlab.checks import CheckFailed, run_checks

# A request arriving at t = 10 s, five tokens: a slow first token (prefill), then uneven gaps.
REQUEST = 10.0
TIMES = [10.35, 10.40, 10.47, 10.50, 10.62]
_N = len(TIMES)
_TTFT = TIMES[0] - REQUEST  # 0.35
_TPOT = (TIMES[-1] - TIMES[0]) / (_N - 1)  # 0.0675
_E2E = TIMES[-1] - REQUEST  # 0.62
_GAPS = sorted(b - a for a, b in zip(TIMES, TIMES[1:]))  # 0.03, 0.05, 0.07, 0.12


def _close(a, b):
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _metrics(latency_metrics, request, times):
    out = latency_metrics(request, times)
    if not isinstance(out, dict):
        raise CheckFailed(
            f'latency_metrics() returned {type(out).__name__}; return a dict with keys "ttft", '
            '"tpot" and "e2e"'
        )
    missing = {"ttft", "tpot", "e2e"} - set(out)
    if missing:
        raise CheckFailed(
            f"the result lacks the key(s) {sorted(missing)}; return ttft, tpot and e2e"
        )
    for key in ("ttft", "e2e"):
        if isinstance(out[key], bool) or not isinstance(out[key], numbers.Real):
            raise CheckFailed(f'"{key}" is {out[key]!r}; return a number of seconds')
    return out


def check_ttft(latency_metrics):
    ttft = _metrics(latency_metrics, REQUEST, list(TIMES))["ttft"]
    if _close(ttft, _TTFT):
        return f"TTFT {_TTFT:.2f} s: first token minus request arrival"
    if _close(ttft, 0.0):
        raise CheckFailed(
            "TTFT is 0: it was measured from the first token; measure from the request's "
            "arrival (request_time) to the first token"
        )
    if _close(ttft, TIMES[0]):
        raise CheckFailed(
            f"TTFT is {ttft}, the first token's timestamp; subtract request_time to get a duration"
        )
    if _close(ttft, _TTFT * 1000):
        raise CheckFailed("TTFT came out in milliseconds; return seconds, like the timestamps")
    raise CheckFailed(f"TTFT is {ttft!r} s, expected {_TTFT:.4f} s (first token - request_time)")


def check_tpot(latency_metrics):
    tpot = _metrics(latency_metrics, REQUEST, list(TIMES))["tpot"]
    if isinstance(tpot, bool) or not isinstance(tpot, numbers.Real):
        raise CheckFailed(f'"tpot" is {tpot!r} for {_N} tokens; return a number of seconds')
    if _close(tpot, _TPOT):
        return f"TPOT {_TPOT * 1e3:.2f} ms: (last - first) / (n - 1), the mean gap"
    wrong = [
        (
            (TIMES[-1] - TIMES[0]) / _N,
            f"TPOT divides by the number of tokens ({_N}); {_N} tokens have {_N - 1} gaps: "
            "divide by n - 1",
        ),
        (
            _E2E / _N,
            "TPOT includes the time to the first token: it is end-to-end / n; TPOT counts only "
            "the tokens after the first: (last - first) / (n - 1)",
        ),
        (
            _E2E / (_N - 1),
            "TPOT starts at the request, not at the first token: use (last - first) / (n - 1)",
        ),
        (
            (_GAPS[1] + _GAPS[2]) / 2,
            "TPOT is the median gap; it is the mean time per output token after the first, "
            "(last - first) / (n - 1)",
        ),
        (_GAPS[-1], "TPOT is the largest gap; it is the mean, (last - first) / (n - 1)"),
        (_GAPS[0], "TPOT is the smallest gap; it is the mean, (last - first) / (n - 1)"),
        (1 / _TPOT, "that is tokens per second (1 / TPOT); TPOT is seconds per token"),
        (_TPOT * 1000, "TPOT came out in milliseconds; return seconds, like the timestamps"),
        (
            TIMES[1] - TIMES[0],
            "TPOT is only the first gap; average over all gaps: (last - first) / (n - 1)",
        ),
    ]
    for value, sentence in wrong:
        if _close(tpot, value):
            raise CheckFailed(sentence)
    raise CheckFailed(f"TPOT is {tpot!r} s, expected {_TPOT:.4f} s ((last - first) / (n - 1))")


def check_e2e(latency_metrics):
    out = _metrics(latency_metrics, REQUEST, list(TIMES))
    e2e = out["e2e"]
    if not _close(e2e, _E2E):
        if _close(e2e, TIMES[-1] - TIMES[0]):
            raise CheckFailed(
                "end-to-end latency starts at the first token; it starts at the request "
                "(last token - request_time)"
            )
        if _close(e2e, TIMES[-1]):
            raise CheckFailed(
                "e2e is the last token's timestamp; subtract request_time to get a duration"
            )
        if _close(e2e, _TTFT + _TPOT * _N):
            raise CheckFailed(
                f"e2e counts {_N} gaps after the first token; there are n - 1 = {_N - 1}"
            )
        raise CheckFailed(f"e2e is {e2e!r} s, expected {_E2E:.4f} s (last token - request_time)")
    return f"end-to-end {_E2E:.2f} s = TTFT + TPOT x (n - 1)"


def check_one_token(latency_metrics):
    try:
        out = _metrics(latency_metrics, 2.0, [2.5])
    except ZeroDivisionError as error:
        raise CheckFailed(
            "with one token it divides by n - 1 = 0; there is no gap to average: return "
            "None for tpot"
        ) from error
    if out["tpot"] is not None:
        raise CheckFailed(
            f"with one token tpot is {out['tpot']!r}; there is no gap between tokens, so "
            "TPOT is undefined: return None"
        )
    if not (_close(out["ttft"], 0.5) and _close(out["e2e"], 0.5)):
        raise CheckFailed(
            f"with one token at 2.5 s for a request at 2.0 s, TTFT and e2e are both 0.5 s; got "
            f"{out['ttft']!r} and {out['e2e']!r}"
        )
    return "one token: TTFT = e2e, TPOT None"


def _expect_value_error(latency_metrics, args, what):
    try:
        out = latency_metrics(*args)
    except ValueError as error:
        return str(error)
    except NotImplementedError:
        raise
    except Exception as error:  # noqa: BLE001 - any other exception is the slip to name
        raise CheckFailed(
            f"{what} raised {type(error).__name__}; raise ValueError with a message that names "
            "token_times"
        ) from error
    raise CheckFailed(f"{what} returned {out!r}; it should raise ValueError")


def check_empty(latency_metrics):
    message = _expect_value_error(latency_metrics, (1.0, []), "an empty token_times")
    if "token_times" not in message:
        raise CheckFailed(
            f"the ValueError for an empty list says {message!r}; name the argument (token_times)"
        )
    return "an empty list raises ValueError naming token_times"


def check_bad_timestamps(latency_metrics):
    _expect_value_error(
        latency_metrics, (1.0, [1.2, 1.1, 1.3]), "timestamps out of order (1.2, 1.1, 1.3)"
    )
    _expect_value_error(
        latency_metrics, (5.0, [4.0, 5.5]), "a token before the request (4.0 < request 5.0)"
    )
    return "timestamps out of order, or before the request, raise ValueError"


def check_any_sequence(latency_metrics):
    import numpy as np

    for kind, times in (("tuple", tuple(TIMES)), ("numpy array", np.array(TIMES))):
        out = _metrics(latency_metrics, REQUEST, times)
        got = (float(out["ttft"]), float(out["tpot"]), float(out["e2e"]))
        if not all(_close(a, b) for a, b in zip(got, (_TTFT, _TPOT, _E2E))):
            raise CheckFailed(
                f"token_times as a {kind} gives (ttft, tpot, e2e) = {got}, a list gives "
                f"{(_TTFT, _TPOT, _E2E)}"
            )
    return "the same answer from a list, a tuple and a numpy array"


CHECKS = [
    ("TTFT", check_ttft),
    ("TPOT", check_tpot),
    ("end-to-end latency", check_e2e),
    ("one token", check_one_token),
    ("empty list", check_empty),
    ("bad timestamps", check_bad_timestamps),
    ("any sequence", check_any_sequence),
]


def check_latency_metrics(latency_metrics):
    """Run every check on the learner's latency_metrics; print and return the report."""
    return run_checks(CHECKS, latency_metrics, "latency_metrics")

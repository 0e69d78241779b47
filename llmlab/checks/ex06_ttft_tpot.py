"""Checks for exercises/06_ttft_tpot.ipynb: TTFT, TPOT and end-to-end latency from timestamps.

The learner writes latency_metrics(request_time, token_times) -> {"ttft", "tpot", "e2e"} in
seconds: time to first token from the request's arrival, mean time per output token after the
first ((last - first) / (n - 1), None with a single token), and end-to-end latency from the
request to the last token. The six timestamps have uneven gaps (0.04, 0.06, 0.12, 0.03, 0.09 s),
so the mean gap, the median, the first, the last, the smallest and the largest gap and every
off-by-one give different numbers, and each mistake can be named.

Values are compared to 10 microseconds, so an answer computed in float32 near t = 10 s passes;
the "epoch timestamps" check then feeds times near 1.7e9 s (time.time()), where float32 keeps
only multiples of 128 s, and says so.
"""

import math
import numbers

from llmlab.checks import CheckFailed, crashed, one_line, run_checks

# A request arriving at t = 10 s, six tokens: a slow first token (prefill), then uneven gaps
# whose first, last, smallest, largest and median all differ from their mean (0.068 s).
REQUEST = 10.0
TIMES = [10.35, 10.39, 10.45, 10.57, 10.60, 10.69]
_N = len(TIMES)
_GAPS = [b - a for a, b in zip(TIMES, TIMES[1:])]  # 0.04, 0.06, 0.12, 0.03, 0.09
_TTFT = TIMES[0] - REQUEST  # 0.35
_TPOT = (TIMES[-1] - TIMES[0]) / (_N - 1)  # 0.068
_E2E = TIMES[-1] - REQUEST  # 0.69
_TOLERANCE = 1e-5  # seconds: float32 near 10 s errs by ~1e-6; every mistake by > 1e-3
_EPOCH = 1_700_000_000.0  # time.time() in late 2023: float32 steps are 128 s here


def _close(a, b):
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=_TOLERANCE)


def _number(out, key):
    """out[key] as a float for the value checks; a tensor or numpy scalar is read, not blamed."""
    value = out[key]
    if isinstance(value, bool) or value is None:
        raise CheckFailed(f'"{key}" is {value!r}; return a number of seconds')
    try:
        return float(value)
    except (TypeError, ValueError):
        raise CheckFailed(
            f'"{key}" is a {type(value).__name__}, not one number; return a number of seconds'
        ) from None


def _call(latency_metrics, request, times):
    try:
        out = latency_metrics(request, times)
    except NotImplementedError:
        raise
    except Exception as error:  # noqa: BLE001 - the learner's code crashed: say so, with why
        raise crashed("latency_metrics", error, _crash_hint(error, times)) from None
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
    return out


def _crash_hint(error, times):
    text = str(error)
    if "truth value of an array" in text:
        return (
            "on a numpy array, `if not token_times` and comparisons such as sorted(t) != t give "
            "arrays whose truth value is ambiguous: test len(token_times) == 0 and compare "
            "element by element (or convert with list(token_times) first)"
        )
    if isinstance(error, ZeroDivisionError) and len(times) == 1:
        return (
            "with one token it divides by n - 1 = 0; there is no gap to average: return None "
            "for tpot"
        )
    if isinstance(error, ValueError) and len(times) > 1:
        return "these timestamps are valid (in order, none before the request)"
    return None


_NOT_YET = (
    "the values for the basic timestamps are not right yet (see the TTFT, TPOT and end-to-end "
    "checks); this check then compares {what} with them"
)


def _basic(latency_metrics):
    """The learner's values for the basic list of timestamps, or CheckFailed if any is wrong."""
    out = _call(latency_metrics, REQUEST, list(TIMES))
    got = {key: _number(out, key) if out[key] is not None else math.nan for key in out}
    if not all(
        _close(got.get(k, math.nan), v)
        for k, v in zip(("ttft", "tpot", "e2e"), (_TTFT, _TPOT, _E2E))
    ):
        return None
    return got


def _show(values):
    return "{" + ", ".join(f"{k}: {v:.4g}" for k, v in values.items()) + "}"


def check_ttft(latency_metrics):
    ttft = _number(_call(latency_metrics, REQUEST, list(TIMES)), "ttft")
    if _close(ttft, _TTFT):
        return f"TTFT {_TTFT:.2f} s: first token minus request arrival"
    wrong = [
        (0.0, "TTFT is 0: it was measured from the first token; measure from the request's "
              "arrival (request_time) to the first token"),
        (TIMES[0], f"TTFT is {ttft:g}, the first token's timestamp; subtract request_time to "
                   "get a duration"),
        (-_TTFT, "TTFT is negative: it is request_time - first token; subtract the other way "
                 "round, first token - request_time"),
        (_TTFT * 1000, "TTFT came out in milliseconds; return seconds, like the timestamps"),
        (_GAPS[0], "TTFT is the gap between the first two tokens; it is the wait from the "
                   "request's arrival to the first token"),
        (_E2E, "TTFT is the time to the last token (the end-to-end latency); it ends at the "
               "first token"),
    ]  # fmt: skip
    for value, sentence in wrong:
        if _close(ttft, value):
            raise CheckFailed(sentence)
    raise CheckFailed(f"TTFT is {ttft:g} s, expected {_TTFT:.4f} s (first token - request_time)")


def check_tpot(latency_metrics):
    out = _call(latency_metrics, REQUEST, list(TIMES))
    if out["tpot"] is None:
        raise CheckFailed(
            f"tpot is None for {_N} tokens; None is only for a single token, here there are "
            f"{_N - 1} gaps to average"
        )
    tpot = _number(out, "tpot")
    if _close(tpot, _TPOT):
        return f"TPOT {_TPOT * 1e3:.0f} ms: (last - first) / (n - 1), the mean gap"
    gaps = sorted(_GAPS)
    wrong = [
        ((TIMES[-1] - TIMES[0]) / _N,
         f"TPOT divides by the number of tokens ({_N}); {_N} tokens have {_N - 1} gaps: "
         "divide by n - 1"),
        (_E2E / _N,
         "TPOT includes the time to the first token: it is end-to-end / n; TPOT counts only "
         "the tokens after the first: (last - first) / (n - 1)"),
        (_E2E / (_N - 1),
         "TPOT starts at the request, not at the first token: use (last - first) / (n - 1)"),
        (gaps[len(gaps) // 2],
         "TPOT is the median gap; it is the mean time per output token after the first, "
         "(last - first) / (n - 1)"),
        (gaps[-1], "TPOT is the largest gap; it is the mean, (last - first) / (n - 1)"),
        (gaps[0], "TPOT is the smallest gap; it is the mean, (last - first) / (n - 1)"),
        (_GAPS[0], "TPOT is only the first gap; average over all gaps: (last - first) / (n - 1)"),
        (_GAPS[-1], "TPOT is only the last gap; average over all gaps: (last - first) / (n - 1)"),
        (1 / _TPOT, "that is tokens per second (1 / TPOT); TPOT is seconds per token"),
        (_TPOT * 1000, "TPOT came out in milliseconds; return seconds, like the timestamps"),
        (-_TPOT, "TPOT is negative: subtract the first token's time from the last's"),
        (sum(TIMES) / _N - TIMES[0],
         "TPOT is the mean timestamp minus the first; it is the mean gap between consecutive "
         "tokens, (last - first) / (n - 1)"),
    ]  # fmt: skip
    for value, sentence in wrong:
        if _close(tpot, value):
            raise CheckFailed(sentence)
    raise CheckFailed(f"TPOT is {tpot:g} s, expected {_TPOT:.4f} s ((last - first) / (n - 1))")


def check_e2e(latency_metrics):
    e2e = _number(_call(latency_metrics, REQUEST, list(TIMES)), "e2e")
    if _close(e2e, _E2E):
        return f"end-to-end {_E2E:.2f} s = TTFT + TPOT x (n - 1)"
    wrong = [
        (TIMES[-1] - TIMES[0], "end-to-end latency starts at the first token; it starts at the "
                               "request (last token - request_time)"),
        (TIMES[-1], f"e2e is {e2e:g}, the last token's timestamp; subtract request_time to get "
                    "a duration"),
        (_TTFT + _TPOT * _N, f"e2e counts {_N} gaps after the first token; there are "
                             f"n - 1 = {_N - 1}"),
        (_E2E * 1000, "e2e came out in milliseconds; return seconds, like the timestamps"),
        (-_E2E, "e2e is negative: subtract request_time from the last token's time"),
        (_TTFT, "e2e ends at the first token (that is TTFT); it ends at the last token"),
    ]  # fmt: skip
    for value, sentence in wrong:
        if _close(e2e, value):
            raise CheckFailed(sentence)
    raise CheckFailed(f"e2e is {e2e:g} s, expected {_E2E:.4f} s (last token - request_time)")


def check_one_token(latency_metrics):
    out = _call(latency_metrics, 2.0, [2.5])
    tpot = out["tpot"]
    if tpot is not None:
        if isinstance(tpot, numbers.Real) and math.isnan(tpot):
            raise CheckFailed(
                "with one token tpot is nan (the mean of no gaps); there is no gap between "
                "tokens, so TPOT is undefined: return None"
            )
        raise CheckFailed(
            f"with one token tpot is {tpot!r}; there is no gap between tokens, so TPOT is "
            "undefined: return None"
        )
    ttft, e2e = _number(out, "ttft"), _number(out, "e2e")
    if not (_close(ttft, 0.5) and _close(e2e, 0.5)):
        raise CheckFailed(
            f"with one token at 2.5 s for a request at 2.0 s, TTFT and e2e are both 0.5 s; got "
            f"{ttft:g} and {e2e:g}"
        )
    return "one token: TTFT = e2e, TPOT None"


def _expect_value_error(latency_metrics, args, what):
    """The ValueError's message for input that must be refused; else one sentence on why not."""
    try:
        out = latency_metrics(*args)
    except ValueError as error:
        message = one_line(error, 100)
        if "token_times" not in message:
            raise CheckFailed(
                f"the ValueError for {what} says {message!r}; name the argument (token_times)"
            ) from None
        return message
    except NotImplementedError:
        raise
    except Exception as error:  # noqa: BLE001 - any other exception is the slip to name
        raise CheckFailed(
            f"{what} raised {type(error).__name__} ({one_line(error, 60)}); raise ValueError "
            "with a message that names token_times"
        ) from None
    raise CheckFailed(f"{what} returned {out!r}; it should raise ValueError")


def check_empty(latency_metrics):
    _expect_value_error(latency_metrics, (1.0, []), "an empty token_times")
    return "an empty list raises ValueError naming token_times"


def check_bad_timestamps(latency_metrics):
    _expect_value_error(
        latency_metrics,
        (1.0, [1.2, 1.1, 1.3]),
        "timestamps out of order (1.2, then 1.1)",
    )
    _expect_value_error(
        latency_metrics,
        (5.0, [4.0, 5.5]),
        "a token before the request (4.0 < request_time 5.0)",
    )
    return "timestamps out of order, or before the request, raise ValueError naming token_times"


def check_ties(latency_metrics):
    cases = [
        (
            (1.0, [1.2, 1.2, 1.5]),
            {"ttft": 0.2, "tpot": 0.15, "e2e": 0.5},
            "two tokens at the same time (1.2, 1.2)",
            "equal timestamps are in order (tokens can arrive together); refuse only a time "
            "smaller than the one before it",
        ),
        (
            (1.0, [1.0, 1.5]),
            {"ttft": 0.0, "tpot": 0.5, "e2e": 0.5},
            "a token at the request's own time (1.0 for a request at 1.0)",
            "a TTFT of 0 is allowed; refuse only a token before request_time",
        ),
    ]
    for args, expected, what, why in cases:
        try:
            out = latency_metrics(*args)
        except ValueError as error:
            raise CheckFailed(f"{what} raised ValueError ({one_line(error, 60)}): {why}") from None
        except NotImplementedError:
            raise
        except Exception as error:  # noqa: BLE001
            raise crashed("latency_metrics", error, f"{what} is valid input") from None
        got = {key: _number(out, key) for key in expected}
        if not all(_close(got[key], expected[key]) for key in expected):
            if _basic(latency_metrics) is None:
                raise CheckFailed(_NOT_YET.format(what="ties"))
            raise CheckFailed(f"{what} gives {_show(got)}, expected {_show(expected)}")
    return "equal timestamps, and a token at the request's time, are accepted"


def check_any_sequence(latency_metrics):
    import numpy as np

    ref = _basic(latency_metrics)
    if ref is None:
        raise CheckFailed(_NOT_YET.format(what="a tuple and a numpy array of the same times"))
    for kind, times in (("tuple", tuple(TIMES)), ("numpy array", np.array(TIMES))):
        try:
            out = latency_metrics(REQUEST, times)
        except NotImplementedError:
            raise
        except Exception as error:  # noqa: BLE001
            hint = _crash_hint(error, times)
            if isinstance(error, ValueError) and kind == "tuple":
                hint = (
                    "valid timestamps as a tuple raised ValueError while a list works: a tuple "
                    "never equals a list, so a test like sorted(t) != t refuses every tuple; "
                    "compare list(token_times)"
                )
            elif isinstance(error, ValueError) and "truth value" not in str(error):
                hint = f"valid timestamps as a {kind} raised ValueError while a list works"
            raise crashed("latency_metrics", error, hint) from None
        got = {key: _number(out, key) for key in ("ttft", "tpot", "e2e")}
        if not all(_close(got[key], ref[key]) for key in ref):
            raise CheckFailed(
                f"token_times as a {kind} gives {_show(got)}, the same times as a list give "
                f"{_show(ref)}"
            )
    return "the same answer from a list, a tuple and a numpy array"


def check_numbers(latency_metrics):
    out = _call(latency_metrics, REQUEST, list(TIMES))
    for key in ("ttft", "tpot", "e2e"):
        value = out[key]
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise CheckFailed(
                f'"{key}" is a {type(value).__module__}.{type(value).__name__}; return a plain '
                "number (float(value), or .item() for a tensor) so it prints and compares as one"
            )
    return "plain numbers (float, int or a numpy scalar)"


def check_epoch_timestamps(latency_metrics):
    if _basic(latency_metrics) is None:
        raise CheckFailed(_NOT_YET.format(what="the same gaps near t = 1.7e9 s"))
    offsets = [t - REQUEST for t in TIMES]
    times = [_EPOCH + o for o in offsets]
    out = _call(latency_metrics, _EPOCH, times)
    expected = {"ttft": offsets[0], "tpot": _TPOT, "e2e": offsets[-1]}
    got = {key: _number(out, key) for key in expected}
    errors = {key: abs(got[key] - expected[key]) for key in expected}
    if all(e <= _TOLERANCE for e in errors.values()):
        return "timestamps near 1.7e9 s (time.time()) give the same durations"
    key = max(errors, key=errors.get)
    if max(errors.values()) <= 512:
        raise CheckFailed(
            f"with timestamps near 1.7e9 s (as time.time() gives) {key} is off by "
            f"{errors[key]:.3g} s: float32 (torch.tensor's default) keeps about 7 digits and "
            "rounds such times to multiples of 128 s; subtract in float64 (Python floats, numpy)"
        )
    raise CheckFailed(
        f"with timestamps near 1.7e9 s {key} is {got[key]:g} s, expected {expected[key]:.4f} s"
    )


CHECKS = [
    ("TTFT", check_ttft),
    ("TPOT", check_tpot),
    ("end-to-end latency", check_e2e),
    ("one token", check_one_token),
    ("empty list", check_empty),
    ("bad timestamps", check_bad_timestamps),
    ("equal timestamps", check_ties),
    ("any sequence", check_any_sequence),
    ("plain numbers", check_numbers),
    ("epoch timestamps", check_epoch_timestamps),
]


def check_latency_metrics(latency_metrics):
    """Run every check on the learner's latency_metrics; print and return the report."""
    return run_checks(CHECKS, latency_metrics, "latency_metrics")

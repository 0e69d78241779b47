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
Then llmlab.checks.differential compares the learner's function with the reference in
exercises/solutions/ on the task's worked example, a boundary table (one row per rule the task
states: one and two tokens, each error, the last pair of the order, a token 3 ms early, ties,
sub-millisecond durations, epoch times, tuples and arrays) and generated inputs, shrunk to the
smallest disagreement; a known mistake that gives the learner's value there is named after it.
"""

import math
import numbers

from llmlab.checks import CheckFailed, as_number, crashed, one_line, run_checks
from llmlab.checks.differential import Differential, case, reference

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
    return _checked(out)


def _checked(out):
    """out if it is a dict with the three keys, else CheckFailed (never the check's KeyError)."""
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
        got = {key: _number(_checked(out), key) for key in expected}
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
        got = {key: _number(_checked(out), key) for key in ("ttft", "tpot", "e2e")}
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


# ---- the learner's function against the reference (llmlab.checks.differential) -------------


def _gaps(t):
    return sorted(b - a for a, b in zip(t, t[1:]))


def _mistakes(r, t):
    """{key: [(sentence, value)]}: what each known mistake gives for request r, tokens t."""
    n, ttft, e2e = len(t), t[0] - r, t[-1] - r
    tpot = (t[-1] - t[0]) / (n - 1) if n > 1 else None
    rounded = "it rounds to whole milliseconds (3 decimals); durations can be shorter than a "
    rounded += "millisecond: return them unrounded"
    found = {
        "ttft": [
            ("TTFT is measured from the first token; measure from request_time", 0.0),
            ("TTFT is the first token's timestamp; subtract request_time", t[0]),
            ("TTFT is request_time - first token; subtract the other way round", -ttft),
            ("TTFT came out in milliseconds; return seconds", 1000 * ttft),
            (rounded, round(ttft, 3)),
        ],
        "e2e": [
            ("e2e starts at the first token; it starts at request_time", t[-1] - t[0]),
            ("e2e is the last token's timestamp; subtract request_time", t[-1]),
            ("e2e ends at the first token (that is TTFT); it ends at the last", ttft),
            ("e2e came out in milliseconds; return seconds", 1000 * e2e),
            ("e2e is negative: subtract request_time from the last token's time", -e2e),
            (rounded, round(e2e, 3)),
        ],
        "tpot": [],
    }
    if n > 1:
        found["ttft"].append(("TTFT is the gap between the first two tokens", t[1] - t[0]))
        found["e2e"].append((f"e2e counts n = {n} gaps after the first token; there are n - 1",
                             ttft + tpot * n))  # fmt: skip
        gaps = _gaps(t)
        mean = "; TPOT is the mean gap, (last - first) / (n - 1)"
        found["tpot"] = [
            (f"TPOT divides by n = {n}; n tokens leave n - 1 gaps", (t[-1] - t[0]) / n),
            ("TPOT includes the time to the first token (end-to-end / n)", e2e / n),
            ("TPOT starts at request_time, not at the first token", e2e / (n - 1)),
            ("TPOT is the median gap" + mean, gaps[len(gaps) // 2]),
            ("TPOT is the largest gap" + mean, gaps[-1]),
            ("TPOT is the smallest gap" + mean, gaps[0]),
            ("TPOT is the first gap" + mean, t[1] - t[0]),
            ("TPOT is the last gap" + mean, t[-1] - t[-2]),
            ("TPOT came out in milliseconds; return seconds", 1000 * tpot),
            ("TPOT is negative: subtract the first token's time from the last's", -tpot),
            (rounded, round(tpot, 3)),
        ]
        if tpot > 0:
            found["tpot"].append(("that is tokens per second (1 / TPOT)", 1 / tpot))
        if n == 2:
            found["tpot"].append((
                "two tokens leave one gap, and TPOT is that gap: None is only for one token",
                None,
            ))  # fmt: skip
    return found


def _named(c, got, expected):
    """The one known mistake that gives the learner's value here, or None."""
    r, times = c.args
    t = [float(x) for x in times]
    if not isinstance(got, dict):
        return None
    values = {k: got.get(k) for k in expected}
    if r > 1e6 and all(
        (as_number(values[k]) is None) == (expected[k] is None)
        and (expected[k] is None or abs(as_number(values[k]) - expected[k]) <= 512)
        for k in expected
    ):
        return (
            "float32 (torch.tensor's default) keeps about 7 digits and rounds times near 1.7e9 s "
            "to multiples of 128 s; subtract in float64 (Python floats, numpy)"
        )
    for key in ("ttft", "tpot", "e2e"):
        value, right = values[key], expected[key]
        number = None if value is None else as_number(value)
        if value is None and right is None:
            continue
        if right is not None and number is not None and _close(number, right):
            continue
        found = {
            sentence
            for sentence, wrong in _mistakes(r, t)[key]
            if (wrong is None and value is None)
            or (wrong is not None and number is not None and _close(number, wrong)
                and not _close(wrong, right))
        }  # fmt: skip
        return found.pop() if len(found) == 1 else None
    return None


def _names_token_times(raised, expected):
    return isinstance(raised, ValueError) and "token_times" in str(raised)


def _show_input(c):
    r, times = c.args
    items = ", ".join(repr(float(x)) for x in times)
    if isinstance(times, tuple):
        shown = f"({items}{',' if len(times) == 1 else ''}) (a tuple)"
    elif isinstance(times, list):
        shown = f"[{items}]"
    else:
        shown = f"np.array([{items}])"
    return f"request_time={float(r)!r} and token_times={shown}"


def _generate(draw):
    request = draw.choice([0.0, 10.0, _EPOCH]) + draw.decimal(0, 5, places=3)
    n = 0 if draw.boolean(0.03) else draw.integer(1, 7)
    times = [request + draw.decimal(0, 0.5, places=4)] if n else []
    for _ in range(n - 1):
        times.append(times[-1] + draw.decimal(0, 0.2, places=4))
    if n and draw.boolean(0.1):  # a token before the request, by up to 10 ms
        times[0] = request - draw.decimal(0.0001, 0.01, places=4)
    if n > 1 and draw.boolean(0.1):  # two neighbours swapped
        i = draw.integer(0, n - 2)
        times[i], times[i + 1] = times[i + 1], times[i]
    import numpy as np

    kind = draw.choice([list, tuple, np.array])
    return case(request, kind(times))


DIFF = Differential(
    reference("06_ttft_tpot", "latency_metrics"),
    examples=[case(REQUEST, list(TIMES))],
    boundaries=[
        case(2.0, [2.5]).because("one token: TPOT is None"),
        case(2.0, [2.5, 2.75]).because("two tokens have a TPOT, the one gap"),
        case(1.0, []).because("an empty token_times raises ValueError naming token_times"),
        case(1.0, [1.2, 1.1, 1.3]).because("a timestamp smaller than the one before it raises"),
        case(1.0, [1.1, 1.2, 1.3, 1.25]).because("the order is checked up to the last pair"),
        case(5.0, [4.997, 5.5]).because("a token before the request raises, even by 3 ms"),
        case(1.0, [1.2, 1.2, 1.5]).because("equal timestamps are valid"),
        case(1.0, [1.0, 1.5]).because("a token at request_time itself is valid"),
        case(2.0, [2.0104, 2.0107, 2.0113]).because("durations shorter than a millisecond"),
        case(_EPOCH, [_EPOCH + 0.35, _EPOCH + 0.39, _EPOCH + 0.45]).because(
            "times as large as time.time() gives"
        ),
        case(REQUEST, tuple(TIMES)).because("token_times may be a tuple"),
        case(REQUEST, __import__("numpy").array(TIMES)).because("or a numpy array"),
    ],
    generate=_generate,
    n_generated=150,
    seed=6,
    rtol=1e-9,
    atol=_TOLERANCE,  # 10 microseconds: float32 near t = 10 s errs by ~1e-6
    diagnose=_named,
    show_input=_show_input,
    same_error=_names_token_times,
)
_examples, _boundaries, _generated = DIFF.checks()

CHECKS = [
    _examples,
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
    _boundaries,
    _generated,
]


def check_latency_metrics(latency_metrics):
    """Run every check on the learner's latency_metrics; print and return the report."""
    return run_checks(CHECKS, latency_metrics, "latency_metrics")

"""Checks for exercises/12_padding_waste.ipynb: the decode slots static batching wastes.

The learner writes padding_waste(lengths, batch_size) -> the share of decode slots (a row of the
batch for one step) that hold a request which has already finished, when requests are batched
statically in arrival order, batch_size at a time, and each batch runs until its longest answer
is done. The last batch may be smaller; rows that hold no request do not count. When an answer
is off, the checks recompute it with each classic mistake and name the one that matches.
"""

import math
import numbers
import random

from llmlab.checks import CheckFailed, run_checks


def _right(lengths, b):
    slots = sum(
        len(lengths[i : i + b]) * max(lengths[i : i + b]) for i in range(0, len(lengths), b)
    )
    return 0.0 if slots == 0 else 1 - sum(lengths) / slots


def _global_max(lengths, b):
    return 1 - sum(lengths) / (len(lengths) * max(lengths))


def _sorted_first(lengths, b):
    return _right(sorted(lengths), b)


def _full_last_batch(lengths, b):
    slots = sum(b * max(lengths[i : i + b]) for i in range(0, len(lengths), b))
    return 1 - sum(lengths) / slots


def _waste_over_used(lengths, b):
    slots = sum(
        len(lengths[i : i + b]) * max(lengths[i : i + b]) for i in range(0, len(lengths), b)
    )
    return (slots - sum(lengths)) / sum(lengths)


def _waste_count(lengths, b):
    slots = sum(
        len(lengths[i : i + b]) * max(lengths[i : i + b]) for i in range(0, len(lengths), b)
    )
    return slots - sum(lengths)


def _mean_not_max(lengths, b):
    slots = 0.0
    for i in range(0, len(lengths), b):
        batch = lengths[i : i + b]
        slots += len(batch) * (sum(batch) / len(batch))
    return 1 - sum(lengths) / slots


def _used_share(lengths, b):
    return 1 - _right(lengths, b)


def _one_too_few(lengths, b):
    return _right(lengths, max(1, b - 1))


def _strided(lengths, b):
    groups = math.ceil(len(lengths) / b)
    batches = [lengths[g::groups] for g in range(groups)]
    slots = sum(len(x) * max(x) for x in batches)
    return 1 - sum(lengths) / slots


_MISTAKES = [
    ("every batch is padded to the longest answer of ALL requests; each batch waits only for "
     "its own longest", _global_max),
    ("it sorts the requests by length before batching; batch them in arrival order, as they "
     "come", _sorted_first),
    ("the last, smaller batch is counted as full; rows that hold no request are not slots",
     _full_last_batch),
    ("it divides the wasted slots by the used ones; divide by all slots", _waste_over_used),
    ("it returns the number of wasted slots; return their share of all slots", _waste_count),
    ("each batch runs for its mean length; it runs until its longest answer is done",
     _mean_not_max),
    ("it returns the share of slots in use; return the share wasted", _used_share),
    ("its batches hold batch_size - 1 requests; they hold batch_size", _one_too_few),
    ("it deals requests out to batches in turn (0, k, 2k, ...); batches take consecutive "
     "arrivals", _strided),
]  # fmt: skip

_rng = random.Random(12)
_CASES = [
    ([_rng.randint(1, 60) for _ in range(23)], 4),
    ([_rng.choice([3, 5, 8, 120]) for _ in range(17)], 8),
    ([_rng.randint(10, 30) for _ in range(9)], 3),
]


def _call(fn, lengths, b):
    try:
        out = fn(list(lengths), b)
    except (NotImplementedError, CheckFailed):
        raise
    except (ValueError, ZeroDivisionError, TypeError, IndexError) as error:
        raise CheckFailed(
            f"padding_waste() raised {type(error).__name__} ({error}) on {len(lengths)} requests "
            f"in batches of {b}"
        ) from None
    if isinstance(out, bool) or not isinstance(out, numbers.Real) or not math.isfinite(out):
        raise CheckFailed(f"padding_waste() returned {out!r}; return a share (a float in [0, 1))")
    return float(out)


def _close(a, b):
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def check_waste(fn):
    answers = [_call(fn, *case) for case in _CASES]
    if all(_close(a, _right(*case)) for a, case in zip(answers, _CASES)):
        return f"right on {len(_CASES)} workloads"
    for description, wrong in _MISTAKES:
        if all(_close(a, wrong(*case)) for a, case in zip(answers, _CASES)):
            raise CheckFailed(description)
    got, case = next((a, c) for a, c in zip(answers, _CASES) if not _close(a, _right(*c)))
    raise CheckFailed(
        f"for lengths {case[0][:6]}... in batches of {case[1]}: got {got:.4f}, expected "
        f"{_right(*case):.4f}"
    )


def check_no_waste(fn):
    got = _call(fn, [7] * 10, 4)
    if not _close(got, 0.0):
        raise CheckFailed(f"when every answer has the same length nothing is wasted; got {got}")
    got = _call(fn, [5, 9, 2], 1)
    if not _close(got, 0.0):
        raise CheckFailed(f"batches of one waste nothing; got {got}")
    return "equal lengths and batches of one waste nothing"


def check_bad_batch_size(fn):
    try:
        fn([3, 4], 0)
    except ValueError:
        return "batch_size 0 raises ValueError"
    except NotImplementedError:
        raise
    except Exception as error:  # noqa: BLE001 - any other error is the wrong kind
        raise CheckFailed(
            f"batch_size 0 must raise ValueError, got {type(error).__name__}"
        ) from None
    raise CheckFailed("batch_size 0 must raise ValueError; it returned a value")


CHECKS = [
    ("waste share", check_waste),
    ("no waste", check_no_waste),
    ("bad batch_size", check_bad_batch_size),
]


def check_padding_waste(padding_waste):
    return run_checks(CHECKS, padding_waste, "padding_waste")

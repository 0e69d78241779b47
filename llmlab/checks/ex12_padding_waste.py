"""Checks for exercises/12_padding_waste.ipynb: the decode slots static batching wastes.

The learner writes padding_waste(lengths, batch_size) -> the share of decode slots (a row of the
batch for one step) that hold a request which has already finished, when requests are batched
statically in arrival order, batch_size at a time, and each batch runs until its longest answer
is done. The last batch may be smaller; rows that hold no request do not count. A slot is a row
for one step that makes a token, the prefill step that makes the first one included (the
engine's StepStats.padding_rows counts the same wasted rows over decode steps only; the task
says so). When an answer is off, the checks recompute it with each classic mistake and name the
one that matches. Shares are compared within 1e-6, which float32 arithmetic meets; every known
mistake is off by far more on some workload.
Then llmlab.checks.differential compares the learner's function with the reference in
exercises/solutions/ on the task's worked example, a boundary table (one row per rule the task
states) and generated inputs, shrunk to the smallest disagreement; the mistakes above name the
difference when exactly one of them gives the learner's answer on that input.
"""

import math
import random

from llmlab.checks import CheckFailed, as_number, crashed, one_line, run_checks
from llmlab.checks.differential import Differential, case, reference


def _batches(lengths, b):
    return [lengths[i : i + b] for i in range(0, len(lengths), b)]


def _right(lengths, b):
    slots = sum(len(x) * max(x) for x in _batches(lengths, b))
    return 0.0 if slots == 0 else 1 - sum(lengths) / slots


def _decode_steps_only(lengths, b):  # the engine's padding_rows over its decode rows
    slots = sum(len(x) * (max(x) - 1) for x in _batches(lengths, b))
    return 1 - sum(n - 1 for n in lengths) / slots


def _mean_of_batch_shares(lengths, b):
    shares = [1 - sum(x) / (len(x) * max(x)) for x in _batches(lengths, b)]
    return sum(shares) / len(shares)


def _last_batch_dropped(lengths, b):
    whole = len(lengths) // b * b
    return _right(lengths[:whole], b) if whole else 0.0


def _percent(lengths, b):
    return 100 * _right(lengths, b)


def _slice_one_short(lengths, b):
    batches = [lengths[i : i + b - 1] for i in range(0, len(lengths), b)]
    batches = [x for x in batches if x]
    return 1 - sum(map(sum, batches)) / sum(len(x) * max(x) for x in batches)


def _sorted_descending(lengths, b):
    return _right(sorted(lengths, reverse=True), b)


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


def _near_equal(lengths, b):  # numpy.array_split into ceil(n / b) batches of near-equal size
    groups = math.ceil(len(lengths) / b)
    size, extra = divmod(len(lengths), groups)
    batches, start = [], 0
    for g in range(groups):
        end = start + size + (1 if g < extra else 0)
        batches.append(lengths[start:end])
        start = end
    return 1 - sum(lengths) / sum(len(x) * max(x) for x in batches)


_MISTAKES = [
    ("every batch is padded to the longest answer of ALL requests; each batch waits only for "
     "its own longest", _global_max),
    ("it sorts the requests by length before batching; batch them in arrival order, as they "
     "come", _sorted_first),
    ("the last, smaller batch is counted as full; rows that hold no request are not slots",
     _full_last_batch),
    ("it divides the wasted slots by the used ones; divide by all slots", _waste_over_used),
    ("it returns the number of wasted slots; return their share of all slots", _waste_count),
    ("it finds no waste on any workload, as if each batch ran for its mean length (or an integer "
     "division, //, rounded the share to 0); a batch runs until its longest answer is done",
     _mean_not_max),
    ("it returns the share of slots in use; return the share wasted", _used_share),
    ("its batches hold batch_size - 1 requests; they hold batch_size", _one_too_few),
    ("it deals requests out to batches in turn (0, k, 2k, ...); batches take consecutive "
     "arrivals", _strided),
    ("it sorts the requests by length before batching; batch them in arrival order, as they "
     "come", _sorted_descending),
    ("it counts decode steps only, as the engine's padding_rows does; this exercise counts the "
     "step that makes the first token as a slot too (a batch has rows x longest slots)",
     _decode_steps_only),
    ("it averages each batch's waste share; divide all wasted slots by all slots (a longer "
     "batch has more slots and weighs more)", _mean_of_batch_shares),
    ("it leaves out the last, smaller batch; its rows waste slots too", _last_batch_dropped),
    ("it returns a percentage; return a share, a float in [0, 1)", _percent),
    ("each batch's slice is one request short (lengths[i:i + batch_size - 1]); a batch holds "
     "lengths[i:i + batch_size]", _slice_one_short),
    ("it splits the requests into batches of near-equal size (as numpy.array_split does); every "
     "batch but the last holds exactly batch_size requests, the last the remainder", _near_equal),
]  # fmt: skip

_rng = random.Random(12)
_CASES = [  # a smaller last batch (3 of 4, 1 of 8), whole batches, one batch wider than the list
    ([_rng.randint(1, 60) for _ in range(23)], 4),
    ([_rng.choice([3, 5, 8, 120]) for _ in range(17)], 8),
    ([_rng.randint(10, 30) for _ in range(9)], 3),
    ([5, 40, 12], 8),
]


def _works(fn, lengths, b):
    try:
        fn(list(lengths), b)
        return True
    except Exception:  # noqa: BLE001 - any error means: not on this input
        return False


def _crash_hint(fn, lengths, b):
    """Why the learner's code raised, found by retrying on simpler inputs; None if unknown."""
    if not lengths:
        if _works(fn, [4, 9, 2, 7], 2):
            return "it fails on an empty list: with no requests return 0.0"
        return None
    if len(lengths) % b and _works(fn, lengths[: len(lengths) // b * b] or lengths[:1], 1):
        whole = lengths[: len(lengths) // b * b]
        if whole and _works(fn, whole, b):
            return (
                "it works when the requests fill whole batches but not here: the last batch "
                f"may hold fewer than batch_size requests ({len(lengths) % b} of {b})"
            )
        if not whole:
            return f"it fails when batch_size ({b}) exceeds the {len(lengths)} requests"
    return None


def _call(fn, lengths, b):
    try:
        out = fn(list(lengths), b)
    except (NotImplementedError, CheckFailed):
        raise
    except Exception as error:  # noqa: BLE001 - say how it crashed, in one sentence
        hint = _crash_hint(fn, lengths, b)
        where = f"on {len(lengths)} requests in batches of {b}"
        raise crashed("padding_waste", error, hint or where) from None
    value = as_number(out)
    if not lengths and value is not None and not math.isfinite(value):
        raise CheckFailed(f"with no requests there are no slots: return 0.0, not {value} (0 / 0)")
    if value is None or not math.isfinite(value):
        raise CheckFailed(
            f"padding_waste() returned {str(out)[:60]} ({type(out).__name__}); return a share, "
            f"one float in [0, 1)"
        )
    return value


def _close(a, b):
    return abs(a - b) <= 1e-6


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
    got = _call(fn, [], 4)
    if got != 0:
        raise CheckFailed(f"with no requests the share is 0.0, got {got}")
    return "equal lengths, batches of one and no requests waste nothing"


def check_bad_batch_size(fn):
    for b in (0, -2):
        try:
            out = fn([3, 4, 8], b)
        except ValueError:
            continue
        except NotImplementedError:
            raise
        except Exception as error:  # noqa: BLE001 - any other error is the wrong kind
            raise CheckFailed(
                f"batch_size {b} must raise ValueError, got {type(error).__name__} "
                f"({one_line(error, 80)})"
            ) from None
        raise CheckFailed(
            f"batch_size {b} must raise ValueError; it returned {str(out)[:40]}"
            + (" (test batch_size < 1, not == 0)" if b < 0 else "")
        )
    return "batch_size 0 and -2 raise ValueError"


# ---- the learner's function against the reference (llmlab.checks.differential) -------------


def _named(c, got, expected):
    """The known mistake whose answer the learner's matches on this input (and the right one
    does not), or None; None too when two different mistakes give that answer here."""
    lengths, b = c.args
    value = as_number(got)
    if value is None or b < 1 or not lengths:
        return None
    found = set()
    for description, wrong in _MISTAKES:
        try:
            mistake = wrong(list(lengths), b)
        except (ZeroDivisionError, ValueError):
            continue
        if _close(value, mistake) and not _close(mistake, expected):
            found.add(description)
    return found.pop() if len(found) == 1 else None


def _names_batch_size(raised, expected):
    return isinstance(raised, ValueError) and "batch_size" in str(raised)


def _lengths(draw):
    return draw.list(lambda d: d.integer(1, 40), max_size=14, average=6)


def _generate(draw):
    lengths = _lengths(draw)
    b = draw.integer(-2, 0) if draw.boolean(0.08) else draw.integer(1, 7)
    return case(lengths, b)


DIFF = Differential(
    reference("12_padding_waste", "padding_waste"),
    examples=[case([3, 1, 2], 2)],  # the task's worked example: 2 of 8 slots wasted
    boundaries=[
        case([1, 9, 1, 9], 2).because("batches take the requests in arrival order"),
        case([1, 9, 5, 5], 2).because("each batch runs until its own longest answer is done"),
        case([9, 1, 1, 9, 1, 1, 1], 3).because(
            "every batch but the last holds batch_size requests"
        ),
        case([2, 2, 1, 5], 3).because(
            "the last batch may hold fewer than batch_size; rows without a request are not slots"
        ),
        case([5, 40, 12], 8).because("batch_size larger than the number of requests"),
        case([1, 2], 2).because("the step that makes the first token is a slot too"),
        case([5, 9, 2], 1).because("batches of one waste nothing"),
        case([7, 7, 7, 7, 7], 2).because("equal lengths waste nothing"),
        case([6], 3).because("a single request wastes nothing"),
        case([], 4).because("with no requests, return 0.0"),
        case([3, 4, 8], 0).because("a batch_size below 1 raises ValueError naming batch_size"),
        case([3, 4, 8], -2).because("a negative batch_size raises ValueError too"),
    ],
    generate=_generate,
    n_generated=150,
    seed=12,
    rtol=1e-6,
    atol=1e-6,  # the task allows 1e-6 of rounding (float32 is enough)
    diagnose=_named,
    same_error=_names_batch_size,
)
_examples, _boundaries, _generated = DIFF.checks()

CHECKS = [
    _examples,
    ("waste share", check_waste),
    ("no waste", check_no_waste),
    ("bad batch_size", check_bad_batch_size),
    _boundaries,
    _generated,
]


def check_padding_waste(padding_waste):
    return run_checks(CHECKS, padding_waste, "padding_waste")

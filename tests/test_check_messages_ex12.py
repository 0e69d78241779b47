"""Exercise 12's checks can fail, and say what is wrong in one sentence.

Each broken padding_waste below makes one classic mistake; the named check must FAIL with a
message naming it, while the reference solution and other correct ways of writing it (NumPy,
float32 torch, a step-by-step simulation of the batcher) pass.
"""

import math

import numpy as np
import pytest
import torch
from notebook_tools import assert_fails_with, load_solution

from llmlab.checks import PASS, TODO, run_checks
from llmlab.checks.ex12_padding_waste import CHECKS

solution = load_solution("12_padding_waste").padding_waste


def statuses(fn):
    results = run_checks(CHECKS, fn, "padding_waste").results
    return {r.name: (r.status, r.message) for r in results}


def batches(lengths, b):
    return [lengths[i : i + b] for i in range(0, len(lengths), b)]


def guarded(formula):
    def padding_waste(lengths, batch_size):
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        return formula(list(lengths), batch_size)

    return padding_waste


def numpy_version(lengths, batch_size):
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    x = np.asarray(lengths, dtype=np.float64)
    if x.size == 0:
        return 0.0
    pad = -len(x) % batch_size
    grid = np.concatenate([x, np.full(pad, np.nan)]).reshape(-1, batch_size)
    rows = (~np.isnan(grid)).sum(axis=1)
    slots = (rows * np.nanmax(grid, axis=1)).sum()
    return float(1 - x.sum() / slots)


def torch_float32(lengths, batch_size):
    """Padded to whole batches with zeros, in torch's default float32."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    if not lengths:
        return 0.0
    x = torch.tensor(lengths, dtype=torch.float32)
    x = torch.nn.functional.pad(x, (0, -len(lengths) % batch_size)).view(-1, batch_size)
    rows = (x > 0).sum(dim=1)
    slots = (rows * x.max(dim=1).values).sum()
    return 1 - x.sum() / slots  # a 0-d tensor


def simulate(lengths, batch_size):
    """Step by step: each step every row of the batch is a slot; count the idle ones."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    idle = total = 0
    queue = list(lengths)
    while queue:
        batch, queue = queue[:batch_size], queue[batch_size:]
        for step in range(1, max(batch) + 1):  # step 1 makes every first token
            total += len(batch)
            idle += sum(1 for n in batch if n < step)
    return idle / total if total else 0.0


def ceil_division(lengths, batch_size):
    if batch_size <= 0:
        raise ValueError("batch_size must be positive")
    n_batches = math.ceil(len(lengths) / batch_size)
    wasted = slots = 0
    for k in range(n_batches):
        batch = lengths[k * batch_size : (k + 1) * batch_size]
        slots += len(batch) * max(batch)
        wasted += sum(max(batch) - n for n in batch)
    return wasted / slots if slots else 0.0


CORRECT = {
    "solution": solution,
    "numpy": numpy_version,
    "torch float32": torch_float32,
    "simulation": simulate,
    "ceil division": ceil_division,
}


def decode_steps_only(ls, b):
    slots = sum(len(x) * (max(x) - 1) for x in batches(ls, b))
    return sum(max(x) - n for x in batches(ls, b) for n in x) / slots


def mean_of_batch_shares(ls, b):
    if not ls:
        return 0.0
    return float(np.mean([1 - sum(x) / (len(x) * max(x)) for x in batches(ls, b)]))


def whole_batches_only(ls, b):
    groups = [ls[i * b : (i + 1) * b] for i in range(len(ls) // b)]
    return 1 - sum(map(sum, groups)) / sum(len(x) * max(x) for x in groups) if groups else 0.0


def slice_one_short(ls, b):
    groups = [ls[i : i + b - 1] for i in range(0, len(ls), b)]
    return 1 - sum(map(sum, groups)) / sum(len(x) * max(x) for x in groups)


def strided(ls, b):
    k = math.ceil(len(ls) / b)
    groups = [ls[g::k] for g in range(k)]
    return 1 - sum(ls) / sum(len(x) * max(x) for x in groups)


def integer_division(ls, b):
    slots = sum(len(x) * max(x) for x in batches(ls, b))
    return (slots - sum(ls)) // slots


MISTAKES = [
    ("global max", lambda ls, b: 1 - sum(ls) / (len(ls) * max(ls)), "ALL requests"),
    ("sorted", lambda ls, b: solution(sorted(ls), b), "sorts"),
    ("full last batch", lambda ls, b: 1 - sum(ls) / sum(b * max(x) for x in batches(ls, b)),
     "counted as full"),
    ("over used", lambda ls, b: (sum(len(x) * max(x) for x in batches(ls, b)) - sum(ls))
     / sum(ls), "used ones"),
    ("a count", lambda ls, b: sum(len(x) * max(x) for x in batches(ls, b)) - sum(ls),
     "number of wasted"),
    ("used share", lambda ls, b: 1 - solution(ls, b), "in use"),
    ("b - 1", lambda ls, b: solution(ls, max(1, b - 1)), "batch_size - 1"),
    ("sorted longest first", lambda ls, b: solution(sorted(ls, reverse=True), b), "sorts"),
    ("strided", strided, "in turn"),
    ("decode steps only", decode_steps_only, "decode steps only"),
    ("mean of batch shares", mean_of_batch_shares, "averages each batch"),
    ("last batch dropped", whole_batches_only, "leaves out the last"),
    ("percent", lambda ls, b: 100 * solution(ls, b), "percentage"),
    ("slice one short", slice_one_short, "one request short"),
    ("integer division", integer_division, "integer division"),
]  # fmt: skip


def test_solution_passes():
    assert all(s == PASS for s, _ in statuses(solution).values())


def test_gallery_is_large_enough():
    assert len(MISTAKES) + 1 >= 15 and len(CORRECT) >= 3  # + mean length, below


@pytest.mark.parametrize("name", CORRECT)
def test_correct_variants_pass(name):
    result = statuses(CORRECT[name])
    assert all(s == PASS for s, _ in result.values()), result


@pytest.mark.parametrize("name, formula, words", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_mistake_is_named(name, formula, words):
    result = statuses(guarded(formula))
    assert_fails_with(result, "waste share", words)
    assert "expected" not in result["waste share"][1], "a known mistake is named, not described"


def test_mean_length_is_named():
    def mean_length(ls, b):
        slots = sum(len(x) * sum(x) / len(x) for x in batches(ls, b))
        return 1 - sum(ls) / slots

    assert_fails_with(statuses(guarded(mean_length)), "waste share", "longest answer is done")


def test_missing_validation_is_caught():
    def no_check(lengths, batch_size):
        return solution(lengths, max(batch_size, 1))

    assert_fails_with(statuses(no_check), "bad batch_size", "must raise ValueError")


def test_validation_of_zero_only_is_caught():
    def zero_only(lengths, batch_size):
        if batch_size == 0:
            raise ValueError("batch_size must not be 0")
        slots = sum(len(x) * max(x) for x in batches(lengths, abs(batch_size)))
        return 1 - sum(lengths) / slots if slots else 0.0

    assert_fails_with(statuses(zero_only), "bad batch_size", "batch_size < 1, not == 0")


def test_assert_instead_of_value_error_is_named():
    def asserts(lengths, batch_size):
        assert batch_size >= 1, "batch_size must be >= 1"
        return solution(lengths, batch_size)

    assert_fails_with(statuses(asserts), "bad batch_size", "got AssertionError")


def test_reshape_that_needs_whole_batches_is_explained():
    def reshapes(lengths, batch_size):
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        grid = np.array(lengths).reshape(-1, batch_size)  # needs whole batches
        return float(1 - grid.sum() / (grid.shape[1] * grid.max(axis=1)).sum())

    result = statuses(reshapes)
    assert_fails_with(result, "waste share", "last batch may hold fewer")
    assert "raised ValueError" in result["waste share"][1]


def test_nan_for_no_requests_is_named():
    def nan_when_empty(lengths, batch_size):
        return float("nan") if not lengths else solution(lengths, batch_size)

    assert_fails_with(statuses(nan_when_empty), "no waste", "with no requests there are no slots")


def test_empty_list_crash_is_explained():
    def no_empty_guard(lengths, batch_size):
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        slots = sum(len(x) * max(x) for x in batches(lengths, batch_size))
        return 1 - sum(lengths) / slots  # ZeroDivisionError with no requests

    assert_fails_with(statuses(no_empty_guard), "no waste", "with no requests return 0.0")


def test_stub_reports_todo():
    def stub(lengths, batch_size):
        raise NotImplementedError

    assert all(s == TODO for s, _ in statuses(stub).values())


# ---- mistakes of fresh learners (issue #24) that the first checks let through ----------------


def near_equal_batches(lengths, batch_size):
    """numpy.array_split into ceil(n / b) batches: sizes 3, 2, 2 where the task has 3, 3, 1."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not lengths:
        return 0.0
    groups = np.array_split(np.array(lengths), math.ceil(len(lengths) / batch_size))
    return float(1 - sum(lengths) / sum(len(g) * g.max() for g in groups))


def rounded_to_3_decimals(lengths, batch_size):
    return round(solution(lengths, batch_size), 3)


def sorts_in_place(lengths, batch_size):
    lengths.sort()  # the caller's list is now sorted too
    return solution(lengths, batch_size)


def range_refuses_zero(lengths, batch_size):
    """No test of batch_size: range() refuses a step of 0 with its own ValueError."""
    slots = sum(
        len(x) * max(x)
        for x in (lengths[i : i + batch_size] for i in range(0, len(lengths), batch_size))
    )
    return 0.0 if slots == 0 else 1 - sum(lengths) / slots


FRESH = [  # (learner's padding_waste, check that must FAIL, words its message must contain)
    (near_equal_batches, "boundary cases", "for lengths=[9, 1, 1, 9, 1, 1, 1] and batch_size=3"),
    (near_equal_batches, "boundary cases", "near-equal size"),
    (rounded_to_3_decimals, "boundary cases", "returned 0.444; the answer is 0.4444"),
    (rounded_to_3_decimals, "generated inputs", "the answer is"),
    (sorts_in_place, "worked examples", "changed its argument lengths"),
    (sorts_in_place, "generated inputs", "work on a copy"),
    (range_refuses_zero, "boundary cases", "it should raise ValueError (batch_size must be"),
]


@pytest.mark.parametrize("fn, check, words", FRESH, ids=[f"{f.__name__}-{c}" for f, c, _ in FRESH])
def test_fresh_mistake_fails_with_its_counterexample(fn, check, words):
    assert_fails_with(statuses(fn), check, words)


def test_a_counterexample_is_shrunk_to_a_few_requests():
    message = statuses(near_equal_batches)["generated inputs"][1]
    shown = message.split("lengths=")[1].split("]")[0]
    assert shown.count(",") < 8, message


def python_fractions(lengths, batch_size):
    """Correct too: exact fractions, the batches built from divmod."""
    from fractions import Fraction

    if batch_size < 1:
        raise ValueError(f"batch_size {batch_size} is below 1")
    full, rest = divmod(len(lengths), batch_size)
    sizes = [batch_size] * full + ([rest] if rest else [])
    slots, start = 0, 0
    for size in sizes:
        slots += size * max(lengths[start : start + size])
        start += size
    return Fraction(slots - sum(lengths), slots) if slots else 0.0


CORRECT["fractions"] = python_fractions

"""The differential harness (llmlab.checks.differential): what it accepts, rejects and says."""

import copy
import math
import random

import numpy as np
import pytest
import torch

from llmlab.checks import CheckFailed, run_checks
from llmlab.checks.differential import (
    Case,
    Differential,
    Draw,
    case,
    changed,
    differs,
    reference,
    show,
)


def waste(lengths, batch_size):
    """A small reference with a stated error, an empty case and float results."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    slots = sum(len(lengths[i : i + batch_size]) * max(lengths[i : i + batch_size])
                for i in range(0, len(lengths), batch_size))  # fmt: skip
    return 0.0 if slots == 0 else 1 - sum(lengths) / slots


def generate(draw):
    return case(draw.list(lambda d: d.integer(1, 20), max_size=12), draw.integer(1, 6))


DIFF = Differential(
    waste,
    examples=[case([3, 1, 2], 2)],
    boundaries=[
        case([], 4).because("no requests waste nothing"),
        case([5], 0).because("batch_size must be >= 1"),
    ],  # fmt: skip
    generate=generate,
)


def message(check, fn):
    with pytest.raises(CheckFailed) as failure:
        check(fn)
    return str(failure.value)


def test_the_reference_is_the_solution_file():
    attention = reference("01_attention", "attention")
    q = torch.randn(2, 3, 4)
    out, weights = attention(q, q, q)
    assert out.shape == (2, 3, 4) and torch.allclose(weights.sum(-1), torch.ones(2, 3))
    assert reference("01_attention", "attention") is attention  # loaded once


def test_the_reference_passes_and_says_what_it_checked():
    assert "1 worked example" in DIFF.check_examples(waste)
    assert "2 boundary cases" in DIFF.check_boundaries(waste)
    assert "100 generated inputs" in DIFF.check_generated(waste)


def test_equivalent_right_answers_pass():
    def numpy_float32(lengths, batch_size):
        if batch_size < 1:
            raise ValueError("batch_size")
        lengths = np.asarray(lengths, dtype=np.float32)
        if lengths.size == 0:
            return np.float32(0)
        batches = [lengths[i : i + batch_size] for i in range(0, len(lengths), batch_size)]
        slots = np.float32(sum(len(b) * b.max() for b in batches))
        return np.float32(1) - lengths.sum() / slots  # a NumPy float32 scalar

    for check in (DIFF.check_examples, DIFF.check_boundaries, DIFF.check_generated):
        check(numpy_float32)


def test_a_wrong_value_shows_the_smallest_input_and_both_results():
    def near_equal_batches(lengths, batch_size):  # splits into near-equal batches
        if batch_size < 1:
            raise ValueError("batch_size")
        if not lengths:
            return 0.0
        n = math.ceil(len(lengths) / batch_size)
        sizes = [len(lengths) // n + (j < len(lengths) % n) for j in range(n)]
        slots, i = 0, 0
        for s in sizes:
            slots += s * max(lengths[i : i + s])
            i += s
        return 1 - sum(lengths) / slots

    text = message(DIFF.check_generated, near_equal_batches)
    assert text.startswith("for lengths=[") and " and batch_size=" in text
    assert "your waste() returned " in text and "; the answer is " in text
    lengths = eval(text.split("lengths=")[1].split(" and ")[0])
    assert len(lengths) <= 5, f"not shrunk: {text}"  # the smallest kind: 3 items in 2 batches


def test_shrinking_finds_the_smallest_counterexample():
    def wrong_above_7(lengths, batch_size):
        return -1.0 if any(n > 7 for n in lengths) else waste(lengths, batch_size)

    text = message(DIFF.check_generated, wrong_above_7)
    assert text.startswith("for lengths=[8] and batch_size=1 "), text


def test_a_crash_says_the_code_raised_with_the_input():
    def no_empty_guard(lengths, batch_size):
        return 1 - sum(lengths) / (len(lengths) * max(lengths))

    text = message(DIFF.check_boundaries, no_empty_guard)
    assert text == (
        "for lengths=[] and batch_size=4 (no requests waste nothing) your waste() raised "
        "ValueError (max() arg is an empty sequence); the answer is 0.0"
    )


def test_a_stated_error_must_be_raised_and_be_of_the_right_kind():
    def no_check(lengths, batch_size):
        return waste(lengths, max(batch_size, 1))

    def wrong_kind(lengths, batch_size):
        if batch_size < 1:
            raise TypeError("batch_size")
        return waste(lengths, batch_size)

    assert "returned 0.0; it should raise ValueError (batch_size must be >= 1, got 0)" in (
        message(DIFF.check_boundaries, no_check)
    )
    assert "raised TypeError (batch_size); it should raise ValueError" in (
        message(DIFF.check_boundaries, wrong_kind)
    )


def test_a_changed_input_fails_with_a_sentence():
    def sorts_in_place(lengths, batch_size):
        lengths.sort()
        return waste(lengths, batch_size)

    def caps_in_place(lengths, batch_size):
        for i, n in enumerate(lengths):
            lengths[i] = min(n, 5)
        return waste(lengths, batch_size)

    text = message(DIFF.check_generated, sorts_in_place)
    assert text == (
        "for lengths=[2, 1] and batch_size=1 your waste() changed its argument lengths (lengths "
        "was reordered); the caller's data must stay as it was: work on a copy"
    )
    text = message(DIFF.check_generated, caps_in_place)
    assert "your waste() changed its argument lengths (lengths[0] changed from 6 to 5)" in text


def test_a_model_cast_or_changed_by_the_learner_is_caught():
    model = torch.nn.Linear(3, 2)

    def apply(model, x):
        return model(x)

    def casts(model, x):  # "for speed"
        model.to(torch.bfloat16)
        return model(x.bfloat16()).float()

    def adds(model, x):
        with torch.no_grad():
            model.weight.add_(1e-3)
        return apply(model, x)

    diff = Differential(apply, examples=[case(model, torch.ones(1, 3))])
    assert "(model's weight is now torch.bfloat16 (it was torch.float32))" in message(
        diff.check_examples, casts
    )
    assert "(model's weights changed (weight))" in message(diff.check_examples, adds)
    # The reference ran on a pristine copy: the caller's model is as it was.
    assert model.weight.dtype == torch.float32


def test_changed_names_dtype_device_and_values():
    t = torch.zeros(2)
    assert changed(t, t.double(), "x") == "x's dtype changed from torch.float32 to torch.float64"
    assert changed(t, t + 1, "x") == "x's values changed"
    assert changed(torch.tensor([math.nan]), torch.tensor([math.nan]), "x") is None
    m = torch.nn.Linear(2, 2)
    assert "is now torch.bfloat16" in changed(m, copy.deepcopy(m).to(torch.bfloat16), "model")
    assert changed({"a": [1, 2]}, {"a": [1, 3]}, "d") == "d['a'][1] changed from 2 to 3"
    assert changed(np.arange(3.0), np.arange(3.0), "a") is None


def test_differs_compares_numbers_tensors_and_containers_within_float32_tolerance():
    assert differs(np.float32(1 / 3), 1 / 3) is None
    assert differs(torch.tensor(0.5), 0.5) is None
    assert differs((1, [2.0]), [1, (2.0,)]) is None
    assert differs(0.501, 0.5) is not None
    assert differs(None, 0.0) is not None and differs(0.0, None) is not None
    assert differs({"a": 1.0}, {"a": 1.0, "b": None}).note.startswith("has the keys")
    a = torch.randn(3, 4, dtype=torch.float64)
    assert differs(a.float(), a) is None
    b = a.clone()
    b[1, 2] += 0.1
    found = differs(b, a)
    assert found.where == "[1, 2]" and found.got == pytest.approx(a[1, 2].item() + 0.1)
    assert differs(a[:2], a).note == "has shape (2, 4)"
    assert differs(torch.tensor([math.nan]), torch.tensor([math.nan])) is None


def test_the_stub_is_todo_not_fail():
    def stub(lengths, batch_size):
        raise NotImplementedError

    report = run_checks(DIFF.checks(), stub, "waste")
    assert [r.status for r in report.results] == ["TODO"] * 3


def test_the_named_mistake_follows_the_counterexample():
    def doubled(lengths, batch_size):
        return 2 * waste(lengths, batch_size)

    diff = Differential(
        waste,
        generate=generate,
        diagnose=lambda c, got, expected: "it is twice the answer" if got == 2 * expected else None,
    )
    text = message(diff.check_generated, doubled)
    assert text.endswith("; it is twice the answer") and text.startswith("for lengths=")


def test_generation_is_seeded_and_replay_is_exact():
    a, b = Draw(rng=random.Random(3)), Draw(rng=random.Random(3))
    assert generate(a).args == generate(b).args
    replayed = Draw(prefix=a.choices)
    assert (
        generate(replayed).args
        == generate(Draw(prefix=a.choices)).args
        == generate(Draw(rng=random.Random(3))).args
    )
    # Shorter or out-of-range prefixes still give values inside the stated domain.
    c = generate(Draw(prefix=[1, 99, 99]))
    assert all(1 <= n <= 20 for n in c.args[0]) and 1 <= c.args[1] <= 6


def test_show_reads_like_python():
    assert show([1, 1, 10]) == "[1, 1, 10]"
    assert show(0.58712) == "0.5871" and show(2.0) == "2.0" and show(None) == "None"
    assert show(torch.zeros(2, 3, 4)) == "a float32 tensor of shape (2, 3, 4)"
    assert show({"ttft": 0.25}) == "{'ttft': 0.25}"
    assert isinstance(Case(), Case)


def test_ints_are_shown_whole_and_float32_values_in_float32_digits():
    def count(n):
        return 2**31 * n

    diff = Differential(count, examples=[case(5)])
    text = message(diff.check_examples, lambda n: 2**30 * n)
    assert text == "for n=5 your count() returned 5368709120; the answer is 10737418240"
    assert (
        show(torch.tensor([-2.54, 0.1]), exact=True)
        == "a float32 tensor of shape (2,) [-2.54, 0.1]"
    )


def test_diagnose_may_ask_for_the_learners_function():
    seen = []

    def named(c, got, expected, function):
        seen.append(function)
        return "named"

    diff = Differential(waste, examples=[case([1, 2], 2)], diagnose=named)

    def wrong(lengths, batch_size):
        return 0.0

    assert message(diff.check_examples, wrong).endswith("; named") and seen == [wrong]

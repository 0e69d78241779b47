"""llmlab.verdict: every sentence the book says about a timing is decided by the data.

Each helper is shown every outcome, a tie inside the band, and bad input; holds() agrees with
every verdict the helpers make (a property over random values) and disagrees with a wrong one.
"""

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmlab import verdict as v

positive = st.floats(1e-6, 1e6, allow_nan=False)
ties = st.floats(0.0, 0.5)


@pytest.mark.parametrize(
    "a_s, b_s, kind, words",
    [
        (1.0, 2.3, "faster", "A is 2.3 times as fast as B"),
        (1.8, 1.0, "slower", "A takes 1.8 times as long as B"),
        (1.0, 1.04, "tie", "A and B take the same time within this machine's noise (5%)"),
        (1.04, 1.0, "tie", "same time"),
    ],
)
def test_compare_times_every_outcome(a_s, b_s, kind, words):
    out = v.compare_times(a_s, b_s, tie=0.05, a="A", b="B")
    assert out.kind == kind and words in out.text and out.holds()


@pytest.mark.parametrize(
    "measured, floor, kind, words",
    [(2.0, 1.0, "above", "2.0 times its floor"), (1.02, 1.0, "at", "at its floor"),
     (0.5, 1.0, "below", "which a floor cannot be")],
)  # fmt: skip
def test_floor_check_every_outcome(measured, floor, kind, words):
    out = v.floor_check(measured, floor, tie=0.05)
    assert out.kind == kind and words in out.text and out.holds()


@pytest.mark.parametrize(
    "ys, kind, words",
    [
        ([100, 150, 400], "rises", "tokens/s climbs from 100 to 400"),
        ([400, 150, 100], "falls", "tokens/s falls from 400 to 100"),
        ([100, 103, 101], "flat", "stays within this machine's noise (5%): 100 to 103"),
        ([115, 113, 159, 157, 117], "mixed", "goes up and down between 113 and 159"),
        ([100, 98, 150], "rises", "climbs"),  # a dip inside the noise does not break a rise
    ],
)
def test_trend_every_outcome(ys, kind, words):
    out = v.trend(ys, tie=0.05, what="tokens/s")
    assert out.kind == kind and words in out.text and out.holds()


def test_line_through_origin_straight_and_curved():
    straight = v.line_through_origin([1, 2, 3, 4], [1.01, 2.0, 2.98, 4.03], tie=0.05)
    assert straight.kind == "straight" and straight.holds()
    assert straight.values["slope"] == pytest.approx(1.0, rel=0.02)
    curved = v.line_through_origin([1, 2, 3, 4], [4.6, 3.6, 2.5, 1.65], tie=0.05)
    assert curved.kind == "curved" and "farthest point" in curved.text and curved.holds()


@pytest.mark.parametrize(
    "options, higher, kind, choice",
    [
        ({"8": 20.0, "16": 30.0, "32": 24.0}, True, "clear", "16"),
        ({"8": 20.0, "16": 35.01, "32": 35.02}, True, "tie", "16"),  # a 0.01 req/s tie
        ({"a": 3.0, "b": 1.0}, False, "clear", "b"),
    ],
)
def test_best_every_outcome_and_the_rule_breaks_ties(options, higher, kind, choice):
    out = v.best(options, tie=0.05, higher_is_better=higher, rule="the smallest limit")
    assert (out.kind, out.values["choice"]) == (kind, choice) and out.holds()
    if kind == "tie":
        assert "16 and 32 tie" in out.text and "the smallest limit is chosen: 16" in out.text


def test_first_at_least_found_and_none():
    found = v.first_at_least([1, 4, 16, 64], [1.0, 1.2, 2.5, 7.0], 2.0)
    assert (found.kind, found.text) == ("found", "16") and found.holds()
    none = v.first_at_least([1, 4, 16, 64], [1.0, 1.2, 1.5, 1.9], 2.0)
    assert (none.kind, none.text) == ("none", "none up to 64") and none.holds()


def test_holds_catches_a_verdict_that_contradicts_its_numbers():
    """The check can fail: the same numbers with the wrong word."""
    cases = [
        v.compare_times(1.0, 2.0, tie=0.05, a="A", b="B"),
        v.trend([1, 2, 3], tie=0.05, what="x"),
        v.floor_check(2.0, 1.0, tie=0.05),
        v.line_through_origin([1, 2, 3], [1, 2, 3], tie=0.05),
        v.best({"a": 1.0, "b": 2.0}, tie=0.05),
        v.first_at_least([1, 2], [1, 3], 2),
    ]
    wrong = {"faster": "slower", "rises": "flat", "above": "below", "straight": "curved",
             "clear": "tie", "found": "none"}  # fmt: skip
    for right in cases:
        assert right.holds()
        assert not dataclasses.replace(right, kind=wrong[right.kind]).holds(), right


def test_every_verdict_is_recorded():
    before = len(v.RECORDED)
    made = v.compare_times(1.0, 1.0, tie=0.05, a="A", b="B")
    assert v.RECORDED[before:] == [made]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: v.compare_times(0, 1, tie=0.05, a="A", b="B"), "positive numbers"),
        (lambda: v.compare_times(1, 1, tie=-0.1, a="A", b="B"), "tie must be a relative band"),
        (lambda: v.trend([1.0], tie=0.05, what="x"), "at least two points"),
        (lambda: v.line_through_origin([1, 2], [1], tie=0.05), "equally long"),
        (lambda: v.best({"a": 1.0}, tie=0.05), "at least two"),
        (lambda: v.first_at_least([], [], 1), "non-empty"),
    ],
)
def test_bad_input_is_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@given(st.lists(positive, min_size=2, max_size=8), ties)
def test_every_helper_agrees_with_itself_on_any_values(ys, tie):
    xs = [float(i + 1) for i in range(len(ys))]
    made = [
        v.compare_times(ys[0], ys[1], tie=tie, a="A", b="B"),
        v.floor_check(ys[0], ys[1], tie=tie),
        v.trend(ys, tie=tie, what="y"),
        v.line_through_origin(xs, ys, tie=tie),
        v.best({str(i): y for i, y in enumerate(ys)}, tie=tie),
        v.first_at_least(xs, ys, ys[-1]),
    ]
    for verdict in made:
        assert verdict.holds(), verdict
        assert verdict.text and "  " not in verdict.text

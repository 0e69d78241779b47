"""Comparisons that resolve or say they did not: paired ratios with an interval (llmlab.measure
Ratio, Comparison, compare) and the verdicts built on them (llmlab.verdict compare_ratio,
fastest, best_of_samples, trend_of, steady). Every outcome is reached, and holds() is shown
failing when the word is swapped."""

import dataclasses
import math
import time

import pytest

from llmlab import verdict as say
from llmlab.measure import (
    Comparison,
    Ratio,
    Timing,
    compare,
    cpu_load,
    ratio_of_samples,
    use_free_cores,
)


def comparison(rounds: dict) -> Comparison:
    return Comparison({n: Timing(tuple(r)) for n, r in rounds.items()}, rounds)


def test_interval_is_order_statistics_and_needs_six_rounds_for_95_percent():
    five = Ratio("a", "b", (1.5, 1.6, 1.4, 1.55, 1.45))
    assert five.interval == (0.0, math.inf) and not five.resolved()
    six = Ratio("a", "b", (1.5, 1.6, 1.4, 1.55, 1.45, 1.52))
    assert six.interval == (1.4, 1.6) and six.resolved()
    # 20 rounds: the 6th smallest and 6th largest (binomial(20, 1/2): P(X <= 5) = 2.1%)
    r = Ratio("a", "b", tuple(float(i) for i in range(1, 21)))
    assert r.interval == (6.0, 15.0)


def test_a_wide_noise_band_calls_a_tie_where_the_paired_interval_resolves():
    # Each round the machine's load changes (x1 to x2.2), but b always takes 1.5x as long as a:
    # the spread of single runs is large, the paired ratio is tight.
    load = [1.0, 2.2, 1.3, 2.0, 1.1, 2.1, 1.4, 1.9]
    a = [0.010 * x for x in load]
    b = [0.015 * x * (1 + 0.01 * (i % 3)) for i, x in enumerate(load)]
    noise = max(Timing(tuple(a)).noise, Timing(tuple(b)).noise)
    assert noise > 0.5
    old = say.compare_times(min(a), min(b), tie=noise, a="a", b="b")
    assert old.kind == "tie"  # the old rule: 1.5x is "the same time" within a 50%+ band
    new = say.compare_ratio(comparison({"a": a, "b": b}).ratio("a", "b"), tie=0.05, a="a", b="b")
    assert new.kind == "faster" and new.holds()
    assert "1.5 times as fast" in new.text and "interval" in new.text


@pytest.mark.parametrize(
    "ratios, kind, words",
    [
        ((2.0, 2.1, 1.9, 2.05, 1.95, 2.02), "faster", "times as fast as"),
        ((0.5, 0.52, 0.48, 0.51, 0.49, 0.5), "slower", "times as long as"),
        ((1.0, 1.01, 0.99, 1.02, 0.98, 1.0), "tie", "within 5% of each other"),
        ((0.9, 1.3, 1.0, 1.2, 1.1, 1.05), "unresolved", "not resolved on this run"),
        ((2.0, 2.1, 1.9), "unresolved", "too few"),
    ],
)
def test_compare_ratio_reaches_every_outcome(ratios, kind, words):
    v = say.compare_ratio(Ratio("a", "b", ratios), tie=0.05, a="A", b="B")
    assert v.kind == kind and words in v.text and v.holds()


def test_a_slower_verdict_gives_its_interval_the_way_the_sentence_reads():
    v = say.compare_ratio(Ratio("a", "b", (0.5, 0.4, 0.5, 0.5, 0.25, 0.5)), a="A", b="B")
    assert v.kind == "slower" and "A takes 2.0 times as long as B" in v.text
    assert "interval 2.00-4.00" in v.text, v.text


def test_compare_ratio_holds_fails_when_the_word_is_swapped():
    v = say.compare_ratio(Ratio("a", "b", (2.0,) * 6), tie=0.05, a="A", b="B")
    for wrong in ("slower", "tie", "unresolved"):
        assert not dataclasses.replace(v, kind=wrong).holds()


def test_fastest_names_the_set_that_cannot_be_told_apart_and_chooses_nothing():
    rounds = {
        "1": [4.5, 3.0, 4.0, 3.2, 4.4, 3.1],  # noisy, overlaps "16"
        "16": [3.1, 3.3, 3.0, 3.9, 3.05, 3.6],
        "64": [6.0, 6.1, 6.2, 5.9, 6.0, 6.3],  # resolved slower
    }
    v = say.fastest(comparison(rounds), tie=0.05)
    assert v.kind == "set" and v.values["set"][0] == "16" and set(v.values["set"]) == {"1", "16"}
    assert "cannot be told apart" in v.text and v.holds()
    assert not dataclasses.replace(v, kind="clear").holds()
    clear = say.fastest(comparison({"x": [1.0] * 6, "y": [2.0, 2.1, 2.2, 1.9, 2.0, 2.1]}))
    assert clear.kind == "clear" and clear.text.startswith("x is the fastest") and clear.holds()


def test_best_of_samples_clear_and_set():
    clear = say.best_of_samples({"8": [100, 102, 98, 101], "32": [150, 149, 152, 151]})
    assert clear.kind == "clear" and clear.values["leader"] == "32" and clear.holds()
    tied = say.best_of_samples({"8": [100, 130, 90, 120], "32": [110, 95, 125, 105]})
    assert tied.kind == "set" and set(tied.values["set"]) == {"8", "32"} and tied.holds()
    lower = say.best_of_samples({"a": [1, 1.1, 0.9], "b": [2, 2.1, 1.9]}, higher_is_better=False)
    assert lower.values["leader"] == "a" and lower.kind == "clear"


def test_trend_of_every_outcome():
    base = [1.0, 1.01, 0.99, 1.0, 1.02, 0.98]
    up = {str(i): [x * (1 + 0.5 * i) for x in base] for i in range(4)}
    assert say.trend_of(comparison(up), list(up), what="t").kind == "rises"
    down = {k: v for k, v in zip(up, reversed(list(up.values())))}
    assert say.trend_of(comparison(down), list(down), what="t").kind == "falls"
    flat = {str(i): [x * (1 + 0.001 * i) for x in base] for i in range(3)}
    v = say.trend_of(comparison(flat), list(flat), what="t")
    assert v.kind == "flat" and v.holds()
    mixed = {"0": base, "1": [2 * x for x in base], "2": [1.05 * x for x in base]}
    assert say.trend_of(comparison(mixed), ["0", "1", "2"], what="t").kind == "mixed"
    noisy = {"0": base, "1": [x * y for x, y in zip(base, [0.9, 1.3, 1.0, 1.2, 1.1, 1.05])]}
    v = say.trend_of(comparison(noisy), ["0", "1"], what="t")
    assert v.kind == "unresolved" and v.holds()
    assert not dataclasses.replace(v, kind="rises").holds()


def test_steady_passes_a_flat_run_and_catches_a_growing_queue():
    flat = [0.050 + 0.01 * ((7 * i) % 5) for i in range(60)]
    v = say.steady(flat)
    assert v.kind == "steady" and v.holds()
    growing = [0.05 + 0.01 * i for i in range(60)]  # each request waits longer: utilisation >= 1
    g = say.steady(growing)
    assert g.kind == "growing" and "never reached a steady state" in g.text and g.holds()
    assert not dataclasses.replace(g, kind="steady").holds()
    with pytest.raises(ValueError, match="at least 8"):
        say.steady([0.1] * 5)


def test_bootstrap_ratio_is_the_same_on_every_run():
    a, b = [1, 1.2, 0.9, 1.1, 1.05], [2, 2.2, 1.9, 2.3, 2.1]
    assert ratio_of_samples(a, b).interval == ratio_of_samples(a, b).interval
    with pytest.raises(ValueError, match="a_samples"):
        ratio_of_samples([1], b)
    with pytest.raises(ValueError, match="b_samples"):
        ratio_of_samples(a, [1, -2])


def test_compare_keeps_going_until_resolved_and_gives_short_arms_their_own_samples():
    c = compare(
        {"short": lambda: time.sleep(0.001), "long": lambda: time.sleep(0.02)},
        device="cpu", budget_s=3.0,
    )  # fmt: skip
    assert len(c.rounds["short"]) == len(c.rounds["long"]) >= 6
    assert len(c["short"].times_s) >= 5 * len(c["long"].times_s)  # several calls per round
    v = say.compare_ratio(c.ratio("short", "long"), a="short", b="long")
    assert v.kind == "faster" and v.holds()


def test_compare_validates_its_arguments():
    fns = {"a": lambda: None, "b": lambda: None}
    with pytest.raises(ValueError, match="tie"):
        compare(fns, tie=1.5)
    with pytest.raises(ValueError, match="pairs"):
        compare(fns, pairs=[("a", "c")])
    with pytest.raises(ValueError, match="max_rounds"):
        compare(fns, min_rounds=10, max_rounds=5)
    with pytest.raises(KeyError, match="paired names"):
        compare(fns, repeat=6).ratio("a", "zzz")


def test_a_name_timed_again_alone_leaves_the_pairing():
    c = comparison({"a": [1.0] * 6, "b": [2.0] * 6})
    c["b"] = Timing((1.0,))
    with pytest.raises(KeyError):
        c.ratio("a", "b")


def test_use_free_cores_picks_at_least_one_thread_and_says_when_busy():
    import torch

    before = torch.get_num_threads()
    try:
        choice = use_free_cores(0.05)
        assert 1 <= choice.threads <= choice.cores and torch.get_num_threads() == choice.threads
        assert ("was quiet" in str(choice)) != choice.machine_busy
    finally:
        torch.set_num_threads(before)
    busy, cores = cpu_load(0.05)
    assert 0 <= busy <= (cores or 1) + 64 and cores >= 1
    with pytest.raises(ValueError, match="seconds"):
        use_free_cores(0)

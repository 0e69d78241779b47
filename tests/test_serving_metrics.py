"""llmlab.serving_metrics: percentiles, TTFT/TPOT, goodput and load, against hand-computed values
and a real (fake-clock) engine run."""

import math

import numpy as np
import pytest

from llmlab import GPTConfig, TinyGPT
from llmlab.serve import Engine, Request
from llmlab.serving_metrics import (
    end_to_end,
    goodput,
    highest_passing,
    long_tail_workload,
    make_requests,
    nearest_rank_percentile,
    percentile,
    poisson_arrivals,
    queueing,
    summarize,
    tpot,
    ttft,
)


def timeline(arrival, start, times, error=None):
    return {"arrival": arrival, "prefill_start": start, "token_times": times, "error": error}


@pytest.mark.parametrize("q", [0, 5, 25, 50, 90, 95, 99, 100])
def test_percentile_matches_numpy_linear(q):
    values = [3.0, 1.0, 4.0, 1.5, 9.0, 2.6, 5.0]
    assert percentile(values, q) == pytest.approx(np.percentile(values, q))


def test_percentile_hand_values_and_single_value():
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile(list(range(1, 21)), 95) == pytest.approx(19.05)
    assert nearest_rank_percentile(list(range(1, 21)), 95) == 19
    assert nearest_rank_percentile([1, 2, 3, 4], 50) == 2
    assert percentile([7.0], 95) == 7.0 == nearest_rank_percentile([7.0], 95)


@pytest.mark.parametrize(
    "values, q, error, words",
    [
        ([], 50, ValueError, "empty"),
        ([1.0], 101, ValueError, "[0, 100]"),
        ([1.0], -1, ValueError, "[0, 100]"),
        ([1.0, float("nan")], 50, ValueError, "finite"),
        ("123", 50, TypeError, "sequence"),
        ([1.0], "50", TypeError, "q must be a number"),
    ],
)
def test_percentile_rejects_bad_input(values, q, error, words):
    with pytest.raises(error, match=None) as info:
        percentile(values, q)
    assert words in str(info.value)


def test_one_request_metrics():
    r = timeline(1.0, 1.5, [2.0, 2.25, 2.5, 3.0])
    assert ttft(r) == 1.0  # from arrival, not from prefill start
    assert queueing(r) == 0.5
    assert tpot(r) == pytest.approx(1.0 / 3)  # n - 1 gaps
    assert end_to_end(r) == pytest.approx(ttft(r) + tpot(r) * 3)
    one = timeline(0.0, 0.0, [0.4])
    assert tpot(one) is None and ttft(one) == 0.4
    assert ttft(timeline(0.0, None, [])) is None


def test_summarize_skips_failures_and_one_token_tpot():
    runs = [
        timeline(0.0, 0.0, [1.0, 2.0, 3.0]),  # ttft 1, tpot 1
        timeline(1.0, 2.0, [4.0]),  # ttft 3, no tpot
        timeline(2.0, None, [], error="prompt is empty"),
    ]
    s = summarize(runs)
    assert (s.requests, s.completed, s.failed) == (3, 2, 1)
    assert s.ttft_p50 == 2.0 and s.tpot_p50 == 1.0
    assert s.duration == 4.0 and s.tokens_per_s == 1.0
    empty = summarize([])
    assert empty.completed == 0 and math.isnan(empty.ttft_p95)


def test_goodput_counts_only_requests_meeting_the_slo():
    runs = [
        timeline(0.0, 0.0, [0.5, 1.0]),  # ttft 0.5, tpot 0.5
        timeline(0.0, 0.5, [2.0, 2.1]),  # ttft 2.0: misses a 1 s TTFT SLO
        timeline(1.0, 1.0, [1.2, 4.0]),  # tpot 2.8: misses a 1 s TPOT SLO
        timeline(3.0, None, [], error="too long"),
    ]
    assert goodput(runs, ttft_slo=1.0, duration=4.0) == 2 / 4
    assert goodput(runs, ttft_slo=1.0, tpot_slo=1.0, duration=4.0) == 1 / 4
    assert goodput(runs, ttft_slo=10.0) == 3 / 4.0  # duration from the run: 0 to 4
    with pytest.raises(ValueError, match="ttft_slo"):
        goodput(runs, ttft_slo=0)


def test_highest_passing_needs_every_smaller_rate_to_pass():
    assert highest_passing([1, 2, 3, 4], [0.1, 0.2, 0.5, 0.3], 0.4) == 2
    assert highest_passing([4, 1, 3, 2], [0.3, 0.1, 0.2, 0.2], 0.4) == 4
    assert highest_passing([1, 2], [0.5, 0.1], 0.4) is None
    assert highest_passing([1, 2], [0.1, float("nan")], 0.4) == 1
    with pytest.raises(ValueError, match="same length"):
        highest_passing([1, 2], [0.1], 0.4)


def test_poisson_arrivals_rate_and_seed():
    times = poisson_arrivals(50.0, 4000, seed=3)
    assert times == sorted(times) and times == poisson_arrivals(50.0, 4000, seed=3)
    gaps = np.diff([0.0, *times])
    assert gaps.mean() == pytest.approx(1 / 50, rel=0.05)
    assert gaps.std() == pytest.approx(1 / 50, rel=0.1)  # exponential: std = mean
    with pytest.raises(ValueError, match="rate"):
        poisson_arrivals(0, 3)


def test_make_requests_lengths_prefix_and_errors():
    reqs = make_requests(30, 50, (3, 6), (2, 4), arrivals=[0.1 * i for i in range(30)],
                         shared_prefix=[9, 9], seed=1)  # fmt: skip
    assert all(r.prompt[:2] == [9, 9] and 5 <= len(r.prompt) <= 8 for r in reqs)
    assert {r.max_new_tokens for r in reqs} == {2, 3, 4}
    assert reqs[3].arrival == pytest.approx(0.3)
    with pytest.raises(ValueError, match="prompt_len"):
        make_requests(2, 50, (0, 3), (1, 2))
    with pytest.raises(ValueError, match="arrivals"):
        make_requests(2, 50, (1, 3), (1, 2), arrivals=[0.0])


def test_long_tail_workload_puts_one_long_answer_in_every_few():
    reqs = long_tail_workload(64, n=12, long_every=4, long_tokens=100, seed=3)
    answers = [r.max_new_tokens for r in reqs]
    assert answers[::4] == [100, 100, 100]
    assert all(8 <= a <= 24 for i, a in enumerate(answers) if i % 4)
    assert all(16 <= len(r.prompt) <= 32 and max(r.prompt) < 64 for r in reqs)
    assert [r.prompt for r in reqs] == [r.prompt for r in long_tail_workload(64, 12, 4, 100, 3)]
    for bad in (0, True, 2.0):
        with pytest.raises(ValueError, match="long_every"):
            long_tail_workload(64, long_every=bad)
    with pytest.raises(ValueError, match="long_tokens"):
        long_tail_workload(64, long_tokens=0)


def test_metrics_on_a_real_engine_run_with_a_fake_clock():
    model = TinyGPT(GPTConfig(vocab_size=32, block_size=64, n_layer=1, n_head=2, n_embd=16)).eval()
    engine = Engine(model, max_batch_size=2, step_clock=lambda decode, prefill: 1.0)
    requests = [Request([1, 2, 3], 3, arrival=0.0) for _ in range(3)]
    results = engine.run(requests)
    # Two run at once (steps end at 1, 2, 3); the third waits for a free slot.
    assert [ttft(r) for r in results] == [1.0, 1.0, 4.0]
    assert [queueing(r) for r in results] == [0.0, 0.0, 3.0]
    assert all(tpot(r) == 1.0 for r in results)
    s = summarize(results)
    assert s.ttft_p50 == 1.0 and s.ttft_p95 == pytest.approx(3.7)
    assert s.duration == 6.0 and s.tokens_per_s == 9 / 6

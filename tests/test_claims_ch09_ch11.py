"""The claims chapters 9 and 11 rest on, checked on their own.

- P95 of n values lies between two ranks from the slowest (`slowest_ranks`): of 48, between the
  4th- and 3rd-slowest, never "among the slowest 3" (the old, off-by-one wording).
- Capacity is the rate a full queue is served at (`sustained_rate`, the middle of a run), not a
  burst's plain average, which counts the ramp-up and the drain too.
- In the engine's runs, latency counts from each request's scheduled arrival, so a request that
  arrives while a step runs has that wait in its TTFT (no coordinated omission).
- `fit_step_clock` times its points through llmlab.measure's protocol.
- The pages' source: no `$` right before an {eval} role, chapter 9's `(cpu-vs-gpu)=` label that
  chapter 11 links to, "sustains" glued only from a steady run, and chapter 11's worked GPU
  example (Llama-2-7B on an A100-80GB at 2,048 tokens: 61 sequences fit, about 11 FLOP per byte
  against a ridge of 153) from the shapes registry and datasheet figures.
"""

import json
import math
import random
import re
from pathlib import Path

import pytest
import torch

import llmlab
from llmlab import measure
from llmlab.serve import Engine, Request
from llmlab.serving_metrics import (
    fit_step_clock,
    make_requests,
    percentile,
    queueing,
    slowest_ranks,
    summarize,
    sustained_rate,
    ttft,
)
from llmlab.shapes import get_shape, kv_cache_bytes_for, sequences_that_fit, weight_bytes

ROOT = Path(__file__).resolve().parent.parent
CH09 = ROOT / "chapters" / "09_ttft.ipynb"
CH11 = ROOT / "chapters" / "11_latency_throughput.ipynb"


def tiny_model():
    torch.manual_seed(0)
    config = llmlab.GPTConfig(vocab_size=32, block_size=64, n_layer=1, n_head=1, n_embd=16)
    return llmlab.TinyGPT(config).eval()


def unit_clock(decode, prefill):
    return 1.0


# ---- where a percentile lies -----------------------------------------------------------------
@pytest.mark.parametrize(
    "n, q, expected",
    [(48, 95, (4, 3)), (30, 95, (3, 2)), (21, 95, (2, 2)), (100, 99, (2, 1)), (20, 50, (11, 10)),
     (1, 95, (1, 1)), (192, 95, (11, 10))],
)  # fmt: skip
def test_slowest_ranks_known_cases(n, q, expected):
    assert slowest_ranks(n, q) == expected


@pytest.mark.parametrize("n", [2, 5, 17, 48, 64, 150, 192])
@pytest.mark.parametrize("q", [50, 90, 95, 99])
def test_the_percentile_lies_between_the_ranks_it_names(n, q):
    rng = random.Random(n * 100 + q)
    xs = [rng.random() for _ in range(n)]
    slowest_first = sorted(xs, reverse=True)
    low, high = slowest_ranks(n, q)
    p = percentile(xs, q)
    # the low-th slowest is the smaller value, the high-th slowest the larger one
    assert slowest_first[low - 1] <= p <= slowest_first[high - 1]
    # and it is never above the (high - 1)-th slowest: not "among the slowest high - 1"
    if high > 1:
        assert p < slowest_first[high - 2]


def test_p95_of_48_is_not_among_the_slowest_3():
    # The wording chapter 9 used to glue ("among the slowest 3") came from this formula.
    n = 48
    old_n_tail = n - 1 - math.floor(0.95 * (n - 1))
    xs = list(range(n))
    p = percentile(xs, 95)
    slowest_3 = sorted(xs)[-old_n_tail:]
    assert p < min(slowest_3)
    assert slowest_ranks(n, 95) == (4, 3)


@pytest.mark.parametrize("n, q", [(0, 95), (10, 101), (10, -1), (True, 95), (2.0, 95)])
def test_slowest_ranks_rejects_bad_input(n, q):
    with pytest.raises((ValueError, TypeError)):
        slowest_ranks(n, q)


# ---- capacity: the middle of a run -----------------------------------------------------------
def fake_run(ends):
    return [dict(arrival=0.0, token_times=[t]) for t in ends]


def test_sustained_rate_reads_the_middle_of_the_run():
    # a slow ramp (2 s for the first 10), 100 completions at 50/s, a slow drain (10 over 3 s)
    ends = [0.2 * i for i in range(1, 11)]
    ends += [2.0 + 0.02 * i for i in range(1, 101)]
    ends += [4.0 + 0.3 * i for i in range(1, 11)]
    rate = sustained_rate(fake_run(ends))
    assert rate == pytest.approx(50.0, rel=1e-9)
    average = summarize(fake_run(ends)).requests_per_s
    assert average < 0.6 * rate  # the burst's average counts ramp and drain


def test_sustained_rate_of_a_burst_is_at_least_its_average():
    model = tiny_model()
    requests = make_requests(40, 32, (4, 12), (2, 8), seed=1)
    results = Engine(model, max_batch_size=4, step_clock=unit_clock).run(requests)
    assert sustained_rate(results) >= summarize(results).requests_per_s


@pytest.mark.parametrize(
    "results, trim, error",
    [(fake_run([1.0, 2.0, 3.0]), 0.25, ValueError), (fake_run([1.0] * 20), 0.25, ValueError),
     (fake_run([float(i) for i in range(1, 21)]), 0.5, ValueError), ("ab", 0.25, TypeError)],
)  # fmt: skip
def test_sustained_rate_rejects_what_cannot_give_a_rate(results, trim, error):
    with pytest.raises(error):
        sustained_rate(results, trim)


# ---- latency from the scheduled arrival --------------------------------------------------------
def test_ttft_counts_from_the_scheduled_arrival_not_from_the_next_step():
    """A request that arrives at 0.5 s while a 1-second step runs waits for that step: its
    TTFT counts the wait (the engine takes it in at its arrival, not when it starts it)."""
    model = tiny_model()
    first = Request([1, 2, 3], 2, arrival=0.0)
    late = Request([4, 5, 6], 1, arrival=0.5)
    results = Engine(model, max_batch_size=4, step_clock=unit_clock).run([first, late])
    r = results[1]
    assert r.arrival == 0.5
    assert queueing(r) == pytest.approx(0.5)  # waited for the step running at 0.5
    assert ttft(r) == pytest.approx(1.5)  # its prefill step ends at 2.0


# ---- the step clock goes through the protocol --------------------------------------------------
def test_fit_step_clock_times_its_points_with_the_protocol(monkeypatch):
    calls = []
    real = measure.time_it

    def counting(fn, **kwargs):
        calls.append(kwargs)
        return real(fn, **kwargs)

    monkeypatch.setattr(measure, "time_it", counting)
    model = tiny_model()
    clock = fit_step_clock(model, prompt_lengths=(8, 32), batch_sizes=(1, 4), budget_s=0.05)
    assert len(calls) == 4  # one protocol run per point
    assert all(c["max_repeat"] == 15 and c["budget_s"] == 0.05 for c in calls)
    assert [(d, p) for d, p, _ in clock.points] == [(0, 8), (0, 32), (1, 0), (4, 0)]
    assert all(t > 0 for _, _, t in clock.points)
    assert clock.base >= 0 and clock.per_decode >= 0 and clock.per_prefill >= 0


@pytest.mark.parametrize(
    "kwargs", [dict(repeat=2), dict(repeat=True), dict(budget_s=0), dict(budget_s=math.inf)]
)
def test_fit_step_clock_rejects_bad_settings(kwargs):
    with pytest.raises((ValueError, TypeError)):
        fit_step_clock(tiny_model(), prompt_lengths=(8,), batch_sizes=(1,), **kwargs)


# ---- the pages' source -------------------------------------------------------------------------
def markdown(path):
    cells = json.loads(path.read_text())["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")


def code(path):
    cells = json.loads(path.read_text())["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")


DOLLAR_EVAL = re.compile(r"\$\{eval\}")


def test_dollar_eval_check_finds_the_slip():
    assert DOLLAR_EVAL.search('At an assumed ${eval}`glued("cpu_price:.2f")` an hour')
    assert not DOLLAR_EVAL.search('At an assumed USD {eval}`glued("cpu_price:.2f")` an hour')


@pytest.mark.parametrize("path", [CH09, CH11], ids=lambda p: p.name)
def test_no_dollar_right_before_an_eval_role(path):
    text = markdown(path) + code(path)
    assert not DOLLAR_EVAL.search(text), "a `$` right before {eval} turns prose into maths"


def test_chapter_9_has_the_cpu_vs_gpu_section_and_chapter_11_links_it():
    text = markdown(CH09)
    assert re.search(r"^\(cpu-vs-gpu\)=\n### What a CPU demo can and cannot show$", text, re.M)
    assert text.count("(cpu-vs-gpu)=") == 1
    assert "<cpu-vs-gpu>`" in markdown(CH11)


def test_chapter_9_glues_sustains_only_from_steady_runs():
    source = code(CH09)
    # the only sentence that says "this machine sustains" names the rate that held steady
    assert source.count("this machine sustains") == 1
    assert 'f"this machine sustains {sustained:.1f} requests/s, "' in source
    assert "sustained = highest_passing(rates, ok, slo)" in source
    assert "ok = [p if s else math.inf for p, s in zip(pct[95], steady)]" in source
    assert "say.steady(" in source
    assert "sustained_rate(" in source  # capacity from the middle of a run, not a burst


def llama2_at_2k_on_a100():
    """Datasheet worked example: Llama-2-7B fp16 on an A100-80GB, 2,048-token context."""
    shape = get_shape("Llama-2-7B")
    batch = sequences_that_fit(shape, 80e9, 2048)
    weights = weight_bytes(shape, "fp16")
    kv = kv_cache_bytes_for(shape, 2048, batch, "fp16")
    # 2 FLOPs per weight per sequence, plus attention: QK^T and AV over the context
    attention = 4 * shape.n_layer * shape.n_embd * 2048
    flops = batch * (2 * shape.n_params + attention)
    return batch, flops / (weights + kv), 312e12 / 2.039e12


def test_the_largest_batch_that_fits_stays_memory_bound():
    batch, intensity, ridge = llama2_at_2k_on_a100()
    assert batch == 61
    assert 10 < intensity < 12
    assert round(ridge) == 153
    assert intensity < ridge / 10


def test_chapter_11_quiz_key_agrees_with_the_worked_example():
    batch, intensity, ridge = llama2_at_2k_on_a100()
    quiz = json.loads((ROOT / "llmlab" / "quizzes" / "ch11.json").read_text())
    (q,) = [q for q in quiz["questions"] if "2,048-token" in q["question"]]
    assert f"about {batch} sequences" in q["question"]
    assert f"ridge about {round(ridge)}" in q["question"]
    (right,) = [a for a in q["answers"] if a["correct"]]
    assert f"about {round(intensity)} FLOP per byte, memory-bound" in right["answer"]

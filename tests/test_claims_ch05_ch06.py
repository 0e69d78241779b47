"""Chapters 5 and 6: the quiz keys agree with the corrected text, and a floor stays a floor.

Where a quiz answer can be checked against the engine or the chapter's own arithmetic, it is:
the mask offset (causal_mask), the GPU ridge point from the datasheet figures the chapters quote,
speculative decoding's expected tokens per verification, the size of a prompt's KV cache that
disaggregated serving moves. llmlab.bench.hold_floors is checked on stand-in probes: a step
below its floor makes it probe again and time again, and a step still below names the probe
that under-read instead of recording a "below" verdict (tests/test_busy_machine.py fails those).
"""

import json
import re
from pathlib import Path

import pytest

from llmlab import bench, cost, quiz
from llmlab import verdict as say
from llmlab.measure import MachineProbe
from llmlab.model import GPTConfig, causal_mask

ROOT = Path(__file__).resolve().parent.parent
A100_BW, A100_FLOPS = 2.039e12, 312e12  # the datasheet figures chapters 5 and 6 quote


def question(name: str, start: str) -> dict:
    found = [q for q in quiz.load_quiz(name)["questions"] if q["question"].startswith(start)]
    assert len(found) == 1, f"{name}: no single question starting {start!r}"
    return found[0]


def correct(q: dict) -> str:
    (answer,) = [a["answer"] for a in q["answers"] if a["correct"]]
    return answer


def chapter_text(stem: str) -> str:
    cells = json.loads((ROOT / "chapters" / f"{stem}.ipynb").read_text())["cells"]
    return " ".join(" ".join("".join(c["source"]).split()) for c in cells)


def first_number(text: str) -> float:
    return float(re.search(r"\d[\d,]*(?:\.\d+)?", text).group().replace(",", ""))


# --- chapter 5 -------------------------------------------------------------------------------


def test_ch05_mask_offset_key_is_what_causal_mask_does():
    q = question("ch05", "A cache holds positions 0-2")
    seen = causal_mask(3, 6)[0].nonzero().flatten().tolist()  # the first new token's keys
    assert correct(q).startswith(f"Keys {seen[0]} to {seen[-1]}"), (seen, correct(q))
    (unshifted,) = [a for a in q["answers"] if a["answer"].startswith("Key 0 only")]
    assert not unshifted["correct"]  # the first row of the mask without the offset


def test_ch05_cache_equality_key_says_up_to_rounding_as_the_chapter_does():
    q = question("ch05", "Does cached generation produce the same tokens")
    assert "up to floating-point rounding" in correct(q)
    text = chapter_text("05_kv_cache")
    assert "up to floating-point rounding" in text
    assert "exactly what recomputation" not in json.dumps(quiz.load_quiz("ch05"))


def test_ch05_speedup_key_quotes_the_datasheet_ridge():
    q = question("ch05", "Is a KV cache 5-10x faster")
    (feedback,) = [a["feedback"] for a in q["answers"] if a["correct"]]
    ridge = A100_FLOPS / A100_BW
    quoted = re.findall(r"(?:ridge of about|passes about|t /) (\d+)", feedback)
    assert len(quoted) == 3 and all(abs(int(x) - ridge) < 1 for x in quoted), (quoted, ridge)


# --- hold_floors -------------------------------------------------------------------------------

CONFIG = GPTConfig(vocab_size=64, block_size=32, n_layer=1, n_head=2, n_embd=16)
STEP = cost.step_cost(CONFIG, cached=8)  # memory-bound: 1 token against the weights


def floors_with(monkeypatch, first: MachineProbe, second: MachineProbe, retimed_s: float):
    probes, timed = [], []
    monkeypatch.setattr("llmlab.measure.probe_machine", lambda **kw: probes.append(kw) or second)

    class Timed:
        min_s = retimed_s

    monkeypatch.setattr(bench, "time_it", lambda fn, **kw: timed.append(fn) or Timed())
    floor_s = STEP.total_bytes / first.bandwidth
    result = bench.hold_floors(
        {"step": (STEP, floor_s / 2, lambda: None)}, first, label=lambda n: f"the {n}"
    )
    return result, probes, timed


def test_a_step_above_its_floor_gets_a_verdict_and_no_reprobe():
    probe = MachineProbe("stand-in", 1e9, 1e12)
    floor_s = STEP.total_bytes / probe.bandwidth
    result = bench.hold_floors({"s": (STEP, 2 * floor_s, lambda: None)}, probe)
    assert not result.reprobed and result.probe is probe
    assert result.verdicts["s"].kind == "above" and result.verdicts["s"].holds()


def test_a_step_below_its_floor_is_reprobed_and_retimed(monkeypatch):
    slow = MachineProbe("stand-in", 1e9, 1e12)  # under-read: the step ran at 2 GB/s
    fast = MachineProbe("stand-in", 4e9, 1e12)
    floor_s = STEP.total_bytes / slow.bandwidth
    result, probes, timed = floors_with(monkeypatch, slow, fast, retimed_s=floor_s / 2)
    assert len(probes) == 1 and len(timed) == 1 and result.reprobed
    assert result.probe is fast  # every floor from the final probe
    assert result.verdicts["step"].kind == "above" and not result.underread


def test_a_step_still_below_names_the_probe_that_under_read(monkeypatch):
    slow = MachineProbe("stand-in", 1e9, 1e12)
    floor_s = STEP.total_bytes / slow.bandwidth
    before = len(say.RECORDED)
    result, _, _ = floors_with(monkeypatch, slow, slow, retimed_s=floor_s / 2)
    assert "step" not in result.verdicts
    text = result.underread["step"]
    assert text.startswith("the step streamed") and "bandwidth probe" in text and "2.0 GB/s" in text
    assert not [v for v in say.RECORDED[before:] if v.kind == "below"]


def test_a_compute_bound_step_below_its_floor_names_the_matmul_probe(monkeypatch):
    prefill = cost.step_cost(CONFIG, new_tokens=32)
    probe = MachineProbe("stand-in", 1e12, 1e9)  # compute-bound at this probe
    floor_s = prefill.total_flops / probe.flops
    monkeypatch.setattr("llmlab.measure.probe_machine", lambda **kw: probe)

    class Timed:
        min_s = floor_s / 3

    monkeypatch.setattr(bench, "time_it", lambda fn, **kw: Timed())
    result = bench.hold_floors({"p": (prefill, floor_s / 3, lambda: None)}, probe)
    assert "matmul probe" in result.underread["p"]


@pytest.mark.parametrize(
    "steps, probe, kwargs, error",
    [
        ({}, MachineProbe("x", 1e9, 1e9), {}, TypeError),
        ({"s": (STEP, 0.0, lambda: None)}, MachineProbe("x", 1e9, 1e9), {}, ValueError),
        ({"s": (STEP, 1.0)}, MachineProbe("x", 1e9, 1e9), {}, TypeError),
        ({"s": (STEP, 1.0, lambda: None)}, "probe", {}, TypeError),
        ({"s": (STEP, 1.0, lambda: None)}, MachineProbe("x", 1e9, 1e9), {"tie": 1.5}, ValueError),
    ],
)
def test_hold_floors_refuses_bad_arguments(steps, probe, kwargs, error):
    with pytest.raises(error):
        bench.hold_floors(steps, probe, **kwargs)


# --- chapter 6 -------------------------------------------------------------------------------


def test_ch06_speculative_key_is_the_expected_tokens_formula():
    q = question("ch06", "A draft proposes k = 4 tokens")
    k, a = 4, 0.8
    expected = (1 - a ** (k + 1)) / (1 - a)
    assert abs(first_number(correct(q)) - expected) < 0.05, (correct(q), expected)
    wrong = [first_number(x["answer"]) for x in q["answers"] if not x["correct"]]
    assert all(abs(w - expected) > 0.5 for w in wrong)


def test_ch06_prefill_feedback_names_the_gpu_ridge_range_not_a_few_tokens():
    q = question("ch06", "True or false: prefill is memory-bound")
    feedback = " ".join(a["feedback"] for a in q["answers"])
    assert "150-300" in feedback and "Only for a prompt of a few tokens" not in feedback
    ridge = A100_FLOPS / A100_BW  # an A100's fp16 ridge lies inside the quoted range
    assert 150 <= ridge <= 300


def test_ch06_says_sampling_keeps_the_distribution_not_the_tokens():
    text = chapter_text("06_prefill_decode")
    assert "for greedy decoding and for sampling alike" not in text
    assert "distributed* exactly as the large model's samples" in text
    assert "(1 - a^{k+1}) / (1 - a)" in text  # the acceptance arithmetic
    assert "cache.length = context" in text  # the rollback, named in the prose


def test_ch06_kv_move_is_a_1000_token_llama_2_7b_cache():
    from llmlab.shapes import get_shape, kv_cache_bytes_for

    kv = kv_cache_bytes_for(get_shape("Llama-2-7B"), 1000)
    assert kv == 1000 * 524_288  # fp16: 2 x 32 layers x 32 heads x 128 x 2 bytes per token
    text = chapter_text("06_prefill_decode")
    assert 'glued("l7_kv_1k_gb' in text and "25 GB/s" in text and "300 GB/s" in text


def test_trend_phrase_reads_in_a_sentence_for_every_kind():
    from llmlab.measure import Comparison, Timing

    def comp(rounds):
        return Comparison({n: Timing(tuple(r)) for n, r in rounds.items()}, rounds)

    rising = comp({1: [1.0] * 6, 2: [2.0, 2.1, 1.9, 2.0, 2.05, 1.95]})
    v = say.trend_of(rising, order=[1, 2], what="the step")
    assert v.kind == "rises" and bench.trend_phrase(v, rising, [1, 2], "x") == v.text
    noisy = comp({1: [1.0] * 6, 2: [0.9, 1.3, 1.0, 1.2, 1.1, 1.05]})
    v = say.trend_of(noisy, order=[1, 2], what="the step")
    text = bench.trend_phrase(v, noisy, [1, 2], "the step's time")
    assert v.kind == "unresolved" and text.startswith(
        "this run does not resolve the shape of the step's time (the last point took 1.08"
    ), text
    assert "95% interval 0.90-1.30" in text

"""Exercise 10's checks can fail, and say what is wrong in one sentence.

Each broken decode_step_seconds / compute_bound_batch below makes one classic mistake; the named
check must FAIL with a message naming it, while the reference solution and other correct ways
of writing it (through llmlab.cost, in float32 torch, NumPy, a closed form for the crossing)
pass.
"""

import math

import numpy as np
import pytest
import torch
from notebook_tools import assert_fails_with, load_solution

from llmlab.checks import PASS, TODO, run_checks
from llmlab.checks.ex10_decode_floor import CHECKS
from llmlab.cost import n_weights, step_cost

solution = load_solution("10_decode_floor")


def statuses(step, batch=solution.compute_bound_batch):
    results = run_checks(CHECKS, (step, batch), "decode_step_seconds").results
    return {r.name: (r.status, r.message) for r in results}


def step_from(nbytes_of, flops_of, combine=max, scale=1.0):
    def decode_step_seconds(config, batch, context, bandwidth, peak_flops, bytes_per_element=2):
        nbytes = nbytes_of(config, batch, context, bytes_per_element)
        flops = flops_of(config, batch, context)
        return combine(nbytes / bandwidth, flops / peak_flops) * scale

    return decode_step_seconds


def weights(c, bpe):
    return n_weights(c)["other"] * bpe


def kv(c, b, ctx, bpe, heads=None, positions=2, tensors=2, layers=None):
    return (
        tensors
        * (layers or c.n_layer)
        * b
        * (heads or c.n_kv_head)
        * c.head_dim
        * (ctx + positions)
        * bpe
    )


def flops(c, b, ctx, per_weight=2, attn=4, heads=None, positions=1):
    return per_weight * n_weights(c)["other"] * b + attn * c.n_layer * b * (
        heads or c.n_head
    ) * c.head_dim * (ctx + positions)


def right_bytes(c, b, ctx, bpe):
    return weights(c, bpe) + kv(c, b, ctx, bpe)


# ---- right answers, written differently ------------------------------------------------------------
def via_cost_model(config, batch, context, bandwidth, peak_flops, bytes_per_element=2):
    cost = step_cost(config, batch, 1, context, bytes_per_element)
    moved = cost.bytes["weights"] + cost.bytes["kv_read"] + cost.bytes["kv_write"]
    return max(moved / bandwidth, cost.total_flops / peak_flops)


def torch_float32(config, batch, context, bandwidth, peak_flops, bytes_per_element=2):
    """Every count a float32 tensor (torch's default dtype); returns a 0-d tensor."""
    L, Hkv, D = config.n_layer, config.n_kv_head, config.head_dim
    params = torch.tensor(float(n_weights(config)["other"]))
    per_position = torch.tensor(2.0 * L * Hkv * D * bytes_per_element)  # K and V, all layers
    nbytes = params * bytes_per_element + batch * per_position * (context + 2)
    attn = torch.tensor(4.0 * L * config.n_head * D) * (context + 1)
    work = batch * (2 * params + attn)
    return torch.maximum(nbytes / bandwidth, work / peak_flops)


def per_layer_loop(config, batch, context, bandwidth, peak_flops, bytes_per_element=2):
    """Layer by layer, sequence by sequence, in NumPy float64."""
    D, nbytes = config.head_dim, np.float64(n_weights(config)["other"] * bytes_per_element)
    work = np.float64(2 * n_weights(config)["other"] * batch)
    for _ in range(config.n_layer):
        for _ in range(batch):
            nbytes += 2 * config.n_kv_head * D * (context + 1) * bytes_per_element  # read K, V
            nbytes += 2 * config.n_kv_head * D * bytes_per_element  # write the new K, V
            work += 2 * 2 * config.n_head * D * (context + 1)  # q.k and weights.v
    return float(max(nbytes / bandwidth, work / peak_flops))


def closed_form_batch(config, context, bandwidth, peak_flops, bytes_per_element=2,
                      max_batch=4096):  # fmt: skip
    """Bytes and FLOPs are linear in the batch: solve for where they meet, round up."""
    w = n_weights(config)["other"] * bytes_per_element / bandwidth
    kv_per_seq = kv(config, 1, context, bytes_per_element) / bandwidth
    flops_per_seq = flops(config, 1, context) / peak_flops
    if flops_per_seq <= kv_per_seq:
        return None
    b = math.ceil(w / (flops_per_seq - kv_per_seq))
    return b if b <= max_batch else None


def batch_from_float32_step(config, context, bandwidth, peak_flops, bytes_per_element=2,
                            max_batch=4096):  # fmt: skip
    """Reuses the float32 step: compute-bound once a zero-bandwidth-cost machine is as slow."""
    for b in range(1, max_batch + 1):
        memory = torch_float32(config, b, context, bandwidth, math.inf, bytes_per_element)
        compute = torch_float32(config, b, context, math.inf, peak_flops, bytes_per_element)
        if compute >= memory:
            return b
    return None


CORRECT = {
    "solution": (solution.decode_step_seconds, solution.compute_bound_batch),
    "cost model": (via_cost_model, solution.compute_bound_batch),
    "torch float32": (torch_float32, batch_from_float32_step),
    "numpy loop, closed form": (per_layer_loop, closed_form_batch),
}


# ---- mistakes ----------------------------------------------------------------------------------------
def plus(a, b):
    return a + b


STEP_MISTAKES = [
    ("sum", step_from(right_bytes, flops, combine=plus), "adds"),
    ("min", step_from(right_bytes, flops, combine=min), "smaller"),
    ("bandwidth and peak swapped",
     lambda c, b, x, bw, pk, p=2: max(right_bytes(c, b, x, p) / pk, flops(c, b, x) / bw),
     "bytes by peak_flops"),
    ("no kv", step_from(lambda c, b, x, p: weights(c, p), flops), "leaves out the KV"),
    ("kv once", step_from(lambda c, b, x, p: weights(c, p) + kv(c, 1, x, p), flops), "once for"),
    ("kv of one layer", step_from(lambda c, b, x, p: weights(c, p) + kv(c, b, x, p, layers=1),
                                  flops), "one layer"),
    ("only keys", step_from(lambda c, b, x, p: weights(c, p) + kv(c, b, x, p, tensors=1), flops),
     "only the keys"),
    ("kv in numbers", step_from(lambda c, b, x, p: weights(c, p) + kv(c, b, x, 1), flops),
     "not bytes"),
    ("no kv write", step_from(lambda c, b, x, p: weights(c, p) + kv(c, b, x, p, positions=1),
                              flops), "context + 2"),
    ("kv over context", step_from(lambda c, b, x, p: weights(c, p) + kv(c, b, x, p, positions=0),
                                  flops), "counts context positions of K and V"),
    ("weights per seq", step_from(lambda c, b, x, p: b * weights(c, p) + kv(c, b, x, p), flops),
     "once per sequence"),
    ("query heads", step_from(lambda c, b, x, p: weights(c, p) + kv(c, b, x, p, c.n_head), flops),
     "query heads"),
    ("embeddings read", step_from(
        lambda c, b, x, p: (n_weights(c)["other"] + n_weights(c)["embeddings"]) * p
        + kv(c, b, x, p), flops), "embedding tables"),
    ("embeddings everywhere", lambda c, b, x, bw, pk, p=2: max(
        (n_weights(c)["other"] + n_weights(c)["embeddings"]) * p / bw + kv(c, b, x, p) / bw,
        (flops(c, b, x) + 2 * b * n_weights(c)["embeddings"]) / pk), "read and multiplied"),
    ("1 flop", step_from(right_bytes, lambda c, b, x: flops(c, b, x, 1)), "2 FLOPs"),
    ("no attention flops", step_from(right_bytes, lambda c, b, x: flops(c, b, x, attn=0)),
     "leaves out attention's FLOPs"),
    ("only q.k", step_from(right_bytes, lambda c, b, x: flops(c, b, x, attn=2)), "only q.k"),
    ("attention over kv heads", step_from(
        right_bytes, lambda c, b, x: flops(c, b, x, heads=c.n_kv_head)), "every query head"),
    ("attention over context", step_from(
        right_bytes, lambda c, b, x: flops(c, b, x, positions=0)), "attends to itself"),
    ("ms", step_from(right_bytes, flops, scale=1e3), "milliseconds"),
    ("fp32 always", step_from(lambda c, b, x, p: right_bytes(c, b, x, 4), flops), "4 bytes"),
    ("fp16 always", step_from(lambda c, b, x, p: right_bytes(c, b, x, 2), flops), "2 bytes"),
]  # fmt: skip


def first_crossing(step, offset=0):
    def compute_bound_batch(config, context, bandwidth, peak_flops, bytes_per_element=2,
                            max_batch=4096):  # fmt: skip
        for b in range(1, max_batch + 1):
            if step(config, b, context, math.inf, peak_flops, bytes_per_element) >= step(
                config, b, context, bandwidth, math.inf, bytes_per_element
            ):
                return b + offset
        return None

    return compute_bound_batch


def no_kv_bytes(c, b, x, p):
    return weights(c, p)


def ignores_max_batch(config, context, bandwidth, peak_flops, bytes_per_element=2,
                      max_batch=4096):  # fmt: skip
    return solution.compute_bound_batch(config, context, bandwidth, peak_flops,
                                        bytes_per_element)  # fmt: skip


def never_none(*args, **kwargs):
    return solution.compute_bound_batch(*args, **kwargs) or 4096


def exact_crossing(config, context, bandwidth, peak_flops, bytes_per_element=2, max_batch=4096):
    w = n_weights(config)["other"] * bytes_per_element / bandwidth
    slope = flops(config, 1, context) / peak_flops - kv(config, 1, context, bytes_per_element) / (
        bandwidth
    )
    return w / slope if slope > 0 and w / slope <= max_batch else None  # no rounding up


BATCH_MISTAKES = [
    ("largest memory-bound", first_crossing(solution.decode_step_seconds, -1),
     "largest memory-bound"),
    ("one past", first_crossing(solution.decode_step_seconds, +1), "one past"),
    ("weights only", first_crossing(step_from(no_kv_bytes, flops)), "KV cache"),
    ("ignores max_batch", ignores_max_batch, "ignores max_batch"),
    ("never None", never_none, "expected None"),
    ("not rounded up", exact_crossing, "round up"),
]  # fmt: skip


def test_gallery_is_large_enough():
    assert len(STEP_MISTAKES) + len(BATCH_MISTAKES) >= 15 and len(CORRECT) >= 3


@pytest.mark.parametrize("name", CORRECT)
def test_correct_variants_pass(name):
    result = statuses(*CORRECT[name])
    assert all(s == PASS for s, _ in result.values()), result


@pytest.mark.parametrize("name, fn, words", STEP_MISTAKES, ids=[m[0] for m in STEP_MISTAKES])
def test_step_mistake_is_named(name, fn, words):
    result = statuses(fn)
    assert_fails_with(result, "step time", words)
    assert "expected" not in result["step time"][1], "a known mistake is named, not described"


@pytest.mark.parametrize("name, fn, words", BATCH_MISTAKES, ids=[m[0] for m in BATCH_MISTAKES])
def test_batch_mistake_is_named(name, fn, words):
    result = statuses(solution.decode_step_seconds, fn)
    assert_fails_with(result, "compute-bound batch", words)
    assert result["step time"][0] == PASS


def test_faster_than_the_weights_is_caught():
    assert_fails_with(
        statuses(step_from(lambda c, b, x, p: weights(c, p) / 10, flops)), "batch 1 floor", "cannot"
    )


def test_crash_in_compute_bound_batch_names_it():
    def uses_missing_field(config, context, bandwidth, peak_flops, bytes_per_element=2,
                           max_batch=4096):  # fmt: skip
        return config.n_kv_heads  # a typo: the field is n_kv_head

    status, message = statuses(solution.decode_step_seconds, uses_missing_field)[
        "compute-bound batch"
    ]
    assert status == "FAIL" and "compute_bound_batch() raised AttributeError" in message, message


def test_crash_on_grouped_query_models_is_explained():
    def assumes_mha(config, batch, context, bandwidth, peak_flops, bytes_per_element=2):
        assert config.n_kv_head == config.n_head, "only multi-head models"
        return solution.decode_step_seconds(
            config, batch, context, bandwidth, peak_flops, bytes_per_element
        )

    result = statuses(assumes_mha)
    assert_fails_with(result, "step time", "not on a grouped-query")
    assert "raised AssertionError" in result["step time"][1]


def test_a_tuple_is_not_a_time():
    def both_times(config, batch, context, bandwidth, peak_flops, bytes_per_element=2):
        nbytes, work = (
            right_bytes(config, batch, context, bytes_per_element),
            flops(config, batch, context),
        )
        return nbytes / bandwidth, work / peak_flops

    assert_fails_with(statuses(both_times), "step time", "one number of seconds")


def test_stub_reports_todo():
    def stub(*args, **kwargs):
        raise NotImplementedError

    assert all(s == TODO for s, _ in statuses(stub, stub).values())


def batch_with_range(stop_offset=0, attn_positions=1, max_default=4096):
    """compute_bound_batch as the reference writes it, with its range or a count changed."""

    def compute_bound_batch(config, context, bandwidth, peak_flops, bytes_per_element=2,
                            max_batch=max_default):  # fmt: skip
        L, H, Hkv, D = config.n_layer, config.n_head, config.n_kv_head, config.head_dim
        P = n_weights(config)["other"]
        for b in range(1, max_batch + 1 + stop_offset):
            kv = 2 * L * b * Hkv * D * (context + 2) * bytes_per_element
            flops = 2 * P * b + 4 * L * b * H * D * (context + attn_positions)
            if flops / peak_flops >= (P * bytes_per_element + kv) / bandwidth:
                return b
        return None

    return compute_bound_batch


def step_with_default_bpe(config, batch, context, bandwidth, peak_flops, bytes_per_element=4):
    return solution.decode_step_seconds(config, batch, context, bandwidth, peak_flops,
                                        bytes_per_element)  # fmt: skip


# Mistakes the named checks let through before issue #24: the differential checks catch them.
UNLISTED = [
    ("range stops before max_batch", dict(batch=batch_with_range(stop_offset=-1)),
     "batch: boundary cases",
     "(a crossing exactly at max_batch is found) your compute_bound_batch() returned None; the "
     "answer is 364"),
    ("default max_batch 4095", dict(batch=batch_with_range(max_default=4095)),
     "batch: boundary cases", "(max_batch is 4096 when left out: a crossing at 4096)"),
    ("attention over context positions in the crossing", dict(batch=batch_with_range(attn_positions=0)),
     "batch: generated inputs", "your compute_bound_batch() returned "),
    ("default bytes_per_element 4", dict(step=step_with_default_bpe),
     "step time: worked examples", "your decode_step_seconds() returned 8.364e-05; the answer is 4.182e-05"),
]  # fmt: skip


@pytest.mark.parametrize("name, fns, check, words", UNLISTED, ids=[u[0] for u in UNLISTED])
def test_unlisted_mistake_fails_with_its_counterexample(name, fns, check, words):
    result = statuses(fns.get("step", solution.decode_step_seconds),
                      fns.get("batch", solution.compute_bound_batch))  # fmt: skip
    assert_fails_with(result, check, words)
    assert result[check][1].startswith("for config=GPTConfig(")
    named = [k for k, (s, _) in result.items() if s != PASS and ":" not in k]
    assert not named, f"a named check caught it after all: {named}; move it to the gallery"

"""Exercise 10's checks can fail, and say what is wrong in one sentence.

Each broken decode_step_seconds / compute_bound_batch below makes one classic mistake; the named
check must FAIL with a message naming it, while the reference solution and another correct way
of writing it (through llmlab.cost) pass.
"""

import pytest
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


def kv(c, b, ctx, bpe, heads=None):
    return 2 * c.n_layer * b * (heads or c.n_kv_head) * c.head_dim * (ctx + 2) * bpe


def flops(c, b, ctx, per_weight=2):
    return per_weight * n_weights(c)["other"] * b + 4 * c.n_layer * b * c.n_head * c.head_dim * (
        ctx + 1
    )


def right_bytes(c, b, ctx, bpe):
    return weights(c, bpe) + kv(c, b, ctx, bpe)


def via_cost_model(config, batch, context, bandwidth, peak_flops, bytes_per_element=2):
    cost = step_cost(config, batch, 1, context, bytes_per_element)
    moved = cost.bytes["weights"] + cost.bytes["kv_read"] + cost.bytes["kv_write"]
    return max(moved / bandwidth, cost.total_flops / peak_flops)


STEP_MISTAKES = [
    ("sum", step_from(right_bytes, flops, combine=lambda a, b: a + b), "adds"),
    ("min", step_from(right_bytes, flops, combine=min), "smaller"),
    ("no kv", step_from(lambda c, b, x, p: weights(c, p), flops), "leaves out the KV"),
    ("kv once", step_from(lambda c, b, x, p: weights(c, p) + kv(c, 1, x, p), flops), "once for"),
    ("weights per seq", step_from(lambda c, b, x, p: b * weights(c, p) + kv(c, b, x, p), flops),
     "once per sequence"),
    ("query heads", step_from(lambda c, b, x, p: weights(c, p) + kv(c, b, x, p, c.n_head), flops),
     "query heads"),
    ("1 flop", step_from(right_bytes, lambda c, b, x: flops(c, b, x, 1)), "2 FLOPs"),
    ("ms", step_from(right_bytes, flops, scale=1e3), "milliseconds"),
    ("fp32 always", step_from(lambda c, b, x, p: right_bytes(c, b, x, 4), flops), "4 bytes"),
]  # fmt: skip


def test_solution_passes():
    result = statuses(solution.decode_step_seconds)
    assert all(s == PASS for s, _ in result.values()), result


def test_cost_model_variant_passes():
    result = statuses(via_cost_model)
    assert all(s == PASS for s, _ in result.values()), result


@pytest.mark.parametrize("name, fn, words", STEP_MISTAKES, ids=[m[0] for m in STEP_MISTAKES])
def test_step_mistake_is_named(name, fn, words):
    assert_fails_with(statuses(fn), "step time", words)


def test_off_by_one_batch_is_named():
    def largest_memory_bound(config, context, bandwidth, peak_flops, bytes_per_element=2,
                             max_batch=4096):  # fmt: skip
        for b in range(1, max_batch + 1):
            if via_cost_model(config, b, context, bandwidth, peak_flops, bytes_per_element) > (
                via_cost_model(config, b, context, bandwidth, 1e30, bytes_per_element)
            ):
                return b - 1  # the last batch before FLOPs took over
        return None

    assert_fails_with(
        statuses(solution.decode_step_seconds, largest_memory_bound),
        "compute-bound batch",
        "largest memory-bound",
    )


def test_weights_only_batch_is_named():
    def weights_only(config, context, bandwidth, peak_flops, bytes_per_element=2,
                     max_batch=4096):  # fmt: skip
        for b in range(1, max_batch + 1):
            if flops(config, b, context) / peak_flops >= weights(config, bytes_per_element) / (
                bandwidth
            ):
                return b
        return None

    assert_fails_with(
        statuses(solution.decode_step_seconds, weights_only), "compute-bound batch", "KV cache"
    )


def test_never_none_is_caught():
    def never_none(*args, **kwargs):
        return solution.compute_bound_batch(*args, **kwargs) or 4096

    assert_fails_with(
        statuses(solution.decode_step_seconds, never_none), "compute-bound batch", "expected None"
    )


def test_faster_than_the_weights_is_caught():
    assert_fails_with(
        statuses(step_from(lambda c, b, x, p: weights(c, p) / 10, flops)), "batch 1 floor", "cannot"
    )


def test_stub_reports_todo():
    def stub(*args, **kwargs):
        raise NotImplementedError

    assert all(s == TODO for s, _ in statuses(stub, stub).values())

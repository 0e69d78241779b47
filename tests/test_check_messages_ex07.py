"""Exercise 7's checks can fail, and say what is wrong in one sentence.

Each broken kv_cache_size below makes one classic mistake; the named check must FAIL with a
message naming it, while the reference solution and other correct ways of writing it pass.
"""

import math

import pytest
import torch
from notebook_tools import assert_fails_with, load_solution

from llmlab.checks import PASS, TODO, run_checks
from llmlab.checks.ex07_kv_cache_size import CHECKS, check_kv_cache_size
from llmlab.shapes import kv_cache_bytes_for

BYTES = {"fp32": 4, "fp16": 2, "bf16": 2, "fp8": 1, "int8": 1}


def statuses(fn):
    return {r.name: (r.status, r.message) for r in run_checks(CHECKS, fn, "kv_cache_size").results}


def _validated(formula):
    """A kv_cache_size that validates its input like the solution, then applies `formula`."""

    def kv_cache_size(model, seq_len, batch_size=1, dtype="fp16"):
        if dtype not in BYTES or seq_len < 0 or batch_size < 1:
            raise ValueError("bad input")
        return formula(model, seq_len, batch_size, dtype)

    return kv_cache_size


# The classic mistakes, written as a learner would write them.
query_heads = _validated(
    lambda m, t, b, d: 2 * m.n_layer * b * m.n_head * t * m.head_dim * BYTES[d]
)
n_embd_width = _validated(lambda m, t, b, d: 2 * m.n_layer * b * t * m.n_embd * BYTES[d])
no_factor_two = _validated(
    lambda m, t, b, d: m.n_layer * b * m.n_kv_head * t * m.head_dim * BYTES[d]
)
bits_not_bytes = _validated(
    lambda m, t, b, d: 2 * m.n_layer * b * m.n_kv_head * t * m.head_dim * 8 * BYTES[d]
)
no_layers = _validated(lambda m, t, b, d: 2 * b * m.n_kv_head * t * m.head_dim * BYTES[d])
no_batch = _validated(lambda m, t, b, d: 2 * m.n_layer * m.n_kv_head * t * m.head_dim * BYTES[d])
no_seq_len = _validated(lambda m, t, b, d: 2 * m.n_layer * b * m.n_kv_head * m.head_dim * BYTES[d])
always_fp32 = _validated(lambda m, t, b, d: 2 * m.n_layer * b * m.n_kv_head * t * m.head_dim * 4)
in_gib = _validated(
    lambda m, t, b, d: 2 * m.n_layer * b * m.n_kv_head * t * m.head_dim * BYTES[d] / 2**30
)
as_float = _validated(
    lambda m, t, b, d: float(2 * m.n_layer * b * m.n_kv_head * t * m.head_dim * BYTES[d])
)


def key_error_on_bad_dtype(model, seq_len, batch_size=1, dtype="fp16"):
    return (
        2 * model.n_layer * batch_size * model.n_kv_head * seq_len * model.head_dim * BYTES[dtype]
    )


def no_validation(model, seq_len, batch_size=1, dtype="fp16"):
    return (
        2
        * model.n_layer
        * batch_size
        * model.n_kv_head
        * seq_len
        * model.head_dim
        * BYTES.get(dtype, 2)
    )


def test_reference_solution_passes_all():
    report = check_kv_cache_size(load_solution("07_kv_cache_size").kv_cache_size)
    assert report.solved and len(report.results) == len(CHECKS)


# Correct variants: the engine's calculator, a product over a list, a meta tensor's nbytes.
via_engine = _validated(lambda m, t, b, d: kv_cache_bytes_for(m, t, b, d))
via_prod = _validated(
    lambda m, t, b, d: math.prod([2, m.n_layer, b, m.n_kv_head, t, m.head_dim, BYTES[d]])
)
_TORCH = {
    "fp32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
    "fp8": torch.int8,
    "int8": torch.int8,
}
via_meta_tensor = _validated(
    lambda m, t, b, d: (
        torch.empty(
            2, m.n_layer, b, m.n_kv_head, t, m.head_dim, dtype=_TORCH[d], device="meta"
        ).nbytes
    )
)


@pytest.mark.parametrize("correct", [via_engine, via_prod, via_meta_tensor])
def test_correct_variants_pass(correct):
    assert check_kv_cache_size(correct).solved


def test_stub_reports_todo_everywhere():
    def kv_cache_size(model, seq_len, batch_size=1, dtype="fp16"):
        raise NotImplementedError

    assert {r.status for r in check_kv_cache_size(kv_cache_size).results} == {TODO}


@pytest.mark.parametrize(
    "broken, check, words",
    [
        (query_heads, "GQA (Llama-2-70B)", "only 8 key/value heads"),
        (query_heads, "every factor", "counts query heads (n_head) instead of key/value heads"),
        (n_embd_width, "every factor", "it uses n_embd for the width"),
        (no_factor_two, "Llama-2-7B", "524,288 bytes per token"),
        (no_factor_two, "every factor", "keys AND values, a factor 2"),
        (bits_not_bytes, "every factor", "counts bits, not bytes"),
        (no_layers, "every factor", "leaves out the layers"),
        (no_batch, "every factor", "leaves out batch_size"),
        (no_seq_len, "every factor", "leaves out seq_len"),
        (always_fp32, "every factor", "always uses 4 bytes (fp32)"),
        (in_gib, "every factor", "answers in GiB"),
        (as_float, "returns an int", "return an int"),
        (key_error_on_bad_dtype, "bad input", "raised KeyError; raise ValueError"),
        (no_validation, "bad input", "should raise ValueError"),
    ],
)
def test_each_mistake_fails_its_check_with_a_reason(broken, check, words):
    assert_fails_with(statuses(broken), check, words)


def test_gqa_mistake_passes_on_mha_only():
    result = statuses(query_heads)
    assert result["Llama-2-7B"][0] == PASS  # MHA: n_head == n_kv_head, the slip hides

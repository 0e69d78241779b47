"""Exercise 7's checks never mislead: a gallery of wrong answers and of right ones.

WRONG holds plausible mistakes in the KV-cache size formula and its input checks, each written
the way a learner writes it; the named check must FAIL with the sentence that names it. RIGHT
holds correct answers written in other ways (the engine's calculator, math.prod, numpy, a meta
tensor's nbytes, bits // 8); each must PASS every check.
"""

import math

import numpy as np
import pytest
import torch
from notebook_tools import assert_fails_with, load_solution

from llmlab.checks import PASS, TODO, run_checks
from llmlab.checks.ex07_kv_cache_size import CASES, CHECKS, MISTAKES, check_kv_cache_size
from llmlab.shapes import kv_cache_bytes_for

SOLUTION = load_solution("07_kv_cache_size").kv_cache_size
BYTES = {"fp32": 4, "fp16": 2, "bf16": 2, "fp8": 1, "int8": 1}


def statuses(fn):
    return {r.name: (r.status, r.message) for r in run_checks(CHECKS, fn, "kv_cache_size").results}


def _validated(formula, sizes=BYTES):
    """A kv_cache_size that validates its input like the solution, then applies `formula`."""

    def kv_cache_size(model, seq_len, batch_size=1, dtype="fp16"):
        if dtype not in BYTES:  # in the order the task states: dtype, seq_len, batch_size
            raise ValueError(f"dtype {dtype!r} is not one of {sorted(BYTES)}")
        if seq_len < 0:
            raise ValueError(f"seq_len must be >= 0, got {seq_len}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        return formula(model, seq_len, batch_size, dtype, sizes)

    return kv_cache_size


def _formula(m, t, b, d, sizes):
    return 2 * m.n_layer * b * m.n_kv_head * t * m.head_dim * sizes[d]


# The classic mistakes, written as a learner would write them.
query_heads = _validated(lambda m, t, b, d, s: 2 * m.n_layer * b * m.n_head * t * m.head_dim * s[d])
n_embd_width = _validated(lambda m, t, b, d, s: 2 * m.n_layer * b * t * m.n_embd * s[d])
kv_heads_times_n_embd = _validated(
    lambda m, t, b, d, s: 2 * m.n_layer * b * m.n_kv_head * t * m.n_embd * s[d]
)
head_dim_from_n_embd = _validated(
    lambda m, t, b, d, s: 2 * m.n_layer * b * m.n_kv_head * t * (m.n_embd // m.n_head) * s[d]
)
no_factor_two = _validated(lambda m, t, b, d, s: _formula(m, t, b, d, s) // 2)
factor_four = _validated(lambda m, t, b, d, s: 2 * _formula(m, t, b, d, s))
bits_not_bytes = _validated(lambda m, t, b, d, s: _formula(m, t, b, d, s) * 8)
no_layers = _validated(lambda m, t, b, d, s: 2 * b * m.n_kv_head * t * m.head_dim * s[d])
no_batch = _validated(lambda m, t, b, d, s: 2 * m.n_layer * m.n_kv_head * t * m.head_dim * s[d])
no_seq_len = _validated(lambda m, t, b, d, s: 2 * m.n_layer * b * m.n_kv_head * m.head_dim * s[d])
seq_len_plus_one = _validated(lambda m, t, b, d, s: _formula(m, t + 1, b, d, s))
always_fp32 = _validated(lambda m, t, b, d, s: 2 * m.n_layer * b * m.n_kv_head * t * m.head_dim * 4)
always_fp16 = _validated(lambda m, t, b, d, s: 2 * m.n_layer * b * m.n_kv_head * t * m.head_dim * 2)
head_dim_twice = _validated(lambda m, t, b, d, s: _formula(m, t, b, d, s) * m.head_dim)
in_gib = _validated(lambda m, t, b, d, s: _formula(m, t, b, d, s) / 2**30)
in_gb = _validated(lambda m, t, b, d, s: _formula(m, t, b, d, s) / 1e9)
bf16_as_four = _validated(_formula, {**BYTES, "bf16": 4})
fp8_as_two = _validated(_formula, {**BYTES, "fp8": 2})
as_float = _validated(lambda m, t, b, d, s: float(_formula(m, t, b, d, s)))
bits_over_eight = _validated(lambda m, t, b, d, s: _formula(m, t, b, d, s) * 8 / 8)
as_tensor = _validated(
    lambda m, t, b, d, s: torch.tensor([2, m.n_layer, b, m.n_kv_head, t, m.head_dim, s[d]]).prod()
)


def no_fp8(model, seq_len, batch_size=1, dtype="fp16"):
    sizes = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}
    if seq_len < 0 or batch_size < 1:
        raise ValueError("seq_len and batch_size must be positive")
    return (
        2 * model.n_layer * batch_size * model.n_kv_head * seq_len * model.head_dim * sizes[dtype]
    )


def key_error_on_bad_dtype(model, seq_len, batch_size=1, dtype="fp16"):
    return (
        2 * model.n_layer * batch_size * model.n_kv_head * seq_len * model.head_dim * BYTES[dtype]
    )


def no_validation(model, seq_len, batch_size=1, dtype="fp16"):
    per = BYTES.get(dtype, 2)
    return 2 * model.n_layer * batch_size * model.n_kv_head * seq_len * model.head_dim * per


def rejects_seq_len_zero(model, seq_len, batch_size=1, dtype="fp16"):
    if seq_len <= 0:
        raise ValueError(f"seq_len must be positive, got {seq_len}")
    return SOLUTION(model, seq_len, batch_size, dtype)


def only_batch_zero(model, seq_len, batch_size=1, dtype="fp16"):
    if dtype not in BYTES or seq_len < 0 or batch_size == 0:
        raise ValueError("bad input")
    return _formula(model, seq_len, batch_size, dtype, BYTES)


def default_fp32(model, seq_len, batch_size=1, dtype="fp32"):
    return SOLUTION(model, seq_len, batch_size, dtype)


def no_defaults(model, seq_len, batch_size, dtype):
    return SOLUTION(model, seq_len, batch_size, dtype)


def other_names(model, seq_len, batch=1, dtype="fp16"):
    return SOLUTION(model, seq_len, batch, dtype)


def kv_heads_attribute(model, seq_len, batch_size=1, dtype="fp16"):
    return SOLUTION(model, seq_len, batch_size, dtype) // model.n_kv_head * model.num_kv_heads


WRONG = [  # (learner's kv_cache_size, check that must FAIL, words its message must contain)
    (query_heads, "GQA (Llama-2-70B)", "only 8 key/value heads"),
    (query_heads, "every factor", "counts query heads (n_head) instead of key/value heads"),
    (n_embd_width, "every factor", "it uses n_embd for the width"),
    (kv_heads_times_n_embd, "every factor", "multiplies n_kv_head by n_embd"),
    (head_dim_from_n_embd, "every factor", "computes head_dim as n_embd // n_head"),
    (no_factor_two, "Llama-2-7B", "524,288 bytes per token; got 262,144 (0.5x"),
    (no_factor_two, "every factor", "keys AND values, a factor 2"),
    (factor_four, "every factor", "counted twice"),
    (bits_not_bytes, "every factor", "counts bits, not bytes"),
    (no_layers, "every factor", "leaves out the layers"),
    (no_batch, "every factor", "leaves out batch_size"),
    (no_seq_len, "every factor", "leaves out seq_len"),
    (seq_len_plus_one, "every factor", "seq_len + 1"),
    (always_fp32, "every factor", "always uses 4 bytes (fp32)"),
    (always_fp16, "every factor", "always uses 2 bytes (fp16)"),
    (head_dim_twice, "every factor", "head_dim twice"),
    (in_gib, "every factor", "answers in GiB"),
    (in_gb, "every factor", "answers in GB"),
    (bf16_as_four, "every factor", "it counts bf16 as 4 bytes per number; bf16 is 2"),
    (fp8_as_two, "every factor", "it counts fp8 as 2 bytes per number; fp8 is 1"),
    (no_fp8, "every factor", 'the task lists dtype "fp8" (1 byte per number)'),
    (as_float, "returns an int", "returned the float"),
    (bits_over_eight, "returns an int", "// instead of /"),
    (as_tensor, "returns an int", "torch.Tensor holding the right value"),
    (key_error_on_bad_dtype, "bad input", "raised KeyError ('fp4'); raise ValueError"),
    (no_validation, "bad input", "should raise ValueError"),
    (only_batch_zero, "bad input", "a negative batch_size (-2) returned"),
    (rejects_seq_len_zero, "empty cache", "an empty cache is allowed"),
    (default_fp32, "defaults", 'the default is dtype="fp16"'),
    (no_defaults, "defaults", 'kv_cache_size(model, seq_len, batch_size=1, dtype="fp16")'),
    (other_names, "defaults", "with those names and defaults"),
    (kv_heads_attribute, "Llama-2-7B", "n_layer, n_embd, n_head, n_kv_head and head_dim"),
]


def test_the_gallery_is_large_enough():
    assert len({id(fn) for fn, _, _ in WRONG}) >= 15


@pytest.mark.parametrize("broken, check, words", WRONG, ids=[w for _, _, w in WRONG])
def test_each_mistake_fails_its_check_with_a_reason(broken, check, words):
    assert_fails_with(statuses(broken), check, words)


@pytest.mark.parametrize("broken, check, words", WRONG, ids=[w for _, _, w in WRONG])
def test_no_named_mistake_gets_the_generic_message(broken, check, words):
    assert "expected" not in statuses(broken)["every factor"][1]


def test_the_cases_tell_every_mistake_apart():
    answers = [tuple(wrong(*case) for case in CASES) for _, wrong in MISTAKES]
    right = tuple(SOLUTION(*case) for case in CASES)
    assert len(set(answers)) == len(answers) and right not in answers


def test_a_wrong_value_is_not_blamed_on_its_type():
    status, message = statuses(in_gib)["returns an int"]
    assert status != PASS and "not right yet" in message and "float" not in message


def test_gqa_mistake_passes_on_mha_only():
    result = statuses(query_heads)
    assert result["Llama-2-7B"][0] == PASS  # MHA: n_head == n_kv_head, the slip hides


def test_reference_solution_passes_all():
    report = check_kv_cache_size(SOLUTION)
    assert report.solved and len(report.results) == len(CHECKS)


# Correct variants: the engine's calculator, a product over a list, numpy, a meta tensor's
# nbytes, bits // 8.
via_engine = _validated(lambda m, t, b, d, s: kv_cache_bytes_for(m, t, b, d))
via_prod = _validated(
    lambda m, t, b, d, s: math.prod([2, m.n_layer, b, m.n_kv_head, t, m.head_dim, s[d]])
)
via_numpy = _validated(
    lambda m, t, b, d, s: np.prod(
        [2, m.n_layer, b, m.n_kv_head, t, m.head_dim, s[d]], dtype=np.int64
    )
)
_TORCH = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16,
          "fp8": torch.float8_e4m3fn, "int8": torch.int8}  # fmt: skip
via_meta_tensor = _validated(
    lambda m, t, b, d, s: (
        torch.empty(
            2, m.n_layer, b, m.n_kv_head, t, m.head_dim, dtype=_TORCH[d], device="meta"
        ).nbytes
    )
)
_BITS = {"fp32": 32, "fp16": 16, "bf16": 16, "fp8": 8, "int8": 8}
via_bits = _validated(
    lambda m, t, b, d, s: 2 * m.n_layer * b * m.n_kv_head * t * m.head_dim * _BITS[d] // 8
)

RIGHT = [SOLUTION, via_engine, via_prod, via_numpy, via_meta_tensor, via_bits]


@pytest.mark.parametrize("correct", RIGHT, ids=lambda f: getattr(f, "__name__", "?"))
def test_each_correct_variant_passes_every_check(correct):
    assert check_kv_cache_size(correct).solved


def test_stub_reports_todo_everywhere():
    def kv_cache_size(model, seq_len, batch_size=1, dtype="fp16"):
        raise NotImplementedError

    assert {r.status for r in check_kv_cache_size(kv_cache_size).results} == {TODO}


# ---- mistakes of fresh learners (issue #24) that the first checks let through ----------------


def substring_dtype(model, seq_len, batch_size=1, dtype="fp16"):
    """Validates dtype by substring: "fp" and "16" pass as dtypes."""
    if dtype not in "fp32 fp16 bf16 fp8 int8":
        raise ValueError(f"unknown dtype {dtype!r}")
    if seq_len < 0 or batch_size < 1:
        raise ValueError(f"seq_len must be >= 0 and batch_size >= 1, got {seq_len}, {batch_size}")
    per_number = next(n for name, n in BYTES.items() if dtype in name)
    return 2 * model.n_layer * model.n_kv_head * model.head_dim * seq_len * batch_size * per_number


def batch_size_checked_first(model, seq_len, batch_size=1, dtype="fp16"):
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if seq_len < 0:
        raise ValueError(f"seq_len must be >= 0, got {seq_len}")
    if dtype not in BYTES:
        raise ValueError(f"dtype must be one of {sorted(BYTES)}, got {dtype!r}")
    return _formula(model, seq_len, batch_size, dtype, BYTES)


twice_too_large = _validated(lambda m, t, b, d, s: 2 * _formula(m, t, b, d, s))

FRESH = [  # (learner's kv_cache_size, check that must FAIL, words its message must contain)
    (substring_dtype, "boundary cases", "(dtype must be one of the five names exactly)"),
    (substring_dtype, "boundary cases", "it should raise ValueError"),
    (batch_size_checked_first, "boundary cases", "checked first, then seq_len, then batch_size"),
    (twice_too_large, "worked examples", "and dtype='fp16' your kv_cache_size() returned"),
    (twice_too_large, "boundary cases", "the factor 2 (keys and values) is counted twice"),
    (twice_too_large, "defaults", "the values are not right yet"),
]


@pytest.mark.parametrize("fn, check, words", FRESH, ids=[f"{f.__name__}-{c}" for f, c, _ in FRESH])
def test_fresh_mistake_fails_with_its_counterexample(fn, check, words):
    assert_fails_with(statuses(fn), check, words)


def test_twice_too_large_is_not_told_its_default_dtype_is_wrong():
    result = statuses(twice_too_large)
    assert all("fp32" not in message for _, message in result.values()), result

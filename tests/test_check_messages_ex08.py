"""Exercise 8's checks can fail, and say what is wrong in one sentence.

Each broken (quantize_kv, dequantize_kv) pair below makes one classic mistake; the named check
must FAIL with a message naming it, while the reference solution and other correct ways of
writing it pass.
"""

import numpy as np
import pytest
import torch
from notebook_tools import assert_fails_with, load_solution

from llmlab.checks import PASS, TODO, run_checks
from llmlab.checks.ex08_kv_int8 import CHECKS, FUNCTION_NAMES, check_kv_int8
from llmlab.kv_quant import dequantize_int8, quantize_int8


def solution():
    module = load_solution("08_kv_int8")
    return module.quantize_kv, module.dequantize_kv


def statuses(quantize_kv, dequantize_kv=None):
    fns = (quantize_kv, dequantize_kv or solution()[1])
    return {r.name: (r.status, r.message) for r in run_checks(CHECKS, fns, FUNCTION_NAMES).results}


def _codes(x, scale, rounding=torch.round, low=-127, high=127):
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    return rounding(x / safe).clamp(low, high).to(torch.int8)


# The classic mistakes, written as a learner would write them.
def global_scale(x):
    scale = x.abs().max() / 127
    return _codes(x, scale), scale


def per_channel(x):  # max over the tokens, not over D
    scale = x.abs().amax(dim=-2, keepdim=True) / 127
    return _codes(x, scale), scale


def no_keepdim(x):
    scale = x.abs().amax(dim=-1) / 127
    return _codes(x, scale.unsqueeze(-1)), scale


def max_not_abs(x):
    scale = x.amax(dim=-1, keepdim=True) / 127
    return _codes(x, scale), scale


def divide_by_128_no_clamp(x):
    scale = x.abs().amax(dim=-1, keepdim=True) / 128
    return torch.round(x / scale).to(torch.int8), scale


def divide_by_128_clamped(x):
    scale = x.abs().amax(dim=-1, keepdim=True) / 128
    return _codes(x, scale, low=-128), scale


def unsigned_range(x):
    scale = x.abs().amax(dim=-1, keepdim=True) / 255
    return _codes(x, scale, low=-255, high=255), scale


def uint8_codes(x):
    scale = (x.amax(-1, keepdim=True) - x.amin(-1, keepdim=True)) / 255
    return torch.round((x - x.amin(-1, keepdim=True)) / scale).to(torch.uint8), scale


def truncates(x):
    scale = x.abs().amax(dim=-1, keepdim=True) / 127
    return (x / scale).to(torch.int8), scale


def floors(x):
    scale = x.abs().amax(dim=-1, keepdim=True) / 127
    return _codes(x, scale, rounding=torch.floor), scale


def no_cast(x):
    scale = x.abs().amax(dim=-1, keepdim=True) / 127
    return torch.round(x / scale), scale


def returns_codes_only(x):
    return _codes(x, x.abs().amax(dim=-1, keepdim=True) / 127)


def forgets_the_scale(q, scale):
    return q.float()


def divides_by_scale(q, scale):
    return q.float() / scale


def per_head(x):  # one scale over all tokens of a head
    scale = x.abs().amax(dim=(-2, -1), keepdim=True) / 127
    return _codes(x, scale), scale


def over_heads(x):
    scale = x.abs().amax(dim=1, keepdim=True) / 127
    return _codes(x, scale), scale


def over_batch(x):
    scale = x.abs().amax(dim=0, keepdim=True) / 127
    return _codes(x, scale), scale


def mean_not_max(x):
    scale = x.abs().mean(dim=-1, keepdim=True) / 127
    return _codes(x, scale), scale


def zero_point(x):
    low, high = x.amin(-1, keepdim=True), x.amax(-1, keepdim=True)
    scale = (high - low) / 255
    return torch.round((x - low) / scale - 128).clamp(-128, 127).to(torch.int8), scale


def multiplies(x):
    scale = x.abs().amax(dim=-1, keepdim=True) / 127
    return torch.round(x * scale).clamp(-127, 127).to(torch.int8), scale


def max_returns_a_pair(x):
    scale = x.abs().max(dim=-1, keepdim=True) / 127
    return _codes(x, scale), scale


def in_place(x):
    scale = x.abs().amax(dim=-1, keepdim=True) / 127
    x /= torch.where(scale > 0, scale, torch.ones_like(scale))
    return x.round_().clamp_(-127, 127).to(torch.int8), scale


def ceils(x):
    scale = x.abs().amax(dim=-1, keepdim=True) / 127
    return _codes(x, scale, rounding=torch.ceil), scale


def dequantize_float16(q, scale):
    return q.half() * scale.half()


def dequantize_divides_by_127(q, scale):
    return q.float() * scale / 127


def dequantize_squeezed(q, scale):
    return q.float() * scale.squeeze(-1)


def test_reference_solution_passes_all():
    report = check_kv_int8(*solution())
    assert report.solved and len(report.results) == len(CHECKS)


def engine_quantize(x):
    return quantize_int8(x, dim=-1)


def float16_scales(x):
    return quantize_int8(x, dim=-1, scale_dtype=torch.float16)


def dequantize_to_float32(q, scale):
    return dequantize_int8(q, scale, torch.float32)


def einsum_dequantize(q, scale):
    return torch.einsum("bhtd,bhtz->bhtd", q.float(), scale.float())


def numpy_quantize(x):
    a = x.numpy()
    scale = np.abs(a).max(axis=-1, keepdims=True) / np.float32(127)
    with np.errstate(invalid="ignore", divide="ignore"):
        q = np.nan_to_num(np.rint(a / scale))
    return torch.from_numpy(q.astype(np.int8)), torch.from_numpy(scale)


def round_half_up_no_clamp(x):  # |x| / scale never exceeds 127, so clamping is optional
    scale = x.abs().amax(dim=-1, keepdim=True) / 127
    q = torch.floor(x / scale.clamp_min(1e-30) + 0.5)
    return q.to(torch.int8), scale


def float64_inside(x):
    x64 = x.double()
    scale = x64.abs().amax(dim=-1, keepdim=True) / 127
    q = torch.where(scale > 0, x64 / scale, torch.zeros_like(x64)).round()
    return q.clamp(-127, 127).to(torch.int8), scale.to(x.dtype)


def eps_guard(x):
    """The guard on the division only: an all-zero token keeps its scale of 0."""
    scale = x.abs().amax(dim=-1, keepdim=True) / 127
    return (x / (scale + 1e-12)).round().clamp(-127, 127).char(), scale


def numpy_dequantize(q, scale):
    return torch.from_numpy(q.numpy().astype(np.float32) * scale.numpy())


RIGHT = [
    (engine_quantize, dequantize_int8),
    (float16_scales, dequantize_to_float32),
    (engine_quantize, einsum_dequantize),
    (numpy_quantize, numpy_dequantize),
    (round_half_up_no_clamp, dequantize_int8),
    (float64_inside, einsum_dequantize),
    (eps_guard, numpy_dequantize),
]


@pytest.mark.parametrize(
    "quantize_kv, dequantize_kv", RIGHT, ids=lambda f: getattr(f, "__name__", "?")
)
def test_correct_variants_pass(quantize_kv, dequantize_kv):
    assert check_kv_int8(quantize_kv, dequantize_kv).solved


def test_float64_input_passes():
    quantize_kv, dequantize_kv = solution()
    x = torch.randn(2, 3, 5, 8, dtype=torch.float64)
    q, scale = quantize_kv(x)
    assert q.dtype == torch.int8 and (dequantize_kv(q, scale) - x).abs().max() <= scale.max() / 2


def test_stub_reports_todo_everywhere():
    def quantize_kv(x):
        raise NotImplementedError

    def dequantize_kv(q, scale):
        raise NotImplementedError

    assert {r.status for r in check_kv_int8(quantize_kv, dequantize_kv).results} == {TODO}


@pytest.mark.parametrize(
    "quantize_kv, dequantize_kv, check, words",
    [
        (global_scale, None, "scale per token", "one scale for the whole tensor (a global scale)"),
        (global_scale, None, "round trip", "steps (scale = max|x| / 127) away"),
        (per_channel, None, "scale per token", "taken over the tokens (dim -2)"),
        (no_keepdim, None, "scale per token", "keep the reduced dim (keepdim=True)"),
        (max_not_abs, None, "scale per token", "uses max(x), not max(|x|)"),
        (divide_by_128_no_clamp, None, "scale per token", "scale = max|x| / 128"),
        (divide_by_128_no_clamp, None, "round trip", "wrapped around to a negative code"),
        (divide_by_128_no_clamp, None, "no overflow", "wrong sign"),
        (divide_by_128_clamped, None, "no overflow", "a code of -128 was used"),
        (unsigned_range, None, "scale per token", "255 (the unsigned range)"),
        (uint8_codes, None, "int8 codes", "q is uint8"),
        (truncates, None, "round trip", "truncated toward zero"),
        (floors, None, "round trip", "rounded down (floor)"),
        (no_cast, None, "int8 codes", "store the codes as torch.int8"),
        (no_cast, None, "all-zero token", "gives NaN (0 / 0)"),
        (returns_codes_only, None, "int8 codes", "return a pair (q, scale)"),
        (None, forgets_the_scale, "dequantize", "returns the codes as floats"),
        (None, divides_by_scale, "dequantize", "divides by scale"),
        (None, forgets_the_scale, "trained model", "logits move by up to"),
        (max_not_abs, None, "trained model", "logits move by up to"),
        (per_head, None, "scale per token", "one scale per head, over all its tokens"),
        (over_heads, None, "scale per token", "taken over the heads (dim 1)"),
        (over_batch, None, "scale per token", "taken over the batch (dim 0)"),
        (mean_not_max, None, "scale per token", "the mean of |x|, not the max"),
        (zero_point, None, "scale per token", "asymmetric (zero-point) scale"),
        (multiplies, None, "round trip", "x is multiplied by the scale; divide it"),
        (max_returns_a_pair, None, "int8 codes", "take .values, or use"),
        (in_place, None, "x unchanged", "changed x in place"),
        (ceils, None, "round trip", "rounded up (ceil)"),
        (None, dequantize_float16, "dequantize", "returns torch.float16, which rounds"),
        (None, dequantize_float16, "round trip", "returns torch.float16, which rounds"),
        (None, dequantize_divides_by_127, "dequantize", "divides by 127 again"),
        (None, dequantize_squeezed, "dequantize", "broadcasts against x (B, H, T, D) as it is"),
    ],
)
def test_each_mistake_fails_its_check_with_a_reason(quantize_kv, dequantize_kv, check, words):
    assert_fails_with(statuses(quantize_kv or solution()[0], dequantize_kv), check, words)


def test_the_gallery_is_large_enough():
    wrong = [
        name for name, value in globals().items() if callable(value) and name in _GALLERY_NAMES
    ]
    assert len(wrong) >= 15


_GALLERY_NAMES = """global_scale per_channel no_keepdim max_not_abs divide_by_128_no_clamp
divide_by_128_clamped unsigned_range uint8_codes truncates floors no_cast returns_codes_only
forgets_the_scale divides_by_scale per_head over_heads over_batch mean_not_max zero_point
multiplies max_returns_a_pair in_place ceils dequantize_float16 dequantize_divides_by_127
dequantize_squeezed""".split()


def test_trained_model_check_error_is_small_for_the_solution():
    status, message = statuses(*solution())["trained model"]
    assert status == PASS and float(message.rsplit(" ", 3)[-3]) < 0.05


# ---- mistakes of fresh learners (issue #24) that the first checks let through ----------------


def guards_the_scale(x):
    """Adds epsilon to the scale itself: an all-zero token's scale is 1e-12, not 0."""
    scale = x.abs().amax(dim=-1, keepdim=True) / 127 + 1e-12
    return (x / scale).round().clamp(-127, 127).char(), scale


def clamps_the_scale(x):
    scale = (x.abs().amax(dim=-1, keepdim=True) / 127).clamp_min(1e-8)
    return (x / scale).round().clamp(-127, 127).to(torch.int8), scale


FRESH = [  # (quantize_kv, dequantize_kv, check that must FAIL, words its message must contain)
    (guards_the_scale, None, "quantize_kv boundary cases", "an all-zero token's scale is 0"),
    (guards_the_scale, None, "quantize_kv boundary cases", "(an all-zero token has scale 0"),
    (clamps_the_scale, None, "quantize_kv boundary cases", "guard only the division"),
    (clamps_the_scale, None, "quantize_kv generated inputs", "an all-zero token's scale is 0"),
]


@pytest.mark.parametrize(
    "quantize_kv, dequantize_kv, check, words",
    FRESH,
    ids=[f"{(q or d).__name__}-{c}" for q, d, c, _ in FRESH],
)
def test_fresh_mistake_fails_with_its_counterexample(quantize_kv, dequantize_kv, check, words):
    assert_fails_with(statuses(quantize_kv or solution()[0], dequantize_kv), check, words)


def times_127_over_max(x):
    """Correct too: x * (127 / max|x|) (another rounding of the same ratio), NaN set to 0."""
    top = x.abs().amax(dim=-1, keepdim=True)
    q = torch.nan_to_num(torch.round(x * (127 / top)), nan=0.0)
    return q.clamp(-127, 127).to(torch.int8), top / 127


def test_a_ratio_computed_another_way_passes():
    assert check_kv_int8(times_127_over_max, solution()[1]).solved

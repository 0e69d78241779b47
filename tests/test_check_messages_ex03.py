"""Exercise 3's checks can fail, and say what is wrong in one sentence; llmlab.positions validates its input.

Each broken sinusoidal_encoding or apply_rope below makes one classic mistake; the matching check
must FAIL with a message that names it, while the reference solution passes every check.
"""

import math

import pytest
import torch
from notebook_tools import assert_fails_with, load_solution

from llmlab import positions
from llmlab.checks import FAIL, TODO, run_checks
from llmlab.checks.ex03_positions import (
    ROPE_CHECKS,
    SINUSOIDAL_CHECKS,
    check_rope,
    check_sinusoidal,
)

SOLUTION = load_solution("03_positions")


# ---- broken sinusoidal tables ----------------------------------------------------------------


def table_variant(exponent="2i", swap=False, layout="interleaved", sin_only=False, base=10000, multiply=False,
                  dtype=torch.float32, transpose=False, start=0):  # fmt: skip
    def sinusoidal_encoding(n_positions, d_model):
        pos = torch.arange(start, start + n_positions, dtype=torch.float64)[:, None]
        cols = torch.arange(d_model, dtype=torch.float64)
        pair = (
            torch.div(cols, 2, rounding_mode="floor")
            if layout == "interleaved"
            else cols % (d_model // 2)
        )
        power = {"2i": 2 * pair, "i": pair, "column": cols}[exponent] / d_model
        angles = (
            pos * base**power if multiply else pos / base**power
        )  # (P, d_model), one angle per column
        is_first = cols % 2 == 0 if layout == "interleaved" else cols < d_model // 2
        first, second = (torch.cos, torch.sin) if swap else (torch.sin, torch.cos)
        pe = torch.where(is_first, first(angles), first(angles) if sin_only else second(angles))
        pe = pe.to(dtype)
        return pe.T if transpose else pe

    return sinusoidal_encoding


def rope_variant(direction=1, layout="interleaved", ignore_positions=False, base=10000.0,
                 scale_only=False, offset=0, exponent="2i", swap=False, write="interleaved",
                 same_angle=False, multiply=False):  # fmt: skip
    def apply_rope(x, positions):
        T, d = x.shape[-2:]
        pos = torch.arange(T) if ignore_positions else torch.as_tensor(positions)
        pair = torch.arange(0, d, 2) if exponent == "2i" else torch.arange(d // 2)
        freq = base ** (pair.double() / d)
        if same_angle:
            freq = torch.ones_like(freq)
        pos = pos.double()[:, None] + offset
        angles = direction * (pos * freq if multiply else pos / freq)
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        if swap:
            cos, sin = sin, cos
        if layout == "interleaved":
            a, b = x[..., 0::2], x[..., 1::2]
        else:
            a, b = x[..., : d // 2], x[..., d // 2 :]
        if scale_only:  # multiplies by cos and adds sin instead of rotating
            new_a, new_b = a * cos + sin, b * cos + sin
        else:
            new_a, new_b = a * cos - b * sin, a * sin + b * cos
        if layout == "interleaved" and write == "interleaved":
            return torch.stack([new_a, new_b], dim=-1).flatten(-2)
        return torch.cat([new_a, new_b], dim=-1)

    return apply_rope


def rope_in_place(x, positions):  # overwrites x's even coordinates, then reads them back
    d = x.size(-1)
    angles = torch.as_tensor(positions)[:, None] / 10000 ** (torch.arange(0, d, 2) / d)
    x[..., 0::2] = x[..., 0::2] * angles.cos() - x[..., 1::2] * angles.sin()
    x[..., 1::2] = x[..., 0::2] * angles.sin() + x[..., 1::2] * angles.cos()
    return x


def rope_first_two_dims(x, positions):  # x[:, 0::2] slices dim 1, right only for (T, d) inputs
    d = x.size(-1)
    angles = torch.as_tensor(positions).double()[:, None] / 10000 ** (torch.arange(0, d, 2) / d)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    a, b = x[:, 0::2], x[:, 1::2]
    return torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1).flatten(-2)


def statuses(checks, fn, name):
    return {r.name: (r.status, r.message) for r in run_checks(checks, fn, name).results}


def test_the_variants_reproduce_the_reference_when_unbroken():
    assert torch.equal(table_variant()(12, 8), positions.sinusoidal_encoding(12, 8))
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    assert torch.allclose(
        rope_variant()(x, torch.arange(3, 8)), positions.apply_rope(x, range(3, 8))
    )


def test_reference_solution_passes_all():
    a, b = check_sinusoidal(SOLUTION.sinusoidal_encoding), check_rope(SOLUTION.apply_rope)
    assert a.solved and len(a.results) == len(SINUSOIDAL_CHECKS)
    assert b.solved and len(b.results) == len(ROPE_CHECKS)


def test_solution_matches_the_library():
    assert torch.allclose(
        SOLUTION.sinusoidal_encoding(30, 12), positions.sinusoidal_encoding(30, 12)
    )
    x = torch.randn(3, 7, 10)
    assert torch.allclose(
        SOLUTION.apply_rope(x, torch.arange(7)), positions.apply_rope(x, torch.arange(7))
    )


def test_stubs_report_todo_everywhere():
    def stub(*args):
        raise NotImplementedError

    for report in (check_sinusoidal(stub), check_rope(stub)):
        assert {r.status for r in report.results} == {TODO} and not report.solved


TABLE_WRONG = [  # (learner's sinusoidal_encoding, check that must FAIL, words it must say)
    (table_variant(swap=True), "A position 0", "[0, 1, 0, 1, ...]"),
    (table_variant(swap=True), "A values", "swapped"),
    (table_variant(layout="halves"), "A values", "first half"),
    (table_variant(exponent="column"), "A values", "(2i + 1) / d_model"),
    (table_variant(exponent="column"), "A offsets", "depends only on the offset"),
    (table_variant(exponent="i"), "A values", "should be 2i / d_model"),
    (table_variant(multiply=True), "A values", "divide instead"),
    (table_variant(base=1000), "A values", "base is 1000"),
    (table_variant(sin_only=True), "A offsets", "changes with p"),
    (table_variant(dtype=torch.float64), "A dtype", "float32"),
    (table_variant(transpose=True), "A shape", "one row per position"),
    (table_variant(start=1), "A position 0", "start at position 1"),
    (table_variant(start=1), "A values", "start at position 1"),
]


@pytest.mark.parametrize("broken, check, words", TABLE_WRONG, ids=[w for _, _, w in TABLE_WRONG])
def test_each_table_mistake_fails_its_check_with_a_reason(broken, check, words):
    assert_fails_with(statuses(SINUSOIDAL_CHECKS, broken, "sinusoidal_encoding"), check, words)


ROPE_WRONG = [  # (learner's apply_rope, check that must FAIL, words its message must contain)
    (rope_variant(direction=-1), "B values", "wrong way"),
    (rope_variant(layout="halves"), "B values", "rotate-half"),
    (rope_variant(write="halves"), "B values", "written back as two halves"),
    (rope_variant(write="halves"), "B position 0", "written back as two halves"),
    (rope_variant(swap=True), "B position 0", "cos and sin are swapped"),
    (rope_variant(ignore_positions=True), "B values", "instead of the given positions"),
    (rope_variant(ignore_positions=True), "B position 0", "instead of the given positions"),
    (rope_variant(offset=1), "B values", "positions[t] + 1"),
    (rope_variant(base=1000.0), "B values", "base is 1000"),
    (rope_variant(exponent="i"), "B values", "exponent i / d"),
    (rope_variant(multiply=True), "B values", "divide instead"),
    (rope_variant(same_angle=True), "B values", "same angle"),
    (rope_variant(scale_only=True), "B lengths", "keeps every vector's length"),
    (rope_variant(scale_only=True), "B relative", "depend only on m - n"),
    (rope_in_place, "B input unchanged", "changed x in place"),
    (rope_in_place, "B values", "already rotated first one"),
    (rope_first_two_dims, "B shape and dtype", "x[..., 0::2]"),
]


@pytest.mark.parametrize("broken, check, words", ROPE_WRONG, ids=[w for _, _, w in ROPE_WRONG])
def test_each_rope_mistake_fails_its_check_with_a_reason(broken, check, words):
    assert_fails_with(statuses(ROPE_CHECKS, broken, "apply_rope"), check, words)


def test_the_galleries_are_large_enough():
    assert len({id(fn) for fn, _, _ in TABLE_WRONG}) >= 8
    assert len({id(fn) for fn, _, _ in ROPE_WRONG}) >= 8


@pytest.mark.parametrize(
    "broken, check, words",
    TABLE_WRONG + ROPE_WRONG,
    ids=[w for _, _, w in TABLE_WRONG + ROPE_WRONG],
)
def test_no_named_mistake_gets_the_generic_message(broken, check, words):
    rope = any(broken is fn for fn, _, _ in ROPE_WRONG)
    checks, name = (
        (ROPE_CHECKS, "apply_rope") if rope else (SINUSOIDAL_CHECKS, "sinusoidal_encoding")
    )
    message = statuses(checks, broken, name)[check][1]
    assert "differs from" not in message and not message.startswith(f"{name}() raised"), message


# ---- correct answers written differently: every check must PASS -----------------------------


def table_float32_angles(n_positions, d_model):  # torch's default dtype all the way
    pos = torch.arange(n_positions)[:, None]
    angles = pos / 10000 ** (torch.arange(0, d_model, 2) / d_model)
    pe = torch.zeros(n_positions, d_model)
    pe[:, 0::2], pe[:, 1::2] = angles.sin(), angles.cos()
    return pe


def table_exp_log(n_positions, d_model):  # the annotated-transformer idiom
    div = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
    angles = torch.arange(n_positions).unsqueeze(1) * div
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)


def rope_float32_angles(x, positions):  # angles in float32, torch's default: correct
    d = x.size(-1)
    inv_freq = 1.0 / 10000 ** (torch.arange(0, d, 2).float() / d)
    angles = torch.as_tensor(positions)[:, None] * inv_freq
    x0, x1 = x[..., 0::2], x[..., 1::2]
    cos, sin = angles.cos(), angles.sin()
    return torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], -1).flatten(-2).to(x.dtype)


def rope_complex(x, positions):  # pairs as complex numbers, multiplied by e^(i angle)
    d = x.size(-1)
    angles = torch.as_tensor(positions).double()[:, None] / 10000 ** (torch.arange(0, d, 2) / d)
    z = torch.view_as_complex(x.double().reshape(*x.shape[:-1], d // 2, 2).contiguous())
    rotated = torch.view_as_real(z * torch.polar(torch.ones_like(angles), angles))
    return rotated.flatten(-2).to(x.dtype)


def rope_rotation_matrices(x, positions):  # one explicit 2 x 2 matrix per pair
    d = x.size(-1)
    angles = torch.as_tensor(positions).double()[:, None] / 10000 ** (torch.arange(0, d, 2) / d)
    c, s = angles.cos(), angles.sin()
    rot = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)  # (T, d/2, 2, 2)
    pairs = x.double().unflatten(-1, (d // 2, 2))
    return torch.einsum("tpij,...tpj->...tpi", rot, pairs).flatten(-2).to(x.dtype)


@pytest.mark.parametrize(
    "table", [SOLUTION.sinusoidal_encoding, table_float32_angles, table_exp_log, table_variant()],
    ids=lambda f: f.__name__,
)  # fmt: skip
def test_each_correct_table_passes_every_check(table):
    report = check_sinusoidal(table)
    assert report.solved, str(report)


@pytest.mark.parametrize(
    "rope", [SOLUTION.apply_rope, rope_float32_angles, rope_complex, rope_rotation_matrices,
             rope_variant(), positions.apply_rope],
    ids=lambda f: f.__name__,
)  # fmt: skip
def test_each_correct_rope_passes_every_check(rope):
    report = check_rope(rope)
    assert report.solved, str(report)


def test_a_rope_that_changes_dtype_or_shape_is_named():
    status, message = statuses(
        ROPE_CHECKS, lambda x, p: SOLUTION.apply_rope(x, p).float(), "apply_rope"
    )["B shape and dtype"]
    assert status == FAIL and "float64" in message
    status, message = statuses(
        ROPE_CHECKS, lambda x, p: SOLUTION.apply_rope(x, p)[..., :4], "apply_rope"
    )["B shape and dtype"]
    assert status == FAIL and "keep x's shape" in message


def test_a_table_that_is_not_a_tensor_is_named():
    status, message = statuses(
        SINUSOIDAL_CHECKS,
        lambda n, d: SOLUTION.sinusoidal_encoding(n, d).tolist(),
        "sinusoidal_encoding",
    )["A shape"]
    assert status == FAIL and "torch.Tensor" in message


# ---- llmlab.positions: the properties the chapter relies on, and clear errors -----------------


def test_rope_scores_depend_only_on_the_offset_and_keep_lengths():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 32, dtype=torch.float64, generator=g)
    rq = positions.apply_rope(q.expand(20, 32), range(20))
    rk = positions.apply_rope(k.expand(20, 32), range(20))
    scores = rq @ rk.T
    assert torch.allclose(scores[3, 1], scores[10, 8]) and torch.allclose(
        scores[1, 3], scores[8, 10]
    )
    assert torch.allclose(rq.norm(dim=-1), q.norm().expand(20))


def test_sinusoidal_values_follow_the_formula():
    pe = positions.sinusoidal_encoding(8, 6, base=100.0)
    assert pe[5, 2].item() == pytest.approx(
        torch.sin(torch.tensor(5 / 100 ** (2 / 6))).item(), abs=1e-6
    )
    assert pe[5, 3].item() == pytest.approx(
        torch.cos(torch.tensor(5 / 100 ** (2 / 6))).item(), abs=1e-6
    )


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda: positions.sinusoidal_encoding(4, 7), ValueError, "d_model must be even"),
        (lambda: positions.sinusoidal_encoding(0, 8), ValueError, "n_positions must be >= 1"),
        (lambda: positions.sinusoidal_encoding(4.0, 8), TypeError, "n_positions must be an int"),
        (
            lambda: positions.sinusoidal_encoding(4, 8, base=1),
            ValueError,
            "base must be a number > 1",
        ),
        (
            lambda: positions.apply_rope(torch.randn(3, 5), [0, 1, 2]),
            ValueError,
            "x.shape[-1] must be even",
        ),
        (
            lambda: positions.apply_rope(torch.randn(3, 4), [0, 1]),
            ValueError,
            "3 integer positions",
        ),
        (
            lambda: positions.apply_rope(torch.randn(3, 4), [0.0, 1.0, 2.0]),
            ValueError,
            "integer positions",
        ),
        (
            lambda: positions.apply_rope(torch.arange(12).view(3, 4), [0, 1, 2]),
            TypeError,
            "floating-point",
        ),
        (lambda: positions.apply_rope(torch.randn(4), [0]), ValueError, "(..., T, d)"),
    ],
)
def test_bad_arguments_get_clear_errors(call, error, words):
    with pytest.raises(error) as info:
        call()
    assert words in str(info.value)


def rope_tensor_positions_only(x, positions):  # positions[:, None] needs a tensor
    d = x.size(-1)
    angles = positions[:, None] / 10000 ** (torch.arange(0, d, 2) / d)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    out = torch.empty_like(x)
    out[..., 0::2] = x[..., 0::2] * cos - x[..., 1::2] * sin
    out[..., 1::2] = x[..., 0::2] * sin + x[..., 1::2] * cos
    return out


def rope_sorted_positions(x, positions):
    return SOLUTION.apply_rope(x, torch.sort(torch.as_tensor(positions)).values)


# Mistakes every named check let through before issue #24; the differential checks show the input.
UNLISTED = [
    (rope_tensor_positions_only, "B boundary cases",
     "for x of shape (1, 2) (float32) and positions [3] (a list) (one row, one pair; positions as "
     "a list) your apply_rope() raised TypeError"),
    (rope_sorted_positions, "B boundary cases",
     "and positions [40, 2, 17] (a tensor) (adjacent pairs (2i, 2i + 1), angle positions[t] / "
     "10000^(2i / d)) your apply_rope() returned "),
]  # fmt: skip


@pytest.mark.parametrize("wrong, check, words", UNLISTED, ids=["list positions", "sorted"])
def test_unlisted_mistake_fails_with_its_counterexample(wrong, check, words):
    result = statuses(ROPE_CHECKS, wrong, "apply_rope")
    assert_fails_with(result, check, words)
    named = [name for name, (s, _) in result.items() if s == FAIL and "cases" not in name
             and "generated" not in name and "worked" not in name]  # fmt: skip
    assert not named, f"a named check catches it after all: {named}; move it to the gallery"

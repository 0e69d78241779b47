"""Exercise 1's checks never mislead: a gallery of wrong answers and of right ones.

WRONG holds plausible mistakes, each written the way a learner writes it; the named check must
FAIL with the sentence that names that mistake. RIGHT holds correct answers written in other
ways (float64 inside, einsum, SDPA, manual stable softmax, another mask idiom); each must PASS
every check. A check that lets a WRONG answer pass, or fails a RIGHT one, is a defect.
"""

import math
import re

import pytest
import torch
import torch.nn.functional as F
from notebook_tools import assert_fails_with, load_solution

from llmlab.checks import FAIL, PASS, TODO, CheckFailed, run_checks
from llmlab.checks.ex01_attention import CHECKS, check_attention

SOLUTION = load_solution("01_attention")


def allowed_keys(T, S):
    """(T, S) True where query i (at position S - T + i) may look."""
    return torch.ones(T, S, dtype=torch.bool).tril(S - T)


def learner(scale=None, mask=None, fill=-math.inf, dim=-1, after=False, transpose=None):
    """attention written the usual way with one switch flipped; the defaults are correct."""

    def attention(q, k, v, causal=False):
        d = q.size(-1) if scale is None else scale(q, k, v)
        kt = k.transpose(-2, -1) if transpose is None else transpose(k)
        scores = q @ kt
        if not after:
            scores = scores / math.sqrt(d)
        if causal:
            T, S = scores.shape[-2:]
            allowed = allowed_keys(T, S) if mask is None else mask(T, S)
            if allowed is not None:
                scores = scores.masked_fill(~allowed, fill)
        weights = torch.softmax(scores, dim=dim)
        if after:
            weights = weights / math.sqrt(d)
        return weights @ v, weights

    return attention


def no_scaling(q, k, v, causal=False):
    weights = torch.softmax(q @ k.transpose(-2, -1), dim=-1)
    return weights @ v, weights


def exp_without_max(q, k, v, causal=False):
    e = (q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))).exp()
    weights = e / e.sum(-1, keepdim=True)
    return weights @ v, weights


def swapped_pair(q, k, v, causal=False):
    out, weights = SOLUTION.attention(q, k, v, causal)
    return weights, out


def output_only(q, k, v, causal=False):
    return SOLUTION.attention(q, k, v, causal)[0]


def weights_twice(q, k, v, causal=False):
    weights = SOLUTION.attention(q, k, v, causal)[1]
    return weights, weights


def keys_times_queries(q, k, v, causal=False):
    weights = torch.softmax(k @ q.transpose(-2, -1) / math.sqrt(q.size(-1)), dim=-1)
    return weights.transpose(-2, -1) @ v, weights


def casts_to_float32(q, k, v, causal=False):
    return SOLUTION.attention(q.float(), k.float(), v.float(), causal)


def square_mask(q, k, v, causal=False):  # builds the mask from T alone: crashes when T != S
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if causal:
        T = q.size(-2)
        scores = scores.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), -math.inf)
    weights = torch.softmax(scores, dim=-1)
    return weights @ v, weights


def output_without_v(q, k, v, causal=False):
    out, weights = SOLUTION.attention(q, k, v, causal)
    return out * 2, weights  # anything that is not weights @ v


WRONG = [  # (learner's attention, check that must FAIL, words its message must contain)
    (learner(scale=lambda q, k, v: v.size(-1)), "values", "divided by sqrt(d_v)"),
    (learner(scale=lambda q, k, v: v.size(-1)), "heads dimension", "divided by sqrt(d_v)"),
    (no_scaling, "values", "not scaled"),
    (learner(scale=lambda q, k, v: q.size(-1) ** 2), "values", "divided by d_k"),
    (learner(scale=lambda q, k, v: 1 / q.size(-1)), "values", "multiplied by sqrt(d_k)"),
    (learner(scale=lambda q, k, v: q.size(1)), "values", "divided by sqrt(T)"),
    (learner(scale=lambda q, k, v: k.size(-2)), "values", "divided by sqrt(S)"),
    (learner(after=True), "rows sum to 1", "scaling comes after the softmax"),
    (learner(after=True), "values", "scaling comes after the softmax"),
    (learner(dim=-2), "rows sum to 1", "over the queries"),
    (learner(dim=-2), "values", "over the queries"),
    (learner(dim=1), "heads dimension", "is the heads"),
    (learner(mask=lambda T, S: None), "causal mask", "causal=True is ignored"),
    (learner(mask=lambda T, S: None), "causal values", "causal=True is ignored"),
    (learner(fill=0.0), "causal mask", "set to 0"),
    (learner(fill=0.0), "causal values", "set to 0"),
    (learner(mask=lambda T, S: allowed_keys(T, S).tril(-1)), "causal mask", "hides the diagonal"),
    (learner(mask=lambda T, S: ~allowed_keys(T, S)), "causal mask", "fills where the mask is True"),
    (learner(mask=lambda T, S: allowed_keys(S, T).T), "causal mask", "wrong way round"),
    (learner(mask=lambda T, S: torch.ones(T, S).tril().bool()), "causal after a cache", "S - T"),
    (square_mask, "causal after a cache", "mask must have shape (T, S)"),
    (learner(transpose=lambda k: k.T), "values", "k.transpose(-2, -1)"),
    (learner(transpose=lambda k: k.transpose(1, 2)), "heads dimension", "not dims 1 and 2"),
    (exp_without_max, "large scores", "subtract each row's max"),
    (swapped_pair, "shapes", "wrong way round: return (output, weights)"),
    (weights_twice, "shapes", "the output has the weights' shape"),
    (keys_times_queries, "shapes", "not k @ q^T"),
    (output_only, "returns a pair", "tuple (output, weights)"),
    (casts_to_float32, "dtype", "keep the input dtype"),
    (output_without_v, "values", "output is not weights @ v"),
]


def statuses(fn):
    return {r.name: (r.status, r.message) for r in run_checks(CHECKS, fn, "attention").results}


def test_the_gallery_is_large_enough():
    assert len({id(fn) for fn, _, _ in WRONG}) >= 8


@pytest.mark.parametrize("wrong, check, words", WRONG, ids=[w for _, _, w in WRONG])
def test_each_mistake_fails_with_the_sentence_that_names_it(wrong, check, words):
    assert_fails_with(statuses(wrong), check, words)


@pytest.mark.parametrize("wrong, check, words", WRONG, ids=[w for _, _, w in WRONG])
def test_no_failure_message_is_a_bare_difference_or_a_raw_crash(wrong, check, words):
    # The generic fallbacks are for mistakes nobody foresaw; every one here is foreseen.
    message = statuses(wrong)[check][1]
    generic = ("differs by up to", "differ by up to", "contains NaN", "contain NaN")
    assert not any(words in message for words in generic), message
    assert not message.startswith("attention() raised"), message


# ---- correct answers written differently: every check must PASS -----------------------------


def in_float64(q, k, v, causal=False):
    out, weights = SOLUTION.attention(q.double(), k.double(), v.double(), causal)
    return out.to(q.dtype), weights.to(q.dtype)


def with_einsum(q, k, v, causal=False):
    scores = torch.einsum("...td,...sd->...ts", q, k) / q.size(-1) ** 0.5
    if causal:
        T, S = scores.shape[-2:]
        scores = torch.where(allowed_keys(T, S), scores, float("-inf"))
    weights = scores.softmax(-1)
    return torch.einsum("...ts,...sd->...td", weights, v), weights


def with_sdpa(q, k, v, causal=False):
    T, S = q.size(-2), k.size(-2)
    mask = allowed_keys(T, S) if causal else None
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    scores = q @ k.mT * q.size(-1) ** -0.5
    if causal:
        scores = scores.masked_fill(~mask, -torch.inf)
    return out, scores.softmax(dim=-1)


def manual_stable_softmax(q, k, v, causal=False):
    scaled_q = q / torch.tensor(q.size(-1), dtype=q.dtype).sqrt()  # scale q, not the scores
    scores = scaled_q @ k.transpose(-1, -2)
    if causal:
        T, S = scores.shape[-2:]
        later = torch.ones(T, S, dtype=torch.bool).triu(S - T + 1)
        scores = scores.masked_fill(later, torch.finfo(scores.dtype).min)
    e = (scores - scores.amax(-1, keepdim=True)).exp()
    weights = e / e.sum(-1, keepdim=True)
    return weights @ v, weights


def float32_inside(q, k, v, causal=False):  # computes in float32, returns the input dtype
    out, weights = SOLUTION.attention(q.float(), k.float(), v.float(), causal)
    return out.to(q.dtype), weights.to(q.dtype)


RIGHT = [SOLUTION.attention, in_float64, with_einsum, with_sdpa, manual_stable_softmax,
         float32_inside, learner()]  # fmt: skip


@pytest.mark.parametrize("right", RIGHT, ids=lambda f: f.__name__)
def test_each_correct_variant_passes_every_check(right):
    report = check_attention(right)
    assert report.solved and len(report.results) == len(CHECKS), str(report)


def test_stub_reports_todo_everywhere():
    def attention(q, k, v, causal=False):
        raise NotImplementedError

    report = check_attention(attention)
    assert {r.status for r in report.results} == {TODO}
    assert not report.solved


def test_an_unexplained_crash_is_one_line_with_its_error():
    def crashing(q, k, v, causal=False):
        return q @ v  # shapes do not line up anywhere

    result = statuses(crashing)
    assert all(status == FAIL for status, _ in result.values())
    assert "raised RuntimeError" in result["shapes"][1]
    assert all("\n" not in message for _, message in result.values())


def test_report_prints_one_line_per_check(capsys):
    check_attention(SOLUTION.attention)
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines[:-1]] == [PASS] * len(CHECKS)
    assert lines[-1] == f"All {len(CHECKS)} checks pass."


def causal_by_default(q, k, v, causal=True):
    return SOLUTION.attention(q, k, v, causal)


def scales_q_in_place(q, k, v, causal=False):
    q /= math.sqrt(q.size(-1))  # the caller's q is divided too
    scores = q @ k.transpose(-2, -1)
    if causal:
        T, S = scores.shape[-2:]
        scores = scores.masked_fill(~allowed_keys(T, S), -math.inf)
    weights = torch.softmax(scores, dim=-1)
    return weights @ v, weights


def mask_sized_by_dim_1(q, k, v, causal=False):  # q.size(1) is T only for (batch, T, d) inputs
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if causal:
        T, S = q.size(1), k.size(1)
        scores = scores.masked_fill(~allowed_keys(T, S), -math.inf)
    weights = torch.softmax(scores, dim=-1)
    return weights @ v, weights


DIFF_CHECKS = ("worked examples", "boundary cases", "generated inputs")

# Mistakes every named check let through before issue #24; the differential checks show the input.
UNLISTED = [
    (causal_by_default, "boundary cases", "(causal left out) (no leading dimensions: one (T, d_k) "
     "matrix) your attention() returned output[0, 1] = -1.049; the answer is -0.34; causal "
     "defaults to True in yours; left out, it is False: no mask"),
    (mask_sized_by_dim_1, "boundary cases", "(2, 2, 3, 16), k (2, 2, 7, 16), v (2, 2, 7, 6)"),
]  # fmt: skip


@pytest.mark.parametrize("wrong, check, words", UNLISTED, ids=lambda x: getattr(x, "__name__", ""))
def test_unlisted_mistake_fails_with_its_counterexample(wrong, check, words):
    result = statuses(wrong)
    assert_fails_with(result, check, words)
    assert result[check][1].startswith("for q (")
    named = [name for name, (s, _) in result.items() if s != PASS and name not in DIFF_CHECKS]
    assert not named, f"a named check catches it after all: {named}; move it to WRONG"


def test_a_changed_input_is_named():
    result = statuses(scales_q_in_place)
    assert_fails_with(
        result, "boundary cases", "your attention() changed its argument q (q's values"
    )


def test_generated_inputs_find_a_small_counterexample():
    from llmlab.checks.ex01_attention import DIFF

    with pytest.raises(CheckFailed) as failure:
        DIFF.check_generated(mask_sized_by_dim_1)
    assert str(failure.value).startswith("for q (1, 2, 1, 1), k (1, 2, 1, 1), v (1, 2, 1, 1)")


def test_the_worked_example_shows_both_results_and_names_the_mistake():
    message = statuses(no_scaling)["worked examples"][1]
    # Every entry is off by the same amount: which one is shown may depend on the last bit.
    assert re.fullmatch(
        r"for q \(2, 2\), k \(2, 2\), v \(2, 2\) \(float32\) \(causal left out\) your "
        r"attention\(\) returned output\[\d, \d\] = [\d.]+; the answer is [\d.]+; the scores "
        r"are not scaled: divide q @ k\^T by sqrt\(d_k\)",
        message,
    ), message

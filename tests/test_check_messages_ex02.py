"""Exercise 2's checks can fail, and say what is wrong in one sentence.

Each broken function below makes one classic mistake with heads (reshape without transpose,
.view after transpose, no ValueError, no causal mask, the wrong scale, no output projection,
one head in disguise); the matching check must FAIL with a message that names it.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from notebook_tools import assert_fails_with, load_solution

from llmlab.checks import FAIL, PASS, TODO, run_checks
from llmlab.checks.ex02_multi_head import (
    CHECKS,
    MERGE_CHECKS,
    MHA_CHECKS,
    SPLIT_CHECKS,
    check_multi_head,
)

SOL = load_solution("02_multi_head")


def stub(*args, **kwargs):
    raise NotImplementedError


# --- broken split_heads / merge_heads --------------------------------------------------------


def split_reshape_only(x, n_heads):  # the classic: right shape, wrong contents
    B, T, C = x.shape
    return x.reshape(B, n_heads, T, C // n_heads)


def split_strided(x, n_heads):  # heads interleaved feature by feature
    B, T, C = x.shape
    return x.view(B, T, C // n_heads, n_heads).permute(0, 3, 1, 2)


def split_no_check(x, n_heads):  # lets .view raise whatever it raises
    B, T, C = x.shape
    return x.view(B, T, n_heads, -1).transpose(1, 2)


def split_truncates(x, n_heads):  # silently drops the features that do not fit
    B, T, C = x.shape
    D = C // n_heads
    return x[..., : n_heads * D].reshape(B, T, n_heads, D).transpose(1, 2)


def merge_reshape_only(y):
    B, H, T, D = y.shape
    return y.reshape(B, T, H * D)


def merge_view_after_transpose(y):
    B, H, T, D = y.shape
    return y.transpose(1, 2).view(B, T, H * D)


def merge_strided(y):
    B, H, T, D = y.shape
    return y.permute(0, 2, 3, 1).reshape(B, T, H * D)


# --- broken multi_head_attention -------------------------------------------------------------


def mha_variant(causal=True, scale="head", project_out=True, heads=None, split=None,
                merge=None, linear=False, dim=-1, fill=float("-inf"), diagonal=True):  # fmt: skip
    """multi_head_attention as a learner writes it, one switch flipped; defaults are right."""
    split = split or SOL.split_heads
    merge = merge or SOL.merge_heads

    def multi_head_attention(x, w_q, w_k, w_v, w_o, n_heads):
        H = n_heads if heads is None else heads
        T, C = x.shape[1:]
        project = (lambda t, w: F.linear(t, w)) if linear else (lambda t, w: t @ w)
        q, k, v = (split(project(x, w), H) for w in (w_q, w_k, w_v))
        d = {"head": q.size(-1), "width": C, "none": 1}[scale]
        scores = q @ k.transpose(-2, -1) / math.sqrt(d)
        if causal:
            hidden = torch.ones(T, T, dtype=torch.bool).triu(1 if diagonal else 0)
            scores = scores.masked_fill(hidden, fill)
        y = merge(torch.softmax(scores, dim=dim) @ v)
        return project(y, w_o) if project_out else y

    return multi_head_attention


def forgot_to_merge(x, w_q, w_k, w_v, w_o, n_heads):
    q, k, v = (SOL.split_heads(x @ w, n_heads) for w in (w_q, w_k, w_v))
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


def sdpa_without_is_causal(x, w_q, w_k, w_v, w_o, n_heads):
    q, k, v = (SOL.split_heads(x @ w, n_heads) for w in (w_q, w_k, w_v))
    return SOL.merge_heads(F.scaled_dot_product_attention(q, k, v)) @ w_o


def split_forgets_transpose(x, n_heads):
    B, T, C = x.shape
    return x.view(B, T, n_heads, C // n_heads)


def merge_forgets_flatten(y):
    return y.transpose(1, 2)


def results(split=SOL.split_heads, merge=SOL.merge_heads, mha=SOL.multi_head_attention):
    out = {}
    for r in run_checks(SPLIT_CHECKS, split, "split_heads").results:
        out[r.name] = (r.status, r.message)
    for r in run_checks(MERGE_CHECKS, (split, merge), "merge_heads").results:
        out[r.name] = (r.status, r.message)
    for r in run_checks(MHA_CHECKS, mha, "multi_head_attention").results:
        out[r.name] = (r.status, r.message)
    return out


def test_reference_solution_passes_all():
    report = check_multi_head(SOL.split_heads, SOL.merge_heads, SOL.multi_head_attention)
    assert report.solved and len(report.results) == len(CHECKS)


def test_stubs_report_todo_everywhere():
    report = check_multi_head(stub, stub, stub)
    assert {r.status for r in report.results} == {TODO}
    assert not report.solved


def test_todo_names_the_function_still_to_write():
    report = check_multi_head(SOL.split_heads, stub, stub)
    todo = [r for r in report.results if r.status == TODO]
    assert {r.name for r in report.results if r.status == PASS} == {
        name for name, _ in SPLIT_CHECKS
    }
    assert todo and all(
        "merge_heads()" in r.message or "multi_head_attention()" in r.message for r in todo
    )


WRONG = [  # (the learner's functions, check that must FAIL, words its message must contain)
    (dict(split=split_reshape_only), "split order", "then transpose(1, 2)"),
    (dict(split=split_strided), "split order", "one in every 3"),
    (dict(split=split_no_check), "split error", "raised RuntimeError instead of ValueError"),
    (dict(split=split_truncates), "split error", "raise ValueError"),
    (dict(split=split_forgets_transpose), "split shape", "transpose(1, 2)"),
    (dict(merge=merge_reshape_only), "merge order", "transpose(1, 2)"),
    (dict(merge=merge_strided), "merge order", "interleaved"),
    (dict(merge=merge_view_after_transpose), "merge shape", "use .reshape"),
    (dict(merge=merge_forgets_flatten), "merge shape", "flatten the last two dimensions"),
    (dict(mha=mha_variant(causal=False)), "no peeking", "without the causal mask"),
    (dict(mha=mha_variant(causal=False)), "matches the engine", "without the causal mask"),
    (dict(mha=sdpa_without_is_causal), "no peeking", "without the causal mask"),
    (dict(mha=mha_variant(split=split_reshape_only)), "no peeking", "cut with reshape"),
    (dict(mha=mha_variant(split=split_reshape_only)), "matches the engine", "cut with reshape"),
    (dict(mha=mha_variant(merge=merge_reshape_only)), "no peeking", "merged with a reshape"),
    (
        dict(mha=mha_variant(split=split_reshape_only, merge=merge_reshape_only)),
        "matches the engine",
        "glued back with reshape",
    ),
    (dict(mha=mha_variant(split=split_strided)), "matches the engine", "every n_heads-th"),
    (dict(mha=mha_variant(linear=True)), "matches the engine", "used transposed"),
    (dict(mha=mha_variant(fill=0.0)), "no peeking", "set to 0"),
    (dict(mha=mha_variant(diagonal=False)), "no peeking", "hides the diagonal"),
    (dict(mha=mha_variant(dim=-2)), "no peeking", "over the queries"),
    (dict(mha=mha_variant(scale="width")), "matches the engine", "sqrt(head_dim)"),
    (dict(mha=mha_variant(scale="none")), "matches the engine", "not scaled"),
    (dict(mha=mha_variant(project_out=False)), "matches the engine", "w_o"),
    (dict(mha=mha_variant(heads=1)), "matches the engine", "one head of full width"),
    (dict(mha=mha_variant(heads=4)), "any number of heads", "computes 4 heads although"),
    (dict(mha=forgot_to_merge), "attention shape", "merge the heads back"),
]


def test_the_gallery_is_large_enough():
    assert len(WRONG) >= 8 and sum("mha" in kwargs for kwargs, _, _ in WRONG) >= 8


@pytest.mark.parametrize("kwargs, check, words", WRONG, ids=[w for _, _, w in WRONG])
def test_each_mistake_fails_its_check_with_a_reason(kwargs, check, words):
    assert_fails_with(results(**kwargs), check, words)


@pytest.mark.parametrize("kwargs, check, words", WRONG, ids=[w for _, _, w in WRONG])
def test_no_named_mistake_gets_the_generic_message(kwargs, check, words):
    message = results(**kwargs)[check][1]
    assert "differs from" not in message and "() raised RuntimeError (" not in message, message


# ---- correct answers written differently: every check must PASS -----------------------------


def split_permute(x, n_heads):
    if x.size(-1) % n_heads:
        raise ValueError("n_heads must divide the width")
    return x.unflatten(-1, (n_heads, -1)).permute(0, 2, 1, 3)


def split_chunks(x, n_heads):
    if x.size(-1) % n_heads:
        raise ValueError("n_heads must divide the width")
    return torch.stack(x.chunk(n_heads, dim=-1), dim=1)


def merge_permute(y):
    return y.permute(0, 2, 1, 3).flatten(2)


def merge_cat(y):
    return torch.cat(y.unbind(dim=1), dim=-1)


def mha_sdpa(x, w_q, w_k, w_v, w_o, n_heads):
    q, k, v = (split_permute(x @ w, n_heads) for w in (w_q, w_k, w_v))
    return merge_permute(F.scaled_dot_product_attention(q, k, v, is_causal=True)) @ w_o


def mha_einsum(x, w_q, w_k, w_v, w_o, n_heads):
    T = x.size(1)
    q, k, v = (split_chunks(torch.einsum("btc,cd->btd", x, w), n_heads) for w in (w_q, w_k, w_v))
    scores = torch.einsum("bhtd,bhsd->bhts", q, k) * q.size(-1) ** -0.5
    scores = torch.where(torch.ones(T, T, dtype=torch.bool).tril(), scores, -torch.inf)
    y = torch.einsum("bhts,bhsd->bhtd", scores.softmax(-1), v)
    return merge_cat(y) @ w_o


def mha_head_loop(x, w_q, w_k, w_v, w_o, n_heads):
    D = x.size(-1) // n_heads
    q, k, v = x @ w_q, x @ w_k, x @ w_v
    heads = []
    for h in range(n_heads):
        part = slice(h * D, (h + 1) * D)
        out, _ = load_solution("01_attention").attention(q[..., part], k[..., part], v[..., part],
                                                         causal=True)  # fmt: skip
        heads.append(out)
    return torch.cat(heads, dim=-1) @ w_o


def mha_float64(x, w_q, w_k, w_v, w_o, n_heads):
    weights = (w.double() for w in (w_q, w_k, w_v, w_o))
    return SOL.multi_head_attention(x.double(), *weights, n_heads).to(x.dtype)


RIGHT = [  # (split_heads, merge_heads, multi_head_attention)
    (SOL.split_heads, SOL.merge_heads, SOL.multi_head_attention),
    (split_permute, merge_permute, mha_sdpa),
    (split_chunks, merge_cat, mha_einsum),
    (SOL.split_heads, SOL.merge_heads, mha_head_loop),
    (SOL.split_heads, SOL.merge_heads, mha_float64),
    (SOL.split_heads, SOL.merge_heads, mha_variant()),
]


@pytest.mark.parametrize("fns", RIGHT, ids=lambda fns: "-".join(f.__name__ for f in fns))
def test_each_correct_variant_passes_every_check(fns):
    report = check_multi_head(*fns)
    assert report.solved and len(report.results) == len(CHECKS), str(report)


def test_reshape_without_transpose_in_both_passes_the_round_trip_but_not_the_order_checks():
    # The pair undoes itself, so only the layout checks can catch it: they must.
    result = results(split=split_reshape_only, merge=merge_reshape_only)
    assert result["round trip"][0] == PASS
    assert result["split order"][0] == FAIL and result["merge order"][0] == FAIL


def test_round_trip_catches_a_lossy_pair():
    def merge_rounds(y):
        return SOL.merge_heads(y).half().float()  # loses bits

    status, message = results(merge=merge_rounds)["round trip"]
    assert status == FAIL and "exactly" in message


def test_round_trip_asks_for_split_when_only_merge_is_written():
    status, message = results(split=stub)["round trip"]
    assert status == FAIL and "now write split_heads" in message


def test_wrong_output_shape_is_named():
    def flat(x, w_q, w_k, w_v, w_o, n_heads):
        return SOL.multi_head_attention(x, w_q, w_k, w_v, w_o, n_heads).flatten(1)

    status, message = results(mha=flat)["attention shape"]
    assert status == FAIL and "(2, 6, 16)" in message


def test_report_prints_one_line_per_check(capsys):
    check_multi_head(SOL.split_heads, SOL.merge_heads, SOL.multi_head_attention)
    lines = [
        line for line in capsys.readouterr().out.strip().splitlines() if not line.startswith("All ")
    ]
    assert [line.split()[0] for line in lines] == [PASS] * len(CHECKS)


def merge_into_float32_zeros(y):  # torch.zeros is float32 whatever y is
    B, H, T, D = y.shape
    out = torch.zeros(B, T, H * D)
    for h in range(H):
        out[:, :, h * D : (h + 1) * D] = y[:, h]
    return out


def mha_in_float32(x, w_q, w_k, w_v, w_o, n_heads):
    return SOL.multi_head_attention(*(t.float() for t in (x, w_q, w_k, w_v, w_o)), n_heads)


def split_with_assert(x, n_heads):  # the wrong kind of error: AssertionError, not ValueError
    assert x.size(-1) % n_heads == 0, "n_heads must divide the width"
    return SOL.split_heads(x, n_heads)


# Mistakes every named check let through before issue #24; the differential checks show the input.
UNLISTED = [
    (dict(merge=merge_into_float32_zeros), "merge: boundary cases",
     "for x of shape (1, 2, 1, 3) (float64) (float64 stays float64) your merge_heads() returned a "
     "result that is torch.float32, not torch.float64"),
    (dict(mha=mha_in_float32), "attention: boundary cases",
     "for x of shape (3, 4, 8) (float64), n_heads=4 (float64 stays float64) your "
     "multi_head_attention() returned a result that is torch.float32, not torch.float64"),
]  # fmt: skip


@pytest.mark.parametrize("kwargs, check, words", UNLISTED, ids=["merge", "mha"])
def test_unlisted_mistake_fails_with_its_counterexample(kwargs, check, words):
    result = results(**kwargs)
    assert_fails_with(result, check, words)
    named = [name for name, (s, _) in result.items() if s != PASS and ":" not in name]
    assert not named, f"a named check catches it after all: {named}; move it to WRONG"


def test_the_stated_error_must_be_a_value_error():
    result = results(split=split_with_assert)
    assert_fails_with(result, "split: boundary cases", "raised AssertionError (n_heads must divide")
    assert (
        "; it should raise ValueError (n_heads (5) must divide the width (12)"
        in (result["split: boundary cases"][1])
    )

"""Exercise 2's checks can fail, and say what is wrong in one sentence.

Each broken function below makes one classic mistake with heads (reshape without transpose,
.view after transpose, no ValueError, no causal mask, the wrong scale, no output projection,
one head in disguise); the matching check must FAIL with a message that names it.
"""

import math

import pytest
import torch
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


def mha_variant(causal=True, scale="head", project_out=True, heads=None):
    def multi_head_attention(x, w_q, w_k, w_v, w_o, n_heads):
        H = n_heads if heads is None else heads
        T, C = x.shape[1:]
        q, k, v = (SOL.split_heads(x @ w, H) for w in (w_q, w_k, w_v))
        d = {"head": q.size(-1), "width": C}[scale]
        scores = q @ k.transpose(-2, -1) / math.sqrt(d)
        if causal:
            scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
        y = SOL.merge_heads(torch.softmax(scores, dim=-1) @ v)
        return y @ w_o if project_out else y

    return multi_head_attention


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


@pytest.mark.parametrize(
    "kwargs, check, words",
    [
        (dict(split=split_reshape_only), "split order", "then transpose(1, 2)"),
        (dict(split=split_strided), "split order", "one in every 3"),
        (dict(split=split_no_check), "split error", "raised RuntimeError instead of ValueError"),
        (dict(split=split_truncates), "split error", "raise ValueError"),
        (dict(merge=merge_reshape_only), "merge order", "transpose(1, 2)"),
        (dict(merge=merge_strided), "merge order", "interleaved"),
        (dict(merge=merge_view_after_transpose), "merge shape", "use .reshape"),
        (dict(mha=mha_variant(causal=False)), "no peeking", "causal mask"),
        (dict(mha=mha_variant(causal=False)), "matches the engine", "without the causal mask"),
        (dict(mha=mha_variant(scale="width")), "matches the engine", "sqrt(head_dim)"),
        (dict(mha=mha_variant(project_out=False)), "matches the engine", "w_o"),
        (dict(mha=mha_variant(heads=1)), "matches the engine", "one head of full width"),
        (dict(mha=mha_variant(heads=4)), "any number of heads", "with n_heads=1"),
    ],
)
def test_each_mistake_fails_its_check_with_a_reason(kwargs, check, words):
    assert_fails_with(results(**kwargs), check, words)


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

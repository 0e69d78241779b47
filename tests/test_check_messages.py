"""The exercise checks can fail, and say what is wrong in one sentence.

Each broken attention below makes one classic mistake; the matching check must FAIL with a
message that names it, while a correct implementation passes every check.
"""

import math

import pytest
import torch
from notebook_tools import assert_fails_with, load_solution

from llmlab.checks import FAIL, PASS, TODO, run_checks
from llmlab.checks.ex01_attention import CHECKS, check_attention


def attention_variant(
    scale="sqrt", softmax_dim=-1, use_mask=True, stable=True, return_pair=True, cast=None
):
    def attention(q, k, v, causal=False):
        d_k = q.size(-1)
        factor = {"sqrt": 1 / math.sqrt(d_k), "none": 1.0, "d": 1 / d_k}[scale]
        scores = q @ k.transpose(-2, -1) * factor
        if causal and use_mask:
            T, S = scores.shape[-2:]
            scores = scores.masked_fill(
                ~torch.ones(T, S, dtype=torch.bool).tril(S - T), float("-inf")
            )
        if stable:
            weights = torch.softmax(scores, dim=softmax_dim)
        else:
            e = scores.exp()
            weights = e / e.sum(-1, keepdim=True)
        if cast is not None:
            weights = weights.to(cast)
        out = weights @ v.to(weights.dtype)
        return (out, weights) if return_pair else out

    return attention


def statuses(fn):
    return {r.name: (r.status, r.message) for r in run_checks(CHECKS, fn, "attention").results}


def test_reference_solution_passes_all():
    report = check_attention(load_solution("01_attention").attention)
    assert report.solved and len(report.results) == len(CHECKS)


def test_stub_reports_todo_everywhere():
    def attention(q, k, v, causal=False):
        raise NotImplementedError

    report = check_attention(attention)
    assert {r.status for r in report.results} == {TODO}
    assert not report.solved


@pytest.mark.parametrize(
    "broken, check, words",
    [
        (attention_variant(scale="none"), "values", "without scaling"),
        (attention_variant(scale="d"), "values", "divided by d_k"),
        (attention_variant(softmax_dim=-2), "rows sum to 1", "softmax over the keys"),
        (attention_variant(softmax_dim=-2), "values", "over the queries"),
        (attention_variant(use_mask=False), "causal mask", "causal=True is ignored"),
        (attention_variant(stable=False), "large scores", "inf or nan"),
        (attention_variant(return_pair=False), "returns a pair", "tuple (output, weights)"),
        (attention_variant(cast=torch.float32), "dtype", "float64"),
    ],
)
def test_each_mistake_fails_its_check_with_a_reason(broken, check, words):
    result = statuses(broken)
    assert_fails_with(result, check, words)


def test_wrong_shapes_are_named():
    def transposed(q, k, v, causal=False):
        out, weights = load_solution("01_attention").attention(q, k, v, causal)
        return out.transpose(-2, -1), weights

    status, message = statuses(transposed)["shapes"]
    assert status == FAIL and "(2, 5, 6)" in message


def test_a_crash_in_learner_code_is_one_line():
    def crashing(q, k, v, causal=False):
        return q @ v  # shapes do not line up

    result = statuses(crashing)
    assert all(status == FAIL for status, _ in result.values())
    assert "RuntimeError" in result["shapes"][1]


def test_report_prints_one_line_per_check(capsys):
    check_attention(load_solution("01_attention").attention)
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines[:-1]] == [PASS] * len(CHECKS)
    assert lines[-1] == f"All {len(CHECKS)} checks pass."

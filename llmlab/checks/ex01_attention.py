"""Checks for exercises/01_attention.ipynb: scaled dot-product attention with an optional causal mask.

The learner writes attention(q, k, v, causal=False) -> (output, weights), where
q is (..., T, d_k), k is (..., S, d_k), v is (..., S, d_v), output is (..., T, d_v) and
weights is (..., T, S). The reference is torch's own scaled_dot_product_attention.
"""

import math

import torch
import torch.nn.functional as F

from llmlab.checks import CheckFailed, run_checks


def _inputs(*shape_q, s=None, d_v=None, dtype=torch.float32, scale=1.0, seed=0):
    """Random q, k, v; k and v get S positions and v gets width d_v (both may differ from q's)."""
    g = torch.Generator().manual_seed(seed)
    *batch, t, d_k = shape_q
    s = t if s is None else s
    d_v = d_k if d_v is None else d_v
    q = torch.randn(*batch, t, d_k, generator=g, dtype=dtype) * scale
    k = torch.randn(*batch, s, d_k, generator=g, dtype=dtype) * scale
    v = torch.randn(*batch, s, d_v, generator=g, dtype=dtype)
    return q, k, v


def _call(attention, q, k, v, causal=False):
    result = attention(q, k, v, causal=causal)
    if not (
        isinstance(result, tuple)
        and len(result) == 2
        and all(isinstance(t, torch.Tensor) for t in result)
    ):
        raise CheckFailed(
            f"attention() must return a tuple (output, weights) of two tensors, got {type(result).__name__}"
        )
    return result


def _diagnose_values(out, q, k, v, causal):
    """A sentence naming the most likely mistake when the output is off."""
    d_k = q.size(-1)
    mask = torch.ones(q.size(-2), k.size(-2), dtype=torch.bool).tril() if causal else None

    def attn(scale, dim=-1):
        scores = q @ k.transpose(-2, -1) * scale
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        return torch.softmax(scores, dim=dim) @ v

    if torch.allclose(out, attn(1.0), atol=1e-5):
        return "output matches softmax(QK^T) V without scaling: divide the scores by sqrt(d_k)"
    if torch.allclose(out, attn(1.0 / d_k), atol=1e-5):
        return "the scores are divided by d_k; divide by sqrt(d_k) instead"
    if not causal and torch.allclose(out, attn(1 / math.sqrt(d_k), dim=-2), atol=1e-5):
        return "softmax is taken over the queries; take it over the keys (the last dimension)"
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    return f"output differs from softmax(QK^T / sqrt(d_k)) V by up to {(out - expected).abs().max().item():.3g}"


def check_returns_pair(attention):
    _call(attention, *_inputs(2, 5, 8))
    return "returns (output, weights)"


def check_shapes(attention):
    q, k, v = _inputs(2, 5, 8, s=7, d_v=6)  # 5 queries, 7 keys, values of width 6
    out, weights = _call(attention, q, k, v)
    if tuple(weights.shape) != (2, 5, 7):
        raise CheckFailed(
            f"weights have shape {tuple(weights.shape)}, expected (2, 5, 7): one row per query, one column per key"
        )
    if tuple(out.shape) != (2, 5, 6):
        raise CheckFailed(
            f"output has shape {tuple(out.shape)}, expected (2, 5, 6): one row per query, as wide as v"
        )
    return "output (2, 5, 6) and weights (2, 5, 7) for 5 queries, 7 keys, d_v = 6"


def check_dtype(attention):
    out, weights = _call(attention, *_inputs(1, 4, 8, dtype=torch.float64))
    if out.dtype != torch.float64 or weights.dtype != torch.float64:
        raise CheckFailed(
            f"float64 inputs gave output {out.dtype} and weights {weights.dtype}; keep the input dtype"
        )
    return "float64 in, float64 out"


def check_rows_sum_to_one(attention):
    _, weights = _call(attention, *_inputs(2, 6, 8))
    sums = weights.sum(-1)
    if not torch.allclose(sums, torch.ones_like(sums), atol=1e-5):
        raise CheckFailed(
            f"rows of weights sum to between {sums.min().item():.3g} and {sums.max().item():.3g}, not 1: "
            "apply softmax over the keys (the last dimension)"
        )
    if weights.min() < 0:
        raise CheckFailed(
            f"weights contain a negative value ({weights.min().item():.3g}); softmax outputs are >= 0"
        )
    return "every row of weights is a probability distribution"


def check_values(attention):
    q, k, v = _inputs(2, 5, 16, s=7)
    out, _ = _call(attention, q, k, v)
    expected = F.scaled_dot_product_attention(q, k, v)
    if not torch.allclose(out, expected, atol=1e-5):
        raise CheckFailed(_diagnose_values(out, q, k, v, causal=False))
    return "matches torch's scaled_dot_product_attention to 1e-5"


def check_causal_mask(attention):
    q, k, v = _inputs(1, 6, 8)
    _, weights = _call(attention, q, k, v, causal=True)
    future = weights[0].triu(diagonal=1)  # weight a query gives to positions after it
    if future.abs().max() > 1e-6:
        row = int(future.sum(-1).argmax())
        raise CheckFailed(
            f"causal=True is ignored: query {row} gives {future[row].sum().item():.2f} of its weight to later positions"
        )
    return "with causal=True no query looks ahead"


def check_causal_values(attention):
    q, k, v = _inputs(2, 6, 8)
    out, _ = _call(attention, q, k, v, causal=True)
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    if not torch.allclose(out, expected, atol=1e-5):
        raise CheckFailed(_diagnose_values(out, q, k, v, causal=True))
    return "causal output matches torch's is_causal=True to 1e-5"


def check_heads(attention):
    q, k, v = _inputs(2, 3, 5, 8)  # (batch, heads, T, d_k)
    out, weights = _call(attention, q, k, v, causal=True)
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    if tuple(out.shape) != (2, 3, 5, 8) or not torch.allclose(out, expected, atol=1e-5):
        raise CheckFailed(
            f"with a heads dimension, (batch, heads, T, d_k) inputs gave output shape {tuple(out.shape)}; "
            "use the last two dimensions only (k.transpose(-2, -1), softmax over dim=-1)"
        )
    return "works for (batch, heads, T, d_k) inputs"


def check_large_scores(attention):
    q, k, v = _inputs(
        1, 4, 8, scale=30.0
    )  # scores in the thousands: exp() overflows unless stabilised
    out, weights = _call(attention, q, k, v)
    if not (torch.isfinite(out).all() and torch.isfinite(weights).all()):
        raise CheckFailed(
            "large scores give inf or nan: subtract each row's max before exp, or use torch.softmax"
        )
    expected = F.scaled_dot_product_attention(q, k, v)
    if not torch.allclose(out, expected, atol=1e-4):
        raise CheckFailed(
            f"large scores: output off by up to {(out - expected).abs().max().item():.3g}"
        )
    return "stable when scores are large"


CHECKS = [
    ("returns a pair", check_returns_pair),
    ("shapes", check_shapes),
    ("dtype", check_dtype),
    ("rows sum to 1", check_rows_sum_to_one),
    ("values", check_values),
    ("causal mask", check_causal_mask),
    ("causal values", check_causal_values),
    ("heads dimension", check_heads),
    ("large scores", check_large_scores),
]


def check_attention(attention):
    """Run every check on the learner's attention function; prints one line per check."""
    return run_checks(CHECKS, attention, "attention")

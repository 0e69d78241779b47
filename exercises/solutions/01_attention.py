import math

import torch


def attention(q, k, v, causal=False):
    """softmax(q k^T / sqrt(d_k)) v; returns (output, weights)."""
    d_k = q.size(-1)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)  # (..., T, S)
    if causal:
        T, S = scores.shape[-2:]
        # Query i sits at position S - T + i and sees keys up to there.
        ones = torch.ones(T, S, dtype=torch.bool, device=q.device)
        allowed = ones.tril(diagonal=S - T)
        scores = scores.masked_fill(~allowed, float("-inf"))
    # Over the keys (the last dimension): each row sums to 1.
    weights = torch.softmax(scores, dim=-1)
    return weights @ v, weights

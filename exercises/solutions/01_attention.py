import math

import torch


def attention(q, k, v, causal=False):
    """softmax(q k^T / sqrt(d_k)) v; returns (output, weights)."""
    d_k = q.size(-1)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)  # (..., T, S)
    if causal:
        T, S = scores.shape[-2:]
        # query i sits at position S - T + i and may see keys up to there
        allowed = torch.ones(T, S, dtype=torch.bool, device=q.device).tril(diagonal=S - T)
        scores = scores.masked_fill(~allowed, float("-inf"))
    weights = torch.softmax(scores, dim=-1)  # over the keys: each row sums to 1
    return weights @ v, weights

import math

import torch


def split_heads(x, n_heads):
    """(B, T, C) -> (B, n_heads, T, C // n_heads).

    Head h gets features h*D ... (h+1)*D - 1 of every token, D = C // H.
    """
    B, T, C = x.shape
    if C % n_heads != 0:
        why = f"n_heads ({n_heads}) must divide the width ({C})"
        raise ValueError(why + ": heads are equally wide")
    # Cut each token's C features into n_heads runs of D, then bring the
    # head axis before the tokens.
    return x.view(B, T, n_heads, C // n_heads).transpose(1, 2)


def merge_heads(x):
    """(B, H, T, D) -> (B, T, H * D): the inverse of split_heads."""
    B, H, T, D = x.shape
    # After the transpose the memory is no longer in (B, T, H, D) order,
    # so reshape (not view) copies.
    return x.transpose(1, 2).reshape(B, T, H * D)


def multi_head_attention(x, w_q, w_k, w_v, w_o, n_heads):
    """Causal multi-head self-attention.

    Every weight is (C, C), stored (in, out): the queries are x @ w_q.
    """
    T = x.size(1)
    # (B, H, T, D) each
    q, k, v = (split_heads(x @ w, n_heads) for w in (w_q, w_k, w_v))
    # One (T, T) score matrix per head.
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    ones = torch.ones(T, T, dtype=torch.bool, device=x.device)
    scores = scores.masked_fill(ones.triu(diagonal=1), float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    # Heads side by side again, then mixed by w_o.
    return merge_heads(weights @ v) @ w_o

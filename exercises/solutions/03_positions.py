import torch


def sinusoidal_encoding(n_positions, d_model):
    """(n_positions, d_model) float32: sin in even columns, cos in odd."""
    pos = torch.arange(n_positions, dtype=torch.float64)[:, None]  # (P, 1)
    # 0, 2, 4, ...: one entry per sin/cos pair
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)
    angles = pos / 10000 ** (two_i / d_model)  # (P, d_model / 2)
    pe = torch.zeros(n_positions, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angles)
    pe[:, 1::2] = torch.cos(angles)  # the same angle as its sin neighbour
    return pe.float()


def apply_rope(x, positions):
    """Rotate each pair (x[..., 2i], x[..., 2i + 1]) of row t.

    The angle is positions[t] / 10000^(2i / d).
    """
    d = x.size(-1)
    two_i = torch.arange(0, d, 2, dtype=torch.float64)
    pos = torch.as_tensor(positions, dtype=torch.float64)[:, None]
    angles = pos / 10000 ** (two_i / d)  # (T, d / 2)
    cos, sin = torch.cos(angles).to(x.dtype), torch.sin(angles).to(x.dtype)
    x0, x1 = x[..., 0::2], x[..., 1::2]  # the two coordinates of every pair
    out = torch.empty_like(x)  # a new tensor: the caller's x stays as it was
    out[..., 0::2] = x0 * cos - x1 * sin
    out[..., 1::2] = x0 * sin + x1 * cos
    return out

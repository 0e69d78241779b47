import torch


def quantize_kv(x):
    """Symmetric int8 codes and one scale per token and head for x (B, H, T, D)."""
    scale = x.abs().amax(dim=-1, keepdim=True) / 127  # (B, H, T, 1)
    # An all-zero token has scale 0; divide by 1 there so its codes are 0, not NaN.
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.round(x / safe).clamp(-127, 127).to(torch.int8)
    return q, scale


def dequantize_kv(q, scale):
    return q.to(scale.dtype) * scale

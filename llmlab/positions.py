"""Position encodings: the sinusoidal table of Vaswani et al. (2017) and rotary embeddings (RoPE, Su et al. 2021).

Both use the same frequencies, one per pair of dimensions: w_i = base^(-2i / d) for i = 0 .. d/2 - 1,
and the same layout, pairs of *adjacent* dimensions (2i, 2i + 1):

    sinusoidal:  PE[pos, 2i] = sin(pos * w_i),  PE[pos, 2i + 1] = cos(pos * w_i)   (added to the embeddings)
    RoPE:        (x[2i], x[2i + 1]) rotated by the angle pos * w_i                 (applied to q and k)

ALiBi (Press et al. 2022) adds no vectors and rotates nothing: head h subtracts slope_h * (i - j) from
the score of query i on key j (alibi_bias).

TinyGPT itself uses learned position embeddings (model.wpe), as GPT-2 does; chapter 3 compares them.
"""

import math

import torch


def _check_int(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _check_base(base):
    if isinstance(base, bool) or not isinstance(base, (int, float)) or not base > 1:
        raise ValueError(f"base must be a number > 1, got {base!r}")


def frequencies(d: int, base: float = 10000.0, name: str = "d") -> torch.Tensor:
    """(d // 2,) float64 angular frequencies w_i = base^(-2i / d), one per pair of dimensions."""
    _check_int(name, d)
    if d % 2:
        raise ValueError(
            f"{name} must be even (dimensions come in sin/cos or rotation pairs), got {d}"
        )
    _check_base(base)
    return base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)


def sinusoidal_encoding(n_positions: int, d_model: int, base: float = 10000.0) -> torch.Tensor:
    """(n_positions, d_model) float32 table: PE[pos, 2i] = sin(pos w_i), PE[pos, 2i + 1] = cos(pos w_i)."""
    _check_int("n_positions", n_positions)
    angles = torch.arange(n_positions, dtype=torch.float64)[:, None] * frequencies(
        d_model, base, name="d_model"
    )  # (P, d/2)
    pe = torch.stack(
        [angles.sin(), angles.cos()], dim=-1
    )  # (P, d/2, 2): the pair (sin, cos) side by side
    return pe.flatten(1).float()  # (P, d): sin, cos, sin, cos, ...


def apply_rope(x: torch.Tensor, positions, base: float = 10000.0) -> torch.Tensor:
    """Rotate each pair (x[..., 2i], x[..., 2i + 1]) of x by the angle positions[t] * w_i.

    x: (..., T, d) queries or keys, d even; positions: T integer positions (a sequence or a 1-D
    tensor), one per row of x. Returns a tensor of x's shape and dtype. Rotations keep lengths,
    and rotate(q, m) . rotate(k, n) depends on m and n only through m - n.
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(
            f"x must be a floating-point torch.Tensor, got {getattr(x, 'dtype', type(x).__name__)}"
        )
    if x.dim() < 2:
        raise ValueError(f"x must have shape (..., T, d), got {tuple(x.shape)}")
    T, d = x.shape[-2:]
    positions = torch.as_tensor(positions, device=x.device)
    if positions.is_floating_point() or positions.dim() != 1 or positions.numel() != T:
        raise ValueError(
            f"positions must be {T} integer positions (one per row of x), got shape {tuple(positions.shape)} "
            f"and dtype {positions.dtype}"
        )
    angles = positions.double()[:, None] * frequencies(d, base, name="x.shape[-1]").to(
        x.device
    )  # (T, d/2)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    even, odd = x[..., 0::2], x[..., 1::2]  # (..., T, d/2): the two coordinates of every pair
    rotated = torch.stack(
        [even * cos - odd * sin, even * sin + odd * cos], dim=-1
    )  # 2-D rotation per pair
    return rotated.flatten(-2)


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """(n_heads,) float64 ALiBi slopes, the recipe of Press et al. (2022).

    For a power of two n: 2^(-8 / n), 2^(-16 / n), ..., 2^(-8) (8 heads: 1/2, 1/4, ..., 1/256).
    Otherwise the slopes of the nearest smaller power of two, then every other slope of twice it.
    """
    _check_int("n_heads", n_heads)
    closest = 2 ** math.floor(math.log2(n_heads))
    slopes = [2 ** (-8 * (h + 1) / closest) for h in range(closest)]
    extra = [2 ** (-8 * (h + 1) / (2 * closest)) for h in range(0, 2 * closest, 2)]
    return torch.tensor(slopes + extra[: n_heads - closest], dtype=torch.float64)


def alibi_bias(n_heads: int, n_positions: int) -> torch.Tensor:
    """(n_heads, n_positions, n_positions) float64 bias to add to causal attention scores.

    bias[h, i, j] = -slope_h * (i - j) for keys j <= i, and -inf for later keys (the causal mask).
    """
    _check_int("n_positions", n_positions)
    slopes = alibi_slopes(n_heads)
    pos = torch.arange(n_positions, dtype=torch.float64)
    distance = pos[:, None] - pos[None, :]  # (T, T): i - j
    bias = -slopes[:, None, None] * distance
    return bias.masked_fill(distance < 0, float("-inf"))

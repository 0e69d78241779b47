"""Checks for exercises/03_positions.ipynb: the sinusoidal position table and rotary embeddings (RoPE).

Part A: sinusoidal_encoding(n_positions, d_model) -> (n_positions, d_model) float32 tensor with
    PE[pos, 2i] = sin(pos / 10000^(2i / d_model)),  PE[pos, 2i + 1] = cos(pos / 10000^(2i / d_model)).
Part B: apply_rope(x, positions) -> a tensor of x's shape and dtype, where row t of x (shape (..., T, d))
    has each adjacent pair (x[2i], x[2i + 1]) rotated by the angle positions[t] / 10000^(2i / d).
Part A is compared with the formula evaluated entry by entry with math.sin and math.cos; Part B with
llmlab.positions.apply_rope.
"""

import math

import torch

from llmlab.checks import CheckFailed, run_checks
from llmlab.positions import apply_rope as reference_rope

# ---- Part A: the sinusoidal table ------------------------------------------------------------


def _table(sinusoidal_encoding, n_positions, d_model):
    pe = sinusoidal_encoding(n_positions, d_model)
    if not isinstance(pe, torch.Tensor):
        raise CheckFailed(
            f"sinusoidal_encoding() must return a torch.Tensor, got {type(pe).__name__}"
        )
    if tuple(pe.shape) != (n_positions, d_model):
        raise CheckFailed(
            f"sinusoidal_encoding({n_positions}, {d_model}) has shape {tuple(pe.shape)}, expected "
            f"({n_positions}, {d_model}): one row per position, one column per dimension"
        )
    return pe.detach().double()


def _formula(n_positions, d_model, angle, first=math.sin, second=math.cos, layout="interleaved"):
    """A table built entry by entry from math.sin/cos; angle(pos, i, column) gives each angle."""
    pe = torch.zeros(n_positions, d_model, dtype=torch.float64)
    half = d_model // 2
    for pos in range(n_positions):
        for i in range(half):
            a, b = (2 * i, 2 * i + 1) if layout == "interleaved" else (i, half + i)
            pe[pos, a] = first(angle(pos, i, a))
            pe[pos, b] = second(angle(pos, i, b))
    return pe


def _expected_table(n_positions, d_model):
    return _formula(n_positions, d_model, lambda pos, i, col: pos / 10000 ** (2 * i / d_model))


def _diagnose_table(pe, n_positions, d_model):
    """One sentence naming the most likely mistake in a table that does not match the formula."""
    d = d_model
    variants = [
        (
            _formula(
                n_positions,
                d,
                lambda p, i, c: p / 10000 ** (2 * i / d),
                first=math.cos,
                second=math.sin,
            ),
            "sin and cos are swapped: sin goes in the even columns (2i), cos in the odd ones (2i + 1)",
        ),
        (
            _formula(n_positions, d, lambda p, i, c: p / 10000 ** (2 * i / d), layout="halves"),
            "sin fills the first half of the columns and cos the second; this exercise interleaves them: "
            "sin in column 2i, cos in column 2i + 1",
        ),
        (
            _formula(n_positions, d, lambda p, i, c: p / 10000 ** (c / d)),
            "the odd columns use exponent (2i + 1) / d_model; a sin/cos pair shares one angle, "
            "pos / 10000^(2i / d_model), with i the pair index",
        ),
        (
            _formula(n_positions, d, lambda p, i, c: p / 10000 ** (i / d)),
            "the exponent is i / d_model; it should be 2i / d_model (i counts pairs of columns)",
        ),
        (
            _formula(n_positions, d, lambda p, i, c: p * 10000 ** (2 * i / d)),
            "the angle is pos * 10000^(2i / d_model); divide instead: pos / 10000^(2i / d_model)",
        ),
        (
            _formula(n_positions, d, lambda p, i, c: p / 1000 ** (2 * i / d)),
            "the base is 1000; the formula uses 10000",
        ),
    ]
    for variant, message in variants:
        if torch.allclose(pe, variant, atol=1e-4):
            return message
    expected = _expected_table(n_positions, d_model)
    error = (pe - expected).abs()
    pos, col = divmod(int(error.argmax()), d_model)
    return (
        f"PE differs from the formula by up to {error.max().item():.3g} (worst at pos {pos}, column {col}: "
        f"got {pe[pos, col].item():.4f}, expected {expected[pos, col].item():.4f})"
    )


def check_table_shape(sinusoidal_encoding):
    _table(sinusoidal_encoding, 50, 16)
    _table(sinusoidal_encoding, 3, 64)
    return "(n_positions, d_model) for (50, 16) and (3, 64)"


def check_table_dtype(sinusoidal_encoding):
    pe = sinusoidal_encoding(10, 8)
    if pe.dtype != torch.float32:
        raise CheckFailed(
            f"the table has dtype {pe.dtype}; return float32 (torch's default), e.g. with .float()"
        )
    return "float32"


def check_position_zero(sinusoidal_encoding):
    pe = _table(sinusoidal_encoding, 4, 8)
    expected = torch.tensor([0.0, 1.0] * 4, dtype=torch.float64)  # sin(0), cos(0) for every pair
    if not torch.allclose(pe[0], expected, atol=1e-6):
        got = ", ".join(f"{v:.2f}" for v in pe[0].tolist())
        raise CheckFailed(
            f"PE[0] should be [0, 1, 0, 1, ...] (sin 0, cos 0 in every pair), got [{got}]"
        )
    return "PE[0] = [0, 1, 0, 1, ...]"


def check_table_values(sinusoidal_encoding):
    pe = _table(sinusoidal_encoding, 40, 16)
    if not torch.allclose(pe, _expected_table(40, 16), atol=1e-4):
        raise CheckFailed(_diagnose_table(pe, 40, 16))
    return "every entry of a (40, 16) table matches the formula to 1e-4"


def check_relative_dot_products(sinusoidal_encoding):
    pe = _table(sinusoidal_encoding, 64, 16)
    dots = pe @ pe.T  # dots[p, q] = PE[p] . PE[q]
    for k in range(64):
        diagonal = torch.diagonal(dots, k)  # PE[p] . PE[p + k] for every p
        spread = (diagonal.max() - diagonal.min()).item()
        if spread > 1e-3:
            raise CheckFailed(
                f"PE[p] . PE[p + {k}] changes with p (from {diagonal.min().item():.3f} to "
                f"{diagonal.max().item():.3f}); with a sin and a cos of the same angle in each pair it depends "
                "only on the offset k"
            )
    return "PE[p] . PE[p + k] depends only on k"


# ---- Part B: rotary embeddings ---------------------------------------------------------------


def _random(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _rope(apply_rope, x, positions):
    out = apply_rope(x, positions)
    if not isinstance(out, torch.Tensor):
        raise CheckFailed(f"apply_rope() must return a torch.Tensor, got {type(out).__name__}")
    if out.shape != x.shape:
        raise CheckFailed(
            f"apply_rope() returned shape {tuple(out.shape)} for x of shape {tuple(x.shape)}; keep x's shape"
        )
    return out


def _halves_rope(x, positions):
    """The 'rotate-half' layout: dimension i paired with i + d/2 (GPT-NeoX, Hugging Face Llama)."""
    d = x.size(-1)
    angles = torch.as_tensor(positions).double()[:, None] * 10000 ** (
        -torch.arange(0, d, 2).double() / d
    )
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    a, b = x[..., : d // 2], x[..., d // 2 :]
    return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)


def _diagnose_rope(out, x, positions):
    if torch.allclose(out, reference_rope(x, [-p for p in positions]), atol=1e-6):
        return "the pairs are rotated the wrong way: use (x0 cos - x1 sin, x0 sin + x1 cos)"
    if torch.allclose(out, _halves_rope(x, positions), atol=1e-6):
        return (
            "you pair dimension i with i + d/2 (the 'rotate-half' layout); this exercise pairs adjacent "
            "dimensions 2i and 2i + 1"
        )
    if torch.allclose(out, reference_rope(x, list(range(x.size(-2)))), atol=1e-6):
        return f"rows are rotated by their index 0, 1, 2, ... instead of the given positions {list(positions)}"
    if torch.allclose(out, reference_rope(x, positions, base=1000.0), atol=1e-6):
        return "the base is 1000; the angle is position / 10000^(2i / d)"
    error = (out - reference_rope(x, positions)).abs().max().item()
    return f"rotated x differs from the reference by up to {error:.3g}"


def check_rope_shape_dtype(apply_rope):
    x = _random(2, 3, 5, 8)  # (batch, heads, T, d)
    out = _rope(apply_rope, x, torch.arange(5))
    if out.dtype != torch.float64:
        raise CheckFailed(f"float64 x gave a {out.dtype} result; keep x's dtype")
    return "keeps shape (2, 3, 5, 8) and dtype float64"


def check_rope_position_zero(apply_rope):
    x = _random(4, 8)
    out = _rope(apply_rope, x, torch.zeros(4, dtype=torch.long))
    if not torch.allclose(out, x, atol=1e-9):
        raise CheckFailed(
            f"at position 0 every angle is 0, so x must come back unchanged; yours moved it by up to "
            f"{(out - x).abs().max().item():.3g}"
        )
    return "position 0 leaves x unchanged"


def check_rope_lengths(apply_rope):
    x = _random(3, 10, 8, seed=1)
    out = _rope(apply_rope, x, torch.arange(10))
    change = (out.norm(dim=-1) - x.norm(dim=-1)).abs().max().item()
    if change > 1e-9:
        raise CheckFailed(
            f"a rotation keeps every vector's length, yours changes it by up to {change:.3g}; "
            "each new pair must be (x0 cos - x1 sin, x0 sin + x1 cos)"
        )
    return "every vector keeps its length"


def check_rope_values(apply_rope):
    x = _random(2, 6, 16, seed=2)
    positions = [
        3,
        4,
        5,
        9,
        17,
        40,
    ]  # not 0..T-1: a decode step rotates new tokens at their true positions
    out = _rope(apply_rope, x, torch.tensor(positions))
    if not torch.allclose(out, reference_rope(x, positions), atol=1e-6):
        raise CheckFailed(_diagnose_rope(out, x, positions))
    return "matches llmlab.positions.apply_rope to 1e-6 at positions 3, 4, 5, 9, 17, 40"


def check_rope_relative(apply_rope):
    n, d = 24, 16
    q, k = _random(d, seed=3), _random(d, seed=4)
    rotated_q = _rope(
        apply_rope, q.expand(n, d).clone(), torch.arange(n)
    )  # q placed at every position m
    rotated_k = _rope(apply_rope, k.expand(n, d).clone(), torch.arange(n))
    scores = rotated_q @ rotated_k.T  # scores[m, n] = q_m . k_n
    for offset in range(-n + 1, n):
        diagonal = torch.diagonal(scores, offset)  # every (m, n) with n - m = offset
        if (diagonal.max() - diagonal.min()).item() > 1e-6:
            raise CheckFailed(
                f"rotated q_m . k_n should depend only on m - n, but for m - n = {-offset} it ranges from "
                f"{diagonal.min().item():.3f} to {diagonal.max().item():.3f}"
            )
    return "q_m . k_n depends only on m - n"


SINUSOIDAL_CHECKS = [
    ("A shape", check_table_shape),
    ("A dtype", check_table_dtype),
    ("A position 0", check_position_zero),
    ("A values", check_table_values),
    ("A offsets", check_relative_dot_products),
]

ROPE_CHECKS = [
    ("B shape and dtype", check_rope_shape_dtype),
    ("B position 0", check_rope_position_zero),
    ("B lengths", check_rope_lengths),
    ("B values", check_rope_values),
    ("B relative", check_rope_relative),
]


def check_sinusoidal(sinusoidal_encoding):
    """Run the Part A checks on the learner's sinusoidal_encoding; prints one line per check."""
    return run_checks(SINUSOIDAL_CHECKS, sinusoidal_encoding, "sinusoidal_encoding")


def check_rope(apply_rope):
    """Run the Part B checks on the learner's apply_rope; prints one line per check."""
    return run_checks(ROPE_CHECKS, apply_rope, "apply_rope")

"""Checks for exercises/03_positions.ipynb: the sinusoidal position table and rotary embeddings (RoPE).

Part A: sinusoidal_encoding(n_positions, d_model) -> (n_positions, d_model) float32 tensor with
    PE[pos, 2i] = sin(pos / 10000^(2i / d_model)),  PE[pos, 2i + 1] = cos(pos / 10000^(2i / d_model)).
Part B: apply_rope(x, positions) -> a tensor of x's shape and dtype, where row t of x (shape (..., T, d))
    has each adjacent pair (x[2i], x[2i + 1]) rotated by the angle positions[t] / 10000^(2i / d).
Part A is compared with the formula evaluated entry by entry with math.sin and math.cos; Part B with
the rotation computed in float64 (_rope_ref, tested equal to llmlab.positions.apply_rope). Angles
computed in float32 are correct answers: every tolerance leaves room for them. A wrong value is
first compared with the classic mistakes (_TABLE_MISTAKES, _ROPE_MISTAKES) and named.
"""

import math

import torch

from llmlab.checks import CheckFailed, close, crashed, describe_difference, diagnose, run_checks
from llmlab.checks.differential import Difference, Differential, case, differs, reference

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
        (
            _formula(n_positions, d, lambda p, i, c: (p + 1) / 10000 ** (2 * i / d)),
            "the rows start at position 1; the first row is position 0 (torch.arange(n_positions))",
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
        if torch.allclose(pe[0], _expected_table(2, 8)[1], atol=1e-4):
            raise CheckFailed(
                "PE[0] holds position 1: the rows start at position 1, but the first row is "
                "position 0 (torch.arange(n_positions)), [0, 1, 0, 1, ...]"
            )
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

# Angles computed in float32 (torch's default for pos / 10000 ** (...)) are off by about
# position x 6e-8 radians; at the checks' positions (<= 40) that moves a rotated value by < 1e-6.
# The tolerance leaves room for that and is still 1000 times below the smallest mistake.
_ROPE_TOL = {"atol": 2e-5, "rtol": 2e-5}


def _random(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _rope_ref(x, positions, direction=1, layout="interleaved", offset=0, base=10000.0,
              exponent="2i", multiply=False, swap=False, write="interleaved", chained=False,
              same_angle=False, ignore_positions=False):  # fmt: skip
    """RoPE in float64; each keyword switches on one classic mistake (the defaults are right)."""
    x = x.double()
    T, d = x.shape[-2:]
    pos = torch.arange(T) if ignore_positions else torch.as_tensor(positions)
    pos = pos.double()[:, None] + offset
    pair = torch.arange(d // 2, dtype=torch.float64)
    power = {"2i": 2 * pair, "i": pair}[exponent] / d
    if same_angle:
        power = torch.zeros_like(power)
    angles = direction * (pos * base**power if multiply else pos / base**power)  # (T, d/2)
    cos, sin = angles.cos(), angles.sin()
    if swap:
        cos, sin = sin, cos
    if layout == "interleaved":
        a, b = x[..., 0::2], x[..., 1::2]
    else:
        a, b = x[..., : d // 2], x[..., d // 2 :]
    new_a = a * cos - b * sin
    new_b = (new_a if chained else a) * sin + b * cos
    if layout == "interleaved" and write == "interleaved":
        return torch.stack([new_a, new_b], dim=-1).flatten(-2)
    return torch.cat([new_a, new_b], dim=-1)


_ROPE_MISTAKES = [  # (message, keywords of _rope_ref), most specific first
    (
        "the pairs are rotated the wrong way: use (x0 cos - x1 sin, x0 sin + x1 cos)",
        dict(direction=-1),
    ),
    (
        "you pair dimension i with i + d/2 (the 'rotate-half' layout); this exercise pairs "
        "adjacent dimensions 2i and 2i + 1",
        dict(layout="halves"),
    ),
    (
        "the rotated pairs are written back as two halves (torch.cat): new[2i] and new[2i + 1] "
        "must go back side by side, e.g. torch.stack([new0, new1], dim=-1).flatten(-2)",
        dict(write="halves"),
    ),
    (
        "cos and sin are swapped: new[2i] = x[2i] cos - x[2i + 1] sin, "
        "new[2i + 1] = x[2i] sin + x[2i + 1] cos",
        dict(swap=True),
    ),
    (
        "the second coordinate is computed from the already rotated first one (an update in "
        "place?); compute both new coordinates from the original pair",
        dict(chained=True),
    ),
    (
        "rows are rotated by their index 0, 1, 2, ... instead of the given positions",
        dict(ignore_positions=True),
    ),
    (
        "rows are rotated by positions[t] + 1: use the positions as given (the first token sits "
        "at position 0)",
        dict(offset=1),
    ),
    ("the base is 1000; the angle is position / 10000^(2i / d)", dict(base=1000.0)),
    (
        "the frequencies use exponent i / d; it should be 2i / d, with i counting pairs "
        "(torch.arange(0, d, 2) / d)",
        dict(exponent="i"),
    ),
    (
        "the angle is position * 10000^(2i / d); divide instead: position / 10000^(2i / d)",
        dict(multiply=True),
    ),
    (
        "every pair is rotated by the same angle, the position itself; pair i turns at its own "
        "frequency, angle = position / 10000^(2i / d)",
        dict(same_angle=True),
    ),
]


def _diagnose_rope(out, x, positions):
    named = diagnose(
        out,
        [(m, lambda kw=kw: _rope_ref(x, positions, **kw)) for m, kw in _ROPE_MISTAKES],
        **_ROPE_TOL,
    )
    return named or describe_difference(out, _rope_ref(x, positions), "rotated x")


def _rope_crash_hint(apply_rope, x, positions):
    def works(*args):
        try:
            apply_rope(*args)
            return True
        except Exception:
            return False

    flat = (0,) * (x.dim() - 2)
    if x.dim() > 2 and works(x[flat].clone(), positions):
        return (
            "it works on (T, d) inputs but not with batch or head dimensions: slice the last "
            "dimension, x[..., 0::2] and x[..., 1::2], and let (T, d/2) angles broadcast"
        )
    return None


def _rope(apply_rope, x, positions):
    try:
        out = apply_rope(x.clone(), positions)  # a clone: an update in place must not fool us
    except NotImplementedError:
        raise
    except Exception as error:
        raise crashed("apply_rope", error, _rope_crash_hint(apply_rope, x, positions)) from None
    if not isinstance(out, torch.Tensor):
        raise CheckFailed(f"apply_rope() must return a torch.Tensor, got {type(out).__name__}")
    if out.shape != x.shape:
        raise CheckFailed(
            f"apply_rope() returned shape {tuple(out.shape)} for x of shape {tuple(x.shape)}; "
            "keep x's shape"
        )
    return out


def check_rope_shape_dtype(apply_rope):
    for dtype in (torch.float64, torch.float32):
        x = _random(2, 3, 5, 8).to(dtype)  # (batch, heads, T, d)
        out = _rope(apply_rope, x, torch.arange(5))
        if out.dtype != dtype:
            raise CheckFailed(f"{dtype} x gave a {out.dtype} result; keep x's dtype")
    return "keeps shape (2, 3, 5, 8) and dtype, float64 and float32"


def check_rope_input_unchanged(apply_rope):
    x = _random(2, 5, 8, seed=5)
    before = x.clone()
    try:
        apply_rope(x, torch.arange(3, 8))
    except NotImplementedError:
        raise
    except Exception as error:
        raise crashed("apply_rope", error, _rope_crash_hint(apply_rope, x, range(3, 8))) from None
    if not torch.equal(x, before):
        raise CheckFailed(
            "apply_rope() changed x in place: write the rotated pairs into a new tensor "
            "(torch.empty_like(x) or torch.stack) so the caller's queries stay as they were"
        )
    return "x is left untouched"


def check_rope_position_zero(apply_rope):
    x = _random(4, 8)
    positions = torch.zeros(4, dtype=torch.long)
    out = _rope(apply_rope, x, positions)
    if not torch.allclose(out, x, atol=1e-6):
        raise CheckFailed(
            _diagnose_rope_named(out, x, positions)
            or f"at position 0 every angle is 0, so x must come back unchanged; yours moved it by "
            f"up to {(out - x).abs().max().item():.3g}"
        )
    return "position 0 leaves x unchanged"


def _diagnose_rope_named(out, x, positions):
    return diagnose(
        out,
        [(m, lambda kw=kw: _rope_ref(x, positions, **kw)) for m, kw in _ROPE_MISTAKES],
        **_ROPE_TOL,
    )


def check_rope_lengths(apply_rope):
    x = _random(3, 10, 8, seed=1)
    out = _rope(apply_rope, x, torch.arange(10))
    change = ((out.norm(dim=-1) - x.norm(dim=-1)).abs() / x.norm(dim=-1)).max().item()
    if change > 1e-5:  # float32 cos^2 + sin^2 is 1 to ~1e-7
        raise CheckFailed(
            _diagnose_rope_named(out, x, torch.arange(10))
            or f"a rotation keeps every vector's length, yours changes it by up to "
            f"{change:.2%}; each new pair must be (x0 cos - x1 sin, x0 sin + x1 cos)"
        )
    return "every vector keeps its length"


def check_rope_values(apply_rope):
    x = _random(2, 6, 16, seed=2)
    # Not 0 .. T-1: a decode step rotates new tokens at their true positions.
    positions = torch.tensor([3, 4, 5, 9, 17, 40])
    out = _rope(apply_rope, x, positions)
    if not close(out, _rope_ref(x, positions), **_ROPE_TOL):
        raise CheckFailed(_diagnose_rope(out, x, positions))
    return "matches RoPE to 2e-5 at positions 3, 4, 5, 9, 17, 40 (float32 angles are fine)"


def check_rope_batch_heads(apply_rope):
    x = _random(2, 3, 4, 8, seed=6)  # (batch, heads, T, d)
    positions = torch.tensor([7, 8, 9, 10])
    out = _rope(apply_rope, x, positions)
    if not close(out, _rope_ref(x, positions), **_ROPE_TOL):
        flat = (0, 0)
        if close(_rope(apply_rope, x[flat], positions), _rope_ref(x[flat], positions), **_ROPE_TOL):
            raise CheckFailed(
                "right on a (T, d) input but not on (batch, heads, T, d): slice the last dimension, "
                "x[..., 0::2] and x[..., 1::2], not x[:, 0::2]"
            )
        raise CheckFailed(_diagnose_rope(out, x, positions))
    return "rotates every head of every sequence, (2, 3, 4, 8)"


def check_rope_relative(apply_rope):
    n, d = 24, 16
    q, k = _random(d, seed=3), _random(d, seed=4)
    rotated_q = _rope(apply_rope, q.expand(n, d).clone(), torch.arange(n))  # q at every position m
    rotated_k = _rope(apply_rope, k.expand(n, d).clone(), torch.arange(n))
    scores = rotated_q @ rotated_k.T  # scores[m, n] = q_m . k_n
    limit = 1e-5 * (q.norm() * k.norm()).item()  # float32 angles: ~1e-7 of |q| |k|
    for offset in range(-n + 1, n):
        diagonal = torch.diagonal(scores, offset)  # every (m, n) with n - m = offset
        if (diagonal.max() - diagonal.min()).item() > limit:
            raise CheckFailed(
                f"rotated q_m . k_n should depend only on m - n, but for m - n = {-offset} it "
                f"ranges from {diagonal.min().item():.3f} to {diagonal.max().item():.3f}"
            )
    return "q_m . k_n depends only on m - n"


# ---- differential: each function against the reference, input by input ------------------------
def _table_compare(got, expected, c):
    """A float32 (n_positions, d_model) tensor within 1e-4 of the formula (float32 angles)."""
    if not torch.is_tensor(got):
        return Difference("", got, expected, "is not a tensor")
    if got.dtype != torch.float32:
        return Difference("", got, expected, f"is {got.dtype}, not torch.float32")
    return differs(got, expected, rtol=1e-4, atol=1e-4)


def _table_named(c, got, expected):
    n, d = c.args
    if not torch.is_tensor(got) or tuple(got.shape) != (n, d):
        return None
    named = _diagnose_table(got.detach().double(), n, d)
    return None if named.startswith("PE differs") else named


def _generate_table(draw):
    return case(draw.integer(1, 64), 2 * draw.integer(1, 16))


TABLE_DIFF = Differential(
    reference("03_positions", "sinusoidal_encoding"),
    examples=[case(2, 4)],  # the task's worked example
    boundaries=[
        case(1, 2).because("one position, one pair: position 0 is [sin 0, cos 0] = [0, 1]"),
        case(5, 2).because("one pair: the angle is the position itself"),
        case(4, 16).because("sin in the even columns, cos in the odd, a pair shares its angle"),
        case(50, 6).because("a width that is not a power of two: 2i / d_model"),
    ],
    generate=_generate_table,
    compare=_table_compare,
    diagnose=_table_named,
)


def _rope_compare(got, expected, c):
    """x's shape and dtype, within float32's rounding of the angles (whatever x's dtype)."""
    x = c.args[0]
    if not torch.is_tensor(got):
        return Difference("", got, expected, "is not a tensor")
    if got.dtype != x.dtype:
        return Difference("", got, expected, f"is {got.dtype}, not {x.dtype}")
    tol = 2e-5 * max(1.0, x.abs().max().item() if x.numel() else 1.0)
    return differs(got, expected, rtol=tol, atol=tol)


def _rope_named(c, got, expected):
    x, positions = c.args
    if not torch.is_tensor(got) or got.shape != x.shape:
        return None
    positions = torch.as_tensor(positions)
    right = _rope_ref(x, positions)
    for message, kw in _ROPE_MISTAKES:
        wrong = _rope_ref(x, positions, **kw)
        if not close(wrong, right, **_ROPE_TOL) and close(got, wrong, **_ROPE_TOL):
            return message
    return None


def _show_rope(c):
    x, positions = c.args
    kind = (
        "a list"
        if isinstance(positions, list)
        else "a tuple"
        if isinstance(positions, tuple)
        else "a tensor"
    )
    values = list(positions.tolist() if torch.is_tensor(positions) else positions)
    return (
        f"x of shape {tuple(x.shape)} ({str(x.dtype).replace('torch.', '')}) and positions "
        f"{values} ({kind})"
    )


def _generate_rope(draw):
    lead = draw.choice([(), (draw.integer(1, 2),), (draw.integer(1, 2), draw.integer(1, 3))])
    T, d = draw.integer(1, 5), 2 * draw.integer(1, 8)
    x = draw.tensor(*lead, T, d, dtype=draw.choice([torch.float32, torch.float64]))
    start = draw.integer(0, 40)
    positions = [start + draw.integer(0, 3) * i for i in range(T)]  # ascending, maybe with gaps
    as_type = draw.choice([torch.tensor, list, tuple])
    return case(x, as_type(positions))


def _rope_row(*shape, positions, seed=0, dtype=torch.float32):
    return case(_random(*shape, seed=seed).to(dtype), positions)


ROPE_DIFF = Differential(
    reference("03_positions", "apply_rope"),
    examples=[case(torch.tensor([[1.0, 0.0, 1.0, 0.0]]), [1])],  # the task's worked example
    boundaries=[
        _rope_row(3, 8, positions=torch.tensor([0, 0, 0])).because(
            "position 0 leaves a row as it is"
        ),
        _rope_row(4, 8, positions=torch.tensor([5, 6, 7, 8]), seed=1).because(
            "positions as given, not 0 .. T-1 (a token after a cache)"
        ),
        _rope_row(1, 2, positions=[3], seed=2).because("one row, one pair; positions as a list"),
        _rope_row(2, 3, 4, 8, positions=torch.tensor([7, 8, 9, 10]), seed=3).because(
            "(batch, heads, T, d): every head of every sequence"
        ),
        _rope_row(2, 6, positions=(1, 9), seed=4, dtype=torch.float64).because(
            "float64 stays float64; positions as a tuple"
        ),
        _rope_row(3, 16, positions=torch.tensor([40, 2, 17]), seed=5).because(
            "adjacent pairs (2i, 2i + 1), angle positions[t] / 10000^(2i / d)"
        ),
    ],
    generate=_generate_rope,
    compare=_rope_compare,
    diagnose=_rope_named,
    show_input=_show_rope,
)


SINUSOIDAL_CHECKS = [
    ("A shape", check_table_shape),
    ("A dtype", check_table_dtype),
    ("A position 0", check_position_zero),
    ("A values", check_table_values),
    ("A offsets", check_relative_dot_products),
    *TABLE_DIFF.checks(prefix="A "),
]

ROPE_CHECKS = [
    ("B shape and dtype", check_rope_shape_dtype),
    ("B input unchanged", check_rope_input_unchanged),
    ("B position 0", check_rope_position_zero),
    ("B lengths", check_rope_lengths),
    ("B values", check_rope_values),
    ("B batch and heads", check_rope_batch_heads),
    ("B relative", check_rope_relative),
    *ROPE_DIFF.checks(prefix="B "),
]


def check_sinusoidal(sinusoidal_encoding):
    """Run the Part A checks on the learner's sinusoidal_encoding; prints one line per check."""
    return run_checks(SINUSOIDAL_CHECKS, sinusoidal_encoding, "sinusoidal_encoding")


def check_rope(apply_rope):
    """Run the Part B checks on the learner's apply_rope; prints one line per check."""
    return run_checks(ROPE_CHECKS, apply_rope, "apply_rope")

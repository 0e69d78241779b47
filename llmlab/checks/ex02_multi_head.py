"""Checks for exercises/02_multi_head.ipynb: splitting the width into heads, merging it back,
and multi-head causal self-attention built from the two.

The learner writes
    split_heads(x, n_heads)  (B, T, C) -> (B, n_heads, T, C // n_heads); ValueError if n_heads does not divide C
    merge_heads(x)           (B, H, T, D) -> (B, T, H * D), the inverse of split_heads
    multi_head_attention(x, w_q, w_k, w_v, w_o, n_heads) -> (B, T, C), causal, weights stored (in, out)
The reference for the last one is the engine's own CausalSelfAttention with its biases set to zero.
"""

import math

import torch

from llmlab.checks import (
    CheckFailed,
    Report,
    crashed,
    describe_difference,
    diagnose,
    run_checks,
)
from llmlab.checks.differential import Difference, Differential, case, differs, reference
from llmlab.model import CausalSelfAttention, GPTConfig


def _randn(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _labelled(B, T, C):
    """x[b, t, c] = 1000 b + 100 t + c: every entry says where it came from (exact in float32)."""
    b = torch.arange(B).view(B, 1, 1) * 1000
    t = torch.arange(T).view(1, T, 1) * 100
    c = torch.arange(C).view(1, 1, C)
    return (b + t + c).float()


def _ref_split(x, n_heads):
    B, T, C = x.shape
    return x.view(B, T, n_heads, C // n_heads).transpose(1, 2)


def _ref_merge(y):
    B, H, T, D = y.shape
    return y.transpose(1, 2).reshape(B, T, H * D)


def _tensor(result, fn_name, what):
    if not isinstance(result, torch.Tensor):
        raise CheckFailed(f"{fn_name}() must return a tensor ({what}), got {type(result).__name__}")
    return result


def _call(fn, fn_name, what, *args):
    """Call the learner's fn; a crash becomes one sentence naming its likely cause."""
    try:
        return _tensor(fn(*args), fn_name, what)
    except (NotImplementedError, CheckFailed):
        raise
    except Exception as error:
        if "view size is not compatible" in str(error):
            raise CheckFailed(
                f"{fn_name}() calls .view on a tensor that transpose made non-contiguous: "
                "use .reshape(...) (or .contiguous().view(...)) after transposing"
            ) from None
        hint = None
        if fn_name == "multi_head_attention" and isinstance(error, RuntimeError):
            hint = (
                "the shapes inside do not line up: q, k and v should be (B, n_heads, T, "
                "head_dim) after the split, the scores (B, n_heads, T, T), and the merged heads "
                "(B, T, C) before w_o"
            )
        raise crashed(fn_name, error, hint) from None


# --- split_heads -------------------------------------------------------------------------------


def check_split_shape(split_heads):
    for (B, T, C), H in [((2, 5, 12), 3), ((1, 4, 8), 1), ((3, 2, 8), 8)]:
        out = _call(
            split_heads, "split_heads", "(batch, n_heads, seq, head_dim)", _randn(B, T, C), H
        )
        expected = (B, H, T, C // H)
        if tuple(out.shape) == (B, T, H, C // H) and H not in (1, T):
            raise CheckFailed(
                f"split_heads gave {tuple(out.shape)}, which is (batch, seq, n_heads, head_dim): "
                "bring the heads before the tokens with transpose(1, 2)"
            )
        if tuple(out.shape) != expected:
            raise CheckFailed(
                f"split_heads(x of shape {(B, T, C)}, n_heads={H}) gave shape {tuple(out.shape)}, expected "
                f"{expected}: (batch, n_heads, seq, head_dim)"
            )
    return "(2, 5, 12) with 3 heads -> (2, 3, 5, 4); also 1 head and 8 heads"


def check_split_order(split_heads):
    B, T, C, H = 2, 5, 12, 3
    D = C // H
    x = _labelled(B, T, C)
    out = _call(split_heads, "split_heads", "(batch, n_heads, seq, head_dim)", x, H)
    if tuple(out.shape) != (B, H, T, D):
        raise CheckFailed(
            f"shape {tuple(out.shape)} is wrong (see the shape check); expected {(B, H, T, D)}"
        )
    if torch.equal(out, _ref_split(x, H)):
        return (
            "head h at token t holds features h*head_dim ... (h+1)*head_dim - 1 of token t, exactly"
        )
    if torch.equal(out, x.reshape(B, H, T, D)):
        raise CheckFailed(
            "head 0 holds a block of consecutive numbers that runs across tokens, not the first "
            f"{D} features of each token: reshape to (B, T, n_heads, head_dim) first, then transpose(1, 2)"
        )
    if torch.equal(out, x.view(B, T, D, H).permute(0, 3, 1, 2)):
        raise CheckFailed(
            f"head 0 holds features 0, {H}, {2 * H}, ... (one in every {H}), not the first {D}: "
            "view as (B, T, n_heads, head_dim), not (B, T, head_dim, n_heads)"
        )
    got = [round(v, 3) for v in out[0, 0, 0].tolist()]
    raise CheckFailed(
        f"head 0 at token 0 should hold features 0..{D - 1} of token 0 (in this test x[b, t, c] = "
        f"1000 b + 100 t + c, so the values {list(range(D))}), got {got}"
    )


def check_split_error(split_heads):
    x = _randn(2, 3, 12)
    try:
        out = split_heads(x, 5)
    except ValueError:
        return "n_heads = 5 for width 12 raises ValueError"
    except NotImplementedError:
        raise
    except Exception as error:
        raise CheckFailed(
            f"split_heads(x of width 12, n_heads=5) raised {type(error).__name__} instead of ValueError: "
            "check that n_heads divides the width and raise ValueError saying so"
        ) from None
    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    raise CheckFailed(
        f"split_heads(x of width 12, n_heads=5) returned {shape}; 5 heads cannot share 12 features "
        "equally: raise ValueError"
    )


# --- merge_heads -------------------------------------------------------------------------------


def check_merge_shape(fns):
    _, merge_heads = fns
    for B, H, T, D in [(2, 3, 5, 4), (1, 1, 4, 8), (3, 8, 2, 1)]:
        out = _call(
            merge_heads, "merge_heads", "(batch, seq, n_heads * head_dim)", _randn(B, H, T, D)
        )
        if tuple(out.shape) == (B, T, H, D) and H not in (1, T):
            raise CheckFailed(
                f"merge_heads gave {tuple(out.shape)}, (batch, seq, n_heads, head_dim): flatten "
                "the last two dimensions, reshape(B, T, n_heads * head_dim)"
            )
        if tuple(out.shape) != (B, T, H * D):
            raise CheckFailed(
                f"merge_heads(y of shape {(B, H, T, D)}) gave shape {tuple(out.shape)}, expected {(B, T, H * D)}"
            )
    return "(2, 3, 5, 4) -> (2, 5, 12); also 1 head and 8 heads"


def check_merge_order(fns):
    _, merge_heads = fns
    B, H, T, D = 2, 3, 5, 4
    x = _labelled(B, T, H * D)
    y = _ref_split(x, H).contiguous()  # what attention hands back: (B, H, T, D), contiguous
    out = _call(merge_heads, "merge_heads", "(batch, seq, n_heads * head_dim)", y)
    if tuple(out.shape) != (B, T, H * D):
        raise CheckFailed(
            f"shape {tuple(out.shape)} is wrong (see the shape check); expected {(B, T, H * D)}"
        )
    if torch.equal(out, x):
        return "features h*head_dim ... (h+1)*head_dim - 1 of token t come from head h at token t, exactly"
    if torch.equal(out, y.reshape(B, T, H * D)):
        raise CheckFailed(
            "token 0's features come from several tokens of head 0: transpose(1, 2) to "
            "(B, T, n_heads, head_dim) before reshaping to (B, T, C)"
        )
    if torch.equal(out, y.permute(0, 2, 3, 1).reshape(B, T, H * D)):
        raise CheckFailed(
            "the heads are interleaved feature by feature; put each head's head_dim features side by side: "
            "transpose(1, 2), then reshape"
        )
    raise CheckFailed(
        "merge_heads(y) does not put head h at token t into features h*head_dim ... of token t"
    )


def check_round_trip(fns):
    split_heads, merge_heads = fns
    # merge_heads is called first, so an unsolved merge_heads reads TODO, not FAIL.
    B, T, C, H = 2, 7, 24, 4
    x = _randn(B, T, C, seed=1)
    back = _call(merge_heads, "merge_heads", "(batch, seq, C)", _ref_split(x, H))
    if tuple(back.shape) != (B, T, C):
        raise CheckFailed(f"merge_heads(split) has shape {tuple(back.shape)}, expected {(B, T, C)}")
    try:
        split = _call(split_heads, "split_heads", "(batch, n_heads, seq, head_dim)", x, H)
    except NotImplementedError:
        raise CheckFailed(
            "merge_heads works; now write split_heads: this check runs merge_heads(split_heads(x)) == x"
        ) from None
    trip = _call(merge_heads, "merge_heads", "(batch, seq, C)", split)
    if not torch.equal(trip, x):
        wrong = (trip != x).float().mean().item() if trip.shape == x.shape else 1.0
        raise CheckFailed(
            f"merge_heads(split_heads(x)) differs from x in {wrong:.0%} of its entries; the two must undo "
            "each other exactly (no arithmetic, only reshapes and transposes)"
        )
    y = _randn(B, H, T, C // H, seed=2)
    if not torch.equal(
        _call(split_heads, "split_heads", "", _call(merge_heads, "merge_heads", "", y), H), y
    ):
        raise CheckFailed(
            "split_heads(merge_heads(y)) differs from y; the two must undo each other exactly"
        )
    return "merge_heads(split_heads(x)) == x and split_heads(merge_heads(y)) == y, bit for bit"


# --- multi_head_attention ----------------------------------------------------------------------


def _engine_layer(C, H, seed):
    """The engine's attention layer with random weights and zero biases, plus its weights (in, out)."""
    torch.manual_seed(seed)
    layer = CausalSelfAttention(
        GPTConfig(vocab_size=2, block_size=16, n_layer=1, n_head=H, n_embd=C)
    )
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn_like(p) / math.sqrt(C) if p.dim() == 2 else torch.zeros_like(p))
    w_k, w_v = layer.kv_proj.weight.detach().split(C, dim=1)
    weights = (
        layer.q_proj.weight.detach(),
        w_k.contiguous(),
        w_v.contiguous(),
        layer.out_proj.weight.detach(),
    )
    return layer, weights


def _variant(x, w_q, w_k, w_v, w_o, n_heads, causal=True, scale_width=None, project_out=True,
             split="view", merge="transpose", transpose_weights=False, dim=-1, fill=-math.inf,
             diagonal=True):  # fmt: skip
    """Reference multi-head attention in float64, with switches that rebuild classic mistakes."""
    x, w_q, w_k, w_v, w_o = (t.double() for t in (x, w_q, w_k, w_v, w_o))
    B, T, C = x.shape
    H, D = n_heads, C // n_heads

    def cut(t):
        if split == "reshape":
            return t.reshape(B, H, T, D)
        if split == "strided":
            return t.view(B, T, D, H).permute(0, 3, 1, 2)
        return _ref_split(t, H)

    ws = [w.T if transpose_weights else w for w in (w_q, w_k, w_v, w_o)]
    q, k, v = (cut(x @ w) for w in ws[:3])
    d = {None: q.size(-1), "C": C}.get(scale_width, scale_width)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)
    if causal:
        allowed = torch.ones(T, T, dtype=torch.bool).tril(0 if diagonal else -1)
        scores = scores.masked_fill(~allowed, fill)
    y = torch.softmax(scores, dim=dim) @ v
    y = y.reshape(B, T, C) if merge == "reshape" else _ref_merge(y)
    return y @ ws[3] if project_out else y


# (message, keywords of _variant), most specific first.
_MISTAKES = [
    (
        "the heads are cut with reshape(B, n_heads, T, head_dim) and glued back with reshape(B, "
        "T, C); that mixes tokens: view as (B, T, n_heads, head_dim) and transpose(1, 2) to split, "
        "transpose(1, 2) back before reshaping to merge",
        dict(split="reshape", merge="reshape"),
    ),
    (
        "the heads are cut with reshape(B, n_heads, T, head_dim), which mixes tokens: view as "
        "(B, T, n_heads, head_dim), then transpose(1, 2)",
        dict(split="reshape"),
    ),
    (
        "the heads are merged with a reshape of (B, n_heads, T, head_dim) to (B, T, C), which "
        "mixes tokens: transpose(1, 2) to (B, T, n_heads, head_dim) first",
        dict(merge="reshape"),
    ),
    (
        "each head takes every n_heads-th feature instead of a run of head_dim consecutive ones: "
        "view as (B, T, n_heads, head_dim), not (B, T, head_dim, n_heads)",
        dict(split="strided"),
    ),
    (
        "the weights are used transposed (x @ w.T, or F.linear(x, w)); they are stored (in, out), "
        "so the queries are x @ w_q and the output is merged @ w_o",
        dict(transpose_weights=True),
    ),
    (
        "it matches attention without the causal mask: mask out later positions",
        dict(causal=False),
    ),
    (
        "the masked scores are set to 0, but exp(0) = 1 still gives later positions weight: "
        "fill them with -inf",
        dict(fill=0.0),
    ),
    (
        "the mask hides the diagonal too, so the first token sees nothing (NaN): a token may "
        "attend to itself, mask only the positions after it, triu(diagonal=1)",
        dict(diagonal=False),
    ),
    (
        "softmax is taken over the queries; take it over the keys, softmax(..., dim=-1)",
        dict(dim=-2),
    ),
    (
        "the scores are divided by sqrt(C); divide by sqrt(head_dim) = sqrt(C / n_heads)",
        dict(scale_width="C"),
    ),
    ("the scores are not scaled: divide them by sqrt(head_dim)", dict(scale_width=1)),
    (
        "the output projection is missing: multiply the merged heads by w_o",
        dict(project_out=False),
    ),
]


def _diagnose(out, x, weights, H):
    """One sentence naming the classic mistake `out` matches, else where it is off."""
    C = x.size(-1)
    mistakes = [(m, lambda kw=kw: _variant(x, *weights, H, **kw)) for m, kw in _MISTAKES]
    mistakes += [
        (
            f"it computes {other} heads although n_heads is {H}: split into n_heads heads, the "
            "argument, not a fixed number",
            lambda other=other: _variant(x, *weights, other),
        )
        for other in range(2, C + 1)
        if C % other == 0 and other != H
    ]
    if H > 1:
        mistakes.append(
            (
                "it matches one head of full width: split q, k and v into n_heads heads before "
                "the softmax",
                lambda: _variant(x, *weights, 1),
            )
        )
    B, T, _ = x.shape
    if tuple(out.shape) == (B, H, T, C // H) and H not in (1, T):
        return (
            f"the output has shape {tuple(out.shape)}, (batch, n_heads, seq, head_dim): merge the "
            "heads back to (batch, seq, C) and apply w_o"
        )
    named = diagnose(out, mistakes)
    return named or describe_difference(out, _variant(x, *weights, H))


def _mha(fn, x, weights, H):
    return _call(fn, "multi_head_attention", "(batch, seq, C)", x, *weights, H)


def check_mha_shape(multi_head_attention):
    _, weights = _engine_layer(16, 4, seed=0)
    out = _mha(multi_head_attention, _randn(2, 6, 16), weights, 4)
    if tuple(out.shape) == (2, 4, 6, 4):
        raise CheckFailed(
            "output has shape (2, 4, 6, 4), (batch, n_heads, seq, head_dim): merge the heads "
            "back to (2, 6, 16) and apply w_o"
        )
    if tuple(out.shape) != (2, 6, 16):
        raise CheckFailed(
            f"output has shape {tuple(out.shape)}, expected (2, 6, 16): the same shape as x"
        )
    return "(2, 6, 16) in, (2, 6, 16) out"


def check_mha_causal(multi_head_attention):
    _, weights = _engine_layer(16, 4, seed=1)
    x = _randn(1, 6, 16, seed=3)
    changed = x.clone()
    changed[:, -1] = _randn(16, seed=4)
    before, after = (
        _mha(multi_head_attention, x, weights, 4),
        _mha(multi_head_attention, changed, weights, 4),
    )
    moved = (before[:, :-1] - after[:, :-1]).abs().amax(dim=(0, 2))
    if not torch.isfinite(before).all() or moved.max() > 1e-6:
        # Tokens can leak through a missing mask or through a split that mixes tokens, so
        # name the mistake the output matches before blaming the mask.
        named = diagnose(
            before, [(m, lambda kw=kw: _variant(x, *weights, 4, **kw)) for m, kw in _MISTAKES]
        )
        if named:
            raise CheckFailed(named)
        if not torch.isfinite(before).all():
            raise CheckFailed(describe_difference(before, _variant(x, *weights, 4)))
        raise CheckFailed(
            f"changing only the last token moved the output at position {int(moved.argmax())} by "
            f"{moved.max().item():.3g}: either the causal mask is missing or the heads mix tokens "
            "(a reshape without transpose)"
        )
    return "earlier positions do not move when a later token changes"


def check_mha_engine(multi_head_attention):
    layer, weights = _engine_layer(16, 4, seed=2)
    x = _randn(2, 6, 16, seed=5)
    out = _mha(multi_head_attention, x, weights, 4)
    with torch.no_grad():
        expected, _ = layer(x)
    if tuple(out.shape) != tuple(expected.shape) or not torch.allclose(out, expected, atol=1e-5):
        raise CheckFailed(_diagnose(out, x, weights, 4))
    return "matches the engine's CausalSelfAttention (4 heads, same weights) to 1e-5"


def check_mha_head_counts(multi_head_attention):
    for H in (1, 2, 8):
        layer, weights = _engine_layer(16, H, seed=10 + H)
        x = _randn(2, 5, 16, seed=H)
        out = _mha(multi_head_attention, x, weights, H)
        with torch.no_grad():
            expected, _ = layer(x)
        if tuple(out.shape) != tuple(expected.shape) or not torch.allclose(
            out, expected, atol=1e-5
        ):
            raise CheckFailed(f"with n_heads={H}: {_diagnose(out, x, weights, H)}")
    return "also matches with 1, 2 and 8 heads"


# ---- differential: each function against the reference, input by input ------------------------
def _same_dtype(got, expected, c, rtol=None, atol=None):
    """A tensor of the input's dtype, equal to the reference within float32's tolerance."""
    if not torch.is_tensor(got):
        return Difference("", got, expected, "is not a tensor")
    if got.dtype != c.args[0].dtype:
        return Difference("", got, expected, f"is {got.dtype}, not {c.args[0].dtype}")
    return differs(got, expected, rtol=rtol, atol=atol)


def _exact(got, expected, c):
    """Splitting and merging move numbers without arithmetic: bit for bit."""
    return _same_dtype(got, expected, c, rtol=0.0, atol=0.0)


def _shape_of(c):
    x = c.args[0]
    rest = "".join(f" and {k}={v}" for k, v in c.kwargs.items())
    rest += "".join(f" and n_heads={v}" for v in c.args[1:2] if isinstance(v, int))
    return f"x of shape {tuple(x.shape)} ({str(x.dtype).replace('torch.', '')}){rest}"


def _widths(draw):
    head_dim, n_heads = draw.integer(1, 4), draw.integer(1, 4)
    return n_heads, head_dim


def _generate_split(draw):
    n_heads, head_dim = _widths(draw)
    width = n_heads * head_dim + (
        draw.integer(1, n_heads - 1) if draw.boolean(0.2) and n_heads > 1 else 0
    )
    dtype = draw.choice([torch.float32, torch.float64])
    x = draw.tensor(draw.integer(1, 3), draw.integer(1, 4), width, dtype=dtype)
    return case(x, n_heads)


def _generate_merge(draw):
    n_heads, head_dim = _widths(draw)
    dtype = draw.choice([torch.float32, torch.float64])
    y = draw.tensor(draw.integer(1, 3), n_heads, draw.integer(1, 4), head_dim, dtype=dtype)
    if draw.boolean():  # as split_heads returns it: a transposed, non-contiguous view
        y = y.transpose(1, 2).contiguous().transpose(1, 2)
    return case(y)


def _weights(draw, width, dtype):
    return [draw.tensor(width, width, dtype=dtype, scale=width**-0.5) for _ in range(4)]


def _generate_mha(draw):
    n_heads, head_dim = _widths(draw)
    width, dtype = n_heads * head_dim, draw.choice([torch.float32, torch.float64])
    x = draw.tensor(draw.integer(1, 3), draw.integer(1, 5), width, dtype=dtype)
    return case(x, *_weights(draw, width, dtype), n_heads)


def _mha_row(B, T, C, H, seed=0, dtype=torch.float32):
    x = _randn(B, T, C, seed=seed, dtype=dtype)
    ws = [_randn(C, C, seed=seed + i + 1, dtype=dtype) / math.sqrt(C) for i in range(4)]
    return case(x, *ws, H)


def _show_mha(c):
    x, H = c.args[0], c.args[5]
    return f"x of shape {tuple(x.shape)} ({str(x.dtype).replace('torch.', '')}), n_heads={H}"


def _mha_named(c, got, expected):
    x, *weights, H = c.args
    if not torch.is_tensor(got):
        return None
    named = _diagnose(got, x, weights, H)
    return None if " by up to " in named or " contain" in named else named


def _split_named(c, got, expected):
    x, H = c.args
    if not torch.is_tensor(got) or x.size(-1) % H:
        return None
    B, T, C = x.shape
    if tuple(got.shape) == tuple(expected.shape):
        if torch.equal(got, x.reshape(B, H, T, C // H)) and not torch.equal(got, expected):
            return "reshape to (B, T, n_heads, head_dim) first, then transpose(1, 2)"
    return None


# The task's worked example: two tokens of four features, two heads.
_EIGHT = torch.arange(8.0).view(1, 2, 4)

SPLIT_DIFF = Differential(
    reference("02_multi_head", "split_heads"),
    examples=[case(_EIGHT, 2)],
    boundaries=[
        case(_randn(2, 5, 12), 3).because("head h holds features h*head_dim ... of each token"),
        case(_randn(2, 5, 12), 1).because("one head: the whole width"),
        case(_randn(2, 5, 12), 12).because("as many heads as features: head_dim 1"),
        case(_randn(1, 1, 4), 2).because("one sequence of one token"),
        case(_randn(2, 3, 6, dtype=torch.float64), 2).because("float64 stays float64"),
        case(_randn(2, 3, 12), 5).because("n_heads must divide d_model: ValueError"),
    ],
    generate=_generate_split,
    compare=_exact,
    diagnose=_split_named,
    show_input=_shape_of,
)

MERGE_DIFF = Differential(
    reference("02_multi_head", "merge_heads"),
    examples=[case(_ref_split(_EIGHT, 2))],
    boundaries=[
        case(_randn(2, 3, 5, 4)).because("(B, H, T, D) back to (B, T, H * D)"),
        case(_randn(2, 3, 5, 4).transpose(1, 2).contiguous().transpose(1, 2)).because(
            "the non-contiguous view split_heads returns"
        ),
        case(_randn(2, 1, 5, 4)).because("one head"),
        case(_randn(2, 4, 3, 1)).because("head_dim 1"),
        case(_randn(1, 2, 1, 3, dtype=torch.float64)).because("float64 stays float64"),
    ],
    generate=_generate_merge,
    compare=_exact,
    show_input=_shape_of,
)

MHA_DIFF = Differential(
    reference("02_multi_head", "multi_head_attention"),
    boundaries=[
        _mha_row(2, 5, 12, 3).because("causal attention in every head, then w_o"),
        _mha_row(2, 5, 12, 1, seed=1).because("one head: plain attention"),
        _mha_row(2, 5, 12, 12, seed=2).because("as many heads as features"),
        _mha_row(2, 1, 8, 2, seed=3).because("one token: it sees only itself"),
        _mha_row(3, 4, 8, 4, seed=4, dtype=torch.float64).because("float64 stays float64"),
    ],
    generate=_generate_mha,
    n_generated=60,
    compare=lambda got, expected, c: _same_dtype(got, expected, c),
    diagnose=_mha_named,
    show_input=_show_mha,
)


SPLIT_CHECKS = [
    ("split shape", check_split_shape),
    ("split order", check_split_order),
    ("split error", check_split_error),
    *SPLIT_DIFF.checks(prefix="split: "),
]
# The merge checks get (split_heads, merge_heads): the round trip needs both.
MERGE_CHECKS = [
    ("merge shape", check_merge_shape),
    ("merge order", check_merge_order),
    ("round trip", check_round_trip),
    *MERGE_DIFF.checks(pick=lambda fns: fns[1], prefix="merge: "),
]
MHA_CHECKS = [
    ("attention shape", check_mha_shape),
    ("no peeking", check_mha_causal),
    ("matches the engine", check_mha_engine),
    ("any number of heads", check_mha_head_counts),
    *MHA_DIFF.checks(prefix="attention: "),
]
CHECKS = SPLIT_CHECKS + MERGE_CHECKS + MHA_CHECKS


def check_multi_head(split_heads, merge_heads, multi_head_attention):
    """Run every check on the learner's three functions; prints one line per check."""
    reports = [
        run_checks(SPLIT_CHECKS, split_heads, "split_heads"),
        run_checks(MERGE_CHECKS, (split_heads, merge_heads), "merge_heads"),
        run_checks(MHA_CHECKS, multi_head_attention, "multi_head_attention"),
    ]
    return Report(tuple(r for report in reports for r in report.results))

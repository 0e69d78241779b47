"""Checks for exercises/01_attention.ipynb: scaled dot-product attention with an optional causal mask.

The learner writes attention(q, k, v, causal=False) -> (output, weights), where
q is (..., T, d_k), k is (..., S, d_k), v is (..., S, d_v), output is (..., T, d_v) and
weights is (..., T, S). With causal=True the T queries are the last T of the S positions (as
when decoding with a KV cache): query i sits at position S - T + i and sees keys 0 ... S - T + i.

Every value check uses shapes that tell the classic mistakes apart: d_k != d_v (dividing by
sqrt(d_v) must not pass), T != S (a transposed or top-left mask must not pass) and a batch.
When a value is off, `_MISTAKES` rebuilds each classic mistake in float64 and the check names
the one the learner's answer matches; only then does it fall back to "differs by up to X".
"""

import math

import torch

from llmlab.checks import CheckFailed, close, crashed, describe_difference, diagnose, run_checks
from llmlab.checks.differential import Difference, Differential, case, differs, reference


def _inputs(*batch, t=5, s=7, d_k=16, d_v=6, dtype=torch.float32, scale=1.0, seed=0):
    """Random q (..., t, d_k), k (..., s, d_k), v (..., s, d_v): every width and length differs."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(*batch, t, d_k, generator=g, dtype=dtype) * scale
    k = torch.randn(*batch, s, d_k, generator=g, dtype=dtype) * scale
    v = torch.randn(*batch, s, d_v, generator=g, dtype=dtype)
    return q, k, v


def _reference(q, k, v, causal=False, scale="sqrt_d_k", dim=-1, mask="right", fill=-math.inf,
               scale_after=False):  # fmt: skip
    """(output, weights) in float64; the keywords switch on one classic mistake each."""
    q, k, v = q.double(), k.double(), v.double()
    T, S = q.size(-2), k.size(-2)
    factor = {
        "sqrt_d_k": 1 / math.sqrt(q.size(-1)),
        "none": 1.0,
        "d_k": 1 / q.size(-1),
        "sqrt_d_v": 1 / math.sqrt(v.size(-1)),
        "times_sqrt_d_k": math.sqrt(q.size(-1)),
        "sqrt_T": 1 / math.sqrt(T),
        "sqrt_S": 1 / math.sqrt(S),
    }[scale]
    scores = q @ k.transpose(-2, -1)
    if not scale_after:
        scores = scores * factor
    if causal and mask != "none":
        ones = torch.ones(T, S, dtype=torch.bool)
        allowed = {
            "right": ones.tril(S - T),  # query i at position S - T + i
            "top_left": ones.tril(),  # query i at position i: SDPA's is_causal when T != S
            "no_diagonal": ones.tril(S - T - 1),  # a query may not see itself
            "no_diagonal_top_left": ones.tril(-1),  # both at once when T != S
            "upper": ones.triu(S - T),  # the triangle the wrong way round
            "filled_allowed": ones.triu(S - T + 1),  # masked_fill(allowed, -inf)
        }[mask]
        scores = scores.masked_fill(~allowed, fill)
    weights = torch.softmax(scores, dim=dim)
    if scale_after:
        weights = weights * factor
    return weights @ v, weights


# (message, keywords of _reference that rebuild the mistake), most specific first.
_SCALE_MISTAKES = [
    (
        "the scores are divided by sqrt(d_v), the width of v; divide by sqrt(d_k), the width "
        "of q and k (q.size(-1))",
        dict(scale="sqrt_d_v"),
    ),
    ("the scores are not scaled: divide q @ k^T by sqrt(d_k)", dict(scale="none")),
    ("the scores are divided by d_k; divide by sqrt(d_k) instead", dict(scale="d_k")),
    (
        "the scores are multiplied by sqrt(d_k); divide by it instead",
        dict(scale="times_sqrt_d_k"),
    ),
    (
        "the scores are divided by sqrt(T), the number of queries; divide by sqrt(d_k), the "
        "last dimension of q (q.size(-1))",
        dict(scale="sqrt_T"),
    ),
    (
        "the scores are divided by sqrt(S), the number of keys; divide by sqrt(d_k), the last "
        "dimension of q (q.size(-1))",
        dict(scale="sqrt_S"),
    ),
    (
        "the scaling comes after the softmax: divide the scores by sqrt(d_k) before it, so each "
        "row of weights still sums to 1",
        dict(scale_after=True),
    ),
    (
        "softmax is taken over the queries; take it over the keys, softmax(..., dim=-1), so "
        "each row of weights sums to 1",
        dict(dim=-2),
    ),
    (
        "softmax is taken over dimension 1, which in (batch, heads, T, S) scores is the heads; "
        "take it over the keys, softmax(..., dim=-1), whatever the number of leading dimensions",
        dict(dim=1),
    ),
]
_MASK_MISTAKES = [
    (
        "causal=True is ignored: set the scores of later keys to -inf before the softmax",
        dict(mask="none"),
    ),
    (
        "the masked scores are set to 0, but exp(0) = 1 still gives later keys weight: fill "
        "them with -inf",
        dict(fill=0.0),
    ),
    (
        "the mask hides the diagonal too, so the first query sees no key at all (its weights "
        "are NaN): a query may attend to itself, allow keys up to and including its own "
        "position",
        dict(mask="no_diagonal"),
    ),
    (
        "the mask hides the diagonal too, so the first query sees no key at all (its weights "
        "are NaN): a query may attend to itself, allow keys up to and including its own "
        "position, which for T queries after S - T cached keys is S - T + i",
        dict(mask="no_diagonal_top_left"),
    ),
    (
        "masked_fill(mask, -inf) fills where the mask is True, and yours is True where a query "
        "may look: fill ~mask (the later keys) instead",
        dict(mask="filled_allowed"),
    ),
    (
        "the mask is the wrong way round: query i must see the keys up to its position (a lower "
        "triangle, tril), not the keys after it",
        dict(mask="upper"),
    ),
    (
        "with fewer queries than keys the queries are the last T positions: query i sits at "
        "position S - T + i, so allow keys up to there, tril(diagonal=S - T); a plain tril() "
        "(like SDPA's is_causal=True) lines the queries up with the first keys",
        dict(mask="top_left"),
    ),
]


def _diagnose(out, weights, q, k, v, causal):
    """One sentence: the classic mistake the answer matches, else where it is off and by how much."""
    mistakes = _SCALE_MISTAKES + (_MASK_MISTAKES if causal else [])
    for got, which in ((out, 0), (weights, 1)):
        named = diagnose(
            got,
            [
                (m, lambda kw=kw, i=which: _reference(q, k, v, causal, **kw)[i])
                for m, kw in mistakes
            ],
        )
        if named:
            return named
    expected_out, expected_weights = _reference(q, k, v, causal)
    if close(weights, expected_weights) and weights.dtype == out.dtype:
        if close(out, (weights.double() @ v.double())):
            return describe_difference(out, expected_out)
        return (
            f"the weights are right but the output is not weights @ v: "
            f"{describe_difference(out, expected_out)}"
        )
    if not close(weights, expected_weights):
        return describe_difference(weights, expected_weights, "weights")
    return describe_difference(out, expected_out)


def _crash_hint(attention, q, k, v, causal):
    """Why the learner's code raised, found by retrying on simpler inputs that it may handle."""

    def works(*args):
        try:
            attention(*args, causal=causal)
            return True
        except Exception:
            return False

    flat = (0,) * (q.dim() - 2)  # index down to one (T, d) matrix
    if q.dim() >= 3 and works(q[flat], k[flat], v[flat]):
        return (
            "it works on 2-D inputs but not with a batch dimension: k.T (or k.t()) reverses every "
            "dimension of a 3-D or 4-D tensor; use k.transpose(-2, -1) (or k.mT)"
        )
    if q.dim() == 4 and works(q[:, 0], k[:, 0], v[:, 0]):
        return (
            "it works on (batch, T, d) inputs but not with a heads dimension: transpose and "
            "softmax over the last two dimensions, k.transpose(-2, -1) and dim=-1, not dims 1 and 2"
        )
    T, S = q.size(-2), k.size(-2)
    if causal and T != S and works(q, k[..., :T, :], v[..., :T, :]):
        return (
            f"with causal=True it fails when T != S ({T} queries, {S} keys): the mask must have "
            "shape (T, S), one row per query and one column per key"
        )
    if v.size(-1) != q.size(-1) and works(q, k, v[..., :1].expand_as(k)):
        return (
            "it fails when v is narrower than q and k (d_v != d_k): the output is weights @ v, "
            "of width d_v"
        )
    return None


def _call(attention, q, k, v, causal=False):
    try:
        result = attention(q, k, v, causal=causal)
    except NotImplementedError:
        raise
    except Exception as error:
        raise crashed("attention", error, _crash_hint(attention, q, k, v, causal)) from None
    if not (
        isinstance(result, tuple)
        and len(result) == 2
        and all(isinstance(t, torch.Tensor) for t in result)
    ):
        what = f"a tuple of {len(result)}" if isinstance(result, tuple) else type(result).__name__
        raise CheckFailed(
            f"attention() must return a tuple (output, weights) of two tensors, got {what}"
        )
    return result


def _shape_problem(out, weights, q, k, v):
    """A sentence naming a wrong shape, or None when both shapes are right."""
    *batch, T, _ = q.shape
    S, d_v = k.size(-2), v.size(-1)
    want_out, want_weights = (*batch, T, d_v), (*batch, T, S)
    got_out, got_weights = tuple(out.shape), tuple(weights.shape)
    if got_out == want_out and got_weights == want_weights:
        return None
    if got_out == want_weights and got_weights == want_out:
        return "the pair is the wrong way round: return (output, weights), the output first"
    if got_out == want_weights:
        return (
            f"the output has the weights' shape {got_out}: return weights @ v, shape {want_out}, "
            "as the first element"
        )
    if got_weights == (*batch, S, T):
        return (
            f"weights have shape {got_weights}, one row per key: compute q @ k^T (rows are "
            f"queries), not k @ q^T, to get {want_weights}"
        )
    if got_weights != want_weights:
        return (
            f"weights have shape {got_weights}, expected {want_weights}: one row per query "
            f"(T = {T}), one column per key (S = {S})"
        )
    return (
        f"output has shape {got_out}, expected {want_out}: one row per query, as wide as v "
        f"(d_v = {d_v})"
    )


def _check_against_reference(attention, q, k, v, causal):
    out, weights = _call(attention, q, k, v, causal)
    problem = _shape_problem(out, weights, q, k, v)
    if problem:
        raise CheckFailed(problem)
    expected_out, expected_weights = _reference(q, k, v, causal)
    if not (close(out, expected_out) and close(weights, expected_weights)):
        raise CheckFailed(_diagnose(out, weights, q, k, v, causal))


def check_returns_pair(attention):
    _call(attention, *_inputs(2))
    return "returns (output, weights)"


def check_shapes(attention):
    q, k, v = _inputs(2)
    problem = _shape_problem(*_call(attention, q, k, v), q, k, v)
    if problem:
        raise CheckFailed(problem)
    return "output (2, 5, 6) and weights (2, 5, 7) for 5 queries, 7 keys, d_k = 16, d_v = 6"


def check_dtype(attention):
    out, weights = _call(attention, *_inputs(2, dtype=torch.float64))
    if out.dtype != torch.float64 or weights.dtype != torch.float64:
        raise CheckFailed(
            f"float64 inputs gave output {out.dtype} and weights {weights.dtype}; keep the input "
            "dtype (no .float(), no float32 constants made with torch.tensor)"
        )
    return "float64 in, float64 out"


def check_rows_sum_to_one(attention):
    q, k, v = _inputs(2)
    out, weights = _call(attention, q, k, v)
    problem = _shape_problem(out, weights, q, k, v)
    if problem:
        raise CheckFailed(problem)
    sums = weights.double().sum(-1)
    if not torch.isfinite(weights).all():
        raise CheckFailed(describe_difference(weights, _reference(q, k, v)[1], "weights"))
    if not torch.allclose(sums, torch.ones_like(sums), atol=1e-5):
        named = diagnose(
            weights,
            [(m, lambda kw=kw: _reference(q, k, v, **kw)[1]) for m, kw in _SCALE_MISTAKES],
        )
        raise CheckFailed(
            named
            or f"rows of weights sum to between {sums.min().item():.3g} and "
            f"{sums.max().item():.3g}, not 1: apply softmax over the keys (the last dimension)"
        )
    if weights.min() < 0:
        raise CheckFailed(
            f"weights contain a negative value ({weights.min().item():.3g}); softmax outputs "
            "are >= 0"
        )
    return "every row of weights is a probability distribution"


def check_values(attention):
    _check_against_reference(attention, *_inputs(2), causal=False)
    return "matches softmax(q k^T / sqrt(d_k)) v with d_k = 16, d_v = 6, T = 5, S = 7"


def check_causal_mask(attention):
    q, k, v = _inputs(2, t=6, s=6)
    out, weights = _call(attention, q, k, v, causal=True)
    problem = _shape_problem(out, weights, q, k, v)
    if problem:
        raise CheckFailed(problem)
    future = weights.double().triu(diagonal=1)  # weight a query gives to positions after it
    if not torch.isfinite(weights).all() or future.abs().max() > 1e-6:
        named = diagnose(
            weights,
            [(m, lambda kw=kw: _reference(q, k, v, True, **kw)[1]) for m, kw in _MASK_MISTAKES],
        )
        if named:
            raise CheckFailed(named)
        if not torch.isfinite(weights).all():
            raise CheckFailed(describe_difference(weights, _reference(q, k, v, True)[1]))
        row = future.sum(-1).amax(0).argmax().item()
        raise CheckFailed(
            f"with causal=True query {row} gives {future.sum(-1).max().item():.2f} of its "
            "weight to later positions: set their scores to -inf before the softmax"
        )
    return "with causal=True no query looks ahead"


def check_causal_values(attention):
    _check_against_reference(attention, *_inputs(2, t=6, s=6), causal=True)
    return "causal output and weights match with T = S = 6"


def check_causal_after_cache(attention):
    _check_against_reference(attention, *_inputs(2, t=3, s=7, seed=1), causal=True)
    return "causal with 3 queries after 4 cached keys: query i sees keys up to 4 + i"


def check_heads(attention):
    _check_against_reference(attention, *_inputs(2, 3, seed=2), causal=False)
    return "works for (batch, heads, T, d_k) inputs"


def check_large_scores(attention):
    # Scores in the thousands: exp() overflows unless the softmax subtracts each row's max.
    q, k, v = _inputs(1, t=4, s=4, d_k=8, d_v=8, scale=30.0)
    out, weights = _call(attention, q, k, v)
    if not (torch.isfinite(out).all() and torch.isfinite(weights).all()):
        raise CheckFailed(
            "large scores give inf or nan: subtract each row's max before exp, or use torch.softmax"
        )
    expected, _ = _reference(q, k, v)
    # float32 scores of ~1000 carry errors of ~1e-4, which exp() turns into relative errors.
    if not close(out, expected, atol=1e-3, rtol=1e-3):
        raise CheckFailed(describe_difference(out, expected))
    return "stable when scores are large"


# ---- differential: the learner's function against the reference, input by input --------------
def _qkv_of(c):
    q, k, v = c.args[:3]
    return q, k, v, c.kwargs.get("causal", c.args[3] if len(c.args) > 3 else False)


def _show_qkv(c):
    q, k, v, causal = _qkv_of(c)
    given = "causal" in c.kwargs or len(c.args) > 3
    tail = f" and causal={causal}" if given else " (causal left out)"
    return (
        f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)} "
        f"({str(q.dtype).replace('torch.', '')}){tail}"
    )


def _compare(got, expected, c):
    """(output, weights), each in the inputs' dtype, within float32's (or float64's) tolerance
    scaled by the largest score (softmax of scores in the thousands amplifies rounding)."""
    if not (isinstance(got, tuple) and len(got) == 2 and all(torch.is_tensor(t) for t in got)):
        return Difference("", got, expected, "is not a tuple (output, weights) of two tensors")
    q, k, v, _ = _qkv_of(c)
    for i, name in enumerate(("output", "weights")):
        if got[i].dtype != q.dtype:
            return Difference(f" {name}", got[i], expected[i], f"is {got[i].dtype}, not {q.dtype}")
    largest = (q.double() @ k.double().transpose(-2, -1)).abs().max().item() / math.sqrt(q.size(-1))
    tol = 2e-5 * max(1.0, largest)  # float32's, whatever the inputs: computing in float32 is fine
    for i, name in enumerate(("output", "weights")):
        found = differs(got[i], expected[i], rtol=tol, atol=tol, where=name)
        if found:
            return found
    return None


def _named(c, got, expected):
    """The classic mistake the answer matches, among those that change the answer here."""
    q, k, v, causal = _qkv_of(c)
    right = _reference(q, k, v, causal)
    left_out = "causal" not in c.kwargs and len(c.args) < 4
    if left_out and q.size(-2) <= k.size(-2):
        masked = _reference(q, k, v, True)
        if not close(masked[0], right[0]) and close(got[0], masked[0]):
            return "causal defaults to True in yours; left out, it is False: no mask"
    for message, kw in _SCALE_MISTAKES + (_MASK_MISTAKES if causal else []):
        wrong = _reference(q, k, v, causal, **kw)
        same = [
            torch.allclose(w, r, atol=1e-6, rtol=1e-6, equal_nan=True) for w, r in zip(wrong, right)
        ]
        if all(same):
            continue  # this mistake gives the right answer on this input
        for which in (0, 1):
            if diagnose(got[which], [(message, wrong[which])]):
                return message
    return None


def _crash_cause(fn, c, error):
    q, k, v, causal = _qkv_of(c)
    return _crash_hint(fn, q, k, v, causal)


def _tensors(draw, *lead, t, s, d_k, d_v, dtype, scale=1.0):
    return (
        draw.tensor(*lead, t, d_k, dtype=dtype, scale=scale),
        draw.tensor(*lead, s, d_k, dtype=dtype, scale=scale),
        draw.tensor(*lead, s, d_v, dtype=dtype),
    )


def _generate(draw):
    """Any shapes the task allows: no batch, a batch, a batch and heads; T <= S when causal."""
    lead = draw.choice([(), (draw.integer(1, 3),), (draw.integer(1, 2), draw.integer(1, 3))])
    causal = draw.choice(["left out", False, True])
    s = draw.integer(1, 8)
    t = draw.integer(1, s) if causal is True else draw.integer(1, 8)
    dtype = draw.choice([torch.float32, torch.float64])
    q, k, v = _tensors(
        draw, *lead, t=t, s=s, d_k=draw.integer(1, 16), d_v=draw.integer(1, 8), dtype=dtype
    )
    return case(q, k, v) if causal == "left out" else case(q, k, v, causal=causal)


def _row(*lead, t, s, d_k=16, d_v=6, seed=0, dtype=torch.float32, scale=1.0):
    q, k, v = _inputs(*lead, t=t, s=s, d_k=d_k, d_v=d_v, seed=seed, dtype=dtype, scale=scale)
    return q, k, v


# The task's worked example: q = k = I (2 x 2), v = [[1, 2], [3, 4]], without and with the mask.
_EYE, _V = torch.eye(2), torch.tensor([[1.0, 2.0], [3.0, 4.0]])

DIFF = Differential(
    reference("01_attention", "attention"),
    examples=[case(_EYE, _EYE, _V), case(_EYE, _EYE, _V, causal=True)],
    boundaries=[
        case(*_row(t=5, s=7)).because("no leading dimensions: one (T, d_k) matrix"),
        case(*_row(2, t=5, s=7), causal=False).because("a batch; d_k != d_v: divide by sqrt(d_k)"),
        case(*_row(2, 3, t=4, s=6, seed=1), causal=False).because("a batch and heads"),
        case(*_row(2, t=5, s=7)).because("causal left out means causal=False"),
        case(*_row(2, t=6, s=6, seed=2), causal=True).because("causal, T = S"),
        case(*_row(2, 2, t=3, s=7, seed=3), causal=True).because(
            "causal, T < S: query i sits at position S - T + i"
        ),
        case(*_row(2, t=1, s=7, seed=4), causal=True).because(
            "causal, one query after the cache: it sees every key, itself included"
        ),
        case(*_row(t=1, s=1, d_k=1, d_v=1, seed=5), causal=True).because("one query, one key"),
        case(*_row(2, t=5, s=7, dtype=torch.float64), causal=True).because(
            "float64 in, float64 out"
        ),
        case(*_row(1, t=4, s=4, d_k=8, d_v=8, scale=30.0), causal=False).because(
            "scores in the thousands: softmax must not overflow"
        ),
    ],
    generate=_generate,
    n_generated=100,
    compare=_compare,
    diagnose=_named,
    explain_crash=_crash_cause,
    show_input=_show_qkv,
)

CHECKS = [
    ("returns a pair", check_returns_pair),
    ("shapes", check_shapes),
    ("dtype", check_dtype),
    ("rows sum to 1", check_rows_sum_to_one),
    ("values", check_values),
    ("causal mask", check_causal_mask),
    ("causal values", check_causal_values),
    ("causal after a cache", check_causal_after_cache),
    ("heads dimension", check_heads),
    ("large scores", check_large_scores),
    *DIFF.checks(),
]


def check_attention(attention):
    """Run every check on the learner's attention function; prints one line per check."""
    return run_checks(CHECKS, attention, "attention")

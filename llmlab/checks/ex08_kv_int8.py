"""Checks for exercises/08_kv_int8.ipynb: int8 keys and values with per-token scales.

The learner writes quantize_kv(x) -> (q, scale) and dequantize_kv(q, scale) -> x_hat for a key
or value tensor x of shape (B, H, T, D): symmetric absmax quantisation with one scale per token
and head, scale = max|x| / 127 over the D numbers, q = round(x / scale) in int8 [-127, 127].
The checks use B, H, T, D all different (2, 3, 5, 8) so a scale over the wrong axis shows in its
shape, tokens whose sizes differ 100-fold so one global scale shows in the error, and tokens
whose largest entry is negative so max(x) in place of max(|x|) shows; each classic mistake is
recognised and named.
Then llmlab.checks.differential compares each function with the reference in
exercises/solutions/ on the task's worked example, a boundary table (one row per rule the task
states: per-token scales, a negative largest entry, +-127 at the max, D = 1, float64, an all-zero
token's scale of exactly 0) and generated tensors, shrunk to the smallest disagreement. Codes are
judged against the learner's own scale (float16 scales pass), and a value halfway between two
codes may round either way.
"""

import numpy as np
import torch

from llmlab.agreement import VOCAB
from llmlab.checks import CheckFailed, crashed, run_checks
from llmlab.checks.differential import Difference, Differential, case, reference

B, H, T, D = 2, 3, 5, 8
FUNCTION_NAMES = "quantize_kv/dequantize_kv"


def _keys(seed=0, dtype=torch.float32):
    """(B, H, T, D) keys whose tokens differ in size (0.1 to 10) and whose extreme sign varies."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, H, T, D, generator=g, dtype=torch.float64)
    sizes = torch.logspace(-1, 1, T, dtype=torch.float64).view(1, 1, T, 1)
    x = x * sizes
    x[:, :, 1, 3] = -3 * sizes[0, 0, 1, 0]  # token 1's largest entry is negative
    x[:, :, 2, 5] = 3 * sizes[0, 0, 2, 0]  # token 2's is positive
    return x.to(dtype)


def _split(fns):
    quantize_kv, dequantize_kv = fns
    return quantize_kv, dequantize_kv


def _hint(error):
    text = str(error)
    if "return_types" in text:
        return (
            "x.abs().max(dim=-1) returns a pair (values, indices): take .values, or use "
            "x.abs().amax(dim=-1, keepdim=True)"
        )
    if "must match the size of tensor" in text:
        return "scale (B, H, T, 1) broadcasts against x (B, H, T, D) as it is; keep its last dim"
    return None


def _quantize(fns, x):
    try:
        out = _split(fns)[0](x.clone())
    except NotImplementedError:
        raise
    except Exception as error:  # noqa: BLE001 - the learner's code crashed: say so, with why
        raise crashed("quantize_kv", error, _hint(error)) from None
    if not isinstance(out, tuple) or len(out) != 2:
        raise CheckFailed(f"quantize_kv() returned {type(out).__name__}; return a pair (q, scale)")
    q, scale = out
    if not isinstance(q, torch.Tensor) or not isinstance(scale, torch.Tensor):
        raise CheckFailed(
            f"quantize_kv() returned ({type(q).__name__}, {type(scale).__name__}); return two "
            "tensors, (q, scale)"
        )
    return q, scale


def _dequantize(fns, q, scale):
    try:
        out = _split(fns)[1](q, scale)
    except NotImplementedError:
        raise
    except Exception as error:  # noqa: BLE001
        raise crashed("dequantize_kv", error, _hint(error)) from None
    if not isinstance(out, torch.Tensor):
        raise CheckFailed(
            f"dequantize_kv() returned a {type(out).__name__}; return a tensor, q * scale"
        )
    return out


def _reference_scale(x):
    return x.abs().amax(dim=-1, keepdim=True) / 127


def check_codes(fns):
    x = _keys()
    q, _ = _quantize(fns, x)
    if q.dtype == torch.uint8:
        raise CheckFailed(
            "q is uint8 (0..255): keys and values are negative as often as positive; use the "
            "signed range of torch.int8, -127..127, with a symmetric scale"
        )
    if q.dtype != torch.int8:
        raise CheckFailed(
            f"q has dtype {q.dtype}; store the codes as torch.int8 (1 byte each), after rounding"
        )
    if tuple(q.shape) != tuple(x.shape):
        raise CheckFailed(f"q has shape {tuple(q.shape)}, expected {tuple(x.shape)}, like x")
    return f"q is int8, shaped like x {tuple(x.shape)}"


def check_scale(fns):
    x = _keys()
    _, scale = _quantize(fns, x)
    expected = _reference_scale(x)
    shape = tuple(scale.shape)
    if scale.numel() == 1 or (
        shape == tuple(expected.shape)
        and torch.allclose(scale, scale.flatten()[0].expand_as(scale))
    ):
        raise CheckFailed(
            "there is one scale for the whole tensor (a global scale): small tokens then get "
            "only a few of the 255 levels; compute one scale per token and head, the max of "
            "|x| over the last dim (D)"
        )
    if shape == (B, H, 1, D):
        raise CheckFailed(
            "the scale is taken over the tokens (dim -2), one per channel; per-token scales "
            f"take the max over the head dim D (dim -1), giving shape {(B, H, T, 1)}"
        )
    if shape == (B, 1, T, D):
        raise CheckFailed(
            "the scale is taken over the heads (dim 1); per-token scales take the max over the "
            f"head dim D (dim -1), giving shape {(B, H, T, 1)}"
        )
    if shape == (1, H, T, D):
        raise CheckFailed(
            "the scale is taken over the batch (dim 0); per-token scales take the max over the "
            f"head dim D (dim -1), giving shape {(B, H, T, 1)}"
        )
    if shape == (B, H, 1, 1):
        raise CheckFailed(
            "there is one scale per head, over all its tokens (dims -2 and -1): small tokens "
            "then get few levels; take the max over D only (dim -1), one scale per token"
        )
    if shape == (B, H, T):
        raise CheckFailed(
            f"scale has shape {shape}; keep the reduced dim (keepdim=True), {(B, H, T, 1)}, so "
            "it broadcasts against x"
        )
    if shape != tuple(expected.shape):
        raise CheckFailed(
            f"scale has shape {shape}, expected {(B, H, T, 1)}: one per batch row, head and "
            "token, the max of |x| over the last dim"
        )
    scale = scale.double()
    expected = expected.double()
    if torch.allclose(scale, x.amax(dim=-1, keepdim=True).double() / 127, rtol=1e-3):
        raise CheckFailed(
            "the scale uses max(x), not max(|x|): a token whose largest entry is negative gets "
            "a scale too small (or negative); take x.abs().amax(-1)"
        )
    if torch.allclose(scale, x.abs().mean(dim=-1, keepdim=True).double() / 127, rtol=1e-3):
        raise CheckFailed(
            "the scale uses the mean of |x|, not the max: the largest numbers then fall outside "
            "the 127 levels and get clipped; take x.abs().amax(-1)"
        )
    spread = (x.amax(dim=-1, keepdim=True) - x.amin(dim=-1, keepdim=True)).double()
    if torch.allclose(scale, spread / 255, rtol=1e-3) or torch.allclose(
        scale, spread / 254, rtol=1e-3
    ):
        raise CheckFailed(
            "scale = (max - min) / 255 is an asymmetric (zero-point) scale; this cache is "
            "symmetric around 0: scale = max|x| / 127"
        )
    for divisor, what in ((128, "128"), (255, "255 (the unsigned range)"), (127.5, "127.5")):
        if torch.allclose(scale, expected * 127 / divisor, rtol=1e-3):
            raise CheckFailed(
                f"scale = max|x| / {what}; the int8 codes run from -127 to 127, so divide by 127"
            )
    if torch.allclose(scale, expected * 127, rtol=1e-3):
        raise CheckFailed("scale = max|x|; divide it by 127, the largest int8 code you use")
    if not torch.allclose(scale, expected, rtol=1e-2):
        worst = ((scale - expected).abs() / expected).max().item()
        raise CheckFailed(
            f"scale differs from max|x| / 127 by up to {worst:.1%} of it (per token and head)"
        )
    return f"one scale per token and head, shape {(B, H, T, 1)}, = max|x| / 127"


def _diagnose_codes(q, x, scale):
    """A sentence naming a mistake in how q was computed from x and the scale it returned."""
    # In the learner's own precision, so that codes on a rounding boundary agree.
    ratio = x / scale.to(x.dtype).clamp_min(torch.finfo(x.dtype).tiny)

    def mostly(codes):  # a few boundary cases may differ between float kernels
        return (q.long() == codes.long()).float().mean() > 0.97

    rounded = ratio.round().clamp(-127, 127)
    if mostly((x * scale.to(x.dtype)).round().clamp(-128, 127)) and not mostly(rounded):
        return "x is multiplied by the scale; divide it: q = round(x / scale)"
    if mostly(ratio.trunc()) and not mostly(rounded):
        return (
            "x / scale is truncated toward zero (.to(torch.int8) or int() alone); round to the "
            "nearest code with torch.round first"
        )
    if mostly(ratio.floor()) and not mostly(rounded):
        return "x / scale is rounded down (floor); round to the nearest code with torch.round"
    if mostly(ratio.ceil()) and not mostly(rounded):
        return "x / scale is rounded up (ceil); round to the nearest code with torch.round"
    wrapped = (ratio.round() > 127) & (q < 0)
    if wrapped.any():
        return (
            "x / scale reached 128 or more, which int8 cannot hold: it wrapped around to a "
            "negative code (overflow); use scale = max|x| / 127 and clamp to [-127, 127]"
        )
    return None


def check_round_trip(fns):
    x = _keys(seed=1)
    q, scale = _quantize(fns, x)
    x_hat = _dequantize(fns, q, scale)
    if tuple(x_hat.shape) != tuple(x.shape):
        raise CheckFailed(
            f"dequantize_kv(q, scale) has shape {tuple(x_hat.shape)}; it should be shaped like "
            f"x, {tuple(x.shape)}"
        )
    expected_scale = _reference_scale(x).double()
    error = (x_hat.double() - x.double()).abs()
    bound = expected_scale / 2 * (1 + 1e-3) + 1e-7
    if bool((error <= bound).all()):
        worst = (error / expected_scale).max().item()
        return f"every number comes back within half a step (worst {worst:.2f} of a step)"
    if q.dtype in (torch.int8, torch.uint8) and tuple(scale.shape) == tuple(x.shape[:-1]) + (1,):
        problem = _diagnose_codes(q, x, scale)
        if problem:
            raise CheckFailed(problem)
    if torch.isnan(x_hat).any():
        raise CheckFailed("dequantize_kv(quantize_kv(x)) holds NaN")
    if x_hat.is_floating_point() and torch.finfo(x_hat.dtype).bits < torch.finfo(x.dtype).bits:
        raise CheckFailed(
            f"dequantize_kv() returns {x_hat.dtype}, which rounds q * scale by up to "
            f"{torch.finfo(x_hat.dtype).eps * 64:.2g} of a step on top of the int8 rounding; "
            "return it in scale's dtype"
        )
    worst = (error / expected_scale).max().item()
    raise CheckFailed(
        f"some numbers come back {worst:.2f} steps (scale = max|x| / 127) away from x; "
        "rounding to the nearest int8 code errs by at most half a step"
    )


def check_no_overflow(fns):
    x = _keys(seed=2)
    x[:, :, 0, 0] = 50.0  # a token whose largest entry is positive and exactly the max
    x[:, :, 3, 7] = -50.0
    q, scale = _quantize(fns, x)
    x_hat = _dequantize(fns, q, scale)
    flipped = (torch.sign(x_hat) * torch.sign(x) < 0) & (x.abs() > 1.0)
    if flipped.any():
        raise CheckFailed(
            f"{int(flipped.sum())} large numbers came back with the wrong sign: x / scale reached "
            "128, which int8 cannot hold, and wrapped to -128 (overflow); divide by 127 and clamp "
            "to [-127, 127]"
        )
    if q.dtype == torch.int8 and int(q.min()) == -128:
        raise CheckFailed(
            "a code of -128 was used: keep the range symmetric, [-127, 127], so that q and -q "
            "are both representable"
        )
    if int(q.abs().max()) != 127:
        raise CheckFailed(
            f"the largest code is {int(q.abs().max())}; the largest |x| of each token should map "
            "to 127, using the whole int8 range"
        )
    return "the largest |x| of each token maps to +-127 with its sign; nothing wraps around"


def check_zero_token(fns):
    x = _keys(seed=3)
    x[0, 1, 2] = 0.0  # an all-zero token: its scale is 0
    q, scale = _quantize(fns, x)
    x_hat = _dequantize(fns, q, scale)
    if torch.isnan(x_hat).any() or torch.isnan(scale.float()).any():
        raise CheckFailed(
            "an all-zero token gives NaN (0 / 0): guard the division, e.g. divide by "
            "scale.clamp_min(1e-12), so that its codes are 0"
        )
    if x_hat[0, 1, 2].abs().max() != 0:
        raise CheckFailed("an all-zero token must come back as zeros")
    return "an all-zero token comes back as zeros, without NaN"


def check_dequantize(fns):
    g = torch.Generator().manual_seed(4)
    q = torch.randint(-127, 128, (B, H, T, D), generator=g, dtype=torch.int8)
    scale = torch.rand(B, H, T, 1, generator=g) + 0.5
    out = _dequantize(fns, q, scale)
    expected = q.double() * scale.double()
    if not out.is_floating_point():
        raise CheckFailed(
            f"dequantize_kv() returned {out.dtype}; return floats in scale's dtype, q * scale"
        )
    if tuple(out.shape) != tuple(q.shape):
        raise CheckFailed(
            f"dequantize_kv(q, scale) has shape {tuple(out.shape)}; it should be shaped like q, "
            f"{tuple(q.shape)}"
        )
    got = out.double()
    if torch.allclose(got, expected, rtol=1e-5):
        return "dequantize_kv(q, scale) = q * scale"
    if torch.allclose(got, expected, rtol=1e-2):
        raise CheckFailed(
            f"dequantize_kv() returns {out.dtype}, which rounds q * scale (off by up to "
            f"{((got - expected).abs() / expected.abs().clamp_min(1e-12)).max().item():.1e} of "
            "it); return it in scale's dtype (float32 here)"
        )
    if torch.allclose(got, q.double()):
        raise CheckFailed("dequantize_kv() returns the codes as floats: multiply them by scale")
    if torch.allclose(got, q.double() / scale.double(), rtol=1e-5):
        raise CheckFailed("dequantize_kv() divides by scale; multiply the codes by it")
    if torch.allclose(got, q.double() * scale.double() / 127, rtol=1e-5):
        raise CheckFailed(
            "dequantize_kv() divides by 127 again; the scale already is max|x| / 127: q * scale"
        )
    worst = (got - expected).abs().max().item()
    raise CheckFailed(f"dequantize_kv(q, scale) differs from q * scale by up to {worst:.3g}")


def check_input_unchanged(fns):
    x = _keys(seed=5)
    before = x.clone()
    try:
        _split(fns)[0](x)
    except NotImplementedError:
        raise
    except Exception as error:  # noqa: BLE001
        raise crashed("quantize_kv", error, _hint(error)) from None
    if not torch.equal(x, before):
        raise CheckFailed(
            "quantize_kv() changed x in place (x /= scale, x.div_(...), x.clamp_(...)): the "
            "caller's keys are overwritten; compute on a new tensor (x / scale)"
        )
    return "x is left as it was"


def check_trained_model(fns):
    """Quantise the trained model's real cache with the learner's functions; decode one token.

    On one torch thread: the model is tiny, and idle OpenMP threads spinning beside a busy core
    made this check several times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _trained_model(fns)
    finally:
        torch.set_num_threads(threads)


def _trained_model(fns):
    from llmlab.checkpoint import load_agreement_model

    model = load_agreement_model()
    ids = torch.tensor([VOCAB.encode("<bos> the old cat near the dogs sits")])
    with torch.no_grad():
        cache = model.new_kv_cache(batch_size=1)
        model(ids[:, :-1], kv_cache=cache)
        exact = model(ids[:, -1:], kv_cache=cache)[0, -1]
        cache.length -= 1  # forget the last token, then redo it from a quantised cache
        filled = cache.length
        for tensor in (cache.k, cache.v):
            for layer in range(tensor.size(0)):
                stored = tensor[layer, :, :, :filled]
                q, scale = _quantize(fns, stored)
                tensor[layer, :, :, :filled] = _dequantize(fns, q, scale).to(tensor.dtype)
        approx = model(ids[:, -1:], kv_cache=cache)[0, -1]
    error = (approx - exact).abs().max().item()
    if error > 0.02:  # a correct int8 cache: about 0.001 here (tests/test_check_messages_ex08.py)
        raise CheckFailed(
            f"with your int8 cache the trained model's next-token logits move by up to "
            f"{error:.3f} (a correct per-token int8 cache moves them by about 0.001)"
        )
    return f"the trained model's logits from your int8 cache are within {error:.3f} of exact"


# ---- the learner's functions against the reference (llmlab.checks.differential) ------------

_TIE = 0.01  # x / scale this close to k + 0.5 may round either way (float32, another formula)


def _index(t):
    return "[" + ", ".join(str(int(i)) for i in t) + "]"


def _scale_tolerance(scale):
    """Relative tolerance for a scale stored in scale's dtype: float32 arithmetic is fine even in
    a float64 scale, and float16 scales are allowed."""
    return max(2 * torch.finfo(scale.dtype).eps, 2e-5)


def _compare_quantize(got, expected, c):
    """None when (q, scale) is right for x, else the first Difference.

    The scale is compared with max|x| / 127 (exactly 0 for an all-zero token); the codes with
    x / scale rounded to the nearest integer, using the learner's own scale, so a scale stored in
    float16 and codes on a rounding tie (either way) pass.
    """
    x = c.args[0].double()
    q_ref, s_ref = expected
    if not isinstance(got, tuple) or len(got) != 2:
        return Difference("", got, expected, "is not a pair (q, scale)")
    q, scale = got
    for what, value in (("q", q), ("scale", scale)):
        if not isinstance(value, torch.Tensor):
            return Difference(what, value, None, f"is {type(value).__name__}, not a tensor")
    if tuple(scale.shape) != tuple(s_ref.shape):
        return Difference("scale", scale, s_ref, f"has shape {tuple(scale.shape)}")
    if not scale.is_floating_point():
        return Difference("scale", scale, s_ref, f"has dtype {scale.dtype}")
    got_scale, right = scale.detach().cpu().double(), s_ref.double()
    zero = right == 0
    off = (got_scale - right).abs() > _scale_tolerance(scale) * right.abs()
    off |= zero & (got_scale != 0)
    if bool(off.any()):
        i = off.nonzero()[0]
        return Difference(f"scale{_index(i)}", got_scale[tuple(i)].item(), right[tuple(i)].item())
    if q.dtype != torch.int8:
        return Difference("q", q, q_ref, f"has dtype {q.dtype}")
    if tuple(q.shape) != tuple(x.shape):
        return Difference("q", q, q_ref, f"has shape {tuple(q.shape)}")
    ratio = torch.where(got_scale > 0, x / got_scale.clamp_min(1e-300), torch.zeros_like(x))
    nearest = ratio.round().clamp(-127, 127)
    tie = ((ratio - ratio.floor()) - 0.5).abs() < _TIE
    codes = q.detach().cpu().double()
    ok = (codes == nearest) | (tie & ((codes == ratio.floor()) | (codes == ratio.ceil())))
    if bool(ok.all()):
        return None
    i = tuple((~ok).nonzero()[0])
    return Difference(f"q{_index(i)}", int(codes[i]), int(nearest[i]))


def _named_quantize(c, got, expected):
    """The known mistake behind a wrong (q, scale), or None."""
    x = c.args[0]
    if not isinstance(got, tuple) or len(got) != 2:
        return None
    q, scale = got
    if not isinstance(q, torch.Tensor) or not isinstance(scale, torch.Tensor):
        return None
    B, H, T, D = x.shape
    right = _reference_scale(x.double())
    shape = tuple(scale.shape)
    if shape == (B, H, T):
        return f"keep the reduced dim (keepdim=True): scale is {(B, H, T, 1)}, to broadcast on x"
    if shape != tuple(right.shape):
        for wrong, what in (((B, H, 1, D), "over the tokens (dim -2)"),
                            ((B, 1, T, D), "over the heads (dim 1)"),
                            ((1, H, T, D), "over the batch (dim 0)"),
                            ((B, H, 1, 1), "over all of a head's tokens (dims -2 and -1)")):  # fmt: skip
            if shape == wrong and wrong != (B, H, T, 1):
                return f"the scale is taken {what}; take the max over D only (dim -1)"
        if scale.numel() == 1:
            return "one scale for the whole tensor; compute one per token and head (max over D)"
        return None
    got_scale = scale.detach().double()
    if bool(((right == 0) & (got_scale != 0)).any()):
        return (
            "an all-zero token's scale is 0 (its largest |x| is 0); keep it 0 and guard only "
            "the division, so that its codes are 0"
        )
    if not bool(torch.isclose(got_scale, right, rtol=1e-3).all()):
        x64 = x.double()
        candidates = [
            ("the scale uses max(x), not max(|x|): take x.abs().amax(-1)",
             x64.amax(-1, keepdim=True) / 127),
            ("the scale uses the mean of |x|, not the max", x64.abs().mean(-1, keepdim=True) / 127),
            ("scale = max|x| / 128; the codes run from -127 to 127, so divide by 127",
             right * 127 / 128),
            ("scale = max|x| / 255; the codes run from -127 to 127, so divide by 127",
             right * 127 / 255),
            ("scale = max|x|; divide it by 127", right * 127),
            ("scale = (max - min) / 255 is an asymmetric scale; this cache is symmetric: "
             "max|x| / 127", (x64.amax(-1, keepdim=True) - x64.amin(-1, keepdim=True)) / 255),
        ]  # fmt: skip
        found = {
            sentence
            for sentence, value in candidates
            if bool(torch.isclose(got_scale, value, rtol=1e-3).all())
            and not bool(torch.isclose(value, right, rtol=1e-3).all())
        }
        return found.pop() if len(found) == 1 else None
    if q.dtype == torch.int8 and tuple(q.shape) == tuple(x.shape):
        return _diagnose_codes(q, x, scale)
    if q.dtype == torch.uint8:
        return "q is uint8 (0..255); use torch.int8, codes -127..127 with a symmetric scale"
    return None


def _keys_drawn(draw):
    """x (B, H, T, D): tokens whose sizes differ (0.1 to 10), some all zero, float32 or 64."""
    B, H, T, D = draw.integer(1, 2), draw.integer(1, 3), draw.integer(1, 5), draw.integer(1, 8)
    dtype = draw.choice([torch.float32, torch.float64])
    x = draw.tensor(B, H, T, D, dtype=torch.float64)
    x = x * 10.0 ** draw.tensor(1, 1, T, 1, dtype=torch.float64).clamp(-1, 1)
    if draw.boolean(0.25):
        x[draw.integer(0, B - 1), draw.integer(0, H - 1), draw.integer(0, T - 1)] = 0.0
    return x.to(dtype)


def _quantize_case(draw):
    return case(_keys_drawn(draw))


def _dequantize_case(draw):
    x = _keys_drawn(draw)
    g = torch.Generator().manual_seed(draw.seed())
    q = torch.randint(-127, 128, x.shape, generator=g, dtype=torch.int8)
    scale = x.abs().amax(-1, keepdim=True) / 127
    return case(q, scale)


def _x(values, dtype=torch.float32):
    return torch.tensor(values, dtype=torch.float64).to(dtype)


_SPREAD = _keys(seed=7)  # tokens 0.1 to 10 in size: one global scale shows
_ZERO = _keys(seed=8)
_ZERO[0, 1, 2] = 0.0
_EDGES = _keys(seed=9)
_EDGES[:, :, 0, 0] = 50.0  # an exact positive max: must map to 127, not wrap to -128
_EDGES[:, :, 3, 7] = -50.0


def _tensor(t):
    """A tensor as a learner reads it: its values in their own precision when there are few."""
    kind = str(t.dtype).replace("torch.", "")
    if t.numel() > 8:
        return f"a {kind} tensor of shape {tuple(t.shape)}"
    if t.is_floating_point():
        cast = float if t.dtype == torch.float64 else lambda v: np.float32(v)
        values = ", ".join(str(cast(v)) for v in t.flatten().tolist())
    else:
        values = ", ".join(str(v) for v in t.flatten().tolist())
    return f"a {kind} tensor of shape {tuple(t.shape)} [{values}]"


def _show_x(c):
    return f"x={_tensor(c.args[0])}"


def _show_q_scale(c):
    q, scale = c.args
    return f"q={_tensor(q)} and scale={_tensor(scale)}"


QUANTIZE = Differential(
    reference("08_kv_int8", "quantize_kv"),
    examples=[case(_x([[[[0.5, -2.54, 1.0]]]]))],  # scale 0.02, codes [25, -127, 50]
    boundaries=[
        case(_SPREAD).because("one scale per token and head, over the D numbers"),
        case(_x([[[[0.3, -1.27, 0.9]]]])).because("the largest |x| may be negative"),
        case(_EDGES).because("each token's largest |x| maps to +-127, never past it"),
        case(_x([[[[0.5], [-3.0]], [[2.0], [0.5]]]])).because("D = 1: every number is its max"),
        case(_keys(seed=10, dtype=torch.float64)).because("x may be float64"),
        case(_x([[[[0.0, 0.0, 0.0], [1.0, -2.0, 0.5]]]])).because(
            "an all-zero token has scale 0 and codes 0"
        ),
        case(_ZERO).because("an all-zero token has scale 0 and codes 0"),
    ],
    generate=_quantize_case,
    n_generated=100,
    seed=8,
    compare=_compare_quantize,
    diagnose=_named_quantize,
    show_input=_show_x,
)
DEQUANTIZE = Differential(
    reference("08_kv_int8", "dequantize_kv"),
    examples=[case(torch.tensor([[[[25, -127, 50]]]], dtype=torch.int8), _x([[[[0.02]]]]))],
    boundaries=[
        case(
            torch.tensor([[[[127, -127, 0], [5, 6, 7]]]], dtype=torch.int8), _x([[[[0.5], [0.0]]]])
        ).because("a zero scale gives zeros"),  # fmt: skip
        case(
            torch.tensor([[[[3, -4]]]], dtype=torch.int8), _x([[[[0.25]]]], torch.float64)
        ).because("scale may be float64"),  # fmt: skip
    ],
    generate=_dequantize_case,
    n_generated=60,
    seed=80,
    rtol=2e-5,
    atol=1e-6,  # q * scale in float32 is right, whatever dtype holds it
    show_input=_show_q_scale,
)
_QUANTIZE_CHECKS = QUANTIZE.checks(pick=lambda fns: fns[0], prefix="quantize_kv ")
_DEQUANTIZE_CHECKS = DEQUANTIZE.checks(pick=lambda fns: fns[1], prefix="dequantize_kv ")

CHECKS = [
    _QUANTIZE_CHECKS[0],
    _DEQUANTIZE_CHECKS[0],
    ("int8 codes", check_codes),
    ("scale per token", check_scale),
    ("round trip", check_round_trip),
    ("no overflow", check_no_overflow),
    ("all-zero token", check_zero_token),
    ("dequantize", check_dequantize),
    ("x unchanged", check_input_unchanged),
    ("trained model", check_trained_model),
    *_QUANTIZE_CHECKS[1:],
    *_DEQUANTIZE_CHECKS[1:],
]


def check_kv_int8(quantize_kv, dequantize_kv):
    """Run every check on the learner's pair of functions; prints and returns the report."""
    return run_checks(CHECKS, (quantize_kv, dequantize_kv), FUNCTION_NAMES)

"""Checks for exercises/08_kv_int8.ipynb: int8 keys and values with per-token scales.

The learner writes quantize_kv(x) -> (q, scale) and dequantize_kv(q, scale) -> x_hat for a key
or value tensor x of shape (B, H, T, D): symmetric absmax quantisation with one scale per token
and head, scale = max|x| / 127 over the D numbers, q = round(x / scale) in int8 [-127, 127].
The checks use B, H, T, D all different (2, 3, 5, 8) so a scale over the wrong axis shows in its
shape, tokens whose sizes differ 100-fold so one global scale shows in the error, and tokens
whose largest entry is negative so max(x) in place of max(|x|) shows; each classic mistake is
recognised and named.
"""

import torch

from llmlab.agreement import VOCAB
from llmlab.checks import CheckFailed, crashed, run_checks

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
    """Quantise the trained model's real cache with the learner's functions; decode one token."""
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


CHECKS = [
    ("int8 codes", check_codes),
    ("scale per token", check_scale),
    ("round trip", check_round_trip),
    ("no overflow", check_no_overflow),
    ("all-zero token", check_zero_token),
    ("dequantize", check_dequantize),
    ("x unchanged", check_input_unchanged),
    ("trained model", check_trained_model),
]


def check_kv_int8(quantize_kv, dequantize_kv):
    """Run every check on the learner's pair of functions; prints and returns the report."""
    return run_checks(CHECKS, (quantize_kv, dequantize_kv), FUNCTION_NAMES)

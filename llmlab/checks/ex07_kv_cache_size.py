"""Checks for exercises/07_kv_cache_size.ipynb: the KV-cache size formula.

The learner writes kv_cache_size(model, seq_len, batch_size=1, dtype="fp16") -> int bytes, for
any object with n_layer, n_embd, n_head, n_kv_head and head_dim (a llmlab.shapes.ModelShape or
a GPTConfig). When an answer is off, the checks recompute it with each classic mistake, over
shapes chosen so that every mistake gives a different number, and name the one that matches.
"""

import numbers

from llmlab.checks import CheckFailed, run_checks
from llmlab.model import GPTConfig
from llmlab.shapes import DTYPE_BYTES, ModelShape, get_shape

# Shapes that tell the mistakes apart: GQA (n_kv_head < n_head), head_dim x n_head != n_embd
# (as in Gemma-7B: 16 heads of 256 in a 3072-wide model), and distinct layers, batch and length.
_ODD = ModelShape("GQA, wide heads", 3, 160, 8, 2, 24, 64, 100, 10_000, "a test shape")
_MQA = ModelShape("MQA", 5, 96, 6, 1, 16, 64, 100, 10_000, "a test shape")
_CASES = [  # (shape, seq_len, batch_size, dtype)
    (_ODD, 7, 5, "fp32"),
    (_MQA, 11, 3, "fp16"),
    (_ODD, 13, 2, "int8"),
]


def _right(s, t, b, dtype):
    return 2 * s.n_layer * b * s.n_kv_head * t * s.head_dim * DTYPE_BYTES[dtype]


_BITS = {"fp32": 32, "fp16": 16, "bf16": 16, "fp8": 8, "int8": 8}

# (what went wrong, the answer it gives): each a one-sentence diagnosis.
_MISTAKES = [
    (
        "it counts query heads (n_head) instead of key/value heads (n_kv_head): with grouped-query "
        "attention only n_kv_head heads are cached",
        lambda s, t, b, d: _right(s, t, b, d) // s.n_kv_head * s.n_head,
    ),
    (
        "it uses n_embd for the width of the cached vectors; each token stores n_kv_head x head_dim "
        "numbers per layer for K and as many for V",
        lambda s, t, b, d: _right(s, t, b, d) // (s.n_kv_head * s.head_dim) * s.n_embd,
    ),
    (
        "it is half the right size: the cache holds keys AND values, a factor 2",
        lambda s, t, b, d: _right(s, t, b, d) // 2,
    ),
    (
        "it counts bits, not bytes, per element (fp16 is 2 bytes, not 16)",
        lambda s, t, b, d: _right(s, t, b, d) // DTYPE_BYTES[d] * _BITS[d],
    ),
    (
        "it leaves out the layers: every layer keeps its own K and V",
        lambda s, t, b, d: _right(s, t, b, d) // s.n_layer,
    ),
    (
        "it leaves out batch_size: every sequence in the batch has its own cache",
        lambda s, t, b, d: _right(s, t, b, d) // b,
    ),
    (
        "it leaves out seq_len: the cache grows by the same amount for every token",
        lambda s, t, b, d: _right(s, t, b, d) // t,
    ),
    (
        "it ignores dtype and always uses 4 bytes (fp32) per element",
        lambda s, t, b, d: _right(s, t, b, d) // DTYPE_BYTES[d] * 4,
    ),
    (
        "it ignores dtype and always uses 2 bytes (fp16) per element",
        lambda s, t, b, d: _right(s, t, b, d) // DTYPE_BYTES[d] * 2,
    ),
    (
        "it multiplies by head_dim twice or by n_head / n_kv_head: use n_kv_head x head_dim once",
        lambda s, t, b, d: _right(s, t, b, d) * s.head_dim,
    ),
    (
        "it answers in GiB (divided by 2**30); return bytes",
        lambda s, t, b, d: _right(s, t, b, d) / 2**30,
    ),
    (
        "it answers in GB (divided by 1e9); return bytes",
        lambda s, t, b, d: _right(s, t, b, d) / 1e9,
    ),
]


def _call(fn, model, seq_len, batch_size, dtype):
    out = fn(model, seq_len, batch_size, dtype)
    if isinstance(out, bool) or not isinstance(out, numbers.Real):
        raise CheckFailed(
            f"kv_cache_size() returned {type(out).__name__}; return the size as an int number of bytes"
        )
    return out


def _diagnose(fn):
    """None if fn is right on every case; else a sentence naming the mistake that matches."""
    answers = [_call(fn, *case) for case in _CASES]
    if all(a == _right(*case) for a, case in zip(answers, _CASES)):
        return None
    for description, wrong in _MISTAKES:
        if all(abs(a - wrong(*case)) <= 1e-9 * abs(a) for a, case in zip(answers, _CASES)):
            return description
    shape, t, b, d = next(case for a, case in zip(answers, _CASES) if a != _right(*case))
    got = next(a for a, case in zip(answers, _CASES) if a != _right(*case))
    return (
        f"for {shape.n_layer} layers, {shape.n_kv_head} KV heads x head_dim {shape.head_dim}, "
        f"seq_len {t}, batch {b}, {d}: got {got:,}, expected {_right(shape, t, b, d):,} bytes"
    )


def check_llama2_7b(kv_cache_size):
    shape = get_shape("Llama-2-7B")
    out = _call(kv_cache_size, shape, 1, 1, "fp16")
    if out != 524_288:
        raise CheckFailed(
            f"Llama-2-7B (32 layers, 32 KV heads x 128, fp16) takes 524,288 bytes per token; "
            f"got {out:,}"
        )
    out = _call(kv_cache_size, shape, 2048, 1, "fp16")
    if out != 2**30:
        raise CheckFailed(
            f"Llama-2-7B at 2048 tokens takes exactly 1 GiB (2**30 bytes); got {out:,}"
        )
    return "Llama-2-7B: 524,288 bytes per token, 1 GiB at 2048 tokens"


def check_gqa(kv_cache_size):
    shape = get_shape("Llama-2-70B")
    out = _call(kv_cache_size, shape, 4096, 2, "fp16")
    expected = _right(shape, 4096, 2, "fp16")
    if out != expected:
        if out == expected * shape.n_head // shape.n_kv_head:
            raise CheckFailed(
                "Llama-2-70B came out 8x too large: it has 64 query heads but only 8 key/value "
                "heads, and only those are cached; use n_kv_head"
            )
        raise CheckFailed(
            f"Llama-2-70B (80 layers, 8 KV heads x 128), 2 sequences of 4096 tokens in fp16: "
            f"got {out:,}, expected {expected:,} bytes"
        )
    return f"Llama-2-70B (GQA, 8 KV heads): {expected / 2**30:.2f} GiB for 2 x 4096 tokens"


def check_every_factor(kv_cache_size):
    problem = _diagnose(kv_cache_size)
    if problem is not None:
        raise CheckFailed(problem)
    return "right for GQA and MQA shapes, batch > 1, fp32/fp16/int8, head_dim x n_head != n_embd"


def check_returns_int(kv_cache_size):
    out = _call(kv_cache_size, _MQA, 11, 3, "fp16")
    if not isinstance(out, numbers.Integral):
        raise CheckFailed(
            f"kv_cache_size() returned {type(out).__name__} {out!r}; a byte count is a whole "
            "number: return an int"
        )
    return "returns an int"


def check_gptconfig(kv_cache_size):
    config = GPTConfig(vocab_size=10, block_size=32, n_layer=2, n_head=4, n_embd=32, n_kv_head=2)
    out = _call(kv_cache_size, config, 9, 2, "bf16")
    expected = _right(config, 9, 2, "bf16")
    if out != expected:
        raise CheckFailed(
            f"for a GPTConfig (2 layers, 2 KV heads x 8, bf16): got {out:,}, expected {expected:,}"
        )
    return "works on a GPTConfig too"


def _expect_value_error(kv_cache_size, args, what):
    try:
        out = kv_cache_size(*args)
    except ValueError:
        return
    except NotImplementedError:
        raise  # the stub: reported as TODO
    except Exception as error:  # noqa: BLE001 - any other exception is the learner's slip to name
        raise CheckFailed(
            f"{what} raised {type(error).__name__}; raise ValueError with a message naming the "
            "argument and what is allowed"
        ) from error
    raise CheckFailed(f"{what} returned {out!r}; it should raise ValueError")


def check_bad_input(kv_cache_size):
    _expect_value_error(kv_cache_size, (_ODD, 10, 1, "fp4"), 'an unknown dtype ("fp4")')
    _expect_value_error(kv_cache_size, (_ODD, -1, 1, "fp16"), "a negative seq_len (-1)")
    _expect_value_error(kv_cache_size, (_ODD, 10, 0, "fp16"), "batch_size 0")
    zero = _call(kv_cache_size, _ODD, 0, 1, "fp16")
    if zero != 0:
        raise CheckFailed(f"an empty cache (seq_len 0) takes 0 bytes, got {zero!r}")
    return "unknown dtype, negative seq_len and batch_size 0 raise ValueError; seq_len 0 is 0 bytes"


CHECKS = [
    ("Llama-2-7B", check_llama2_7b),
    ("GQA (Llama-2-70B)", check_gqa),
    ("every factor", check_every_factor),
    ("returns an int", check_returns_int),
    ("GPTConfig", check_gptconfig),
    ("bad input", check_bad_input),
]


def check_kv_cache_size(kv_cache_size):
    """Run every check on the learner's kv_cache_size; prints and returns the report."""
    return run_checks(CHECKS, kv_cache_size, "kv_cache_size")

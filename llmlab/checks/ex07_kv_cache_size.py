"""Checks for exercises/07_kv_cache_size.ipynb: the KV-cache size formula.

The learner writes kv_cache_size(model, seq_len, batch_size=1, dtype="fp16") -> int bytes, for
any object with n_layer, n_embd, n_head, n_kv_head and head_dim (a llmlab.shapes.ModelShape or
a GPTConfig). When an answer is off, the checks recompute it with each classic mistake, over
shapes chosen so that every mistake gives a different number (tests/test_check_messages_ex07.py
asserts that), and name the one that matches; a wrong byte count for one dtype is named too.
Every dtype the task lists is used, and every edge case it names (seq_len 0, a negative
seq_len, batch_size 0 or negative, an unknown dtype).
Then llmlab.checks.differential compares the learner's function with the reference in
exercises/solutions/ on the task's worked examples, a boundary table (one row per rule the task
states, the order of validation and exact dtype names included) and generated shapes, shrunk to
the smallest disagreement; the mistake that gives the learner's answer there is named after it.
"""

import numbers

from llmlab.checks import CheckFailed, crashed, one_line, run_checks
from llmlab.checks.differential import Differential, case, reference
from llmlab.model import GPTConfig
from llmlab.shapes import DTYPE_BYTES, ModelShape, get_shape

# Shapes that tell the mistakes apart: GQA (n_kv_head < n_head), head_dim x n_head != n_embd
# (as in Gemma-7B: 16 heads of 256 in a 3072-wide model), and distinct layers, batch and length.
_ODD = ModelShape("GQA, wide heads", 3, 160, 8, 2, 24, 64, 100, 10_000, "a test shape")
_MQA = ModelShape("MQA", 5, 96, 6, 1, 16, 64, 100, 10_000, "a test shape")
CASES = [  # (shape, seq_len, batch_size, dtype): every dtype once
    (_ODD, 7, 5, "fp32"),
    (_MQA, 11, 3, "fp16"),
    (_ODD, 13, 2, "int8"),
    (_MQA, 17, 4, "bf16"),
    (_ODD, 19, 3, "fp8"),
]


def _right(s, t, b, dtype):
    return 2 * s.n_layer * b * s.n_kv_head * t * s.head_dim * DTYPE_BYTES[dtype]


_BITS = {"fp32": 32, "fp16": 16, "bf16": 16, "fp8": 8, "int8": 8}

# (what went wrong, the answer it gives): each a one-sentence diagnosis, most specific first.
MISTAKES = [
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
        "it multiplies n_kv_head by n_embd; a key/value head is head_dim wide, not n_embd: use "
        "n_kv_head x head_dim",
        lambda s, t, b, d: _right(s, t, b, d) // s.head_dim * s.n_embd,
    ),
    (
        "it computes head_dim as n_embd // n_head; use model.head_dim, which differs where "
        "n_head x head_dim != n_embd (Gemma-7B: 16 x 256 in a 3072-wide model)",
        lambda s, t, b, d: _right(s, t, b, d) // s.head_dim * (s.n_embd // s.n_head),
    ),
    (
        "it is half the right size: the cache holds keys AND values, a factor 2",
        lambda s, t, b, d: _right(s, t, b, d) // 2,
    ),
    (
        "it is twice the right size: the factor 2 (keys and values) is counted twice",
        lambda s, t, b, d: _right(s, t, b, d) * 2,
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
        "it counts seq_len + 1 tokens; a cache of seq_len tokens holds seq_len positions",
        lambda s, t, b, d: _right(s, t + 1, b, d),
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
        "it multiplies by head_dim twice: use n_kv_head x head_dim once",
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
    (
        "it answers in MiB (divided by 2**20); return bytes",
        lambda s, t, b, d: _right(s, t, b, d) / 2**20,
    ),
]


def _value(out):
    """The learner's answer as a number (a one-element tensor is read), else one sentence."""
    if isinstance(out, bool):
        raise CheckFailed(f"kv_cache_size() returned {out!r}; return the size as an int of bytes")
    if isinstance(out, numbers.Real):
        return out
    try:
        return out.item()  # a torch or numpy scalar: judge the value, the type has its own check
    except (AttributeError, TypeError, ValueError, RuntimeError):
        raise CheckFailed(
            f"kv_cache_size() returned a {type(out).__name__}; return the size as an int number "
            "of bytes"
        ) from None


def _crash_hint(error, dtype):
    if isinstance(error, KeyError) and dtype in DTYPE_BYTES:
        return (
            f'the task lists dtype "{dtype}" ({DTYPE_BYTES[dtype]} byte'
            f"{'s' if DTYPE_BYTES[dtype] > 1 else ''} per number); give every listed dtype "
            "its size"
        )
    if isinstance(error, AttributeError):
        return (
            "the model is described by n_layer, n_embd, n_head, n_kv_head and head_dim, "
            "nothing else"
        )
    if isinstance(error, TypeError) and ("argument" in str(error) or "positional" in str(error)):
        return (
            'call signature: kv_cache_size(model, seq_len, batch_size=1, dtype="fp16"), with '
            "those names and defaults"
        )
    return None


def _call(fn, *args, **kwargs):
    try:
        out = fn(*args, **kwargs)
    except NotImplementedError:
        raise
    except Exception as error:  # noqa: BLE001 - the learner's code crashed: say so, with why
        used = kwargs.get("dtype", args[3] if len(args) > 3 else "fp16")
        raise crashed("kv_cache_size", error, _crash_hint(error, used)) from None
    return _value(out)


def _matches(got, expected):
    return abs(got - expected) <= 1e-9 * max(abs(got), abs(expected))


def _diagnose(fn):
    """None if fn is right on every case; else a sentence naming the mistake that matches."""
    answers = [_call(fn, *case) for case in CASES]
    if all(a == _right(*case) for a, case in zip(answers, CASES)):
        return None
    for description, wrong in MISTAKES:
        if all(_matches(a, wrong(*case)) for a, case in zip(answers, CASES)):
            return description
    # Right except the bytes of some dtypes: say which and how many it used.
    implied = {
        case[3]: a / (_right(*case) / DTYPE_BYTES[case[3]]) for a, case in zip(answers, CASES)
    }
    off = {d: n for d, n in implied.items() if n != DTYPE_BYTES[d]}
    if off and all(n in (0.5, 1, 2, 4, 8, 16, 32) for n in implied.values()):
        d, n = next(iter(off.items()))
        return (
            f"it counts {d} as {n:g} byte{'s' if n != 1 else ''} per number; {d} is "
            f"{DTYPE_BYTES[d]} (fp32 4, fp16 and bf16 2, fp8 and int8 1)"
        )
    shape, t, b, d = next(case for a, case in zip(answers, CASES) if a != _right(*case))
    got = next(a for a, case in zip(answers, CASES) if a != _right(*case))
    return (
        f"for {shape.n_layer} layers, {shape.n_kv_head} KV heads x head_dim {shape.head_dim}, "
        f"seq_len {t}, batch {b}, {d}: got {got:,}, expected {_right(shape, t, b, d):,} bytes"
    )


def _ratio(got, expected):
    return f"{got / expected:.3g}x the right size" if expected else "not 0"


def check_llama2_7b(kv_cache_size):
    shape = get_shape("Llama-2-7B")
    out = _call(kv_cache_size, shape, 1, 1, "fp16")
    if out != 524_288:
        raise CheckFailed(
            f"Llama-2-7B (32 layers, 32 KV heads x 128, fp16) takes 524,288 bytes per token; "
            f"got {out:,} ({_ratio(out, 524_288)})"
        )
    out = _call(kv_cache_size, shape, 2048, 1, "fp16")
    if out != 2**30:
        raise CheckFailed(
            f"Llama-2-7B at 2048 tokens takes exactly 1 GiB (2**30 bytes); got {out:,} "
            f"({_ratio(out, 2**30)})"
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
            f"got {out:,}, expected {expected:,} bytes ({_ratio(out, expected)})"
        )
    return f"Llama-2-70B (GQA, 8 KV heads): {expected / 2**30:.2f} GiB for 2 x 4096 tokens"


def check_every_factor(kv_cache_size):
    problem = _diagnose(kv_cache_size)
    if problem is not None:
        raise CheckFailed(problem)
    return "right for GQA and MQA shapes, batch > 1, all five dtypes, head_dim x n_head != n_embd"


def check_defaults(kv_cache_size):
    expected = _right(_ODD, 23, 1, "fp16")
    if _call(kv_cache_size, _ODD, 23, 1, "fp16") != expected:  # wrong values, not defaults
        raise CheckFailed(
            "the values are not right yet (see the 'every factor' check); this check then "
            "calls kv_cache_size without batch_size and dtype"
        )
    out = _call(kv_cache_size, _ODD, 23)
    if out != expected:
        if out == _right(_ODD, 23, 1, "fp32"):
            raise CheckFailed('called without a dtype it uses fp32; the default is dtype="fp16"')
        if _diagnose(kv_cache_size) is None:
            raise CheckFailed(
                f"called as kv_cache_size(model, 23) it gives {out:,}, not {expected:,}: the "
                'defaults are batch_size=1 and dtype="fp16"'
            )
        raise CheckFailed(
            "the values are not right yet (see the 'every factor' check); this check then "
            "calls kv_cache_size without batch_size and dtype"
        )
    out = _call(kv_cache_size, model=_MQA, seq_len=5, batch_size=2, dtype="bf16")
    if out != _right(_MQA, 5, 2, "bf16"):
        raise CheckFailed(
            f'called by keyword (model=, seq_len=, batch_size=2, dtype="bf16") it gives {out:,}, '
            f"not {_right(_MQA, 5, 2, 'bf16'):,}"
        )
    return 'batch_size=1 and dtype="fp16" by default; the parameter names of the task'


def check_returns_int(kv_cache_size):
    out = kv_cache_size(_MQA, 11, 3, "fp16")
    value = _value(out)
    expected = _right(_MQA, 11, 3, "fp16")
    if value != expected:
        raise CheckFailed(
            "the value is not right yet (see the 'every factor' check); a right value must "
            "also be an int"
        )
    if isinstance(out, numbers.Integral) and not isinstance(out, bool):
        return "returns an int"
    if isinstance(out, float):
        raise CheckFailed(
            f"kv_cache_size() returned the float {out!r}; a byte count is a whole number: "
            "return an int (// instead of /, or int())"
        )
    raise CheckFailed(
        f"kv_cache_size() returned a {type(out).__module__}.{type(out).__name__} holding the "
        "right value; return a Python int (int(x), or x.item() for a tensor)"
    )


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
            f"{what} raised {type(error).__name__} ({one_line(error, 60)}); raise ValueError "
            "with a message naming the argument and what is allowed"
        ) from None
    raise CheckFailed(f"{what} returned {out!r}; it should raise ValueError")


def check_bad_input(kv_cache_size):
    _expect_value_error(kv_cache_size, (_ODD, 10, 1, "fp4"), 'an unknown dtype ("fp4")')
    _expect_value_error(kv_cache_size, (_ODD, -1, 1, "fp16"), "a negative seq_len (-1)")
    _expect_value_error(kv_cache_size, (_ODD, 10, 0, "fp16"), "batch_size 0")
    _expect_value_error(kv_cache_size, (_ODD, 10, -2, "fp16"), "a negative batch_size (-2)")
    return "an unknown dtype, a negative seq_len and batch_size 0 or -2 raise ValueError"


def check_empty_cache(kv_cache_size):
    try:
        zero = kv_cache_size(_ODD, 0, 1, "fp16")
    except NotImplementedError:
        raise
    except ValueError as error:
        raise CheckFailed(
            f"seq_len 0 raised ValueError ({one_line(error, 60)}): an empty cache is allowed "
            "and takes 0 bytes; refuse only a negative seq_len"
        ) from None
    except Exception as error:  # noqa: BLE001
        raise crashed("kv_cache_size", error, "seq_len 0 is an empty cache") from None
    if _value(zero) != 0:
        raise CheckFailed(f"an empty cache (seq_len 0) takes 0 bytes, got {zero!r}")
    return "seq_len 0: an empty cache, 0 bytes"


# ---- the learner's function against the reference (llmlab.checks.differential) -------------

_ARGUMENTS = ("dtype", "seq_len", "batch_size")  # the order the task states they are checked in


def _names_first_bad(raised, expected):
    """A ValueError whose message names the argument the reference refuses (the first bad one
    in the stated order)."""
    wanted = next((a for a in _ARGUMENTS if str(expected).startswith(a)), None)
    return isinstance(raised, ValueError) and wanted is not None and wanted in str(raised)


def _arguments(c):
    """(model, seq_len, batch_size, dtype) of a case, defaults filled in."""
    names = ("model", "seq_len", "batch_size", "dtype")
    given = dict(zip(names, c.args)) | c.kwargs
    return given["model"], given["seq_len"], given.get("batch_size", 1), given.get("dtype", "fp16")


def _named(c, got, expected):
    """The one known mistake that gives the learner's answer here, or None."""
    s, t, b, d = _arguments(c)
    if not isinstance(got, (int, float)) or isinstance(got, bool) or t <= 0:
        return None
    found = {
        description
        for description, wrong in MISTAKES
        if _matches(got, wrong(s, t, b, d)) and not _matches(wrong(s, t, b, d), expected)
    }
    if not found and got and got % (expected // DTYPE_BYTES[d]) == 0:
        n = got // (expected // DTYPE_BYTES[d])
        found.add(
            f"it counts {d} as {n} byte{'s' if n != 1 else ''} per number; {d} is "
            f"{DTYPE_BYTES[d]} (fp32 4, fp16 and bf16 2, fp8 and int8 1)"
        )
    if len(found) > 1:  # several mistakes give this answer here: the fixed CASES tell them apart
        try:
            on_cases = _diagnose(DIFF.function)
        except Exception:  # noqa: BLE001 - it crashed there: name none
            on_cases = None
        found &= {on_cases}
    return found.pop() if len(found) == 1 else None


class _Differential(Differential):
    """Keeps the learner's function at hand for _named (which retries it on CASES)."""

    function = None

    def disagreement(self, function, c):
        self.function = function
        return super().disagreement(function, c)


def _show_model(m):
    name = getattr(m, "name", type(m).__name__)
    return (
        f"{name} (n_layer={m.n_layer}, n_head={m.n_head}, n_kv_head={m.n_kv_head}, "
        f"head_dim={m.head_dim}, n_embd={m.n_embd})"
    )


def _show_input(c):
    names = ("model", "seq_len", "batch_size", "dtype")
    parts = [
        f"{name}={_show_model(v) if name == 'model' else repr(v)}"
        for name, v in (list(zip(names, c.args)) + list(c.kwargs.items()))
    ]
    return ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0]


def _shape(draw):
    n_kv_head = draw.integer(1, 8)
    n_head = n_kv_head * draw.choice([1, 2, 4, 8])
    head_dim = draw.choice([8, 64, 128, 80, 96, 256])
    n_embd = n_head * head_dim if draw.boolean(0.7) else n_head * head_dim // 2 + 64
    return ModelShape(
        "a shape", draw.integer(1, 96), n_embd, n_head, n_kv_head, head_dim, 4096, 32_000,
        10**9, "generated",
    )  # fmt: skip


def _generate(draw):
    model = _shape(draw)
    seq_len = draw.integer(-3, -1) if draw.boolean(0.05) else draw.integer(0, 40_000)
    kwargs = {}
    if draw.boolean(0.8):
        kwargs["batch_size"] = draw.integer(-2, 0) if draw.boolean(0.05) else draw.integer(1, 64)
    if draw.boolean(0.8):
        bad = ["fp4", "fp", "fp16x", "float16", "int4"]
        kwargs["dtype"] = draw.choice(bad) if draw.boolean(0.08) else draw.choice(DTYPE_BYTES)
    return case(model, seq_len, **kwargs)


_LLAMA2_7B = get_shape("Llama-2-7B")
DIFF = _Differential(
    reference("07_kv_cache_size", "kv_cache_size"),
    examples=[case(_LLAMA2_7B, 1, 1, "fp16"), case(_LLAMA2_7B, 2048, 1, "fp16")],
    boundaries=[
        case(get_shape("Llama-2-70B"), 4096, 2, "fp16").because(
            "grouped-query attention: only the n_kv_head heads are cached"
        ),
        case(_ODD, 7, 5, "fp16").because("head_dim x n_head != n_embd: use head_dim"),
        case(_MQA, 11, 3, "fp16").because("one KV head (multi-query attention)"),
        *(
            case(_ODD, 3, 2, d).because(f"{d} is {n} byte{'s' * (n > 1)} per number")
            for d, n in DTYPE_BYTES.items()
        ),  # fmt: skip
        case(_ODD, 23).because('the defaults are batch_size=1 and dtype="fp16"'),
        case(model=_MQA, seq_len=5, batch_size=2, dtype="bf16").because("called by keyword"),
        case(
            GPTConfig(vocab_size=10, block_size=32, n_layer=2, n_head=4, n_embd=32, n_kv_head=2),
            9,
            2,
            "bf16",
        ).because("a GPTConfig"),  # fmt: skip
        case(_ODD, 0, 3, "fp16").because("seq_len 0 is an empty cache: 0 bytes"),
        case(_ODD, -1, 1, "fp16").because("a negative seq_len raises ValueError naming seq_len"),
        case(_ODD, 10, 0, "fp16").because("batch_size 0 raises ValueError naming batch_size"),
        case(_ODD, 10, -2, "fp16").because("so does a negative batch_size"),
        case(_ODD, 10, 1, "fp4").because("an unknown dtype raises ValueError naming dtype"),
        case(_ODD, 10, 1, "fp").because("dtype must be one of the five names exactly"),
        case(_ODD, 10, 1, "fp16x").because("dtype must be one of the five names exactly"),
        case(_ODD, -1, 0, "fp4").because("dtype is checked first, then seq_len, then batch_size"),
        case(_ODD, -1, 0, "fp16").because("dtype is checked first, then seq_len, then batch_size"),
    ],
    generate=_generate,
    n_generated=150,
    seed=7,
    rtol=1e-12,
    atol=0.0,  # a byte count is exact
    diagnose=_named,
    show_input=_show_input,
    same_error=_names_first_bad,
)
_examples, _boundaries, _generated = DIFF.checks()

CHECKS = [
    _examples,
    ("Llama-2-7B", check_llama2_7b),
    ("GQA (Llama-2-70B)", check_gqa),
    ("every factor", check_every_factor),
    ("defaults", check_defaults),
    ("returns an int", check_returns_int),
    ("GPTConfig", check_gptconfig),
    ("bad input", check_bad_input),
    ("empty cache", check_empty_cache),
    _boundaries,
    _generated,
]


def check_kv_cache_size(kv_cache_size):
    """Run every check on the learner's kv_cache_size; prints and returns the report."""
    return run_checks(CHECKS, kv_cache_size, "kv_cache_size")

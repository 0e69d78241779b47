"""Checks for exercises/10_decode_floor.ipynb: a decode step's roofline time, and the batch at
which decode turns compute-bound.

The learner writes decode_step_seconds(config, batch, context, bandwidth, peak_flops,
bytes_per_element=2) and compute_bound_batch(config, context, bandwidth, peak_flops,
bytes_per_element=2, max_batch=4096). The reference is the count the exercise states, from the
shape: bytes = n_weights(config)["other"] weights + each sequence's K and V for context + 1
positions read and one written, in every layer; FLOPs = 2 per weight per sequence + q.k and
weights.v (2 FLOPs per multiply-add, head_dim each) over context + 1 positions for every query
head and layer. The course's cost model (llmlab.cost.step_cost: weights + kv_read + kv_write,
total FLOPs) counts a little differently (the embedding rows a step reads, no FLOPs for biases
and norms); answers that follow it are accepted too, as is a mix of the two.

Answers are compared within 2e-5 (relative), which a float32 computation meets; every known
mistake is off by at least 1e-4 on some case (counting context instead of context + 1 positions
in attention, the smallest, is 1.2e-4 on the attention-heavy case). When an answer is off, the
checks recompute it with each classic mistake, on a grouped-query model and a multi-head one,
fp16 and fp32, memory-bound and compute-bound steps, and name the one that matches.
"""

import math

from llmlab.checks import CheckFailed, as_number, crashed, run_checks
from llmlab.checks.differential import Difference, Differential, case, reference
from llmlab.cost import n_weights, step_cost
from llmlab.model import GPTConfig

_GQA = GPTConfig(vocab_size=32000, block_size=4096, n_layer=8, n_head=16, n_embd=1024, n_kv_head=4)
_MHA = GPTConfig(vocab_size=8192, block_size=2048, n_layer=6, n_head=8, n_embd=512)
_GPU = (1e12, 1e14)  # bandwidth (bytes/s), peak (FLOP/s): ridge 100
_CPU = (20e9, 200e9)  # ridge 10
_LOW_RIDGE = (1e12, 2e12)  # ridge 2: even attention's reads turn compute-bound
_STEP_CASES = [  # config, batch, context, (bandwidth, peak), bytes_per_element
    (_GQA, 1, 100, _GPU, 2),
    (_GQA, 8, 2000, _GPU, 2),
    (_MHA, 32, 500, _CPU, 4),
    (_MHA, 256, 3, _CPU, 2),
    (_GQA, 512, 200, _GPU, 2),
    (_GQA, 64, 3000, _LOW_RIDGE, 2),
]
_BATCH_CASES = [  # config, context, (bandwidth, peak), bytes_per_element, max_batch (None: default)
    (_GQA, 100, _GPU, 2, None),
    (_MHA, 50, _CPU, 4, None),
    (_MHA, 1500, _CPU, 2, None),
    (_GQA, 200, _GPU, 2, None),
    (_GQA, 1000, _GPU, 2, None),
    (_GQA, 100, _GPU, 2, 64),
]
_TOL = 2e-5


# ---- the right answers and the mistakes, from the shape -----------------------------------------
def _parts(cfg, b, ctx, bpe, *, kv_heads=None, flops_per_weight=2, weights_times_batch=False,
           kv_batch=True, with_kv=True, kv_positions=2, kv_tensors=2, kv_layers=None,
           kv_bpe=True, with_embeddings=False, attn=2, attn_heads=None, attn_positions=1,
           fixed_bpe=None, cost_model_bytes=False, cost_model_flops=False):  # fmt: skip
    """(bytes, flops) of one decode step as the exercise counts them, or with a mistake."""
    bpe = fixed_bpe or bpe
    L, H, Hkv, D = cfg.n_layer, cfg.n_head, cfg.n_kv_head, cfg.head_dim
    P = n_weights(cfg)["other"]
    read = P + (n_weights(cfg)["embeddings"] if with_embeddings else 0)
    weights = read * bpe * (b if weights_times_batch else 1)
    if with_embeddings == "everywhere":
        P = read
    kv = (
        kv_tensors * (kv_layers or L) * (b if kv_batch else 1) * (kv_heads or Hkv) * D
        * (ctx + kv_positions) * (bpe if kv_bpe else 1)
    )  # fmt: skip
    nbytes = weights + (kv if with_kv else 0)
    flops = flops_per_weight * P * b + 2 * attn * L * b * (attn_heads or H) * D * (
        ctx + attn_positions
    )
    if cost_model_bytes or cost_model_flops:
        c = step_cost(cfg, b, 1, ctx, bpe)
        if cost_model_bytes:
            nbytes = c.bytes["weights"] + c.bytes["kv_read"] + c.bytes["kv_write"]
        if cost_model_flops:
            flops = c.total_flops
    return nbytes, flops


def _time(cfg, b, ctx, machine, bpe, combine=max, scale=1.0, swap=False, **mistake):
    nbytes, flops = _parts(cfg, b, ctx, bpe, **mistake)
    bw, peak = machine
    if swap:
        bw, peak = peak, bw
    return combine(nbytes / bw, flops / peak) * scale


_CONVENTIONS = [  # the exercise's count, the cost model's, and the two mixes
    {},
    dict(cost_model_bytes=True, cost_model_flops=True),
    dict(cost_model_bytes=True),
    dict(cost_model_flops=True),
]


def _step_right(cfg, b, ctx, machine, bpe):
    return _time(cfg, b, ctx, machine, bpe)


def _sum(a, b):
    return a + b


_STEP_MISTAKES = [
    ("it adds the memory time and the compute time; the step takes the larger of the two "
     "(they overlap)", dict(combine=_sum)),
    ("it takes the smaller of the memory time and the compute time; the slower one limits the "
     "step", dict(combine=min)),
    ("it divides the bytes by peak_flops and the FLOPs by bandwidth; bytes / bandwidth, FLOPs / "
     "peak_flops", dict(swap=True)),
    ("it leaves out the KV cache: each sequence also reads its keys and values (context + 1 "
     "positions) and writes the new one", dict(with_kv=False)),
    ("it counts the KV cache once for the whole batch; every sequence reads its own",
     dict(kv_batch=False)),
    ("it counts the KV cache of one layer; every layer reads and writes its own",
     dict(kv_layers=1)),
    ("it counts only the keys of the cache; the values are cached and read too (2 tensors)",
     dict(kv_tensors=1)),
    ("it counts the KV cache in numbers, not bytes; multiply by bytes_per_element",
     dict(kv_bpe=False)),
    ("it counts context + 1 positions of K and V; attention reads context + 1 and the new "
     "position is also written, context + 2 in all", dict(kv_positions=1)),
    ("it counts context positions of K and V; attention reads context + 1 (the cached ones and "
     "the new one) and the new one is written too, context + 2 in all", dict(kv_positions=0)),
    ("it reads the weights once per sequence; a batched step reads them once for the whole batch",
     dict(weights_times_batch=True)),
    ("it counts query heads (n_head) in the KV cache; only n_kv_head heads are cached",
     dict(kv_heads="n_head")),
    ("it counts the embedding tables as weights read; use n_weights(config)['other'] (a step "
     "reads one row of each table)", dict(with_embeddings=True)),
    ("it counts the embedding tables as weights, read and multiplied; use "
     "n_weights(config)['other'] (a step looks up one row of each table)",
     dict(with_embeddings="everywhere")),
    ("it counts 1 FLOP per weight per sequence; a multiply-add is 2 FLOPs",
     dict(flops_per_weight=1)),
    ("it leaves out attention's FLOPs: q.k and weights.v, over context + 1 positions, for every "
     "query head", dict(attn=0)),
    ("it counts only q.k in attention's FLOPs; weights.v costs as much again", dict(attn=1)),
    ("it counts attention's FLOPs for n_kv_head heads; every query head (n_head) does its own "
     "q.k and weights.v", dict(attn_heads="n_kv_head")),
    ("it counts attention's FLOPs over context positions; the new position attends to itself "
     "too, context + 1", dict(attn_positions=0)),
    ("it answers in milliseconds; return seconds", dict(scale=1e3)),
    ("it ignores bytes_per_element and always counts 4 bytes (fp32)", dict(fixed_bpe=4)),
    ("it ignores bytes_per_element and always counts 2 bytes (fp16)", dict(fixed_bpe=2)),
]  # fmt: skip


def _mistaken(cfg, b, ctx, machine, bpe, options):
    options = dict(options)
    for key in ("kv_heads", "attn_heads"):
        if options.get(key) in ("n_head", "n_kv_head"):
            options[key] = getattr(cfg, options[key])
    return _time(cfg, b, ctx, machine, bpe, **options)


def _crossing(cfg, ctx, machine, bpe, max_batch=4096, **mistake):
    """The smallest batch in [1, max_batch] whose FLOPs time reaches its bytes time, or None.

    Bytes and FLOPs are linear in the batch, so the crossing is found from two batches and then
    confirmed (and nudged past float rounding) by the direct comparison."""
    bw, peak = machine

    def compute_bound(b):
        nbytes, flops = _parts(cfg, b, ctx, bpe, **mistake)
        return flops / peak >= nbytes / bw

    (n1, f1), (n2, f2) = _parts(cfg, 1, ctx, bpe, **mistake), _parts(cfg, 2, ctx, bpe, **mistake)
    slope = (f2 - f1) / peak - (n2 - n1) / bw  # how much closer to compute-bound per sequence
    if compute_bound(1):
        return 1
    if slope <= 0:
        return None
    b = max(1, math.ceil(1 + (n1 / bw - f1 / peak) / slope))
    while b > 1 and compute_bound(b - 1):
        b -= 1
    while not compute_bound(b):
        b += 1
    return b if b <= max_batch else None


def _exact_crossing(cfg, ctx, machine, bpe):
    """Where the two lines meet, as a real number (the bytes and FLOPs are linear in batch)."""
    bw, peak = machine
    (n1, f1), (n2, f2) = _parts(cfg, 1, ctx, bpe), _parts(cfg, 2, ctx, bpe)
    slope = (f2 - f1) / peak - (n2 - n1) / bw
    return None if slope <= 0 else 1 + (n1 / bw - f1 / peak) / slope


# ---- calling the learner's code -------------------------------------------------------------------
def _describe(cfg, b, ctx, bpe):
    kind = "grouped-query" if cfg.n_kv_head < cfg.n_head else "multi-head"
    batch = f"batch {b}, " if b is not None else ""
    return f"{kind} model, {batch}context {ctx}, {bpe} bytes per number"


def _works(fn, *args):
    try:
        fn(*args)
        return True
    except Exception:  # noqa: BLE001 - any error means: not on this input
        return False


def _crash_hint(fn, cfg, bpe, simpler_args):
    """The likely cause of a crash, found by retrying on a multi-head fp16 case."""
    if cfg.n_kv_head < cfg.n_head:
        kind = "grouped-query (n_kv_head < n_head)"
    elif bpe != 2:
        kind = "fp32"
    else:
        return None
    if _works(fn, *simpler_args):
        return f"it works on a multi-head fp16 case but not on a {kind} one"
    return None


def _call_step(fn, cfg, b, ctx, machine, bpe):
    try:
        out = fn(cfg, b, ctx, machine[0], machine[1], bpe)
    except (NotImplementedError, CheckFailed):
        raise
    except Exception as error:  # noqa: BLE001 - say how it crashed, in one sentence
        hint = _crash_hint(fn, cfg, bpe, (_MHA, 4, 100, 1e12, 1e14, 2))
        raise crashed("decode_step_seconds", error, hint) from None
    value = as_number(out)
    if value is None or not math.isfinite(value):
        raise CheckFailed(
            f"decode_step_seconds() returned {str(out)[:60]!s} ({type(out).__name__}); return "
            f"one number of seconds"
        )
    return value


def _call_batch(fn, cfg, ctx, machine, bpe, max_batch):
    args = (cfg, ctx, machine[0], machine[1], bpe) + (() if max_batch is None else (max_batch,))
    try:
        out = fn(*args)
    except (NotImplementedError, CheckFailed):
        raise
    except Exception as error:  # noqa: BLE001 - say how it crashed, in one sentence
        hint = _crash_hint(fn, cfg, bpe, (_MHA, 100, 1e12, 1e14, 2))
        raise crashed("compute_bound_batch", error, hint) from None
    if out is None:
        return None
    value = as_number(out)
    if value is None or not math.isfinite(value):
        raise CheckFailed(
            f"compute_bound_batch() returned {str(out)[:60]} ({type(out).__name__}); return an "
            f"int or None"
        )
    return value


def _close(a, b):
    return a is not None and b is not None and abs(a - b) <= _TOL * abs(b)


def _accepted(case):
    cfg, b, ctx, machine, bpe = case
    return [_time(cfg, b, ctx, machine, bpe, **conv) for conv in _CONVENTIONS]


def check_step_time(decode_step_seconds):
    answers = [_call_step(decode_step_seconds, *case) for case in _STEP_CASES]
    wrong = [
        (a, case)
        for a, case in zip(answers, _STEP_CASES)
        if not any(_close(a, want) for want in _accepted(case))
    ]
    if not wrong:
        return f"matches the count on {len(_STEP_CASES)} steps (GQA and MHA, fp16 and fp32)"
    for description, options in _STEP_MISTAKES:
        if all(_close(a, _mistaken(*case, options)) for a, case in zip(answers, _STEP_CASES)):
            raise CheckFailed(description)
    got, case = wrong[0]
    want = _step_right(*case)
    if abs(got - want) <= 1e-3 * want:
        raise CheckFailed(
            f"for a {_describe(case[0], case[1], case[2], case[4])}: got {got:.7g} s, expected "
            f"{want:.7g} s, off by {abs(got / want - 1):.1e}: more than float32 rounding, so a "
            f"term is slightly off (count every position, head and layer the task lists)"
        )
    raise CheckFailed(
        f"for a {_describe(case[0], case[1], case[2], case[4])}: got {got:.4g} s, expected "
        f"{want:.4g} s (max of bytes / bandwidth and FLOPs / peak)"
    )


def check_memory_bound_at_batch_1(decode_step_seconds):
    cfg, machine = _GQA, _GPU
    got = _call_step(decode_step_seconds, cfg, 1, 100, machine, 2)
    floor = n_weights(cfg)["other"] * 2 / machine[0]
    if not got >= floor * (1 - _TOL):
        raise CheckFailed(
            f"at batch 1 a step cannot beat streaming the weights once: {floor:.4g} s, got "
            f"{got:.4g} s"
        )
    return f"batch 1 is memory-bound: {got * 1e3:.3f} ms >= weights / bandwidth"


def _batch_mistake(got, cfg, ctx, machine, bpe, max_batch, want):
    """The message for a wrong compute_bound_batch answer on one case."""
    where = _describe(cfg, None, ctx, bpe)
    limit = max_batch or 4096
    unlimited = _crossing(cfg, ctx, machine, bpe, max_batch=10**6)
    if want is None and got is not None and unlimited is not None and got == unlimited:
        return (
            f"it ignores max_batch: with max_batch={limit} the answer is None (the crossing, "
            f"{unlimited}, lies past it)"
        )
    if want is None and got is not None:
        return (
            f"for a {where}: decode never turns compute-bound up to batch {limit} (the KV reads "
            f"grow with the batch too): expected None, got {got:g}"
        )
    if got is None:
        return f"for a {where} the step turns compute-bound at batch {want}: expected it, got None"
    exact = _exact_crossing(cfg, ctx, machine, bpe)
    if not float(got).is_integer():
        if exact is not None and abs(got - exact) <= 1e-3 * exact:
            return (
                f"it returns the exact crossing {got:.4g}; a batch is a whole number: the "
                f"smallest compute-bound one is {want} (round up)"
            )
        return f"it returns {got:g}; a batch is a whole number: expected {want}"
    if got == want - 1:
        return (
            f"it returns the largest memory-bound batch ({got:g}); return the smallest "
            f"compute-bound one ({want})"
        )
    if got == want + 1:
        return (
            f"it returns one past the smallest compute-bound batch ({got:g} instead of {want}): "
            f"return the first batch whose FLOPs time reaches the bytes time"
        )
    weights_only = _crossing(cfg, ctx, machine, bpe, with_kv=False)
    if weights_only is not None and abs(got - weights_only) <= 1:
        return (
            f"it leaves out the KV cache's bytes ({got:g} instead of {want} for a {where}): at "
            f"long context they keep decode memory-bound"
        )
    return f"for a {where}: expected {want}, got {got:g}"


def check_compute_bound_batch(compute_bound_batch):
    for cfg, ctx, machine, bpe, max_batch in _BATCH_CASES:
        limit = max_batch or 4096
        accepted = {
            _crossing(cfg, ctx, machine, bpe, max_batch=limit, **conv) for conv in _CONVENTIONS
        }
        got = _call_batch(compute_bound_batch, cfg, ctx, machine, bpe, max_batch)
        if got in accepted:
            continue
        want = _crossing(cfg, ctx, machine, bpe, max_batch=limit)
        raise CheckFailed(_batch_mistake(got, cfg, ctx, machine, bpe, max_batch, want))
    return (
        f"the smallest compute-bound batch (or None) in {len(_BATCH_CASES)} cases, GQA and MHA, "
        f"max_batch respected"
    )


# ---- differential: the learner's functions against the reference, input by input --------------
# The task's worked example (a grouped-query model): 41.8 microseconds at batch 1, compute-bound
# from batch 364 (the lines cross at 363.6), None when max_batch is 300.
_EXAMPLE = GPTConfig(vocab_size=8192, block_size=8192, n_layer=6, n_head=8, n_embd=512, n_kv_head=2)
_TINY = GPTConfig(vocab_size=64, block_size=64, n_layer=1, n_head=2, n_embd=32, n_kv_head=1)


def _machine_args(c, step):
    """(config, batch, context, bpe, (bandwidth, peak), max_batch) of a call, defaults filled."""
    names = (
        ("config", "batch", "context", "bandwidth", "peak_flops", "bytes_per_element")
        if step
        else ("config", "context", "bandwidth", "peak_flops", "bytes_per_element", "max_batch")
    )
    bound = dict(zip(names, c.args)) | c.kwargs
    bound.setdefault("bytes_per_element", 2)
    bound.setdefault("max_batch", 4096)
    return bound


def _step_compare(got, expected, c):
    """Within 2e-5 of the exercise's count, or of the cost model's, or of a mix of the two."""
    value = as_number(got)
    if value is None:
        return Difference("", got, expected, "is not one number")
    a = _machine_args(c, step=True)
    machine = (a["bandwidth"], a["peak_flops"])
    accepted = [
        _time(a["config"], a["batch"], a["context"], machine, a["bytes_per_element"], **conv)
        for conv in _CONVENTIONS
    ]
    return None if any(_close(value, want) for want in accepted) else Difference("", got, expected)


def _batch_compare(got, expected, c, function):
    """The reference's batch; or, for an answer that follows another accepted count (the cost
    model's), its own crossing, bounded by max_batch the same way: the learner's function is
    asked for its crossing up to 2 * max_batch + 2, which must be the answer when it is at most
    max_batch, and None otherwise. One off is accepted where the two times tie to float rounding
    (a right answer computed in another order may land either side)."""
    value = None if got is None else as_number(got)
    if got is not None and (value is None or not float(value).is_integer()):
        return Difference("", got, expected)
    if value == expected:
        return None
    a = _machine_args(c, step=False)
    cfg, ctx, bpe, limit = a["config"], a["context"], a["bytes_per_element"], a["max_batch"]
    machine = (a["bandwidth"], a["peak_flops"])
    if value is not None and expected is not None and abs(value - expected) == 1:
        nbytes, flops = _parts(cfg, int(min(value, expected)), ctx, bpe)
        memory, compute = nbytes / machine[0], flops / machine[1]
        if abs(memory - compute) <= 1e-12 * memory:
            return None
    wide = 2 * limit + 2
    own = {_crossing(cfg, ctx, machine, bpe, max_batch=wide, **v) for v in _CONVENTIONS}
    try:
        probe = function(cfg, ctx, machine[0], machine[1], bpe, max_batch=wide)
    except Exception:  # noqa: BLE001 - it cannot say where its own crossing is
        return Difference("", got, expected)
    crossing = None if probe is None else as_number(probe)
    if crossing not in own:
        return Difference("", got, expected)
    bounded = crossing if crossing is not None and crossing <= limit else None
    return None if value == bounded else Difference("", got, expected)


def _step_named(c, got, expected):
    a, value = _machine_args(c, step=True), as_number(got)
    if value is None:
        return None
    call = (a["config"], a["batch"], a["context"], (a["bandwidth"], a["peak_flops"]))
    for description, options in _STEP_MISTAKES:
        if _close(value, _mistaken(*call, a["bytes_per_element"], options)):
            return description
    return None


def _batch_named(c, got, expected):
    a = _machine_args(c, step=False)
    value = None if got is None else as_number(got)
    if got is not None and value is None:
        return None
    machine = (a["bandwidth"], a["peak_flops"])
    explicit = "max_batch" in c.kwargs or len(c.args) > 5
    message = _batch_mistake(
        value, a["config"], a["context"], machine, a["bytes_per_element"],
        a["max_batch"] if explicit else None, expected,
    )  # fmt: skip
    return None if message.startswith("for a ") else message


def _config(draw):
    head_dim = draw.choice([8, 16, 32, 64, 128])
    n_head = draw.choice([1, 2, 4, 8, 16, 32])
    n_kv_head = draw.choice([h for h in (1, 2, 4, 8, 16, 32) if n_head % h == 0])
    return GPTConfig(
        vocab_size=draw.integer(16, 50_000),
        block_size=draw.integer(16, 8192),
        n_layer=draw.integer(1, 32),
        n_head=n_head,
        n_embd=n_head * head_dim,
        n_kv_head=n_kv_head,
    )


def _machine(draw):
    """Bandwidth 1e9 to 1e13 bytes/s, a ridge of 0.5 to 1000 FLOPs per byte."""
    bandwidth = draw.choice([1e12, 2e9, 2e12, 3.35e12, 5e10, 1e13])
    return bandwidth, bandwidth * draw.choice([100, 10, 0.5, 2, 295, 1000, 37.5])


def _generate_step(draw):
    cfg, (bandwidth, peak) = _config(draw), _machine(draw)
    batch, context = draw.integer(1, 1024), draw.integer(0, cfg.block_size - 1)
    if draw.boolean():  # the default, 2 bytes per number, left out
        return case(cfg, batch, context, bandwidth, peak)
    return case(cfg, batch, context, bandwidth, peak, draw.choice([2, 4]))


def _generate_batch(draw):
    cfg, (bandwidth, peak) = _config(draw), _machine(draw)
    context, bpe = draw.integer(0, cfg.block_size - 1), draw.choice([2, 4])
    if draw.boolean():
        return case(cfg, context, bandwidth, peak, bpe, max_batch=draw.integer(1, 4096))
    return (
        case(cfg, context, bandwidth, peak)
        if draw.boolean()
        else case(cfg, context, bandwidth, peak, bpe)
    )


def _crossing_at(cfg, ctx, machine, bpe=2):
    return _crossing(cfg, ctx, machine, bpe, max_batch=10**6)


# Machines whose ridge puts the example model's crossing (at context 0) at exactly 4096 and 4097,
# the default max_batch and one past it: bytes are W + k * batch and FLOPs f * batch, so the
# lines meet at W / (f / ridge - k); a ridge that puts them at 4095.5 makes 4096 the answer.
def _machine_crossing_at(cfg, ctx, target):
    (n1, f), (n2, _) = _parts(cfg, 1, ctx, 2), _parts(cfg, 2, ctx, 2)
    k = n2 - n1
    ridge = f / (k + (n1 - k) / (target - 0.5))
    machine = (1e12, 1e12 * ridge)
    assert _crossing_at(cfg, ctx, machine) == target, (target, _crossing_at(cfg, ctx, machine))
    return machine


_AT_4096 = _machine_crossing_at(_EXAMPLE, 0, 4096)
_AT_4097 = _machine_crossing_at(_EXAMPLE, 0, 4097)
_CROSS = _crossing_at(_EXAMPLE, 100, (1e12, 1e14))  # 364

STEP_DIFF = Differential(
    reference("10_decode_floor", "decode_step_seconds"),
    examples=[case(_EXAMPLE, 1, 100, 1e12, 1e14)],
    boundaries=[
        case(_EXAMPLE, 1, 100, 1e12, 1e14, 4).because("bytes_per_element 4: fp32"),
        case(_EXAMPLE, 1, 0, 1e12, 1e14).because(
            "context 0: attention still reads the new position, and writes its K and V"
        ),
        case(_EXAMPLE, 2048, 100, 1e12, 1e14).because(
            "a large batch is compute-bound: the slower of bytes and FLOPs"
        ),
        case(_EXAMPLE, 64, 4000, 1e12, 2e12).because(
            "long context on a low ridge: each sequence reads its own K and V"
        ),
        case(_TINY, 3, 7, 5e10, 5e11).because(
            "grouped-query: K and V for n_kv_head heads, attention FLOPs for n_head"
        ),
    ],
    generate=_generate_step,
    n_generated=100,
    compare=_step_compare,
    diagnose=_step_named,
)

BATCH_DIFF = Differential(
    reference("10_decode_floor", "compute_bound_batch"),
    examples=[case(_EXAMPLE, 100, 1e12, 1e14), case(_EXAMPLE, 100, 1e12, 1e14, max_batch=300)],
    boundaries=[
        case(_EXAMPLE, 100, 1e12, 1e14, max_batch=_CROSS).because(
            "a crossing exactly at max_batch is found"
        ),
        case(_EXAMPLE, 100, 1e12, 1e14, max_batch=_CROSS - 1).because(
            "a crossing one past max_batch: None"
        ),
        case(_EXAMPLE, 0, *_AT_4096).because("max_batch is 4096 when left out: a crossing at 4096"),
        case(_EXAMPLE, 0, *_AT_4097).because("max_batch is 4096 when left out: none at 4097"),
        case(_EXAMPLE, 100, 1e12, 1e12).because("a ridge of 1: compute-bound from batch 1"),
        case(_EXAMPLE, 100, 1e12, 1e14, 4).because("bytes_per_element 4 moves the crossing"),
        case(_EXAMPLE, 8000, 1e12, 1e14).because(
            "long context: the KV reads grow with the batch, so None"
        ),
        case(_TINY, 5, 5e10, 5e11).because(
            "the lines cross between two batches: the next whole batch, not int() of it"
        ),
    ],
    generate=_generate_batch,
    n_generated=40,
    compare=_batch_compare,
    diagnose=_batch_named,
)

CHECKS = [
    ("step time", lambda fns: check_step_time(fns[0])),
    ("batch 1 floor", lambda fns: check_memory_bound_at_batch_1(fns[0])),
    ("compute-bound batch", lambda fns: check_compute_bound_batch(fns[1])),
    *STEP_DIFF.checks(pick=lambda fns: fns[0], prefix="step time: "),
    *BATCH_DIFF.checks(pick=lambda fns: fns[1], prefix="batch: "),
]


def check_decode_floor(decode_step_seconds, compute_bound_batch):
    return run_checks(CHECKS, (decode_step_seconds, compute_bound_batch), "decode_step_seconds")

"""Checks for exercises/10_decode_floor.ipynb: a decode step's roofline time, and the batch at
which decode turns compute-bound.

The learner writes decode_step_seconds(config, batch, context, bandwidth, peak_flops,
bytes_per_element=2) and compute_bound_batch(config, context, bandwidth, peak_flops,
bytes_per_element=2, max_batch=4096). Both are checked against llmlab.cost.step_cost: bytes are
its weights + kv_read + kv_write (activations left out, as the exercise says), FLOPs its total.
A learner's formula from the shape (2 FLOPs per weight per sequence) lands within a fraction of
a percent of it; 1% is allowed. When an answer is off, the checks recompute it with each classic
mistake, on a grouped-query model and a multi-head one, and name the one that matches.
"""

import math
import numbers

from llmlab.checks import CheckFailed, run_checks
from llmlab.cost import n_weights, step_cost
from llmlab.model import GPTConfig

_GQA = GPTConfig(vocab_size=32000, block_size=4096, n_layer=8, n_head=16, n_embd=1024, n_kv_head=4)
_MHA = GPTConfig(vocab_size=8192, block_size=2048, n_layer=6, n_head=8, n_embd=512)
_GPU = (1e12, 1e14)  # bandwidth (bytes/s), peak (FLOP/s): ridge 100
_CPU = (20e9, 200e9)  # ridge 10
_STEP_CASES = [  # config, batch, context, (bandwidth, peak), bytes_per_element
    (_GQA, 1, 100, _GPU, 2),
    (_GQA, 8, 2000, _GPU, 2),
    (_MHA, 32, 500, _CPU, 4),
    (_MHA, 256, 50, _CPU, 2),
    (_GQA, 512, 200, _GPU, 2),
]
_BATCH_CASES = [  # config, context, (bandwidth, peak), bytes_per_element
    (_GQA, 100, _GPU, 2),
    (_MHA, 50, _CPU, 4),
    (_MHA, 1500, _CPU, 2),
    (_GQA, 200, _GPU, 2),
    (_GQA, 1000, _GPU, 2),
]
_TOL = 0.01


# ---- the right answers and the mistakes, from the shape -----------------------------------------
def _parts(cfg, b, ctx, bpe, kv_heads=None, flops_per_weight=2, weights_times_batch=False,
           kv_batch=True, with_kv=True):  # fmt: skip
    """(bytes, flops) of one decode step, optionally made with a mistake."""
    c = step_cost(cfg, b, 1, ctx, bpe)
    weights = c.bytes["weights"]
    if weights_times_batch:
        weights = n_weights(cfg)["other"] * bpe * b
    kv = c.bytes["kv_read"] + c.bytes["kv_write"]
    if kv_heads is not None:
        kv = kv // cfg.n_kv_head * kv_heads
    if not kv_batch:
        kv //= b
    if not with_kv:
        kv = 0
    matrix = c.total_flops - c.flops["attn_scores"] - c.flops["attn_values"]
    flops = matrix * flops_per_weight // 2 + c.flops["attn_scores"] + c.flops["attn_values"]
    return weights + kv, flops


def _time(cfg, b, ctx, machine, bpe, combine=max, scale=1.0, **mistake):
    nbytes, flops = _parts(cfg, b, ctx, bpe, **mistake)
    bw, peak = machine
    return combine(nbytes / bw, flops / peak) * scale


def _step_right(cfg, b, ctx, machine, bpe):
    return _time(cfg, b, ctx, machine, bpe)


_STEP_MISTAKES = [
    ("it adds the memory time and the compute time; the step takes the larger of the two "
     "(they overlap)", dict(combine=lambda a, b: a + b)),
    ("it takes the smaller of the memory time and the compute time; the slower one limits the "
     "step", dict(combine=min)),
    ("it leaves out the KV cache: each sequence also reads its keys and values (context + 1 "
     "positions) and writes the new one", dict(with_kv=False)),
    ("it counts the KV cache once for the whole batch; every sequence reads its own",
     dict(kv_batch=False)),
    ("it reads the weights once per sequence; a batched step reads them once for the whole batch",
     dict(weights_times_batch=True)),
    ("it counts query heads (n_head) in the KV cache; only n_kv_head heads are cached",
     dict(kv_heads="n_head")),
    ("it counts 1 FLOP per weight per sequence; a multiply-add is 2 FLOPs",
     dict(flops_per_weight=1)),
    ("it answers in milliseconds; return seconds", dict(scale=1e3)),
]  # fmt: skip


def _mistaken(cfg, b, ctx, machine, bpe, options):
    options = dict(options)
    if options.get("kv_heads") == "n_head":
        options["kv_heads"] = cfg.n_head
    return _time(cfg, b, ctx, machine, bpe, **options)


def _always_fp32(cfg, b, ctx, machine, bpe):
    return _time(cfg, b, ctx, machine, 4)


def _crossing(cfg, ctx, machine, bpe, max_batch=4096, **mistake):
    bw, peak = machine
    for b in range(1, max_batch + 1):
        nbytes, flops = _parts(cfg, b, ctx, bpe, **mistake)
        if flops / peak >= nbytes / bw:
            return b
    return None


# ---- calling the learner's code -------------------------------------------------------------------
def _call_step(fn, cfg, b, ctx, machine, bpe):
    out = fn(cfg, b, ctx, machine[0], machine[1], bpe)
    if isinstance(out, bool) or not isinstance(out, numbers.Real) or not math.isfinite(out):
        raise CheckFailed(
            f"decode_step_seconds() returned {out!r}; return a number of seconds (a float)"
        )
    return float(out)


def _close(a, b):
    return b is not None and a is not None and abs(a - b) <= _TOL * abs(b)


def _describe(cfg, b, ctx, bpe):
    kind = "grouped-query" if cfg.n_kv_head < cfg.n_head else "multi-head"
    return f"{kind} model, batch {b}, context {ctx}, {bpe} bytes per number"


def check_step_time(decode_step_seconds):
    answers = [_call_step(decode_step_seconds, *case) for case in _STEP_CASES]
    wrong = [
        (a, case) for a, case in zip(answers, _STEP_CASES) if not _close(a, _step_right(*case))
    ]
    if not wrong:
        return f"within {_TOL:.0%} of the cost model on {len(_STEP_CASES)} steps"
    for description, options in _STEP_MISTAKES:
        if all(_close(a, _mistaken(*case, options)) for a, case in zip(answers, _STEP_CASES)):
            raise CheckFailed(description)
    if all(_close(a, _always_fp32(*case)) for a, case in zip(answers, _STEP_CASES)):
        raise CheckFailed("it ignores bytes_per_element and always counts 4 bytes (fp32)")
    got, case = wrong[0]
    raise CheckFailed(
        f"for a {_describe(case[0], case[1], case[2], case[4])}: got {got:.4g} s, expected "
        f"{_step_right(*case):.4g} s (max of bytes / bandwidth and FLOPs / peak)"
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


def check_compute_bound_batch(compute_bound_batch):
    for cfg, ctx, machine, bpe in _BATCH_CASES:
        want = _crossing(cfg, ctx, machine, bpe)
        got = compute_bound_batch(cfg, ctx, machine[0], machine[1], bpe)
        if got is not None and (isinstance(got, bool) or not isinstance(got, numbers.Integral)):
            raise CheckFailed(f"compute_bound_batch() returned {got!r}; return an int or None")
        if want is None:
            if got is not None:
                raise CheckFailed(
                    f"for a {_describe(cfg, 1, ctx, bpe)} decode never turns compute-bound up to "
                    f"batch 4096 (the KV reads grow with the batch too): expected None, got {got}"
                )
            continue
        if got is not None and abs(got - want) <= _TOL * want:
            continue
        if got == want - 1:
            raise CheckFailed(
                f"it returns the largest memory-bound batch ({got}); return the smallest "
                f"compute-bound one ({want})"
            )
        weights_only = _crossing(cfg, ctx, machine, bpe, with_kv=False)
        if got is not None and abs(got - weights_only) <= max(1, _TOL * weights_only):
            raise CheckFailed(
                f"it leaves out the KV cache's bytes ({got} instead of {want} for a "
                f"{_describe(cfg, 1, ctx, bpe)}): at long context they keep decode memory-bound"
            )
        raise CheckFailed(f"for a {_describe(cfg, 1, ctx, bpe)}: expected {want}, got {got}")
    return f"the smallest compute-bound batch (or None) in {len(_BATCH_CASES)} cases, GQA and MHA"


CHECKS = [
    ("step time", lambda fns: check_step_time(fns[0])),
    ("batch 1 floor", lambda fns: check_memory_bound_at_batch_1(fns[0])),
    ("compute-bound batch", lambda fns: check_compute_bound_batch(fns[1])),
]


def check_decode_floor(decode_step_seconds, compute_bound_batch):
    return run_checks(CHECKS, (decode_step_seconds, compute_bound_batch), "decode_step_seconds")

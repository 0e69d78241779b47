"""How fast is one generated token, with and without the KV cache, against the memory floor?

    python -m llmlab.bench                     # GPT-2-small shape, contexts 128 and 512
    python -m llmlab.bench --contexts 64 256 1024 --repeat 11
    python -m llmlab.bench --small             # a tiny model: a smoke run in seconds
    python -m llmlab.bench serve [--small]     # the serving engine: see llmlab/serve/benchmark.py

A decode step at batch 1 does about 2 FLOPs per weight it reads, far below what the processor
could compute per byte, so its speed is set by how fast memory delivers the weights. The floor
is bytes read / measured read bandwidth; the bench prints how far above that floor each cached
step runs. Random weights: speed does not depend on what the weights are.
"""

import argparse
import os
import sys
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from llmlab import cpu_linear
from llmlab.measure import (
    MachineProbe,
    decode_step_bytes,
    default_device,
    read_bandwidth,
    seed_everything,
    time_it,
)
from llmlab.model import GPTConfig, TinyGPT

GPT2_SMALL = GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768)
# The chapters' decode model: GPT-2 small's twelve layers (768 wide, 12 heads) with an 8,192-token
# vocabulary, 98 M parameters, 390 MB in fp32. Its weights are several times the last-level cache
# a core can use on the course's machines, so a decode step streams them from memory; and a
# notebook that runs it peaks under 1.2 GiB (Binder grants a session 1-2 GB), where GPT2_SMALL
# (163 M parameters: llmlab keeps the output layer separate) peaked near 2 GB.
GPT2_SMALL_8K = GPTConfig(vocab_size=8192, block_size=1024, n_layer=12, n_head=12, n_embd=768)
SMALL = GPTConfig(vocab_size=512, block_size=1024, n_layer=2, n_head=4, n_embd=64)


def cached_step(model, context: int, batch_size: int = 1):
    """A function that runs one decode step: 1 new token per sequence against a cache already
    holding `context` positions.

    The cached keys and values are left as zeros rather than computed by a prefill: a step reads
    the same bytes and does the same FLOPs whatever numbers they hold, so its time is the same,
    and setting up a long context costs nothing.
    """
    cache = model.new_kv_cache(batch_size=batch_size, max_len=context + 1)
    token = torch.randint(model.config.vocab_size, (batch_size, 1), device=model.device)

    @torch.inference_mode()
    def step():
        cache.length = context  # the same `context` positions before every timed step
        return model(token, kv_cache=cache, last_only=True)

    return step


def uncached_step(model, context: int):
    """A function that runs the same step without a cache: the whole context + 1 tokens again."""
    idx = torch.randint(model.config.vocab_size, (1, context + 1), device=model.device)

    @torch.inference_mode()
    def step():
        return model(idx, last_only=True)

    return step


@dataclass(frozen=True)
class Floors:
    """Timed steps against their roofline floors (cost.predict_seconds) on a page's final probe.

    probe: the probe every floor, and every probe-derived figure on the page, comes from.
    seconds: each step's time (re-timed after the re-probe where it was below its floor).
    ratios: measured / floor per step. verdicts: a floor_check ("above" or "at") per step that
    stays above its floor. underread: for a step still below its floor after the re-probe and the
    re-time, the sentence saying which probe read less than the step achieved (no floor_check is
    recorded for it: a floor it beat is not a floor). reprobed: whether a re-probe was needed.
    """

    probe: MachineProbe
    seconds: dict
    ratios: dict
    verdicts: dict
    underread: dict
    reprobed: bool


def _underread(name, step_cost, seconds, probe) -> str:
    """Which probe read less than this step achieved: the roof its floor sits on."""
    if step_cost.total_bytes / probe.bandwidth >= step_cost.total_flops / probe.flops:
        got = step_cost.total_bytes / seconds / 1e9
        return (
            f"{name} streamed {got:.1f} GB/s, more than the {probe.bandwidth / 1e9:.1f} GB/s "
            "that the bandwidth probe (x.sum()) read even when probed again: the probe "
            "under-read this machine's memory bandwidth (a busy moment while it ran), or some "
            "of the step's bytes came from a cache"
        )
    got = step_cost.total_flops / seconds / 1e9
    return (
        f"{name} computed {got:.0f} GFLOP/s, more than the {probe.flops / 1e9:.0f} GFLOP/s "
        "that the matmul probe read even when probed again: the probe under-read this "
        "machine's peak (a busy moment while it ran)"
    )


def hold_floors(
    steps: dict, probe: MachineProbe, *, tie: float = 0.05, reprobe_s: float = 1.0, label=str
):
    """Check timed steps against their floors so that a floor stays a floor.

    steps: {name: (StepCost, seconds measured, function running the step)}. A step faster than
    floor / (1 + tie) triggers one re-probe of the machine (probe_machine keeps the best probe)
    and a re-time of that step (time_it, its fastest call); every floor is then recomputed from
    the final probe. Returns a Floors. Only steps that stay above or at their floors get a
    verdict (llmlab.verdict.floor_check); one still below names the probe that under-read.
    label(name): the step's name as the subject of that sentence (default str).
    """
    from llmlab import cost
    from llmlab import verdict as say
    from llmlab.measure import probe_machine

    if not isinstance(steps, dict) or not steps:
        raise TypeError("steps must be a non-empty dict {name: (StepCost, seconds, function)}")
    if not isinstance(probe, MachineProbe):
        raise TypeError(f"probe must be a MachineProbe, got {type(probe).__name__}")
    for name, entry in steps.items():
        if not (isinstance(entry, tuple) and len(entry) == 3 and callable(entry[2])):
            raise TypeError(f"steps[{name!r}] must be (StepCost, seconds, function)")
        if not (isinstance(entry[1], (int, float)) and entry[1] > 0):
            raise ValueError(f"steps[{name!r}]: seconds must be positive, got {entry[1]!r}")
    if isinstance(tie, bool) or not isinstance(tie, (int, float)) or not 0 <= tie < 1:
        raise ValueError(f"tie must be a relative band in [0, 1), e.g. 0.05, got {tie!r}")

    def floor(name, p):
        return cost.predict_seconds(steps[name][0], p.bandwidth, p.flops)

    seconds = {name: float(entry[1]) for name, entry in steps.items()}
    below = [n for n in steps if seconds[n] < floor(n, probe) / (1 + tie)]
    if below:  # probe again (the best probe is kept), then time those steps again
        probe = probe_machine(seconds_budget=reprobe_s)
        for name in below:
            seconds[name] = time_it(steps[name][2], warmup=1).min_s
    ratios = {n: seconds[n] / floor(n, probe) for n in steps}
    verdicts, underread = {}, {}
    for name in steps:
        if ratios[name] < 1 / (1 + tie):
            underread[name] = _underread(label(name), steps[name][0], seconds[name], probe)
        else:
            verdicts[name] = say.floor_check(seconds[name], floor(name, probe), tie=tie)
    return Floors(probe, seconds, ratios, verdicts, underread, bool(below))


def trend_phrase(verdict, comparison, order, what: str) -> str:
    """A trend_of verdict as a clause that reads in a sentence for every kind: its own text for
    "rises", "falls" and "flat"; for "unresolved" and "mixed", that this run does not resolve
    the shape of `what`, with the last point's paired ratio to the first and its interval."""
    if verdict.kind in ("rises", "falls", "flat"):
        return verdict.text
    ends = comparison.ratio(order[0], order[-1])
    return (
        f"this run does not resolve the shape of {what} (the last point took "
        f"{ends.median:.2f} times the first, 95% interval {ends.low:.2f}-{ends.high:.2f})"
    )


def matvec_bandwidth(
    n_in: int, n_out: int, layout: str, nbytes: int, device=None, repeat: int = 7
) -> float:
    """Bytes/s of weights streamed by one-token products x (1, n_in) -> (1, n_out).

    layout "x @ W": W stored (in, out), as llmlab's Linear stores it, multiplied by PyTorch's
    default kernel; "F.linear": W stored (out, in), as torch.nn.Linear does; "oneDNN packed": the
    product llmlab's Linear runs for inference on a CPU (llmlab/cpu_linear.py); "numpy x @ W": the
    same product by numpy's own BLAS (CPU only), a second opinion on what this memory can deliver
    to a matrix-vector product. Several copies of W, about nbytes in all, are used in turn so the
    weights come from memory, as in a real model, and not from the cache of the last call.
    """
    if layout not in MATVEC_LAYOUTS:
        raise ValueError(f"layout must be one of {MATVEC_LAYOUTS}, got {layout!r}")
    shape = (n_out, n_in) if layout == "F.linear" else (n_in, n_out)
    copies = max(1, nbytes // (4 * n_in * n_out))
    weights = [torch.randn(shape, device=device) for _ in range(copies)]
    x = torch.randn(1, n_in, device=device)
    if layout == "x @ W":
        product = lambda w: x @ w  # noqa: E731
    elif layout == "oneDNN packed":
        bias = torch.zeros(n_out)
        product = lambda w: cpu_linear.linear(x, w, bias)  # noqa: E731
        for w in weights:  # pack every copy now, outside the timing
            product(w)
    elif layout == "F.linear":
        product = lambda w: F.linear(x, w)  # noqa: E731
    else:
        weights, x = [w.cpu().numpy() for w in weights], x.cpu().numpy()
        product = lambda w: x @ w  # noqa: E731

    def run():
        for w in weights:
            product(w)

    return copies * 4 * n_in * n_out / time_it(run, repeat=repeat, device=device).median_s


MATVEC_LAYOUTS = ("x @ W", "F.linear", "oneDNN packed", "numpy x @ W")


def compute_path(device) -> str:
    """What runs the model's products here: the bench's figures belong to this path."""
    if device.type != "cpu":
        return f"eager PyTorch {torch.__version__} on {device}"
    return (
        f"eager PyTorch {torch.__version__}, CPU kernels "
        f"{torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads; "
        f"Linear's products: {cpu_linear.describe(device)}"
    )


def cpu_cores() -> int:
    """Cores this process may run on (a container may get fewer than the machine has)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["serve"]:
        return serve(argv[1:])
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--contexts",
        type=int,
        nargs="+",
        default=[128, 512],
        help="tokens already in the sequence when the step runs",
    )
    parser.add_argument(
        "--repeat", type=int, default=7, help="timed runs per figure (the median is shown)"
    )
    parser.add_argument(
        "--small", action="store_true", help="a tiny model and buffer: a smoke run in seconds"
    )
    parser.add_argument(
        "--linear",
        choices=cpu_linear.PATHS,
        default=cpu_linear.get_path(),
        help="the kernel for Linear's products on a CPU (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    config = SMALL if args.small else GPT2_SMALL
    for context in args.contexts:
        if not 1 <= context < config.block_size:
            parser.error(f"--contexts must be in [1, {config.block_size - 1}], got {context}")
    if args.repeat < 1:
        parser.error(f"--repeat must be >= 1, got {args.repeat}")
    try:
        cpu_linear.set_path(args.linear)
    except ValueError as error:
        parser.error(f"--linear: {error}")

    device = default_device()
    if device.type == "cpu":  # a thread per core: one core alone cannot pull the full bandwidth
        torch.set_num_threads(min(cpu_cores(), torch.get_num_threads()))
    seed_everything(0)
    model = TinyGPT(config).to(device).eval()
    threads = f", {torch.get_num_threads()} threads" if device.type == "cpu" else ""
    print(f"model: {model.num_params() / 1e6:.1f}M parameters, fp32, on {device}{threads}")

    buffer = (16 if args.small else 512) * 2**20  # must dwarf the caches to measure memory
    bandwidth = read_bandwidth(buffer, device=device)
    print(
        f"read bandwidth: {bandwidth / 1e9:.1f} GB/s (x.sum() over {buffer // 2**20} MiB of fp32)"
    )
    print(f"path: {compute_path(device)}")
    C, V = config.n_embd, config.vocab_size
    candidates = MATVEC_LAYOUTS if device.type == "cpu" else MATVEC_LAYOUTS[:2]
    if not cpu_linear.ONEDNN_AVAILABLE:
        candidates = [lay for lay in candidates if lay != "oneDNN packed"]
    with torch.inference_mode():
        layouts = [
            (lay, matvec_bandwidth(C, V, lay, buffer, device, args.repeat)) for lay in candidates
        ]
    rates = ", ".join(f"{lay} {rate / 1e9:.1f} GB/s" for lay, rate in layouts)
    print(f"one-token product with the lm_head's shape ({C}x{V}), weights from memory: {rates}")

    print(
        f"{'context':>7} {'cached ms':>10} {'uncached ms':>12} {'speedup':>8} "
        f"{'MB/step':>8} {'floor ms':>9} {'x floor':>8}"
    )
    spread = 1.0  # slowest / fastest repeat of any figure: a busy machine shows up here
    for context in args.contexts:
        cached = time_it(cached_step(model, context), repeat=args.repeat, device=device)
        uncached = time_it(uncached_step(model, context), repeat=args.repeat, device=device)
        spread = max(spread, cached.max_s / cached.min_s, uncached.max_s / uncached.min_s)
        nbytes = decode_step_bytes(model, context)
        floor_s = nbytes / bandwidth
        speedup = uncached.median_s / cached.median_s
        print(
            f"{context:>7} {cached.ms:>10.2f} {uncached.ms:>12.2f} {speedup:>7.1f}x "
            f"{nbytes / 1e6:>8.1f} {floor_s * 1e3:>9.2f} {cached.median_s / floor_s:>7.2f}x"
        )
    print("cached: 1 new token against a cache of `context`; uncached: context + 1 tokens afresh;")
    print("floor: bytes a cached step reads (all weights + KV cache) / read bandwidth")
    if device.type == "cpu" and cpu_linear.ONEDNN_AVAILABLE:
        # The same step through the other kernel: what the kernel choice is worth here.
        main_path = cpu_linear.get_path()
        other = "torch" if main_path == "onednn" else "onednn"
        with cpu_linear.use_path(other):
            alt = time_it(cached_step(model, context), repeat=args.repeat, device=device)
        names = {"torch": "PyTorch's default kernel (x @ W)", "onednn": "oneDNN, packed weights"}
        print(
            f"the cached step at context {context} with Linear's products by {names[other]}: "
            f"{alt.ms:.2f} ms ({alt.median_s / floor_s:.2f}x the floor, "
            f"{alt.median_s / cached.median_s:.2f}x the step with {names[main_path]})"
        )
    if spread > 2:
        print(f"warning: repeats of one figure differed {spread:.1f}x; something else is using the")
        print("machine, so these numbers are unreliable: rerun when it is idle")


def serve(argv):
    """The serving benchmark (llmlab.serve.benchmark), on the same model and thread settings."""
    from llmlab.serve import benchmark

    config = SMALL if "--small" in argv else GPT2_SMALL
    device = default_device()
    if device.type == "cpu":
        torch.set_num_threads(min(cpu_cores(), torch.get_num_threads()))
    seed_everything(0)
    model = TinyGPT(config).to(device).eval()
    threads = f", {torch.get_num_threads()} threads" if device.type == "cpu" else ""
    print(f"model: {model.num_params() / 1e6:.1f}M parameters, fp32, on {device}{threads}")
    print(f"path: {compute_path(device)}")
    benchmark.main(argv, model, config, device, repeat=7)


if __name__ == "__main__":
    main()

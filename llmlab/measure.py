"""Measurement tools: every number a chapter shows comes from one of these, run on the reader's machine.

The timing protocol, the same for every timed cell in the book:
- warm up first (allocation, kernel selection and caches are paid before the clock starts);
- repeat, and keep the **fastest** run as how fast the code can go: noise (another program, a
  frequency change) only ever slows a run down, so the minimum is the stable figure;
- report the **median** beside it and their gap, `Timing.noise`, as this run's noise: verdicts
  (llmlab.verdict) call two figures different only when they differ by more than that;
- repeat until the fastest runs agree (adaptive), not a fixed worst-case count;
- time the things being compared **interleaved** (A B A B ...), so drift hits both alike
  (`compare`);
- probe the machine's bandwidth and FLOP/s again through a page and keep the best
  (`probe_machine`), so a floor computed from them stays a floor.
"""

import os
import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from llmlab._memory import release_free_memory
from llmlab.kv_cache import kv_cache_bytes


def default_device() -> torch.device:
    """The GPU when there is one, else the CPU. Chapters call this, never assume a device."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int):
    """Seed every random number generator a chapter may touch, so a rerun shows the same numbers."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    random.seed(seed)
    np.random.seed(seed % 2**32)  # numpy only takes 32-bit seeds
    torch.manual_seed(seed)  # also seeds every CUDA device


# Noise never reads below this: two figures within 5% are a tie even on a quiet machine, where
# repeats of a step still differ by a few per cent (turbo frequency, cache state).
MIN_NOISE = 0.05


@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds of each timed call, and what they say together."""

    times_s: tuple[float, ...]

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)

    @property
    def min_s(self) -> float:
        """The fastest call: how fast the code can go (noise only slows a call down)."""
        return min(self.times_s)

    @property
    def max_s(self) -> float:
        return max(self.times_s)

    @property
    def ms(self) -> float:
        """Median in milliseconds."""
        return self.median_s * 1e3

    @property
    def best_ms(self) -> float:
        """The fastest call in milliseconds: the figure the chapters print and compare."""
        return self.min_s * 1e3

    @property
    def noise(self) -> float:
        """This measurement's relative noise: (median - fastest) / fastest, at least MIN_NOISE."""
        return max(MIN_NOISE, (self.median_s - self.min_s) / self.min_s)

    def __str__(self):
        return f"{self.best_ms:.2f} ms (median {self.ms:.2f}, noise {self.noise:.0%})"


def _sync(device):
    # GPU calls return before the work is done; without a sync we would time the launch, not the work.
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _check_count(name, value, lowest):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < lowest:
        raise ValueError(f"{name} must be >= {lowest}, got {value}")


def _settled(times: list[float], agree: float) -> bool:
    """True once the three fastest calls agree within `agree`: the minimum has been found."""
    if len(times) < 3:
        return False
    a, _, c = sorted(times)[:3]
    return c <= a * (1 + agree)


def _timed_call(fn, device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def time_it(
    fn,
    *,
    warmup: int = 2,
    repeat: int | None = None,
    device=None,
    budget_s: float = 2.0,
    max_repeat: int = 30,
) -> Timing:
    """Call fn() warmup times untimed, then time it; returns a Timing.

    repeat: a fixed number of timed calls; None (the default) repeats until the three fastest
    calls agree within 2% (at least 3 calls, at most max_repeat), or until about budget_s seconds
    of timed calls, so a quiet machine stops early and a noisy one keeps looking for the minimum.
    device: where fn's work runs (default: default_device()); on CUDA each call is bracketed by
    synchronisations so the clock sees the finished work.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    _check_count("warmup", warmup, 0)
    if repeat is not None:
        _check_count("repeat", repeat, 1)
    _check_count("max_repeat", max_repeat, 3)
    if isinstance(budget_s, bool) or not isinstance(budget_s, (int, float)) or budget_s <= 0:
        raise ValueError(f"budget_s must be a positive number of seconds, got {budget_s!r}")
    device = default_device() if device is None else torch.device(device)
    for _ in range(warmup):
        fn()
    times = []
    if repeat is not None:
        times = [_timed_call(fn, device) for _ in range(repeat)]
    else:
        while len(times) < max_repeat:
            times.append(_timed_call(fn, device))
            if _settled(times, 0.02) or (len(times) >= 3 and sum(times) > budget_s):
                break
    release_free_memory()  # after the clock: freed buffers go back to the system (_memory.py)
    return Timing(tuple(times))


def compare(
    fns: dict, *, warmup: int = 1, repeat: int | None = None, device=None, budget_s: float = 4.0
) -> dict:
    """Time several functions interleaved, A B C A B C ..., so drift hits them alike.

    fns: {name: function}. Returns {name: Timing}. repeat: a fixed number of rounds; None repeats
    rounds until every function's three fastest calls agree within 2% (at least 3 rounds, at most
    30) or about budget_s seconds have passed. The order within a round rotates, so no function
    always runs first (after an idle moment) or last.
    """
    if not isinstance(fns, dict) or not fns or not all(callable(f) for f in fns.values()):
        raise TypeError("fns must be a non-empty dict of {name: function}")
    _check_count("warmup", warmup, 0)
    if repeat is not None:
        _check_count("repeat", repeat, 1)
    device = default_device() if device is None else torch.device(device)
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times = {name: [] for name in names}
    start = time.perf_counter()
    for round_ in range(repeat or 30):
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for name in order:
            times[name].append(_timed_call(fns[name], device))
        if repeat is None and round_ >= 2:
            settled = all(_settled(t, 0.02) for t in times.values())
            if settled or time.perf_counter() - start > budget_s:
                break
    release_free_memory()
    return {name: Timing(tuple(t)) for name, t in times.items()}


def _free_bytes(device: torch.device) -> int | None:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:  # Linux: free memory without extra dependencies
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


# The CPU probe's buffer: 256 MiB, past where reads leave the cache on the course's machines
# (cache_sweep), and small enough to sit beside a model in a notebook's 1.2 GiB.
PROBE_BYTES = 256 * 2**20


def read_bandwidth(nbytes: int = PROBE_BYTES, device=None, repeat: int = 5) -> float:
    """Memory read bandwidth in bytes/s: time x.sum() over an fp32 tensor of about nbytes.

    A sum reads every element once and does almost no arithmetic, so its speed is the rate at
    which memory delivers bytes: the same limit a decode step meets when it streams the weights.
    The tensor must be much larger than the CPU's caches (hundreds of MiB) to measure memory and
    not cache; it is capped at a quarter of the free memory.
    """
    if isinstance(nbytes, bool) or not isinstance(nbytes, int):
        raise TypeError(f"nbytes must be an int, got {type(nbytes).__name__}")
    if nbytes < 4:
        raise ValueError(f"nbytes must be >= 4 (one fp32 element), got {nbytes}")
    device = default_device() if device is None else torch.device(device)
    if free := _free_bytes(device):
        nbytes = min(nbytes, max(4, free // 4))
    x = torch.ones(nbytes // 4, dtype=torch.float32, device=device)  # ones: touch every page now
    t = time_it(x.sum, warmup=1, repeat=repeat, device=device)
    # The fastest run, not the median: the floor should be what the hardware can do at best.
    return x.nelement() * x.element_size() / t.min_s


def matmul_flops(n: int = 2048, device=None, dtype=torch.float32, repeat: int = 5) -> float:
    """Arithmetic throughput in FLOP/s of an (n, n) @ (n, n) matmul: n^3 multiply-adds = 2 n^3 FLOPs."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    device = default_device() if device is None else torch.device(device)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    t = time_it(lambda: a @ b, warmup=1, repeat=repeat, device=device)
    return 2 * n**3 / t.min_s


def decode_step_bytes(model, context: int, batch_size: int = 1) -> int:
    """Bytes one cached decode step must read: every weight matrix once, plus the KV cache.

    All parameters except the two embedding tables are read in full; of those, the step reads
    only the row of its token (wte) and of its position (wpe). The cache holds context + 1
    positions by the time attention runs (the new token's k, v are written first).
    """
    c = model.config
    embeddings = {id(model.wte.weight), id(model.wpe.weight)}
    weights = sum(
        p.nelement() * p.element_size() for p in model.parameters() if id(p) not in embeddings
    )
    rows = batch_size * (model.wte.weight[0].nbytes + model.wpe.weight[0].nbytes)
    cache = kv_cache_bytes(
        c.n_layer, c.n_kv_head, c.head_dim, context + 1, batch_size, model.wte.weight.element_size()
    )
    return weights + rows + cache


@dataclass(frozen=True)
class MachineProbe:
    """What one machine can do: the two numbers the roofline model needs, and their ratio."""

    device: str  # e.g. "cpu (2 threads)" or "cuda: NVIDIA H100"
    bandwidth: float  # memory read bandwidth, bytes/s
    flops: float  # fp32 matmul throughput, FLOP/s

    @property
    def ridge(self) -> float:
        """FLOP per byte at which a step turns from memory-bound to compute-bound."""
        return self.flops / self.bandwidth

    def __str__(self):
        # Two short lines, so the printout fits a book page's column.
        return (
            f"{self.device}: read bandwidth {self.bandwidth / 1e9:.1f} GB/s, "
            f"fp32 matmul {self.flops / 1e9:.0f} GFLOP/s\n"
            f"ridge point {self.ridge:.1f} FLOP/byte"
        )


# The best probe seen so far in this process, per device: a page probes again as it goes, and
# keeps the best, so a floor computed from it can only get lower (truer), never higher.
_best_probe: dict[str, MachineProbe] = {}


def probe_machine(device=None, seconds_budget: float = 3.0, keep_best: bool = True) -> MachineProbe:
    """Measure this machine's read bandwidth and fp32 matmul FLOP/s, the best of several rounds.

    Noise (another process, a frequency change) only ever makes a round slower, so the fastest
    round is the best estimate of what the hardware can do. Rounds repeat until about
    seconds_budget has passed (at least two rounds, at most ten). keep_best: also count every
    earlier probe of this device in this process (call it again through a page: a busy moment
    during the first probe then no longer leaves a floor too high).
    """
    if isinstance(seconds_budget, bool) or not isinstance(seconds_budget, (int, float)):
        raise TypeError(f"seconds_budget must be a number, got {type(seconds_budget).__name__}")
    if not 0 < seconds_budget <= 60:
        raise ValueError(f"seconds_budget must be in (0, 60] seconds, got {seconds_budget}")
    device = default_device() if device is None else torch.device(device)
    if device.type == "cuda":
        # Large enough to swamp launch overheads and the GPU's caches (tens of MiB of L2).
        nbytes, n = 2 * 2**30, 8192
        name = f"cuda: {torch.cuda.get_device_name(device)}"
    else:
        nbytes, n = PROBE_BYTES, 1024
        name = f"{device.type} ({torch.get_num_threads()} threads)"
    bandwidths, flops = [], []
    start = time.perf_counter()
    while len(bandwidths) < 10 and (
        len(bandwidths) < 2 or time.perf_counter() - start < seconds_budget
    ):
        bandwidths.append(read_bandwidth(nbytes, device=device, repeat=3))
        flops.append(matmul_flops(n, device=device, repeat=3))
    probe = MachineProbe(name, max(bandwidths), max(flops))
    if keep_best:
        if (best := _best_probe.get(name)) is not None:
            probe = MachineProbe(
                name, max(probe.bandwidth, best.bandwidth), max(probe.flops, best.flops)
            )
        _best_probe[name] = probe
    return probe


def last_level_cache_bytes() -> int | None:
    """The largest CPU cache this machine reports (Linux sysfs), in bytes; None if unknown.

    On a cloud machine this is the whole chip's cache, shared with every other core and tenant:
    a 2-core share of it holds far less. `cache_sweep` measures where reads leave the cache.
    """
    sizes = []
    for entry in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        text = entry.read_text().strip()
        unit = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:].upper(), 1)
        try:
            sizes.append(int(text.rstrip("KMGkmg")) * unit)
        except ValueError:
            continue
    return max(sizes) if sizes else None


def cache_sweep(sizes_mib=(4, 16, 64, 256), device=None) -> dict[int, float]:
    """Read bandwidth (bytes/s) of x.sum() over buffers of each size: fast while the buffer fits
    in cache, memory's speed once it does not. {size in MiB: bytes/s}."""
    if not sizes_mib or not all(isinstance(m, int) and m >= 1 for m in sizes_mib):
        raise ValueError(f"sizes_mib must be positive whole MiB, got {sizes_mib!r}")
    device = default_device() if device is None else torch.device(device)
    return {m: read_bandwidth(m * 2**20, device=device, repeat=5) for m in sizes_mib}


@dataclass(frozen=True)
class DecodeShare:
    """How close a batch-1 decode step comes to streaming at the probe's bandwidth."""

    timing: Timing  # the step
    step_bytes: int  # what the step must read (decode_step_bytes)
    bandwidth: float  # the probe's read bandwidth, bytes/s

    @property
    def achieved(self) -> float:
        """Bytes/s the step streamed: its bytes over its fastest time."""
        return self.step_bytes / self.timing.min_s

    @property
    def share(self) -> float:
        """achieved / probe bandwidth (1.0 = the step ran at its floor)."""
        return self.achieved / self.bandwidth

    @property
    def floor_s(self) -> float:
        return self.step_bytes / self.bandwidth


def decode_share(model, probe: MachineProbe, context: int = 8) -> DecodeShare:
    """Time one cached batch-1 decode step after `context` tokens and compare its streaming rate
    with the probe's bandwidth. Every page that reports "decode's share of bandwidth" calls this,
    so the figure means the same thing everywhere (pages differ only in the model they pass)."""
    _check_count("context", context, 0)
    if not isinstance(probe, MachineProbe):
        raise TypeError(f"probe must be a MachineProbe, got {type(probe).__name__}")
    device = model.device
    # Cached keys and values left as zeros: the step reads the same bytes whatever they hold.
    cache = model.new_kv_cache(batch_size=1, max_len=context + 1)
    token = torch.zeros(1, 1, dtype=torch.long, device=device)

    @torch.inference_mode()
    def step():
        cache.length = context
        return model(token, kv_cache=cache, last_only=True)

    timing = time_it(step, warmup=2, device=device)
    return DecodeShare(timing, decode_step_bytes(model, context), probe.bandwidth)

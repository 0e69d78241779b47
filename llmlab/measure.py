"""Measurement tools: every number a chapter shows comes from one of these, run on the reader's machine.

Timings are noisy (other processes, frequency scaling, caches), so time_it reports the median of
several runs after a warm-up: the median shrugs off the odd slow run, the warm-up pays one-time
costs (allocation, kernel selection) before the clock starts.
"""

import os
import random
import statistics
import time
from dataclasses import dataclass

import numpy as np
import torch

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


@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds of each timed call."""

    times_s: tuple[float, ...]

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)

    @property
    def min_s(self) -> float:
        return min(self.times_s)

    @property
    def max_s(self) -> float:
        return max(self.times_s)

    @property
    def ms(self) -> float:
        """Median in milliseconds, the unit the chapters print."""
        return self.median_s * 1e3


def _sync(device):
    # GPU calls return before the work is done; without a sync we would time the launch, not the work.
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_it(fn, *, warmup: int = 2, repeat: int = 7, device=None) -> Timing:
    """Call fn() warmup times untimed, then repeat times timed; returns a Timing.

    device: where fn's work runs (default: default_device()); on CUDA each call is bracketed by
    synchronisations so the clock sees the finished work.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    for name, value, lowest in (("warmup", warmup, 0), ("repeat", repeat, 1)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
        if value < lowest:
            raise ValueError(f"{name} must be >= {lowest}, got {value}")
    device = default_device() if device is None else torch.device(device)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return Timing(tuple(times))


def _free_bytes(device: torch.device) -> int | None:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:  # Linux: free memory without extra dependencies
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def read_bandwidth(nbytes: int = 512 * 2**20, device=None, repeat: int = 5) -> float:
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


def probe_machine(device=None, seconds_budget: float = 3.0) -> MachineProbe:
    """Measure this machine's read bandwidth and fp32 matmul FLOP/s, the best of several rounds.

    Noise (another process, a frequency change) only ever makes a round slower, so the fastest
    round is the best estimate of what the hardware can do. Rounds repeat until about
    seconds_budget has passed (at least two rounds, at most ten).
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
        nbytes, n = 256 * 2**20, 1024
        name = f"{device.type} ({torch.get_num_threads()} threads)"
    bandwidths, flops = [], []
    start = time.perf_counter()
    while len(bandwidths) < 10 and (
        len(bandwidths) < 2 or time.perf_counter() - start < seconds_budget
    ):
        bandwidths.append(read_bandwidth(nbytes, device=device, repeat=3))
        flops.append(matmul_flops(n, device=device, repeat=3))
    return MachineProbe(name, max(bandwidths), max(flops))

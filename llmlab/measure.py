"""Measurement tools: every number a chapter shows comes from one of these, run on the reader's machine.

The timing protocol, the same for every timed cell in the book:
- warm up first (allocation, kernel selection and caches are paid before the clock starts);
- repeat, and keep the **fastest** run as how fast the code can go: noise (another program, a
  frequency change) only ever slows a run down, so the minimum is the stable figure;
- report the **median** beside it and their gap, `Timing.noise`, as the spread of single runs;
- repeat until the fastest runs agree (adaptive), not a fixed worst-case count;
- time the things being compared **interleaved** in rounds (A B, B A, ...), so drift hits both
  alike, and compare them as **paired ratios** with an interval (`compare`, `Comparison.ratio`):
  keep measuring until the interval clears the tie band or the budget is spent, and say "not
  resolved" when it did not (llmlab.verdict.compare_ratio);
- on a machine where other programs hold cores, give torch only the free ones (`use_free_cores`);
- probe the machine's bandwidth and FLOP/s again through a page and keep the best
  (`probe_machine`), so a floor computed from them stays a floor.
"""

import math
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


# Two times within this band of each other are "the same time" (a practical tie, as criterion.rs's
# noise threshold): a verdict calls them a tie only when the whole interval of their ratio lies
# inside it, and a direction only when the whole interval lies outside.
TIE = 0.05

# The confidence of the interval on a ratio. Its distribution-free form (order statistics of the
# per-round ratios) needs at least 6 rounds to reach 95%: fewer rounds can never resolve.
CONFIDENCE = 0.95


def _median_rank(n: int, confidence: float) -> int | None:
    """k such that the k-th smallest and k-th largest of n samples bracket their median with at
    least `confidence` (two-sided, from the binomial(n, 1/2) law, no assumption about the
    distribution); None if n is too small for that confidence."""
    alpha = 1 - confidence
    tail, k = 0.0, 0
    # P(fewer than k+1 samples below the median) = sum_{i<=k} C(n, i) / 2^n
    while True:
        tail += math.comb(n, k) / 2**n
        if 2 * tail > alpha:
            return k if k >= 1 else None
        k += 1


@dataclass(frozen=True)
class Ratio:
    """How many times as long `b` takes as `a`, from paired rounds: an interval, not one number.

    ratios: b_i / a_i of each round (the two were timed in the same round, so drift in the
    machine hits both). median: the central ratio. low, high: a distribution-free interval on the
    median ratio at `confidence` (order statistics; low = 0 and high = inf when there were too
    few rounds for that confidence: such a ratio resolves nothing).
    """

    a: str
    b: str
    ratios: tuple[float, ...]
    confidence: float = CONFIDENCE

    @property
    def n(self) -> int:
        return len(self.ratios)

    @property
    def median(self) -> float:
        return statistics.median(self.ratios)

    @property
    def interval(self) -> tuple[float, float]:
        k = _median_rank(self.n, self.confidence)
        if k is None:
            return 0.0, math.inf
        r = sorted(self.ratios)
        return r[k - 1], r[self.n - k]

    @property
    def low(self) -> float:
        return self.interval[0]

    @property
    def high(self) -> float:
        return self.interval[1]

    def resolved(self, tie: float = TIE) -> bool:
        """True when the interval lies wholly outside the tie band (a direction) or wholly inside
        it (a tie): more rounds would not change what a verdict says."""
        low, high = self.interval
        return low > 1 + tie or high < 1 / (1 + tie) or (low >= 1 / (1 + tie) and high <= 1 + tie)

    def __str__(self):
        low, high = self.interval
        return (
            f"{self.b}/{self.a}: {self.median:.2f} ({self.confidence:.0%} interval "
            f"{low:.2f}-{high:.2f}, {self.n} rounds)"
        )


def ratio_of_samples(
    a_samples, b_samples, *, a: str = "a", b: str = "b", confidence: float = CONFIDENCE,
    resamples: int = 2000, seed: int = 0,
) -> Ratio:  # fmt: skip
    """The ratio of two medians from INDEPENDENT samples (e.g. throughput over repeated seeds,
    latencies of two halves of a run): a seeded bootstrap, so the same data give the same interval
    on any machine. Returned as a Ratio whose `ratios` are the bootstrap replicates of
    median(b) / median(a); its interval is their central `confidence` share."""
    a_arr, b_arr = np.asarray(a_samples, float), np.asarray(b_samples, float)
    for name, arr in (("a_samples", a_arr), ("b_samples", b_arr)):
        if arr.ndim != 1 or arr.size < 2:
            raise ValueError(f"{name} must be a 1-D sequence of at least 2 values, got {arr.shape}")
        if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
            raise ValueError(f"{name} must hold positive finite numbers")
    rng = np.random.default_rng(seed)
    med_a = np.median(rng.choice(a_arr, (resamples, a_arr.size)), axis=1)
    med_b = np.median(rng.choice(b_arr, (resamples, b_arr.size)), axis=1)
    return _BootRatio(a, b, tuple(float(x) for x in med_b / med_a), confidence)


@dataclass(frozen=True)
class _BootRatio(Ratio):
    """A Ratio whose interval is the central share of bootstrap replicates (see ratio_of_samples)."""

    @property
    def interval(self) -> tuple[float, float]:
        q = (1 - self.confidence) / 2
        low, high = np.quantile(np.asarray(self.ratios), [q, 1 - q])
        return float(low), float(high)

    def __str__(self):
        low, high = self.interval
        return (
            f"{self.b}/{self.a}: {self.median:.2f} ({self.confidence:.0%} bootstrap interval "
            f"{low:.2f}-{high:.2f})"
        )


class Comparison(dict):
    """{name: Timing} from interleaved rounds, plus each round's figure per name, so that any two
    names compare as paired ratios: `comparison.ratio("cached", "uncached")`."""

    def __init__(self, timings: dict, rounds: dict):
        super().__init__(timings)
        self.rounds = {name: tuple(r) for name, r in rounds.items()}

    def __setitem__(self, name, timing):
        # A name timed again on its own is no longer paired with the others' rounds.
        super().__setitem__(name, timing)
        self.rounds.pop(name, None)

    def ratio(self, a, b, confidence: float = CONFIDENCE) -> Ratio:
        """How many times as long b takes as a, round by round (b_i / a_i)."""
        for name in (a, b):
            if name not in self.rounds:
                known = ", ".join(repr(n) for n in self.rounds)
                raise KeyError(f"{name!r} has no paired rounds here; paired names: {known}")
        pairs = zip(self.rounds[a], self.rounds[b])
        return Ratio(str(a), str(b), tuple(tb / ta for ta, tb in pairs), confidence)


def compare(
    fns: dict,
    *,
    warmup: int = 1,
    repeat: int | None = None,
    device=None,
    budget_s: float = 4.0,
    tie: float = TIE,
    pairs=None,
    min_rounds: int = 6,
    max_rounds: int = 40,
    min_calls: int = 5,
) -> Comparison:
    """Time several functions interleaved, in rounds (A B C, B C A, ...), so drift hits them alike,
    and keep measuring until their paired ratios resolve.

    fns: {name: function}. Returns a Comparison: {name: Timing} plus each round's figure per name
    (`.ratio(a, b)` gives the paired ratio with its interval). In each round a function runs
    `reps` times and its round figure is the fastest of them, where reps gives the quicker
    functions about as much time as the slowest (so a 25 ms step beside a 2.7 s one gets its own
    samples, at least `min_calls` per round at most): no arm starves because its partner is long.
    repeat: a fixed number of rounds. None: at least `min_rounds` rounds (6 is the fewest for a
    95% interval), then until every pair in `pairs` (default: every pair) is resolved against the
    tie band (Ratio.resolved), or budget_s seconds have passed, or max_rounds.
    """
    if not isinstance(fns, dict) or not fns or not all(callable(f) for f in fns.values()):
        raise TypeError("fns must be a non-empty dict of {name: function}")
    _check_count("warmup", warmup, 0)
    if repeat is not None:
        _check_count("repeat", repeat, 1)
    _check_count("min_rounds", min_rounds, 1)
    _check_count("max_rounds", max_rounds, min_rounds)
    _check_count("min_calls", min_calls, 1)
    if isinstance(budget_s, bool) or not isinstance(budget_s, (int, float)) or budget_s <= 0:
        raise ValueError(f"budget_s must be a positive number of seconds, got {budget_s!r}")
    if isinstance(tie, bool) or not isinstance(tie, (int, float)) or not 0 <= tie < 1:
        raise ValueError(f"tie must be a relative band in [0, 1), e.g. 0.05, got {tie!r}")
    device = default_device() if device is None else torch.device(device)
    names = list(fns)
    if pairs is None:
        pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    for pair in pairs:
        if len(pair) != 2 or not all(name in fns for name in pair):
            raise ValueError(f"pairs must name two of {names}, got {pair!r}")
    # Warm-up doubles as calibration: how long one call of each takes.
    warm = {name: None for name in names}
    for _ in range(max(warmup, 1)):
        for name in names:
            warm[name] = _timed_call(fns[name], device)
    slowest = max(warm.values())
    reps = {n: max(1, min(min_calls, round(slowest / max(warm[n], 1e-9)))) for n in names}
    times = {name: [] for name in names}
    rounds = {name: [] for name in names}
    start = time.perf_counter()
    for round_ in range(repeat or max_rounds):
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for name in order:
            calls = [_timed_call(fns[name], device) for _ in range(reps[name])]
            times[name] += calls
            rounds[name].append(min(calls))
        if repeat is None and round_ + 1 >= min_rounds:
            result = Comparison({}, rounds)
            if all(result.ratio(a, b).resolved(tie) for a, b in pairs):
                break
            if time.perf_counter() - start > budget_s:
                break
    release_free_memory()
    return Comparison({name: Timing(tuple(t)) for name, t in times.items()}, rounds)


# torch's own choice of threads (one per physical core), read before anything here changes it.
_TORCH_THREADS = torch.get_num_threads()


def cpu_load(seconds: float = 0.25) -> tuple[float, int]:
    """(busy cores, cores) over the next `seconds`, from /proc/stat (Linux); (0.0, cores) where
    that cannot be read. Busy counts every process, this one's idle wait excluded."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

    def read():
        with open("/proc/stat") as f:
            fields = [float(x) for x in f.readline().split()[1:]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait

    try:
        total0, idle0 = read()
        time.sleep(seconds)
        total1, idle1 = read()
    except (OSError, ValueError, IndexError):
        return 0.0, cores or 1
    ncpu = os.cpu_count() or 1
    busy_share = 1 - (idle1 - idle0) / max(total1 - total0, 1e-9)
    return busy_share * ncpu, cores or 1


@dataclass(frozen=True)
class CoreChoice:
    threads: int  # torch threads chosen
    cores: int  # cores this process may use
    busy: float  # cores' worth of other work seen when choosing

    @property
    def machine_busy(self) -> bool:
        return self.busy >= 0.5

    def __str__(self):
        if not self.machine_busy:
            return f"{self.threads} threads on {self.cores} cores (the machine was quiet)"
        return (
            f"{self.threads} thread{'s' if self.threads > 1 else ''} on {self.cores} cores: other "
            f"programs kept {self.busy:.1f} cores busy, so timings here are slower than on a "
            "quiet machine"
        )


def use_free_cores(seconds: float = 0.25) -> CoreChoice:
    """Give torch one thread per core that other programs leave free (at least one).

    Why: torch's OpenMP threads wait for each other at every step, and by default they spin while
    waiting. When another program holds a core, the thread that lost it makes the others spin for
    whole scheduler slices, and a decode step can take ten times as long. Threads only on free
    cores keep a busy machine slower, never that slow. Call it at the top of a timed page (on a
    GPU it changes nothing that matters)."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds <= 5:
        raise ValueError(f"seconds must be in (0, 5], got {seconds!r}")
    busy, cores = cpu_load(seconds)
    free = max(1, min(cores, math.floor(cores - busy + 0.5)))
    threads = max(1, min(free, _TORCH_THREADS))
    torch.set_num_threads(threads)
    return CoreChoice(threads, cores, busy)


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

"""Serving metrics from the engine's timelines, and load to measure them with.

The latency of a streamed answer is two numbers (chapter 9):

    TTFT = first_token_time - arrival                 time to first token, queueing included
    TPOT = (last_token_time - first_token_time) / (n - 1)   time per output token after the first

so that the end-to-end latency is exactly TTFT + TPOT x (n - 1). TPOT needs two tokens: a
request that produced one has a TTFT and no TPOT. A request that failed (error set, no tokens)
has neither and is counted apart.

Percentiles interpolate linearly between the two nearest ranks (numpy.percentile's default,
Excel's PERCENTILE.INC): P50 of [1, 2, 3, 4] is 2.5, P95 of [1, ..., 20] is 19.05. Nearest-rank
(the smallest value with at least q% of values at or below it) is the other common convention:
P95 of [1, ..., 20] is 19 there. Both are right; say which one a number used.

Load: `poisson_arrivals` makes the arrival times of a Poisson process (independent users), and
`make_requests` a seeded workload of prompts and answer lengths for the engine.
"""

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from llmlab.serve import Engine, Request


def _int_at_least(name, value, low):
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")


def _number(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return float(value)


def percentile(values, q: float) -> float:
    """The q-th percentile (0 <= q <= 100) of values, interpolating linearly between ranks."""
    q = _number("q", q)
    if not 0 <= q <= 100:
        raise ValueError(f"q must be a percentage in [0, 100], got {q}")
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(f"values must be a sequence of numbers, got {type(values).__name__}")
    xs = sorted(_number("values[i]", v) for v in values)
    if not xs:
        raise ValueError("values is empty: a percentile needs at least one value")
    rank = q / 100 * (len(xs) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(xs) - 1)
    return xs[low] + (rank - low) * (xs[high] - xs[low])


def nearest_rank_percentile(values, q: float) -> float:
    """The q-th percentile by nearest rank: the smallest value with >= q% of values at or below."""
    q = _number("q", q)
    if not 0 <= q <= 100:
        raise ValueError(f"q must be a percentage in [0, 100], got {q}")
    xs = sorted(_number("values[i]", v) for v in values)
    if not xs:
        raise ValueError("values is empty: a percentile needs at least one value")
    return xs[max(1, math.ceil(q / 100 * len(xs))) - 1]


def slowest_ranks(n: int, q: float) -> tuple[int, int]:
    """Between which values, counted from the slowest (1 = the slowest), `percentile` puts the
    q-th percentile of n values: (k, k - 1) when it interpolates between the k-th and the
    (k - 1)-th slowest, (k, k) when it lands on the k-th exactly. P95 of 48 values: (4, 3), so
    it lies between the 4th- and 3rd-slowest and is never among the slowest 3."""
    _int_at_least("n", n, 1)
    q = _number("q", q)
    if not 0 <= q <= 100:
        raise ValueError(f"q must be a percentage in [0, 100], got {q}")
    rank = q / 100 * (n - 1)  # 0-based position in ascending order, as percentile() uses
    low = math.floor(rank)
    if rank == low:
        return n - low, n - low
    return n - low, n - low - 1


# ---- one request ----------------------------------------------------------------------------------
def _times(result):
    """(arrival, prefill_start, token_times) of an engine Result or a dict with those keys."""
    if isinstance(result, dict):
        missing = [k for k in ("arrival", "token_times") if k not in result]
        if missing:
            raise ValueError(
                f"a timeline dict needs the keys arrival and token_times; no {missing}"
            )
        return result["arrival"], result.get("prefill_start"), list(result["token_times"])
    if not all(hasattr(result, k) for k in ("arrival", "token_times", "prefill_start")):
        raise TypeError(
            f"expected an engine Result or a timeline dict, got {type(result).__name__}"
        )
    return result.arrival, result.prefill_start, list(result.token_times)


def ttft(result) -> float | None:
    """Time to first token, from arrival (not from when the engine started on it); None if none."""
    arrival, _, times = _times(result)
    return times[0] - arrival if times else None


def tpot(result) -> float | None:
    """Mean time per output token after the first: (last - first) / (n - 1); None below 2 tokens."""
    _, _, times = _times(result)
    return (times[-1] - times[0]) / (len(times) - 1) if len(times) >= 2 else None


def queueing(result) -> float | None:
    """Arrival to the engine's first work on the request; None if it never started."""
    arrival, start, _ = _times(result)
    return None if start is None else start - arrival


def end_to_end(result) -> float | None:
    """Arrival to the last token; None without tokens."""
    arrival, _, times = _times(result)
    return times[-1] - arrival if times else None


# ---- a run ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Summary:
    """Percentiles (seconds) over the requests that produced tokens, and rates over the run.

    A percentile is nan when no request qualifies (no TPOT when every answer had one token).
    """

    requests: int  # submitted
    completed: int  # produced at least one token, no error
    failed: int
    ttft_p50: float
    ttft_p95: float
    tpot_p50: float
    tpot_p95: float
    e2e_p50: float
    e2e_p95: float
    queue_p50: float
    queue_p95: float
    duration: float  # first arrival to last token
    tokens_per_s: float
    requests_per_s: float


def _pct(values, q):
    return percentile(values, q) if values else math.nan


def summarize(results) -> Summary:
    """Summary of an engine run (a list of Result or timeline dicts)."""
    if isinstance(results, (str, bytes, dict)) or not hasattr(results, "__iter__"):
        raise TypeError(f"results must be a list of Result, got {type(results).__name__}")
    results = list(results)
    done = [r for r in results if _times(r)[2] and not _error(r)]
    ttfts = [ttft(r) for r in done]
    tpots = [t for t in map(tpot, done) if t is not None]
    e2es = [end_to_end(r) for r in done]
    queues = [q for q in map(queueing, done) if q is not None]
    if done:
        start = min(_times(r)[0] for r in results)
        duration = max(_times(r)[2][-1] for r in done) - start
    else:
        duration = 0.0
    tokens = sum(len(_times(r)[2]) for r in done)
    return Summary(
        requests=len(results),
        completed=len(done),
        failed=len(results) - len(done),
        ttft_p50=_pct(ttfts, 50),
        ttft_p95=_pct(ttfts, 95),
        tpot_p50=_pct(tpots, 50),
        tpot_p95=_pct(tpots, 95),
        e2e_p50=_pct(e2es, 50),
        e2e_p95=_pct(e2es, 95),
        queue_p50=_pct(queues, 50),
        queue_p95=_pct(queues, 95),
        duration=duration,
        tokens_per_s=tokens / duration if duration > 0 else math.nan,
        requests_per_s=len(done) / duration if duration > 0 else math.nan,
    )


def sustained_rate(results, trim: float = 0.25) -> float:
    """Requests per second completed in the middle of a run: between the completion at the
    `trim` share of all completions and the one at 1 - trim. It leaves out the ramp-up (the
    first prefills, before any request finishes) and the drain (a batch emptying at the end).
    On a run whose queue never empties in that window (every request arrived at the start, or
    faster than the server serves them), it is the server's capacity: the rate it sustains, not
    a burst's average, which counts the ramp-up and the drain too."""
    if not 0 <= _number("trim", trim) < 0.5:
        raise ValueError(f"trim must be in [0, 0.5), got {trim}")
    if isinstance(results, (str, bytes, dict)) or not hasattr(results, "__iter__"):
        raise TypeError(f"results must be a list of Result, got {type(results).__name__}")
    ends = sorted(_times(r)[2][-1] for r in results if _times(r)[2] and not _error(r))
    first, last = round(trim * len(ends)), round((1 - trim) * len(ends)) - 1
    if last - first < 2 or not ends[last] > ends[first]:
        raise ValueError(
            f"results must hold enough completions spread over time for a rate: {len(ends)} "
            f"completed, {max(last - first, 0)} between the trimmed ends"
        )
    return (last - first) / (ends[last] - ends[first])


def _error(result):
    return result.get("error") if isinstance(result, dict) else getattr(result, "error", None)


def goodput(results, ttft_slo: float, tpot_slo: float | None = None, duration=None) -> float:
    """Requests per second that completed AND met the SLO: TTFT <= ttft_slo and, if given,
    TPOT <= tpot_slo (a one-token answer has no TPOT and meets any TPOT limit).

    duration: the seconds to divide by; default, first arrival to last token of the run.
    Requests that missed the SLO still took the machine's time: they count in the duration,
    not in the numerator.
    """
    ttft_slo = _number("ttft_slo", ttft_slo)
    if ttft_slo <= 0:
        raise ValueError(f"ttft_slo must be > 0 seconds, got {ttft_slo}")
    if tpot_slo is not None and _number("tpot_slo", tpot_slo) <= 0:
        raise ValueError(f"tpot_slo must be > 0 seconds, got {tpot_slo}")
    results = list(results)
    if duration is None:
        duration = summarize(results).duration
    duration = _number("duration", duration)
    if duration <= 0:
        raise ValueError(f"duration must be > 0 seconds, got {duration}")
    good = 0
    for r in results:
        if _error(r) or not _times(r)[2] or ttft(r) > ttft_slo:
            continue
        t = tpot(r)
        if tpot_slo is not None and t is not None and t > tpot_slo:
            continue
        good += 1
    return good / duration


def highest_passing(xs: Sequence[float], values: Sequence[float], limit: float):
    """The largest x whose value, and the value of every smaller x, is <= limit; None if the
    smallest already fails. For "the highest request rate that keeps P95 TTFT under the SLA":
    a rate that passes only above one that failed is luck, not capacity."""
    if len(xs) != len(values):
        raise ValueError(
            f"xs and values must have the same length, got {len(xs)} and {len(values)}"
        )
    limit = _number("limit", limit)
    best = None
    for x, v in sorted(zip(xs, values)):
        if not v <= limit:  # nan fails too
            break
        best = x
    return best


# ---- load -----------------------------------------------------------------------------------------
def poisson_arrivals(rate: float, n: int, seed: int = 0, start: float = 0.0) -> list[float]:
    """n arrival times (seconds) of a Poisson process of `rate` requests per second.

    The gaps are independent exponentials of mean 1 / rate: users who do not coordinate.
    """
    rate = _number("rate", rate)
    if rate <= 0:
        raise ValueError(f"rate must be > 0 requests per second, got {rate}")
    _int_at_least("n", n, 0)
    rng = random.Random(seed)
    t, times = _number("start", start), []
    for _ in range(n):
        t += rng.expovariate(rate)
        times.append(t)
    return times


def _length_range(name, value):
    if (
        not isinstance(value, tuple)
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        or not 1 <= value[0] <= value[1]
    ):
        raise ValueError(f"{name} must be a (low, high) tuple of ints with 1 <= low <= high")
    return value


def make_requests(
    n: int,
    vocab_size: int,
    prompt_len: tuple[int, int],
    new_tokens: tuple[int, int],
    arrivals: Sequence[float] | None = None,
    shared_prefix: Sequence[int] = (),
    seed: int = 0,
) -> list[Request]:
    """n greedy requests with prompt and answer lengths uniform in the given (low, high) ranges.

    shared_prefix: tokens every prompt starts with (a system prompt), before its own tokens.
    arrivals: one time per request (default: all at 0, a burst).
    """
    _int_at_least("n", n, 0)
    _int_at_least("vocab_size", vocab_size, 1)
    prompt_len = _length_range("prompt_len", prompt_len)
    new_tokens = _length_range("new_tokens", new_tokens)
    arrivals = [0.0] * n if arrivals is None else list(arrivals)
    if len(arrivals) != n:
        raise ValueError(f"arrivals must hold n = {n} times, got {len(arrivals)}")
    rng = random.Random(seed)
    requests = []
    for arrival in arrivals:
        own = [rng.randrange(vocab_size) for _ in range(rng.randint(*prompt_len))]
        requests.append(
            Request(list(shared_prefix) + own, rng.randint(*new_tokens), arrival=arrival)
        )
    return requests


def long_tail_workload(
    vocab_size: int, n: int = 48, long_every: int = 6, long_tokens: int = 160, seed: int = 12
) -> list[Request]:
    """A burst of n short requests (prompts of 16-32 tokens, answers of 8-24) in which every
    `long_every`-th asks for `long_tokens`: the mix where static batching idles slots while one
    long answer finishes (chapter 12 and the "Your machine" page serve it)."""
    _int_at_least("long_every", long_every, 1)
    _int_at_least("long_tokens", long_tokens, 1)
    requests = make_requests(n, vocab_size, (16, 32), (8, 24), seed=seed)
    for request in requests[::long_every]:
        request.max_new_tokens = long_tokens
    return requests


# ---- a step clock measured on this machine ---------------------------------------------------------
@dataclass(frozen=True)
class StepClock:
    """Seconds of one engine step: base + per_decode x decoding sequences + per_prefill x prompt
    positions, fitted to this machine's measured steps (fit_step_clock).

    Pass it as Engine(step_clock=...): a load test then runs the real model and scheduler, and
    each step costs what a step of its size costs here, without the noise of one moment (another
    process, a frequency change) reshuffling the queue. `points` holds what was measured:
    (decode sequences, prompt positions, fastest seconds).
    """

    base: float
    per_decode: float
    per_prefill: float
    points: tuple[tuple[int, int, float], ...] = ()

    def __call__(self, decode_tokens: int, prefill_tokens: int) -> float:
        return self.base + self.per_decode * decode_tokens + self.per_prefill * prefill_tokens


def fit_step_clock(
    model, prompt_lengths=(16, 64, 128), batch_sizes=(1, 4, 8), repeat: int = 15,
    budget_s: float = 0.25,
) -> StepClock:  # fmt: skip
    """Measure engine steps on `model` and fit a StepClock by least squares.

    Prefill: one request of each prompt length (a step of that many positions). Decode: a batch
    of each size decoding together (steps with no prompt work). Each point goes through the
    course's timing protocol (llmlab.measure.time_it: a warm-up call, then calls repeated until
    the three fastest agree within 2%, at most `repeat` calls or about `budget_s` seconds), and
    its figure is the fastest step the engine measured in those calls: on a shared machine noise
    only ever makes a step slower (as in measure.probe_machine). The fit weights every point by
    1 / its time, so the small steps count as much as the large ones.
    """
    from llmlab.measure import time_it

    _int_at_least("repeat", repeat, 3)
    budget_s = _number("budget_s", budget_s)
    if budget_s <= 0:
        raise ValueError(f"budget_s must be > 0 seconds, got {budget_s}")
    context = model.config.block_size
    if not prompt_lengths or max(prompt_lengths) + 1 > context or min(prompt_lengths) < 1:
        raise ValueError(f"prompt_lengths must be non-empty, each in [1, {context - 1}]")
    if not batch_sizes or min(batch_sizes) < 1:
        raise ValueError("batch_sizes must be non-empty, each >= 1")
    vocab = model.config.vocab_size
    engine = Engine(model, max_batch_size=max(batch_sizes))
    engine.run([Request([1] * 8, 4)])  # warm-up: the first steps allocate

    def fastest_step(requests, decode_only):
        steps = []

        def call():
            run = engine.run(requests)
            steps.extend(s.duration for s in run.steps if not decode_only or not s.prefill_tokens)

        call()  # the warm-up's steps are not kept
        steps.clear()
        time_it(call, warmup=0, max_repeat=repeat, budget_s=budget_s)
        return min(steps)

    points = []
    for n in prompt_lengths:
        prompt = [i % vocab for i in range(n)]
        points.append((0, n, fastest_step([Request(prompt, 1)], False)))
    for b in batch_sizes:  # a prefill step, then 4 decode steps of the whole batch
        requests = [Request([(i + j) % vocab for j in range(4)], 5) for i in range(b)]
        points.append((b, 0, fastest_step(requests, True)))
    x = np.array([[1.0, d, p] for d, p, _ in points])
    y = np.array([t for _, _, t in points])
    w = 1 / y
    coef = np.linalg.lstsq(x * w[:, None], y * w, rcond=None)[0]
    base, per_decode, per_prefill = (max(float(c), 0.0) for c in coef)
    return StepClock(base, per_decode, per_prefill, tuple(points))

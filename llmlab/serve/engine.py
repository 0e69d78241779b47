"""The engine loop: requests in, tokens and timelines out.

    engine = Engine(model, max_batch_size=8, policy="continuous")
    results = engine.run([Request(prompt=[1, 2, 3], max_new_tokens=32, arrival=0.0), ...])
    for request, token, time in engine.stream(requests): ...

Each step: requests that have arrived by the engine's clock join the waiting queue; the
scheduler picks the work; the runner computes it; the clock advances by the step's measured wall
time (or by what step_clock says, for deterministic tests). With nothing to do, the clock jumps to
the next arrival: a load test never sleeps, and every timestamp is compute time.
"""

import math
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import NamedTuple

import torch

from llmlab.serve.block_manager import BlockManager
from llmlab.serve.paged_cache import PagedKVPool
from llmlab.serve.request import Request, Results, StepStats
from llmlab.serve.runner import ModelRunner
from llmlab.serve.scheduler import Scheduler
from llmlab.serve.sequence import Sequence, Status

POLICIES = ("continuous", "static")


class TokenEvent(NamedTuple):
    """What stream() yields: a request, one of its new tokens, and when it was produced."""

    request: Request
    token: int
    time: float


def _check_int(name, value, low, allow_none=False):
    if allow_none and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"Engine {name} must be an int, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"Engine {name} must be >= {low}, got {value}")


class Engine:
    """Serves a TinyGPT: a paged KV cache, a scheduler and a model runner.

    max_batch_size: sequences decoding together at most. policy: "continuous" or "static".
    block_size: positions per KV block. num_blocks: blocks in the pool (default: enough for
    max_batch_size sequences of the model's full context). chunk_size: at most this many prompt
    positions computed per step (None: whole prompts at once). prefix_caching: reuse full blocks
    of a prefix another request already computed. step_clock: None measures each step's wall
    time; a function (decode_tokens, prefill_tokens) -> seconds replaces it (tests).
    """

    def __init__(
        self,
        model,
        max_batch_size: int = 8,
        policy: str = "continuous",
        block_size: int = 16,
        num_blocks: int | None = None,
        chunk_size: int | None = None,
        prefix_caching: bool = False,
        step_clock: Callable[[int, int], float] | None = None,
    ):
        if not hasattr(model, "config") or not hasattr(model.config, "n_kv_head"):
            raise TypeError(f"Engine model must be a TinyGPT, got {type(model).__name__}")
        _check_int("max_batch_size", max_batch_size, 1)
        if policy not in POLICIES:
            raise ValueError(f"Engine policy must be one of {POLICIES}, got {policy!r}")
        _check_int("block_size", block_size, 1)
        _check_int("num_blocks", num_blocks, 1, allow_none=True)
        _check_int("chunk_size", chunk_size, 1, allow_none=True)
        if not isinstance(prefix_caching, bool):
            raise TypeError(f"Engine prefix_caching must be a bool, got {prefix_caching!r}")
        if step_clock is not None and not callable(step_clock):
            raise TypeError(f"Engine step_clock must be None or a function, got {step_clock!r}")
        if num_blocks is None:
            num_blocks = max_batch_size * math.ceil(model.config.block_size / block_size)
        self.model, self.policy = model, policy
        self.max_batch_size, self.chunk_size = max_batch_size, chunk_size
        self.step_clock = step_clock
        self.pool = PagedKVPool(model, num_blocks, block_size)
        self.blocks = BlockManager(num_blocks, block_size, prefix_caching)
        self.runner = ModelRunner(model, self.pool)
        self.steps: list[StepStats] = []  # the last run's steps

    # ---- public API ---------------------------------------------------------------------------
    def run(self, requests: list[Request]) -> Results:
        """Serve every request; return their Results in request order, with `.steps`."""
        seqs = self._sequences(requests)
        for _ in self._serve(seqs):
            pass
        return Results([s.result for s in seqs], self.steps)

    def stream(self, requests: list[Request]) -> Iterator[TokenEvent]:
        """Yield (request, token, time) as tokens are produced; self.steps fills as it goes.

        Stopping early (break, close()) abandons the unfinished requests and frees their blocks.
        """
        yield from self._serve(self._sequences(requests))

    def session(self) -> "Session":
        """The engine on the wall clock, taking requests while it runs (llmlab.serve.http)."""
        return Session(self)

    # ---- the loop -----------------------------------------------------------------------------
    def _sequences(self, requests) -> list[Sequence]:
        if not isinstance(requests, (list, tuple)):
            raise TypeError(f"requests must be a list of Request, got {type(requests).__name__}")
        for i, r in enumerate(requests):
            if not isinstance(r, Request):
                raise TypeError(f"requests[{i}] must be a Request, got {type(r).__name__}")
        return [Sequence(i, r, self.model.device) for i, r in enumerate(requests)]

    def _serve(self, seqs: list[Sequence]) -> Iterator[TokenEvent]:
        scheduler = Scheduler(self.blocks, self.policy, self.max_batch_size, self.chunk_size)
        self.steps = []
        pending = []
        for seq in seqs:
            error = self._check(seq.request)
            if error is not None or seq.request.max_new_tokens == 0:
                seq.result.error = error
                valid_arrival = error is None or not error.startswith("arrival")
                seq.result.finish_time = seq.request.arrival if valid_arrival else 0.0
                seq.status = Status.FINISHED
            else:
                pending.append(seq)
        pending.sort(key=lambda s: (s.request.arrival, s.index), reverse=True)  # pop() = next
        clock = 0.0
        try:
            while pending or scheduler.has_work():
                while pending and pending[-1].request.arrival <= clock:
                    scheduler.add(pending.pop())
                if not scheduler.has_work():
                    clock = pending[-1].request.arrival  # idle until the next request arrives
                    continue
                picked, clock, stats = self._step(scheduler, clock, len(self.steps))
                self.steps.append(stats)
                for seq, token in picked:
                    yield TokenEvent(seq.request, token, clock)
        finally:  # a stream closed early must not leave blocks held
            for seq in list(scheduler.running):
                self.blocks.release(seq)

    def _step(self, scheduler, clock: float, index: int):
        """One step starting at `clock`: schedule, compute, append the new tokens.

        Returns [(sequence, new token)], the clock at the step's end (clock + its measured time,
        or what step_clock says) and the step's StepStats.
        """
        work, preempted = scheduler.schedule()
        assert work, "a request that fits the pool alone must always make progress"
        for seq, _ in work:
            if seq.result.prefill_start is None:  # its first step: note what the cache held
                seq.result.prefill_start = clock
                seq.result.cached_prompt_tokens = seq.num_computed
        decode = sum(1 for seq, _ in work if seq.num_generated > 0 and seq.to_compute == 1)
        prefill = sum(n for _, n in work) - decode
        one_position = sum(1 for _, n in work if n == 1)  # the rows of the decode pass
        padding = max(0, scheduler.decode_rows() - one_position) if one_position else 0
        started = time.perf_counter()
        picked = self.runner.step(work, padding=padding)
        if self.model.device.type == "cuda":
            torch.cuda.synchronize()
        duration = time.perf_counter() - started
        if self.step_clock is not None:  # padding rows cost what decode rows cost
            duration = float(self.step_clock(decode + padding, prefill))
        step_start, clock = clock, clock + duration
        for seq, _ in work:
            self.blocks.register_full_blocks(seq)
        for seq, token in picked:
            seq.tokens.append(token)
            seq.result.tokens.append(token)
            seq.result.token_times.append(clock)
            if seq.is_done():
                seq.result.finish_time = clock
                scheduler.finish(seq)
        stats = self._stats(
            index, step_start, duration, scheduler, decode, prefill, len(preempted), padding
        )
        return picked, clock, stats

    def _check(self, r: Request) -> str | None:
        """Why this request cannot be served, in one sentence, or None."""
        c = self.model.config
        if not all(isinstance(t, int) and not isinstance(t, bool) for t in r.prompt):
            return "prompt must be a list (or 1-D tensor) of int token ids"
        if len(r.prompt) == 0:
            return "prompt is empty: give at least one token"
        bad = [t for t in r.prompt if not 0 <= t < c.vocab_size]
        if bad:
            return f"prompt holds token ids outside the vocabulary [0, {c.vocab_size}): {bad[:5]}"
        if isinstance(r.max_new_tokens, bool) or not isinstance(r.max_new_tokens, int):
            return f"max_new_tokens must be an int, got {type(r.max_new_tokens).__name__}"
        if r.max_new_tokens < 0:
            return f"max_new_tokens must be >= 0, got {r.max_new_tokens}"
        if len(r.prompt) + r.max_new_tokens > c.block_size:
            return (
                f"prompt ({len(r.prompt)} tokens) + max_new_tokens ({r.max_new_tokens}) exceeds "
                f"the model's context block_size ({c.block_size})"
            )
        if not isinstance(r.arrival, (int, float)) or not math.isfinite(r.arrival) or r.arrival < 0:
            return f"arrival must be a finite number of seconds >= 0, got {r.arrival!r}"
        if r.stop_token is not None and (
            not isinstance(r.stop_token, int) or not 0 <= r.stop_token < c.vocab_size
        ):
            return f"stop_token must be None or an id in [0, {c.vocab_size}), got {r.stop_token!r}"
        if not isinstance(r.temperature, (int, float)) or not r.temperature >= 0:
            return f"temperature must be a number >= 0, got {r.temperature!r}"
        if r.seed is not None and (
            isinstance(r.seed, bool) or not isinstance(r.seed, int) or not 0 <= r.seed < 2**64
        ):
            return f"seed must be None or an int in [0, 2**64), got {r.seed!r}"
        if r.logprobs is not None and (
            isinstance(r.logprobs, bool)
            or not isinstance(r.logprobs, int)
            or not 0 <= r.logprobs <= c.vocab_size
        ):
            return f"logprobs must be None or an int in [0, {c.vocab_size}], got {r.logprobs!r}"
        need = self.blocks.blocks_to_cover(len(r.prompt) + r.max_new_tokens - 1)
        if need > self.blocks.num_blocks:
            return (
                f"needs {need} KV blocks of {self.blocks.block_size} positions, more than the "
                f"whole pool ({self.blocks.num_blocks} blocks): it could never run"
            )
        return None

    def _stats(
        self, index, start, duration, scheduler, decode, prefill, preempted, padding
    ) -> StepStats:
        bs = self.blocks.block_size
        filled: dict[int, int] = {}  # block -> positions filled (a shared block is counted once)
        for seq in scheduler.running:
            for i, block in enumerate(seq.block_table):
                n = max(0, min(bs, seq.num_computed - i * bs))
                filled[block] = max(filled.get(block, 0), n)
        reserved = len(filled) * self.pool.block_bytes
        used = sum(filled.values()) * self.pool.position_bytes
        return StepStats(
            index=index,
            start=start,
            duration=duration,
            decode_tokens=decode,
            prefill_tokens=prefill,
            running=len(scheduler.running),
            waiting=len(scheduler.waiting),
            preempted=preempted,
            padding_rows=padding,
            free_blocks=self.blocks.num_free,
            kv_reserved_bytes=reserved,
            kv_used_bytes=used,
            kv_wasted_bytes=reserved - used,
            kv_pool_bytes=self.pool.nbytes,
        )


class Session:
    """The engine served live: requests join while it runs, on the wall clock.

        session = engine.session()
        seq = session.add(Request(prompt, 16, arrival=session.now()))
        while session.has_work():
            for seq, token in session.step(): ...   # seq.result holds its timeline so far
        session.cancel(seq)   # its client went away: it leaves, its blocks return to the pool

    The clock is the wall clock in seconds since the session opened: a request's arrival is
    when it reached the server, and each token's time is when its step ended. The same
    scheduler, block manager and runner as run(); one step at a time, from one thread at a time.
    """

    def __init__(self, engine: Engine, keep_steps: int = 1000):
        if engine.step_clock is not None:
            raise ValueError(
                "a live Session keeps the wall clock: use an Engine without step_clock"
            )
        self.engine = engine
        self.scheduler = Scheduler(
            engine.blocks, engine.policy, engine.max_batch_size, engine.chunk_size
        )
        self.started = time.perf_counter()
        self.steps: deque[StepStats] = deque(maxlen=keep_steps)  # the latest only: it runs for days
        self.num_steps = 0
        self.num_added = 0

    def now(self) -> float:
        return time.perf_counter() - self.started

    def check(self, request: Request) -> str | None:
        """Why this request cannot be served, in one sentence, or None (as run() decides)."""
        return self.engine._check(request)

    def add(self, request: Request) -> Sequence:
        """Put a request in the waiting queue; it runs from the next step on."""
        error = self.check(request)
        if error is not None:
            raise ValueError(error)
        if request.max_new_tokens == 0:
            raise ValueError("max_new_tokens must be >= 1 for a live request")
        seq = Sequence(self.num_added, request, self.engine.model.device)
        self.num_added += 1
        self.scheduler.add(seq)
        return seq

    def has_work(self) -> bool:
        return self.scheduler.has_work()

    def step(self) -> list[tuple[Sequence, int]]:
        """Run one step; return [(sequence, new token)]. A finished sequence has left."""
        picked, _, stats = self.engine._step(self.scheduler, self.now(), self.num_steps)
        self.steps.append(stats)
        self.num_steps += 1
        return picked

    def cancel(self, seq: Sequence):
        """Take seq out wherever it is; blocks it holds go back to the pool."""
        if seq.status == Status.FINISHED:
            return
        if seq in self.scheduler.waiting:  # a waiting sequence holds no blocks
            self.scheduler.waiting.remove(seq)
        else:
            self.scheduler.finish(seq)
        seq.status = Status.FINISHED
        seq.result.error = "cancelled"
        seq.result.finish_time = self.now()

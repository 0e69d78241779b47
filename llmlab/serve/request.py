"""What goes into the engine (Request) and what comes out (Result, StepStats).

Times are seconds on the engine's clock: 0 is when run() starts, and the clock advances by each
step's measured compute time (or by what an injected step clock says), never by sleeping.
"""

from dataclasses import dataclass, field

import torch


@dataclass
class Request:
    """A prompt to extend by max_new_tokens tokens.

    prompt: token ids (a list of ints or a 1-D tensor). arrival: when the request reaches the
    engine. stop_token: generation ends after this token is produced (it is kept in the output).
    temperature 0 decodes greedily; above 0 samples, from a generator seeded with `seed`, so
    a request's tokens do not depend on what else is in its batch. seed: None (0), or any
    integer in [0, 2**64), the range of torch.Generator.manual_seed. logprobs: None, or k >= 0:
    each new token's log-probability under the model (its raw logits, before the temperature)
    and the k most likely tokens' with theirs go to Result.logprobs.
    """

    prompt: list[int]
    max_new_tokens: int
    arrival: float = 0.0
    stop_token: int | None = None
    temperature: float = 0.0
    seed: int | None = None
    logprobs: int | None = None

    def __post_init__(self):
        if isinstance(self.prompt, torch.Tensor):
            self.prompt = self.prompt.tolist()  # a bad shape is reported by the engine
        else:
            self.prompt = list(self.prompt)


@dataclass
class Result:
    """One request's outcome: its new tokens and its timeline, or an error that says why not.

    token_times[i] is when tokens[i] was produced; first_token_time = token_times[0].
    prefill_start is when the engine first computed any of the request's prompt.
    """

    request: Request
    tokens: list[int] = field(default_factory=list)
    error: str | None = None
    arrival: float = 0.0
    prefill_start: float | None = None
    token_times: list[float] = field(default_factory=list)
    finish_time: float | None = None
    preemptions: int = 0  # times its cache was freed to make room, and later recomputed
    cached_prompt_tokens: int = 0  # prompt tokens whose KV came from the prefix cache
    # with Request.logprobs = k: per new token, (its log-probability, [(id, log-prob)] of the k
    # most likely tokens, most likely first)
    logprobs: list[tuple[float, list[tuple[int, float]]]] = field(default_factory=list)

    @property
    def first_token_time(self) -> float | None:
        return self.token_times[0] if self.token_times else None

    @property
    def ttft(self) -> float | None:
        """Time to first token: from arrival to the first new token."""
        return None if not self.token_times else self.token_times[0] - self.arrival

    @property
    def latency(self) -> float | None:
        """From arrival to the last token (or to the error)."""
        return None if self.finish_time is None else self.finish_time - self.arrival


@dataclass
class StepStats:
    """One engine step: what ran, how long it took, and the KV memory at its end.

    kv_reserved_bytes: blocks held by live sequences x bytes per block.
    kv_used_bytes: positions actually filled in those blocks x bytes per position.
    kv_wasted_bytes: reserved - used (the unfilled tail of each sequence's last block).
    kv_pool_bytes: the whole preallocated pool.
    """

    index: int
    start: float
    duration: float
    decode_tokens: int  # sequences that produced a token this step
    prefill_tokens: int  # prompt (or recomputed) positions computed this step
    running: int
    waiting: int
    preempted: int
    padding_rows: int  # static batching: finished members' rows, computed and thrown away
    free_blocks: int
    kv_reserved_bytes: int
    kv_used_bytes: int
    kv_wasted_bytes: int
    kv_pool_bytes: int


class Results(list):
    """A list of Result in request order, with `.steps`: one StepStats per engine step."""

    def __init__(self, results, steps):
        super().__init__(results)
        self.steps = steps

    @property
    def duration(self) -> float:
        """Clock time from start to the last finish."""
        return max((r.finish_time for r in self if r.finish_time is not None), default=0.0)

    @property
    def generated_tokens(self) -> int:
        return sum(len(r.tokens) for r in self)

"""A request while the engine works on it: its tokens, how many are in the cache, its blocks."""

from enum import Enum

import torch

from llmlab.serve.request import Request, Result


class Status(Enum):
    PENDING = "pending"  # not arrived yet
    WAITING = "waiting"  # arrived (or preempted): needs a place in the batch
    RUNNING = "running"
    FINISHED = "finished"


class Sequence:
    """tokens = prompt + generated so far. The first num_computed of them have their keys and
    values in the cache; block_table[i] is the pool block holding positions
    i * block_size ... (i + 1) * block_size - 1."""

    def __init__(self, index: int, request: Request, device):
        self.index = index  # position in the submitted list: results come back in this order
        self.request = request
        self.result = Result(request=request, arrival=request.arrival)
        self.tokens = list(request.prompt)
        self.num_prompt = len(self.tokens)
        self.num_computed = 0
        self.block_table: list[int] = []
        self.status = Status.PENDING
        self.generator = None
        if request.temperature > 0:
            self.generator = torch.Generator(device=device)
            self.generator.manual_seed(0 if request.seed is None else request.seed)

    def __repr__(self):
        return (
            f"Sequence({self.index}, {self.status.value}, {len(self.tokens)} tokens, "
            f"{self.num_computed} computed, blocks {self.block_table})"
        )

    @property
    def num_generated(self) -> int:
        return len(self.tokens) - self.num_prompt

    @property
    def to_compute(self) -> int:
        """Tokens not yet in the cache: 1 while decoding, more while (re)filling the prompt."""
        return len(self.tokens) - self.num_computed

    @property
    def max_len(self) -> int:
        """Positions this sequence may ever hold in the cache (its last token is never fed)."""
        return self.num_prompt + self.request.max_new_tokens - 1

    def is_done(self) -> bool:
        r = self.request
        stopped = self.num_generated > 0 and r.stop_token is not None
        stopped = stopped and self.tokens[-1] == r.stop_token
        return self.num_generated >= r.max_new_tokens or stopped

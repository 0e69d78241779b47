"""Who runs in the next step, and how many of their tokens.

continuous (Orca's iteration-level scheduling): every step, finished sequences have left and
waiting ones join, up to max_batch_size and the free blocks. When a running sequence needs a
block and none is free, the youngest running sequence is preempted: its blocks are freed and it
waits to be recomputed from its tokens (no token is lost, some work is repeated).

static: a batch is formed from the waiting requests, with blocks for their full lengths set
aside, and runs until its last member finishes; members that finish early keep their places and
are still computed, as rows of a padded batch are, so nobody joins until the whole batch is done.

chunk_size caps the prompt positions computed per step (chunked prefill): a long prompt is then
filled over several steps, each of which also decodes one token for every other running sequence.
"""

import math

from llmlab.serve.block_manager import BlockManager
from llmlab.serve.sequence import Sequence, Status


def age(seq: Sequence):
    """Sort key: earlier arrival is older; the submission order breaks ties."""
    return (seq.request.arrival, seq.index)


class Scheduler:
    def __init__(self, blocks: BlockManager, policy: str, max_batch_size: int, chunk_size):
        self.blocks, self.policy = blocks, policy
        self.max_batch_size = max_batch_size
        self.chunk_size = chunk_size
        self.waiting: list[Sequence] = []  # oldest first
        self.running: list[Sequence] = []
        self.static_batch: list[Sequence] = []  # static: the batch until all of it is done

    def add(self, seq: Sequence):
        seq.status = Status.WAITING
        self.waiting.append(seq)
        self.waiting.sort(key=age)

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def decode_rows(self) -> int:
        """Rows the decode pass computes at least: a static batch keeps its full width, finished
        members included, until all of it is done; continuous batching computes live rows only."""
        return len(self.static_batch) if self.policy == "static" else 0

    def schedule(self) -> tuple[list[tuple[Sequence, int]], list[Sequence]]:
        """Returns this step's work, [(sequence, positions to compute)], and whom it preempted."""
        budget = math.inf if self.chunk_size is None else self.chunk_size
        work, preempted = [], []
        if self.policy == "static" and not any(
            s.status == Status.RUNNING for s in self.static_batch
        ):
            self._form_static_batch()
        for seq in sorted(self.running, key=age):
            if seq.status != Status.RUNNING:
                continue  # preempted earlier in this loop
            n = seq.to_compute if seq.to_compute == 1 else min(seq.to_compute, budget)
            if n == 0:
                continue  # this step's prompt budget is spent: it fills on a later step
            while not self.blocks.grow(seq, n):
                victim = max(self.running, key=age)
                self._preempt(victim)
                preempted.append(victim)
                if victim is seq:
                    break
            else:
                work.append((seq, n))
                budget -= n if seq.to_compute > 1 else 0
        if self.policy == "continuous":
            while self.waiting and len(self.running) < self.max_batch_size and budget > 0:
                seq = self.waiting[0]
                if seq in preempted or not self.blocks.admit(seq, min(seq.to_compute, budget)):
                    break  # not enough free blocks: wait for some to be released
                self.waiting.pop(0)
                self._start(seq)
                n = min(seq.to_compute, budget)
                work.append((seq, n))
                budget -= n
        return work, preempted

    def _form_static_batch(self):
        """Admit the oldest waiting requests whose full lengths fit the pool together."""
        self.static_batch, reserved = [], 0
        while self.waiting and len(self.static_batch) < self.max_batch_size:
            seq = self.waiting[0]
            need = self.blocks.blocks_to_cover(seq.max_len)
            if reserved + need > self.blocks.num_blocks:
                break
            self.blocks.admit(seq, 0)  # its prefix-cache hits; the rest grows step by step
            reserved += need
            self.waiting.pop(0)
            self.static_batch.append(seq)
            self._start(seq)

    def _start(self, seq: Sequence):
        seq.status = Status.RUNNING
        self.running.append(seq)

    def _preempt(self, seq: Sequence):
        self.blocks.release(seq)
        self.running.remove(seq)
        seq.result.preemptions += 1
        self.add(seq)

    def finish(self, seq: Sequence):
        self.blocks.release(seq)
        self.running.remove(seq)
        seq.status = Status.FINISHED

"""Which pool block holds which positions: a free list, reference counts, block tables, and
(optionally) a prefix cache that lets sequences with the same beginning share blocks.

A block is free when no sequence refers to it (ref count 0). A freed block keeps its contents
and, if it was full, its prefix key, until the free list hands it out again: a later request
with the same prefix can take it back without recomputing it.
"""

import math
from collections import OrderedDict

from llmlab.serve.sequence import Sequence


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, prefix_caching: bool = False):
        self.num_blocks, self.block_size = num_blocks, block_size
        self.prefix_caching = prefix_caching
        self.ref_count = [0] * num_blocks
        # Free blocks, least recently freed first: the first handed out, the last to lose a
        # cached prefix. An OrderedDict so a cached block can leave from the middle in O(1).
        self.free: OrderedDict[int, None] = OrderedDict.fromkeys(range(num_blocks))
        self.block_key: dict[int, int] = {}  # full, cached block -> its prefix key
        self.key_to_block: dict[int, int] = {}
        self.block_tokens: dict[int, tuple[int, ...]] = {}  # to confirm a key match

    @property
    def num_free(self) -> int:
        return len(self.free)

    def blocks_to_cover(self, n_positions: int) -> int:
        return math.ceil(n_positions / self.block_size)

    # ---- prefix keys --------------------------------------------------------------------------
    def _key(self, parent_key: int | None, tokens: tuple[int, ...]) -> int:
        """A block's key hashes its tokens and, through the parent's key, everything before."""
        return hash((parent_key, tokens))

    def _cached_prefix(self, seq: Sequence) -> list[int]:
        """Blocks holding seq's leading full blocks, found by key. The last token is always
        computed (its logits pick the next token), so it never comes from the cache."""
        hits, parent = [], None
        bs = self.block_size
        for i in range((len(seq.tokens) - 1) // bs):
            tokens = tuple(seq.tokens[i * bs : (i + 1) * bs])
            key = self._key(parent, tokens)
            block = self.key_to_block.get(key)
            if block is None or self.block_tokens[block] != tokens:
                break
            hits.append(block)
            parent = key
        return hits

    def register_full_blocks(self, seq: Sequence):
        """After a step: give each newly filled block of seq a key, so later requests can reuse it."""
        if not self.prefix_caching:
            return
        bs = self.block_size
        parent = None
        for i in range(seq.num_computed // bs):
            block = seq.block_table[i]
            tokens = tuple(seq.tokens[i * bs : (i + 1) * bs])
            key = self._key(parent, tokens)
            if self.block_key.get(block) != key and key not in self.key_to_block:
                self.block_key[block] = key
                self.key_to_block[key] = block
                self.block_tokens[block] = tokens
            parent = key

    # ---- allocation ---------------------------------------------------------------------------
    def _take_free_block(self) -> int:
        block, _ = self.free.popitem(last=False)
        key = self.block_key.pop(block, None)  # its old contents are about to be overwritten
        if key is not None and self.key_to_block.get(key) == block:
            del self.key_to_block[key]
        self.block_tokens.pop(block, None)
        self.ref_count[block] = 1
        return block

    def admit(self, seq: Sequence, n_new: int) -> bool:
        """Give a sequence with no blocks its cached prefix and room for n_new more positions.

        n_new is capped at the tokens left after the cached prefix. Returns False, changing
        nothing, if the free list is too short.
        """
        assert not seq.block_table and seq.num_computed == 0, seq
        hits = self._cached_prefix(seq) if self.prefix_caching else []
        cached = len(hits) * self.block_size
        n_new = min(n_new, len(seq.tokens) - cached)
        fresh = self.blocks_to_cover(cached + n_new) - len(hits)
        revived = sum(1 for b in hits if self.ref_count[b] == 0)  # these leave the free list
        if fresh + revived > self.num_free:
            return False
        for block in hits:
            if self.ref_count[block] == 0:
                del self.free[block]
            self.ref_count[block] += 1
        seq.block_table = hits + [self._take_free_block() for _ in range(fresh)]
        seq.num_computed = cached
        return True

    def grow(self, seq: Sequence, n_new: int) -> bool:
        """Make room for seq's next n_new positions; False (nothing changed) if blocks run out."""
        missing = self.blocks_to_cover(seq.num_computed + n_new) - len(seq.block_table)
        if missing > self.num_free:
            return False
        seq.block_table += [self._take_free_block() for _ in range(max(0, missing))]
        return True

    def release(self, seq: Sequence):
        """Drop seq's references; blocks nobody else uses return to the free list.

        Last block first, so a cached prefix's first blocks are the last to be handed out again.
        """
        for block in reversed(seq.block_table):
            self.ref_count[block] -= 1
            assert self.ref_count[block] >= 0, f"block {block} released more often than taken"
            if self.ref_count[block] == 0:
                self.free[block] = None
        seq.block_table = []
        seq.num_computed = 0

    def blocks_in_use(self) -> int:
        return self.num_blocks - self.num_free

"""Runs one scheduled step on the model: batched forward passes over the paged cache, then the
next token for every sequence whose known tokens are now all in the cache."""

from itertools import groupby

import torch

from llmlab.generate import _pick
from llmlab.serve.paged_cache import PagedKVPool
from llmlab.serve.sequence import Sequence


class ModelRunner:
    def __init__(self, model, pool: PagedKVPool):
        self.model, self.pool = model, pool

    @torch.inference_mode()
    def step(
        self, work: list[tuple[Sequence, int]], padding: int = 0
    ) -> list[tuple[Sequence, int]]:
        """Compute the given positions of each sequence; return [(sequence, new token)].

        Sequences computing the same number of positions share one forward pass (every decoding
        sequence computes 1, so all decodes are one batch); rows of a pass may sit at different
        positions with different context lengths.

        padding: extra rows the decode pass computes. A static batch is a fixed-shape tensor:
        rows whose request has finished are still computed (as padding) until the whole batch is
        done. Padding rows repeat a live row's token and position and write
        into the pool's scratch block; their outputs are dropped.
        """
        picked = []
        by_size = sorted(work, key=lambda item: item[1])
        for n_new, group in groupby(by_size, key=lambda item: item[1]):
            seqs = [seq for seq, _ in group]
            starts = [seq.num_computed for seq in seqs]
            rows = [seq.tokens[s : s + n_new] for seq, s in zip(seqs, starts)]
            tables = [seq.block_table for seq in seqs]
            pad = padding if n_new == 1 else 0  # only the decode pass is padded
            scratch = [self.pool.scratch_block] * len(tables[0])
            rows, starts = rows + rows[:1] * pad, starts + starts[:1] * pad
            tables = tables + [scratch] * pad
            ids = torch.tensor(rows, device=self.pool.k.device)
            batch = self.pool.batch(tables, starts, n_new)
            logits = self.model(ids, kv_cache=batch, last_only=True)[:, -1, :]  # (B, V)
            greedy = logits.argmax(dim=-1).tolist()
            for row, seq in enumerate(seqs):
                seq.num_computed += n_new
                if seq.num_computed < len(seq.tokens):
                    continue  # a chunk of the prompt: no token yet
                t = seq.request.temperature
                token = (
                    greedy[row] if t == 0 else int(_pick(logits[row : row + 1], t, seq.generator))
                )
                if seq.request.logprobs is not None:
                    seq.result.logprobs.append(
                        token_logprobs(logits[row], token, seq.request.logprobs)
                    )
                picked.append((seq, token))
        return picked


def token_logprobs(logits, token: int, k: int) -> tuple[float, list[tuple[int, float]]]:
    """token's log-probability under softmax(logits), and the k most likely (id, log-prob)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    top = torch.topk(logp, k) if k else None
    pairs = [] if top is None else list(zip(top.indices.tolist(), top.values.tolist()))
    return float(logp[token]), pairs

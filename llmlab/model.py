"""TinyGPT: a decoder-only transformer small enough to read in one sitting.

One class per idea, in the order the chapters meet them:
GPTConfig -> Linear -> CausalSelfAttention -> MLP -> Block -> TinyGPT.
The KV cache lives in kv_cache.py; generation in generate.py.

Shapes in comments: B batch, T new tokens this call, S all positions attended to
(S = T without a cache, S = cached + T with one), C width (n_embd), H query heads,
Hkv key/value heads, D head width (C // H), V vocabulary.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from llmlab import cpu_linear
from llmlab.kv_cache import KVCache


@dataclass
class GPTConfig:
    vocab_size: int = 50257
    block_size: int = 1024  # longest sequence the model can see (its context)
    n_layer: int = 12
    n_head: int = 12  # query heads
    n_embd: int = 768
    n_kv_head: int | None = None  # key/value heads; None means n_head (plain multi-head)

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"GPTConfig.{name} must be an int, got {type(value).__name__}")
            if value < 1:
                raise ValueError(f"GPTConfig.{name} must be >= 1, got {value}")
        if self.n_kv_head is None:
            self.n_kv_head = self.n_head
        if isinstance(self.n_kv_head, bool) or not isinstance(self.n_kv_head, int):
            raise TypeError(
                f"GPTConfig.n_kv_head must be an int or None, got {type(self.n_kv_head).__name__}"
            )
        if self.n_embd % self.n_head != 0:
            raise ValueError(
                f"GPTConfig.n_head ({self.n_head}) must divide n_embd ({self.n_embd}) so every head has the same width"
            )
        if not 1 <= self.n_kv_head <= self.n_head or self.n_head % self.n_kv_head != 0:
            raise ValueError(
                f"GPTConfig.n_kv_head ({self.n_kv_head}) must divide n_head ({self.n_head}): "
                "each key/value head serves an equal group of query heads"
            )

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


class Linear(nn.Module):
    """y = x @ W + b, with W stored as (in, out) so the code reads like the maths.

    On a CPU, a process may opt in to oneDNN for inference products (`cpu_linear.use_path`),
    which streams few-row products faster than PyTorch's default (MKL) on some CPUs at the cost
    of a second, packed copy of each weight: cpu_linear.py says why, `python -m llmlab.bench`
    measures both.
    """

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_in, n_out) * 0.02)
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x):
        if cpu_linear.use_onednn(x, self.weight):
            return cpu_linear.linear(x, self.weight, self.bias)
        return x @ self.weight + self.bias


def check_token_ids(ids: torch.Tensor, vocab_size: int, name: str):
    """Raise ValueError naming `name` if any id falls outside [0, vocab_size)."""
    if ids.min() < 0 or ids.max() >= vocab_size:
        raise ValueError(
            f"{name} holds token ids outside the vocabulary [0, {vocab_size}): "
            f"min {int(ids.min())}, max {int(ids.max())}"
        )


def causal_mask(n_queries: int, n_keys: int, device=None) -> torch.Tensor:
    """(n_queries, n_keys) bool mask, True where a query may look.

    The queries are the *last* n_queries of n_keys positions, so query i sits at
    position n_keys - n_queries + i and sees every key up to and including itself.
    """
    offset = n_keys - n_queries
    return torch.ones(n_queries, n_keys, dtype=torch.bool, device=device).tril(diagonal=offset)


def attention(q, k, v, mask=None):
    """softmax(q k^T / sqrt(d)) v, returning (output, weights).

    q: (..., T, D), k and v: (..., S, D), mask: (T, S) bool, True = may attend, or any shape
    that broadcasts to the scores, such as (B, 1, T, S) for a batch of sequences of different
    lengths (llmlab.serve).
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (..., T, S)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)  # each row sums to 1
    return weights @ v, weights  # (..., T, D), (..., T, S)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head, self.n_kv_head, self.head_dim = (
            config.n_head,
            config.n_kv_head,
            config.head_dim,
        )
        self.q_proj = Linear(config.n_embd, config.n_head * config.head_dim)
        self.kv_proj = Linear(config.n_embd, 2 * config.n_kv_head * config.head_dim)
        self.out_proj = Linear(config.n_embd, config.n_embd)

    def forward(self, x, kv_cache: KVCache | None = None, layer: int = 0):
        B, T, C = x.shape
        q = self.q_proj(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, H, T, D)
        k, v = (
            self.kv_proj(x).view(B, T, 2, self.n_kv_head, self.head_dim).permute(2, 0, 3, 1, 4)
        )  # (B, Hkv, T, D)
        if kv_cache is not None:
            # The only change a cache makes: store this step's k, v and attend over all stored ones.
            k, v = kv_cache.update(layer, k, v)  # (B, Hkv, S, D)
        if kv_cache is None:
            mask = causal_mask(T, k.size(2), device=x.device)
        else:  # the cache knows where each sequence's tokens sit (llmlab.serve's differ per row)
            mask = kv_cache.attention_mask(T, k.size(2), x.device)
        if self.n_kv_head == self.n_head:
            y, weights = attention(q, k, v, mask)  # (B, H, T, D), (B, H, T, S)
        else:
            # Grouped-query attention: query head h reads key/value head h // group. The group's
            # queries become extra rows against their one K and V, which are read in place, not
            # copied out to every head (a copy would save the memory but not the reads).
            group = self.n_head // self.n_kv_head
            rows = q.reshape(B, self.n_kv_head, group * T, self.head_dim)
            mask = mask.repeat(*[1] * (mask.dim() - 2), group, 1)  # each group row's own mask
            y, weights = attention(rows, k, v, mask)  # (B, Hkv, group * T, D), (..., S)
            y = y.view(B, self.n_head, T, self.head_dim)
            weights = weights.view(B, self.n_head, T, -1)
        y = y.transpose(1, 2).reshape(B, T, C)  # heads side by side again
        return self.out_proj(y), weights


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.fc = Linear(config.n_embd, 4 * config.n_embd)
        self.proj = Linear(4 * config.n_embd, config.n_embd)

    def forward(self, x):
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    """Pre-LN transformer block (GPT-2, LLaMA): x + f(norm(x)), twice."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.mlp = MLP(config)

    def forward(self, x, kv_cache=None, layer=0):
        a, weights = self.attn(self.ln_1(x), kv_cache, layer)
        x = x + a  # residual: the block only adds to what it was given
        x = x + self.mlp(self.ln_2(x))
        return x, weights


class TinyGPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"config must be a GPTConfig, got {type(config).__name__}")
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)  # token embeddings
        self.wpe = nn.Embedding(config.block_size, config.n_embd)  # learned position embeddings
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd)
        # Untied from wte (GPT-2 ties them) so the head, the largest matrix, can be stored
        # (C, V) like every other Linear; see Linear.
        self.lm_head = Linear(config.n_embd, config.vocab_size)
        for emb in (self.wte, self.wpe):
            nn.init.normal_(emb.weight, std=0.02)

    @property
    def device(self) -> torch.device:
        return self.wte.weight.device

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def new_kv_cache(self, batch_size: int = 1, max_len: int | None = None) -> KVCache:
        """An empty cache for this model, on its device and in its dtype."""
        c = self.config
        return KVCache(
            n_layer=c.n_layer,
            n_kv_head=c.n_kv_head,
            head_dim=c.head_dim,
            batch_size=batch_size,
            max_len=c.block_size if max_len is None else max_len,
            device=self.device,
            dtype=self.wte.weight.dtype,
        )

    def forward(
        self, idx, kv_cache: KVCache | None = None, return_attention=False, last_only=False
    ):
        """Logits for the next token at every position of idx.

        idx: (B, T) token ids. With a kv_cache, idx holds only the new tokens; they are placed
        after the cache.length tokens already stored there. last_only=True returns logits for the
        final position only (all that generation needs). return_attention=True also returns a
        list, one (B, H, T, S) tensor of attention weights per layer.
        """
        self._check_ids(idx, kv_cache)
        B, T = idx.shape
        if kv_cache is None:
            pos = torch.arange(T, device=idx.device)  # (T,)
        else:
            pos = kv_cache.positions(T, idx.device)  # (T,), or (B, T): each row its own start
        x = self.wte(idx) + self.wpe(pos)  # (B, T, C)
        attentions = []
        for layer, block in enumerate(self.blocks):
            x, weights = block(x, kv_cache, layer)
            attentions.append(weights)
        if kv_cache is not None:
            kv_cache.advance(T)
        if last_only:
            x = x[:, -1:, :]
        logits = self.lm_head(self.ln_f(x))  # (B, T, V)
        return (logits, attentions) if return_attention else logits

    def _check_ids(self, idx, kv_cache):
        c = self.config
        if not isinstance(idx, torch.Tensor):
            raise TypeError(f"idx must be a torch.Tensor of token ids, got {type(idx).__name__}")
        if idx.dtype != torch.long:
            raise TypeError(f"idx must have dtype torch.long (token ids), got {idx.dtype}")
        if idx.dim() != 2 or idx.size(1) == 0:
            raise ValueError(
                f"idx must have shape (batch, tokens) with tokens >= 1, got {tuple(idx.shape)}"
            )
        check_token_ids(idx, c.vocab_size, "idx")
        start = 0 if kv_cache is None else kv_cache.length
        if start + idx.size(1) > c.block_size:
            raise ValueError(
                f"sequence too long: {start} cached + {idx.size(1)} new tokens > block_size {c.block_size}"
            )

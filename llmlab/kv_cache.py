"""The KV cache: every layer's keys and values for the tokens seen so far.

Past queries are never needed again (each query is used once, to produce its own position's
output), but every later token attends to all past keys and values. So a decoder keeps K and V,
and each new token costs one row of projections instead of recomputing the whole prefix.

The cache is preallocated for max_len positions: appending writes into a slice, where a
torch.cat per step would copy the whole cache every token.
"""

import torch


def kv_cache_bytes(n_layer, n_kv_head, head_dim, seq_len, batch_size=1, bytes_per_element=4) -> int:
    """The textbook size: 2 (K and V) x layers x batch x kv_heads x seq_len x head_dim x bytes."""
    sizes = dict(
        n_layer=n_layer,
        n_kv_head=n_kv_head,
        head_dim=head_dim,
        seq_len=seq_len,
        batch_size=batch_size,
        bytes_per_element=bytes_per_element,
    )
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
        if value < 0 or (value == 0 and name != "seq_len"):
            raise ValueError(f"{name} must be positive, got {value}")
    return 2 * n_layer * batch_size * n_kv_head * seq_len * head_dim * bytes_per_element


class KVCache:
    def __init__(
        self, n_layer, n_kv_head, head_dim, batch_size, max_len, device=None, dtype=torch.float32
    ):
        for name, value in dict(
            n_layer=n_layer,
            n_kv_head=n_kv_head,
            head_dim=head_dim,
            batch_size=batch_size,
            max_len=max_len,
        ).items():
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"KVCache {name} must be an int, got {type(value).__name__}")
            if value < 1:
                raise ValueError(f"KVCache {name} must be >= 1, got {value}")
        shape = (n_layer, batch_size, n_kv_head, max_len, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.max_len = max_len
        self.length = 0  # positions filled in every layer

    @property
    def batch_size(self) -> int:
        return self.k.size(1)

    @property
    def nbytes(self) -> int:
        """Bytes the cache holds in memory (its full preallocated size)."""
        return self.k.nelement() * self.k.element_size() + self.v.nelement() * self.v.element_size()

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Store k, v (B, Hkv, T, D) after the filled positions; return all of them (B, Hkv, S, D).

        Every layer writes to the same positions; advance() moves past them once all layers have.
        """
        B, H, T, D = k.shape
        n_layer, _, n_kv_head, _, head_dim = self.k.shape
        if not 0 <= layer < n_layer or H != n_kv_head or D != head_dim:
            raise ValueError(
                f"kv_cache was made for {n_layer} layers x {n_kv_head} kv heads x head_dim {head_dim}; "
                f"got layer {layer} with {H} heads x {D}: make the cache with model.new_kv_cache()"
            )
        if B != self.batch_size:
            raise ValueError(
                f"kv_cache holds a batch of {self.batch_size}, got keys for a batch of {B}"
            )
        end = self.length + T
        if end > self.max_len:
            raise ValueError(
                f"kv_cache is full: it holds {self.length} of max_len {self.max_len} positions "
                f"and cannot take {T} more; make a new cache or a longer one"
            )
        self.k[layer, :, :, self.length : end] = k
        self.v[layer, :, :, self.length : end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def positions(self, n_new: int, device=None) -> torch.Tensor:
        """Positions of the next n_new tokens, (n_new,): every row of the batch has the same."""
        return torch.arange(self.length, self.length + n_new, device=device)

    def attention_mask(self, n_new: int, n_keys: int, device=None) -> torch.Tensor:
        """(n_new, n_keys) bool: the new tokens are the last of n_keys and see up to themselves."""
        from llmlab.model import causal_mask  # here, not at the top: model.py imports this file

        return causal_mask(n_new, n_keys, device=device)

    def advance(self, n: int):
        self.length += n

    def reset(self):
        self.length = 0

"""Smaller KV caches, as drop-ins for KVCache: int8 keys and values, and a sliding window.

Int8KVCache stores every key and value vector as int8 plus one scale per token and head
(symmetric absmax: scale = max|x| / 127 over the head's D numbers, x ~ round(x / scale) * scale).
Per token, because a new token's scale never changes an old token's codes: the cache is written
once per position, as a real serving kernel does. It takes a quarter of an fp32 cache plus the
scales (2 bytes per D numbers with fp16 scales).

SlidingWindowKVCache keeps only the last `window` positions (a ring buffer, as Mistral 7B does):
memory stops growing at the window, and the model can no longer see older tokens.

Both implement what TinyGPT calls on a cache: update(layer, k, v), length, advance(n),
batch_size, nbytes, reset(). The model is unchanged: pass the cache as kv_cache=.
"""

import torch

from llmlab.kv_cache import KVCache

INT8_MAX = 127  # symmetric range [-127, 127]: -128 is left unused so that -x is representable


def quantize_int8(x: torch.Tensor, dim: int = -1, scale_dtype: torch.dtype | None = None):
    """Symmetric absmax int8 quantisation with one scale per slice along `dim`.

    Returns (q, scale): q is int8 shaped like x, scale has size 1 along `dim` (keepdim) and dtype
    scale_dtype (default x's dtype). x is recovered as dequantize_int8(q, scale) to within
    scale / 2 per element. An all-zero slice gets scale 0 and codes 0.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got {x.dtype}")
    if x.dim() == 0:
        raise ValueError("x must have at least one dimension to quantise along")
    if isinstance(dim, bool) or not isinstance(dim, int) or not -x.dim() <= dim < x.dim():
        raise ValueError(f"dim must be an int in [{-x.dim()}, {x.dim() - 1}], got {dim!r}")
    scale = x.abs().amax(dim=dim, keepdim=True).float() / INT8_MAX
    scale = scale.to(scale_dtype or x.dtype)
    # Quantise with the scale as stored, so the codes match the scale they will be read with.
    divisor = scale.float().clamp_min(torch.finfo(torch.float32).tiny)
    q = torch.round(x.float() / divisor).clamp_(-INT8_MAX, INT8_MAX).to(torch.int8)
    return q, scale


def dequantize_int8(q: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype | None = None):
    """q * scale as floats (dtype: the scale's, unless given)."""
    if not isinstance(q, torch.Tensor) or q.dtype != torch.int8:
        raise TypeError(f"q must be an int8 tensor, got {getattr(q, 'dtype', type(q).__name__)}")
    if not isinstance(scale, torch.Tensor) or not scale.is_floating_point():
        raise TypeError("scale must be a floating-point tensor")
    dtype = dtype or scale.dtype
    return (q.float() * scale.float()).to(dtype)


def _check_sizes(kind, **sizes):
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{kind} {name} must be an int, got {type(value).__name__}")
        if value < 1:
            raise ValueError(f"{kind} {name} must be >= 1, got {value}")


class Int8KVCache(KVCache):
    """KVCache's interface over int8 codes and per-token, per-head scales.

    update() returns the stored keys and values dequantised to `dtype` (the model's), so
    attention sees exactly what the int8 cache can represent.
    """

    def __init__(
        self,
        n_layer,
        n_kv_head,
        head_dim,
        batch_size,
        max_len,
        device=None,
        dtype=torch.float32,
        scale_dtype=torch.float16,
    ):
        _check_sizes(
            "Int8KVCache",
            n_layer=n_layer,
            n_kv_head=n_kv_head,
            head_dim=head_dim,
            batch_size=batch_size,
            max_len=max_len,
        )
        if not (isinstance(scale_dtype, torch.dtype) and scale_dtype.is_floating_point):
            raise TypeError(f"scale_dtype must be a floating torch.dtype, got {scale_dtype!r}")
        shape = (n_layer, batch_size, n_kv_head, max_len, head_dim)
        self.k_q = torch.zeros(shape, device=device, dtype=torch.int8)
        self.v_q = torch.zeros(shape, device=device, dtype=torch.int8)
        self.k_scale = torch.zeros(shape[:-1] + (1,), device=device, dtype=scale_dtype)
        self.v_scale = torch.zeros(shape[:-1] + (1,), device=device, dtype=scale_dtype)
        self.dtype = dtype
        self.max_len = max_len
        self.length = 0

    @classmethod
    def for_model(cls, model, batch_size: int = 1, max_len: int | None = None, **kwargs):
        """An empty int8 cache shaped for `model` (like model.new_kv_cache())."""
        c = model.config
        return cls(
            c.n_layer,
            c.n_kv_head,
            c.head_dim,
            batch_size,
            c.block_size if max_len is None else max_len,
            device=model.device,
            dtype=model.wte.weight.dtype,
            **kwargs,
        )

    @property
    def batch_size(self) -> int:
        return self.k_q.size(1)

    @property
    def nbytes(self) -> int:
        """Bytes held: int8 codes plus scales, for the full preallocated length."""
        return sum(t.nelement() * t.element_size() for t in self._tensors())

    def _tensors(self):
        return (self.k_q, self.v_q, self.k_scale, self.v_scale)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Quantise and store k, v (B, Hkv, T, D); return all stored ones dequantised."""
        B, H, T, D = k.shape
        n_layer, _, n_kv_head, _, head_dim = self.k_q.shape
        if not 0 <= layer < n_layer or H != n_kv_head or D != head_dim:
            raise ValueError(
                f"kv_cache was made for {n_layer} layers x {n_kv_head} kv heads x head_dim "
                f"{head_dim}; got layer {layer} with {H} heads x {D}: make it with "
                "Int8KVCache.for_model(model)"
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
        span = slice(self.length, end)
        for x, codes, scales in ((k, self.k_q, self.k_scale), (v, self.v_q, self.v_scale)):
            q, scale = quantize_int8(x, dim=-1, scale_dtype=scales.dtype)
            codes[layer, :, :, span] = q
            scales[layer, :, :, span] = scale
        return (
            dequantize_int8(
                self.k_q[layer, :, :, :end], self.k_scale[layer, :, :, :end], self.dtype
            ),
            dequantize_int8(
                self.v_q[layer, :, :, :end], self.v_scale[layer, :, :, :end], self.dtype
            ),
        )


class SlidingWindowKVCache(KVCache):
    """A KVCache that keeps only the last `window` positions (a ring buffer).

    Positions keep counting (length is every token seen), so the model's position embeddings
    stay right; attention simply no longer reaches tokens older than the window. Once the
    window is full, tokens must be fed one at a time: the model's causal mask assumes every
    new query may see every returned key, which holds only for a single new token.
    """

    def __init__(
        self, n_layer, n_kv_head, head_dim, batch_size, window, device=None, dtype=torch.float32
    ):
        _check_sizes("SlidingWindowKVCache", window=window)
        super().__init__(n_layer, n_kv_head, head_dim, batch_size, window, device, dtype)
        self.window = window

    @classmethod
    def for_model(cls, model, window: int, batch_size: int = 1):
        c = model.config
        return cls(
            c.n_layer,
            c.n_kv_head,
            c.head_dim,
            batch_size,
            window,
            device=model.device,
            dtype=model.wte.weight.dtype,
        )

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Store k, v (B, Hkv, T, D); return the last min(length + T, window) positions in order."""
        B, H, T, D = k.shape
        if self.length + T > self.window and T != 1:
            raise ValueError(
                f"sliding window of {self.window} holds {self.length} tokens; feed tokens one "
                f"at a time past the window (got {T} at once)"
            )
        if not 0 <= layer < self.k.size(0) or (B, H, D) != (
            self.batch_size,
            self.k.size(2),
            self.k.size(4),
        ):
            raise ValueError(
                f"kv_cache was made for {self.k.size(0)} layers, batch {self.batch_size}, "
                f"{self.k.size(2)} kv heads x head_dim {self.k.size(4)}; got layer {layer} "
                f"with keys shaped {tuple(k.shape)}"
            )
        if self.length + T <= self.window:
            end = self.length + T
            self.k[layer, :, :, self.length : end] = k
            self.v[layer, :, :, self.length : end] = v
            return self.k[layer, :, :, :end], self.v[layer, :, :, :end]
        slot = self.length % self.window  # overwrite the oldest position
        self.k[layer, :, :, slot] = k[:, :, 0]
        self.v[layer, :, :, slot] = v[:, :, 0]
        order = [(slot + 1 + i) % self.window for i in range(self.window)]  # oldest first
        return self.k[layer, :, :, order], self.v[layer, :, :, order]


class CachedForward:
    """Calls `model` through a fresh cache from `make_cache(batch_size)`: a stand-in for the model
    wherever a function calls model(idx) (e.g. agreement.verb_preferences).

    one_at_a_time=True feeds the tokens one by one (decode), as a sliding window requires.
    """

    def __init__(self, model, make_cache, one_at_a_time: bool = False):
        self.model, self.make_cache, self.one_at_a_time = model, make_cache, one_at_a_time

    @property
    def device(self):
        return self.model.device

    @property
    def config(self):
        return self.model.config

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        cache = self.make_cache(idx.size(0))
        with torch.no_grad():
            if not self.one_at_a_time:
                return self.model(idx, kv_cache=cache)
            steps = [self.model(idx[:, t : t + 1], kv_cache=cache) for t in range(idx.size(1))]
        return torch.cat(steps, dim=1)


def int8_kv_bytes(n_layer, n_kv_head, head_dim, seq_len, batch_size=1, scale_bytes=2) -> int:
    """Int8KVCache.nbytes by formula: 1 byte per number plus one scale per token and head."""
    per_position = n_kv_head * (head_dim + scale_bytes)
    return 2 * n_layer * batch_size * seq_len * per_position

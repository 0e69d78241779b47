"""The cost model: FLOPs and bytes of one forward step of the course's model, from its shape alone.

A step feeds `new_tokens` tokens for each of `batch` sequences to a model whose KV cache already
holds `cached` positions. Counting what the engine's forward pass does (llmlab/model.py):

    FLOPs (2 per multiply-add, only the matrix products; see below)
      qkv_proj     2 B T C (H D + 2 Hkv D)    every new token's query, key and value
      attn_scores  2 B H T S D                q k^T against all S = cached + T positions
      attn_values  2 B H T S D                the weights times V
      out_proj     2 B T (H D) C
      mlp          2 B T C (4C) x 2           up to 4C wide and back
      lm_head      2 B T' C V                 T' = 1 (generation asks for the last logits only)
    summed over the layers (all but lm_head).

    bytes (each read once per step, at bytes_per_element each)
      weights      every parameter, except that of the two embedding tables only the rows of
                   the step's tokens and positions are read
      kv_read      the K and V of all S positions attention reads, every layer
      kv_write     the K and V of the T new positions stored in the cache (0 without a cache)
      activations  the non-weight input read and the output written by each matrix product,
                   a lower bound: element-wise passes (LayerNorm, GELU, softmax, bias, residual)
                   move more in an unfused implementation like this one

Element-wise work (LayerNorm, GELU, softmax, the mask, biases, residual adds) is left out of the
FLOPs: it is a few operations per number against C to 4C multiply-adds per number in the
products, and torch.utils.flop_counter.FlopCounterMode (which tests/test_cost.py matches exactly)
leaves it out too.

The engine computes every q.k score, the causal mask then discards the future half, so a
prefill of T tokens counts T x T scores, not T (T + 1) / 2: what this engine does. Fused kernels
(FlashAttention) skip the masked blocks.

`config` is a llmlab.GPTConfig, a llmlab.shapes.ModelShape, or any object with the fields
n_layer, n_embd, n_head, n_kv_head, head_dim, vocab_size, block_size. The MLP is the engine's
(GPT-2's): 4 x n_embd wide, two matrices. Llama-style models use a three-matrix SwiGLU MLP of
another width, so for them the MLP figures are the GPT-2-style estimate, not the real count.
"""

import numbers
from dataclasses import dataclass

FLOP_PARTS = ("qkv_proj", "out_proj", "attn_scores", "attn_values", "mlp", "lm_head")
BYTE_PARTS = ("weights", "kv_read", "kv_write", "activations")
_CONFIG_FIELDS = (
    "n_layer",
    "n_embd",
    "n_head",
    "n_kv_head",
    "head_dim",
    "vocab_size",
    "block_size",
)


@dataclass(frozen=True)
class StepCost:
    """FLOPs and bytes of one forward step (or a sum of steps), split by part."""

    flops: dict[str, int]
    bytes: dict[str, int]

    @property
    def total_flops(self) -> int:
        return sum(self.flops.values())

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes.values())

    @property
    def intensity(self) -> float:
        """Arithmetic intensity: FLOPs per byte moved. Above the machine's ridge point a step is
        compute-bound, below it memory-bound."""
        return self.total_flops / self.total_bytes

    def __add__(self, other: "StepCost") -> "StepCost":
        if not isinstance(other, StepCost):
            return NotImplemented
        return StepCost(
            {k: self.flops[k] + other.flops[k] for k in FLOP_PARTS},
            {k: self.bytes[k] + other.bytes[k] for k in BYTE_PARTS},
        )


def _int_arg(name, value, lowest):
    # numbers.Integral also admits numpy integers, as from np.arange.
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < lowest:
        raise ValueError(f"{name} must be >= {lowest}, got {value}")
    return int(value)


def _shape(config):
    """The config's fields as ints, checked, or an error naming the missing or bad field."""
    missing = [f for f in _CONFIG_FIELDS if not hasattr(config, f)]
    if missing:
        raise TypeError(
            f"config must be a GPTConfig or have the fields {', '.join(_CONFIG_FIELDS)}; "
            f"{type(config).__name__} lacks {', '.join(missing)}"
        )
    shape = {f: _int_arg(f"config.{f}", getattr(config, f), 1) for f in _CONFIG_FIELDS}
    if shape["n_head"] % shape["n_kv_head"]:
        raise ValueError(
            f"config.n_kv_head ({shape['n_kv_head']}) must divide config.n_head ({shape['n_head']})"
        )
    return shape


def n_weights(config) -> dict[str, int]:
    """Parameters of the engine's model with this shape: {"embeddings": ..., "other": ...}.

    Matches TinyGPT.num_params() for a GPTConfig (tests/test_cost.py checks it).
    """
    s = _shape(config)
    C, HD, KVD = s["n_embd"], s["n_head"] * s["head_dim"], 2 * s["n_kv_head"] * s["head_dim"]
    per_block = (
        2 * C  # ln_1 (weight and bias)
        + C * HD + HD  # q_proj
        + C * KVD + KVD  # kv_proj
        + HD * C + C  # out_proj
        + 2 * C  # ln_2
        + C * 4 * C + 4 * C  # mlp.fc
        + 4 * C * C + C  # mlp.proj
    )  # fmt: skip
    other = s["n_layer"] * per_block + 2 * C + C * s["vocab_size"] + s["vocab_size"]
    return {"embeddings": (s["vocab_size"] + s["block_size"]) * C, "other": other}


def step_cost(
    config,
    batch: int = 1,
    new_tokens: int = 1,
    cached: int = 0,
    bytes_per_element: int = 4,
    *,
    with_cache: bool = True,
    all_logits: bool = False,
) -> StepCost:
    """FLOPs and bytes of one forward step: `new_tokens` per sequence after `cached` ones.

    with_cache=False: a forward without a KV cache (then `cached` must be 0 and nothing is
    written to a cache). all_logits=True: logits for every new position, as in training; by
    default only the last position's, as generation asks (TinyGPT's last_only=True).
    """
    s = _shape(config)
    B = _int_arg("batch", batch, 1)
    T = _int_arg("new_tokens", new_tokens, 1)
    cached = _int_arg("cached", cached, 0)
    bpe = _int_arg("bytes_per_element", bytes_per_element, 1)
    if not isinstance(with_cache, bool) or not isinstance(all_logits, bool):
        raise TypeError("with_cache and all_logits must be True or False")
    if not with_cache and cached:
        raise ValueError(f"cached must be 0 without a cache (with_cache=False), got {cached}")
    S = cached + T
    if S > s["block_size"]:
        raise ValueError(
            f"cached ({cached}) + new_tokens ({T}) = {S} exceeds the model's context "
            f"block_size ({s['block_size']})"
        )
    L, C, H, Hkv, D, V = (
        s[k] for k in ("n_layer", "n_embd", "n_head", "n_kv_head", "head_dim", "vocab_size")
    )
    HD, KVD = H * D, 2 * Hkv * D
    T_logits = T if all_logits else 1
    flops = {
        "qkv_proj": L * 2 * B * T * C * (HD + KVD),
        "out_proj": L * 2 * B * T * HD * C,
        "attn_scores": L * 2 * B * H * T * S * D,
        "attn_values": L * 2 * B * H * T * S * D,
        "mlp": L * 2 * (2 * B * T * C * 4 * C),
        "lm_head": 2 * B * T_logits * C * V,
    }
    per_layer_activations = (
        (B * T * C + B * T * (HD + KVD))  # q/kv projections: read x, write q, k, v
        + (B * H * T * D + B * H * T * S)  # scores: read q (k is kv_read), write scores
        + (B * H * T * S + B * H * T * D)  # values: read weights (v is kv_read), write output
        + (B * T * HD + B * T * C)  # out_proj
        + (B * T * C + B * T * 4 * C)  # mlp.fc
        + (B * T * 4 * C + B * T * C)  # mlp.proj
    )
    nbytes = {
        "weights": bpe * (n_weights(config)["other"] + 2 * B * T * C),  # + embedding rows
        "kv_read": bpe * L * B * Hkv * S * D * 2,
        "kv_write": bpe * L * B * Hkv * T * D * 2 if with_cache else 0,
        "activations": bpe * (L * per_layer_activations + B * T_logits * C + B * T_logits * V),
    }
    return StepCost(flops, nbytes)


def generation_steps(
    config,
    prompt_len: int,
    new_tokens: int,
    use_cache: bool = True,
    batch: int = 1,
    bytes_per_element: int = 4,
) -> list[StepCost]:
    """The cost of each forward step llmlab.generate makes, in order.

    With a cache: one prefill of the prompt, then one token per step against a growing cache.
    Without: every step feeds the whole sequence so far. Producing n tokens takes n steps (the
    last token is picked, never fed back).
    """
    P = _int_arg("prompt_len", prompt_len, 1)
    N = _int_arg("new_tokens", new_tokens, 0)
    if not isinstance(use_cache, bool):
        raise TypeError(f"use_cache must be True or False, got {use_cache!r}")
    block_size = _shape(config)["block_size"]
    if P + N > block_size:
        raise ValueError(
            f"prompt_len ({P}) + new_tokens ({N}) exceeds the model's context "
            f"block_size ({block_size})"
        )
    if use_cache:
        return [
            step_cost(config, batch, P, 0, bytes_per_element)
            if i == 0
            else step_cost(config, batch, 1, P + i - 1, bytes_per_element)
            for i in range(N)
        ]
    return [
        step_cost(config, batch, P + i, 0, bytes_per_element, with_cache=False) for i in range(N)
    ]


def generation_cost(
    config,
    prompt_len: int,
    new_tokens: int,
    use_cache: bool = True,
    batch: int = 1,
    bytes_per_element: int = 4,
) -> StepCost:
    """The summed cost of generating new_tokens after a prompt (see generation_steps)."""
    steps = generation_steps(config, prompt_len, new_tokens, use_cache, batch, bytes_per_element)
    total = StepCost(dict.fromkeys(FLOP_PARTS, 0), dict.fromkeys(BYTE_PARTS, 0))
    for step in steps:
        total = total + step
    return total


def predict_seconds(cost: StepCost, bandwidth_bytes_per_s: float, flops_per_s: float) -> float:
    """Roofline time: the slower of moving the bytes and doing the FLOPs.

    A lower bound: real steps add per-operation overheads (visible at small sizes) and run
    their products below peak.
    """
    if not isinstance(cost, StepCost):
        raise TypeError(f"cost must be a StepCost, got {type(cost).__name__}")
    for name, value in (
        ("bandwidth_bytes_per_s", bandwidth_bytes_per_s),
        ("flops_per_s", flops_per_s),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a number, got {type(value).__name__}")
        if not value > 0 or value == float("inf"):
            raise ValueError(f"{name} must be a positive, finite rate, got {value}")
    return max(cost.total_bytes / bandwidth_bytes_per_s, cost.total_flops / flops_per_s)

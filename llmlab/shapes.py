"""Published model shapes, and what their KV caches and weights weigh.

A ModelShape has the same field names as GPTConfig (n_layer, n_embd, n_head, n_kv_head,
head_dim, block_size, vocab_size), so every function here, and the cost model, takes either.
Each figure comes from the paper or the released config named in `source`; n_params is the
exact count of the released checkpoint where one exists (recomputed from the layer sizes in
tests/test_shapes.py), else the paper's figure.

    >>> kv_cache_bytes_for("Llama-2-7B", seq_len=1, dtype="fp16")
    524288
"""

from dataclasses import dataclass, fields

from llmlab.kv_cache import kv_cache_bytes
from llmlab.model import GPTConfig, TinyGPT

DTYPE_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2, "fp8": 1, "int8": 1}


@dataclass(frozen=True)
class ModelShape:
    name: str
    n_layer: int
    n_embd: int
    n_head: int  # query heads
    n_kv_head: int  # key/value heads: n_head (MHA), fewer (GQA), 1 (MQA)
    head_dim: int
    block_size: int  # context the model was trained for
    vocab_size: int
    n_params: int
    source: str  # where the figures come from
    # Attention window, if the model was trained with one (Mistral 7B: 4096): a rolling-buffer
    # cache then keeps only the last sliding_window positions. None: full attention.
    sliding_window: int | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"ModelShape.name must be a non-empty str, got {self.name!r}")
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("name", "source") or (f.name == "sliding_window" and value is None):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ModelShape.{f.name} must be a positive int, got {value!r}")
        if self.n_head % self.n_kv_head != 0:
            raise ValueError(
                f"ModelShape.n_kv_head ({self.n_kv_head}) must divide n_head ({self.n_head})"
            )

    @property
    def attention_kind(self) -> str:
        """MHA (one KV head per query head), MQA (one KV head in all) or GQA (in between)."""
        if self.n_kv_head == self.n_head:
            return "MHA"
        return "MQA" if self.n_kv_head == 1 else "GQA"


_GPT2 = "Radford et al. 2019; https://huggingface.co/openai-community/{}/blob/main/config.json"
_LLAMA2 = "Touvron et al. 2023 (Llama 2), Table 1; https://huggingface.co/meta-llama/{}/blob/main/config.json"
_LLAMA3 = "Dubey et al. 2024 (Llama 3), Table 3; https://huggingface.co/meta-llama/{}/blob/main/config.json"

_SHAPES = [
    # name, n_layer, n_embd, n_head, n_kv_head, head_dim, block_size, vocab_size, n_params, source
    ("GPT-2 small", 12, 768, 12, 12, 64, 1024, 50257, 124_439_808, _GPT2.format("gpt2")),
    ("GPT-2 medium", 24, 1024, 16, 16, 64, 1024, 50257, 354_823_168, _GPT2.format("gpt2-medium")),
    ("GPT-2 large", 36, 1280, 20, 20, 64, 1024, 50257, 774_030_080, _GPT2.format("gpt2-large")),
    ("GPT-2 XL", 48, 1600, 25, 25, 64, 1024, 50257, 1_557_611_200, _GPT2.format("gpt2-xl")),
    (
        "GPT-3 175B",
        96,
        12288,
        96,
        96,
        128,
        2048,
        50257,
        175_000_000_000,
        "Brown et al. 2020 (GPT-3), Table 2.1 (n_params is the paper's 175.0B)",
    ),
    (
        "Llama-2-7B",
        32,
        4096,
        32,
        32,
        128,
        4096,
        32000,
        6_738_415_616,
        _LLAMA2.format("Llama-2-7b-hf"),
    ),
    (
        "Llama-2-13B",
        40,
        5120,
        40,
        40,
        128,
        4096,
        32000,
        13_015_864_320,
        _LLAMA2.format("Llama-2-13b-hf"),
    ),
    (
        "Llama-2-70B",
        80,
        8192,
        64,
        8,
        128,
        4096,
        32000,
        68_976_648_192,
        _LLAMA2.format("Llama-2-70b-hf"),
    ),
    (
        "Llama-3-8B",
        32,
        4096,
        32,
        8,
        128,
        8192,
        128256,
        8_030_261_248,
        _LLAMA3.format("Meta-Llama-3-8B"),
    ),
    (
        "Llama-3-70B",
        80,
        8192,
        64,
        8,
        128,
        8192,
        128256,
        70_553_706_496,
        _LLAMA3.format("Meta-Llama-3-70B"),
    ),
    (  # Llama 3.1: Llama 3's shapes, trained on to a 128k context (the 3.0 release had 8k)
        "Llama-3.1-8B",
        32,
        4096,
        32,
        8,
        128,
        131072,
        128256,
        8_030_261_248,
        "Dubey et al. 2024 (Llama 3.1: context 131,072); "
        "https://huggingface.co/meta-llama/Llama-3.1-8B/blob/main/config.json",
    ),
    (
        "Mistral-7B",
        32,
        4096,
        32,
        8,
        128,
        8192,
        32000,
        7_241_732_096,
        "Jiang et al. 2023 (Mistral 7B), Table 1 (context 8192, sliding window 4096); "
        "https://huggingface.co/mistralai/Mistral-7B-v0.1/blob/main/config.json",
        4096,
    ),
    (
        "Falcon-7B",
        32,
        4544,
        71,
        1,
        64,
        2048,
        65024,
        6_921_720_704,
        "Almazrouei et al. 2023 (Falcon); multi-query attention; "
        "https://huggingface.co/tiiuae/falcon-7b/blob/main/config.json",
    ),
]

MODEL_SHAPES: dict[str, ModelShape] = {row[0]: ModelShape(*row) for row in _SHAPES}


def get_shape(name: str) -> ModelShape:
    """The registry entry called `name` (exact spelling, case-insensitive)."""
    if not isinstance(name, str):
        raise TypeError(f"model name must be a str, got {type(name).__name__}")
    by_lower = {key.lower(): shape for key, shape in MODEL_SHAPES.items()}
    if name.lower() not in by_lower:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(MODEL_SHAPES)}")
    return by_lower[name.lower()]


def dtype_bytes(dtype: str) -> int:
    """Bytes per element of a dtype name in DTYPE_BYTES."""
    if not isinstance(dtype, str) or dtype.lower() not in DTYPE_BYTES:
        raise ValueError(f"unknown dtype {dtype!r}; valid dtypes: {', '.join(DTYPE_BYTES)}")
    return DTYPE_BYTES[dtype.lower()]


def as_shape(model) -> ModelShape | GPTConfig:
    """A ModelShape or GPTConfig from a registry name, a ModelShape, a GPTConfig or a TinyGPT."""
    if isinstance(model, str):
        return get_shape(model)
    if isinstance(model, TinyGPT):
        return model.config
    if isinstance(model, (ModelShape, GPTConfig)):
        return model
    raise TypeError(
        "model must be a registry name (str), a ModelShape, a GPTConfig or a TinyGPT, "
        f"got {type(model).__name__}"
    )


def kv_cache_bytes_for(model, seq_len: int, batch_size: int = 1, dtype: str = "fp16") -> int:
    """Bytes of K and V for `batch_size` sequences of `seq_len` tokens, at `dtype`.

    Counts KV heads, not query heads: 2 x n_layer x batch x n_kv_head x seq_len x head_dim x
    bytes. Quantised caches also keep scales; Int8KVCache.nbytes counts them.
    """
    shape = as_shape(model)
    return kv_cache_bytes(
        shape.n_layer,
        shape.n_kv_head,
        shape.head_dim,
        seq_len,
        batch_size=batch_size,
        bytes_per_element=dtype_bytes(dtype),
    )


def cached_positions(model, seq_len: int) -> int:
    """Positions a sequence of seq_len tokens keeps in its KV cache: all of them, or only the
    last `sliding_window` for a model trained with a window and served with a rolling buffer
    (Mistral 7B: 4096). A GPTConfig has no window: all of them."""
    shape = as_shape(model)
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 0:
        raise ValueError(f"seq_len must be an int >= 0, got {seq_len!r}")
    window = getattr(shape, "sliding_window", None)
    return seq_len if window is None else min(seq_len, window)


def past_context(model, seq_len: int) -> bool:
    """True when seq_len is longer than the context the model was trained for (block_size): a
    KV size there is hypothetical, the model does not serve such sequences."""
    return seq_len > as_shape(model).block_size


def n_params(model) -> int:
    """Parameter count: the registry's figure, or counted from a GPTConfig's TinyGPT."""
    shape = as_shape(model)
    if isinstance(shape, ModelShape):
        return shape.n_params
    from llmlab.cost import n_weights  # counted from the shape, equal to TinyGPT.num_params()

    return sum(n_weights(shape).values())


def weight_bytes(model, dtype: str = "fp16") -> int:
    """Bytes the weights take at `dtype`."""
    return n_params(model) * dtype_bytes(dtype)


def sequences_that_fit(
    model, memory_bytes: int, seq_len: int, dtype: str = "fp16", kv_dtype: str | None = None
) -> int:
    """How many sequences of seq_len tokens have room for their KV cache in memory_bytes,
    after the weights (at dtype) are loaded; kv_dtype defaults to dtype. 0 if none fit."""
    if isinstance(memory_bytes, bool) or not isinstance(memory_bytes, (int, float)):
        raise TypeError(f"memory_bytes must be a number, got {type(memory_bytes).__name__}")
    if memory_bytes <= 0:
        raise ValueError(f"memory_bytes must be > 0, got {memory_bytes}")
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
        raise ValueError(f"seq_len must be an int >= 1, got {seq_len!r}")
    free = memory_bytes - weight_bytes(model, dtype)
    per_sequence = kv_cache_bytes_for(model, seq_len, 1, kv_dtype or dtype)
    return max(0, int(free // per_sequence))


def markdown_table(headers, rows) -> str:
    """A Markdown table (the book and JupyterLab both render it) from headers and rows of cells;
    numbers are right-aligned, everything else left-aligned."""
    headers = [str(h) for h in headers]
    rows = [list(row) for row in rows]
    if any(len(row) != len(headers) for row in rows):
        raise ValueError(f"every row must have {len(headers)} cells, like the headers")
    numeric = [
        bool(rows) and all(isinstance(row[i], (int, float)) for row in rows)
        for i in range(len(headers))
    ]

    def cell(value):
        if isinstance(value, float):
            return f"{value:,.2f}"
        if isinstance(value, int) and not isinstance(value, bool):
            return f"{value:,}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |"]
    lines.append("|" + "|".join("---:" if n else ":---" for n in numeric) + "|")
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)

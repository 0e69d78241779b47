"""llmlab: the course's lab bench. A tiny GPT with a KV cache, and the tools the chapters measure with."""

from llmlab.checkpoint import load_agreement_model
from llmlab.generate import generate
from llmlab.kv_cache import KVCache, kv_cache_bytes
from llmlab.model import GPTConfig, TinyGPT, attention, causal_mask

__all__ = [
    "GPTConfig",
    "KVCache",
    "TinyGPT",
    "attention",
    "causal_mask",
    "generate",
    "kv_cache_bytes",
    "load_agreement_model",
]

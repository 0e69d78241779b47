"""The model-shape registry and the KV calculator: figures consistent, bytes equal to real caches."""

import dataclasses

import pytest
import torch

import llmlab
from llmlab.shapes import (
    DTYPE_BYTES,
    MODEL_SHAPES,
    ModelShape,
    dtype_bytes,
    get_shape,
    kv_cache_bytes_for,
    n_params,
    sequences_that_fit,
    weight_bytes,
)

REQUIRED = [
    "GPT-2 small",
    "GPT-2 medium",
    "GPT-2 large",
    "GPT-2 XL",
    "GPT-3 175B",
    "Llama-2-7B",
    "Llama-2-13B",
    "Llama-2-70B",
    "Llama-3-8B",
    "Llama-3-70B",
    "Mistral-7B",
]


def test_registry_has_the_required_models_with_sources():
    for name in REQUIRED:
        shape = MODEL_SHAPES[name]
        assert shape.name == name
        assert shape.source and ("http" in shape.source or "et al." in shape.source)


def test_field_names_match_gptconfig():
    config_fields = {f.name for f in dataclasses.fields(llmlab.GPTConfig)} | {"head_dim"}
    shape_fields = {f.name for f in dataclasses.fields(ModelShape)}
    assert config_fields <= shape_fields


@pytest.mark.parametrize("shape", MODEL_SHAPES.values(), ids=list(MODEL_SHAPES))
def test_heads_times_width_is_the_model_width(shape):
    assert shape.n_head * shape.head_dim == shape.n_embd
    assert shape.n_head % shape.n_kv_head == 0


def _gpt2_params(s):
    # per layer: QKV + out projections with biases, MLP 4x with biases, two LayerNorms
    per_layer = 12 * s.n_embd**2 + 13 * s.n_embd
    return s.n_layer * per_layer + (s.vocab_size + s.block_size) * s.n_embd + 2 * s.n_embd


def _llama_params(s, ffn):
    kv_width = s.n_kv_head * s.head_dim
    per_layer = 2 * s.n_embd**2 + 2 * s.n_embd * kv_width + 3 * s.n_embd * ffn + 2 * s.n_embd
    return s.n_layer * per_layer + 2 * s.vocab_size * s.n_embd + s.n_embd


@pytest.mark.parametrize("name", ["GPT-2 small", "GPT-2 medium", "GPT-2 large", "GPT-2 XL"])
def test_gpt2_parameter_counts_follow_from_the_shape(name):
    shape = get_shape(name)
    assert shape.n_params == _gpt2_params(shape)


@pytest.mark.parametrize(
    "name, ffn",
    [
        ("Llama-2-7B", 11008),
        ("Llama-2-13B", 13824),
        ("Llama-2-70B", 28672),
        ("Llama-3-8B", 14336),
        ("Llama-3-70B", 28672),
        ("Mistral-7B", 14336),
    ],
)
def test_llama_family_parameter_counts_follow_from_the_shape(name, ffn):
    shape = get_shape(name)
    assert shape.n_params == _llama_params(shape, ffn)


def test_attention_kinds():
    assert get_shape("Llama-2-7B").attention_kind == "MHA"
    assert get_shape("Llama-2-70B").attention_kind == "GQA"
    assert get_shape("Falcon-7B").attention_kind == "MQA"


@pytest.mark.parametrize(
    "name, per_token",
    [  # shared/reference/accuracy.md, worked numbers (fp16)
        ("Llama-2-7B", 524_288),
        ("Llama-2-70B", 327_680),
        ("Llama-3-8B", 131_072),
        ("GPT-3 175B", 4_718_592),
    ],
)
def test_published_bytes_per_token(name, per_token):
    assert kv_cache_bytes_for(name, 1) == per_token
    assert kv_cache_bytes_for(name, 2048, batch_size=3, dtype="int8") == per_token // 2 * 2048 * 3


def test_llama2_7b_2048_tokens_is_one_gib():
    assert kv_cache_bytes_for("Llama-2-7B", 2048) == 2**30


@pytest.mark.parametrize(
    "config",
    [
        llmlab.GPTConfig(vocab_size=16, block_size=24, n_layer=3, n_head=4, n_embd=32),
        llmlab.GPTConfig(vocab_size=16, block_size=20, n_layer=2, n_head=8, n_embd=64, n_kv_head=2),
        llmlab.GPTConfig(vocab_size=16, block_size=12, n_layer=1, n_head=6, n_embd=48, n_kv_head=1),
    ],
)
@pytest.mark.parametrize("dtype, torch_dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_formula_equals_the_bytes_of_a_real_cache(config, dtype, torch_dtype):
    model = llmlab.TinyGPT(config).to(torch_dtype)
    cache = model.new_kv_cache(batch_size=3)
    measured = sum(t.untyped_storage().nbytes() for t in (cache.k, cache.v))
    assert kv_cache_bytes_for(config, config.block_size, 3, dtype) == measured == cache.nbytes
    assert kv_cache_bytes_for(model, config.block_size, 3, dtype) == measured


def test_query_heads_would_overstate_gqa():
    shape = get_shape("Llama-2-70B")
    wrong = dataclasses.replace(shape, n_kv_head=shape.n_head)
    assert kv_cache_bytes_for(wrong, 100) == 8 * kv_cache_bytes_for(shape, 100)


def test_weight_bytes():
    assert weight_bytes("Llama-2-7B", "fp16") == 2 * 6_738_415_616
    model = llmlab.load_agreement_model()
    assert n_params(model.config) == model.num_params()
    assert weight_bytes(model.config, "fp32") == 4 * model.num_params()
    gqa = llmlab.GPTConfig(vocab_size=11, block_size=9, n_layer=2, n_head=8, n_embd=32, n_kv_head=2)
    assert n_params(gqa) == llmlab.TinyGPT(gqa).num_params()


def test_sequences_that_fit_an_80_gb_gpu():
    # (80e9 - 13.48e9) / 2.147e9 bytes per 4096-token sequence = 30.98
    assert sequences_that_fit("Llama-2-7B", 80e9, 4096) == 30
    assert sequences_that_fit("Llama-2-7B", 80e9, 4096, kv_dtype="int8") == 61
    assert sequences_that_fit("Llama-2-70B", 80e9, 4096) == 0  # 138 GB of weights alone
    with pytest.raises(ValueError, match="memory_bytes"):
        sequences_that_fit("Llama-2-7B", -1, 4096)


def test_unknown_names_and_dtypes_list_the_valid_ones():
    with pytest.raises(ValueError, match="valid names: GPT-2 small.*Mistral-7B"):
        get_shape("GPT-5")
    with pytest.raises(ValueError, match="valid dtypes: fp32, fp16, bf16, fp8, int8"):
        kv_cache_bytes_for("Llama-2-7B", 10, dtype="fp4")
    with pytest.raises(ValueError, match="valid dtypes"):
        dtype_bytes(torch.float16)
    with pytest.raises(TypeError, match="model must be"):
        kv_cache_bytes_for(7, 10)
    with pytest.raises(ValueError, match="seq_len must be"):
        kv_cache_bytes_for("Llama-2-7B", -5)
    with pytest.raises(TypeError, match="batch_size must be an int"):
        kv_cache_bytes_for("Llama-2-7B", 5, batch_size=1.5)
    assert get_shape("llama-2-7b") is MODEL_SHAPES["Llama-2-7B"]
    assert DTYPE_BYTES == {"fp32": 4, "fp16": 2, "bf16": 2, "fp8": 1, "int8": 1}


def test_model_shape_validates():
    with pytest.raises(ValueError, match="must divide n_head"):
        ModelShape("bad", 2, 64, 4, 3, 16, 16, 10, 100, "test")
    with pytest.raises(ValueError, match="n_layer must be a positive int"):
        ModelShape("bad", 0, 64, 4, 4, 16, 16, 10, 100, "test")


def test_markdown_table():
    from llmlab.shapes import markdown_table

    table = markdown_table(["model", "bytes"], [["a", 1234], ["b", 5]])
    assert table.splitlines() == ["| model | bytes |", "|:---|---:|", "| a | 1,234 |", "| b | 5 |"]
    with pytest.raises(ValueError, match="2 cells"):
        markdown_table(["model", "bytes"], [["a"]])


def test_a_sliding_window_caps_the_cached_positions():
    from llmlab.shapes import cached_positions, get_shape

    mistral, llama = get_shape("Mistral-7B"), get_shape("Llama-2-7B")
    assert mistral.sliding_window == 4096 and llama.sliding_window is None
    assert cached_positions(mistral, 32_768) == 4096 and cached_positions(mistral, 100) == 100
    assert cached_positions(llama, 32_768) == 32_768
    with pytest.raises(ValueError, match="seq_len must be an int >= 0"):
        cached_positions(llama, -1)


def test_lengths_past_a_models_context_are_flagged():
    from llmlab.shapes import get_shape, past_context

    assert past_context(get_shape("GPT-2 small"), 4096)
    assert not past_context(get_shape("Llama-3.1-8B"), 131_072)
    assert past_context(get_shape("Llama-3-8B"), 131_072)

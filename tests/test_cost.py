"""The cost model counts exactly the FLOPs the engine's forward pass does, and the bytes it must move.

FLOPs are checked against torch.utils.flop_counter.FlopCounterMode on the real forward pass.
FlopCounterMode counts the matrix products (mm, bmm, addmm, ...) only: LayerNorm, GELU, softmax,
the mask, bias and residual adds are not counted by it, and the cost model leaves them out too
(see llmlab/cost.py), so the two must agree to the FLOP.
"""

import dataclasses

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from llmlab import GPTConfig, TinyGPT
from llmlab.cost import (
    BYTE_PARTS,
    FLOP_PARTS,
    StepCost,
    generation_cost,
    generation_steps,
    n_weights,
    predict_seconds,
    step_cost,
)
from llmlab.measure import decode_step_bytes
from llmlab.shapes import get_shape

CONFIGS = [
    GPTConfig(vocab_size=50, block_size=64, n_layer=2, n_head=4, n_embd=32),
    GPTConfig(vocab_size=37, block_size=64, n_layer=3, n_head=4, n_embd=48, n_kv_head=2),  # GQA
    GPTConfig(vocab_size=101, block_size=64, n_layer=1, n_head=6, n_embd=24, n_kv_head=1),  # MQA
]


def counted_flops(model, idx, cache=None, last_only=True):
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(idx, kv_cache=cache, last_only=last_only)
    return counter.get_total_flops()


@pytest.mark.parametrize("config", CONFIGS, ids=["mha", "gqa", "mqa"])
@pytest.mark.parametrize("batch, new_tokens, cached", [(1, 1, 0), (1, 1, 9), (2, 5, 0), (3, 4, 7)])
def test_flops_equal_flop_counter_with_a_cache(config, batch, new_tokens, cached):
    torch.manual_seed(0)
    model = TinyGPT(config).eval()
    cache = model.new_kv_cache(batch, cached + new_tokens)
    if cached:
        with torch.inference_mode():
            model(torch.randint(config.vocab_size, (batch, cached)), kv_cache=cache)
    idx = torch.randint(config.vocab_size, (batch, new_tokens))
    expected = step_cost(config, batch, new_tokens, cached).total_flops
    assert counted_flops(model, idx, cache) == expected


@pytest.mark.parametrize("config", CONFIGS, ids=["mha", "gqa", "mqa"])
@pytest.mark.parametrize("last_only", [True, False])
def test_flops_equal_flop_counter_without_a_cache(config, last_only):
    model = TinyGPT(config).eval()
    idx = torch.randint(config.vocab_size, (2, 11))
    cost = step_cost(config, 2, 11, with_cache=False, all_logits=not last_only)
    assert counted_flops(model, idx, last_only=last_only) == cost.total_flops


def test_each_part_has_its_textbook_formula():
    c = GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768)
    cost = step_cost(c, batch=1, new_tokens=1, cached=99)
    L, C, V, S = 12, 768, 50257, 100
    assert cost.flops == {
        "qkv_proj": L * 2 * 3 * C * C,
        "out_proj": L * 2 * C * C,
        "attn_scores": L * 2 * S * C,  # H heads of D = C numbers each, against S keys
        "attn_values": L * 2 * S * C,
        "mlp": L * 2 * 8 * C * C,
        "lm_head": 2 * C * V,
    }
    assert set(cost.bytes) == set(BYTE_PARTS) and set(cost.flops) == set(FLOP_PARTS)
    assert cost.bytes["kv_read"] == 4 * 2 * L * S * C and cost.bytes["kv_write"] == 4 * 2 * L * C


@pytest.mark.parametrize("config", CONFIGS, ids=["mha", "gqa", "mqa"])
def test_weight_count_matches_the_model(config):
    model = TinyGPT(config)
    counts = n_weights(config)
    assert counts["embeddings"] + counts["other"] == model.num_params()
    assert counts["embeddings"] == model.wte.weight.numel() + model.wpe.weight.numel()


@pytest.mark.parametrize("config", CONFIGS, ids=["mha", "gqa", "mqa"])
def test_decode_bytes_agree_with_measure_decode_step_bytes(config):
    model = TinyGPT(config)
    cost = step_cost(config, 1, 1, cached=20)
    # decode_step_bytes counts weights and the cache (cached + the new position), no activations.
    weights_and_kv = cost.bytes["weights"] + cost.bytes["kv_read"]
    assert weights_and_kv == decode_step_bytes(model, 20)


def test_decode_intensity_is_two_flops_per_weight():
    # Batch-1 decode does one multiply-add per weight it reads: 2 FLOPs per 4 bytes in fp32,
    # per 2 bytes in fp16. The KV cache and the activations pull it a little below.
    gpt2 = get_shape("GPT-2 small")
    fp32, fp16 = step_cost(gpt2, cached=10), step_cost(gpt2, cached=10, bytes_per_element=2)
    assert 0.45 < fp32.intensity < 0.5 and 0.9 < fp16.intensity < 1.0
    prefill = step_cost(gpt2, new_tokens=512)
    assert prefill.intensity > 100 * fp32.intensity  # a prompt's tokens share each weight read


def test_step_cost_takes_a_published_shape():
    llama = get_shape("Llama-2-7B")
    cost = step_cost(llama, bytes_per_element=2)
    assert cost.bytes["weights"] > 10e9  # GPT-2-style MLP estimate of a 7B model: see cost.py


def test_generation_steps_follow_generate():
    c = CONFIGS[0]
    cached = generation_steps(c, prompt_len=5, new_tokens=4)
    assert cached[0] == step_cost(c, 1, 5, 0)
    assert cached[1:] == [step_cost(c, 1, 1, k) for k in (5, 6, 7)]
    uncached = generation_steps(c, 5, 4, use_cache=False)
    assert uncached == [step_cost(c, 1, t, with_cache=False) for t in (5, 6, 7, 8)]
    total = generation_cost(c, 5, 4)
    assert total.total_flops == sum(s.total_flops for s in cached)
    assert total.bytes["kv_write"] == sum(s.bytes["kv_write"] for s in cached)
    assert generation_cost(c, 5, 0).total_flops == 0


def test_uncached_generation_grows_a_power_faster():
    c = get_shape("GPT-2 small")
    ratio = {}
    for part in ("mlp", "attn_scores"):
        for use_cache in (True, False):
            small = generation_cost(c, 1, 100, use_cache).flops[part]
            big = generation_cost(c, 1, 800, use_cache).flops[part]
            ratio[part, use_cache] = big / small
    # 8x the tokens: MLP O(N) -> O(N^2), attention O(N^2) -> O(N^3).
    assert ratio["mlp", True] == pytest.approx(8, rel=0.01)
    assert ratio["mlp", False] == pytest.approx(64, rel=0.05)
    assert ratio["attn_scores", True] == pytest.approx(64, rel=0.05)
    assert ratio["attn_scores", False] == pytest.approx(512, rel=0.05)


def test_numpy_integers_count_as_ints():
    assert step_cost(CONFIGS[0], cached=np.int64(9)) == step_cost(CONFIGS[0], cached=9)


def test_predict_seconds_is_the_roofline():
    cost = StepCost(dict.fromkeys(FLOP_PARTS, 100), dict.fromkeys(BYTE_PARTS, 50))  # 600 F, 200 B
    assert predict_seconds(cost, bandwidth_bytes_per_s=100.0, flops_per_s=1000.0) == 2.0
    assert predict_seconds(cost, bandwidth_bytes_per_s=1000.0, flops_per_s=100.0) == 6.0
    assert cost.intensity == 3.0


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        (dict(batch=0), ValueError, "batch must be >= 1"),
        (dict(new_tokens=0), ValueError, "new_tokens must be >= 1"),
        (dict(cached=-1), ValueError, "cached must be >= 0"),
        (dict(bytes_per_element=2.0), TypeError, "bytes_per_element must be an int"),
        (dict(new_tokens=60, cached=5), ValueError, "exceeds the model's context block_size (64)"),
        (dict(cached=3, with_cache=False), ValueError, "cached must be 0 without a cache"),
    ],
)
def test_step_cost_rejects_bad_arguments(kwargs, error, words):
    with pytest.raises(error) as info:
        step_cost(CONFIGS[0], **kwargs)
    assert words in str(info.value)


def test_step_cost_names_a_missing_or_bad_config_field():
    @dataclasses.dataclass
    class NoHeads:
        n_layer: int = 2
        n_embd: int = 8

    with pytest.raises(TypeError, match="lacks n_head, n_kv_head, head_dim, vocab_size"):
        step_cost(NoHeads())
    bad = dataclasses.replace(get_shape("GPT-2 small"))
    object.__setattr__(bad, "n_kv_head", 5)
    with pytest.raises(ValueError, match="n_kv_head \\(5\\) must divide config.n_head \\(12\\)"):
        step_cost(bad)


@pytest.mark.parametrize(
    "args, error, words",
    [
        ((1e9, 0.0), ValueError, "flops_per_s must be a positive"),
        ((-1.0, 1e9), ValueError, "bandwidth_bytes_per_s must be a positive"),
        (("fast", 1e9), TypeError, "bandwidth_bytes_per_s must be a number"),
    ],
)
def test_predict_seconds_rejects_bad_rates(args, error, words):
    with pytest.raises(error, match=words):
        predict_seconds(step_cost(CONFIGS[0]), *args)
    with pytest.raises(TypeError, match="cost must be a StepCost"):
        predict_seconds(42, 1e9, 1e9)


def test_generation_rejects_too_long_and_bad_prompts():
    with pytest.raises(ValueError, match="prompt_len \\(60\\) \\+ new_tokens \\(10\\) exceeds"):
        generation_cost(CONFIGS[0], 60, 10)
    with pytest.raises(ValueError, match="prompt_len must be >= 1"):
        generation_cost(CONFIGS[0], 0, 10)

"""Int8KVCache and SlidingWindowKVCache: drop-ins for KVCache, their bytes and their error.

Tolerances on the trained model were measured (1000 held-out sentences, fp16 scales: largest
logit error 0.085 over logits up to 10, mean 0.0022, no verb preference flipped) and are set a
few times above those, so that other CPUs' float sums pass and a broken quantiser does not.
"""

import pytest
import torch

import llmlab
from llmlab import agreement, train
from llmlab.kv_cache import KVCache
from llmlab.kv_quant import (
    INT8_MAX,
    CachedForward,
    Int8KVCache,
    SlidingWindowKVCache,
    dequantize_int8,
    int8_kv_bytes,
    quantize_int8,
)
from llmlab.shapes import kv_cache_bytes_for


@pytest.fixture(scope="module")
def model():
    return llmlab.load_agreement_model()


@pytest.fixture(scope="module")
def heldout():
    return train.heldout_sentences(500)


def test_quantize_round_trip_is_within_half_a_step():
    x = torch.randn(2, 3, 7, 16, generator=torch.Generator().manual_seed(0)) * 5
    q, scale = quantize_int8(x)
    assert q.dtype == torch.int8 and q.shape == x.shape and scale.shape == (2, 3, 7, 1)
    assert int(q.abs().max()) == INT8_MAX  # every slice's largest entry uses the full range
    error = (dequantize_int8(q, scale) - x).abs()
    assert bool((error <= scale / 2 + 1e-6).all())


def test_quantize_along_another_dim_and_zero_slices():
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(1))
    x[:, 2] = 0
    q, scale = quantize_int8(x, dim=0)
    assert scale.shape == (1, 5) and scale[0, 2] == 0 and bool((q[:, 2] == 0).all())
    assert torch.allclose(dequantize_int8(q, scale), x, atol=float(scale.max()) / 2 + 1e-7)


def test_quantize_rejects_bad_input():
    with pytest.raises(TypeError, match="floating-point"):
        quantize_int8(torch.arange(4))
    with pytest.raises(ValueError, match="dim must be"):
        quantize_int8(torch.randn(3, 4), dim=2)
    with pytest.raises(TypeError, match="int8"):
        dequantize_int8(torch.zeros(3), torch.ones(1))


def test_nbytes_counts_codes_and_scales(model):
    cache = Int8KVCache.for_model(model, batch_size=3)
    c = model.config
    stored = sum(t.untyped_storage().nbytes() for t in cache._tensors())
    assert cache.nbytes == stored == int8_kv_bytes(c.n_layer, c.n_kv_head, c.head_dim, 16, 3)
    float_bytes = kv_cache_bytes_for(c, c.block_size, 3, "fp32")
    assert float_bytes == model.new_kv_cache(3).nbytes
    # head_dim 16: 16 + 2 bytes per head and token, against 64 in fp32
    assert cache.nbytes / float_bytes == pytest.approx(18 / 64)


def test_int8_cache_logits_close_to_the_float_cache(model, heldout):
    inputs, _ = agreement.to_batch(heldout)
    with torch.no_grad():
        reference = model(inputs, kv_cache=model.new_kv_cache(len(heldout)))
        quantised = model(inputs, kv_cache=Int8KVCache.for_model(model, len(heldout)))
    error = (quantised - reference).abs()
    assert 0 < float(error.max()) < 0.3
    assert float(error.mean()) < 0.01


def test_int8_cache_keeps_agreement_accuracy(model, heldout):
    exact = agreement.verb_preferences(model, heldout)
    int8 = agreement.verb_preferences(
        CachedForward(model, lambda b: Int8KVCache.for_model(model, b)), heldout
    )
    assert float(exact.float().mean()) > 0.95
    assert int((exact != int8).sum()) <= 2  # measured: 0 of 500


def test_int8_cache_decodes_like_generate(model):
    prompt = torch.tensor([agreement.VOCAB.encode("<bos> the old cat near the dogs")])
    expected = llmlab.generate(model, prompt, max_new_tokens=4)
    cache = Int8KVCache.for_model(model, batch_size=1)
    idx, new = prompt, prompt
    with torch.no_grad():
        for _ in range(4):
            next_id = model(new, kv_cache=cache, last_only=True)[:, -1].argmax(-1, keepdim=True)
            idx, new = torch.cat([idx, next_id], 1), next_id
    assert torch.equal(idx, expected) and cache.length == idx.size(1) - 1
    cache.reset()
    assert cache.length == 0


def test_int8_cache_refuses_misuse(model):
    cache = Int8KVCache.for_model(model, batch_size=2, max_len=4)
    with pytest.raises(ValueError, match="batch of 2"):
        model(torch.zeros(1, 3, dtype=torch.long), kv_cache=cache)
    k = torch.zeros(2, model.config.n_kv_head, 5, model.config.head_dim)
    with pytest.raises(ValueError, match="full"):
        cache.update(0, k, k)
    with pytest.raises(ValueError, match="max_len must be >= 1"):
        Int8KVCache(1, 1, 4, 1, 0)
    with pytest.raises(TypeError, match="scale_dtype"):
        Int8KVCache(1, 1, 4, 1, 4, scale_dtype=torch.int8)


class _SlicedWindow(KVCache):
    """The plain reference: a full cache that hands attention only its last `window` entries."""

    def __init__(self, model, batch_size, window):
        c = model.config
        super().__init__(c.n_layer, c.n_kv_head, c.head_dim, batch_size, c.block_size)
        self.window = window

    def update(self, layer, k, v):
        keys, values = super().update(layer, k, v)
        start = max(0, keys.size(2) - self.window)
        return keys[:, :, start:], values[:, :, start:]


@pytest.mark.parametrize("window", [1, 3, 6])
def test_sliding_window_matches_a_sliced_full_cache(model, heldout, window):
    inputs, _ = agreement.to_batch(heldout[:50])
    ring = CachedForward(model, lambda b: SlidingWindowKVCache.for_model(model, window, b), True)
    sliced = CachedForward(model, lambda b: _SlicedWindow(model, b, window), True)
    assert torch.allclose(ring(inputs), sliced(inputs), atol=1e-5)


def test_sliding_window_memory_is_capped_and_wide_windows_change_nothing(model, heldout):
    assert SlidingWindowKVCache.for_model(model, 4).nbytes == kv_cache_bytes_for(
        model.config, 4, 1, "fp32"
    )
    inputs, _ = agreement.to_batch(heldout[:50])
    wide = CachedForward(model, lambda b: SlidingWindowKVCache.for_model(model, 16, b), True)
    with torch.no_grad():
        assert torch.allclose(wide(inputs), model(inputs), atol=1e-5)


def test_a_short_window_loses_the_subject(model, heldout):
    def accuracy(window):
        cached = CachedForward(
            model, lambda b: SlidingWindowKVCache.for_model(model, window, b), True
        )
        return agreement.agreement_accuracy(cached, heldout)

    # The subject sits 3 to 5 tokens before the position that predicts the verb.
    assert accuracy(2) < 0.65 and accuracy(6) > 0.95


def test_sliding_window_refuses_a_long_chunk(model):
    cache = SlidingWindowKVCache.for_model(model, 3)
    with pytest.raises(ValueError, match="one at a time"):
        model(torch.zeros(1, 5, dtype=torch.long), kv_cache=cache)

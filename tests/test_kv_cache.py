"""The KV cache's promise: it changes how much work a step does, never the numbers it produces."""

import itertools

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from llmlab import KVCache, kv_cache_bytes
from llmlab.model import GPTConfig, TinyGPT

ATOL = 1e-5  # fp32: the cached and uncached paths add the same numbers in a different order


def feed_in_chunks(model, ids, cuts):
    """Logits for every position of ids, fed to a cache in pieces that end at each cut."""
    cache = model.new_kv_cache(ids.size(0), max_len=ids.size(1))  # exactly full at the end
    bounds = [0, *cuts, ids.size(1)]
    with torch.inference_mode():
        logits = [model(ids[:, a:b], kv_cache=cache) for a, b in itertools.pairwise(bounds)]
    assert cache.length == ids.size(1)
    return torch.cat(logits, dim=1)


@given(data=st.data())
def test_prefill_then_cached_decode_matches_full_forward(data, models, ids_for):
    model = data.draw(models)
    ids = data.draw(ids_for(model))
    prefill = data.draw(st.integers(1, ids.size(1)), label="prefill length")
    with torch.inference_mode():
        full = model(ids)  # (B, T, V), no cache
    # Prefill the first `prefill` tokens at once, then decode the rest one token per step.
    cached = feed_in_chunks(model, ids, cuts=range(prefill, ids.size(1)))
    torch.testing.assert_close(cached, full, rtol=0, atol=ATOL)


@given(data=st.data())
def test_prompt_fed_in_any_chunks_matches_full_forward(data, models, ids_for):
    model = data.draw(models)
    ids = data.draw(ids_for(model))
    # Any split: two pieces, one token at a time, uneven pieces...
    T = ids.size(1)
    cut_after = data.draw(st.lists(st.booleans(), min_size=T - 1, max_size=T - 1), label="cuts")
    cuts = [t + 1 for t, cut in enumerate(cut_after) if cut]
    with torch.inference_mode():
        full = model(ids)
    torch.testing.assert_close(feed_in_chunks(model, ids, cuts), full, rtol=0, atol=ATOL)


@given(data=st.data())
def test_last_only_gives_the_last_position(data, models, ids_for):
    model = data.draw(models)
    ids = data.draw(ids_for(model))
    with torch.inference_mode():
        full = model(ids)
        last = model(ids, last_only=True)
        cached_last = model(ids, kv_cache=model.new_kv_cache(ids.size(0)), last_only=True)
    assert last.shape == (ids.size(0), 1, model.config.vocab_size)
    torch.testing.assert_close(last, full[:, -1:], rtol=0, atol=ATOL)
    torch.testing.assert_close(cached_last, full[:, -1:], rtol=0, atol=ATOL)


@given(data=st.data())
def test_a_reset_cache_is_as_good_as_new(data, models, ids_for):
    model = data.draw(models)
    ids = data.draw(ids_for(model))
    cache = model.new_kv_cache(ids.size(0), max_len=ids.size(1))
    with torch.inference_mode():
        first = model(ids, kv_cache=cache)
        cache.reset()
        again = model(ids, kv_cache=cache)
    torch.testing.assert_close(again, first, rtol=0, atol=0)


# --- size -------------------------------------------------------------------------------------


@given(data=st.data())
def test_cache_nbytes_matches_the_formula(data, models):
    model = data.draw(models)
    c = model.config
    batch, max_len = data.draw(st.integers(1, 4)), data.draw(st.integers(1, c.block_size))
    cache = model.new_kv_cache(batch, max_len)
    assert cache.nbytes == kv_cache_bytes(c.n_layer, c.n_kv_head, c.head_dim, max_len, batch)
    # The textbook formula written out: K and V, per layer, batch row, key/value head, position, dim.
    assert cache.nbytes == 2 * c.n_layer * batch * c.n_kv_head * max_len * c.head_dim * 4


def test_grouped_query_attention_shrinks_the_cache_by_the_group_size():
    sizes = {}
    for n_kv_head in (8, 2, 1):  # multi-head, grouped-query, multi-query
        model = TinyGPT(
            GPTConfig(
                vocab_size=16, block_size=32, n_layer=2, n_head=8, n_embd=64, n_kv_head=n_kv_head
            )
        )
        sizes[n_kv_head] = model.new_kv_cache().nbytes
    assert sizes[8] == 4 * sizes[2] == 8 * sizes[1]


def test_kv_cache_bytes_counts_bytes_per_element():
    assert (
        kv_cache_bytes(12, 12, 64, 1024) == 2 * 12 * 12 * 1024 * 64 * 4
    )  # GPT-2 small, fp32: 75.5 MB
    assert kv_cache_bytes(12, 12, 64, 1024, bytes_per_element=2) * 2 == kv_cache_bytes(
        12, 12, 64, 1024
    )
    assert kv_cache_bytes(12, 12, 64, 0) == 0  # an empty sequence holds nothing


GOOD = dict(n_layer=2, n_kv_head=2, head_dim=8, seq_len=16, batch_size=1, bytes_per_element=4)


@pytest.mark.parametrize("name", list(GOOD))
@pytest.mark.parametrize(
    "bad, error", [(-1, ValueError), (1.5, TypeError), (True, TypeError), ("8", TypeError)]
)
def test_kv_cache_bytes_rejects_bad_sizes(name, bad, error):
    with pytest.raises(error, match=name):
        kv_cache_bytes(**{**GOOD, name: bad})


@pytest.mark.parametrize("name", [n for n in GOOD if n != "seq_len"])
def test_kv_cache_bytes_rejects_zero_sizes_except_seq_len(name):
    with pytest.raises(ValueError, match=name):
        kv_cache_bytes(**{**GOOD, name: 0})


CACHE = dict(n_layer=2, n_kv_head=2, head_dim=8, batch_size=1, max_len=4)


@pytest.mark.parametrize("name", list(CACHE))
@pytest.mark.parametrize(
    "bad, error", [(0, ValueError), (-2, ValueError), (2.0, TypeError), (False, TypeError)]
)
def test_kv_cache_rejects_bad_sizes(name, bad, error):
    with pytest.raises(error, match=name):
        KVCache(**{**CACHE, name: bad})


# --- misuse ------------------------------------------------------------------------------------


@pytest.fixture
def model():
    torch.manual_seed(0)
    return TinyGPT(
        GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8, n_kv_head=1)
    ).eval()


def test_a_cache_cannot_be_used_past_its_max_len(model):
    cache = model.new_kv_cache(1, max_len=3)
    with torch.inference_mode():
        model(torch.tensor([[1, 2, 3]]), kv_cache=cache)
        with pytest.raises(ValueError, match="max_len"):
            model(torch.tensor([[4]]), kv_cache=cache)
    assert cache.length == 3, "a refused step must leave the cache as it was"


def test_a_cache_cannot_grow_past_the_models_block_size(model):
    cache = model.new_kv_cache(1)  # max_len = block_size = 8
    with torch.inference_mode():
        model(torch.zeros(1, 8, dtype=torch.long), kv_cache=cache)
        with pytest.raises(ValueError, match="block_size"):
            model(torch.tensor([[1]]), kv_cache=cache)


def test_a_cache_only_serves_its_own_batch_size(model):
    cache = model.new_kv_cache(batch_size=2)
    with torch.inference_mode(), pytest.raises(ValueError, match="batch"):
        model(torch.tensor([[1, 2]]), kv_cache=cache)
    assert cache.length == 0


def test_a_cache_made_for_another_model_is_refused():
    small = TinyGPT(GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=2, n_embd=8))
    other = TinyGPT(GPTConfig(vocab_size=10, block_size=8, n_layer=2, n_head=4, n_embd=8))
    ids = torch.zeros(1, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="kv_cache was made for 1 layers x 2 kv heads"):
        other(ids, kv_cache=small.new_kv_cache())

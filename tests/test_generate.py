"""generate(): the cached and uncached paths pick the same tokens; misuse fails with a clear message."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from llmlab import GPTConfig, TinyGPT, generate


def naive_greedy(model, ids, max_new_tokens):
    """The definition of greedy decoding, written independently of generate(): rerun, take argmax."""
    with torch.inference_mode():
        for _ in range(max_new_tokens):
            ids = torch.cat([ids, model(ids)[:, -1].argmax(-1, keepdim=True)], dim=1)
    return ids


@given(data=st.data())
def test_greedy_cached_and_uncached_pick_the_same_tokens(data, models, ids_for):
    model = data.draw(models)
    prompt = data.draw(ids_for(model))
    room = model.config.block_size - prompt.size(1)
    # Half the time fill the context exactly: the last step writes the cache's last slot.
    new = data.draw(st.one_of(st.just(room), st.integers(0, room)), label="max_new_tokens")
    cached = generate(model, prompt, new, use_cache=True)
    uncached = generate(model, prompt, new, use_cache=False)
    assert cached.shape == (prompt.size(0), prompt.size(1) + new)
    assert torch.equal(cached[:, : prompt.size(1)], prompt), "the output must start with the prompt"
    assert torch.equal(cached, uncached)
    assert torch.equal(cached, naive_greedy(model, prompt, new))


@pytest.mark.parametrize("n_kv_head", [4, 2, 1])  # multi-head, grouped-query, multi-query
@pytest.mark.parametrize("prompt_len", [1, 5, 16])
def test_generation_can_fill_the_context_exactly(n_kv_head, prompt_len):
    torch.manual_seed(n_kv_head)
    config = GPTConfig(
        vocab_size=40, block_size=16, n_layer=2, n_head=4, n_embd=16, n_kv_head=n_kv_head
    )
    model = TinyGPT(config).eval()
    prompt = torch.arange(prompt_len) % 40
    cached = generate(model, prompt, 16 - prompt_len)
    assert cached.shape == (16,)
    assert torch.equal(cached, generate(model, prompt, 16 - prompt_len, use_cache=False))
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate(model, prompt, 17 - prompt_len)  # one token more does not fit


@given(data=st.data())
def test_seeded_sampling_is_reproducible_and_cache_independent(data, models, ids_for):
    model = data.draw(models)
    prompt = data.draw(ids_for(model))
    new = model.config.block_size - prompt.size(1)
    seed = data.draw(st.integers(0, 2**31), label="seed")
    temperature = data.draw(st.sampled_from([0.5, 1.0, 2.0]), label="temperature")
    first = generate(model, prompt, new, temperature=temperature, seed=seed)
    assert torch.equal(first, generate(model, prompt, new, temperature=temperature, seed=seed))
    assert torch.equal(
        first, generate(model, prompt, new, use_cache=False, temperature=temperature, seed=seed)
    )


@pytest.fixture
def model():
    torch.manual_seed(0)
    return TinyGPT(
        GPTConfig(vocab_size=50, block_size=32, n_layer=2, n_head=4, n_embd=16, n_kv_head=2)
    ).eval()


def test_sampling_depends_on_the_seed(model):
    runs = {tuple(generate(model, [1, 2], 30, temperature=1.0, seed=s).tolist()) for s in range(3)}
    assert len(runs) == 3  # 50 tokens, nearly uniform: three seeds agreeing would be a broken seed


def test_shape_follows_the_prompt(model):
    assert generate(model, torch.tensor([1, 2, 3]), 4).shape == (7,)
    assert generate(model, torch.tensor([[1, 2, 3], [4, 5, 6]]), 4).shape == (2, 7)
    assert torch.equal(generate(model, [1, 2, 3], 4), generate(model, torch.tensor([1, 2, 3]), 4))
    assert torch.equal(generate(model, [5], 0), torch.tensor([5]))


def test_each_row_of_a_batch_is_generated_as_if_alone(model):
    batch = torch.tensor([[1, 2, 3], [7, 8, 9]])
    together = generate(model, batch, 10)
    for row in range(2):
        assert torch.equal(together[row], generate(model, batch[row], 10))


def test_same_seed_same_model_same_tokens():
    def run(seed):
        torch.manual_seed(seed)
        model = TinyGPT(
            GPTConfig(vocab_size=30, block_size=16, n_layer=2, n_head=2, n_embd=8)
        ).eval()
        return generate(model, [1, 2, 3], 12), generate(
            model, [1, 2, 3], 12, temperature=1.0, seed=7
        )

    first = run(seed=3)
    assert all(torch.equal(a, b) for a, b in zip(first, run(seed=3), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, run(seed=4), strict=True))


# --- misuse: each error names what was wrong ------------------------------------------------------


@pytest.mark.parametrize(
    "prompt, max_new_tokens, error, names",
    [
        ([], 1, ValueError, "prompt_ids"),  # empty
        (torch.zeros(0, dtype=torch.long), 1, ValueError, "prompt_ids"),
        (torch.zeros(2, 0, dtype=torch.long), 1, ValueError, "prompt_ids"),
        (list(range(33)), 0, ValueError, "block_size"),  # prompt alone too long
        ([1] * 30, 3, ValueError, "max_new_tokens"),  # prompt + new tokens too long
        ([1, -1], 1, ValueError, "prompt_ids"),  # ids outside the vocabulary
        ([1, 50], 1, ValueError, "prompt_ids"),
        (torch.tensor([1.0, 2.0]), 1, TypeError, "prompt_ids"),  # float "ids"
        ([1, 2.0], 1, TypeError, "prompt_ids"),  # a list with a non-int
        ([1, True], 1, TypeError, "prompt_ids"),
        ("1 2 3", 1, TypeError, "prompt_ids"),
        (torch.zeros(1, 1, 1, dtype=torch.long), 1, ValueError, "prompt_ids"),
        ([1, 2], -1, ValueError, "max_new_tokens"),
        ([1, 2], 1.0, TypeError, "max_new_tokens"),
    ],
)
def test_generate_rejects_bad_input(model, prompt, max_new_tokens, error, names):
    for use_cache in (True, False):
        with pytest.raises(error, match=names):
            generate(model, prompt, max_new_tokens, use_cache=use_cache)


@pytest.mark.parametrize("temperature", [-0.1, "hot", None, True])
def test_generate_rejects_bad_temperature(model, temperature):
    with pytest.raises(ValueError, match="temperature"):
        generate(model, [1, 2], 1, temperature=temperature)

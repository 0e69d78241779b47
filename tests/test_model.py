"""TinyGPT itself: causal, batch-independent, reproducible from a seed, and strict about its inputs."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from llmlab import GPTConfig, TinyGPT, attention, causal_mask

ATOL = 1e-5


@given(data=st.data())
def test_attention_weights_are_causal_distributions(data, models, ids_for):
    model = data.draw(models)
    ids = data.draw(ids_for(model))
    B, T = ids.shape
    c = model.config
    with torch.inference_mode():
        _, attentions = model(ids, return_attention=True)
        cache = model.new_kv_cache(B)
        if T > 1:
            model(ids[:, :-1], kv_cache=cache)
        _, step_attentions = model(ids[:, -1:], kv_cache=cache, return_attention=True)
    assert len(attentions) == c.n_layer
    above_diagonal = torch.ones(T, T, dtype=torch.bool).triu(diagonal=1)
    for weights, step in zip(attentions, step_attentions, strict=True):
        assert weights.shape == (B, c.n_head, T, T)  # (B, H, T, S)
        torch.testing.assert_close(weights.sum(-1), torch.ones(B, c.n_head, T))
        assert (weights[..., above_diagonal] == 0).all(), "a query attended to a later position"
        assert (weights >= 0).all()
        # One cached step of the last token attends exactly like the last row of the full pass.
        assert step.shape == (B, c.n_head, 1, T)
        torch.testing.assert_close(step, weights[:, :, -1:], rtol=0, atol=ATOL)


@given(data=st.data())
def test_the_future_does_not_change_the_past(data, models, ids_for):
    model = data.draw(models)
    ids = data.draw(ids_for(model))
    t = data.draw(st.integers(0, ids.size(1) - 1), label="first changed position")
    changed = ids.clone()
    changed[:, t:] = (changed[:, t:] + 1) % model.config.vocab_size
    with torch.inference_mode():
        before, after = model(ids), model(changed)
    torch.testing.assert_close(after[:, :t], before[:, :t], rtol=0, atol=ATOL)


@given(data=st.data())
def test_rows_of_a_batch_do_not_see_each_other(data, models, ids_for):
    model = data.draw(models)
    ids = data.draw(ids_for(model))
    with torch.inference_mode():
        together = model(ids)
        alone = torch.cat([model(row[None]) for row in ids])
    torch.testing.assert_close(together, alone, rtol=0, atol=ATOL)


def test_causal_mask_places_queries_at_the_end():
    assert causal_mask(3, 3).tolist() == [
        [True, False, False],
        [True, True, False],
        [True, True, True],
    ]
    assert causal_mask(1, 4).tolist() == [[True, True, True, True]]  # one new token sees everything
    assert causal_mask(2, 4).tolist() == [[True, True, True, False], [True, True, True, True]]


def test_attention_is_softmax_of_scaled_scores():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 4)
    out, weights = attention(q, k, v)
    expected = torch.softmax(q @ k.transpose(1, 2) / 2.0, dim=-1)  # sqrt(d) = 2
    torch.testing.assert_close(weights, expected)
    torch.testing.assert_close(out, expected @ v)


def test_same_seed_same_weights():
    config = GPTConfig(vocab_size=30, block_size=16, n_layer=2, n_head=2, n_embd=8, n_kv_head=1)

    def init(seed):
        torch.manual_seed(seed)
        return TinyGPT(config).state_dict()

    a, b, c = init(3), init(3), init(4)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_gpt2_small_shape_has_the_expected_parameter_count():
    # GPT-2 small's 124.4M, plus its lm_head, untied here (768 x 50257 + 50257 bias = 38.65M).
    with torch.device("meta"):  # shapes only: no memory, no time
        model = TinyGPT(GPTConfig())
    assert model.num_params() == 124_439_808 + 768 * 50257 + 50257


# --- misuse: each error names what was wrong ----------------------------------------------------


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return TinyGPT(GPTConfig(vocab_size=50, block_size=32, n_layer=1, n_head=2, n_embd=8)).eval()


@pytest.mark.parametrize(
    "idx, error, names",
    [
        (torch.zeros(1, 0, dtype=torch.long), ValueError, "idx"),
        (torch.zeros(3, dtype=torch.long), ValueError, "idx"),
        (torch.zeros(1, 33, dtype=torch.long), ValueError, "block_size"),
        (torch.tensor([[0, -1]]), ValueError, "idx"),
        (torch.tensor([[0, 50]]), ValueError, "idx"),
        (torch.tensor([[0.0, 1.0]]), TypeError, "idx"),
        ([[0, 1]], TypeError, "idx"),
    ],
)
def test_forward_rejects_bad_ids(model, idx, error, names):
    with pytest.raises(error, match=names):
        model(idx)


SIZES = ("vocab_size", "block_size", "n_layer", "n_head", "n_embd", "n_kv_head")


@pytest.mark.parametrize("name", SIZES)
@pytest.mark.parametrize("bad", [0, -1])
def test_config_rejects_non_positive_sizes(name, bad):
    with pytest.raises(ValueError, match=name):
        GPTConfig(**{name: bad})


@pytest.mark.parametrize("name", SIZES)
@pytest.mark.parametrize("bad", [12.0, "12", True])
def test_config_rejects_non_int_sizes(name, bad):
    with pytest.raises(TypeError, match=name):
        GPTConfig(**{name: bad})


def test_config_needs_heads_that_divide_the_width_and_kv_heads_that_divide_the_heads():
    with pytest.raises(ValueError, match=r"n_head \(7\) must divide n_embd"):
        GPTConfig(n_embd=768, n_head=7)
    with pytest.raises(ValueError, match="n_kv_head"):
        GPTConfig(n_head=12, n_kv_head=5)
    with pytest.raises(ValueError, match="n_kv_head"):
        GPTConfig(n_head=4, n_kv_head=8)  # more key/value heads than query heads
    assert GPTConfig(n_head=12, n_kv_head=4).n_kv_head == 4
    assert GPTConfig(n_head=12).n_kv_head == 12  # None means plain multi-head


def test_model_needs_a_config():
    with pytest.raises(TypeError, match="config"):
        TinyGPT({"n_layer": 2})

"""Shared test setup: Hypothesis settings and the random small models the property tests draw.

HYPOTHESIS_PROFILE=thorough pytest tests   # ten times more examples per property
"""

import os

import pytest
import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from llmlab.model import GPTConfig, TinyGPT

# One thread per test process. The tests run tiny models, which a second thread does not speed
# up, and `pytest -n 2` already runs one worker per core: two threads each would oversubscribe
# the cores, and OpenMP then waits at every barrier for a thread that is not running (measured on
# a busy 2-core machine: 30 training steps took 88 s with 2 threads, 5 s with 1).
torch.set_num_threads(1)

# Model forwards take milliseconds to seconds on a 2-core CPU: no per-example deadline.
settings.register_profile(
    "default", max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("thorough", parent=settings.get_profile("default"), max_examples=200)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


class DrawnGPT(TinyGPT):
    """A TinyGPT whose repr (what Hypothesis prints for a failing example) is its recipe, not its modules."""

    def __init__(self, config: GPTConfig, seed: int):
        torch.manual_seed(seed)
        super().__init__(config)
        self.seed = seed
        self.eval()

    def __repr__(self):
        return f"TinyGPT({self.config}) initialised with seed {self.seed}"


@st.composite
def small_models(draw, max_block_size=12):
    """A random-weight TinyGPT: 1-3 layers, 1-4 heads, any key/value head count that divides
    them (multi-head, grouped-query, multi-query), small widths, vocabularies and contexts."""
    n_head = draw(st.sampled_from([1, 2, 3, 4]))
    n_kv_head = draw(st.sampled_from([d for d in range(1, n_head + 1) if n_head % d == 0]))
    config = GPTConfig(
        vocab_size=draw(st.integers(2, 40)),
        block_size=draw(st.integers(1, max_block_size)),
        n_layer=draw(st.integers(1, 3)),
        n_head=n_head,
        n_embd=n_head * draw(st.integers(1, 8)),
        n_kv_head=n_kv_head,
    )
    return DrawnGPT(config, seed=draw(st.integers(0, 2**16)))


@st.composite
def token_ids(draw, model):
    """(B, T) ids in the model's vocabulary: batch 1-3, any length up to the model's block_size."""
    c = model.config
    batch, length = draw(st.integers(1, 3)), draw(st.integers(1, c.block_size))
    row = st.lists(st.integers(0, c.vocab_size - 1), min_size=length, max_size=length)
    return torch.tensor(draw(st.lists(row, min_size=batch, max_size=batch)), dtype=torch.long)


@pytest.fixture(scope="session")
def models():
    """The strategy above, for tests that draw with `data.draw(models)`."""
    return small_models()


@pytest.fixture(scope="session")
def ids_for():
    """ids_for(model) -> a strategy of token id batches that fit that model."""
    return token_ids


pytest_plugins = ["book_fixture"]

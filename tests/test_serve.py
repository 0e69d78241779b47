"""llmlab.serve: batching changes nothing but time, nothing is lost, the accounting is exact.

Every property runs requests through the Engine and compares each one with `generate` run alone.
On random-weight models a batched float sum may differ from the unbatched one in its last bits;
where that flips a token, the test demands a float tie (the two best logits within TIE) and counts
it. On the trained agreement model no divergence at all is allowed.
"""

import random

import pytest
import torch
from hypothesis import event, given, note
from hypothesis import strategies as st

from llmlab import GPTConfig, TinyGPT, generate, load_agreement_model
from llmlab.agreement import VOCAB, make_sentence
from llmlab.serve import Engine, Request
from llmlab.serve.block_manager import BlockManager

TIE = 1e-4
TIES_SEEN = []  # (model, request index, step): reported by test_report_float_ties


def unit_clock(decode_tokens, prefill_tokens):
    """A deterministic clock: each step costs 1 s plus 0.01 s per prompt position."""
    return 1.0 + 0.01 * prefill_tokens


def reference(model, request):
    """What `generate` produces for this request alone, cut after the stop token."""
    out = generate(
        model,
        request.prompt,
        request.max_new_tokens,
        temperature=request.temperature,
        seed=request.seed,
    )
    tokens = out[len(request.prompt) :].tolist()
    if request.stop_token in tokens:
        tokens = tokens[: tokens.index(request.stop_token) + 1]
    return tokens


def divergences(model, requests, results):
    """[(index, step, gap)] where a result differs from `generate` alone; gap is the distance
    between the two best logits at that step, computed without any cache."""
    found = []
    for i, (request, result) in enumerate(zip(requests, results)):
        assert result.error is None, f"request {i} failed: {result.error}"
        expected = reference(model, request)
        if result.tokens == expected:
            continue
        step = next(
            (j for j, (a, b) in enumerate(zip(result.tokens, expected)) if a != b),
            min(len(result.tokens), len(expected)),
        )
        ids = torch.tensor([request.prompt + expected[:step]])
        with torch.inference_mode():
            logits = model(ids)[0, -1]
        top2 = logits.topk(2)
        picked = result.tokens[step] if step < len(result.tokens) else None
        gap = float(top2.values[0] - top2.values[1])
        if picked not in top2.indices.tolist():
            gap = float("inf")  # not even the runner-up: no tie explains it
        found.append((i, step, gap))
    return found


def assert_matches_generate(model, requests, results, ties_allowed: bool):
    for i, step, gap in divergences(model, requests, results):
        assert ties_allowed and gap <= TIE, (
            f"request {i} diverges from generate() at new token {step}: the two best logits "
            f"there differ by {gap:.3g}, not a float tie (<= {TIE})"
        )
        TIES_SEEN.append((repr(model), i, step))
        event("float tie flipped a token")


def assert_idle_pool_is_free(engine):
    blocks = engine.blocks
    assert blocks.num_free == blocks.num_blocks, "blocks leaked: not all back on the free list"
    assert all(n == 0 for n in blocks.ref_count), "a block still has references after the run"


def assert_accounting(engine, results):
    pool = engine.pool
    for s in results.steps:
        in_use = engine.blocks.num_blocks - s.free_blocks
        assert s.kv_reserved_bytes == in_use * pool.block_bytes, (
            f"step {s.index}: {in_use} blocks off the free list but live sequences hold "
            f"{s.kv_reserved_bytes // pool.block_bytes}"
        )
        assert s.kv_used_bytes + s.kv_wasted_bytes == s.kv_reserved_bytes
        assert 0 <= s.kv_wasted_bytes < max(1, s.running) * pool.block_bytes
        assert s.kv_pool_bytes == engine.blocks.num_blocks * pool.block_bytes


def assert_timelines(results):
    for res in results:
        assert len(res.token_times) == len(res.tokens)
        if res.tokens:
            times = [res.arrival, res.prefill_start, *res.token_times, res.finish_time]
            assert times == sorted(times), f"timeline out of order: {times}"
            assert res.finish_time == res.token_times[-1]


@st.composite
def workloads(draw, model, crowded=False):
    """Requests that fit the model: some share a prefix (for the prefix cache), arrivals spread."""
    c = model.config
    shared = draw(
        st.lists(
            st.integers(0, c.vocab_size - 1),
            min_size=c.block_size // 2,
            max_size=c.block_size,
        )
    )
    requests = []
    for _ in range(draw(st.integers(1, 8), label="n_requests")):
        length = draw(st.integers(1, c.block_size))
        own = draw(st.lists(st.integers(0, c.vocab_size - 1), min_size=length, max_size=length))
        prompt = (shared + own)[:length] if draw(st.booleans()) else own
        stop = draw(st.one_of(st.none(), st.integers(0, c.vocab_size - 1)))
        requests.append(
            Request(
                prompt=prompt,
                max_new_tokens=c.block_size - length
                if crowded
                else draw(st.integers(0, c.block_size - length)),
                arrival=0.0 if crowded else draw(st.sampled_from([0.0, 0.5, 1.0, 2.5, 7.0])),
                stop_token=stop,
            )
        )
    return requests


@st.composite
def engine_settings(draw, model, requests):
    block_size = draw(st.integers(1, 4))
    longest = max(len(r.prompt) + r.max_new_tokens - 1 for r in requests)
    fewest = max(1, -(-longest // block_size))  # the pool must hold the longest request alone
    return dict(
        policy=draw(st.sampled_from(["continuous", "static"])),
        max_batch_size=draw(st.integers(1, 4)),
        block_size=block_size,
        num_blocks=draw(st.integers(fewest, fewest * 3)),  # small pools force preemption
        chunk_size=draw(st.one_of(st.none(), st.integers(1, 6))),
        prefix_caching=draw(st.booleans()),
    )


@st.composite
def serving_models(draw):
    """Like conftest's small_models (MHA, GQA, MQA), with contexts of 8-20 positions: room for
    several blocks per sequence, so pools run out and prefixes get shared."""
    from conftest import DrawnGPT

    n_head = draw(st.sampled_from([1, 2, 4]))
    config = GPTConfig(
        vocab_size=draw(st.integers(2, 40)),
        block_size=draw(st.integers(8, 20)),
        n_layer=draw(st.integers(1, 2)),
        n_head=n_head,
        n_embd=n_head * draw(st.integers(1, 8)),
        n_kv_head=draw(st.sampled_from([d for d in (1, 2, 4) if n_head % d == 0])),
    )
    return DrawnGPT(config, seed=draw(st.integers(0, 2**16)))


@given(data=st.data())
def test_batching_changes_nothing_but_time(data):
    model = data.draw(serving_models(), label="model")
    requests = data.draw(workloads(model), label="requests")
    settings = data.draw(engine_settings(model, requests), label="engine")
    engine = Engine(model, step_clock=unit_clock, **settings)
    results = engine.run(requests)
    note(f"preemptions {[r.preemptions for r in results]}")
    assert_matches_generate(model, requests, results, ties_allowed=True)
    assert_idle_pool_is_free(engine)
    assert_accounting(engine, results)
    assert_timelines(results)
    if any(r.preemptions for r in results):
        event("preempted")
    if any(r.cached_prompt_tokens for r in results):
        event("prefix cache hit")


@given(data=st.data())
def test_preemption_changes_nothing_but_time(data):
    """Everyone at once, every request filling the context, a pool that holds just the longest:
    the continuous scheduler must preempt, and recomputing must give the same tokens."""
    model = data.draw(serving_models(), label="model")
    requests = data.draw(workloads(model, crowded=True), label="requests")
    block_size = data.draw(st.integers(1, 4), label="block_size")
    longest = max(len(r.prompt) + r.max_new_tokens - 1 for r in requests)
    engine = Engine(
        model,
        max_batch_size=4,
        block_size=block_size,
        num_blocks=-(-longest // block_size),
        chunk_size=data.draw(st.one_of(st.none(), st.integers(1, 6)), label="chunk_size"),
        prefix_caching=data.draw(st.booleans(), label="prefix_caching"),
        step_clock=unit_clock,
    )
    results = engine.run(requests)
    assert_matches_generate(model, requests, results, ties_allowed=True)
    assert_idle_pool_is_free(engine)
    assert_accounting(engine, results)
    if any(r.preemptions for r in results):
        event("preempted")


@pytest.fixture(scope="module")
def trained():
    return load_agreement_model()


def sentence_requests(n, seed, max_new=None):
    """Prompts cut from the agreement language at random points, arriving over time."""
    rng = random.Random(seed)
    requests = []
    for i in range(n):
        ids = VOCAB.encode(make_sentence(rng).text)
        cut = rng.randint(1, len(ids))
        room = 16 - cut
        new = rng.randint(0, room) if max_new is None else min(max_new, room)
        requests.append(Request(ids[:cut], new, arrival=0.3 * (i // 3)))
    return requests


@pytest.mark.parametrize(
    "settings",
    [
        dict(policy="continuous"),
        dict(policy="static", max_batch_size=3),
        dict(policy="continuous", max_batch_size=4, block_size=2, num_blocks=9),  # preempts
        dict(policy="continuous", block_size=4, chunk_size=3, prefix_caching=True),
        dict(policy="static", block_size=1, chunk_size=2, prefix_caching=True),
    ],
    ids=["continuous", "static", "preemption", "chunked+prefix", "static-chunked+prefix"],
)
def test_trained_model_serves_exactly_what_generate_gives(trained, settings):
    requests = sentence_requests(24, seed=len(str(settings)))
    # The last long prompts again, after all is done: their blocks, freed last, are still cached.
    repeats = [r for r in requests if len(r.prompt) >= 6][-6:]
    requests += [Request(r.prompt, r.max_new_tokens, arrival=100.0) for r in repeats]
    engine = Engine(trained, step_clock=unit_clock, **settings)
    results = engine.run(requests)
    assert_matches_generate(trained, requests, results, ties_allowed=False)
    assert_idle_pool_is_free(engine)
    assert_accounting(engine, results)
    if settings.get("num_blocks") == 9:
        assert sum(r.preemptions for r in results) > 0, "this pool was sized to force preemption"
    if settings.get("prefix_caching"):
        assert sum(r.cached_prompt_tokens for r in results) > 0, "repeated prompts must hit"


def test_seeded_sampling_matches_generate(trained):
    requests = [
        Request(r.prompt, r.max_new_tokens, arrival=r.arrival, temperature=0.8, seed=i)
        for i, r in enumerate(sentence_requests(8, seed=3))
    ]
    results = Engine(trained, max_batch_size=4, step_clock=unit_clock).run(requests)
    assert [r.tokens for r in results] == [reference(trained, r) for r in requests]


def test_a_broken_block_table_is_caught():
    """Two sequences writing into one block must be detected by the same comparison."""
    torch.manual_seed(0)
    model = TinyGPT(GPTConfig(vocab_size=30, block_size=16, n_layer=2, n_head=2, n_embd=16))
    model.eval()
    rng = random.Random(0)
    requests = [Request([rng.randrange(30) for _ in range(6)], 8) for _ in range(4)]
    honest = Engine(model, block_size=4, step_clock=unit_clock)
    assert_matches_generate(model, requests, honest.run(requests), ties_allowed=True)

    class SharesBlockZero(BlockManager):
        def _take_free_block(self):
            super()._take_free_block()
            self.ref_count[0] += 1
            return 0  # every sequence's every block is block 0: they overwrite each other

    broken = Engine(model, block_size=4, step_clock=unit_clock)
    broken.blocks = SharesBlockZero(broken.blocks.num_blocks, 4)
    broken_results = broken.run(requests)
    with pytest.raises(AssertionError, match="not a float tie"):
        assert_matches_generate(model, requests, broken_results, ties_allowed=True)


def test_bad_requests_get_errors_and_leave_the_others_alone(trained):
    good = [Request(r.prompt[:6], 4, r.arrival) for r in sentence_requests(5, seed=1)]
    bad = {
        "empty": Request([], 3),
        "exceeds the model's context": Request([1] * 10, 7),
        "outside the vocabulary": Request([1, 39], 2),
        "max_new_tokens must be >= 0": Request([1], -1),
        "could never run": Request([1] * 8, 8),  # 15 positions, the pool below has 12
        "arrival must be": Request([1], 2, arrival=float("nan")),
        "stop_token": Request([1], 2, stop_token=99),
        "list (or 1-D tensor) of int": Request(torch.ones(2, 2, dtype=torch.long), 1),
    }
    requests = good[:2] + list(bad.values()) + good[2:]
    engine = Engine(trained, max_batch_size=3, block_size=4, num_blocks=3, step_clock=unit_clock)
    results = engine.run(requests)
    for result, (reason, _) in zip(results[2:-3], bad.items()):
        assert result.error is not None and reason in result.error, (reason, result.error)
        assert result.tokens == [] and result.finish_time == (
            0.0 if reason == "arrival must be" else result.arrival
        )
    good_results = results[:2] + results[-3:]
    assert all(r.error is None for r in good_results)
    assert_matches_generate(trained, good, good_results, ties_allowed=False)
    alone = Engine(trained, max_batch_size=3, block_size=4, num_blocks=3, step_clock=unit_clock)
    assert [r.tokens for r in alone.run(good)] == [r.tokens for r in good_results]
    assert_idle_pool_is_free(engine)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(max_batch_size=0), ValueError, "max_batch_size must be >= 1"),
        (dict(max_batch_size=2.0), TypeError, "max_batch_size must be an int"),
        (dict(policy="fifo"), ValueError, "policy must be one of"),
        (dict(block_size=0), ValueError, "block_size must be >= 1"),
        (dict(num_blocks=0), ValueError, "num_blocks must be >= 1"),
        (dict(chunk_size=0), ValueError, "chunk_size must be >= 1"),
        (dict(prefix_caching="yes"), TypeError, "prefix_caching must be a bool"),
        (dict(step_clock=1.0), TypeError, "step_clock must be None or a function"),
    ],
)
def test_bad_engine_arguments_name_the_argument(trained, kwargs, error, match):
    with pytest.raises(error, match=match):
        Engine(trained, **kwargs)


def test_bad_request_lists_raise(trained):
    engine = Engine(trained)
    with pytest.raises(TypeError, match="requests must be a list"):
        engine.run(Request([1], 2))
    with pytest.raises(TypeError, match=r"requests\[1\] must be a Request"):
        engine.run([Request([1], 2), [1, 2]])
    with pytest.raises(TypeError, match="Engine model must be a TinyGPT"):
        Engine(torch.nn.Linear(2, 2))


def test_static_batches_wait_for_their_longest_member(trained):
    lengths = [1, 9, 2, 3]  # the second batch may start only after the 9-token request ends
    requests = [Request([1, 2], n) for n in lengths]
    static = Engine(trained, max_batch_size=2, policy="static", step_clock=unit_clock)
    results = static.run(requests)
    first_batch_done = max(r.finish_time for r in results[:2])
    assert min(r.prefill_start for r in results[2:]) >= first_batch_done
    continuous = Engine(trained, max_batch_size=2, step_clock=unit_clock).run(requests)
    # Continuous: request 2 takes request 0's place as soon as request 0 finishes.
    assert continuous[2].prefill_start == continuous[0].finish_time
    assert continuous.duration < results.duration


def test_static_batches_compute_their_finished_rows_as_padding(trained):
    """A static batch is a fixed-shape tensor: until its longest member is done, every decode
    step computes all its rows, finished ones as padding (into the scratch block, never read)."""
    requests = [Request([1, 2], n) for n in (1, 6, 3)]
    static = Engine(trained, max_batch_size=3, policy="static", step_clock=unit_clock)
    seen_rows = []
    forward = trained.forward

    def counting_forward(ids, *args, **kwargs):
        seen_rows.append(ids.size(0))
        return forward(ids, *args, **kwargs)

    trained.forward = counting_forward
    try:
        results = static.run(requests)
    finally:
        del trained.forward
    decode_steps = [s for s in results.steps if s.prefill_tokens == 0]
    assert [s.decode_tokens + s.padding_rows for s in decode_steps] == [3] * len(decode_steps)
    # After the prefill: request 0 (1 token) is done; request 2 (3 tokens) after two more steps.
    assert [s.padding_rows for s in decode_steps] == [1, 1, 2, 2, 2], "rows of finished members"
    assert seen_rows[1:] == [3] * len(decode_steps), f"decode passes computed {seen_rows[1:]} rows"
    assert_matches_generate(trained, requests, results, ties_allowed=False)
    assert static.blocks.num_free == static.blocks.num_blocks
    continuous = Engine(trained, max_batch_size=3, step_clock=unit_clock).run(requests)
    assert all(s.padding_rows == 0 for s in continuous.steps)


def test_chunked_prefill_interleaves_with_decoding(trained):
    requests = [
        Request([1, 2], 12),
        Request(VOCAB.encode(make_sentence(random.Random(0)).text), 2, arrival=2.0),
    ]
    engine = Engine(trained, chunk_size=3, step_clock=unit_clock)
    results = engine.run(requests)
    assert all(s.prefill_tokens <= 3 for s in results.steps)
    mixed = [s for s in results.steps if s.prefill_tokens and s.decode_tokens]
    assert len(mixed) >= 3, "the long prompt's chunks must share steps with the decode"
    assert_matches_generate(trained, requests, results, ties_allowed=False)


def test_prefix_cache_skips_shared_blocks(trained):
    prompt = VOCAB.encode("<bos> the old cat near the dogs sits quietly .")  # 10 tokens
    requests = [Request(prompt, 3), Request(prompt[:10], 4, arrival=10.0)]
    engine = Engine(trained, block_size=4, prefix_caching=True, step_clock=unit_clock)
    results = engine.run(requests)
    assert results[1].cached_prompt_tokens == 8  # two full blocks of 4; the rest is computed
    second = [s for s in results.steps if s.start >= 10.0]
    assert second[0].prefill_tokens == 2
    assert_matches_generate(trained, requests, results, ties_allowed=False)
    off = Engine(trained, block_size=4, step_clock=unit_clock).run(requests)
    assert off[1].cached_prompt_tokens == 0


def test_stream_yields_tokens_as_they_are_made(trained):
    requests = sentence_requests(6, seed=2, max_new=4)
    engine = Engine(trained, max_batch_size=2, step_clock=unit_clock)
    events = list(engine.stream(requests))
    times = [t for _, _, t in events]
    assert times == sorted(times)
    results = Engine(trained, max_batch_size=2, step_clock=unit_clock).run(requests)
    for request, result in zip(requests, results):
        mine = [(tok, t) for r, tok, t in events if r is request]
        assert mine == list(zip(result.tokens, result.token_times))


def test_kv_memory_is_reported_every_step(trained):
    requests = sentence_requests(10, seed=4)
    engine = Engine(trained, block_size=4, step_clock=unit_clock)
    results = engine.run(requests)
    assert len(results.steps) > 0
    assert_accounting(engine, results)
    assert any(s.kv_wasted_bytes > 0 for s in results.steps), "partly filled blocks waste bytes"
    peak = max(s.kv_used_bytes for s in results.steps)
    c = trained.config
    assert peak % (2 * c.n_layer * c.n_kv_head * c.head_dim * 4) == 0  # whole positions


def test_report_float_ties():
    """Prints how many tokens float ties flipped in this session's random-model runs."""
    print(f"float ties that flipped a token (all within {TIE}): {len(TIES_SEEN)}")


def test_a_stream_stopped_early_returns_its_blocks(trained):
    engine = Engine(trained, max_batch_size=4, block_size=2, step_clock=unit_clock)
    events = engine.stream(sentence_requests(8, seed=6, max_new=5))
    next(events)
    assert engine.blocks.num_free < engine.blocks.num_blocks  # requests are in flight
    events.close()
    assert_idle_pool_is_free(engine)

"""Exercise 5's checks can fail, and say what is wrong in one sentence.

Each broken generate_cached below makes one classic slip of a cached generation loop; the named
check must FAIL with a sentence naming it, while the reference solution and other correct ways
of writing the loop pass every check.
"""

import pytest
import torch
from notebook_tools import assert_fails_with, load_solution

from llmlab.checks import PASS, run_checks
from llmlab.checks.ex05_kv_cache_loop import CHECKS, check_generate_cached


def statuses(fn):
    return {
        r.name: (r.status, r.message) for r in run_checks(CHECKS, fn, "generate_cached").results
    }


def loop(
    restart_positions=False,
    refeed_prompt=False,
    advance=True,
    advance_per_layer=False,
    advance_before=False,
    new_cache_each_step=False,
    logits_position=-1,
    softmax=False,
    log_softmax=False,
    only_new=False,
    extra_step=False,
    sample=False,
    position_shift=0,
    decode_position_shift=0,
    skip_final_norm=False,
    swap_pair=False,
    stack_dim=1,
    cache_len=None,
    cache_batch=None,
    keepdim=True,
    pass_cache=True,
):
    """A generate_cached written from the model's parts, with one slip switched on."""

    @torch.no_grad()
    def generate_cached(model, prompt_ids, max_new_tokens):
        B, P = prompt_ids.shape
        length = None if cache_len is None else cache_len(P, max_new_tokens)
        cache = model.new_kv_cache(cache_batch or B, length)  # block_size long by default
        ids, new, rows = prompt_ids, prompt_ids, []
        for step in range(max_new_tokens + (1 if extra_step else 0)):
            if new_cache_each_step:
                cache = model.new_kv_cache(B)
            feed = ids if refeed_prompt and step > 0 else new
            start = 0 if restart_positions else cache.length
            start += position_shift + (decode_position_shift if step > 0 else 0)
            x = model.wte(feed) + model.wpe(torch.arange(start, start + feed.size(1)))
            if advance_before:
                cache.advance(feed.size(1))
            for layer, block in enumerate(model.blocks):
                x, _ = block(x, cache if pass_cache else None, layer)
                if advance_per_layer:
                    cache.advance(feed.size(1))
            if advance and not advance_per_layer and not advance_before:
                cache.advance(feed.size(1))
            h = x[:, logits_position]
            logits = model.lm_head(h if skip_final_norm else model.ln_f(h))  # (B, V)
            if step == max_new_tokens:
                break
            if sample:
                g = torch.Generator().manual_seed(step)
                next_id = torch.multinomial(torch.softmax(logits, -1), 1, generator=g)
            else:
                next_id = logits.argmax(dim=-1, keepdim=keepdim)
            if softmax:
                rows.append(torch.softmax(logits, -1))
            elif log_softmax:
                rows.append(torch.log_softmax(logits, -1))
            else:
                rows.append(logits)
            ids, new = torch.cat([ids, next_id], dim=1), next_id
        out = ids[:, P:] if only_new else ids
        pair = (out, torch.stack(rows, dim=stack_dim))
        return pair[::-1] if swap_pair else pair

    return generate_cached


def uncached(model, prompt_ids, max_new_tokens):
    ids, rows = prompt_ids, []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            logits = model(ids)[:, -1]  # the whole sequence, every step
            rows.append(logits)
            ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)
    return ids, torch.stack(rows, dim=1)


def token_by_token_prefill(model, prompt_ids, max_new_tokens):
    """Feeds the prompt one token at a time: right tokens, but no prefill."""
    B, P = prompt_ids.shape
    cache = model.new_kv_cache(B, P + max_new_tokens)
    ids, rows = prompt_ids, []
    with torch.no_grad():
        for i in range(P):
            logits = model(prompt_ids[:, i : i + 1], kv_cache=cache)[:, -1]
        for _ in range(max_new_tokens):
            rows.append(logits)
            new = logits.argmax(-1, keepdim=True)
            ids = torch.cat([ids, new], dim=1)
            if len(rows) < max_new_tokens:
                logits = model(new, kv_cache=cache)[:, -1]
    return ids, torch.stack(rows, dim=1)


STEPS = "prefill, then one token per step"
GALLERY = [  # (learner's generate_cached, check that must FAIL, words its message must contain)
    (loop(restart_positions=True), "logits", "positions restarted at 0"),
    (loop(refeed_prompt=True), STEPS, "is fed again every step"),
    (loop(advance=False), STEPS, "the cache was not advanced"),
    (loop(advance_per_layer=True), STEPS, "(not once per layer)"),
    (loop(advance_before=True), STEPS, "advance it after the blocks have run"),
    (loop(new_cache_each_step=True), STEPS, "used a new cache"),
    (uncached, STEPS, "no step used a KV cache: make one"),
    (loop(pass_cache=False), STEPS, "a cache was made but no block was given it"),
    (loop(position_shift=1), "logits", "the prefill used positions 1..5"),
    (loop(decode_position_shift=1), "logits", "one too far"),
    (token_by_token_prefill, STEPS, "the first step (the prefill) fed 1 token;"),
    (loop(logits_position=0), "logits", "step 0's logits are those of the prompt's first position"),
    (loop(softmax=True), "logits", "these are probabilities (softmax)"),
    (loop(log_softmax=True), "logits", "log-probabilities (log_softmax"),
    (loop(skip_final_norm=True), "logits", "the final layer norm is skipped"),
    (loop(only_new=True), "returns (ids, logits)", "only the new tokens"),
    (loop(swap_pair=True), "returns (ids, logits)", "the pair is the wrong way round"),
    (loop(stack_dim=0), "returns (ids, logits)", "steps first: stack the rows along dim 1"),
    (loop(extra_step=True), STEPS, "the last token is picked, never fed"),
    (loop(sample=True), "tokens", "pick greedily"),
    (loop(cache_len=lambda p, n: p), STEPS, "the cache is too short"),
    (loop(cache_len=lambda p, n: p), STEPS, "raised ValueError (kv_cache is full"),
    (loop(cache_batch=1), STEPS, "the cache was made for another batch size"),
    (loop(keepdim=False), STEPS, "keepdim=True gives (B, 1)"),
    (loop(keepdim=False), "tokens", "raised RuntimeError"),
]


def test_the_gallery_is_large_enough():
    assert len({id(fn) for fn, _, _ in GALLERY}) >= 15


@pytest.mark.parametrize("fn, check, words", GALLERY, ids=[w for _, _, w in GALLERY])
def test_each_classic_slip_fails_with_its_sentence(fn, check, words):
    assert_fails_with(statuses(fn), check, words)


def test_restarted_positions_also_change_the_tokens_and_the_generated_runs():
    result = statuses(loop(restart_positions=True))
    assert result["tokens"][0] == "FAIL" and result["trained model"][0] == "FAIL"
    assert "positions restarted at 0" in result["generated inputs"][1]
    assert result[STEPS][0] == PASS  # the cache saw a right prefill and right steps


def test_the_uncached_loop_gets_the_right_tokens_but_fails_only_the_cache_checks():
    result = statuses(uncached)
    failing = [name for name, (status, _) in result.items() if status != PASS]
    assert failing == ["prefill, then one token per step", "one new token"]


def test_reference_solution_passes_all():
    report = check_generate_cached(load_solution("05_kv_cache_loop").generate_cached)
    assert report.solved and len(report.results) == len(CHECKS)


def via_model_forward(model, prompt_ids, max_new_tokens):
    """Correct too: let the model place positions (from cache.length) and advance the cache."""
    B, P = prompt_ids.shape
    cache = model.new_kv_cache(B, P + max_new_tokens)
    ids, new, rows = prompt_ids, prompt_ids, []
    with torch.inference_mode():
        for _ in range(max_new_tokens):
            logits = model(new, kv_cache=cache, last_only=True)[:, -1]
            rows.append(logits)
            new = logits.argmax(-1, keepdim=True)
            ids = torch.cat([ids, new], dim=1)
    return ids, torch.stack(rows, dim=1)


def preallocated(model, prompt_ids, max_new_tokens):
    """Correct too: fill preallocated outputs, prefill outside the loop, float64 logits out."""
    B, P = prompt_ids.shape
    V = model.config.vocab_size
    ids = torch.empty(B, P + max_new_tokens, dtype=torch.long)
    ids[:, :P] = prompt_ids
    out = torch.empty(B, max_new_tokens, V, dtype=torch.float64)
    cache = model.new_kv_cache(B)
    with torch.no_grad():
        logits = model(prompt_ids, kv_cache=cache)[:, -1]
        for i in range(max_new_tokens):
            out[:, i] = logits
            ids[:, P + i] = logits.argmax(-1)
            if i + 1 < max_new_tokens:
                logits = model(ids[:, P + i : P + i + 1], kv_cache=cache)[:, -1]
    return ids, out


def indexes_the_position_table(model, prompt_ids, max_new_tokens):
    """Correct too: wpe.weight[positions] (no call to wpe), positions as a (B, T) tensor."""
    B, P = prompt_ids.shape
    cache = model.new_kv_cache(B, P + max_new_tokens)
    ids, new, rows = prompt_ids, prompt_ids, []
    for _ in range(max_new_tokens):  # no no_grad: the logits carry autograd history
        T = new.size(1)
        positions = torch.arange(cache.length, cache.length + T).expand(B, T)
        x = model.wte(new) + model.wpe.weight[positions]
        for layer, block in enumerate(model.blocks):
            x, _ = block(x, cache, layer)
        cache.advance(T)
        logits = model.lm_head(model.ln_f(x))[:, -1]
        rows.append(logits)
        new = logits.argmax(-1).unsqueeze(1)
        ids = torch.cat([ids, new], dim=1)
    return ids, torch.stack(rows, dim=1)


def expanded_positions(model, prompt_ids, max_new_tokens):
    """Correct too: (B, T) positions through wpe, every new token collected in a list."""
    B, P = prompt_ids.shape
    cache = model.new_kv_cache(B)
    new_tokens, rows, new = [], [], prompt_ids
    with torch.inference_mode():
        while len(new_tokens) < max_new_tokens:
            pos = cache.positions(new.size(1)).unsqueeze(0).repeat(B, 1)
            x = model.wte(new) + model.wpe(pos)
            for layer in range(len(model.blocks)):
                x = model.blocks[layer](x, kv_cache=cache, layer=layer)[0]
            cache.advance(new.size(1))
            row = model.lm_head(model.ln_f(x[:, -1, :]))
            rows.append(row.float())
            new = row.argmax(dim=1, keepdim=True)
            new_tokens.append(new)
    return torch.cat([prompt_ids, *new_tokens], dim=1), torch.stack(rows, 1)


RIGHT = [via_model_forward, preallocated, loop(), indexes_the_position_table, expanded_positions]


@pytest.mark.parametrize("fn", RIGHT, ids=lambda f: f.__name__)
def test_correct_variants_pass_all(fn):
    assert check_generate_cached(fn).solved


def test_a_crash_is_reported_as_a_crash_not_a_step_count():
    status, message = statuses(loop(keepdim=False))[STEPS]
    assert status != PASS and "raised" in message and "times for" not in message


# ---- issue #24: right answers the first checks rejected, wrong ones they let through ---------


def slices_all_position_embeddings(model, prompt_ids, max_new_tokens):
    """Correct: every position embedding looked up once, then sliced per step."""
    B, P = prompt_ids.shape
    table = model.wpe(torch.arange(P + max_new_tokens))  # (P + N, C), one lookup
    cache = model.new_kv_cache(B, P + max_new_tokens)
    ids, new, rows = prompt_ids, prompt_ids, []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            T = new.size(1)
            x = model.wte(new) + table[cache.length : cache.length + T]
            for layer, block in enumerate(model.blocks):
                x, _ = block(x, cache, layer)
            cache.advance(T)
            rows.append(model.lm_head(model.ln_f(x[:, -1])))
            new = rows[-1].argmax(-1, keepdim=True)
            ids = torch.cat([ids, new], dim=1)
    return ids, torch.stack(rows, dim=1)


def calls_block_forward(model, prompt_ids, max_new_tokens):
    """Correct: each block's forward called directly (no module call, so no module hooks run)."""
    B, P = prompt_ids.shape
    cache = model.new_kv_cache(B, P + max_new_tokens)
    ids, new, rows = prompt_ids, prompt_ids, []
    with torch.inference_mode():
        for _ in range(max_new_tokens):
            positions = cache.positions(new.size(1))
            x = model.wte.forward(new) + model.wpe.forward(positions)
            for layer, block in enumerate(model.blocks):
                x, _ = block.forward(x, cache, layer)
            cache.advance(new.size(1))
            rows.append(model.lm_head.forward(model.ln_f.forward(x))[:, -1])
            new = rows[-1].argmax(-1, keepdim=True)
            ids = torch.cat([ids, new], dim=1)
    return ids, torch.stack(rows, dim=1)


@pytest.mark.parametrize("fn", [slices_all_position_embeddings, calls_block_forward])
def test_right_answers_written_another_way_pass(fn):
    assert check_generate_cached(fn).solved


def casts_to_bfloat16(model, prompt_ids, max_new_tokens):
    """Casts the caller's model to bfloat16 "for speed": Module.to works in place."""
    return loop()(model.to(torch.bfloat16), prompt_ids, max_new_tokens)


def casts_to_float64(model, prompt_ids, max_new_tokens):
    """Casts the caller's model to float64 "for accuracy": right logits, a changed model."""
    return loop()(model.double(), prompt_ids, max_new_tokens)


def test_a_loop_that_casts_the_callers_model_fails_with_a_sentence():
    result = statuses(casts_to_bfloat16)
    for check in ("inputs unchanged", "logits", "worked examples"):
        assert result[check][0] == "FAIL", (check, result[check])
    assert "is now torch.bfloat16" in result["inputs unchanged"][1]
    assert "leave the caller's model" in result["logits"][1]
    assert "changed its argument model" in result["worked examples"][1]


def test_a_loop_that_casts_the_model_to_float64_fails_only_on_its_input():
    result = statuses(casts_to_float64)
    failing = [name for name, (status, _) in result.items() if status != PASS]
    assert "inputs unchanged" in failing and "logits" not in failing, result
    assert "is now torch.float64" in result["inputs unchanged"][1]

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
    new_cache_each_step=False,
    logits_position=-1,
    softmax=False,
    only_new=False,
    extra_step=False,
    sample=False,
):
    """A generate_cached written from the model's parts, with one slip switched on."""

    @torch.no_grad()
    def generate_cached(model, prompt_ids, max_new_tokens):
        B, P = prompt_ids.shape
        cache = model.new_kv_cache(B)  # block_size long: room for the slips to run
        ids, new, rows = prompt_ids, prompt_ids, []
        for step in range(max_new_tokens + (1 if extra_step else 0)):
            if new_cache_each_step:
                cache = model.new_kv_cache(B)
            feed = ids if refeed_prompt and step > 0 else new
            start = 0 if restart_positions else cache.length
            x = model.wte(feed) + model.wpe(torch.arange(start, start + feed.size(1)))
            for layer, block in enumerate(model.blocks):
                x, _ = block(x, cache, layer)
                if advance_per_layer:
                    cache.advance(feed.size(1))
            if advance and not advance_per_layer:
                cache.advance(feed.size(1))
            logits = model.lm_head(model.ln_f(x[:, logits_position]))  # (B, V)
            if step == max_new_tokens:
                break
            if sample:
                g = torch.Generator().manual_seed(step)
                next_id = torch.multinomial(torch.softmax(logits, -1), 1, generator=g)
            else:
                next_id = logits.argmax(dim=-1, keepdim=True)
            rows.append(torch.softmax(logits, -1) if softmax else logits)
            ids, new = torch.cat([ids, next_id], dim=1), next_id
        out = ids[:, P:] if only_new else ids
        return out, torch.stack(rows, dim=1)

    return generate_cached


def uncached(model, prompt_ids, max_new_tokens):
    ids, rows = prompt_ids, []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            logits = model(ids)[:, -1]  # the whole sequence, every step
            rows.append(logits)
            ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)
    return ids, torch.stack(rows, dim=1)


GALLERY = [
    (loop(restart_positions=True), "prefill, then one token per step", "positions restarted at 0"),
    (loop(refeed_prompt=True), "prefill, then one token per step", "is fed again every step"),
    (loop(advance=False), "prefill, then one token per step", "the cache was not advanced"),
    (loop(advance_per_layer=True), "prefill, then one token per step", "(not once per layer)"),
    (loop(new_cache_each_step=True), "prefill, then one token per step", "used a new cache"),
    (uncached, "prefill, then one token per step", "no step used a KV cache"),
    (loop(logits_position=0), "logits", "step 0's logits are those of the prompt's first position"),
    (loop(softmax=True), "logits", "these are probabilities (softmax)"),
    (loop(only_new=True), "returns (ids, logits)", "only the new tokens"),
    (
        loop(extra_step=True),
        "prefill, then one token per step",
        "the last token is picked, never fed",
    ),
    (loop(sample=True), "tokens", "pick greedily"),
]


@pytest.mark.parametrize("fn, check, words", GALLERY, ids=[words for _, _, words in GALLERY])
def test_each_classic_slip_fails_with_its_sentence(fn, check, words):
    assert_fails_with(statuses(fn), check, words)


def test_restarted_positions_also_change_the_tokens_and_logits():
    result = statuses(loop(restart_positions=True))
    assert (
        result["logits"][0] == "FAIL" and "differ from a full forward pass" in result["logits"][1]
    )
    assert result["trained model"][0] == "FAIL"


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


@pytest.mark.parametrize("fn", [via_model_forward, preallocated, loop()])
def test_correct_variants_pass_all(fn):
    assert check_generate_cached(fn).solved

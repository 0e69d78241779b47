"""Autoregressive generation, with and without a KV cache.

Both paths pick the same tokens: the cache changes how much work a step does, not its result.
"""

import torch

from llmlab.model import check_token_ids


def generate(model, prompt_ids, max_new_tokens, use_cache=True, temperature=0.0, seed=None):
    """Extend prompt_ids by max_new_tokens tokens.

    prompt_ids: (T,) or (B, T) integer tensor (or a list of ints). Greedy (argmax) when
    temperature == 0, else samples from softmax(logits / temperature) with a generator seeded
    by `seed`. use_cache=False recomputes the whole prefix every step: the baseline that
    shows what the cache saves. Returns the prompt followed by the new tokens, shaped like
    prompt_ids.
    """
    idx, squeeze = _as_batch(prompt_ids, model.device)
    _check_lengths(model, idx, max_new_tokens)
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or temperature < 0
    ):
        raise ValueError(f"temperature must be a number >= 0, got {temperature!r}")
    generator = None
    if temperature > 0:
        generator = torch.Generator(device=model.device)
        generator.manual_seed(0 if seed is None else seed)

    with torch.inference_mode():
        cache = model.new_kv_cache(idx.size(0), idx.size(1) + max_new_tokens) if use_cache else None
        new_tokens = idx  # what the model has not seen yet
        for _ in range(max_new_tokens):
            if use_cache:
                logits = model(new_tokens, kv_cache=cache, last_only=True)  # only the new tokens
            else:
                logits = model(idx, last_only=True)  # the whole sequence, every step
            next_id = _pick(logits[:, -1, :], temperature, generator)  # (B, 1)
            idx = torch.cat([idx, next_id], dim=1)
            new_tokens = next_id
    return idx[0] if squeeze else idx


def _pick(logits, temperature, generator):
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    probs = torch.softmax(logits / temperature, dim=-1)
    return torch.multinomial(probs, 1, generator=generator)


def _as_batch(prompt_ids, device):
    if isinstance(prompt_ids, (list, tuple)):
        if not all(isinstance(t, int) and not isinstance(t, bool) for t in prompt_ids):
            raise TypeError("prompt_ids as a list must hold ints (token ids)")
        prompt_ids = torch.tensor(prompt_ids, dtype=torch.long)
    if not isinstance(prompt_ids, torch.Tensor):
        raise TypeError(
            f"prompt_ids must be a torch.Tensor or a list of ints, got {type(prompt_ids).__name__}"
        )
    if prompt_ids.dtype != torch.long:
        raise TypeError(
            f"prompt_ids must have dtype torch.long (token ids), got {prompt_ids.dtype}"
        )
    if prompt_ids.dim() not in (1, 2):
        raise ValueError(
            f"prompt_ids must have shape (tokens,) or (batch, tokens), got {tuple(prompt_ids.shape)}"
        )
    squeeze = prompt_ids.dim() == 1
    idx = prompt_ids.unsqueeze(0) if squeeze else prompt_ids
    if idx.size(0) == 0 or idx.size(1) == 0:
        raise ValueError(
            f"prompt_ids is empty (shape {tuple(prompt_ids.shape)}): give at least one token"
        )
    return idx.to(device), squeeze


def _check_lengths(model, idx, max_new_tokens):
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int):
        raise TypeError(f"max_new_tokens must be an int, got {type(max_new_tokens).__name__}")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    block_size = model.config.block_size
    if idx.size(1) + max_new_tokens > block_size:
        raise ValueError(
            f"prompt ({idx.size(1)} tokens) + max_new_tokens ({max_new_tokens}) exceeds the model's "
            f"context block_size ({block_size})"
        )
    check_token_ids(idx, model.config.vocab_size, "prompt_ids")

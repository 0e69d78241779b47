import torch


@torch.inference_mode()
def generate_cached(model, prompt_ids, max_new_tokens):
    """Greedy generation with a KV cache: prefill the prompt, then one token per step."""
    B, P = prompt_ids.shape
    cache = model.new_kv_cache(batch_size=B, max_len=P + max_new_tokens)
    ids, new, step_logits = prompt_ids, prompt_ids, []
    for _ in range(max_new_tokens):
        # Positions continue after what the cache holds: 0..P-1 for the prompt, then P, P+1, ...
        start = cache.length
        positions = torch.arange(start, start + new.size(1), device=new.device)
        x = model.wte(new) + model.wpe(positions)  # (B, T, C)
        for layer, block in enumerate(model.blocks):
            x, _ = block(x, cache, layer)  # stores this step's K and V in the cache
        cache.advance(new.size(1))  # once per step, after every layer has written
        logits = model.lm_head(model.ln_f(x[:, -1:]))  # (B, 1, V): the last position only
        next_id = logits[:, -1].argmax(dim=-1, keepdim=True)  # (B, 1)
        step_logits.append(logits[:, -1])
        ids = torch.cat([ids, next_id], dim=1)
        new = next_id  # the only token the cache has not seen
    V = model.config.vocab_size
    logits = torch.stack(step_logits, dim=1) if step_logits else torch.empty(B, 0, V)
    return ids, logits

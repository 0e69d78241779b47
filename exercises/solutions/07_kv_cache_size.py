BYTES_PER_ELEMENT = {"fp32": 4, "fp16": 2, "bf16": 2, "fp8": 1, "int8": 1}


def kv_cache_size(model, seq_len, batch_size=1, dtype="fp16"):
    """Bytes of K and V for batch_size sequences of seq_len tokens."""
    if dtype not in BYTES_PER_ELEMENT:
        raise ValueError(f"dtype must be one of {sorted(BYTES_PER_ELEMENT)}, got {dtype!r}")
    if seq_len < 0:
        raise ValueError(f"seq_len must be >= 0, got {seq_len}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    # Per token and layer: K and V (2), each n_kv_head vectors of head_dim numbers.
    per_token = 2 * model.n_layer * model.n_kv_head * model.head_dim
    return per_token * seq_len * batch_size * BYTES_PER_ELEMENT[dtype]

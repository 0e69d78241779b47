from llmlab.cost import n_weights


def decode_step_seconds(config, batch, context, bandwidth, peak_flops, bytes_per_element=2):
    """Roofline time of one decode step: batch sequences, context cached positions each."""
    L, H, Hkv, D = config.n_layer, config.n_head, config.n_kv_head, config.head_dim
    params = n_weights(config)["other"]  # every weight but the embedding tables
    # The weights are read once per step, however many sequences share it.
    weight_bytes = params * bytes_per_element
    # Each sequence reads its own K and V (context + 1 positions) and writes the new one.
    kv_bytes = 2 * L * batch * Hkv * D * (context + 2) * bytes_per_element
    # 2 FLOPs (multiply + add) per weight per sequence; attention: q.k and weights.v.
    flops = 2 * params * batch + 4 * L * batch * H * D * (context + 1)
    return max((weight_bytes + kv_bytes) / bandwidth, flops / peak_flops)


def compute_bound_batch(
    config, context, bandwidth, peak_flops, bytes_per_element=2, max_batch=4096
):
    """Smallest batch whose decode step is limited by FLOPs, not bytes; None up to max_batch."""
    L, H, Hkv, D = config.n_layer, config.n_head, config.n_kv_head, config.head_dim
    params = n_weights(config)["other"]
    for batch in range(1, max_batch + 1):
        kv_bytes = 2 * L * batch * Hkv * D * (context + 2) * bytes_per_element
        flops = 2 * params * batch + 4 * L * batch * H * D * (context + 1)
        if flops / peak_flops >= (params * bytes_per_element + kv_bytes) / bandwidth:
            return batch
    return None

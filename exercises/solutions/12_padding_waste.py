def padding_waste(lengths, batch_size):
    """Share of a static batcher's decode slots that hold a finished request."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    slots = 0
    for start in range(0, len(lengths), batch_size):
        batch = lengths[start : start + batch_size]  # in arrival order
        # Every member keeps its row until the longest is done.
        slots += len(batch) * max(batch)
    return 0.0 if slots == 0 else 1 - sum(lengths) / slots

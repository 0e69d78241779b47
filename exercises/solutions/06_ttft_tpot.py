def latency_metrics(request_time, token_times):
    """TTFT, TPOT and end-to-end latency (seconds) of one request from its token timestamps."""
    times = [float(t) for t in token_times]
    if not times:
        raise ValueError("token_times is empty: a request needs at least one token to measure")
    if times[0] < request_time:
        raise ValueError(f"token_times starts at {times[0]}, before request_time {request_time}")
    if any(later < earlier for earlier, later in zip(times, times[1:])):
        raise ValueError("token_times must be in increasing order (the order tokens arrived)")
    n = len(times)
    return {
        "ttft": times[0] - request_time,  # from the request's arrival, not the first token
        # n tokens have n - 1 gaps; the mean gap is (last - first) / (n - 1).
        "tpot": (times[-1] - times[0]) / (n - 1) if n > 1 else None,
        "e2e": times[-1] - request_time,
    }

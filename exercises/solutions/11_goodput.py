def goodput(timelines, ttft_slo, tpot_slo, duration):
    """Requests per second that were served and met both latency limits."""
    if duration <= 0:
        raise ValueError(f"duration must be > 0 seconds, got {duration}")
    good = 0
    for t in timelines:
        times = t["token_times"]
        if t["error"] or not times:
            continue  # never served: it cannot meet an SLO
        if times[0] - t["arrival"] > ttft_slo:
            continue
        # A one-token answer has no TPOT, so nothing of it can be too slow.
        if len(times) > 1 and (times[-1] - times[0]) / (len(times) - 1) > tpot_slo:
            continue
        good += 1
    return good / duration

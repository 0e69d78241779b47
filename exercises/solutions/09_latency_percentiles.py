import numpy as np


def latency_percentiles(timelines):
    """P50 and P95 of TTFT and TPOT, in seconds, over the requests that qualify."""
    served = [t for t in timelines if not t["error"] and t["token_times"]]
    # TTFT from arrival: the time in the queue is time the user waits too.
    ttfts = [t["token_times"][0] - t["arrival"] for t in served]
    # One TPOT per request: n tokens leave n - 1 gaps after the first.
    tpots = [
        (t["token_times"][-1] - t["token_times"][0]) / (len(t["token_times"]) - 1)
        for t in served
        if len(t["token_times"]) >= 2
    ]

    def pct(values, q):
        return float(np.percentile(values, q)) if values else None

    return {
        "ttft_p50": pct(ttfts, 50),
        "ttft_p95": pct(ttfts, 95),
        "tpot_p50": pct(tpots, 50),
        "tpot_p95": pct(tpots, 95),
    }

"""Sentences about measured values, decided by the data.

Every "faster", "climbs", "a straight line", "a floor" or "the best" that the book says about a
timing comes from one of these helpers, never from typed prose: the numbers move from machine to
machine and run to run, so the words must follow them. Each helper returns a Verdict:

    kind     what the data shows, one word per outcome ("faster", "tie", "unresolved", ...)
    text     a sentence fragment that says so, with the figures, for any outcome
    holds()  checks the claim against the values once more, by a separate, plain rule

Timings are compared as PAIRED RATIOS (llmlab.measure.compare times the candidates in
interleaved rounds; Comparison.ratio gives b_i / a_i per round with an interval on their median).
A verdict is then a direction with its ratio and interval, a tie ("within 5% of each other": the
whole interval inside the tie band), or "not resolved on this run" (the interval straddles the
band's edge). The spread of single runs (Timing.noise) is NOT a tie band: a machine whose load
changes from round to round spreads single runs widely while the paired ratio stays tight.
`compare_ratio`, `fastest`, `trend_of` (timed sweeps), `best_of_samples` (repeated runs, e.g.
seeds) and `steady` (a load run's second half against its first) work that way; no helper
chooses "the best" from a set it cannot tell apart. `compare_times`, `trend`, `best` and
`floor_check` take single figures with a band the caller states (a cost model's prediction, a
floor), for figures that have no rounds to pair.

Every verdict made in a process is kept in RECORDED, so a test can check all the verdicts a page
glued.
"""

import math
import numbers
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

RECORDED: list["Verdict"] = []


@dataclass(frozen=True)
class Verdict:
    helper: str
    kind: str
    text: str
    values: dict = field(default_factory=dict)

    def holds(self) -> bool:
        """Does the claim (kind) agree with the values? Rechecked by a plain rule per helper."""
        return bool(_CHECKS[self.helper](self.kind, self.values))  # a NumPy bool too

    def __str__(self):
        return self.text


def _record(helper, kind, text, **values) -> Verdict:
    verdict = Verdict(helper, kind, text, values)
    RECORDED.append(verdict)
    return verdict


def _check_tie(tie):
    if isinstance(tie, bool) or not isinstance(tie, numbers.Real) or not 0 <= tie < math.inf:
        raise ValueError(f"tie must be a relative band >= 0, e.g. 0.05 for 5%, got {tie!r}")


def _check_positive(name, values):
    for v in values:
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not v > 0:
            raise ValueError(f"{name} must hold positive numbers, got {v!r}")


def _times(x: float) -> str:
    return f"{x:.1f}"


# --- two figures ---------------------------------------------------------------------------


def compare_times(a_s: float, b_s: float, *, tie: float, a: str, b: str) -> Verdict:
    """Is `a` faster than `b`? a_s, b_s: their times in seconds (lower is faster).

    kind: "faster" (a takes less than b / (1 + tie)), "slower" (a takes more than b * (1 + tie)),
    or "tie". text: "a is 2.3 times as fast as b" / "a takes 1.8 times as long as b" / "a and b
    take the same time within this machine's noise (5%)".
    """
    _check_positive("a_s and b_s", (a_s, b_s))
    _check_tie(tie)
    ratio = b_s / a_s
    if ratio > 1 + tie:
        kind, text = "faster", f"{a} is {_times(ratio)} times as fast as {b}"
    elif ratio < 1 / (1 + tie):
        kind, text = "slower", f"{a} takes {_times(1 / ratio)} times as long as {b}"
    else:
        kind = "tie"
        text = f"{a} and {b} take the same time within this machine's noise ({tie:.0%})"
    return _record("compare_times", kind, text, a_s=a_s, b_s=b_s, tie=tie)


def floor_check(measured_s: float, floor_s: float, *, tie: float) -> Verdict:
    """Where a measured time sits against the floor a model predicts for it.

    kind: "above" (slower than the floor by more than the tie band: the usual case), "at"
    (within the band), "below" (faster than a floor should allow: the probe underestimated the
    machine, or the bytes came from a cache; the text says so).
    """
    _check_positive("measured_s and floor_s", (measured_s, floor_s))
    _check_tie(tie)
    ratio = measured_s / floor_s
    if ratio > 1 + tie:
        kind, text = "above", f"{_times(ratio)} times its floor"
    elif ratio >= 1 / (1 + tie):
        kind, text = "at", f"at its floor, within this machine's noise ({tie:.0%})"
    else:
        kind = "below"
        text = (
            f"{1 / ratio:.2f} times faster than its floor, which a floor cannot be: the bandwidth "
            "probe read less than this step streamed (a busy moment during the probe, or bytes "
            "served from a cache)"
        )
    return _record("floor_check", kind, text, measured_s=measured_s, floor_s=floor_s, tie=tie)


# --- paired ratios: a direction, a tie, or not resolved --------------------------------------


def _interval_text(r) -> str:
    low, high = r.interval
    if math.isinf(high):
        return f"{r.n} rounds, too few for a {r.confidence:.0%} interval"
    return f"{r.confidence:.0%} interval {low:.2f}-{high:.2f}"


def _ratio_kind(low: float, high: float, tie: float) -> str:
    if low > 1 + tie:
        return "faster"
    if high < 1 / (1 + tie):
        return "slower"
    if low >= 1 / (1 + tie) and high <= 1 + tie:
        return "tie"
    return "unresolved"


def compare_ratio(ratio, *, tie: float = 0.05, a: str, b: str) -> Verdict:
    """Is `a` faster than `b`, judged on their paired ratio (llmlab.measure.Ratio, b_i / a_i)?

    kind "faster" (the whole interval above 1 + tie), "slower" (wholly below 1 / (1 + tie)),
    "tie" (wholly inside the band: "within 5% of each other"), or "unresolved" (the interval
    straddles an edge of the band: this run cannot tell; the text gives the interval).
    """
    _check_tie(tie)
    low, high = ratio.interval
    kind = _ratio_kind(low, high, tie)
    m, ci = ratio.median, _interval_text(ratio)
    if kind == "faster":
        text = f"{a} is {_times(m)} times as fast as {b} ({ci})"
    elif kind == "slower":
        # the interval said the way the sentence reads: a's time over b's
        ci = f"{ratio.confidence:.0%} interval {1 / high:.2f}-{1 / low:.2f}"
        text = f"{a} takes {_times(1 / m)} times as long as {b} ({ci})"
    elif kind == "tie":
        text = f"{a} and {b} take the same time, within {tie:.0%} of each other ({ci})"
    else:
        text = (
            f"{a} against {b} is not resolved on this run: {b} takes {low:.2f} to {high:.2f} "
            f"times as long as {a} ({ci})"
        )
    return _record("compare_ratio", kind, text, ratio=ratio, low=low, high=high, tie=tie)


def fastest(comparison, *, tie: float = 0.05, fmt: Callable[[float], str] | None = None) -> Verdict:
    """Which of an interleaved comparison's names is fastest (llmlab.measure.Comparison)?

    The leader is the name with the lowest median round; every other name is compared with it as
    a paired ratio. kind "clear" when every other is resolved slower, else "set": the names that
    cannot be told apart from the leader (not resolved slower) are named together, and no single
    one is chosen. values["set"] lists them (leader first).
    """
    _check_tie(tie)
    names = list(comparison.rounds)
    if len(names) < 2:
        raise ValueError("comparison must hold at least two paired names")
    fmt = fmt or (lambda s: f"{s * 1e3:.3g} ms")
    medians = {n: statistics.median(comparison.rounds[n]) for n in names}
    leader = min(names, key=medians.get)
    lows = {n: comparison.ratio(leader, n).interval[0] for n in names if n != leader}
    same = [leader] + [n for n in names if n != leader and not lows[n] > 1 + tie]
    if len(same) == 1:
        kind, text = "clear", f"{leader} is the fastest ({fmt(medians[leader])})"
    else:
        listed = ", ".join(str(n) for n in same[:-1]) + f" and {same[-1]}"
        kind = "set"
        text = (
            f"{listed} cannot be told apart on this run (each within its interval of the fastest)"
        )
    return _record(
        "fastest", kind, text, lows={str(k): v for k, v in lows.items()}, tie=tie,
        leader=str(leader), set=[str(n) for n in same],
    )  # fmt: skip


def best_of_samples(
    samples: dict, *, tie: float = 0.05, higher_is_better: bool = True,
    fmt: Callable[[float], str] = "{:.3g}".format,
) -> Verdict:  # fmt: skip
    """The best option when each was measured several times independently (e.g. goodput over
    repeated seeds): medians compared by a seeded bootstrap interval (measure.ratio_of_samples).
    kind "clear" when the leader beats every other resolved, else "set" naming every option that
    cannot be told apart from the leader; nothing is chosen from a set."""
    from llmlab.measure import ratio_of_samples

    _check_tie(tie)
    if not isinstance(samples, dict) or len(samples) < 2:
        raise ValueError("samples must be a dict of at least two {name: [values...]}")
    medians = {n: statistics.median(v) for n, v in samples.items()}
    sign = 1 if higher_is_better else -1
    leader = max(samples, key=lambda n: sign * medians[n])
    lows = {}
    for n in samples:
        if n == leader:
            continue
        # ratio > 1 means the leader is better: other/leader for lower-is-better values
        r = (
            ratio_of_samples(samples[n], samples[leader])
            if higher_is_better
            else ratio_of_samples(samples[leader], samples[n])
        )
        lows[n] = r.interval[0]
    same = [leader] + [n for n in samples if n != leader and not lows[n] > 1 + tie]
    if len(same) == 1:
        kind, text = "clear", f"{leader} is the best ({fmt(medians[leader])})"
    else:
        listed = ", ".join(str(n) for n in same[:-1]) + f" and {same[-1]}"
        kind, text = "set", f"{listed} cannot be told apart on this run"
    return _record(
        "best_of_samples", kind, text, lows={str(k): v for k, v in lows.items()}, tie=tie,
        leader=str(leader), set=[str(n) for n in same],
    )  # fmt: skip


def trend_of(comparison, order: Sequence, *, tie: float = 0.05, what: str,
             up: str = "climbs", down: str = "falls") -> Verdict:  # fmt: skip
    """The direction of an interleaved sweep's times along `order` (e.g. growing context), from
    paired ratios: "rises" (the last is resolved slower than the first, and no step between
    neighbours is resolved faster), "falls" (the mirror), "flat" (every point resolved a tie
    with the first), "mixed" (steps resolved both ways), or "unresolved"."""
    _check_tie(tie)
    order = list(order)
    if len(order) < 2:
        raise ValueError("order must name at least two points of the comparison")
    steps = [_ratio_kind(*comparison.ratio(x, y).interval, tie) for x, y in zip(order, order[1:])]
    ends = comparison.ratio(order[0], order[-1])
    end_kind = _ratio_kind(*ends.interval, tie)
    vs_first = [_ratio_kind(*comparison.ratio(order[0], y).interval, tie) for y in order[1:]]
    first = statistics.median(comparison.rounds[order[0]]) * 1e3
    last = statistics.median(comparison.rounds[order[-1]]) * 1e3
    span = f"from {first:.3g} to {last:.3g} ms ({_interval_text(ends)} on the ratio)"
    if end_kind == "faster" and "slower" not in steps:
        kind, text = "rises", f"{what} {up} {span}"
    elif end_kind == "slower" and "faster" not in steps:
        kind, text = "falls", f"{what} {down} {span}"
    elif all(k == "tie" for k in vs_first):
        kind, text = "flat", f"{what} stays within {tie:.0%} of its first value ({first:.3g} ms)"
    elif "faster" in steps and "slower" in steps:
        kind, text = "mixed", f"{what} goes up and down, beyond this run's intervals"
    else:
        kind = "unresolved"
        text = (
            f"{what} shows no shape this run can resolve ({first:.3g} to {last:.3g} ms; "
            f"{_interval_text(ends)} on their ratio)"
        )
    return _record("trend_of", kind, text, steps=steps, end=end_kind, vs_first=vs_first, tie=tie)


def steady(latencies_s: Sequence[float], *, tie: float = 0.10, what: str = "latency") -> Verdict:
    """Did a load run reach a steady state? latencies_s: each request's latency in order of
    arrival (warm-up already discarded). The second half's median is compared with the first
    half's by a seeded bootstrap interval: kind "growing" when the second half is resolved above
    the first by more than the tie band (a queue still building: at or past capacity), else
    "steady". Only a "steady" run may be said to sustain its rate."""
    from llmlab.measure import ratio_of_samples

    _check_tie(tie)
    ys = list(latencies_s)
    if len(ys) < 8:
        raise ValueError(f"latencies_s must hold at least 8 requests, got {len(ys)}")
    _check_positive("latencies_s", ys)
    half = len(ys) // 2
    r = ratio_of_samples(ys[:half], ys[half:], a="first half", b="second half")
    low, high = r.interval
    if low > 1 + tie:
        kind = "growing"
        text = (
            f"the {what} was still growing: the second half's median is {r.median:.2f} times the "
            f"first half's ({_interval_text(r)}), so the run never reached a steady state"
        )
    else:
        kind = "steady"
        text = (
            f"the {what} held steady: the second half's median is {r.median:.2f} times the first "
            f"half's ({_interval_text(r)}), not above it by more than {tie:.0%}"
        )
    return _record("steady", kind, text, first=ys[:half], second=ys[half:], low=low, tie=tie)


# --- a series ------------------------------------------------------------------------------


def trend(
    ys: Sequence[float],
    *,
    tie: float,
    what: str,
    fmt: Callable[[float], str] = "{:.3g}".format,
    up: str = "climbs",
    down: str = "falls",
) -> Verdict:
    """The direction of a series measured at growing x (e.g. tokens/s against prompt length).

    kind: "rises" (no step falls by more than the tie band, and the last point is above the first
    by more than it), "falls" (the mirror image), "flat" (every point within the band of the
    smallest), or "mixed" (up and down by more than the noise).
    """
    ys = list(ys)
    if len(ys) < 2:
        raise ValueError(f"ys must hold at least two points, got {len(ys)}")
    _check_positive("ys", ys)
    _check_tie(tie)
    steps = [b / a for a, b in zip(ys, ys[1:])]
    lo, hi = min(ys), max(ys)
    first, last = fmt(ys[0]), fmt(ys[-1])
    if hi <= lo * (1 + tie):
        kind = "flat"
        text = f"{what} stays within this machine's noise ({tie:.0%}): {fmt(lo)} to {fmt(hi)}"
    elif all(s >= 1 / (1 + tie) for s in steps) and ys[-1] > ys[0] * (1 + tie):
        kind, text = "rises", f"{what} {up} from {first} to {last}"
    elif all(s <= 1 + tie for s in steps) and ys[-1] < ys[0] / (1 + tie):
        kind, text = "falls", f"{what} {down} from {first} to {last}"
    else:
        kind = "mixed"
        text = (
            f"{what} goes up and down between {fmt(lo)} and {fmt(hi)}, by more than this "
            f"machine's noise ({tie:.0%})"
        )
    return _record("trend", kind, text, ys=ys, tie=tie)


def line_through_origin(xs: Sequence[float], ys: Sequence[float], *, tie: float) -> Verdict:
    """Do the points (x, y) lie on a straight line through the origin, y = x / slope?

    Fits the least-squares slope through the origin; kind "straight" if every point lies within
    the tie band of the line (relative to its own y), else "curved". values["slope"] is x per y
    (for bytes against seconds: bytes/s).
    """
    xs, ys = list(xs), list(ys)
    if len(xs) != len(ys) or len(xs) < 2:
        raise ValueError(
            f"xs and ys must be two equally long series of 2+ points, got {len(xs)} and {len(ys)}"
        )
    _check_positive("xs and ys", xs + ys)
    _check_tie(tie)
    per_x = sum(x * y for x, y in zip(xs, ys)) / sum(x * x for x in xs)  # y per unit of x
    worst = max(abs(y - per_x * x) / y for x, y in zip(xs, ys))
    if worst <= tie:
        kind = "straight"
        text = f"lie on a straight line through the origin (every point within {worst:.0%} of it)"
    else:
        kind = "curved"
        text = (
            f"do not lie on one straight line through the origin: the farthest point is "
            f"{worst:.0%} off it, more than this machine's noise ({tie:.0%})"
        )
    return _record(
        "line_through_origin", kind, text, xs=xs, ys=ys, tie=tie, slope=1 / per_x, worst=worst
    )


# --- a choice ------------------------------------------------------------------------------


def best(
    options: dict,
    *,
    tie: float,
    higher_is_better: bool = True,
    fmt: Callable[[float], str] = "{:.3g}".format,
    rule: str = "the first listed",
) -> Verdict:
    """Which option is best, with ties inside the band broken by a stated rule.

    options: {name: value}, in the order the rule prefers (e.g. smallest batch limit first).
    kind "clear" when one option beats every other by more than the tie band, "tie" otherwise;
    values["choice"] is the chosen name (the clear winner, or by `rule` among the tied).
    """
    if not isinstance(options, dict) or len(options) < 2:
        raise ValueError("options must be a dict of at least two {name: value}")
    _check_positive("options' values", list(options.values()))
    _check_tie(tie)
    sign = 1 if higher_is_better else -1
    top = max(options.values(), key=lambda v: sign * v)

    def close(v):
        return (top / v if higher_is_better else v / top) <= 1 + tie

    tied = [name for name, v in options.items() if close(v)]
    choice = tied[0]
    if len(tied) == 1:
        kind, text = "clear", f"{choice} is the best ({fmt(options[choice])})"
    else:
        names = ", ".join(str(n) for n in tied[:-1]) + f" and {tied[-1]}"
        kind = "tie"
        text = f"{names} tie within this machine's noise ({tie:.0%}), so {rule} is chosen: {choice}"
    return _record(
        "best", kind, text, options=dict(options), tie=tie, higher=higher_is_better, choice=choice
    )


def first_at_least(
    xs: Sequence, ys: Sequence[float], threshold: float, *, what: str = "none"
) -> Verdict:
    """The first x whose y reaches `threshold` (e.g. the first batch whose step costs twice
    batch 1's). kind "found" with values["x"], or "none" (text: "none up to <last x>")."""
    xs, ys = list(xs), list(ys)
    if len(xs) != len(ys) or not xs:
        raise ValueError("xs and ys must be two equally long, non-empty series")
    found = next((x for x, y in zip(xs, ys) if y >= threshold), None)
    if found is None:
        return _record(
            "first_at_least", "none", f"none up to {xs[-1]}", xs=xs, ys=ys, threshold=threshold, x=None
        )  # fmt: skip
    return _record(
        "first_at_least", "found", f"{found}", xs=xs, ys=ys, threshold=threshold, x=found
    )


# --- the plain rules holds() applies --------------------------------------------------------


def _holds_compare(kind, v):
    r, t = v["b_s"] / v["a_s"], v["tie"]
    return {"faster": r > 1 + t, "slower": r < 1 / (1 + t), "tie": 1 / (1 + t) <= r <= 1 + t}[kind]


def _holds_floor(kind, v):
    r, t = v["measured_s"] / v["floor_s"], v["tie"]
    return {"above": r > 1 + t, "below": r < 1 / (1 + t), "at": 1 / (1 + t) <= r <= 1 + t}[kind]


def _holds_trend(kind, v):
    ys, t = v["ys"], v["tie"]
    spread = max(ys) / min(ys)
    if kind == "flat":
        return spread <= 1 + t
    if kind == "rises":
        return ys[-1] > ys[0] * (1 + t) and all(b * (1 + t) >= a for a, b in zip(ys, ys[1:]))
    if kind == "falls":
        return ys[-1] * (1 + t) < ys[0] and all(b <= a * (1 + t) for a, b in zip(ys, ys[1:]))
    return spread > 1 + t  # mixed: neither flat nor one way


def _holds_line(kind, v):
    slope = v["slope"]
    off = [abs(y - x / slope) / y for x, y in zip(v["xs"], v["ys"])]
    return (max(off) <= v["tie"] + 1e-12) == (kind == "straight")


def _holds_best(kind, v):
    opts, t, higher = v["options"], v["tie"], v["higher"]
    chosen = opts[v["choice"]]
    others = [x for name, x in opts.items() if name != v["choice"]]
    beaten = [(chosen / x if higher else x / chosen) > 1 + t for x in others]
    no_better = all((x <= chosen * (1 + t)) if higher else (x * (1 + t) >= chosen) for x in others)
    return no_better and (all(beaten) if kind == "clear" else not all(beaten))


def _holds_first(kind, v):
    hits = [x for x, y in zip(v["xs"], v["ys"]) if y >= v["threshold"]]
    return (not hits) if kind == "none" else bool(hits) and hits[0] == v["x"]


def _holds_ratio(kind, v):
    low, high = v["ratio"].interval  # recomputed from the rounds
    return _ratio_kind(low, high, v["tie"]) == kind and (low, high) == (v["low"], v["high"])


def _holds_set(kind, v):
    t = v["tie"]
    resolved_slower = {n for n, low in v["lows"].items() if low > 1 + t}
    expected = [v["leader"]] + [n for n in v["lows"] if n not in resolved_slower]
    return sorted(v["set"]) == sorted(expected) and (kind == "clear") == (len(expected) == 1)


def _holds_trend_of(kind, v):
    steps, end, vs_first = v["steps"], v["end"], v["vs_first"]
    if kind == "rises":
        return end == "faster" and "slower" not in steps
    if kind == "falls":
        return end == "slower" and "faster" not in steps
    if kind == "flat":
        return all(k == "tie" for k in vs_first)
    if kind == "mixed":
        return "faster" in steps and "slower" in steps
    return not (end == "faster" and "slower" not in steps) and not (
        end == "slower" and "faster" not in steps
    )


def _holds_steady(kind, v):
    from llmlab.measure import ratio_of_samples

    low = ratio_of_samples(v["first"], v["second"]).interval[0]
    return (low > 1 + v["tie"]) == (kind == "growing")


_CHECKS = {
    "compare_times": _holds_compare,
    "floor_check": _holds_floor,
    "trend": _holds_trend,
    "line_through_origin": _holds_line,
    "best": _holds_best,
    "first_at_least": _holds_first,
    "compare_ratio": _holds_ratio,
    "fastest": _holds_set,
    "best_of_samples": _holds_set,
    "trend_of": _holds_trend_of,
    "steady": _holds_steady,
}

"""Sentences about measured values, decided by the data.

Every "faster", "climbs", "a straight line", "a floor" or "the best" that the book says about a
timing comes from one of these helpers, never from typed prose: the numbers move from machine to
machine and run to run, so the words must follow them. Each helper takes the measured values and
a tie band, a relative difference within which two figures count as the same (use the
measurement's own noise, llmlab.measure.Timing.noise, at least 5%), and returns a Verdict:

    kind     what the data shows, one word per outcome ("faster", "tie", "rises", ...)
    text     a sentence fragment that says so, with the figures, for any outcome
    holds()  checks the claim against the values once more, by a separate, plain rule

A difference inside the tie band is reported as a tie ("within this machine's noise"), never as a
direction. Every verdict made in a process is kept in RECORDED, so a test can check all the
verdicts a page glued.
"""

import math
import numbers
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


_CHECKS = {
    "compare_times": _holds_compare,
    "floor_check": _holds_floor,
    "trend": _holds_trend,
    "line_through_origin": _holds_line,
    "best": _holds_best,
    "first_at_least": _holds_first,
}

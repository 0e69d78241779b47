"""The roofline model: the fastest a step can run on a machine, from its bytes and FLOPs.

A step that moves `bytes` and does `flops` takes at least max(bytes / bandwidth, flops / peak).
Its arithmetic intensity (FLOPs per byte) decides which: below the machine's ridge point
(peak / bandwidth) memory is the limit, above it arithmetic is (Williams et al. 2009). The
attainable rate at intensity I is min(peak, I x bandwidth) FLOP/s: the roof.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass


def _positive(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive, finite number, got {value}")
    return float(value)


def attainable_flops(intensity: float, bandwidth: float, peak_flops: float) -> float:
    """The roof at `intensity` FLOP/byte: min(peak_flops, intensity x bandwidth), in FLOP/s."""
    intensity = _positive("intensity", intensity)
    return min(_positive("peak_flops", peak_flops), intensity * _positive("bandwidth", bandwidth))


def ridge_point(bandwidth: float, peak_flops: float) -> float:
    """FLOP per byte where the roof turns from sloped (memory-bound) to flat (compute-bound)."""
    return _positive("peak_flops", peak_flops) / _positive("bandwidth", bandwidth)


@dataclass(frozen=True)
class RooflinePoint:
    """A measured (or predicted) step: its label, FLOPs, bytes and seconds."""

    label: str
    flops: float
    bytes: float
    seconds: float

    def __post_init__(self):
        for name in ("flops", "bytes", "seconds"):
            _positive(name, getattr(self, name))

    @property
    def intensity(self) -> float:
        return self.flops / self.bytes

    @property
    def achieved_flops(self) -> float:
        return self.flops / self.seconds

    @property
    def achieved_bandwidth(self) -> float:
        return self.bytes / self.seconds


def plot_roofline(
    ax, bandwidth: float, peak_flops: float, points: Sequence[RooflinePoint] = (), title=None
):
    """Draw the roof (log-log) and the points on a matplotlib Axes; returns the Axes.

    Points are plotted at (intensity, achieved FLOP/s), each with its own marker and a legend
    entry; the ridge point is marked with a dotted line.
    """
    bandwidth = _positive("bandwidth", bandwidth)
    peak_flops = _positive("peak_flops", peak_flops)
    ridge = peak_flops / bandwidth
    intensities = [p.intensity for p in points] + [ridge]
    low = min(intensities) / 4
    high = max(intensities) * 4
    xs = [low * (high / low) ** (i / 200) for i in range(201)]
    ax.loglog(xs, [min(peak_flops, x * bandwidth) / 1e9 for x in xs], "-", color="0.2", lw=2,
              label="roof: min(peak, I x bandwidth)")  # fmt: skip
    ax.axvline(ridge, color="0.5", ls=":", lw=1)
    ax.text(ridge, peak_flops / 1e9 * 1.15, f"ridge {ridge:.1f}", ha="center", color="0.3")
    markers = "osD^v<>ph*"
    for i, p in enumerate(points):
        ax.loglog(p.intensity, p.achieved_flops / 1e9, markers[i % len(markers)], ms=7,
                  label=p.label)  # fmt: skip
    ax.set_xlabel("arithmetic intensity (FLOP / byte)")
    ax.set_ylabel("GFLOP/s")
    ax.set_ylim(top=peak_flops / 1e9 * 2)
    if title:
        ax.set_title(title)
    return ax

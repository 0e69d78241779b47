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


# --- one weight, a few rows, each kernel: does a batch share one read of the weights? ---------

KERNEL_NAMES = {"default": "PyTorch's default kernel", "packed": "oneDNN, packed"}


def _rows_label(kernel: str, rows: int) -> str:
    return f"{kernel}, {rows} row{'s' if rows > 1 else ''}"


@dataclass(frozen=True)
class KernelRows:
    """Interleaved timings of a few rows times one large weight, per kernel (time_kernel_rows).

    comparison: a llmlab.measure.Comparison keyed by label(kernel, rows); kernels: "default"
    (x @ W + b, PyTorch's kernel: MKL on most CPUs, cuBLAS on NVIDIA GPUs) and, on a CPU with
    oneDNN, "packed" (llmlab.cpu_linear's product, its weight packed in place).
    """

    comparison: object
    rows: tuple
    kernels: tuple
    weight_bytes: int

    label = staticmethod(_rows_label)

    def ms(self, kernel: str, rows: int) -> float:
        """Median of the per-round figures (each the fastest call of its round), in ms."""
        import statistics

        return statistics.median(self.comparison.rounds[_rows_label(kernel, rows)]) * 1e3

    def gbs(self, kernel: str, rows: int) -> float:
        """GB/s of weights streamed (the weight's bytes over the median round)."""
        return self.weight_bytes / self.ms(kernel, rows) / 1e6

    def across(self, kernel: str):
        """Ratio of `kernel`'s most rows against its one row (llmlab.measure.Ratio)."""
        return self.comparison.ratio(_rows_label(kernel, 1), _rows_label(kernel, self.rows[-1]))

    def between(self, rows: int):
        """Ratio of the default kernel's time against the packed one's at `rows` rows."""
        return self.comparison.ratio(_rows_label("packed", rows), _rows_label("default", rows))


def time_kernel_rows(
    rows=(1, 2, 4, 8), n_in: int = 768, n_out: int = 32768, *, device=None,
    budget_s: float = 6.0, tie: float = 0.05, seed: int = 0,
) -> KernelRows:  # fmt: skip
    """Time (r, n_in) rows times one (n_in, n_out) fp32 weight (100 MB by default: past any
    cache) for each r in `rows`, with each kernel llmlab can use here, in interleaved rounds.

    The packed kernel gets its own copy of the weight (packed in place in an llmlab Linear), the
    default kernel the plain one: both copies live only inside this call. Measures until each
    kernel's first and last row counts, and the two kernels at every row count, are resolved
    against `tie` (llmlab.measure.compare), or budget_s is spent.
    """
    import torch

    from llmlab import cpu_linear
    from llmlab.measure import compare, default_device
    from llmlab.model import Linear

    rows = tuple(rows)
    if len(rows) < 2 or rows[0] != 1 or any(not isinstance(r, int) or r < 1 for r in rows):
        raise ValueError(f"rows must be 2+ whole row counts starting at 1, got {rows!r}")
    if list(rows) != sorted(set(rows)):
        raise ValueError(f"rows must increase, got {rows!r}")
    device = default_device() if device is None else torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    layer = Linear(n_in, n_out)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(n_in, n_out, generator=gen))
    layer = layer.to(device)
    xs = {r: torch.randn(r, n_in, generator=gen).to(device) for r in rows}
    kernels = ["default"]
    fns = {}
    W, b = layer.weight.detach().clone(), layer.bias.detach()  # the default kernel's copy
    for r in rows:
        fns[_rows_label("default", r)] = lambda x=xs[r]: x @ W + b
    if device.type == "cpu" and cpu_linear.ONEDNN_AVAILABLE and cpu_linear.pack(layer):
        kernels.append("packed")
        for r in rows:
            fns[_rows_label("packed", r)] = lambda x=xs[r]: layer(x)
    pairs = [(_rows_label(k, rows[0]), _rows_label(k, rows[-1])) for k in kernels]
    if len(kernels) == 2:
        pairs += [(_rows_label("packed", r), _rows_label("default", r)) for r in rows]
    try:
        with torch.inference_mode():
            timed = compare(fns, device=device, budget_s=budget_s, tie=tie, pairs=pairs)
    finally:
        cpu_linear.unpack(layer)
    return KernelRows(timed, rows, tuple(kernels), n_in * n_out * 4)


def kernel_rows_report(k: KernelRows, *, tie: float = 0.05) -> dict:
    """The table and the sentences of a KernelRows, every comparison from paired ratios
    (llmlab.verdict.compare_ratio). Keys: "headers", "table" (one line per row count),
    "across" ({kernel: Verdict of one row against the most rows}), "between" ({rows: Verdict of
    the packed kernel against the default one})."""
    from llmlab import verdict as say

    most = k.rows[-1]
    across = {
        kern: say.compare_ratio(
            k.across(kern), tie=tie, a=f"one row through {KERNEL_NAMES[kern]}",
            b=f"{most} rows through it",
        )
        for kern in k.kernels
    }  # fmt: skip
    between = {}
    if "packed" in k.kernels:
        between = {
            r: say.compare_ratio(
                k.between(r), tie=tie, a="the packed kernel", b="the default one"
            )
            for r in k.rows
        }  # fmt: skip
    short = {"faster": "packed {m:.1f}x as fast", "slower": "default {m:.1f}x as fast",
             "tie": "a tie", "unresolved": "not resolved"}  # fmt: skip
    headers = ["rows"] + [f"{kern} ms" for kern in k.kernels]
    headers += [f"{kern} GB/s" for kern in k.kernels]
    if between:
        headers.append("default / packed (95% interval)")
    table = []
    for r in k.rows:
        line = [r] + [k.ms(kern, r) for kern in k.kernels]
        line += [k.gbs(kern, r) for kern in k.kernels]
        if between:
            ratio, v = k.between(r), between[r]
            m = ratio.median if v.kind != "slower" else 1 / ratio.median
            low, high = ratio.interval
            line.append(f"{short[v.kind].format(m=m)} ({low:.2f}-{high:.2f})")
        table.append(line)
    return {"headers": headers, "table": table, "across": across, "between": between}


# --- decode time against bytes: models of fewer layers that share one set of weights ----------


def first_layers(model, n_layer: int):
    """A TinyGPT that runs only the first `n_layer` blocks of `model`, sharing its weights (no
    copy): a smaller model's decode step, with the same embeddings and head, at no extra memory."""
    import copy
    import dataclasses

    from torch import nn

    if isinstance(n_layer, bool) or not isinstance(n_layer, int):
        raise TypeError(f"n_layer must be an int, got {type(n_layer).__name__}")
    if not 1 <= n_layer <= model.config.n_layer:
        raise ValueError(f"n_layer must be in [1, {model.config.n_layer}], got {n_layer}")
    view = copy.copy(model)
    view._modules = dict(model._modules)  # a copy of the registry: the model keeps its blocks
    view._modules["blocks"] = nn.ModuleList(list(model.blocks)[:n_layer])
    view.config = dataclasses.replace(model.config, n_layer=n_layer)
    return view


@dataclass(frozen=True)
class BytesFit:
    """time = fixed + bytes / bandwidth, fitted to each interleaved round separately; medians
    with a distribution-free 95% interval over the rounds (llmlab.measure.Ratio's rule)."""

    bandwidth: tuple  # (median, low, high) bytes/s: the slope's inverse
    fixed_s: tuple  # (median, low, high) seconds per step that do not scale with bytes
    per_byte: object  # llmlab.measure.Ratio: smallest step's time per byte / largest step's


def fit_bytes_rounds(comparison, step_bytes: dict) -> BytesFit:
    """Fit time = fixed + bytes / bandwidth to every round of `comparison` ({name: bytes} gives
    each step's bytes; 3+ names), and compare the time per byte of the smallest and the largest
    step as a paired ratio (1.0: time proportional to bytes, a line through the origin)."""
    import numpy as np

    from llmlab.measure import Ratio

    names = sorted(step_bytes, key=step_bytes.get)
    if len(names) < 3:
        raise ValueError("step_bytes must name at least 3 steps to fit a line with an intercept")
    x = np.array([step_bytes[n] for n in names], float)
    per_round = np.array([comparison.rounds[n] for n in names], float).T  # (rounds, steps)
    slopes, fixed = [], []
    for ys in per_round:
        slope, intercept = np.polyfit(x, ys, 1)
        slopes.append(1 / slope if slope > 0 else float("inf"))
        fixed.append(intercept)

    def summary(values):
        r = Ratio("", "", tuple(float(v) for v in values))
        return (r.median, *r.interval)

    small, large = names[0], names[-1]
    per_byte = Ratio(
        f"{large}, per byte",
        f"{small}, per byte",
        tuple((ys[0] / x[0]) / (ys[-1] / x[-1]) for ys in per_round),
    )
    return BytesFit(summary(slopes), summary(fixed), per_byte)


# --- a worked example from datasheet figures: the largest decode batch that fits ---------------


def decode_at_capacity(model: str, memory_bytes: float, context: int, dtype: str = "fp16"):
    """Llama-style decode at the largest batch whose KV caches fit beside the weights.

    Returns {"batch", "weight_bytes", "kv_bytes", "flops", "intensity"} for one decode step of
    `batch` sequences at `context` tokens each: FLOPs 2 x parameters per sequence for the
    weights plus 4 x layers x heads x head_dim x context per sequence for attention; bytes the
    weights once plus every sequence's KV cache (llmlab.shapes)."""
    from llmlab.shapes import get_shape, kv_cache_bytes_for, sequences_that_fit, weight_bytes

    shape = get_shape(model)
    batch = sequences_that_fit(shape, memory_bytes, context, dtype)
    if batch < 1:
        raise ValueError(f"no {context}-token sequence fits in {memory_bytes:.3g} bytes")
    weights = weight_bytes(shape, dtype)
    kv = kv_cache_bytes_for(shape, context, batch, dtype)
    attention = 4 * shape.n_layer * shape.n_head * shape.head_dim * context
    flops = batch * (2 * shape.n_params + attention)
    return {"batch": batch, "weight_bytes": weights, "kv_bytes": kv, "flops": flops,
            "intensity": flops / (weights + kv)}  # fmt: skip

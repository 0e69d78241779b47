"""Which kernel multiplies by the weights when the model runs on a CPU without gradients.

A decode step multiplies a few rows (one new token per sequence) by every weight matrix: it
reads each weight once and does two FLOPs with it, so its speed is how fast the kernel streams
weights from memory. PyTorch hands fp32 products on the CPU to MKL, whose few-row kernels do
not stream at memory speed on every processor: on an AMD EPYC machine of the course's kind, MKL
read the lm_head (768 x 50257) at 24 GB/s with one row and 7 GB/s with eight, where `x.sum()`
read 32-55 GB/s. oneDNN, the CPU library behind `torch.compile`'s inference kernels, streamed
the same weights at 25-30 GB/s for one to eight rows once they were copied into its own blocked
layout ("packed"). A GPT-2-small decode step took 24 ms instead of 32.

Linear asks `use_onednn` first. By default the answer is no and every product is `x @ W + b`:
the packed copies would double the weights' memory (a GPT-2-small-shaped model: 650 MB more,
past what Binder grants a reader), and the gain belongs to some CPUs only (on an AVX2-only EPYC,
MKL's one-row product already streamed the lm_head at 23 GB/s). Opt in with `use_path("onednn")`
for a block of code, `set_path("onednn")`, or LLMLAB_CPU_LINEAR=onednn for a whole process; then,
on the CPU, in fp32, for a weight of 1 MiB or more, with no gradient to build, `linear` packs each
weight once (again whenever the weight changes) and runs oneDNN's product. Training, small
weights, other devices and other dtypes always keep `x @ W + b`. `python -m llmlab.bench` times
the step both ways.

`pack(model)` packs a model's large weights IN PLACE instead: each weight's packed copy replaces
its plain one, so the model keeps one copy of its weights (a notebook's memory stays what it
was), and its products run on oneDNN until `unpack(model)` restores the plain layout (exactly:
packing only reorders the numbers). `with packed(model): ...` does both. Chapter 10 times a
decode batch this way, since MKL's few-row product does not share one read of the weights
across the rows on every CPU, and shows both kernels at 1, 2, 4 and 8 rows.
"""

import contextlib
import math
import os
import weakref

import torch
from torch.utils.flop_counter import register_flop_formula

PATHS = ("onednn", "torch")

# One packed copy per weight tensor (by id), dropped when the tensor is. The key records which
# data was packed: an optimizer step bumps `_version`; `.to()` or loading a checkpoint moves it.
_packed: dict[int, tuple] = {}
_path = "torch"
# Weights packed in place (`pack`): {id(weight): oneDNN's packed tensor}, the weight's only copy.
_in_place: dict[int, torch.Tensor] = {}

# oneDNN pays about 15 us per call where x @ W pays 3: for small weights, which sit in the
# CPU's cache anyway, that fixed cost outweighs what it saves. From 1 MiB of fp32 weights
# (768 x 768 is 2.4 MiB) oneDNN is the faster of the two on the machines measured.
MIN_WEIGHT_ELEMENTS = 2**18

# Packed for eight rows: the batch sizes Part 3 serves. One row runs within about 10% of a
# layout packed for one (measured), and prefill's hundreds of rows still beat MKL.
_PACK_FOR_ROWS = 8


def _onednn_works() -> bool:
    """True if this torch build has oneDNN's linear and it computes x @ W (a tiny check)."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        g = torch.Generator().manual_seed(0)
        x, w = torch.randn(3, 16, generator=g), torch.randn(16, 8, generator=g)
        b = torch.randn(8, generator=g)
        with torch.no_grad():
            packed = torch.ops.mkldnn._reorder_linear_weight(w.t().contiguous(), _PACK_FOR_ROWS)
            y = torch.ops.mkldnn._linear_pointwise(x, packed, b, "none", [], "")
        return torch.allclose(y, x @ w + b, atol=1e-5)
    except (RuntimeError, AttributeError):
        return False


def set_path(path: str):
    """Choose the kernel for CPU inference: "torch" (the default) or "onednn" (opt-in, where it works)."""
    global _path
    if path not in PATHS:
        raise ValueError(f"path must be one of {PATHS}, got {path!r}")
    if path == "onednn" and not ONEDNN_AVAILABLE:
        raise ValueError("path 'onednn' is not available: this torch build has no working oneDNN")
    _path = path


def get_path() -> str:
    return _path


@contextlib.contextmanager
def use_path(path: str):
    """`with use_path("torch"): ...` runs the block with that kernel, then restores the choice."""
    before = _path
    set_path(path)
    try:
        yield
    finally:
        set_path(before)


def describe(device) -> str:
    """The kernel Linear's inference products use on `device`, in words (for reports)."""
    if torch.device(device).type == "cpu" and _in_place:
        return "oneDNN with weights packed in place (llmlab/cpu_linear.py)"
    if torch.device(device).type == "cpu" and _path == "onednn":
        return "oneDNN with packed weights (llmlab/cpu_linear.py)"
    blas = (
        " (MKL)" if torch.device(device).type == "cpu" and torch.backends.mkl.is_available() else ""
    )
    return f"x @ W, PyTorch's default kernel{blas}"


def use_onednn(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """True if Linear should call `linear`: the weight is packed in place (`pack`), or CPU, fp32,
    oneDNN chosen, a weight of at least MIN_WEIGHT_ELEMENTS, no gradient to build."""
    if id(weight) in _in_place:
        if x.device.type != "cpu" or (
            torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
        ):
            raise RuntimeError(
                "this weight is packed for CPU inference (cpu_linear.pack): run the model under "
                "torch.no_grad() or torch.inference_mode() on the CPU, or call "
                "cpu_linear.unpack(model) first (to train it or move it)"
            )
        return True
    return (
        _path == "onednn"
        and x.device.type == "cpu"
        and weight.numel() >= MIN_WEIGHT_ELEMENTS
        and x.dtype == weight.dtype == torch.float32
        and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
    )


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """x @ weight + bias by oneDNN; weight is stored (in, out) as in llmlab's Linear."""
    if (packed_in_place := _in_place.get(id(weight))) is not None:
        return torch.ops.mkldnn._linear_pointwise(x, packed_in_place, bias.detach(), "none", [], "")
    # A tensor made under torch.inference_mode() has no version counter (its data is not
    # expected to change); its address and shape must do.
    version = None if weight.is_inference() else weight._version
    key = (weight.data_ptr(), version, tuple(weight.shape))
    entry = _packed.get(id(weight))
    if entry is None or entry[0] != key:
        if entry is None:
            weakref.finalize(weight, _packed.pop, id(weight), None)
        with torch.no_grad():  # oneDNN wants (out, in); packing copies it once into its layout
            packed = torch.ops.mkldnn._reorder_linear_weight(
                weight.detach().t().contiguous(), _PACK_FOR_ROWS
            )
        entry = (key, packed)
        _packed[id(weight)] = entry
    return torch.ops.mkldnn._linear_pointwise(x, entry[1], bias.detach(), "none", [], "")


def packable(weight: torch.Tensor) -> bool:
    """True if `pack` packs this weight: a 2-D fp32 CPU tensor of at least MIN_WEIGHT_ELEMENTS."""
    return (
        weight.dim() == 2
        and weight.device.type == "cpu"
        and weight.dtype == torch.float32
        and weight.numel() >= MIN_WEIGHT_ELEMENTS
    )


def is_packed(weight: torch.Tensor) -> bool:
    """True while `weight` is packed in place (its numbers live in oneDNN's copy)."""
    return id(weight) in _in_place


def _linears(module):
    from llmlab.model import Linear  # here: model.py imports this module

    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    return [m for m in module.modules() if isinstance(m, Linear)]


def pack(module) -> int:
    """Pack the large weights of every llmlab Linear in `module` into oneDNN's layout, in place.

    Each packed weight's plain copy is released: the Parameter keeps its shape, but holds one
    NaN broadcast to it (4 bytes), so anything that bypassed oneDNN would compute NaN, never
    plausible numbers. Products then run on oneDNN (`linear`) until `unpack`. Returns the bytes
    of weights packed (0 when nothing qualifies: weights off the CPU, not fp32, or small).
    """
    if not ONEDNN_AVAILABLE:
        raise ValueError("this torch build has no working oneDNN: pack() cannot be used")
    packed_bytes = 0
    for layer in _linears(module):
        w = layer.weight
        if is_packed(w) or not packable(w):
            continue
        with torch.no_grad():  # oneDNN wants (out, in); the transposed copy lives only here
            blob = torch.ops.mkldnn._reorder_linear_weight(
                w.detach().t().contiguous(), _PACK_FOR_ROWS
            )
            _packed.pop(id(w), None)  # a second copy from the opt-in path goes too
            w.data = torch.full((), math.nan).expand(w.shape)
        _in_place[id(w)] = blob
        weakref.finalize(w, _in_place.pop, id(w), None)
        packed_bytes += w.numel() * w.element_size()
    return packed_bytes


def unpack(module) -> int:
    """Undo `pack`: every packed weight of `module` gets its plain (in, out) numbers back,
    exactly as they were. Returns the bytes restored."""
    restored = 0
    for layer in _linears(module):
        w = layer.weight
        if (blob := _in_place.pop(id(w), None)) is None:
            continue
        with torch.no_grad():
            w.data = blob.to_dense().t().contiguous()
        restored += w.numel() * w.element_size()
    return restored


@contextlib.contextmanager
def packed(module):
    """`with packed(model): ...` runs the block with the model's weights packed in place."""
    pack(module)
    try:
        yield module
    finally:
        unpack(module)


def _linear_flops(x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
    """FlopCounterMode counts this product as it counts x @ W: 2 x rows x in x out."""
    return 2 * math.prod(x_shape[:-1]) * x_shape[-1] * w_shape[0]


ONEDNN_AVAILABLE = _onednn_works()
if ONEDNN_AVAILABLE:
    register_flop_formula(torch.ops.mkldnn._linear_pointwise)(_linear_flops)
# The default is PyTorch's own kernel: one copy of the weights, which is what every reader's
# memory (Binder grants 1-2 GB) can pay for. LLMLAB_CPU_LINEAR=onednn opts a whole process in.
if (_choice := os.environ.get("LLMLAB_CPU_LINEAR")) is not None:
    if _choice not in PATHS:
        raise ValueError(f"LLMLAB_CPU_LINEAR must be one of {PATHS}, got {_choice!r}")
    set_path(_choice)

"""llmlab.cpu_linear: the oneDNN product Linear may use for inference on a CPU (opt-in).

By default Linear keeps x @ W + b and one copy of the weights. Opted in, oneDNN must compute
x @ W + b (any leading shape, any row count), notice when a weight changes, stay out of
training, and be counted by FlopCounterMode like the product it replaces.
"""

import gc
import os
import subprocess
import sys

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from llmlab import GPTConfig, TinyGPT, cpu_linear
from llmlab.model import Linear

pytestmark = pytest.mark.skipif(
    not cpu_linear.ONEDNN_AVAILABLE, reason="this torch build has no working oneDNN"
)

BIG = (768, 512)  # 393,216 weights: above MIN_WEIGHT_ELEMENTS, so Linear takes the oneDNN path


@pytest.fixture(autouse=True)
def opted_in():
    """Every test here runs with oneDNN chosen (the default is PyTorch's kernel)."""
    with cpu_linear.use_path("onednn"):
        yield


def test_the_default_keeps_one_copy_of_the_weights():
    env = {k: v for k, v in os.environ.items() if k != "LLMLAB_CPU_LINEAR"}
    code = (
        "import torch; from llmlab import cpu_linear; from llmlab.model import Linear\n"
        "layer = Linear(768, 512)\n"
        "with torch.no_grad(): layer(torch.randn(1, 768))\n"
        "print(cpu_linear.get_path(), len(cpu_linear._packed))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["torch", "0"], out.stderr


def linear_layer(shape=BIG, seed=0):
    torch.manual_seed(seed)
    layer = Linear(*shape)
    with torch.no_grad():
        layer.bias.normal_()
    return layer


@pytest.mark.parametrize("lead", [(1,), (8,), (3, 5), (2, 1), (64,)])
def test_onednn_product_equals_x_at_w_plus_b(lead):
    layer = linear_layer()
    x = torch.randn(*lead, BIG[0])
    with torch.no_grad():
        got = cpu_linear.linear(x, layer.weight, layer.bias)
        want = x @ layer.weight + layer.bias
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_a_transposed_input_view_gives_the_same_product():
    layer = linear_layer()
    x = torch.randn(BIG[0], 4).t()  # (4, 768), not contiguous
    with torch.no_grad():
        torch.testing.assert_close(
            cpu_linear.linear(x, layer.weight, layer.bias),
            x @ layer.weight + layer.bias,
            rtol=1e-5,
            atol=1e-5,
        )


def test_a_changed_weight_is_packed_again():
    """An optimizer step changes the weight in place: the next product must use the new one."""
    layer = linear_layer()
    x = torch.randn(2, BIG[0])
    with torch.no_grad():
        cpu_linear.linear(x, layer.weight, layer.bias)  # packs the weight as it is now
        layer.weight.mul_(-3.0)
        got = cpu_linear.linear(x, layer.weight, layer.bias)
    torch.testing.assert_close(got, x @ layer.weight.detach() + layer.bias, rtol=1e-5, atol=1e-4)


def test_a_stale_pack_would_be_caught(monkeypatch):
    """The test above can fail: with a key that ignores the version, the old pack is used."""
    layer = linear_layer()
    x = torch.randn(2, BIG[0])
    real_linear = cpu_linear.linear

    def forgetful(x, weight, bias):  # a cache keyed on the address alone
        entry = cpu_linear._packed.get(id(weight))
        if entry is not None:
            return torch.ops.mkldnn._linear_pointwise(x, entry[1], bias, "none", [], "")
        return real_linear(x, weight, bias)

    with torch.no_grad():
        forgetful(x, layer.weight, layer.bias)
        layer.weight.mul_(-3.0)
        stale = forgetful(x, layer.weight, layer.bias)
    assert not torch.allclose(stale, x @ layer.weight.detach() + layer.bias, atol=1e-3)


def test_the_pack_is_dropped_with_its_weight():
    layer = linear_layer()
    with torch.no_grad():
        cpu_linear.linear(torch.randn(1, BIG[0]), layer.weight, layer.bias)
    key = id(layer.weight)
    assert key in cpu_linear._packed
    del layer
    gc.collect()
    assert key not in cpu_linear._packed


def test_linear_takes_onednn_only_for_inference_on_big_cpu_weights(monkeypatch):
    calls = []
    real_linear = cpu_linear.linear
    monkeypatch.setattr(
        cpu_linear, "linear", lambda *a: calls.append(a[1].shape) or real_linear(*a)
    )
    big, small = linear_layer(), linear_layer((64, 64))
    with torch.no_grad():
        big(torch.randn(1, BIG[0]))
        small(torch.randn(1, 64))
    assert calls == [big.weight.shape]  # the small weight stays with x @ W
    calls.clear()
    out = big(torch.randn(1, BIG[0]))  # gradients on: the training path, which autograd follows
    out.sum().backward()
    assert calls == [] and big.weight.grad is not None
    with torch.no_grad(), cpu_linear.use_path("torch"):
        big(torch.randn(1, BIG[0]))
    assert calls == []
    with torch.no_grad():  # use_path restored the choice
        big(torch.randn(1, BIG[0]))
    assert calls == [big.weight.shape]


def test_float64_stays_with_torch():
    layer = linear_layer().double()
    with torch.no_grad():
        out = layer(torch.randn(2, BIG[0], dtype=torch.float64))
    assert out.dtype == torch.float64


def test_flop_counter_counts_the_onednn_product():
    layer = linear_layer()
    x = torch.randn(3, 5, BIG[0])
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        layer(x)
    assert counter.get_total_flops() == 2 * 3 * 5 * BIG[0] * BIG[1]


def test_set_path_rejects_unknown_paths():
    with pytest.raises(ValueError, match="path must be one of"):
        cpu_linear.set_path("mkl")


def test_onednn_cannot_be_chosen_where_it_does_not_work(monkeypatch):
    monkeypatch.setattr(cpu_linear, "ONEDNN_AVAILABLE", False)
    with pytest.raises(ValueError, match="not available"):
        cpu_linear.set_path("onednn")


def test_use_path_restores_the_choice_even_after_an_error():
    before = cpu_linear.get_path()
    with pytest.raises(RuntimeError), cpu_linear.use_path("torch"):
        assert cpu_linear.get_path() == "torch"
        raise RuntimeError("inside")
    assert cpu_linear.get_path() == before


def test_both_paths_give_the_same_model_output():
    torch.manual_seed(0)
    model = TinyGPT(GPTConfig(vocab_size=2048, block_size=64, n_layer=2, n_head=4, n_embd=512))
    idx = torch.randint(2048, (2, 16))
    with torch.no_grad():
        onednn = model(idx)[0]
        with cpu_linear.use_path("torch"):
            default = model(idx)[0]
    torch.testing.assert_close(onednn, default, rtol=1e-4, atol=1e-4)


def test_describe_names_the_kernel_in_use():
    assert "oneDNN" in cpu_linear.describe("cpu")
    with cpu_linear.use_path("torch"):
        assert "x @ W" in cpu_linear.describe("cpu")
    assert "x @ W" in cpu_linear.describe("cuda")  # GPUs keep PyTorch's own kernels


@pytest.mark.parametrize("value, path", [("torch", "torch"), ("onednn", "onednn")])
def test_the_environment_variable_chooses_the_path(value, path):
    env = {**os.environ, "LLMLAB_CPU_LINEAR": value}
    code = "from llmlab import cpu_linear; print(cpu_linear.get_path())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == path, out.stderr


def test_a_bad_environment_variable_is_named_in_the_error():
    env = {**os.environ, "LLMLAB_CPU_LINEAR": "mkl"}
    code = "import llmlab.cpu_linear"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode != 0 and "LLMLAB_CPU_LINEAR must be one of" in out.stderr


def test_tensors_off_the_cpu_keep_torchs_kernel():
    x, w = torch.empty(1, BIG[0], device="meta"), torch.empty(*BIG, device="meta")
    with torch.no_grad():
        assert not cpu_linear.use_onednn(x, w)
        assert cpu_linear.use_onednn(torch.empty(1, BIG[0]), torch.empty(*BIG))


# --- packing in place: one copy of the weights ------------------------------------------------


def small_model(seed=0):
    torch.manual_seed(seed)
    return TinyGPT(GPTConfig(vocab_size=2048, block_size=64, n_layer=2, n_head=4, n_embd=512))


def plain_bytes(model) -> int:
    """Bytes the model's parameters hold in their own storage (a packed weight holds 4)."""
    return sum(p.untyped_storage().nbytes() for p in model.parameters())


def test_pack_keeps_one_copy_and_computes_the_same_model():
    model = small_model()
    idx = torch.randint(2048, (2, 16))
    with torch.inference_mode(), cpu_linear.use_path("torch"):
        want = model(idx)[0]
    before = plain_bytes(model)
    packed_bytes = cpu_linear.pack(model)
    try:
        big = [
            m.weight for m in model.modules() if cpu_linear.is_packed(getattr(m, "weight", None))
        ]
        assert packed_bytes == sum(w.nbytes for w in big) > 0
        assert plain_bytes(model) == before - packed_bytes + 4 * len(big)  # plain copies gone
        assert all(w.shape == w.data.shape for w in big)  # shapes kept: byte counts still hold
        with torch.inference_mode(), cpu_linear.use_path("torch"):  # packed wins over the path
            got = model(idx)[0]
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    finally:
        cpu_linear.unpack(model)


def test_unpack_restores_the_weights_exactly():
    model = small_model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with cpu_linear.packed(model):
        assert any(cpu_linear.is_packed(p) for p in model.parameters())
    assert not any(cpu_linear.is_packed(p) for p in model.parameters())
    for n, p in model.named_parameters():
        assert torch.equal(p.detach(), before[n]), n
        assert p.is_contiguous(), n


def test_a_packed_weight_read_directly_gives_nan_not_plausible_numbers():
    layer = linear_layer()
    with cpu_linear.packed(layer):
        assert torch.isnan(torch.randn(1, BIG[0]) @ layer.weight.detach()).all()


def test_a_packed_model_refuses_to_train_and_names_the_remedy():
    layer = linear_layer()
    with cpu_linear.packed(layer):
        with pytest.raises(RuntimeError, match=r"unpack\(model\)"):
            layer(torch.randn(1, BIG[0]))  # gradients on
        with torch.no_grad():
            layer(torch.randn(1, BIG[0]))  # inference is fine


def test_packed_restores_the_weights_even_after_an_error():
    layer = linear_layer()
    want = layer.weight.detach().clone()
    with pytest.raises(KeyError), cpu_linear.packed(layer):
        raise KeyError("inside")
    assert torch.equal(layer.weight.detach(), want)


def test_pack_leaves_small_weights_and_rejects_what_is_not_a_module():
    small = linear_layer((64, 64))
    assert cpu_linear.pack(small) == 0 and not cpu_linear.is_packed(small.weight)
    with pytest.raises(TypeError, match="module must be a torch.nn.Module"):
        cpu_linear.pack(torch.randn(4, 4))


def test_pack_is_refused_where_onednn_does_not_work(monkeypatch):
    monkeypatch.setattr(cpu_linear, "ONEDNN_AVAILABLE", False)
    with pytest.raises(ValueError, match="no working oneDNN"):
        cpu_linear.pack(linear_layer())


def test_a_packed_weight_is_forgotten_with_its_layer():
    layer = linear_layer()
    cpu_linear.pack(layer)
    key = id(layer.weight)
    assert key in cpu_linear._in_place
    del layer
    gc.collect()
    assert key not in cpu_linear._in_place

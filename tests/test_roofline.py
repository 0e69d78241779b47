"""llmlab.roofline: the roof, the ridge point, achieved rates, and the plot's contents."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from llmlab.cost import predict_seconds, step_cost  # noqa: E402
from llmlab.model import GPTConfig  # noqa: E402
from llmlab.roofline import (  # noqa: E402
    RooflinePoint,
    attainable_flops,
    plot_roofline,
    ridge_point,
)

A100_40GB = dict(bandwidth=1555e9, peak_flops=312e12)  # datasheet: fp16 dense, HBM2


def test_ridge_point_of_a_datasheet():
    assert ridge_point(**A100_40GB) == pytest.approx(200.6, abs=0.1)


def test_roof_is_sloped_then_flat():
    assert attainable_flops(1.0, **A100_40GB) == 1555e9  # memory-bound: I x bandwidth
    assert attainable_flops(1000.0, **A100_40GB) == 312e12  # compute-bound: the peak
    ridge = ridge_point(**A100_40GB)
    assert attainable_flops(ridge, **A100_40GB) == pytest.approx(312e12)


def test_roof_agrees_with_the_cost_models_prediction():
    config = GPTConfig(vocab_size=100, block_size=64, n_layer=2, n_head=2, n_embd=32)
    for batch in (1, 8, 64):
        cost = step_cost(config, batch=batch, cached=10)
        seconds = predict_seconds(cost, 10e9, 100e9)
        rate = attainable_flops(cost.intensity, 10e9, 100e9)
        assert cost.total_flops / seconds == pytest.approx(rate)


def test_point_rates():
    p = RooflinePoint("decode", flops=2e9, bytes=1e9, seconds=0.5)
    assert p.intensity == 2.0 and p.achieved_flops == 4e9 and p.achieved_bandwidth == 2e9
    with pytest.raises(ValueError, match="seconds"):
        RooflinePoint("bad", 1.0, 1.0, 0.0)


@pytest.mark.parametrize(
    "args, error, words",
    [
        ((0.0, 1e9, 1e12), ValueError, "intensity"),
        ((1.0, -1.0, 1e12), ValueError, "bandwidth"),
        ((1.0, 1e9, float("inf")), ValueError, "peak_flops"),
        ((1.0, "fast", 1e12), TypeError, "bandwidth"),
    ],
)
def test_bad_arguments_are_named(args, error, words):
    with pytest.raises(error, match=words):
        attainable_flops(*args)


def test_plot_draws_the_roof_and_every_point():
    fig, ax = plt.subplots()
    points = [RooflinePoint("a", 1e9, 1e9, 1.0), RooflinePoint("b", 1e12, 1e9, 1.0)]
    plot_roofline(ax, 10e9, 100e9, points, title="t")
    labels = [line.get_label() for line in ax.get_lines()]
    assert "a" in labels and "b" in labels and any("roof" in s for s in labels)
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    plt.close(fig)


# --- kernels at a few rows, models that share weights, fits per round, capacity examples ------

import torch  # noqa: E402

from llmlab import TinyGPT, cpu_linear  # noqa: E402
from llmlab.measure import Comparison, Timing  # noqa: E402
from llmlab.roofline import (  # noqa: E402
    KernelRows,
    decode_at_capacity,
    first_layers,
    fit_bytes_rounds,
    kernel_rows_report,
    time_kernel_rows,
)


def comparison(rounds: dict) -> Comparison:
    return Comparison({k: Timing(tuple(v)) for k, v in rounds.items()}, rounds)


def test_decode_at_capacity_reproduces_the_worked_example():
    """Llama-2-7B, fp16, 80 GB, 2,048 tokens: 61 sequences, about 11 FLOP/byte (ch10)."""
    d = decode_at_capacity("Llama-2-7B", 80e9, 2048)
    assert d["batch"] == 61
    assert d["kv_bytes"] == 61 * 2048 * 524_288
    assert d["intensity"] == pytest.approx(11.2, abs=0.1)
    assert decode_at_capacity("Llama-3-8B", 80e9, 2048)["intensity"] == pytest.approx(51, abs=1)
    with pytest.raises(ValueError, match="no 2048-token sequence fits"):
        decode_at_capacity("Llama-2-7B", 14e9, 2048)


def test_fit_per_round_recovers_a_known_line():
    step_bytes = {"a": 100e6, "b": 200e6, "c": 400e6}
    # each round: 2 ms fixed + bytes / 20 GB/s, scaled by that round's slowness
    rounds = {k: [(2e-3 + b / 20e9) * s for s in (1.0, 1.01, 0.99, 1.02, 1.0, 1.0)]
              for k, b in step_bytes.items()}  # fmt: skip
    fit = fit_bytes_rounds(comparison(rounds), step_bytes)
    assert fit.bandwidth[0] == pytest.approx(20e9, rel=0.03)
    assert fit.fixed_s[0] == pytest.approx(2e-3, rel=0.03)
    # with a fixed cost, the smallest step pays more per byte than the largest
    assert fit.per_byte.median == pytest.approx(7 * 4 / 22)  # (2+5)/100 over (2+20)/400
    proportional = {k: [b / 20e9] * 6 for k, b in step_bytes.items()}
    assert fit_bytes_rounds(comparison(proportional), step_bytes).per_byte.median == (
        pytest.approx(1.0)
    )
    with pytest.raises(ValueError, match="at least 3 steps"):
        fit_bytes_rounds(comparison(rounds), {"a": 1, "b": 2})


def test_first_layers_shares_the_weights_and_runs_the_first_blocks():
    torch.manual_seed(0)
    model = TinyGPT(GPTConfig(vocab_size=64, block_size=16, n_layer=4, n_head=2, n_embd=32))
    view = first_layers(model, 2)
    assert view.config.n_layer == 2 and model.config.n_layer == 4
    assert len(view.blocks) == 2 and len(model.blocks) == 4  # the model keeps its blocks
    assert view.blocks[1] is model.blocks[1] and view.lm_head is model.lm_head
    idx = torch.randint(64, (1, 8))
    with torch.no_grad():
        x = model.wte(idx) + model.wpe(torch.arange(8))
        for block in model.blocks[:2]:
            x = block(x)[0]
        want = model.lm_head(model.ln_f(x))
        torch.testing.assert_close(view(idx), want)
    with pytest.raises(ValueError, match=r"n_layer must be in \[1, 4\]"):
        first_layers(model, 5)


def test_the_kernel_report_words_follow_the_paired_ratios():
    rows = (1, 8)
    label = KernelRows.label
    rounds = {
        label("default", 1): [1.0] * 8, label("default", 8): [4.0] * 8,  # 4x for 8 rows
        label("packed", 1): [1.0] * 8, label("packed", 8): [1.0] * 8,  # shares the read
    }  # fmt: skip
    k = KernelRows(comparison(rounds), rows, ("default", "packed"), 100_000_000)
    report = kernel_rows_report(k)
    assert report["across"]["default"].kind == "faster"  # one row beats 8 rows
    assert report["across"]["packed"].kind == "tie"
    assert report["between"][1].kind == "tie" and report["between"][8].kind == "faster"
    assert report["table"][1][-1].startswith("packed 4.0x as fast")
    assert report["table"][0][-1].startswith("a tie")


def test_time_kernel_rows_times_both_kernels_and_restores_nothing_it_does_not_own():
    k = time_kernel_rows((1, 2), n_in=64, n_out=8192, device="cpu", budget_s=0.2)
    assert k.rows == (1, 2) and k.weight_bytes == 64 * 8192 * 4
    assert set(k.kernels) == ({"default", "packed"} if cpu_linear.ONEDNN_AVAILABLE else {"default"})
    assert not cpu_linear._in_place  # the packed copy lived only inside the call
    for kern in k.kernels:
        assert all(len(k.comparison.rounds[k.label(kern, r)]) >= 6 for r in k.rows)
    with pytest.raises(ValueError, match="starting at 1"):
        time_kernel_rows((2, 4))

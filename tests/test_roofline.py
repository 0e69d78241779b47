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

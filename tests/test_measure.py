"""The measurement tools, and a smoke run of the benchmark script."""

import math
import os
import random
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from llmlab import GPTConfig, TinyGPT, bench, kv_cache_bytes
from llmlab.measure import (
    MachineProbe,
    Timing,
    decode_step_bytes,
    default_device,
    matmul_flops,
    probe_machine,
    read_bandwidth,
    seed_everything,
    time_it,
)


def test_time_it_calls_warmup_plus_repeat_times_and_reports_each_timed_call():
    calls = []
    timing = time_it(lambda: calls.append(time.sleep(0.002)), warmup=3, repeat=5, device="cpu")
    assert len(calls) == 3 + 5
    assert isinstance(timing, Timing) and len(timing.times_s) == 5
    assert all(t >= 0.002 for t in timing.times_s), "each timed call slept 2 ms"
    assert timing.min_s <= timing.median_s <= timing.max_s
    assert timing.ms == pytest.approx(timing.median_s * 1e3)


def test_timing_median_is_the_middle_value():
    timing = Timing((3.0, 1.0, 100.0))
    assert (timing.min_s, timing.median_s, timing.max_s) == (1.0, 3.0, 100.0)


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        (dict(warmup=-1), ValueError, "warmup"),
        (dict(repeat=0), ValueError, "repeat"),
        (dict(repeat=2.5), TypeError, "repeat"),
        (dict(warmup=True), TypeError, "warmup"),
        (dict(repeat="7"), TypeError, "repeat"),
    ],
)
def test_time_it_rejects_bad_counts(kwargs, error, name):
    with pytest.raises(error, match=name):
        time_it(lambda: None, **kwargs)


def test_time_it_needs_a_callable():
    with pytest.raises(TypeError, match="fn"):
        time_it(42)


def test_read_bandwidth_is_a_positive_rate():
    bandwidth = read_bandwidth(4 * 2**20, device="cpu")
    assert math.isfinite(bandwidth) and bandwidth > 1e8  # bytes/s: any machine reads 100 MB/s


@pytest.mark.parametrize("nbytes, error", [(0, ValueError), (2, ValueError), (1e6, TypeError)])
def test_read_bandwidth_rejects_bad_sizes(nbytes, error):
    with pytest.raises(error, match="nbytes"):
        read_bandwidth(nbytes)


def test_matmul_flops_is_a_positive_rate():
    flops = matmul_flops(64, device="cpu")
    assert math.isfinite(flops) and flops > 1e6
    with pytest.raises(ValueError, match="^n must"):
        matmul_flops(0)


def test_default_device_is_the_gpu_when_there_is_one():
    assert default_device().type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_seed_everything_repeats_every_generator():
    def draws():
        return random.random(), np.random.rand(), torch.rand(1).item()

    seed_everything(5)
    first = draws()
    seed_everything(5)
    assert draws() == first
    seed_everything(6)
    assert draws() != first


@pytest.mark.parametrize("n_kv_head", [4, 2, 1])
def test_decode_step_bytes_counts_every_weight_once_plus_the_cache(n_kv_head):
    C, V, L, T, ctx = 16, 50, 3, 32, 10
    model = TinyGPT(
        GPTConfig(vocab_size=V, block_size=T, n_layer=L, n_head=4, n_embd=C, n_kv_head=n_kv_head)
    )
    kv_width = 2 * n_kv_head * (C // 4)
    per_block = (
        2 * C  # ln_1
        + C * C + C  # q_proj
        + C * kv_width + kv_width  # kv_proj
        + C * C + C  # out_proj
        + 2 * C  # ln_2
        + C * 4 * C + 4 * C  # mlp.fc
        + 4 * C * C + C  # mlp.proj
    )  # fmt: skip
    weights = L * per_block + 2 * C + C * V + V  # blocks, ln_f, lm_head
    one_row_each = 2 * C  # the new token's row of wte and its position's row of wpe
    expected = 4 * (weights + one_row_each) + kv_cache_bytes(L, n_kv_head, C // 4, ctx + 1)
    assert decode_step_bytes(model, ctx) == expected


BENCH = [sys.executable, "-m", "llmlab.bench", "--small"]
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}  # like the tests themselves (see conftest.py)


def test_bench_smoke_run():
    command = [*BENCH, "--contexts", "16", "64", "--repeat", "2"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, env=ONE_THREAD)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "read bandwidth:" in out and "GB/s" in out
    assert "x @ W" in out and "F.linear" in out
    assert "Linear's products:" in out  # the bench says which kernel its figures belong to
    rows = [line.split() for line in out.splitlines() if line.split()[:1] in (["16"], ["64"])]
    assert [row[0] for row in rows] == ["16", "64"]
    for row in rows:
        cached, uncached, speedup, _, floor, multiple = row[1:]
        assert float(cached) > 0 and float(uncached) > 0 and float(floor) > 0
        assert speedup.endswith("x") and multiple.endswith("x")


@pytest.mark.parametrize(
    "flags",
    [["--contexts", "5000"], ["--contexts", "0"], ["--repeat", "0"], ["--linear", "mkl"]],
)
def test_bench_rejects_bad_flags(flags, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--small", *flags])
    assert exit_info.value.code == 2 and flags[0] in capsys.readouterr().err


def test_probe_machine_measures_both_rates_within_its_budget():
    start = time.perf_counter()
    probe = probe_machine("cpu", seconds_budget=0.5)
    assert time.perf_counter() - start < 20  # two rounds at least, then it stops
    assert isinstance(probe, MachineProbe) and probe.device.startswith("cpu")
    assert probe.bandwidth > 1e8 and probe.flops > 1e8
    assert probe.ridge == pytest.approx(probe.flops / probe.bandwidth)
    assert "GB/s" in str(probe) and "FLOP/byte" in str(probe)


@pytest.mark.parametrize(
    "budget, error", [(0, ValueError), (-1.0, ValueError), (61, ValueError), ("2", TypeError)]
)
def test_probe_machine_rejects_a_bad_budget(budget, error):
    with pytest.raises(error, match="seconds_budget"):
        probe_machine("cpu", seconds_budget=budget)

"""`python -m llmlab.bench serve` runs end to end on a tiny model and rejects bad flags."""

import os
import subprocess
import sys

import pytest

from llmlab import bench
from llmlab.serve.benchmark import mixed_workload

ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}  # like the tests themselves (see conftest.py)


def test_serve_bench_smoke_run():
    command = [sys.executable, "-m", "llmlab.bench", "serve", "--small", "--requests", "6"]
    result = subprocess.run(
        [*command, "--no-hf"], capture_output=True, text=True, timeout=120, env=ONE_THREAD
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for policy in ("continuous", "static"):
        row = next(line.split() for line in out.splitlines() if line.split()[:1] == [policy])
        tokens_per_s, p50, p95, ttft50, steps = map(float, row[1:])
        assert tokens_per_s > 0 and steps > 0, row
        assert 0 <= ttft50 and 0 <= p50 <= p95, row  # a tiny model may print 0.00 s
    batch_rows = [line.split() for line in out.splitlines() if line.split()[:1] in (["1"], ["8"])]
    assert [row[0] for row in batch_rows] == ["1", "8"]
    assert all(row[-1].endswith("x") for row in batch_rows)
    assert "paged" in out and "contiguous KVCache" in out


@pytest.mark.parametrize("flags", [["--requests", "0"], ["--batch", "0"], ["--rate", "-1"]])
def test_serve_bench_rejects_bad_flags(flags, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["serve", "--small", *flags])
    assert exit_info.value.code == 2 and "--requests" in capsys.readouterr().err


def test_workload_is_mixed_and_long_tailed():
    requests = mixed_workload(400, vocab_size=100, seed=1, rate=2.0)
    prompts = [len(r.prompt) for r in requests]
    outputs = sorted(r.max_new_tokens for r in requests)
    assert min(prompts) >= 16 and max(prompts) <= 256 and max(prompts) - min(prompts) > 200
    assert outputs[0] >= 8 and outputs[-1] <= 256
    assert outputs[len(outputs) // 2] < 64 < outputs[-20]  # most short, a long tail
    arrivals = [r.arrival for r in requests]
    assert arrivals == sorted(arrivals) and 100 < arrivals[-1] < 300  # about 400 / 2 per s

"""The engine's tests hold on other CPUs, not only on the one that ran them last.

Machines of the course's kind come with different CPUs (AVX2 only, AVX-512, AMD EPYC), and torch
picks its float kernels by CPU, so sums can differ in the last bits. ATEN_CPU_CAPABILITY=default
makes torch take its plain kernels, as a CPU without vector extensions would: the engine's tests
must pass with them too. (The whole suite, notebooks included, was also run by hand with
`default`, with `avx2` and with one thread; see CONTRIBUTING.md.)
"""

import os
import subprocess
import sys

import pytest
from notebook_tools import ROOT

# The engine's unit and property tests: fast, and the ones whose tolerances a new CPU would test.
ENGINE_TESTS = sorted(
    str(p.relative_to(ROOT))
    for pattern in ("test_model.py", "test_kv_cache.py", "test_generate.py", "test_agreement.py",
                    "test_serve*.py", "test_cost.py", "test_shapes.py", "test_kv_quant.py")
    for p in (ROOT / "tests").glob(pattern)
)  # fmt: skip


@pytest.mark.slow
def test_engine_tests_pass_with_torchs_plain_cpu_kernels():
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "default"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "0", "-q", "-m", "not slow", *ENGINE_TESTS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    probe = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert probe.stdout.strip() == "DEFAULT", "ATEN_CPU_CAPABILITY did not reach torch"

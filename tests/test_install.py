"""`make setup` installs what a reader needs, and the right build of PyTorch.

On Linux x86-64 without an NVIDIA GPU the Makefile must take PyTorch's CPU build (PyPI's Linux
wheel is the CUDA build: 17 NVIDIA wheels, 2.7 GB); test-only tools stay out of the reader's
requirements; every package the reader installs is pinned by requirements.lock.
"""

import platform
import re
import shutil
import subprocess
import sys
from importlib import metadata

import pytest
from notebook_tools import ROOT


def dry_run(*args: str) -> str:
    result = subprocess.run(
        ["make", "-n", "-B", "setup", *args], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def requirement_names(path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            names.add(re.split(r"[<>=!~\[; ]", line, maxsplit=1)[0].lower().replace("_", "-"))
    return names


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.machine() != "x86_64" or shutil.which("nvidia-smi"),
    reason="the CPU build is chosen on Linux x86-64 without an NVIDIA GPU",
)
def test_setup_takes_the_cpu_build_on_linux_without_a_gpu():
    out = dry_run()
    assert '"torch==2.13.0+cpu" --extra-index-url https://download.pytorch.org/whl/cpu' in out
    # The installed environment is that build: no CUDA, no NVIDIA wheels.
    import torch

    assert torch.version.cuda is None, f"this environment has the CUDA build {torch.__version__}"
    names = [d.metadata["Name"] for d in metadata.distributions()]
    nvidia = [name for name in names if name.startswith("nvidia-")]
    assert not nvidia, f"NVIDIA wheels installed: {nvidia}"


def test_the_build_can_be_chosen_and_a_wrong_choice_is_named():
    assert '"torch==2.13.0"' in dry_run("TORCH=cuda") and "+cpu" not in dry_run("TORCH=cuda")
    assert "+cpu" in dry_run("TORCH=cpu")
    bad = subprocess.run(["make", "-n", "setup", "TORCH=rocm"], cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    assert bad.returncode != 0 and "TORCH must be cpu, cuda or pypi, got 'rocm'" in bad.stderr


def test_the_reader_installs_no_test_tools():
    reader = requirement_names(ROOT / "requirements.txt")
    for tool in ("pytest", "playwright", "transformers", "ruff", "nbmake", "zizmor", "hypothesis"):
        assert tool not in reader, f"{tool} is a test tool: list it in requirements-test.txt"
    out = dry_run()
    assert "requirements-test.txt" not in out, "make setup (and so make book) installs test tools"


def test_every_requirement_is_pinned_by_the_lock():
    lock = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            lock[name.lower().replace("_", "-")] = version
    wanted = requirement_names(ROOT / "requirements.txt") | requirement_names(
        ROOT / "requirements-test.txt"
    )
    missing = sorted(n for n in wanted if n not in lock)
    assert not missing, f"requirements.lock pins none of {missing}: run `make lock`"
    assert lock["torch"] == "2.13.0", "the lock pins torch without a build label (+cpu or CUDA)"
    assert not any(n.startswith("nvidia-") for n in lock), "the lock must not pin CUDA wheels"


def test_the_installed_versions_are_the_locked_ones():
    """What this environment runs is what the lock says (a reader gets the same)."""
    lock = dict(
        line.split("==", 1)
        for line in (ROOT / "requirements.lock").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    differ = []
    for name in ("numpy", "matplotlib", "jupyter-book", "jupyterlab", "jupyterlab-myst", "myst-nb"):
        installed = metadata.version(name)
        locked = next(v for k, v in lock.items() if k.lower().replace("_", "-") == name)
        if installed != locked:
            differ.append(f"{name} {installed} (lock: {locked})")
    assert not differ, f"installed versions differ from requirements.lock: {differ}; run make setup"


def test_jupyterlab_myst_is_compatible_with_the_installed_jupyterlab():
    out = subprocess.run(
        [sys.executable, "-m", "jupyter", "labextension", "list"], capture_output=True, text=True
    )
    text = out.stdout + out.stderr
    assert "jupyterlab-myst" in text
    assert "is not compatible" not in text, text[-1500:]

"""The Binder configuration (binder/) gives a working course environment.

mybinder.org cannot be reached from the test machines, so this does what repo2docker does, as
far as it can here: a fresh copy of the repository (what git would check out), a clean venv with
the Python of binder/runtime.txt, `pip install -r binder/requirements.txt` (without the PyTorch
CPU index line, which points at a host we cannot reach: torch comes pinned, from the local wheel
store), binder/postBuild from the repository root, then every notebook in _toc.yml in a fresh
kernel of that venv, from its own folder. The install time and the venv size go to
_build/binder_env.json.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
import venv
from pathlib import Path

import pytest
from notebook_tools import ROOT, toc_files

BINDER = ROOT / "binder"
INDEX_OPTION = re.compile(r"^\s*--(extra-)?index-url\b")


def requirement_lines():
    return [
        line.split("#", 1)[0].strip()
        for line in (BINDER / "requirements.txt").read_text().splitlines()
    ]


def test_binder_configuration_matches_the_course_environment():
    """Cheap checks: same Python, the CPU build of the same torch, everything in requirements.txt."""
    assert (
        BINDER / "runtime.txt"
    ).read_text().strip() == f"python-{sys.version_info.major}.{sys.version_info.minor}"
    lines = requirement_lines()
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in lines
    assert "-r ../requirements.txt" in lines, (
        "Binder must install everything that requirements.txt lists"
    )
    assert "-c ../requirements.lock" in lines, (
        "Binder must install the versions requirements.lock pins"
    )
    course_torch = re.search(
        r"^torch==(\S+)", (ROOT / "requirements.txt").read_text(), re.MULTILINE
    )[1]
    assert f"torch=={course_torch}+cpu" in lines, (
        f"pin the CPU build of the course's torch {course_torch}"
    )
    # Binder installs requirements.txt, so these reach Binder's JupyterLab too: MyST roles render
    # in markdown cells (jupyterlab-myst) and the quizzes run (jupyterquiz).
    course = (ROOT / "requirements.txt").read_text()
    for needed in ("jupyterlab-myst", "jupyterquiz"):
        assert re.search(rf"^{needed}\b.*<", course, re.MULTILINE), (
            f"requirements.txt must list {needed} with an upper bound (Binder installs it from there)"
        )
    post_build = BINDER / "postBuild"
    assert os.access(post_build, os.X_OK), "binder/postBuild must be executable"
    assert "pip install --no-cache-dir --no-deps -e ." in post_build.read_text()


def repository_copy(target: Path) -> Path:
    """The files a clone would have (tracked, plus new files git does not ignore)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for relative in filter(None, listed):
        source = ROOT / relative
        if source.is_file():
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / relative)
    return target


RUN_NOTEBOOKS = r"""
import json, sys, time
from pathlib import Path
import nbformat
from nbclient import NotebookClient

times = {}
for path in map(Path, sys.argv[1:]):
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    name = f"{path.parent.name}/{path.name}"
    times[name] = round(time.perf_counter() - start, 1)
    print(f"{name}: {times[name]} s", flush=True)
# import llmlab from an unrelated folder, in a kernel of this environment
probe = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
    "import sys, llmlab; print(sys.prefix); print(llmlab.__file__)")])
NotebookClient(probe, timeout=120, kernel_name="python3", resources={"metadata": {"path": "/"}}).execute()
print(json.dumps({"times": times, "probe": probe.cells[0].outputs[0]["text"]}))
"""


@pytest.mark.slow
def test_binder_environment_installs_and_runs_every_notebook(tmp_path):
    repo = repository_copy(tmp_path / "repo")
    env_dir = tmp_path / "venv"
    requirements = tmp_path / "binder-requirements.txt"
    lines = []
    for line in (repo / "binder" / "requirements.txt").read_text().splitlines():
        if INDEX_OPTION.match(line):
            continue  # download.pytorch.org is unreachable here; the +cpu wheel comes from local disk
        if line.startswith(("-r ", "--requirement ", "-c ", "--constraint ")):
            option, path = line.split(maxsplit=1)
            line = f"{option} {(repo / 'binder' / path).resolve()}"
        lines.append(line)
    requirements.write_text("\n".join(lines) + "\n")

    start = time.perf_counter()
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    env = dict(
        os.environ,
        VIRTUAL_ENV=str(env_dir),
        PATH=f"{env_dir / 'bin'}{os.pathsep}{os.environ['PATH']}",
    )
    env.pop("PYTHONPATH", None)
    env.pop("JUPYTER_PATH", None)
    env["JUPYTER_DATA_DIR"] = str(tmp_path / "jupyter-data")  # no kernelspec from the user's setup
    env["JUPYTER_CONFIG_DIR"] = str(tmp_path / "jupyter-config")
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # share the cores politely with other test workers
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-compile", "-r", str(requirements)],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
    )
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-3000:]
    post_build = subprocess.run(
        [str(repo / "binder" / "postBuild")], cwd=repo, env=env, capture_output=True, text=True
    )
    assert post_build.returncode == 0, post_build.stdout[-2000:] + post_build.stderr[-3000:]
    install_s = time.perf_counter() - start

    torch_version = subprocess.run(
        [str(python), "-c", "import torch; print(torch.__version__)"],
        env=env,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert torch_version.endswith("+cpu"), (
        f"the Binder environment got torch {torch_version!r}, not the CPU build"
    )

    notebooks = [
        str(repo / f"{name}.ipynb") for name in toc_files() if (repo / f"{name}.ipynb").exists()
    ]
    start = time.perf_counter()
    run = subprocess.run(
        [str(python), "-c", RUN_NOTEBOOKS, *notebooks],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    run_s = time.perf_counter() - start
    result = json.loads(run.stdout.strip().splitlines()[-1])
    prefix, llmlab_file = result["probe"].split()
    assert Path(prefix) == env_dir, f"the kernel ran in {prefix}, not in the Binder venv"
    assert Path(llmlab_file).is_relative_to(repo), (
        f"llmlab imported from {llmlab_file}, not the repository"
    )

    size = sum(f.stat().st_size for f in env_dir.rglob("*") if f.is_file() and not f.is_symlink())
    report = {
        "install_and_postbuild_s": round(install_s, 1),
        "venv_mb": round(size / 1e6),
        "torch": torch_version,
        "notebooks_s": round(run_s, 1),
        "per_notebook_s": result["times"],
    }
    out = ROOT / "_build" / "binder_env.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))

"""The repository is what a contributor and the book build expect: clean notebooks, a complete
table of contents, lint-clean code."""

import json
import subprocess
import sys

import pytest
from notebook_tools import ROOT, notebooks_on_disk, toc_files

RUFF = [sys.executable, "-m", "ruff"]
LINTED = ["llmlab", "tests", "chapters", "exercises", "quiz.ipynb", "your_machine.ipynb"]


def tracked_notebooks():
    out = subprocess.run(
        ["git", "ls-files", "*.ipynb"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return [ROOT / line for line in out.stdout.split()]


def test_committed_notebooks_carry_no_outputs():
    dirty = []
    for path in tracked_notebooks() or notebooks_on_disk():
        for cell in json.loads(path.read_text())["cells"]:
            if cell.get("outputs") or cell.get("execution_count"):
                dirty.append(path.relative_to(ROOT).as_posix())
                break
    assert not dirty, f"strip outputs before committing (nbstripout --keep-id): {dirty}"


def test_nbstripout_agrees():
    paths = [str(p) for p in notebooks_on_disk()]
    result = subprocess.run(
        [sys.executable, "-m", "nbstripout", "--verify", "--keep-id", *paths],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_notebook_is_in_the_toc_and_every_toc_entry_exists():
    in_toc = set(toc_files())
    on_disk = {p.relative_to(ROOT).with_suffix("").as_posix() for p in notebooks_on_disk()}
    assert not on_disk - in_toc, f"notebooks missing from _toc.yml: {sorted(on_disk - in_toc)}"
    missing = [
        f for f in in_toc if not any((ROOT / f).with_suffix(s).exists() for s in (".ipynb", ".md"))
    ]
    assert not missing, f"_toc.yml names files that do not exist: {missing}"


def test_every_chapter_has_an_exercise_under_it_in_the_toc():
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    for part in toc["parts"]:
        for chapter in part["chapters"]:
            if not chapter["file"].startswith("chapters/"):
                continue  # the quiz page (quiz.ipynb) is not a chapter
            sections = [s["file"] for s in chapter.get("sections", [])]
            number = chapter["file"].split("/")[-1].split("_")[0]
            assert any(s.startswith(f"exercises/{number}_") for s in sections), (
                f"{chapter['file']} has no exercise"
            )


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff(command):
    result = subprocess.run([*RUFF, *command, *LINTED], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_notebook_of_the_toc_is_run_and_weighed_by_make_test():
    """nbmake runs what pytest's testpaths name; notebook_resources.py checks each one's memory."""
    from notebook_resources import PEAK_LIMIT_MIB

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    paths = config["testpaths"]
    assert "-p notebook_resources" in config["addopts"]
    assert PEAK_LIMIT_MIB <= 1.2 * 1024
    for name in toc_files():
        notebook = ROOT / f"{name}.ipynb"
        if notebook.exists():
            assert any(notebook == ROOT / p or (ROOT / p) in notebook.parents for p in paths), (
                f"{name}.ipynb is not under pytest's testpaths: make test neither runs nor weighs it"
            )


def test_the_memory_check_reads_the_kernel_peak():
    from notebook_resources import peak_mib

    status = "Name:\tpython\nVmPeak:\t 2000000 kB\nVmHWM:\t  1258291 kB\nVmRSS:\t 1000 kB\n"
    assert peak_mib(status) == 1258291 / 1024
    assert peak_mib("Name: python\n") is None


# A code line the book shows must fit its column at a 1280 px window (CONTRIBUTING.md, "The
# 77-character column"); a folded hide-input cell's box is narrower. The browser test measures
# the built page; this one names the line in seconds, before a build.
SHOWN_WIDTH = {"": 77, "hide-input": 75}


def long_shown_code_lines(cells):
    found = []
    for index, cell in enumerate(cells):
        tags = cell.get("metadata", {}).get("tags", [])
        if cell["cell_type"] != "code" or {"remove-cell", "remove-input"} & set(tags):
            continue
        width = SHOWN_WIDTH["hide-input" if "hide-input" in tags else ""]
        source = "".join(cell["source"])
        found += [(index, line) for line in source.splitlines() if len(line) > width]
    return found


def test_shown_code_fits_the_column():
    too_wide = []
    for path in notebooks_on_disk():
        cells = json.loads(path.read_text())["cells"]
        name = path.relative_to(ROOT).as_posix()
        too_wide += [f"{name} cell {i}: {len(line)} chars: {line.strip()[:40]!r}"
                     for i, line in long_shown_code_lines(cells)]  # fmt: skip
    assert not too_wide, "code wider than the book's column:\n" + "\n".join(too_wide)


def test_the_column_check_finds_a_long_line():
    cell = {"cell_type": "code", "metadata": {"tags": ["hide-input"]}, "source": ["x" * 76]}
    assert long_shown_code_lines([cell]) == [(0, "x" * 76)]
    assert long_shown_code_lines([{**cell, "metadata": {}}]) == []
    assert long_shown_code_lines([{**cell, "metadata": {"tags": ["remove-cell"]}}]) == []

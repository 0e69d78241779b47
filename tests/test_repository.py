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

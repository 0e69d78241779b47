"""A book build that fails must not look fixed (tests/book_build.py, what `make book` runs).

A scratch book of one notebook that fails while a file FAIL sits beside it, built the way `make
book` builds: the failed build fails; building again with nothing changed runs the notebook again
and fails again (plain jupyter-book says "build succeeded" there and keeps the traceback page);
once the cause is gone the next build succeeds and the page is clean.
"""

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from book_build import build_book, pages_with_tracebacks

pytestmark = pytest.mark.slow

CONFIG = """title: scratch
execute:
  execute_notebooks: cache
  timeout: 60
"""
TOC = """format: jb-book
root: index
chapters:
  - file: page
"""
CELL = """import os
from pathlib import Path
runs = Path("runs.txt")
runs.write_text(runs.read_text() + "x" if runs.exists() else "x")
assert not os.path.exists("FAIL"), "told to fail"
print("ran")
"""


def runs(book: Path) -> int:
    return len((book / "runs.txt").read_text()) if (book / "runs.txt").exists() else 0


@pytest.fixture
def book(tmp_path):
    (tmp_path / "_config.yml").write_text(CONFIG)
    (tmp_path / "_toc.yml").write_text(TOC)
    (tmp_path / "index.md").write_text("# Scratch\n\nOne page.\n")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Page"), nbformat.v4.new_code_cell(CELL)]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, tmp_path / "page.ipynb")
    return tmp_path


def test_a_failed_notebook_is_run_again_and_fails_the_build_until_fixed(book):
    build = book / "_build"
    (book / "FAIL").touch()
    first = build_book(book, build, capture=True)
    assert first["returncode"] != 0, first["log"][-2000:]
    assert [p.name for p in pages_with_tracebacks(build)] == ["page.html"]
    assert runs(book) == 1

    # What plain jupyter-book does next: nothing changed, so it reads nothing, executes nothing
    # and reports success, leaving the page with its traceback. book_build must not.
    plain = subprocess.run(
        [str(Path(sys.executable).parent / "jupyter-book"), "build", str(book), "-W", "-n"],
        capture_output=True,
        text=True,
    )
    assert plain.returncode == 0 and runs(book) == 1
    assert pages_with_tracebacks(build), "the traceback page should still be there"

    second = build_book(book, build, capture=True)
    assert second["returncode"] != 0, "a rebuild with the cause unchanged must fail again"
    assert "reading every page again" in second["log"]
    assert runs(book) == 2, "the failed notebook must run again"

    (book / "FAIL").unlink()
    third = build_book(book, build, capture=True)
    assert third["returncode"] == 0, third["log"][-2000:]
    assert runs(book) == 3 and not pages_with_tracebacks(build)
    assert "ran" in (build / "html" / "page.html").read_text()

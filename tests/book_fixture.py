"""The built book, shared by every test that reads the HTML (registered in conftest.py), and the
two fixtures the browser tests share: `site`, the built HTML served on localhost, and `browser`,
Debian's Chromium driven by Playwright.

Tests that use them carry pytest.mark.xdist_group("book") so that, under pytest-xdist, one worker
builds the book once and runs them all.
"""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Where the book is built: the repository's _build, as `make book` does. BOOK_OUT=/tmp/x puts it in
# /tmp/x/_build instead, so two people (or two checkouts) can build at once without clashing.
BUILD = Path(os.environ.get("BOOK_OUT", ROOT)) / "_build"


def drop_stale_execution_cache(build: Path = BUILD) -> bool:
    """Forget executed notebooks if llmlab changed since they ran; True if it did.

    jupyter-book's execution cache (execute_notebooks: cache) reruns a notebook only when the
    notebook's own code changes. Its outputs also come from llmlab (the engine, the glued
    figures, the quiz data), so a change there must rerun every notebook, as a fresh clone does.
    Sphinx's record of what it has read (.doctrees) goes too, or it would skip unchanged pages.
    """
    digest = hashlib.sha256()
    for path in sorted((ROOT / "llmlab").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    stamp = build / "llmlab.sha256"
    if stamp.exists() and stamp.read_text() == digest.hexdigest():
        return False
    stale = (build / ".jupyter_cache").exists()
    for folder in (".jupyter_cache", "jupyter_execute", ".doctrees"):
        shutil.rmtree(build / folder, ignore_errors=True)
    build.mkdir(parents=True, exist_ok=True)
    stamp.write_text(digest.hexdigest())
    return stale


@pytest.fixture(scope="session")
def built_book():
    """Build the book as `make book` does (warnings are errors); returns its exit code and log."""
    drop_stale_execution_cache()
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    command = [str(jupyter_book), "build", str(ROOT), "-W", "-n", "--keep-going"]
    if BUILD != ROOT / "_build":
        command += ["--path-output", str(BUILD.parent)]
    result = subprocess.run(
        command,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    return {
        "returncode": result.returncode,
        "log": result.stdout + result.stderr,
        "html": BUILD / "html",
    }


@pytest.fixture(scope="module")
def site(built_book):
    """The built HTML on a local server: its base URL."""
    from browser_tools import static_server

    html = built_book["html"]
    if not (html / "index.html").exists():
        pytest.fail("the book was not built (see test_book.py for the build log)")
    with static_server(html) as base:
        yield base


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium (never a downloaded browser), one per test module."""
    from browser_tools import chromium

    with chromium() as b:
        yield b


if __name__ == "__main__":  # `make book` runs this first
    if drop_stale_execution_cache():
        print("llmlab changed since the notebooks last ran: executing them all again")

"""The built book, shared by every test that reads the HTML (registered in conftest.py).

Tests that use it carry pytest.mark.xdist_group("book") so that, under pytest-xdist, one worker
builds the book once and runs them all.
"""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def built_book():
    """Build the book as `make book` does (warnings are errors); returns its exit code and log."""
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    result = subprocess.run(
        [str(jupyter_book), "build", str(ROOT), "-W", "-n", "--keep-going"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    return {
        "returncode": result.returncode,
        "log": result.stdout + result.stderr,
        "html": ROOT / "_build" / "html",
    }

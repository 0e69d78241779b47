"""Build the book as `make book` does, and never keep a failure as a result.

`python tests/book_build.py` (what `make book` runs) builds with `jupyter-book build . -W -n
--keep-going` (warnings are errors). Around it: every notebook runs again when llmlab changed
(jupyter-book's cache only watches the notebooks), the pages that failed last time are read again
(Sphinx would skip them as unchanged), and a page that shows a traceback fails the build. Only the
standard library: the reader's environment has no pytest.
"""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Where the book is built: the repository's _build, as `make book` does. BOOK_OUT=/tmp/x puts it in
# /tmp/x/_build instead, so two people (or two checkouts) can build at once without clashing.
BUILD = Path(os.environ.get("BOOK_OUT", ROOT)) / "_build"


def drop_stale_execution_cache(build: Path = BUILD, root: Path = ROOT) -> bool:
    """Forget executed notebooks if llmlab changed since they ran; True if it did.

    jupyter-book's execution cache (execute_notebooks: cache) reruns a notebook only when the
    notebook's own code changes. Its outputs also come from llmlab (the engine, the glued
    figures, the quiz data), so a change there must rerun every notebook, as a fresh clone does.
    Sphinx's record of what it has read (.doctrees) goes too, or it would skip unchanged pages.
    """
    digest = hashlib.sha256()
    for path in sorted((root / "llmlab").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    stamp = build / "llmlab.sha256"
    if stamp.exists() and stamp.read_text() == digest.hexdigest():
        return False
    stale = (build / ".jupyter_cache").exists()
    for folder in (".jupyter_cache", "jupyter_execute", ".doctrees"):
        shutil.rmtree(build / folder, ignore_errors=True)
    build.mkdir(parents=True, exist_ok=True)
    stamp.write_text(digest.hexdigest())
    return stale


# myst-nb renders a cell's error output with these classes: a page that shows one is broken.
TRACEBACK_MARK = 'class="output traceback'


def pages_with_tracebacks(build: Path = BUILD) -> list[Path]:
    """Built HTML pages that show an error output (a traceback, KeyboardInterrupt included)."""
    html = build / "html"
    if not html.exists():
        return []
    return sorted(
        page
        for page in html.rglob("*.html")
        if "_static" not in page.parts and TRACEBACK_MARK in page.read_text(errors="replace")
    )


def forget_failed_pages(build: Path = BUILD) -> list[Path]:
    """If the last build left a page with a traceback, make the next build read every page again.

    A notebook that failed (a timed-out cell, an exception) is never cached by jupyter-cache,
    but Sphinx remembers that it read the unchanged page: a second build would skip it, print
    "build succeeded" and keep the broken HTML. Dropping Sphinx's record (.doctrees) makes it
    re-read every page: notebooks that ran come back from the execution cache in seconds, the
    failed one runs again.
    """
    broken = pages_with_tracebacks(build)
    if broken:
        shutil.rmtree(build / ".doctrees", ignore_errors=True)
        for page in broken:
            page.unlink()
    return broken


def build_book(root: Path = ROOT, build: Path = BUILD, capture: bool = False) -> dict:
    """What `make book` does: prepare the caches, build with warnings as errors, then fail if any
    page shows a traceback. Returns the exit code, the log (when captured) and the HTML folder."""
    if drop_stale_execution_cache(build, root) and not capture:
        print("llmlab changed since the notebooks last ran: executing them all again", flush=True)
    forgotten = forget_failed_pages(build)
    log = ""
    if forgotten:
        log += (
            f"the last build left {len(forgotten)} page(s) with errors: reading every page again\n"
        )
        if not capture:
            print(log, end="", flush=True)
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    command = [str(jupyter_book), "build", str(root), "-W", "-n", "--keep-going"]
    if build != root / "_build":
        command += ["--path-output", str(build.parent)]
    result = subprocess.run(command, cwd=root, capture_output=capture, text=True)
    returncode = result.returncode
    if capture:
        log += result.stdout + result.stderr
    broken = pages_with_tracebacks(build)
    if broken:
        message = "pages that show an error (see _build/html/reports/):\n" + "".join(
            f"  {page.relative_to(build / 'html')}\n" for page in broken
        )
        log += message
        if not capture:
            print(message, end="", file=sys.stderr)
        returncode = returncode or 1
    return {"returncode": returncode, "log": log, "html": build / "html"}


if __name__ == "__main__":  # `make book`
    sys.exit(build_book()["returncode"])

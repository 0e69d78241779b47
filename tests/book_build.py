"""Build the book as `make book` does, and never keep a failure as a result.

`python tests/book_build.py` (what `make book` runs) builds with `jupyter-book build . -W -n
--keep-going` (warnings are errors). Around it: every notebook runs again when llmlab changed
(jupyter-book's cache only watches the notebooks), the pages that failed last time are read again
(Sphinx would skip them as unchanged), and a page that shows a traceback fails the build. Only the
standard library: the reader's environment has no pytest.
"""

import hashlib
import json
import os
import re
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


# A `$` right before an {eval} role opens inline maths that runs to the next `$`: MyST then sets
# the prose between as one formula (seven glued values and a citation of chapter 11 vanished into
# two formulas 4,387 and 5,567 px wide). Prose with dollars writes USD or \$.
_INLINE_MATH = re.compile(r"(?<![\\$])\$(?!\$)(.+?)(?<![\\$])\$(?!\$)", re.DOTALL)


def markup_slips(root: Path = ROOT) -> list[str]:
    """'path, cell N: what' for each markdown cell (or .md page) where an {eval} role would be
    read as maths: a `$` right before one, or one inside $...$."""
    found = []
    paths = [p for p in root.rglob("*.ipynb") if not {"_build", ".venv"} & set(p.parts)]
    paths += [p for p in root.glob("*.md")] + list((root / "chapters").glob("*.md"))
    for path in sorted(paths):
        if path.suffix == ".ipynb":
            cells = json.loads(path.read_text())["cells"]
            texts = ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]
        else:
            texts = [path.read_text()]
        for i, text in enumerate(texts):
            where = f"{path.relative_to(root)}" + (f", markdown cell {i}" if len(texts) > 1 else "")
            # code is not prose; roles' arguments are kept: a role inside a formula is the slip
            prose = re.sub(r"(?<!\})`[^`]*`", "", re.sub(r"```.*?```", "", text, flags=re.DOTALL))
            if "${eval}" in prose:
                found.append(f"{where}: a $ right before an {{eval}} role (write USD or \\$)")
            for m in _INLINE_MATH.finditer(prose.replace("$$", "")):
                if "{eval}" in m.group(1) or "{glue" in m.group(1) or "{cite}" in m.group(1):
                    found.append(f"{where}: a role inside inline maths: ${m.group(1)[:60]}...$")
    return found


# Prose set as a formula: inline maths in the built HTML holding words, not symbols.
_HTML_MATH = re.compile(
    r'<span class="math notranslate nohighlight">\\\((.*?)\\\)</span>', re.DOTALL
)


def prose_in_maths(build: Path = BUILD) -> list[str]:
    """'page: formula' for inline maths in the built pages that is prose (six or more words of
    three letters or more outside \\text{}): the sign of a markup slip, wider than any column."""
    html = build / "html"
    found = []
    for page in sorted(html.rglob("*.html")) if html.exists() else []:
        if "_static" in page.parts:
            continue
        for m in _HTML_MATH.finditer(page.read_text(errors="replace")):
            body = re.sub(r"\\(?:text|mathrm|operatorname)\{[^}]*\}", "", m.group(1))
            if len(re.findall(r"\b[a-zA-Z]{3,}\b", re.sub(r"\\[a-zA-Z]+", "", body))) >= 6:
                found.append(f"{page.relative_to(html)}: {m.group(1)[:70]}...")
    return found


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
    slips = markup_slips(root)
    if slips:
        message = "markup slips that would turn prose into maths:\n" + "".join(
            f"  {s}\n" for s in slips
        )
        if not capture:
            print(message, end="", file=sys.stderr)
        return {"returncode": 1, "log": log + message, "html": build / "html"}
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    command = [str(jupyter_book), "build", str(root), "-W", "-n", "--keep-going"]
    if build != root / "_build":
        command += ["--path-output", str(build.parent)]
    result = subprocess.run(command, cwd=root, capture_output=capture, text=True)
    returncode = result.returncode
    if capture:
        log += result.stdout + result.stderr
    problems = {
        "pages that show an error (see _build/html/reports/)": [
            str(page.relative_to(build / "html")) for page in pages_with_tracebacks(build)
        ],
        "prose set as inline maths (a markup slip; wider than the column)": prose_in_maths(build),
    }
    for what, found in problems.items():
        if found:
            message = f"{what}:\n" + "".join(f"  {item}\n" for item in found)
            log += message
            if not capture:
                print(message, end="", file=sys.stderr)
            returncode = returncode or 1
    return {"returncode": returncode, "log": log, "html": build / "html"}


if __name__ == "__main__":  # `make book`
    sys.exit(build_book()["returncode"])

"""Shared by the tests: where the notebooks are, and running one in a real kernel."""

import importlib.util
import re
from pathlib import Path

import nbformat
import yaml
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
CHECK_LINE = re.compile(r"^(PASS|FAIL|TODO)  (.+)$", re.MULTILINE)


def toc_files() -> list[str]:
    """Every file in _toc.yml (without extension), in reading order."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for entry in entries:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections", []))
            walk(entry.get("chapters", []))

    walk(toc.get("parts", []))
    walk(toc.get("chapters", []))
    return files


def notebooks_on_disk() -> list[Path]:
    """The chapters, the exercises and the pages at the top (the quiz, "Your machine")."""
    found = [p for folder in ("chapters", "exercises") for p in (ROOT / folder).rglob("*.ipynb")]
    found += ROOT.glob("*.ipynb")
    return sorted(p for p in found if ".ipynb_checkpoints" not in p.parts)


def execute(
    path: Path, stub_source: str | None = None, timeout: int = 120
) -> nbformat.NotebookNode:
    """Run a notebook top to bottom in a fresh kernel, from its own folder, as a reader would.

    stub_source, if given, replaces the source of the cell tagged "stub" (an exercise's solution).
    """
    nb = nbformat.read(path, as_version=4)
    if stub_source is not None:
        stubs = [c for c in nb.cells if "stub" in c.metadata.get("tags", [])]
        assert len(stubs) == 1, (
            f"{path.name}: expected exactly one cell tagged 'stub', found {len(stubs)}"
        )
        stubs[0].source = stub_source
    NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    ).execute()
    return nb


def output_text(nb) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                parts.append(out.text)
            elif out.output_type in ("execute_result", "display_data"):
                parts.append(out.data.get("text/plain", ""))
            elif out.output_type == "error":
                parts.append(f"{out.ename}: {out.evalue}")
    return "\n".join(parts)


def check_lines(nb) -> list[tuple[str, str]]:
    """The (status, text) of every exercise check line the notebook printed."""
    return CHECK_LINE.findall(output_text(nb))


def bad_glue(values: list[str]) -> list[str]:
    """Glued values a reader should never see: empty, nan/inf/None, or a raw tensor repr.

    Most glue is a number; a few pages glue a computed word ("four heads", "less than"),
    which is fine as long as it is not one of these.
    """
    # Case matters: Python's None and nan, not the English "none" a computed sentence may say.
    bad = re.compile(r"^\s*$|\b(nan|NaN|inf|None)\b|tensor\(")
    return [v for v in values if bad.search(v)]


def load_solution(stem: str):
    """exercises/solutions/<stem>.py as a module: the one copy of an exercise's solution."""
    spec = importlib.util.spec_from_file_location(
        f"solution_{stem}", ROOT / "exercises" / "solutions" / f"{stem}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_fails_with(result, check: str, words: str):
    """result[check] is a (status, message) pair: it must be a one-line FAIL that says `words`."""
    status, message = result[check]
    assert status == "FAIL", f"{check} should fail, got {status}: {message}"
    assert words in message, message
    assert "\n" not in message, "a check explains itself in one line"

"""Every notebook nbmake runs is also weighed: its kernel's peak memory and its run time.

Binder grants a whole session 1-2 GB, so each notebook must peak under PEAK_LIMIT_MIB alone in a
fresh kernel. nbmake executes each notebook anyway; this plugin adds one cell at the end of the
run that reads the kernel's own high-water mark of resident memory (VmHWM in /proc/self/status,
Linux), removes it again, and fails the notebook's test when the peak is over the limit. The
figures of the run are printed in pytest's summary and written to _build/notebook_resources.json.
"""

import json
import re
import time
from pathlib import Path

import nbformat
import pytest
from nbmake import nb_run, pytest_items
from nbmake.nb_result import NotebookError

PEAK_LIMIT_MIB = 1.2 * 1024
MEMORY_CELL = "print('LLMLAB-VMHWM', open('/proc/self/status').read())"
_RESULTS: dict[str, dict] = {}


def peak_mib(status_text: str) -> float | None:
    """The VmHWM line of /proc/self/status, in MiB (None if absent: not Linux)."""
    found = re.search(r"^VmHWM:\s+(\d+)\s+kB", status_text, re.MULTILINE)
    return int(found.group(1)) / 1024 if found else None


class WeighedNotebookRun(nb_run.NotebookRun):
    """nbmake's run, with the memory cell appended and checked, and the time taken."""

    def execute(self):
        original_read = nbformat.read

        def read_with_memory_cell(*args, **kwargs):
            nb = original_read(*args, **kwargs)
            nb.cells.append(nbformat.v4.new_code_cell(MEMORY_CELL))
            return nb

        start = time.perf_counter()
        nb_run.nbformat.read = read_with_memory_cell
        try:
            result = super().execute()
        finally:
            nb_run.nbformat.read = original_read
        seconds = time.perf_counter() - start
        cell = result.nb.cells.pop()
        text = "".join(o.get("text", "") for o in cell.get("outputs", []))
        peak = peak_mib(text)
        _RESULTS[str(self.filename)] = {"seconds": round(seconds, 1), "peak_mib": peak}
        if result.error is None and peak is not None and peak > PEAK_LIMIT_MIB:
            summary = (
                f"{Path(self.filename).name}: the kernel peaked at {peak:.0f} MiB of resident "
                f"memory, over the {PEAK_LIMIT_MIB:.0f} MiB a notebook may use (Binder grants "
                "1-2 GB to a whole session)"
            )
            result.error = NotebookError(summary=summary, trace=summary, failing_cell_index=0)
        return result


def pytest_configure(config):
    pytest_items.NotebookRun = WeighedNotebookRun


def pytest_terminal_summary(terminalreporter, config):
    if not _RESULTS:
        return
    terminalreporter.section("notebooks: run time and kernel peak memory")
    root = Path(config.rootdir)
    for name, r in sorted(_RESULTS.items()):
        peak = f"{r['peak_mib']:.0f} MiB" if r["peak_mib"] is not None else "n/a"
        terminalreporter.write_line(f"{Path(name).relative_to(root)}: {r['seconds']} s, {peak}")
    out = root / "_build" / "notebook_resources.json"
    try:
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(_RESULTS, indent=1))
    except OSError:
        pass


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    # xdist: each worker's figures come back to the controller in workeroutput.
    _RESULTS.update(getattr(node, "workeroutput", {}).get("notebook_resources", {}))


def pytest_sessionfinish(session):
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["notebook_resources"] = dict(_RESULTS)

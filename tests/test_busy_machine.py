"""The timed pages stay true on a busy machine.

A reader's laptop runs a browser; a CI runner shares its cores. Here every timed page is executed
while CPU-bound processes of this test's own spin beside it for the whole run: one (one core's
worth), then three (a load near 4 on 2 cores). The kernels run as a reader's would: with
OpenMP's default (spinning) wait policy, not the passive one `make test` sets for its workers,
so a page that times on all cores meets what it meets in a reader's JupyterLab. Then, per page:
every verdict the page made (llmlab.verdict.RECORDED, read from the kernel after the last cell)
must agree with its numbers (Verdict.holds), and the physical invariants must hold: no step
below its floor after the page's re-measurement, cached faster than uncached at long context.
The glued figures, verdicts and run time of each page go to _build/busy1_glue.json and
_build/busy3_glue.json (the same run on an idle machine: `python tests/test_busy_machine.py
--spinners 0`, written to _build/idle_glue.json).
"""

import json
import multiprocessing
import os
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from prose_claims import TIMED_PAGES as PROSE_PAGES

ROOT = Path(__file__).resolve().parent.parent
# The timed pages that run a model (Measure your own server times a server, not the engine).
TIMED_PAGES = [page for page in PROSE_PAGES if page != "measure_your_server.ipynb"]
DUMP_VERDICTS = """import json as _json
from llmlab import verdict as _verdict
print("LLMLAB-VERDICTS", _json.dumps([
    dict(helper=v.helper, kind=v.kind, text=v.text, holds=v.holds())
    for v in _verdict.RECORDED]))"""


def spin(stop_at: float):
    """One core busy until stop_at (time.time()), as another program would keep it."""
    x = 0
    while time.time() < stop_at:
        for i in range(100_000):
            x += i * i


def run_page(path: Path) -> dict:
    """Execute a page in a fresh kernel, started as a reader's would be (OpenMP's default wait
    policy); its glued values and its verdicts."""
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(DUMP_VERDICTS))
    saved = os.environ.pop("OMP_WAIT_POLICY", None)  # the kernel inherits this process's env
    try:
        NotebookClient(
            nb, timeout=600, kernel_name="python3",
            resources={"metadata": {"path": str(path.parent)}},
        ).execute()  # fmt: skip
    finally:
        if saved is not None:
            os.environ["OMP_WAIT_POLICY"] = saved
    glued, verdicts = {}, []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            name = out.get("metadata", {}).get("scrapbook", {}).get("name")
            if name:
                data = out.get("data", {})
                glued[name] = next(
                    (v for k, v in data.items() if k.endswith("text/plain")), str(data)
                )
            if out.get("output_type") == "stream" and "LLMLAB-VERDICTS" in out.get("text", ""):
                line = out["text"].split("LLMLAB-VERDICTS", 1)[1].strip().splitlines()[0]
                verdicts = json.loads(line)
    return {"glued": glued, "verdicts": verdicts}


def invariant_problems(page: str, result: dict) -> list[str]:
    problems = [
        f"{v['helper']} said {v['kind']!r} against its own numbers: {v['text']}"
        for v in result["verdicts"]
        if not v["holds"]
    ]
    problems += [
        f"a step ran below its floor after re-measurement: {v['text']}"
        for v in result["verdicts"]
        if v["helper"] == "floor_check" and v["kind"] == "below"
    ]
    if page.endswith("05_kv_cache.ipynb"):
        at_last = result["glued"].get("at_last", "")
        if "is " not in at_last or "times as fast as" not in at_last:
            problems.append(f"cached not faster than uncached at long context: {at_last}")
    return problems


def run_all(spinners: int, pages=TIMED_PAGES) -> dict:
    """Run the pages one after another beside `spinners` spinning processes; writes
    _build/busy<spinners>_glue.json (idle_glue.json for 0) with each page's glue, verdicts and
    seconds."""
    results = {}
    stop_at = time.time() + 3600
    procs = [
        multiprocessing.Process(target=spin, args=(stop_at,), daemon=True) for _ in range(spinners)
    ]
    for proc in procs:
        proc.start()
    try:
        for page in pages:
            start = time.perf_counter()
            results[page] = run_page(ROOT / page)
            results[page]["seconds"] = round(time.perf_counter() - start, 1)
    finally:
        for proc in procs:
            proc.terminate()
            proc.join()
    out = ROOT / "_build" / (f"busy{spinners}_glue.json" if spinners else "idle_glue.json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    return results


def check(results: dict, load: str = ""):
    problems = [
        f"{page}{load}: {p}" for page, r in results.items() for p in invariant_problems(page, r)
    ]
    assert all(r["verdicts"] for r in results.values()), {
        page: len(r["verdicts"]) for page, r in results.items()
    }
    assert not problems, "\n".join(problems)


@pytest.mark.slow
@pytest.mark.xdist_group("busy")
def test_timed_pages_stay_true_beside_one_and_three_busy_processes():
    """One spinning process, then three (a load near 4 on 2 cores), one after the other in one
    test, so the two loads never overlap: every page finishes and every invariant holds."""
    one = run_all(spinners=1)
    three = run_all(spinners=3)
    check(one, " (beside 1 spinning process)")
    check(three, " (beside 3 spinning processes)")


def test_the_invariant_check_can_fail():
    """A verdict that contradicts its numbers, a step below its floor, a cache that lost."""
    result = {
        "glued": {"at_last": "a cached step and an uncached one take the same time"},
        "verdicts": [
            dict(helper="compare_times", kind="faster", text="x", holds=False),
            dict(helper="floor_check", kind="below", text="1.3 times faster than its floor", holds=True),
        ],
    }  # fmt: skip
    problems = invariant_problems("chapters/05_kv_cache.ipynb", result)
    assert len(problems) == 3, problems


if __name__ == "__main__":  # python tests/test_busy_machine.py [--spinners N] [PAGE...]
    args = sys.argv[1:]
    n = int(args[args.index("--spinners") + 1]) if "--spinners" in args else 1
    chosen = [a for a in args if a.endswith(".ipynb")] or TIMED_PAGES
    found = run_all(spinners=n, pages=chosen)
    for page, r in found.items():
        print(page, r["seconds"], "s", invariant_problems(page, r) or "ok")

"""Pages that show the idea: a shown code cell holds the idea and its printed result.

Glue calls and verdict bookkeeping (llmlab.verdict, imported as `say`) belong in folded cells
(tags hide-input, remove-input, remove-cell) or behind one helper call that returns the glued
sentences. A shown cell may make at most MAX_PLUMBING such calls: one verdict and its glue."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "chapters").glob("*.ipynb")) + [
    "your_machine.ipynb",
    "measure_your_server.ipynb",
]
FOLDED = {"hide-input", "remove-input", "remove-cell"}
PLUMBING = re.compile(r"\bglue\(|\bsay\.\w+\(|\bverdict\.\w+\(")
MAX_PLUMBING = 2


def crowded_cells(cells) -> list[str]:
    """'cell N: K glue/verdict calls' for each shown code cell with more than MAX_PLUMBING."""
    out = []
    for i, cell in enumerate(cells):
        if cell["cell_type"] != "code" or FOLDED & set(cell.get("metadata", {}).get("tags", [])):
            continue
        n = len(PLUMBING.findall("".join(cell["source"])))
        if n > MAX_PLUMBING:
            out.append(f"cell {i}: {n} glue/verdict calls in a shown cell")
    return out


@pytest.mark.parametrize("page", PAGES)
def test_shown_cells_hold_the_idea_not_the_plumbing(page):
    cells = json.loads((ROOT / page).read_text())["cells"]
    crowded = crowded_cells(cells)
    assert not crowded, (
        f"{page}: move glue and verdict calls to a folded cell (tag hide-input/remove-cell) "
        "or behind one helper call:\n" + "\n".join(crowded)
    )


def test_the_check_finds_a_crowded_cell_and_ignores_folded_ones():
    src = 'v = say.compare_ratio(r)\nglue("a", v)\nglue("b", 1)\n'
    shown = {"cell_type": "code", "source": [src], "metadata": {}}
    folded = {"cell_type": "code", "source": [src], "metadata": {"tags": ["remove-cell"]}}
    assert crowded_cells([shown, folded]) == ["cell 0: 3 glue/verdict calls in a shown cell"]

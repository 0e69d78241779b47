"""Make a notebook's glued numbers and citations read the same in JupyterLab and in the book.

    .venv/bin/python tools/prose_refs.py chapters/05_kv_cache.ipynb your_machine.ipynb
    .venv/bin/python tools/prose_refs.py            # every notebook of _toc.yml
    .venv/bin/python tools/prose_refs.py --check    # change nothing; exit 1 if a file would change

For each notebook (read and written with nbformat: cell ids, tags and metadata are kept):

1. In markdown cells, the roles JupyterLab cannot resolve become MyST inline expressions that
   both views evaluate (llmlab/notebook.py explains how):
   ``{glue:text}`x:.1f``` and ``{glue}`x``` -> ``{eval}`glued("x:.1f")```,
   ``{glue:md}`x``` -> ``{eval}`glued("x", md=True)```,
   ``{cite}`a,b``` (or ``{cite:p}``) -> ``{eval}`cite("a", "b")```.
2. The code line ``from myst_nb import glue`` becomes
   ``from llmlab.notebook import cite, glue, glued  # noqa: F401`` (the names the prose needs:
   ruff cannot see that markdown uses them).
3. The values that JupyterLab saves in a markdown cell's metadata (``user_expressions``, when a
   notebook is saved after Run All) are removed, like outputs (nbstripout keeps them).
4. After the cell holding the ``{bibliography}`` directive (which JupyterLab shows empty), a
   markdown cell tagged ``remove-cell`` lists the entries of references.bib that the notebook
   cites, for JupyterLab; the book leaves it out. It is rewritten on every run.

Running it again changes nothing (idempotent). Roles it cannot translate (``{cite:t}``, glue
from another notebook ``path::key``) stop it with the cell and the role, so a person decides.
Captions in ``mystnb.figure.caption`` metadata keep their ``{glue:text}`` roles: only the book
shows captions.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llmlab.notebook import EVAL_ROLE, parse_expression, references_markdown  # noqa: E402

ROLE = re.compile(r"\{(?P<role>glue|glue:[a-z]+|cite|cite:[a-z]+)\}`(?P<text>[^`]*)`")
IMPORT_MYST_NB = re.compile(r"^from myst_nb import glue$", re.MULTILINE)
IMPORT_OURS = re.compile(r"^from llmlab\.notebook import [\w, ]+(  # noqa: F401)?$", re.MULTILINE)
REFERENCES_TAG = "remove-cell"
REFERENCES_HEADER = (
    "% Written by tools/prose_refs.py from references.bib: the References as JupyterLab shows\n"
    "% them (the book leaves this cell out and shows the {bibliography} above). Do not edit.\n"
)


class CannotConvert(ValueError):
    """A role with no equivalent in both views: a person must rewrite it."""


def convert_role(role: str, text: str) -> str:
    """One MyST role as the {eval} expression that both views resolve."""
    if role in ("glue", "glue:text", "glue:any"):
        if "::" in text:
            raise CannotConvert(f"{{{role}}}`{text}` glues from another notebook")
        return f'{{eval}}`glued("{text}")`'
    if role == "glue:md":
        name, _, fmt = text.partition(":")
        if fmt not in ("", "commonmark", "myst") or "::" in name:
            raise CannotConvert(f"{{{role}}}`{text}`: only a local name is supported")
        return f'{{eval}}`glued("{name}", md=True)`'
    if role in ("cite", "cite:p"):
        keys = [key.strip() for key in text.split(",") if key.strip()]
        return "{eval}`cite(" + ", ".join(f'"{key}"' for key in keys) + ")`"
    raise CannotConvert(f"{{{role}}}`{text}` has no form that JupyterLab resolves")


def is_references_cell(cell) -> bool:
    return (
        cell.cell_type == "markdown"
        and REFERENCES_TAG in cell.metadata.get("tags", [])
        and cell.source.startswith(REFERENCES_HEADER)
    )


def convert(nb) -> list[str]:
    """Convert nb in place; returns what needed a change (empty when it was up to date)."""
    changes, problems = [], []
    names_used, keys_cited = set(), set()
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown" or is_references_cell(cell):
            continue

        where = f"cell {index} ({cell.get('id')})"

        def replace(match, where=where):
            try:
                return convert_role(match["role"], match["text"])
            except CannotConvert as error:
                problems.append(f"{where}: {error}")
                return match[0]

        if cell.metadata.pop("user_expressions", None) is not None:
            changes.append(f"{where}: values JupyterLab saved removed")  # outputs, in effect
        source = ROLE.sub(replace, cell.source)
        if source != cell.source:
            changes.append(f"cell {index}: {len(ROLE.findall(cell.source))} roles")
            cell.source = source
        for match in EVAL_ROLE.finditer(cell.source):
            try:
                role, text = parse_expression(match["text"])
            except ValueError as error:
                problems.append(f"{where}: {error}")
                continue
            names_used.add("cite" if role == "cite" else "glued")
            if role == "cite":
                keys_cited.update(text.split(","))
    if problems:
        raise CannotConvert("\n".join(problems))

    changes += _update_import(nb, names_used)
    changes += _update_references(nb, keys_cited)
    return changes


def _update_import(nb, names_used: set[str]) -> list[str]:
    if not names_used:
        return []
    line = f"from llmlab.notebook import {', '.join(sorted(names_used | {'glue'}))}  # noqa: F401"
    code = [c for c in nb.cells if c.cell_type == "code"]
    for pattern in (IMPORT_OURS, IMPORT_MYST_NB):
        for cell in code:
            if pattern.search(cell.source):
                source = place_import(cell.source, pattern, line)
                if source == cell.source:
                    return []
                cell.source = source
                return [f"import: {line}"]
    raise CannotConvert(
        f"the prose uses {sorted(names_used)}, but no code cell imports glue "
        f"('from myst_nb import glue'): add '{line}' to the first code cell"
    )


def place_import(source: str, old: re.Pattern, line: str) -> str:
    """Replace the import that old matches by line, where ruff's isort wants it: among the
    first-party `from llmlab... import` statements, in module order."""
    lines = source.split("\n")
    removed = next(i for i, text in enumerate(lines) if old.fullmatch(text))
    del lines[removed]
    if removed < len(lines) and lines[removed] == "" and (removed == 0 or lines[removed - 1] == ""):
        del lines[removed]  # the old import was alone in its block
    statements = []  # (module, first line, last line) of each top-level `from llmlab...`
    for i, text in enumerate(lines):
        match = re.match(r"from (llmlab[\w.]*) import", text)
        if match:
            end = i
            if text.rstrip().endswith("("):
                end = next(j for j in range(i, len(lines)) if lines[j].startswith(")"))
            statements.append((match[1].lower(), i, end))
    module = "llmlab.notebook"
    later = [first for name, first, _ in statements if name > module]
    if later:
        at = later[0]
    elif statements:
        at = statements[-1][2] + 1
    else:
        plain = [i for i, text in enumerate(lines) if re.match(r"import llmlab\b", text)]
        if not plain:
            raise CannotConvert(f"no llmlab import to put '{line}' beside: place it by hand")
        at = plain[-1] + 1
    lines.insert(at, line)
    return "\n".join(lines)


def _update_references(nb, keys: set[str]) -> list[str]:
    """The JupyterLab reference list after the {bibliography} cell: added, updated or removed."""
    generated = [i for i, c in enumerate(nb.cells) if is_references_cell(c)]
    bibliography = [
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "markdown" and "```{bibliography}" in c.source
    ]
    if not keys or not bibliography:
        if keys:
            raise CannotConvert(f"cites {sorted(keys)} but has no {{bibliography}} cell")
        for i in reversed(generated):
            del nb.cells[i]
        return ["references cell removed"] if generated else []
    anchor = nb.cells[bibliography[-1]]
    source = REFERENCES_HEADER + "\n" + references_markdown(keys)
    if generated:
        cell = nb.cells[generated[0]]
        moved = generated != [bibliography[-1] + 1]
        if cell.source == source and not moved:
            return []
        for i in reversed(generated):
            del nb.cells[i]
    else:
        cell = nbformat.v4.new_markdown_cell(metadata={"tags": [REFERENCES_TAG]})
        cell.id = f"{anchor.get('id', 'references')}-lab"[:64]
    cell.source = source
    nb.cells.insert(nb.cells.index(anchor) + 1, cell)
    return ["references cell written"]


def toc_notebooks() -> list[Path]:
    sys.path.insert(0, str(ROOT / "tests"))
    from notebook_tools import toc_files

    return [ROOT / f"{name}.ipynb" for name in toc_files() if (ROOT / f"{name}.ipynb").exists()]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every one in _toc.yml")
    parser.add_argument("--check", action="store_true", help="write nothing; 1 if out of date")
    args = parser.parse_args(argv)
    stale, failed = [], []
    for path in args.notebooks or toc_notebooks():
        before = path.read_text(encoding="utf-8")
        nb = nbformat.reads(before, as_version=4)
        try:
            changes = convert(nb)
        except CannotConvert as error:
            failed.append(f"{path}:\n{error}")
            continue
        after = nbformat.writes(nb) + "\n"
        if after == before:
            continue
        stale.append(f"{path}: {'; '.join(changes) or 'rewritten'}")
        if not args.check:
            nbformat.validate(nb)
            path.write_text(after, encoding="utf-8")
    verb = "out of date" if args.check else "converted"
    for line in stale:
        print(f"{verb}: {line}")
    for line in failed:
        print(f"cannot convert {line}", file=sys.stderr)
    return 1 if failed or (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())

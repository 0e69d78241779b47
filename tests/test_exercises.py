"""Every exercise, run as a reader runs it: as shipped (all checks TODO) and solved (all PASS).

Exercises are discovered from exercises/*.ipynb; each needs exercises/solutions/<same name>.py.
"""

import re

import pytest
from notebook_tools import ROOT, check_lines, execute

EXERCISES = sorted((ROOT / "exercises").glob("*.ipynb"))


def solution_for(notebook):
    return notebook.parent / "solutions" / f"{notebook.stem}.py"


@pytest.mark.parametrize("notebook", EXERCISES, ids=lambda p: p.stem)
def test_exercise_as_shipped_reports_every_check_unsolved(notebook):
    lines = check_lines(execute(notebook))
    assert lines, f"{notebook.name} printed no check lines"
    not_todo = [f"{status} {text}" for status, text in lines if status != "TODO"]
    assert not not_todo, f"{notebook.name} as shipped must report only TODO, got: {not_todo}"


@pytest.mark.parametrize("notebook", EXERCISES, ids=lambda p: p.stem)
def test_exercise_with_its_solution_passes_every_check(notebook):
    solution = solution_for(notebook)
    assert solution.exists(), f"{notebook.name} has no solution at {solution.relative_to(ROOT)}"
    lines = check_lines(execute(notebook, stub_source=solution.read_text()))
    shipped = check_lines(execute(notebook))
    assert len(lines) == len(shipped) > 0
    failing = [f"{status} {text}" for status, text in lines if status != "PASS"]
    assert not failing, f"{notebook.name} with its solution must pass every check, got: {failing}"


@pytest.mark.parametrize("notebook", EXERCISES, ids=lambda p: p.stem)
def test_solution_is_behind_a_dropdown_and_nowhere_else(notebook):
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    solution = solution_for(notebook)
    body = [  # lines with a word in them: a lone ")" or "}" gives nothing away
        line.strip()
        for line in solution.read_text().splitlines()
        if re.search(r"\w", line) and not line.startswith(("import", "from "))
    ]
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    leaked = [
        line for line in body if line in code and not line.startswith(("def ", '"""', "return"))
    ]
    assert not leaked, f"{notebook.name} shows solution lines in plain view: {leaked}"
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert f"literalinclude}} solutions/{solution.name}" in markdown, (
        "the solution must be included from its file"
    )
    assert ":class: dropdown" in markdown, "the solution must be collapsed (a dropdown) in the book"

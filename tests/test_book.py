"""The book builds with zero warnings, and what the build puts on the pages is real."""

import re

import pytest
from notebook_tools import bad_glue, toc_files

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("book")]


def test_book_builds_without_warnings(built_book):
    log = built_book["log"]
    assert built_book["returncode"] == 0, log[-3000:]
    warnings = [
        line
        for line in log.splitlines()
        if "WARNING" in line and "Kernel is running over TCP" not in line
    ]
    assert not warnings, "\n".join(warnings)


def test_every_toc_page_is_built(built_book):
    for name in toc_files():
        assert (built_book["html"] / f"{name}.html").exists(), name


def test_glued_values_are_real(built_book):
    for name in toc_files():
        html = (built_book["html"] / f"{name}.html").read_text()
        glued = re.findall(r'<span class="pasted-text">([^<]*)</span>', html)
        assert not bad_glue(glued), (
            f"{name}: glued values a reader should not see: {bad_glue(glued)}"
        )
        if name.startswith("chapters/"):
            assert len(glued) >= 5, f"{name}: a chapter glues its measured numbers into the prose"


def test_exercise_solution_is_collapsed(built_book):
    html = (built_book["html"] / "exercises" / "01_attention.html").read_text()
    solution = re.search(r'<div class="solution[^"]*"', html)
    assert solution and "dropdown" in solution.group(0), "the solution must be a collapsed dropdown"
    assert "TODO" in html, "the page should show the checks reporting TODO for the stub"

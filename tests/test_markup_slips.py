"""The build fails on markup that turns prose into maths (tests/book_build.py).

Chapter 11 once had a `$` right before each {eval} role: MyST read the prose up to the next `$`
as a formula, so seven glued values and a citation never appeared and two formulas ran 4,387 and
5,567 px wide in a 688 px column. The book build now refuses such a source before it runs, and
refuses a built page whose inline maths holds prose."""

import json
from pathlib import Path

import book_build


def notebook(tmp_path: Path, text: str) -> Path:
    nb = {
        "cells": [{"cell_type": "markdown", "metadata": {}, "source": [text]}],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    (tmp_path / "chapters").mkdir(exist_ok=True)
    path = tmp_path / "chapters" / "page.ipynb"
    path.write_text(json.dumps(nb))
    return path


def test_a_dollar_right_before_a_role_is_a_slip(tmp_path):
    notebook(tmp_path, 'It costs ${eval}`glued("usd:.2f")` per million tokens.')
    (slip,) = book_build.markup_slips(tmp_path)
    assert "chapters/page.ipynb" in slip and "a $ right before" in slip


def test_a_role_inside_inline_maths_is_a_slip(tmp_path):
    notebook(tmp_path, 'So $x = {eval}`glued("x")` + 1$ holds.')
    (slip,) = book_build.markup_slips(tmp_path)
    assert "a role inside inline maths" in slip


def test_maths_then_a_citation_and_dollars_in_code_are_fine(tmp_path):
    notebook(
        tmp_path,
        'One matrix $W_O$ {eval}`cite("vaswani2017attention")`, costs USD '
        '{eval}`glued("usd")`, and `price = "$5"` in code.\n\n```python\ns = "${eval}"\n```',
    )
    assert book_build.markup_slips(tmp_path) == []


def test_prose_in_built_maths_is_found(tmp_path):
    page = tmp_path / "_build" / "html" / "chapters" / "page.html"
    page.parent.mkdir(parents=True)
    page.write_text(
        '<p><span class="math notranslate nohighlight">\\(W_O x + \\text{bias}\\)</span> and '
        '<span class="math notranslate nohighlight">\\(per million tokens, and the batch that '
        "serves most requests within\\)</span></p>"
    )
    (found,) = book_build.prose_in_maths(tmp_path / "_build")
    assert found.startswith("chapters/page.html: per million tokens")


def test_the_source_tree_has_no_slips():
    assert book_build.markup_slips() == []

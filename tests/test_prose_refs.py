"""Glued numbers and citations in the prose read the same in JupyterLab and in the book.

The mechanism is in llmlab/notebook.py, the conversion in tools/prose_refs.py. Here, without a
kernel or a browser: every notebook of _toc.yml is converted (nothing left for the script to
change), what the book reads each expression as, the kernel's formatting against myst-nb's, and
the conversion itself. tests/test_jupyterlab.py checks the result in JupyterLab after Run All;
the book build (tests/test_book.py, -W) fails on an expression the book cannot read.
"""

import importlib.util
import re

import nbformat
import pytest
from notebook_tools import ROOT, toc_files

from llmlab import notebook as prose

spec = importlib.util.spec_from_file_location("prose_refs", ROOT / "tools" / "prose_refs.py")
prose_refs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(prose_refs)

NOTEBOOKS = [f"{name}.ipynb" for name in toc_files() if (ROOT / f"{name}.ipynb").exists()]
# A role JupyterLab cannot resolve, as typed in a markdown cell.
UNRESOLVED_ROLE = re.compile(r"\{(glue|glue:[a-z]+|cite|cite:[a-z]+)\}`[^`]*`")


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_notebook_prose_is_converted(notebook):
    """No {glue:text} or {cite} in the prose, and nothing else for tools/prose_refs.py to do."""
    path = ROOT / notebook
    nb = nbformat.read(path, as_version=4)
    raw = [
        f"cell {i}: {m[0]}"
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "markdown"
        for m in UNRESOLVED_ROLE.finditer(cell.source)
    ]
    changes = prose_refs.convert(nb)
    assert not raw and not changes, (
        f"{notebook}: JupyterLab would show placeholders ({raw[:3]}; to do: {changes}). "
        f"Run: .venv/bin/python tools/prose_refs.py {notebook}"
    )
    for cell in nb.cells:  # what the book will read: every expression, every key
        if cell.cell_type == "markdown":
            for match in prose.EVAL_ROLE.finditer(cell.source):
                role, text = prose.parse_expression(match["text"])
                if role == "cite":
                    prose.cite(*text.split(","))


def test_the_check_fails_on_a_raw_role():
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("from myst_nb import glue\n\nimport llmlab"),
        nbformat.v4.new_markdown_cell("Within {glue:text}`diff:.1e` {cite}`vaswani2017attention`"),
        nbformat.v4.new_markdown_cell("## References\n\n```{bibliography}\n```"),
    ]
    nb.cells[2].metadata["user_expressions"] = [{"expression": "1", "result": {}}]
    assert prose_refs.convert(nb)  # something to do: the test above would fail
    assert "user_expressions" not in nb.cells[2].metadata
    assert nb.cells[1].source == (
        'Within {eval}`glued("diff:.1e")` {eval}`cite("vaswani2017attention")`'
    )
    assert nb.cells[0].source == (
        "import llmlab\nfrom llmlab.notebook import cite, glue, glued  # noqa: F401"
    )
    assert prose_refs.is_references_cell(nb.cells[3])
    assert "Attention is all you need" in nb.cells[3].source
    assert nb.cells[3].metadata["tags"] == ["remove-cell"]
    before = nbformat.writes(nb)
    assert prose_refs.convert(nb) == [] and nbformat.writes(nb) == before  # idempotent


def test_conversion_keeps_ids_and_places_the_import():
    nb = nbformat.v4.new_notebook()
    setup = (
        "import torch\nfrom myst_nb import glue\n\nimport llmlab\n"
        "from llmlab import agreement\nfrom llmlab.plotting import (\n    COLORS,\n)"
    )
    nb.cells = [
        nbformat.v4.new_code_cell(setup, metadata={"tags": ["hide-input"]}),
        nbformat.v4.new_markdown_cell("{glue:md}`name` and {glue}`n`"),
    ]
    ids = [c.id for c in nb.cells]
    prose_refs.convert(nb)
    assert [c.id for c in nb.cells] == ids and nb.cells[0].metadata["tags"] == ["hide-input"]
    assert nb.cells[0].source == (
        "import torch\n\nimport llmlab\nfrom llmlab import agreement\n"
        "from llmlab.notebook import glue, glued  # noqa: F401\n"
        "from llmlab.plotting import (\n    COLORS,\n)"
    )
    assert nb.cells[1].source == '{eval}`glued("name", md=True)` and {eval}`glued("n")`'


@pytest.mark.parametrize(
    "role", ["{cite:t}`vaswani2017attention`", "{glue:text}`other.ipynb::x`", "{glue:figure}`f`"]
)
def test_roles_without_an_equivalent_stop_the_conversion(role):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(f"see {role}")]
    with pytest.raises(prose_refs.CannotConvert, match=re.escape(role.split("`")[0])):
        prose_refs.convert(nb)


def test_the_book_reads_each_expression_as_its_role():
    assert prose.parse_expression('glued("bw_gbs:.1f")') == ("glue:text", "bw_gbs:.1f")
    assert prose.parse_expression(' glued("n") ') == ("glue:text", "n")
    assert prose.parse_expression('glued("top", md=True)') == ("glue:md", "top")
    assert prose.parse_expression("cite('a', \"b\")") == ("cite", "a,b")
    for bad in [
        "bw_gbs",
        "1 + 1",
        "glued(name)",
        'glued("a", "b")',
        'cite("a", x=1)',
        "glued(",
        "",
    ]:
        with pytest.raises(ValueError):
            prose.parse_expression(bad)


@pytest.mark.parametrize(
    "value, fmt",
    [(6.0e-8, ".1e"), (31.99, ".0f"), (0.955, ".2f"), (1500, ""), (2, "d"), ("head 0", "")],
)
def test_glued_formats_as_myst_nb_does(value, fmt, capsys):
    from IPython.core.formatters import format_display_data
    from myst_nb.core.variables import format_plain_text

    spec = f"x:{fmt}" if fmt else "x"
    prose.glue("x", value, display=False)
    book = format_plain_text(format_display_data(value)[0]["text/plain"], fmt or "s")
    assert str(prose.glued(spec)) == book
    assert repr(prose.glued(spec)) == book  # what JupyterLab shows: no quotes


def test_numpy_and_torch_scalars_glue_as_numbers(capsys):
    """np.float64(2.56) reads 'np.float64(2.56)' in text/plain: the book could not format it."""
    import numpy as np
    import torch

    for value in (np.float64(2.5612), np.int64(3), torch.tensor(2.5612)):
        prose.glue("x", value, display=False)
        assert str(prose.glued("x:.1f")) in ("2.6", "3.0")
    assert "np.float64" not in capsys.readouterr().out


def test_glued_before_glue_says_what_to_run():
    with pytest.raises(prose.NotGluedError, match="run the cells above"):
        prose.glued("never_glued_anywhere:.1f")


def test_cite_and_references_name_the_sources():
    assert str(prose.cite("vaswani2017attention")) == "[Vaswani et al., 2017]"
    assert str(prose.cite("michel2019sixteen", "voita2019analyzing")) == (
        "[Michel et al., 2019, Voita et al., 2019]"
    )
    listing = prose.references_markdown(["vaswani2017attention", "he2016resnet"])
    assert listing.count("\n") == 1 and listing.startswith("- Kaiming He")
    assert "Attention is all you need" in listing
    with pytest.raises(KeyError, match="nokey"):
        prose.cite("nokey")

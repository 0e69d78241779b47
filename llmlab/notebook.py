"""Measured numbers and citations in a notebook's prose, shown in JupyterLab and in the book.

A markdown cell writes them as MyST inline expressions:

    the probe measured {eval}`glued("bw_gbs:.1f")` GB/s {eval}`cite("williams2009roofline")`

- In **JupyterLab** (and on Binder), jupyterlab-myst sends each ``{eval}`` expression to the
  kernel when the markdown cell runs (Run All: once the cells above it have run, or later):
  ``glued("bw_gbs:.1f")`` formats the value that ``glue("bw_gbs", value)`` recorded,
  ``cite("key")`` gives "[Author et al., 2017]" from references.bib. Before the notebook runs,
  the cell shows the expression itself as a placeholder.
- In the **HTML book** (myst-nb, execution mode "cache": no kernel while a page is parsed), the
  Sphinx extension in this module (``setup``; listed in _config.yml) reads the same expression
  and hands it to the role it stands for: ``glued("bw_gbs:.1f")`` is myst-nb's
  ``{glue:text}`bw_gbs:.1f```, ``glued("name", md=True)`` is ``{glue:md}`name```,
  ``cite("a", "b")`` is sphinxcontrib-bibtex's ``{cite}`a,b```. Any other expression is a
  build warning (an error under ``-W``).

Both views format a glued value with myst-nb's own function, from the same text/plain
representation, so a number reads the same in both. ``references_markdown(keys)`` writes the
reference list that a chapter shows in JupyterLab, in a markdown cell tagged ``remove-cell``
(the book shows its ``{bibliography}`` instead); tools/prose_refs.py keeps those cells and the
roles up to date (see CONTRIBUTING.md, "Numbers and citations in the prose").
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path
from typing import Any

__all__ = ["EVAL_ROLE", "cite", "glue", "glued", "parse_expression", "references_markdown"]

ROOT = Path(__file__).resolve().parent.parent
BIBFILE = ROOT / "references.bib"

# An inline expression in a markdown cell; its text is what parse_expression() reads.
EVAL_ROLE = re.compile(r"\{eval\}`(?P<text>[^`]*)`")

# name -> {"text/plain": ..., "text/markdown": ...}: what glue() recorded in this kernel.
_glued: dict[str, dict[str, str]] = {}


class NotGluedError(LookupError):
    """glued() asked for a name that no glue() call in this kernel has recorded (yet)."""


class Text:
    """A string shown as itself (no quotes) wherever IPython displays it (text/plain)."""

    def __init__(self, text: str):
        self.text = text

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return self.text

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(self.text)

    def __eq__(self, other) -> bool:
        return str(self) == str(other)

    def __hash__(self) -> int:
        return hash(self.text)


def glue(name: str, value: Any, display: bool = True) -> None:
    """myst-nb's ``glue`` (the book reads the value from the cell's output), and the value kept
    in this kernel for ``glued(name)`` (JupyterLab fills the prose with it)."""
    from IPython.core.formatters import format_display_data
    from myst_nb import glue as myst_nb_glue

    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        value = value.item()  # a NumPy or torch scalar glues as the number, not its repr
    bundle, _ = format_display_data(value)
    _glued[name] = {k: bundle[k] for k in ("text/plain", "text/markdown") if k in bundle}
    myst_nb_glue(name, value, display=display)


def glued(spec: str, md: bool = False) -> Text:
    """The value glued as ``name``, formatted as myst-nb's ``{glue:text}`name:format``` does
    (``spec`` is "name" or "name:format"); ``md=True``: its Markdown, as ``{glue:md}``."""
    from myst_nb.core.variables import format_plain_text

    name, fmt = _split_spec(spec)
    if name not in _glued:
        raise NotGluedError(f"{name!r} is not computed yet: run the cells above this one")
    bundle = _glued[name]
    if md:
        if "text/markdown" not in bundle:
            raise NotGluedError(f"{name!r} was glued without Markdown (use glued({spec!r}))")
        return Text(bundle["text/markdown"].strip())
    return Text(format_plain_text(bundle["text/plain"], fmt))


def _split_spec(spec: str) -> tuple[str, str]:
    """As myst-nb splits a {glue:text} role: "name:.1f" -> ("name", ".1f"); "name" -> ("name", "s")."""
    name, sep, fmt = spec.rpartition(":")
    return (name, fmt) if sep else (spec, "s")


# ---- citations -------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _bibliography():
    """references.bib beside the package (an editable install, as `make setup` and Binder do),
    else in the notebook's folder or one above it."""
    from pybtex.database import parse_file

    candidates = [BIBFILE] + [folder / BIBFILE.name for folder in (Path.cwd(), *Path.cwd().parents)]
    return parse_file(next((p for p in candidates if p.exists()), BIBFILE))


def _entry(key: str):
    entries = _bibliography().entries
    if key not in entries:
        raise KeyError(f"{key!r} is not in {BIBFILE.name}")
    return entries[key]


def _plain(latex: str) -> str:
    from pybtex.richtext import Text as RichText

    return RichText.from_latex(latex).render_as("text")


def _authors(entry) -> str:
    """As sphinxcontrib-bibtex's author-year style names them: A; A and B; A et al."""
    persons = entry.persons.get("author") or entry.persons.get("editor") or []
    last = [_plain(" ".join(p.prelast_names + p.last_names)) for p in persons]
    if not last:
        return _plain(entry.fields.get("organization", entry.key))
    if len(last) == 1:
        return last[0]
    if len(last) == 2:
        return f"{last[0]} and {last[1]}"
    return f"{last[0]} et al."


def cite(*keys: str) -> Text:
    """The book's {cite}`a,b` as text: "[Vaswani et al., 2017, He et al., 2016]"."""
    parts = [f"{_authors(e)}, {e.fields.get('year', 'n.d.')}" for e in map(_entry, keys)]
    return Text("[" + ", ".join(parts) + "]")


def references_markdown(keys) -> str:
    """The entries of references.bib named by keys, as a Markdown list (pybtex's "plain"
    style: sorted by author), for a chapter's reference list in JupyterLab."""
    from pybtex.plugin import find_plugin

    keys = sorted(set(keys))
    for key in keys:
        _entry(key)  # a clear error for a key that is not in the file
    style = find_plugin("pybtex.style.formatting", "plain")()
    backend = find_plugin("pybtex.backends", "markdown")()
    formatted = style.format_bibliography(_bibliography(), citations=keys)
    lines = [" ".join(entry.text.render(backend).split()) for entry in formatted]
    # pybtex escapes every punctuation mark; mid-line these need none (easier to read raw).
    return "\n".join("- " + re.sub(r"\\([.()+!-])", r"\1", line) for line in lines)


# ---- the expressions a markdown cell may hold, and the book's reading of them ----------------


def parse_expression(source: str) -> tuple[str, str]:
    """The role an {eval} expression stands for in the book: (role name, role text).

    ``glued("x:.1f")`` -> ("glue:text", "x:.1f"); ``glued("x", md=True)`` -> ("glue:md", "x");
    ``cite("a", "b")`` -> ("cite", "a,b"). Anything else raises ValueError: only these are
    evaluated the same in both views.
    """
    try:
        call = ast.parse(source.strip(), mode="eval").body
    except SyntaxError as error:
        raise ValueError(f"not a Python expression: {source!r} ({error.msg})") from None
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)):
        raise ValueError(f"expected glued(...) or cite(...), got {source!r}")
    args = [a.value for a in call.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    if len(args) != len(call.args) or not args:
        raise ValueError(f"{source!r}: arguments must be string literals")
    keywords = {}
    for keyword in call.keywords:
        if not isinstance(keyword.value, ast.Constant):
            raise ValueError(f"{source!r}: keyword values must be literals")
        keywords[keyword.arg] = keyword.value.value
    if call.func.id == "glued" and len(args) == 1 and set(keywords) <= {"md"}:
        return ("glue:md" if keywords.get("md") else "glue:text"), args[0]
    if call.func.id == "cite" and not keywords:
        return "cite", ",".join(args)
    raise ValueError(
        f'{source!r}: only glued("name:format"), glued("name", md=True) and '
        'cite("key", ...) are shown in both JupyterLab and the book'
    )


def _eval_role(name, rawtext, text, lineno, inliner, options=None, content=None):
    """The book's {eval} role: the role that the expression stands for (see parse_expression)."""
    from docutils.parsers.rst import roles

    try:
        role_name, role_text = parse_expression(text)
    except ValueError as error:
        message = inliner.reporter.warning(f"{{eval}}: {error}", line=lineno)
        return [inliner.problematic(rawtext, rawtext, message)], [message]
    role, messages = roles.role(role_name, inliner.language, lineno, inliner.reporter)
    if role is None:
        message = inliner.reporter.error(f"{{eval}}: no role {role_name!r}", line=lineno)
        return [inliner.problematic(rawtext, rawtext, message)], [message, *messages]
    nodes, more = role(role_name, f"{{{role_name}}}`{role_text}`", role_text, lineno, inliner)
    return nodes, [*messages, *more]


def _register_unique_labels():
    """The bibliography style "course": pybtex's alpha style, with each label unique across the
    whole book. Alpha labels come from authors and year, so two vLLM documentation pages are both
    "vLLMTeam25"; pybtex tells them apart only inside one list, but each chapter has its own list
    and sphinxcontrib-bibtex needs a label to name one source everywhere. The first source to get
    a label keeps it; the next gets "b", then "c"."""
    from pybtex.plugin import register_plugin
    from pybtex.style.formatting.alpha import Style as AlphaStyle
    from pybtex.style.labels.alpha import LabelStyle as AlphaLabels

    owners: dict[str, list[str]] = {}  # label -> the keys that asked for it, in order

    class UniqueLabels(AlphaLabels):
        def format_labels(self, sorted_entries):
            for entry in sorted_entries:
                label = self.format_label(entry)
                keys = owners.setdefault(label, [])
                if entry.key not in keys:
                    keys.append(entry.key)
                i = keys.index(entry.key)
                yield label if i == 0 else label + "abcdefghijklmnopqrstuvwxyz"[i % 26]

    class CourseStyle(AlphaStyle):
        default_label_style = "course_unique"

    register_plugin("pybtex.style.labels", "course_unique", UniqueLabels, force=True)
    register_plugin("pybtex.style.formatting", "course", CourseStyle, force=True)


def setup(app):
    """Sphinx extension: the {eval} role above replaces myst-nb's (which needs execution mode
    "inline"). Registered once every extension is set up, so it wins whatever the order. Also
    the bibliography style "course" (unique labels across chapters)."""
    _register_unique_labels()

    def register(app):
        app.add_role("eval", _eval_role, override=True)

    app.connect("builder-inited", register)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

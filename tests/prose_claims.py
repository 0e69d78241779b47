"""Typed sentences that describe measured data: the check behind tests/test_prose_claims.py.

A timed page's numbers change from machine to machine and run to run, so every sentence that
says how a measurement came out (a shape, an ordering, a size) must be computed from it (a
glued value or verdict) or say that it is the cost model's prediction. This module finds the
typed sentences that do neither: a sentence of a markdown cell, a figure caption or an alt text
that uses a shape or comparison word and points at measured data.

It is a heuristic with a stated scope, not a parser of English: the words it looks for are the
ones that went wrong in review (a "flat" curve that jumped, "faster" kernels that tied, a "Look
for" line describing a shape the build did not show).
"""

import json
import re
from pathlib import Path

# Words that claim a shape, an ordering or a size.
SHAPE = re.compile(
    r"\b(faster|slower|quicker|flat|flatter|climbs?|climbing|rises?|rising|grows?|growing|"
    r"falls?|falling|drops?|dropping|steep(?:er|ly)?|linear(?:ly)?|straight line|knee|"
    r"plateaus?|levels? off|doubles?|doubling|jumps?|the same time|dominates?|dominated|"
    r"in proportion|proportional(?:ly)?|(?:moving|moves|further|pulled back) (?:left|right)|"
    r"far (?:left|right)|outperforms?|beats?|wins?)\b",
    re.IGNORECASE,
)
# Words that point at this run's data.
MEASURED = re.compile(
    r"\b(measured|timed|this machine|your machine|this run|look for|what to expect|fig\.|"
    r"figure|plot|curve|the points?|the table|printed|shows|here)\b",
    re.IGNORECASE,
)
# A sentence that states its source: a prediction, a datasheet, a paper's figure.
PREDICTION = re.compile(
    r"\b(predicts?|predicted|prediction|cost model|in theory|on paper|datasheets?|would|"
    r"expected by|by the model|the model's floor|roofline model)\b",
    re.IGNORECASE,
)
# A value computed by the page ({eval}`glued(...)`, {glue:text}, {glue}).
GLUED = re.compile(r"\{eval\}`glued\(|\{glue(?::text)?\}`|GLUED_VALUE")
GLUED_ROLE = re.compile(r"\{eval\}`glued\([^`]*`|\{glue(?::text)?\}`[^`]*`")

# The pages whose prose sits beside measurements.
TIMED_PAGES = [
    "chapters/05_kv_cache.ipynb",
    "chapters/06_prefill_decode.ipynb",
    "chapters/07_kv_memory.ipynb",
    "chapters/08_kv_tradeoff.ipynb",
    "chapters/09_ttft.ipynb",
    "chapters/10_memory_bound.ipynb",
    "chapters/11_latency_throughput.ipynb",
    "chapters/12_batching.ipynb",
    "your_machine.ipynb",
    "measure_your_server.ipynb",
]


def _strip(text: str) -> str:
    """Drop what is not prose: code blocks, inline code (keeping roles), maths, comments, links."""
    text = re.sub(r"```.*?```", " ", text, flags=re.DOTALL)
    text = re.sub(r"^%.*$", " ", text, flags=re.MULTILINE)  # MyST comments
    text = GLUED_ROLE.sub(" GLUED_VALUE ", text)  # a computed value: kept, marked
    text = re.sub(r"\{[a-z:-]+\}`[^`]*`", " ROLE ", text)  # other roles (cite, ref, ...)
    text = re.sub(r"`[^`]*`", " CODE ", text)  # inline code
    text = re.sub(r"\$\$.*?\$\$", " MATH ", text, flags=re.DOTALL)
    text = re.sub(r"\]\([^)]*\)", "]", text)  # link targets
    return text


def sentences(text: str) -> list[str]:
    """Sentences and list items of a markdown text (roles kept, so glue is still visible)."""
    text = _strip(text)
    out = []
    for block in re.split(r"\n\s*\n|\n\s*(?:[-*]|\d+\.)\s+", text):
        block = re.sub(r"^\s*(?:[-*]|\d+\.)\s+", "", " ".join(block.split()))
        # end of sentence: . ! ? followed by a space and a capital, a role or a quote
        out += [s for s in re.split(r"(?<=[.!?])\s+(?=[A-Z{(\"*])", block) if s.strip()]
    return out


def unsupported(sentence: str, *, caption: bool = False) -> bool:
    """A shape word about measured data, with no glued value and no stated prediction.
    In captions and alt text every shape word counts: they always describe the figure."""
    if not SHAPE.search(sentence) or GLUED.search(sentence) or PREDICTION.search(sentence):
        return False
    return caption or bool(MEASURED.search(sentence))


def findings(path: Path) -> list[str]:
    """'cell N: <kind>: <sentence>' for each typed sentence that outruns the data."""
    nb = json.loads(Path(path).read_text())
    found = []
    for i, cell in enumerate(nb["cells"]):
        source = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            if source.lstrip().startswith("% Written by tools/prose_refs.py"):
                continue  # the generated reference list
            for s in sentences(source):
                if unsupported(s):
                    found.append(f"cell {i}: prose: {s}")
        meta = cell.get("metadata", {}).get("mystnb", {})
        texts = {
            "caption": (meta.get("figure") or {}).get("caption"),
            "alt text": (meta.get("image") or {}).get("alt"),
        }
        # alt text set in code, e.g. plotting.save_figure(..., alt="...") or glue of an alt
        for m in re.finditer(
            r"\balt\s*=\s*(f?)\"([^\"]*)\"", source if cell["cell_type"] == "code" else ""
        ):
            if not m.group(1):  # an f-string is computed; a plain string is typed
                texts.setdefault("alt text in code", m.group(2))
        for kind, text in texts.items():
            if text and unsupported(" ".join(text.split()), caption=True):
                found.append(f"cell {i}: {kind}: {text}")
    return found

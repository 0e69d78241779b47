"""Every source keeps one label across the book (llmlab.notebook's bibliography style "course").

Each chapter has its own reference list, and sphinxcontrib-bibtex fails the build (warnings are
errors) when two sources share a label anywhere in the book: pybtex's alpha labels come from
authors and year, so five vLLM documentation pages were all "vLLMTeam25"."""

from pathlib import Path

from pybtex.database import parse_file
from pybtex.plugin import find_plugin

from llmlab.notebook import _register_unique_labels

ROOT = Path(__file__).resolve().parent.parent


def test_labels_are_unique_across_separate_lists():
    _register_unique_labels()
    entries = parse_file(ROOT / "references.bib").entries
    style = find_plugin("pybtex.style.labels", "course_unique")()
    vllm = sorted(k for k in entries if k.startswith("vllmdocs2025"))
    assert len(vllm) >= 2
    # two chapters' lists, formatted separately, sharing one source
    first = dict(zip(vllm[:2], style.format_labels([entries[k] for k in vllm[:2]])))
    second = dict(zip(vllm[1:], style.format_labels([entries[k] for k in vllm[1:]])))
    labels = {**first, **second}
    assert first[vllm[1]] == second[vllm[1]], "one source, one label"
    assert len(set(labels.values())) == len(labels), labels
    plain = find_plugin("pybtex.style.labels", "alpha")()
    assert len({plain.format_label(entries[k]) for k in vllm}) == 1  # the collision it fixes

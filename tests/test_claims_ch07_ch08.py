"""Chapters 7 and 8 say only what their arithmetic and the reviews' corrections support.

Two claims went wrong before (2026-12 expert review of Part 2):
- ch07 said a batch costs "about the same for many sequences as for one" right after fitting 30
  sequences of 4k tokens, where each step reads 64 GB of KV beside 13.5 GB of weights;
- ch08 taught, down to its quiz key, that decode is "bandwidth-bound with or without a cache"
  (without a cache every step is a prefill of the prefix: compute-bound past the ridge).

These tests recompute the numbers a quiz key states from llmlab.shapes, and search the chapters'
text and quiz keys for the false sentences. Each check is also run on the text as it was before
the fix (from git history) and must flag it.
"""

import json
import re
import subprocess
from pathlib import Path

import pytest

from llmlab import quiz
from llmlab.shapes import kv_cache_bytes_for, sequences_that_fit, weight_bytes

ROOT = Path(__file__).resolve().parent.parent
CH07 = ROOT / "chapters/07_kv_memory.ipynb"
CH08 = ROOT / "chapters/08_kv_tradeoff.ipynb"
BEFORE_FIX = "95719fd"  # the last commit before these chapters' issue #22/#23 revision

# Sentences the reviews showed false, as they were worded (and close rewordings).
FALSE_CLAIMS = {
    "decode is bandwidth-bound without a cache": re.compile(
        r"(bandwidth|memory)[- ]bound,? (?:\w+ ){0,3}with or without (?:a|the) (?:KV )?cache"
        r"|limited by memory bandwidth with or without (?:a|the) cache"
        r"|cache or no cache",
        re.IGNORECASE,
    ),
    "a batch costs about the same as one sequence": re.compile(
        r"about the same (?:cost )?for many sequences as for one", re.IGNORECASE
    ),
}


def prose(nb_text: str) -> str:
    """The markdown of a notebook, joined into one line per cell."""
    nb = json.loads(nb_text)
    cells = [c for c in nb["cells"] if c["cell_type"] == "markdown"]
    return "\n".join(" ".join("".join(c["source"]).split()) for c in cells)


def false_claims(text: str) -> list[str]:
    text = " ".join(text.split())
    return [name for name, pattern in FALSE_CLAIMS.items() if pattern.search(text)]


def key_texts(data: dict, index: int) -> str:
    """The correct answers of one question with their feedback, as one text."""
    q = data["questions"][index]
    return " ".join(
        a.get("answer", "") + " " + a["feedback"] for a in q["answers"] if a.get("correct")
    )


def old(path: str) -> str:
    done = subprocess.run(
        ["git", "show", f"{BEFORE_FIX}:{path}"], cwd=ROOT, capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"this clone has no history of {path} before the fix")
    return done.stdout


def batch_gain(model: str, memory: float, context: int) -> tuple[int, float]:
    """(sequences that fit, their tokens/s over batch 1's) when a step costs its bytes."""
    fit = sequences_that_fit(model, memory, context)
    weights, kv = weight_bytes(model, "fp16"), kv_cache_bytes_for(model, context)
    return fit, fit / ((weights + fit * kv) / (weights + kv))


# ---- chapter 7 ------------------------------------------------------------------------------


def test_ch07_prose_has_no_free_batch():
    assert false_claims(prose(CH07.read_text())) == []


def test_ch07_batch_question_matches_the_arithmetic():
    fit, gain = batch_gain("Llama-2-7B", 80e9, 4096)
    data = quiz.load_quiz("ch07")
    (q,) = [q for q in data["questions"] if "tokens per second" in q["question"]]
    assert f"fits {fit} sequences of 4096 tokens" in q["question"]
    (right,) = [a for a in q["answers"] if a["correct"]]
    assert right["answer"] == f"About {round(gain)} times", (right, gain)
    assert not any(
        a["answer"].startswith(f"About {fit} times") for a in q["answers"] if a["correct"]
    )


def test_the_checks_flag_chapter_7_as_it_was():
    assert "a batch costs about the same as one sequence" in false_claims(
        prose(old("chapters/07_kv_memory.ipynb"))
    )


# ---- chapter 8 ------------------------------------------------------------------------------


def test_ch08_prose_does_not_say_decode_is_bandwidth_bound_without_a_cache():
    assert false_claims(prose(CH08.read_text())) == []


def test_ch08_quiz_key_does_not_say_decode_is_bandwidth_bound_without_a_cache():
    data = quiz.load_quiz("ch08")
    for i, q in enumerate(data["questions"]):
        assert false_claims(key_texts(data, i)) == [], q["question"]
    q0 = key_texts(data, 0)
    assert re.search(r"compute-bound", q0) and re.search(r"prefill", q0), q0


def test_the_checks_flag_chapter_8_and_its_quiz_as_they_were():
    claim = "decode is bandwidth-bound without a cache"
    assert claim in false_claims(prose(old("chapters/08_kv_tradeoff.ipynb")))
    assert claim in false_claims(key_texts(json.loads(old("llmlab/quizzes/ch08.json")), 0))

"""The quiz data and its renderer (llmlab/quiz.py): every quiz loads, every question has a right
answer, a wrong one with feedback and a link to the section that explains it; numeric answers
agree with the course's engine; bad data and bad arguments are refused with a clear message.

The quizzes in a real browser: tests/test_quiz_browser.py.
"""

import copy
import json
import re

import pytest

from llmlab import quiz

CHAPTER_QUIZZES = [f"ch{n:02d}" for n in range(1, 13)]


def test_every_chapter_has_a_quiz_and_the_quiz_page_has_both_parts():
    assert set(quiz.quiz_names()) == {*CHAPTER_QUIZZES, "misconceptions", "self_check"}


@pytest.mark.parametrize("name", CHAPTER_QUIZZES + ["misconceptions"])
def test_checkable_quiz_is_complete(name):
    data = quiz.load_quiz(name)
    questions = data["questions"]
    assert 3 <= len(questions) <= 4, f"{name}: {len(questions)} questions, expected 3 or 4"
    if name.startswith("ch"):
        number = int(name[2:])
        assert data["chapter"] == number
        assert all(q["explained_in"]["chapter"] == number for q in questions), (
            f"{name}: a chapter's quiz links sections of its own chapter"
        )
    for q in questions:
        assert q["explained_in"]["section"] in quiz._SECTION_TITLES, q["explained_in"]


@pytest.mark.parametrize("name", CHAPTER_QUIZZES + ["misconceptions"])
def test_numeric_answers_agree_with_the_engine(name):
    for q in quiz.load_quiz(name)["questions"]:
        if q["type"] != "numeric":
            continue
        value = quiz.computed_value(q)
        assert value is not None, f"{name}: numeric question without a `computed` recipe"
        right = [a for a in q["answers"] if a.get("correct")]
        for answer in right:
            if answer["type"] == "value":
                assert answer["value"] == value, (name, q["question"], answer["value"], value)
            else:
                low, high = answer["range"]
                assert low <= value < high, (name, q["question"], answer["range"], value)
        for answer in q["answers"]:
            if not answer.get("correct") and answer["type"] == "value":
                assert answer["value"] != value, f"{name}: a wrong answer equals the right value"


def test_llama_2_7b_kv_bytes_per_token():
    """The issue's example, from accuracy.md: 524,288 bytes per token in fp16."""
    question = quiz.load_quiz("misconceptions")["questions"][1]
    assert quiz.computed_value(question) == 524_288


def test_self_check_has_the_twelve_questions_and_the_rubric():
    data = quiz.load_quiz("self_check")
    assert [q["chapter"] for q in data["questions"]] == list(range(1, 13))
    quiz_text = (quiz.ROOT / "quiz.ipynb").read_text()
    assert "show_quiz" in quiz_text and "Why is LLM inference" not in quiz_text, (
        "the quiz page calls the renderer; its questions live in llmlab/quizzes/"
    )


def test_every_chapter_quiz_question_targets_a_misconception():
    """Each wrong choice explains itself (feedback longer than a bare "wrong")."""
    for name in CHAPTER_QUIZZES:
        for q in quiz.load_quiz(name)["questions"]:
            for a in q["answers"]:
                assert len(a["feedback"].split()) >= 5, (name, q["question"], a)


def broken(mutate):
    data = copy.deepcopy(quiz.load_quiz("ch07"))
    mutate(data)
    return quiz.validate(data, "ch07")


@pytest.mark.parametrize(
    "mutate, message",
    [
        (
            lambda d: d["questions"][2]["answers"].__setitem__(
                0, {"answer": "x", "correct": False, "feedback": "f"}
            ),
            "no correct answer",
        ),
        (lambda d: d["questions"][2]["answers"][1].pop("feedback"), "without feedback"),
        (
            lambda d: d["questions"][2]["explained_in"].__setitem__("chapter", 13),
            "chapter number 1-12",
        ),
        (lambda d: d["questions"][0].__setitem__("precision", 0), "precision must be an int"),
        (lambda d: d["questions"][0]["answers"].pop(), "needs a default feedback"),
        (lambda d: d["questions"][2].__setitem__("type", "essay"), "is not one of"),
    ],
    ids=["no-right-answer", "no-feedback", "bad-chapter", "precision-0", "no-default", "bad-type"],
)
def test_malformed_quiz_data_is_refused(mutate, message):
    problems = broken(mutate)
    assert any(message in p for p in problems), problems


def test_a_wrong_numeric_answer_in_the_data_is_caught(monkeypatch):
    """The engine check fails when the data's right answer is off (here: query heads for GQA)."""
    data = copy.deepcopy(quiz.load_quiz("ch07"))
    data["questions"][1]["answers"][0]["value"] = 524_288
    monkeypatch.setattr(quiz, "load_quiz", lambda name: data)
    with pytest.raises(AssertionError):
        test_numeric_answers_agree_with_the_engine("ch07")


def test_bad_arguments_say_what_is_allowed():
    with pytest.raises(ValueError, match=r"no quiz named 'ch13'; valid names: ch01"):
        quiz.load_quiz("ch13")
    with pytest.raises(TypeError, match="name must be a str"):
        quiz.load_quiz(5)
    with pytest.raises(ValueError, match="chapter number 1-12"):
        quiz.chapter_file(0)
    with pytest.raises(ValueError, match="computed.function"):
        quiz.computed_value({"computed": {"function": "eval", "args": ["1"]}})


def test_links_point_at_chapters_that_exist_or_say_they_are_coming(tmp_path):
    chapters = quiz.ROOT / "chapters"
    link = quiz._link(7, "more-precisely", "Chapter 7", quiz.ROOT)
    target = quiz.chapter_file(7)
    assert f'href="chapters/{target.stem}.html#more-precisely"' in link
    assert f'data-notebook="chapters/{target.stem}"' in link
    # From a chapter's own folder, another chapter is a sibling...
    assert f'href="{target.stem}.html#more-precisely"' in quiz._link(
        7, "more-precisely", "x", chapters
    )
    # ...and a chapter's own quiz links its sections on the same page.
    quiz._showing["chapter"] = 7
    try:
        assert 'href="#more-precisely"' in quiz._link(7, "more-precisely", "x", chapters)
    finally:
        quiz._showing["chapter"] = None
    missing = [n for n in range(1, 13) if quiz.chapter_file(n) is None]
    if missing:
        assert "being written" in quiz._link(missing[0], "see-it", "x", chapters)


def test_self_check_html_has_twelve_markable_questions_and_the_rubric():
    page = quiz.self_check_html(quiz.load_quiz("self_check"), quiz.ROOT)
    assert page.count('class="llmlab-open"') == 12
    assert len(re.findall(r'type="radio"', page)) == 36
    rubric = json.loads(re.search(r"const rubric = (\[.*?\]);", page)[1])
    assert [band["min"] for band in rubric] == [10, 7, 4, 0], "bands are tried from the top"


def test_quiz_page_is_committed_clean_and_runs(tmp_path):
    """quiz.ipynb sits outside chapters/ and exercises/, which the repository tests cover."""
    import subprocess
    import sys

    page = quiz.ROOT / "quiz.ipynb"
    for tool in (["nbstripout", "--verify", "--keep-id"], ["ruff", "check"]):
        result = subprocess.run(
            [sys.executable, "-m", *tool, str(page)], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout + result.stderr
    from notebook_tools import execute

    nb = execute(page)
    kinds = [sorted(out.get("data", {})) for cell in nb.cells for out in cell.get("outputs", [])]
    assert ["application/javascript", "text/plain"] in kinds, "no jupyterquiz output"
    assert any("text/html" in k for k in kinds), "no self-check output"


@pytest.mark.parametrize("number", range(1, 13))
def test_each_chapter_ends_with_its_quiz_before_the_references(number):
    """The quiz closes the chapter: `show_quiz("chNN")` in a cell whose code the reader does not
    see, under a "Check yourself" heading, with only the references after it."""
    import nbformat

    nb = nbformat.read(quiz.chapter_file(number), as_version=4)
    calls = [i for i, c in enumerate(nb.cells) if "show_quiz(" in c.source]
    assert len(calls) == 1, f"chapter {number}: {len(calls)} quiz cells, expected one"
    cell = nb.cells[calls[0]]
    assert f'show_quiz("ch{number:02d}")' in cell.source, f"chapter {number}: {cell.source!r}"
    assert "remove-input" in cell.metadata.get("tags", []), (
        f"chapter {number}: the quiz cell should carry the remove-input tag"
    )
    assert nb.cells[calls[0] - 1].source.startswith("## Check yourself"), (
        f"chapter {number}: no 'Check yourself' heading above the quiz"
    )
    # Only the references follow: the book's {bibliography}, and the list JupyterLab shows in its
    # place (a cell the book removes, written by tools/prose_refs.py).
    after = [
        c.source.split("\n")[0]
        for c in nb.cells[calls[0] + 1 :]
        if "remove-cell" not in c.metadata.get("tags", [])
    ]
    assert after == ["## References"], f"chapter {number}: after the quiz come {after}"


def test_quiz_script_waits_for_a_loaded_mathjax():
    """jupyterquiz reads MathJax.version whenever a MathJax global exists; on a page where only
    Sphinx's MathJax configuration exists (MathJax still loading, or offline) that threw. Every
    test in the script shown must also require a loaded MathJax."""
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    InteractiveShell.instance()
    with capture_output() as captured:
        quiz.show_quiz("ch01")
    scripts = [o.data["application/javascript"] for o in captured.outputs
               if "application/javascript" in o.data]  # fmt: skip
    quiz_script = max(scripts, key=len)
    tests = re.findall(r"typeof MathJax[^)]*\)", quiz_script)
    assert tests, "jupyterquiz's script no longer tests for MathJax: review quiz.guard_mathjax"
    unguarded = [t for t in tests if "MathJax.version" not in t]
    assert not unguarded, f"MathJax tests without the guard: {unguarded}"
    raw = "if (typeof MathJax != 'undefined') {"
    assert quiz.guard_mathjax(raw) == "if (typeof MathJax !== 'undefined' && MathJax.version) {"


def test_the_right_answer_is_not_always_in_the_same_place():
    """Answers are shown in data order (jupyterquiz's shuffle is off, so the browser tests can find
    them): the right one must move around, or a reader learns "pick the first"."""
    from collections import Counter

    places, per_quiz = Counter(), {}
    for name in quiz.quiz_names():
        if name == "self_check":
            continue
        for q in quiz.load_quiz(name)["questions"]:
            if q["type"] != "numeric":
                place = next(i for i, a in enumerate(q["answers"]) if a["correct"])
                places[place] += 1
                per_quiz.setdefault(name, set()).add(place)
    total = sum(places.values())
    assert max(places.values()) <= total / 2, f"right answers by place: {dict(places)}"
    same = [name for name, found in per_quiz.items() if len(found) == 1]
    assert len(same) <= len(per_quiz) // 3, (
        f"quizzes whose right answers all sit in one place: {same}"
    )

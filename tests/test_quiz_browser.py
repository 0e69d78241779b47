"""The quizzes in Chromium, without a kernel, as a reader of the HTML book meets them.

- The quiz page of the built book (quiz.html): reveal a short answer; mark the twelve open
  questions for totals 0, 5, 9.5 and 12 and see the rubric's verdict and the chapters to revisit;
  answer each checkable question wrongly, then rightly, and see the feedback that explains it.
- Each chapter's quiz (`show_quiz("chNN")`), executed from the chapters folder and put into a page
  the way MyST-NB puts outputs into the book (HTML as is, JavaScript in a script tag), and on
  every chapter page of the built book, where it ends the chapter.

No console error beyond the project's allow-list. Screenshots: _build/screenshots/quiz_*.png.
The same page in JupyterLab: tests/test_jupyterlab.py.
"""

import html
from urllib.parse import urljoin

import nbformat
import pytest
from browser_tools import (
    ConsoleLog,
    axe_violations,
    describe_violations,
    screenshot_path,
    static_server,
)
from nbclient import NotebookClient
from notebook_tools import ROOT

from llmlab import quiz

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("book")]

CHAPTER_QUIZZES = [f"ch{n:02d}" for n in range(1, 13)]


@pytest.fixture
def open_url(browser):
    contexts = []

    def _open(base, path):
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        contexts.append(context)
        page = context.new_page()
        console = ConsoleLog(page)
        # Offline, as in tests/test_html_site.py: only the local server answers.
        page.route("**/*", lambda r: r.continue_() if r.request.url.startswith(base) else r.abort())
        page.goto(urljoin(base, path), wait_until="load")
        return page, console

    yield _open
    for context in contexts:
        context.close()


@pytest.fixture(scope="module")
def book_site(site, built_book):
    if not (built_book["html"] / "quiz.html").exists():
        pytest.fail("the book was not built with the quiz page (see test_book.py for the log)")
    return site


def output_html(nb) -> str:
    """A notebook's outputs as MyST-NB puts them into a page: HTML as is, JavaScript as a script."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "error":
                pytest.fail(f"the quiz cell raised {out.ename}: {out.evalue}")
            data = out.get("data", {})
            if "text/html" in data:
                parts.append(data["text/html"])
            elif "application/javascript" in data:
                parts.append(f'<script type="text/javascript">{data["application/javascript"]}'
                             "</script>")  # fmt: skip
    return "\n".join(parts)


@pytest.fixture(scope="module")
def chapter_quiz_site(tmp_path_factory):
    """One page per chapter quiz, executed in a kernel from the chapters folder."""
    folder = tmp_path_factory.mktemp("quiz_pages") / "chapters"
    folder.mkdir()
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(f'from llmlab.quiz import show_quiz\nshow_quiz("{n}")')
            for n in CHAPTER_QUIZZES
        ]  # fmt: skip
    )
    NotebookClient(
        nb,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(ROOT / "chapters")}},
    ).execute()
    for name, cell in zip(CHAPTER_QUIZZES, nb.cells):
        one = nbformat.v4.new_notebook(cells=[cell])
        (folder / f"{name}.html").write_text(
            f"<!doctype html><html><head><meta charset='utf-8'><title>{name}</title></head>"
            f"<body><h2 id='more-precisely'>More precisely</h2>{output_html(one)}</body></html>"
        )
    with static_server(folder.parent) as base:
        yield base


def answer_every_question(page, questions, name):
    """Each question: a wrong answer shows its feedback as incorrect, the right one as correct."""
    quizzes = page.locator(".Quiz")
    quizzes.first.wait_for(state="visible", timeout=20_000)
    assert quizzes.count() == len(questions), f"{name}: {quizzes.count()} questions shown"
    for i, q in enumerate(questions):
        box = quizzes.nth(i)
        feedback = box.locator(".Feedback")
        wrong = next(a for a in q["answers"] if not a.get("correct"))
        right = next(a for a in q["answers"] if a.get("correct"))
        if q["type"] == "numeric":
            field = box.locator("input.Input-text")
            wrong_value = wrong["value"] if "value" in wrong else sum(wrong["range"]) / 2
            field.fill(str(wrong_value))
            field.press("Enter")
            expect_feedback(feedback, "incorrect", wrong["feedback"], name, i)
            right_value = right["value"] if right["type"] == "value" else sum(right["range"]) / 2
            field.fill(str(right_value))
            field.press("Enter")
            expect_feedback(feedback, "correct", right["feedback"], name, i)
        else:
            labels = box.locator("label.MCButton")
            labels.nth(q["answers"].index(wrong)).click()
            expect_feedback(feedback, "incorrect", wrong["feedback"], name, i)
            labels.nth(q["answers"].index(right)).click()
            expect_feedback(feedback, "correct", right["feedback"], name, i)
        link = feedback.locator("a.llmlab-link")
        if quiz.chapter_file(q["explained_in"]["chapter"]) is not None:
            assert link.count() == 1, f"{name} question {i + 1}: no link to the explaining section"
            assert link.get_attribute("href").endswith(f"#{q['explained_in']['section']}")


def expect_feedback(feedback, verdict, text, name, i):
    feedback.wait_for(state="visible", timeout=5000)
    classes = feedback.get_attribute("class").split()
    assert verdict in classes, f"{name} question {i + 1}: feedback marked {classes}, not {verdict}"
    shown = feedback.inner_text()
    assert html.unescape(text)[:60] in shown, f"{name} question {i + 1}: feedback {shown!r}"


IS_FOCUSED_JS = "el => document.activeElement === el"
FOCUS_IN_QUIZ_JS = """el => {
  const now = document.activeElement;
  if (now === el) return 'here';
  const next = el.closest('.Quiz').nextElementSibling;
  if (next && now === next.querySelector('input.Input-text')) return 'next';
  return now ? now.outerHTML.slice(0, 80) : null;
}"""
FOCUS_RING_JS = """el => {
  const ring = el.closest('label') || el;
  const style = getComputedStyle(ring);
  return style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) >= 2;
}"""


def tab_to(page, target, name, i, forward=True, max_presses=80):
    """Press Tab (Shift+Tab backwards) until `target` has the keyboard focus."""
    handle = target.element_handle()
    for _ in range(max_presses):
        page.keyboard.press("Tab" if forward else "Shift+Tab")
        if page.evaluate(IS_FOCUSED_JS, handle):
            assert page.evaluate(FOCUS_RING_JS, handle), (
                f"{name} question {i + 1}: the focused answer shows no focus ring"
            )
            return
    pytest.fail(f"{name} question {i + 1}: {max_presses} Tab presses never reached the answer")


def answer_every_question_by_keyboard(page, questions, name):
    """The keyboard alone: Tab to an answer, Space (a wrong one) or Enter (the right one) to
    choose it, or type a number and press Enter; each question is a group named by its text,
    each answer has a name, and the feedback is a live region that a screen reader announces."""
    quizzes = page.locator(".Quiz")
    quizzes.first.wait_for(state="visible", timeout=20_000)
    assert quizzes.count() == len(questions), f"{name}: {quizzes.count()} questions shown"
    page.locator("body").focus()
    for i, q in enumerate(questions):
        box = quizzes.nth(i)
        assert box.get_attribute("role") == "group", f"{name} question {i + 1}: not a group"
        label_id = box.get_attribute("aria-labelledby")
        assert label_id and page.locator(f"#{label_id}").inner_text().strip(), (
            f"{name} question {i + 1}: the group is not named by the question"
        )
        feedback = box.locator(".Feedback")
        assert feedback.get_attribute("role") == "status", f"{name} question {i + 1}: role"
        assert feedback.get_attribute("aria-live") == "polite", f"{name} question {i + 1}"
        wrong = next(a for a in q["answers"] if not a.get("correct"))
        right = next(a for a in q["answers"] if a.get("correct"))
        if q["type"] == "numeric":
            field = box.locator("input.Input-text")
            labels = field.evaluate("el => Array.from(el.labels).map(l => l.innerText.trim())")
            assert labels and labels[0], f"{name} question {i + 1}: the answer box has no label"
            tab_to(page, field, name, i)
            for answer, verdict in ((wrong, "incorrect"), (right, "correct")):
                if "value" in answer:
                    value = answer["value"]
                else:
                    value = sum(answer["range"]) / 2
                page.keyboard.press("Control+A")  # the box keeps the last answer typed
                page.keyboard.type(str(value))
                page.keyboard.press("Enter")
                expect_feedback(feedback, verdict, answer["feedback"], name, i)
                # The focus stays in the box to try again; jupyterquiz moves it on to the next
                # question's box after a right answer, when the next question is numeric.
                focus = page.evaluate(FOCUS_IN_QUIZ_JS, field.element_handle())
                assert focus == "here" or (verdict == "correct" and focus == "next"), (
                    f"{name} question {i + 1}: after Enter the focus is {focus!r}"
                )
            continue
        inputs = box.locator("label.MCButton input")
        names = inputs.evaluate_all("els => els.map(e => e.labels[0].innerText.trim())")
        assert all(names), f"{name} question {i + 1}: an answer without a name: {names}"
        wrong_at, right_at = q["answers"].index(wrong), q["answers"].index(right)
        tab_to(page, inputs.nth(wrong_at), name, i)
        page.keyboard.press("Space")
        expect_feedback(feedback, "incorrect", wrong["feedback"], name, i)
        tab_to(page, inputs.nth(right_at), name, i, forward=right_at > wrong_at)
        page.keyboard.press("Enter")
        expect_feedback(feedback, "correct", right["feedback"], name, i)
        checked = inputs.evaluate_all("els => els.map(e => e.checked)")
        assert checked == [j == right_at for j in range(len(checked))], (
            f"{name} question {i + 1}: checked answers {checked} after choosing {right_at + 1}"
        )
    page.evaluate("document.getAnimations().forEach(a => a.finish())")
    found = axe_violations(page, ".Quiz")
    assert not found, describe_violations(f"{name}, every question answered", found)


@pytest.mark.parametrize("name", CHAPTER_QUIZZES)
def test_chapter_quiz_by_keyboard(open_url, chapter_quiz_site, name):
    page, console = open_url(chapter_quiz_site, f"chapters/{name}.html")
    answer_every_question_by_keyboard(page, quiz.load_quiz(name)["questions"], name)
    assert not console.unexpected, f"{name}: console errors: {console.unexpected}"


def test_misconception_questions_by_keyboard_on_the_quiz_page(open_url, book_site):
    page, console = open_url(book_site, "quiz.html")
    questions = quiz.load_quiz("misconceptions")["questions"]
    answer_every_question_by_keyboard(page, questions, "misconceptions")
    assert not console.unexpected, f"quiz page: console errors: {console.unexpected}"


@pytest.mark.parametrize("name", CHAPTER_QUIZZES)
def test_chapter_quiz_gives_feedback(open_url, chapter_quiz_site, name):
    page, console = open_url(chapter_quiz_site, f"chapters/{name}.html")
    answer_every_question(page, quiz.load_quiz(name)["questions"], name)
    page.screenshot(path=screenshot_path("quiz", name), full_page=True)
    assert not console.unexpected, f"{name}: console errors: {console.unexpected}"


def test_misconception_questions_on_the_quiz_page(open_url, book_site):
    page, console = open_url(book_site, "quiz.html")
    answer_every_question(page, quiz.load_quiz("misconceptions")["questions"], "misconceptions")
    # A link in the feedback leads to the chapter's page in the book.
    link = page.locator(".Feedback a.llmlab-link").first
    href = link.get_attribute("href")
    assert href.startswith("chapters/") and ".html#" in href, href
    assert not console.unexpected, f"quiz page: console errors: {console.unexpected}"


MARKS = {
    "0": ["wrong"] * 12,
    "5": ["right"] * 5 + ["wrong"] * 7,
    "9.5": ["right"] * 9 + ["partly"] + ["wrong"] * 2,
    "12": ["right"] * 12,
}


@pytest.mark.parametrize("total", MARKS)
def test_self_check_totals_and_verdict(open_url, book_site, total):
    data = quiz.load_quiz("self_check")
    page, console = open_url(book_site, "quiz.html")
    root = page.locator(".llmlab-self-check")
    root.wait_for(state="visible", timeout=20_000)
    questions = root.locator("li.llmlab-open")
    assert questions.count() == 12

    first = questions.first
    assert first.locator("details p").is_hidden(), "the short answer shows before it is asked for"
    first.locator("summary").click()
    assert data["questions"][0]["short_answer"][:40] in first.locator("details p").inner_text()

    verdict = root.locator(".llmlab-verdict")
    for i, mark in enumerate(MARKS[total]):
        assert "Mark all 12" in verdict.inner_text(), "a verdict before all twelve are marked"
        questions.nth(i).locator(f'input[data-mark="{mark}"]').check()
    assert root.locator(".llmlab-total").inner_text().startswith(f"Your total: {total} of 12")
    expected = next(r for r in sorted(data["rubric"], key=lambda r: -r["min"])
                    if float(total) >= r["min"])  # fmt: skip
    assert verdict.inner_text() == expected["verdict"], (total, verdict.inner_text())

    missed = [i + 1 for i, m in enumerate(MARKS[total]) if m != "right"]
    review = root.locator(".llmlab-review li")
    assert review.count() == len(missed), f"chapters to revisit for {missed}"
    for item, number in zip(review.all(), missed):
        assert item.inner_text().startswith(f"Question {number} ")
        if quiz.chapter_file(number) is not None:
            href = item.locator("a").get_attribute("href")
            assert href == f"{quiz.chapter_file(number).relative_to(ROOT).with_suffix('')}" \
                ".html#short-answer", href  # fmt: skip
    page.screenshot(path=screenshot_path("quiz", f"self_check_total_{total}"), full_page=True)
    assert not console.unexpected, f"quiz page: console errors: {console.unexpected}"


def test_every_chapter_page_of_the_book_carries_its_quiz(open_url, book_site, built_book):
    """Each chapter ends with `show_quiz("chNN")`: on its book page, without a kernel, every
    question gives the feedback that explains it and links the section behind it."""
    for n in range(1, 13):
        target = quiz.chapter_file(n)
        assert target is not None, f"chapter {n} is not in _toc.yml"
        page_file = built_book["html"] / "chapters" / f"{target.stem}.html"
        assert "llmlab-link" in page_file.read_text(), (
            f"{target.stem}: the built page has no quiz (does the chapter end with "
            f'show_quiz("ch{n:02d}")?)'
        )
        page, console = open_url(book_site, f"chapters/{target.stem}.html")
        answer_every_question(page, quiz.load_quiz(f"ch{n:02d}")["questions"], target.stem)
        assert not console.unexpected, f"{target.stem}: console errors: {console.unexpected}"

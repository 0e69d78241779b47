"""The course's quizzes, rendered in a notebook cell: `show_quiz("ch05")` at the end of a chapter,
`show_quiz("self_check")` (the twelve open questions) and `show_quiz("misconceptions")` on the
quiz page.

Questions live in `llmlab/quizzes/*.json`, never in page code. Checkable questions (multiple choice
and numeric) are rendered by `jupyterquiz`, whose output is JavaScript that runs in the built HTML
book without a kernel and in JupyterLab. The twelve open questions are self-marked: the reader
thinks of an answer, reveals the course's short answer and marks it right, partly right or wrong;
the page adds the marks and shows the rubric's verdict with links to the chapters behind the missed
questions. jupyterquiz has no self-marked question type and no running total, so that part is a
small piece of HTML and JavaScript written here.

Links: a question names the chapter (by number) and the section that explains it. The chapter's
file is found through _toc.yml, so a chapter not yet in the book gets no link. Links are written for the
HTML book (`.html`); in JupyterLab a click handler opens the notebook (`.ipynb`) instead, or
scrolls to the section when it is on the same page.
"""

import html
import json
import os
import re
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUIZZES = Path(__file__).resolve().parent / "quizzes"
CHAPTERS = ROOT / "chapters"
QUESTION_TYPES = ("multiple_choice", "many_choice", "numeric")


def quiz_names() -> list[str]:
    """The quizzes that exist: "ch01" ... "ch12", "misconceptions" and "self_check"."""
    return sorted(p.stem for p in QUIZZES.glob("*.json"))


def load_quiz(name: str) -> dict:
    """The quiz data file `llmlab/quizzes/<name>.json`, validated."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str such as 'ch05', got {type(name).__name__}")
    names = quiz_names()
    if name not in names:
        raise ValueError(f"no quiz named {name!r}; valid names: {', '.join(names)}")
    data = json.loads((QUIZZES / f"{name}.json").read_text(encoding="utf-8"))
    problems = validate(data, name)
    if problems:
        raise ValueError(f"quiz {name!r} is malformed: " + "; ".join(problems))
    return data


def validate(data: dict, name: str) -> list[str]:
    """What is wrong with a quiz's data (empty when nothing is)."""
    problems = []
    checkable = [] if name == "self_check" else data.get("questions", [])
    if not checkable and name != "self_check":
        problems.append("no checkable questions")
    for i, q in enumerate(checkable, 1):
        where = f"question {i}"
        if q.get("type") not in QUESTION_TYPES:
            problems.append(f"{where}: type {q.get('type')!r} is not one of {QUESTION_TYPES}")
        if not q.get("question"):
            problems.append(f"{where}: no question text")
        explained = q.get("explained_in", {})
        if not isinstance(explained.get("chapter"), int) or not 1 <= explained["chapter"] <= 12:
            problems.append(f"{where}: explained_in.chapter must be a chapter number 1-12")
        if not explained.get("section") or not explained.get("label"):
            problems.append(f"{where}: explained_in needs a section id and a label")
        answers = q.get("answers", [])
        if not any(a.get("correct") for a in answers):
            problems.append(f"{where}: no correct answer")
        without_feedback = [a for a in answers if not a.get("feedback")]
        if without_feedback:
            problems.append(f"{where}: {len(without_feedback)} answer(s) without feedback")
        if "precision" in q and (not isinstance(q["precision"], int) or q["precision"] < 1):
            # jupyterquiz calls toPrecision(precision), which throws below 1 significant digit
            problems.append(f"{where}: precision must be an int >= 1 (significant digits)")
        if q.get("type") == "numeric" and not any(a.get("type") == "default" for a in answers):
            problems.append(f"{where}: a numeric question needs a default feedback")
        if q.get("type") != "numeric" and not any(not a.get("correct") for a in answers):
            problems.append(f"{where}: no wrong answer to explain")
    if name == "self_check":
        numbers = [q.get("chapter") for q in data.get("questions", [])]
        if numbers != list(range(1, 13)):
            problems.append(f"the open questions must be chapters 1-12 in order, got {numbers}")
        if any(not q.get("short_answer") for q in data.get("questions", [])):
            problems.append("an open question without a short answer")
        if sorted(r["min"] for r in data.get("rubric", [])) != [0, 4, 7, 10]:
            problems.append("the rubric must start its bands at 0, 4, 7 and 10 marks")
    return problems


# Numeric answers are computed from the course's engine where it can: `computed` in a question
# names one of these, and the tests check that the answer marked correct agrees with it.
def _weight_bytes_time_ms(model, bandwidth_bytes_per_s, dtype="fp16"):
    from llmlab.shapes import weight_bytes

    return weight_bytes(model, dtype) / bandwidth_bytes_per_s * 1e3


def _end_to_end_ms(ttft_ms, tpot_ms, n_tokens):
    return ttft_ms + tpot_ms * (n_tokens - 1)


def _kv_shrink_factor(model):
    from llmlab.shapes import get_shape

    shape = get_shape(model)
    return shape.n_head // shape.n_kv_head


def _computations():
    from llmlab.shapes import kv_cache_bytes_for, sequences_that_fit

    return {
        "kv_cache_bytes_for": kv_cache_bytes_for,
        "sequences_that_fit": sequences_that_fit,
        "weight_bytes_time_ms": _weight_bytes_time_ms,
        "end_to_end_ms": _end_to_end_ms,
        "kv_shrink_factor": _kv_shrink_factor,
    }


def computed_value(question: dict) -> float | None:
    """The value a numeric question's `computed` recipe gives, or None without one."""
    recipe = question.get("computed")
    if recipe is None:
        return None
    functions = _computations()
    if recipe.get("function") not in functions:
        raise ValueError(
            f"computed.function {recipe.get('function')!r} is not one of {sorted(functions)}"
        )
    return functions[recipe["function"]](*recipe.get("args", []), **recipe.get("kwargs", {}))


def chapter_file(number: int) -> Path | None:
    """chapters/NN_*.ipynb for chapter `number`, or None while it is not in the book yet (a
    notebook on disk but not in _toc.yml has no page to link to)."""
    if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= 12:
        raise ValueError(f"number must be a chapter number 1-12, got {number!r}")
    toc = (ROOT / "_toc.yml").read_text(encoding="utf-8")
    listed = re.findall(rf"^\s*-?\s*file:\s*chapters/({number:02d}_\w+)\s*$", toc, re.MULTILINE)
    found = [CHAPTERS / f"{stem}.ipynb" for stem in listed if (CHAPTERS / f"{stem}.ipynb").exists()]
    return found[0] if found else None


def _link(number: int, section: str, label: str, here: Path) -> str:
    """An <a> to a chapter's section, relative to the folder the notebook runs in (`here`)."""
    target = chapter_file(number)
    if target is None:
        return f"(chapter {number} is being written)"
    same_page = here.resolve() == target.parent.resolve() and _showing_chapter() == number
    stem = os.path.relpath(target.with_suffix(""), here).replace(os.sep, "/")
    href = f"#{section}" if same_page else f"{stem}.html#{section}"
    title = _SECTION_TITLES.get(section, section.replace("-", " ").capitalize())
    return (
        f'<a class="llmlab-link" href="{html.escape(href)}" data-notebook="{html.escape(stem)}"'
        f' data-section-title="{html.escape(title)}">{html.escape(label)}</a>'
    )


_SECTION_TITLES = {
    "short-answer": "Short answer",
    "see-it": "See it",
    "more-precisely": "More precisely",
    "key-takeaways": "Key takeaways",
}
_showing = {"chapter": None}


def _showing_chapter():
    return _showing["chapter"]


# In JupyterLab the page is /lab/tree/<path>.ipynb: a click on a course link opens the notebook
# (or scrolls to a heading on the same notebook) instead of the book's .html page.
LINK_HANDLER_JS = """
if (!window.llmlabLinks) {
  window.llmlabLinks = true;
  document.addEventListener('click', (event) => {
    const a = event.target.closest && event.target.closest('a.llmlab-link');
    if (!a || !document.querySelector('.jp-Notebook')) return;
    const href = a.getAttribute('href');
    if (href.startsWith('#')) {
      event.preventDefault();
      const title = a.dataset.sectionTitle;
      const panel = a.closest('.jp-Notebook') || document;
      const heading = Array.from(panel.querySelectorAll('h1, h2, h3'))
        .find(h => h.textContent.replace(/\\u00b6/g, '').trim() === title);
      if (heading) heading.scrollIntoView();
    } else {
      a.setAttribute('href', a.dataset.notebook + '.ipynb');
    }
  }, true);
}
"""


def _with_links(questions: list[dict], here: Path) -> list[dict]:
    """jupyterquiz's question dicts, each answer's feedback followed by the explaining section."""
    out = []
    for q in questions:
        where = q["explained_in"]
        link = _link(where["chapter"], where["section"], where["label"], here)
        converted = {k: v for k, v in q.items() if k not in ("explained_in", "computed")}
        converted["answers"] = [
            dict(a, feedback=f"{a['feedback']} See {link}.") for a in q["answers"]
        ]
        out.append(converted)
    return out


def show_quiz(name: str, here: str | os.PathLike | None = None) -> None:
    """Display a quiz in the notebook: "ch01" ... "ch12" (a chapter's checkable questions),
    "misconceptions" (checkable questions on the quiz's own mistakes) or "self_check" (the
    twelve open questions, self-marked, with a total and the rubric's verdict).

    `here` is the folder of the notebook showing the quiz (default: the kernel's working
    directory, which is the notebook's folder in JupyterLab, Binder and the book build).
    """
    from IPython.display import HTML, Javascript, display
    from jupyterquiz import display_quiz

    data = load_quiz(name)
    here = Path(os.getcwd() if here is None else here)
    match = re.fullmatch(r"ch(\d\d)", name)
    _showing["chapter"] = int(match[1]) if match else None
    try:
        display(Javascript(LINK_HANDLER_JS))
        if name == "self_check":
            display(HTML(self_check_html(data, here)))
        else:
            _display_guarded(display_quiz, _with_links(data["questions"], here))
    finally:
        _showing["chapter"] = None


# jupyterquiz typesets its questions whenever a global `MathJax` exists, and reads
# `MathJax.version` to choose how. On a book page whose MathJax has not loaded (still loading, or
# read offline) `MathJax` is only Sphinx's configuration object, without a version, and the quiz
# script throws. Guarded, it skips typesetting then; MathJax typesets the whole page, quiz
# included, once it loads.
_MATHJAX_TEST = re.compile(r"typeof MathJax\s*!==?\s*'undefined'")
_MATHJAX_GUARDED = "typeof MathJax !== 'undefined' && MathJax.version"


def guard_mathjax(script: str) -> str:
    """jupyterquiz's script with every MathJax test also requiring a loaded MathJax."""
    return _MATHJAX_TEST.sub(_MATHJAX_GUARDED, script)


# jupyterquiz's markup has no labels, no live feedback and colours below WCAG AA contrast;
# _static/quiz_a11y.js and .css mend that (see them). The book loads both on every page; the
# notebook output carries them too, for JupyterLab, where the book's files are not loaded.
QUIZ_A11Y = ROOT / "_static" / "quiz_a11y"
_QUIZ_DIV = re.compile(r'<div id="([A-Za-z]+)" data-shufflequestions=')


def quiz_a11y_files() -> tuple[str, str]:
    """The quizzes' accessibility layer: (CSS, JavaScript) from _static/quiz_a11y.*."""
    css, js = QUIZ_A11Y.with_suffix(".css"), QUIZ_A11Y.with_suffix(".js")
    for path in (css, js):
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: the quizzes need it (see llmlab/quiz.py)")
    return css.read_text(encoding="utf-8"), js.read_text(encoding="utf-8")


def _display_guarded(display_quiz, questions):
    """Run jupyterquiz's display_quiz, then show its outputs with guard_mathjax applied and the
    accessibility layer (quiz_a11y_files) added: its CSS to the HTML, its script to the
    JavaScript, which then enhances this quiz once jupyterquiz has drawn it."""
    from IPython.display import publish_display_data
    from IPython.utils.capture import capture_output

    css, js = quiz_a11y_files()
    with capture_output(stdout=False, stderr=False) as captured:
        display_quiz(questions, shuffle_answers=False)
    div_id = None
    for output in captured.outputs:
        data = dict(output.data)
        if "text/html" in data and (found := _QUIZ_DIV.search(data["text/html"])):
            div_id = found[1]
            data["text/html"] += f"<style>\n{css}</style>"
        if "application/javascript" in data:
            if div_id is None:
                raise RuntimeError("jupyterquiz's script came before its container div")
            data["application/javascript"] = (
                guard_mathjax(data["application/javascript"])
                + f"\n{js}\nwindow.llmlabQuizA11yWhenDrawn({json.dumps(div_id)});\n"
            )
        publish_display_data(data, output.metadata)


def self_check_html(data: dict, here: Path) -> str:
    """The twelve open questions with reveal buttons, marks, a running total and the verdict."""
    uid = "llmlab-sc-" + uuid.uuid4().hex[:8]
    marks = data["marks"]
    items = []
    for i, q in enumerate(data["questions"], 1):
        link = _link(q["chapter"], "short-answer", f"Chapter {q['chapter']}", here)
        choices = "".join(
            f'<label><input type="radio" name="{uid}-q{i}" value="{marks[key]}"'
            f' data-mark="{key}"> {text}</label> '
            for key, text in (("right", "Right"), ("partly", "Partly right"), ("wrong", "Wrong"))
        )
        items.append(
            f'<li class="llmlab-open" data-question="{i}" data-link="{html.escape(link)}">'
            f"<p><strong>{html.escape(q['question'])}</strong></p>"
            "<details><summary>Show the course's short answer</summary>"
            f"<p>{html.escape(q['short_answer'])} Read more: {link}.</p></details>"
            f'<p class="llmlab-marks">Your answer was: {choices}</p></li>'
        )
    rubric = json.dumps(sorted(data["rubric"], key=lambda r: -r["min"]))
    return f"""
<div id="{uid}" class="llmlab-self-check" data-total-questions="{len(items)}">
<style>
#{uid} li.llmlab-open {{ margin-bottom: 1em; }}
#{uid} details summary {{ cursor: pointer; color: #0072B2; }}
#{uid} .llmlab-marks label {{ margin-right: 1em; white-space: nowrap; }}
#{uid} .llmlab-result {{ border: 2px solid #0072B2; border-radius: 8px; padding: 0.6em 1em; }}
</style>
<ol>{"".join(items)}</ol>
<div class="llmlab-result" aria-live="polite">
<p class="llmlab-total"></p><p class="llmlab-verdict"></p><div class="llmlab-review"></div>
</div>
</div>
<script>
(function () {{
  const root = document.getElementById("{uid}");
  const rubric = {rubric};
  const n = Number(root.dataset.totalQuestions);
  function update() {{
    let total = 0, marked = 0;
    const review = [];
    root.querySelectorAll("li.llmlab-open").forEach(li => {{
      const chosen = li.querySelector("input:checked");
      if (!chosen) return;
      marked += 1;
      total += Number(chosen.value);
      if (chosen.dataset.mark !== "right") {{
        review.push("<li>Question " + li.dataset.question + " (" + chosen.parentElement
          .textContent.trim().toLowerCase() + "): " + li.dataset.link + "</li>");
      }}
    }});
    root.querySelector(".llmlab-total").textContent =
      "Your total: " + total + " of " + n + " (" + marked + " of " + n + " marked)";
    const verdict = root.querySelector(".llmlab-verdict");
    if (marked < n) {{
      verdict.textContent = "Mark all " + n + " questions to see the verdict (" +
        (n - marked) + " left).";
    }} else {{
      const band = rubric.find(r => total >= r.min);
      verdict.textContent = band.verdict;
    }}
    root.querySelector(".llmlab-review").innerHTML = review.length
      ? "<p>Chapters to revisit:</p><ul>" + review.join("") + "</ul>" : "";
  }}
  root.addEventListener("change", update);
  update();
}})();
</script>
"""

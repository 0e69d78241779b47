"""The notebooks in JupyterLab, in a real browser, as a reader runs them.

JupyterLab is started from the repository root in the course's environment (127.0.0.1, a free
port, a random token, fresh settings/workspace/runtime folders, autosave off so no output is ever
written into the repository). Chromium (driven by Playwright) opens every notebook of _toc.yml,
runs all cells from the Run menu and waits until the kernel has executed every cell. Then: no cell
shows an error, every figure loaded; chapter 1's attention explorer redraws its heatmap when the
"head" slider moves; an exercise's checks say TODO while the stub is in place; the prose shows
every glued number and citation filled in (no glue key, no "Citation Not Found", no {eval}
expression left unevaluated or failed: see llmlab/notebook.py). A screenshot of each notebook
goes to _build/screenshots/lab_*.png.

Without Chromium these tests skip (fail when CI is set); see tests/browser_tools.py.
"""

import html
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from browser_tools import free_port, screenshot_path
from notebook_tools import ROOT, toc_files

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("jupyterlab")]

NOTEBOOKS = [f"{name}.ipynb" for name in toc_files() if (ROOT / f"{name}.ipynb").exists()]
WIDGET_NOTEBOOK = "chapters/01_qkv.ipynb"
RUN_TIMEOUT_S = (
    300  # one notebook, all cells: under 30 s each alone on 2 cores, more when CI runs in parallel
)

# Lab settings for a clean, reproducible session: never save the executed notebooks into the
# repository, render every cell (no windowing) so that all outputs are in the page, no news popup.
LAB_SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {
        "windowingMode": "none",
        "autoStartDefaultKernel": True,  # no "Select Kernel" dialog when the server is slow to answer
    },
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab on the repository: yields (base URL, token); stopped at the end, whatever happens."""
    state = tmp_path_factory.mktemp("jupyter")
    for relative, values in LAB_SETTINGS.items():
        path = state / "settings" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    port, token = free_port(), secrets.token_hex(16)
    env = dict(
        os.environ,
        JUPYTER_CONFIG_DIR=str(state / "config"),
        JUPYTER_RUNTIME_DIR=str(state / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(state / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(state / "workspaces"),
        PYTHONUNBUFFERED="1",
    )
    # Idle OpenMP threads sleep instead of spinning: with other torch processes on the same cores
    # (pytest -n 2), spinning threads slowed a training cell 18x in our runs.
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    command = [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--port-retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={ROOT}",
        f"--FileCheckpoints.checkpoint_dir={state / 'checkpoints'}",  # no .ipynb_checkpoints in the repo
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",  # no extension listing fetched from PyPI
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # containers and CI run as root
    log = (state / "lab.log").open("w")
    server = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 90
        while True:
            if server.poll() is not None:
                pytest.fail(
                    f"JupyterLab exited with {server.returncode}:\n{(state / 'lab.log').read_text()[-3000:]}"
                )
            try:
                with urllib.request.urlopen(
                    f"{base}api/status?token={token}", timeout=2
                ) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"JupyterLab did not answer in 90 s:\n{(state / 'lab.log').read_text()[-3000:]}"
                )
            time.sleep(0.25)
        yield base, token
    finally:
        _stop(server)
        log.close()


def _stop(server):
    """SIGTERM JupyterLab (it shuts its kernels down), then SIGKILL its process group if it lingers."""
    if server.poll() is None:
        server.terminate()  # Jupyter shuts its kernels down and exits on SIGTERM
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(server.pid, signal.SIGKILL)  # kernels left behind, if any (their own session)
    except ProcessLookupError:
        pass
    server.wait(timeout=10)


# The open notebook (JupyterLab keeps other panels in the page, hidden).
ACTIVE = ".jp-NotebookPanel:not(.lm-mod-hidden)"

# The notebook's run state: each code cell's prompt ("[3]:", "[*]:", "[ ]:"), the kernel status,
# and whether a cell shows a traceback (Run All stops at a failing cell).
RUN_STATE_JS = """(panel) => ({
    prompts: Array.from(document.querySelectorAll(`${panel} .jp-CodeCell .jp-InputArea-prompt`))
        .map(p => p.textContent.trim()),
    kernel: document.querySelector(`${panel} .jp-Notebook-ExecutionIndicator`)?.getAttribute('data-status'),
    kernelName: document.querySelector(`${panel} .jp-Toolbar-kernelName`)?.innerText.trim(),
    failed: Array.from(document.querySelectorAll(`${panel} [data-mime-type="application/vnd.jupyter.stderr"]`))
        .some(o => o.innerText.includes('Traceback')),
})"""


def kernel_ready(state):
    return state["kernel"] == "idle" and state["kernelName"] == "Python 3 (ipykernel)"


def all_cells_ran(state):
    executed = [re.fullmatch(r"\[\d+\]:", p) is not None for p in state["prompts"]]
    running = any("*" in p for p in state["prompts"])
    return (
        state["kernel"] == "idle"
        and not running
        and bool(executed)
        and (all(executed) or state["failed"])
    )


OUTPUTS_JS = """(panel) => ({
    stderr: Array.from(document.querySelectorAll(`${panel} [data-mime-type="application/vnd.jupyter.stderr"]`))
        .map(o => o.innerText),
    text: Array.from(document.querySelectorAll(`${panel} .jp-OutputArea-output`)).map(o => o.innerText).join('\\n'),
    images: Array.from(document.querySelectorAll(`${panel} .jp-OutputArea-output img`))
        .map(img => ({loaded: img.complete && img.naturalWidth > 0, src: img.src.slice(0, 60)})),
})"""


def wait_until(page, condition, timeout_s, message):
    """Poll the notebook's run state until condition(state) holds; fail with the last state."""
    deadline = time.monotonic() + timeout_s
    while not (
        handle_dialog(page, message) or condition(state := page.evaluate(RUN_STATE_JS, ACTIVE))
    ):
        if time.monotonic() > deadline:
            pytest.fail(f"{message} in {timeout_s} s; last state: {state}")
        page.wait_for_timeout(250)


def shut_down_kernels(lab):
    """End every notebook session (and its kernel) so the next notebook starts alone."""
    base, token = lab
    headers = {"Authorization": f"token {token}"}
    with urllib.request.urlopen(
        urllib.request.Request(f"{base}api/sessions", headers=headers)
    ) as r:
        sessions = json.load(r)
    for session in sessions:
        request = urllib.request.Request(
            f"{base}api/sessions/{session['id']}", headers=headers, method="DELETE"
        )
        urllib.request.urlopen(request).close()


def handle_dialog(page, context):
    """A modal dialog (kernel trouble, file conflict) blocks the reader: fail with its text.

    The one exception is "Select Kernel" with the notebook's own kernel preselected, which a
    reader accepts with Enter (JupyterLab may ask when its kernel list arrives late).
    """
    dialog = page.locator(".jp-Dialog")
    if not (dialog.count() and dialog.first.is_visible()):
        return
    text = dialog.first.inner_text()
    if text.startswith("Select Kernel") and "Python 3 (ipykernel)" in text:
        dialog.first.locator(".jp-mod-accept").click()
        dialog.first.wait_for(state="detached", timeout=10_000)
        return
    pytest.fail(f"{context}: JupyterLab shows a dialog: {text!r}")


def run_all_cells(browser, lab, notebook, before_run=None):
    """Open a notebook in JupyterLab, run all cells from the Run menu, wait; returns the page.

    before_run(page), if given, looks at the notebook as opened, before anything has run.
    """
    base, token = lab
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(f"{base}lab/tree/{notebook}?reset&token={token}", wait_until="domcontentloaded")
    page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell").first.wait_for(timeout=60_000)
    wait_until(page, kernel_ready, 90, f"{notebook}: the kernel did not start")
    if before_run is not None:
        before_run(page)
    for attempt in range(3):  # the first click can land before the notebook takes commands
        page.locator("#jp-menu-panel .lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu .lm-Menu-itemLabel").get_by_text("Run All Cells", exact=True).click()
        try:
            wait_until(page, lambda state: any(p != "[ ]:" for p in state["prompts"]), 10, notebook)
            break
        except pytest.fail.Exception:
            if attempt == 2:
                raise
    wait_until(page, all_cells_ran, RUN_TIMEOUT_S, f"{notebook}: Run All Cells did not finish")
    return context, page


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_notebook_runs_in_jupyterlab(browser, lab, notebook):
    before = (ROOT / notebook).read_bytes()
    context, page = run_all_cells(browser, lab, notebook)
    try:
        outputs = page.evaluate(OUTPUTS_JS, ACTIVE)
        # The end of the run: an exercise's check lines, a chapter's last cell.
        outputs_shown = page.locator(f"{ACTIVE} .jp-OutputArea-output")
        checks = outputs_shown.filter(has_text="TODO  ")
        (
            checks if checks.count() else page.locator(f"{ACTIVE} .jp-Cell")
        ).last.scroll_into_view_if_needed()
        page.screenshot(path=screenshot_path("lab", notebook.removesuffix(".ipynb")))
        errors = [s for s in outputs["stderr"] if "Traceback" in s or "Error" in s.splitlines()[0]]
        assert not errors, (
            f"{notebook}: error output in JupyterLab:\n" + "\n---\n".join(errors)[-3000:]
        )
        broken = [i["src"] for i in outputs["images"] if not i["loaded"]]
        assert not broken, f"{notebook}: figures that did not render: {broken}"
        if outputs["stderr"]:
            print(f"{notebook}: stderr shown to the reader:\n" + "\n".join(outputs["stderr"]))

        if notebook.startswith("exercises/"):
            lines = [
                line
                for line in outputs["text"].splitlines()
                if line[:6] in ("PASS  ", "FAIL  ", "TODO  ")
            ]
            assert lines, f"{notebook}: no check lines in the outputs"
            assert all(line.startswith("TODO") for line in lines), (
                f"{notebook}: the stub should give TODO: {lines}"
            )
        elif notebook.startswith("chapters/"):
            assert outputs["images"], f"{notebook}: a chapter with no figure"
            check_chapter_quiz(page, notebook)

        unresolved = wait_for_prose(page)
        assert not unresolved, (
            f"{notebook}: prose not filled in after Run All (tools/prose_refs.py converts "
            f"{{glue:text}} and {{cite}}; see CONTRIBUTING.md): {unresolved[:5]}"
        )

        raw = raw_myst(page.evaluate(MARKDOWN_TEXT_JS, ACTIVE))
        assert not raw, (
            f"{notebook}: MyST shown raw in JupyterLab's rendered markdown (is jupyterlab-myst "
            f"installed and enabled?): {raw[:5]}"
        )

        if notebook == WIDGET_NOTEBOOK:
            check_explorer_redraws(page, notebook)
    finally:
        context.close()
        shut_down_kernels(lab)
    assert (ROOT / notebook).read_bytes() == before, (
        f"{notebook} was modified on disk by the JupyterLab session"
    )


# Rendered markdown cells: what a reader sees. MyST roles ({cite}`key`, {glue:text}`name:.1f`)
# must be rendered by jupyterlab-myst, never shown as typed. Code blocks are left out.
MARKDOWN_TEXT_JS = """(panel) => Array.from(
    document.querySelectorAll(`${panel} .jp-MarkdownCell .jp-InputArea > :not(.jp-InputPrompt)`))
  .map(el => {
    const copy = el.cloneNode(true);
    copy.querySelectorAll('pre, .cm-editor, mjx-container, .MathJax, .katex, math')
      .forEach(c => c.remove());
    // A detached copy's innerText runs blocks together ("vectors:" + "a query"): end each
    // block with a space, so that no two words of different blocks look like "key:format".
    copy.querySelectorAll('p, li, h1, h2, h3, h4, h5, h6, td, th, dt, dd, blockquote')
      .forEach(c => c.append(' '));
    return copy.innerText;
  }).join('\\n')"""
# As typed ({cite}`key`) or as plain CommonMark shows it, the backticks turned into code ({cite}key).
RAW_MYST = re.compile(r"(?<![\\\w])\{[a-z][\w:+-]*\}(?=[`\w])")


def raw_myst(text: str) -> list[str]:
    """MyST role or directive syntax left as text (with some context)."""
    return [text[max(0, m.start() - 30) : m.end() + 10] for m in RAW_MYST.finditer(text)]


def test_raw_myst_is_recognised():
    assert raw_myst("within 3.2e-07, (Vaswani et al., 2017); {} or {a} b; \\sqrt{d_k}x") == []
    for raw in ["{cite}`vaswani2017attention`", "{glue:text}`sdpa_diff:.1e`", "{glue}`x`",
                "{cite:p}`a,b`", "{ref}`ex-attention`", "{cite}vaswani2017attention",
                "{glue:text}std_1024:.0f"]:  # fmt: skip
        assert raw_myst(f"text {raw} text"), raw


# What the prose can show in place of a number or a citation, and the checks that find it:
# - a {glue:text} role: its key and format ("sdpa_diff:.1e"; glue values live in the kernel's
#   outputs, which jupyterlab-myst does not read);
# - a {cite} role: its key, flagged "Citation Not Found" (jupyterlab-myst does not read
#   references.bib);
# - an {eval} expression (llmlab/notebook.py) not evaluated yet: the expression as code
#   ('glued("sdpa_diff:.1e")'), or its error when evaluating failed ("NotGluedError: ...").
PROSE_JS = """(panel) => {
  const cells = `${panel} .jp-MarkdownCell .jp-InputArea > :not(.jp-InputPrompt)`;
  const all = (selector) => Array.from(document.querySelectorAll(selector));
  return {
    citations: all(`${cells} [title="Citation Not Found"]`).map(e => e.innerText.trim()),
    pending: all(`${cells} code`).map(e => e.innerText.trim())
      .filter(t => /^(glued|cite)\\(/.test(t)),
    errors: all(`${cells} [data-mime-type="application/vnd.jupyter.stderr"]`)
      .map(e => e.innerText.trim()),
  };
}"""
GLUE_SPEC = re.compile(r"\b[a-z_][a-z0-9_]*:\.?\d*[a-z%]\b")
PROSE_WAIT_S = 60  # jupyterlab-myst evaluates a markdown cell's expressions as Run All reaches it


def prose_problems(page) -> list[str]:
    """What the rendered markdown shows in place of numbers and citations (empty: none)."""
    found = page.evaluate(PROSE_JS, ACTIVE)
    text = page.evaluate(MARKDOWN_TEXT_JS, ACTIVE)
    for expression in found["pending"]:  # 'glued("sdpa_diff:.1e")' is reported as itself
        text = text.replace(expression, "")
    glue_keys = GLUE_SPEC.findall(text)
    return (
        [f"glue key shown: {k}" for k in glue_keys]
        + [f"citation not found: {c}" for c in found["citations"]]
        + [f"not evaluated: {p}" for p in found["pending"]]
        + [f"evaluation failed: {e}" for e in found["errors"]]
    )


def wait_for_prose(page, timeout_s=PROSE_WAIT_S) -> list[str]:
    """After Run All: wait until the prose shows no placeholder; returns what is left."""
    deadline = time.monotonic() + timeout_s
    while (problems := prose_problems(page)) and time.monotonic() < deadline:
        page.wait_for_timeout(500)
    return problems


def test_glue_keys_are_recognised():
    assert GLUE_SPEC.findall("within 6.0e-08, 32 heads, 1:1, (Vaswani et al., 2017)") == []
    assert GLUE_SPEC.findall("within sdpa_diff:.1e and std_1024:.0f%") == [
        "sdpa_diff:.1e",
        "std_1024:.0f",
    ]


def test_myst_references_resolve_in_jupyterlab(browser, lab):
    """Chapter 1 as a reader sees it. Opened: the prose is there, each number and citation a
    placeholder (the expression), and the References list is shown (so the check above does
    see placeholders). After Run All: every number and citation filled in, as in the book."""
    import nbformat

    from llmlab.notebook import EVAL_ROLE, parse_expression, references_markdown

    nb = nbformat.read(ROOT / WIDGET_NOTEBOOK, as_version=4)
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    expressions = {m["text"] for m in EVAL_ROLE.finditer(markdown)}
    assert expressions, f"{WIDGET_NOTEBOOK}: no {{eval}} roles (run tools/prose_refs.py)"
    roles = [parse_expression(e) for e in expressions]
    cited = {key for role, text in roles if role == "cite" for key in text.split(",")}
    seen = {}

    def before_run(page):
        page.locator(f"{ACTIVE} .jp-MarkdownCell code").first.wait_for(timeout=30_000)
        seen["problems"] = prose_problems(page)
        seen["text"] = page.evaluate(MARKDOWN_TEXT_JS, ACTIVE)

    context, page = run_all_cells(browser, lab, WIDGET_NOTEBOOK, before_run=before_run)
    try:
        # Before running: prose readable, placeholders where the numbers go, nothing else wrong.
        pending = {p.removeprefix("not evaluated: ") for p in seen["problems"]}
        assert pending == expressions, (
            f"before Run All, expected every expression as a placeholder: {seen['problems']}"
        )
        assert "Attention lets every position" in seen["text"]
        references = page.locator(f"{ACTIVE} .jp-MarkdownCell").filter(has_text="Attention is all")
        assert references.count() == 1, "the References list is not shown in JupyterLab"
        listed = references_markdown(cited).count("\n- ") + 1
        assert references.first.locator("li").count() == listed == len(cited)

        problems = wait_for_prose(page)
        assert not problems, f"after Run All: {problems[:5]}"
        text = page.evaluate(MARKDOWN_TEXT_JS, ACTIVE)
        assert re.search(r"agree to within \d\.\de-\d\d, which is", text), text[:2000]
        assert "never again [Vaswani et al., 2017]." in text
        page.screenshot(path=screenshot_path("lab", "01_qkv_prose"), full_page=False)
    finally:
        context.close()
        shut_down_kernels(lab)


def test_quiz_page_in_jupyterlab(browser, lab):
    """The quiz page in JupyterLab: twelve open questions marked to a verdict, and a checkable
    question answered wrongly, then rightly, with its feedback."""
    from llmlab import quiz

    context, page = run_all_cells(browser, lab, "quiz.ipynb")
    try:
        root = page.locator(f"{ACTIVE} .llmlab-self-check")
        root.wait_for(state="visible", timeout=30_000)
        questions = root.locator("li.llmlab-open")
        assert questions.count() == 12
        for i in range(12):
            mark = "right" if i < 5 else "wrong"
            questions.nth(i).locator(f'input[data-mark="{mark}"]').check()
        assert root.locator(".llmlab-total").inner_text().startswith("Your total: 5 of 12")
        rubric = quiz.load_quiz("self_check")["rubric"]
        expected = next(r for r in sorted(rubric, key=lambda r: -r["min"]) if 5 >= r["min"])
        assert root.locator(".llmlab-verdict").inner_text() == expected["verdict"]

        first = quiz.load_quiz("misconceptions")["questions"][0]
        box = page.locator(f"{ACTIVE} .Quiz").first
        box.scroll_into_view_if_needed()
        feedback = box.locator(".Feedback")
        for answer in sorted(first["answers"], key=lambda a: a["correct"]):  # wrong first
            box.locator("label.MCButton").nth(first["answers"].index(answer)).click()
            feedback.wait_for(state="visible", timeout=5000)
            verdict = "correct" if answer["correct"] else "incorrect"
            assert verdict in feedback.get_attribute("class").split()
            assert answer["feedback"][:50] in feedback.inner_text()
        page.screenshot(path=screenshot_path("lab", "quiz_marked"), full_page=False)
    finally:
        context.close()
        shut_down_kernels(lab)


def check_chapter_quiz(page, notebook):
    """The chapter's closing quiz shows every question; its first answers a wrong choice with
    the feedback that explains it."""
    from llmlab import quiz

    questions = quiz.load_quiz("ch" + notebook.split("/")[1][:2])["questions"]
    boxes = page.locator(f"{ACTIVE} .Quiz")
    boxes.first.wait_for(state="attached", timeout=30_000)
    assert boxes.count() == len(questions), f"{notebook}: {boxes.count()} quiz questions shown"
    first, box = questions[0], boxes.first
    if first["type"] == "numeric":
        return  # typed answers are exercised on the quiz page and in the book
    wrong = next(a for a in first["answers"] if not a["correct"])
    box.scroll_into_view_if_needed()
    box.locator("label.MCButton").nth(first["answers"].index(wrong)).click()
    feedback = box.locator(".Feedback")
    feedback.wait_for(state="visible", timeout=5000)
    assert "incorrect" in feedback.get_attribute("class").split(), f"{notebook}: quiz feedback"
    assert html.unescape(wrong["feedback"])[:50] in feedback.inner_text(), f"{notebook}: feedback"


def check_explorer_redraws(page, notebook):
    """Move the attention explorer's "head" slider with the keyboard: the heatmap must change."""
    explorer = (
        page.locator(".jp-OutputArea-output .widget-vbox")
        .filter(has=page.locator(".widget-slider"))
        .first
    )
    explorer.scroll_into_view_if_needed()
    head = explorer.locator(".widget-slider").filter(has_text="head").first
    head.wait_for(state="visible", timeout=30_000)
    image = explorer.locator("img").first
    image.wait_for(state="visible", timeout=30_000)
    before = image.get_attribute("src")
    readout_before = head.locator(".widget-readout").inner_text()
    head.locator(".noUi-handle").first.focus()
    page.keyboard.press("ArrowRight")
    page.wait_for_function(
        "([el, old]) => { const img = el.querySelector('img');"
        " return img && img.src !== old && img.naturalWidth > 0; }",
        arg=[explorer.element_handle(), before],
        timeout=30_000,
    )
    readout_after = head.locator(".widget-readout").inner_text()
    assert readout_after != readout_before, (
        f"the head slider did not move ({readout_before} -> {readout_after})"
    )
    explorer.screenshot(path=screenshot_path("lab", notebook.removesuffix(".ipynb") + "_explorer"))


def test_chapter_1_slider_and_quiz_by_keyboard(browser, lab):
    """The keyboard alone in JupyterLab, on chapter 1 after Run All: Tab goes from the attention
    explorer's "layer" slider (past its readout) to its "head" slider, which the arrow keys move
    (the heatmap redraws); Tab reaches an answer of the closing quiz, Space and Enter choose (the notebook
    does not take Enter as "edit this cell"), and the feedback is a live region."""
    from llmlab import quiz

    context, page = run_all_cells(browser, lab, WIDGET_NOTEBOOK)
    try:
        explorer = (
            page.locator(f"{ACTIVE} .jp-OutputArea-output .widget-vbox")
            .filter(has=page.locator(".widget-slider"))
            .first
        )
        explorer.scroll_into_view_if_needed()
        sliders = explorer.locator(".widget-slider")
        layer = sliders.filter(has_text="layer").first.locator(".noUi-handle").first
        head = sliders.filter(has_text="head").first.locator(".noUi-handle").first
        head.wait_for(state="visible", timeout=30_000)
        layer.focus()
        passed = []  # the layer slider's readout (a box to type a value in) comes first
        for _ in range(4):
            page.keyboard.press("Tab")
            if head.evaluate("el => document.activeElement === el"):
                break
            passed.append(page.evaluate("document.activeElement.className"))
        else:
            pytest.fail(f"Tab from the layer slider does not reach the head slider: {passed}")
        image = explorer.locator("img").first
        before = image.get_attribute("src")
        readout = sliders.filter(has_text="head").first.locator(".widget-readout")
        value = readout.inner_text()
        page.keyboard.press("ArrowRight")
        page.wait_for_function(
            "([el, old]) => { const img = el.querySelector('img');"
            " return img && img.src !== old && img.naturalWidth > 0; }",
            arg=[explorer.element_handle(), before],
            timeout=30_000,
        )
        assert readout.inner_text() != value, "the arrow key did not move the head slider"

        questions = quiz.load_quiz("ch01")["questions"]
        first, box = questions[0], page.locator(f"{ACTIVE} .Quiz").first
        box.scroll_into_view_if_needed()
        assert box.get_attribute("role") == "group"
        feedback = box.locator(".Feedback")
        assert feedback.get_attribute("aria-live") == "polite"
        inputs = box.locator("label.MCButton input")
        wrong = next(a for a in first["answers"] if not a["correct"])
        right = next(a for a in first["answers"] if a["correct"])
        box.locator('[id^="quizQn"]').click()  # into the output, as a reader reading it
        at = -1
        for answer, key in ((wrong, "Space"), (right, "Enter")):
            index = first["answers"].index(answer)
            target = inputs.nth(index).element_handle()
            for _ in range(len(first["answers"]) + 1):
                page.keyboard.press("Tab" if index > at else "Shift+Tab")
                if target.evaluate("el => document.activeElement === el"):
                    break
            else:
                pytest.fail(f"Tab does not reach the answer {answer['answer']!r}")
            at = index
            page.keyboard.press(key)
            verdict = "correct" if answer["correct"] else "incorrect"
            feedback.wait_for(state="visible", timeout=5000)
            page.wait_for_function(
                "([el, v]) => el.classList.contains(v)",
                arg=[feedback.element_handle(), verdict],
                timeout=5000,
            )
            assert html.unescape(answer["feedback"])[:50] in feedback.inner_text()
            # Still reading the notebook: no cell was put into edit mode by the key.
            assert page.locator(f"{ACTIVE} .jp-Notebook.jp-mod-editMode").count() == 0, (
                f"{key} on a quiz answer put the notebook into edit mode"
            )
        page.screenshot(path=screenshot_path("lab", "01_qkv_keyboard"), full_page=False)
    finally:
        context.close()
        shut_down_kernels(lab)

"""Every page of the built book checked for accessibility by axe-core, in Chromium.

axe-core (fetched with `npm pack axe-core@AXE_VERSION`, as the widget test fetches the widget
manager; never from a CDN) is injected into every page of _toc.yml, offline, and run with the
WCAG 2.0 and 2.1 A and AA rules plus axe's best practices, three times:

- light: the theme's light mode at a 1280 px window;
- dark: the theme's dark mode (the reader's system asks for dark; the theme follows it), where
  every figure must also sit on a light panel (its colours were chosen on white);
- zoom200: the page zoomed to 200% (a 1280 px window at zoom 200% lays the page out in 640 CSS
  px at two device pixels each), where nothing may be cut off: the page never scrolls sideways
  and no text is clipped by a box too small for it.

A violation of impact serious or critical fails the test, naming the page, the mode, the rule
and the elements. Moderate and minor ones are printed (pytest -s or -rA shows them) and must be
on MINOR_ALLOWED with a reason, or the test fails too: the course fixes its own.

Each run's violations go to _build/a11y/<mode>/<page>.json; `python tests/test_a11y.py` prints
the table of violations by rule (pages, elements) over every page and mode.

Without Chromium or npm these tests skip (fail when CI is set); see tests/browser_tools.py.
"""

import json
import os
import re
import sys
from collections import defaultdict
from pathlib import Path
from urllib.parse import urljoin

import pytest
from book_fixture import BUILD
from browser_tools import (
    AXE_VERSION,
    ConsoleLog,
    axe_violations,
    describe_violations,
    npm_package_file,
    static_server,
)
from notebook_tools import toc_files

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("book")]

FAILING_IMPACTS = ("serious", "critical")
RESULTS = BUILD / "a11y"
PAGES = toc_files()

MODES = {
    "light": {"viewport": {"width": 1280, "height": 900}, "color_scheme": "light"},
    "dark": {"viewport": {"width": 1280, "height": 900}, "color_scheme": "dark"},
    "zoom200": {
        "viewport": {"width": 640, "height": 450},
        "device_scale_factor": 2,
        "color_scheme": "light",
    },
}

# Moderate or minor violations allowed for now, each with why: (rule id, regex on the page name,
# regex on the element's selector, reason). Serious and critical ones are never allowed.
MINOR_ALLOWED = [
    (
        "empty-table-header",
        r"^(chapters/10_memory_bound|your_machine)$",
        r"th:nth-child\(1\)",
        "a table whose first column holds row labels has an empty header cell; the notebook names "
        "it (its author's edit, pending: markdown_table's first header is '')",
    ),
]


# What zoom cuts off: the page scrolling sideways, or text clipped by a box (overflow hidden or
# clip) too small for it: a text line that reaches past the box's edges. Boxes that scroll (code,
# wide tables) are fine: everything stays reachable, and axe checks that the keyboard can scroll
# them. Not counted: text hidden on purpose (screen-reader-only text such as MathJax's assistive
# MathML, clipped to 1 px) and boxes folded on purpose (a collapsed exercise solution, which its
# button opens).
CUT_OFF_JS = """() => {
  const root = document.documentElement;
  const found = {page_width: root.scrollWidth, window_width: root.clientWidth, clipped: []};
  const hiddenOnPurpose = el => el.closest(
    'mjx-assistive-mml, .sr-only, .visually-hidden, .toggle-hidden, details:not([open])');
  for (const el of document.querySelectorAll('body *')) {
    if (!el.getClientRects().length || hiddenOnPurpose(el)) continue;
    const style = getComputedStyle(el);
    const clipsX = ['hidden', 'clip'].includes(style.overflowX);
    const clipsY = ['hidden', 'clip'].includes(style.overflowY);
    if (!(clipsX && el.scrollWidth > el.clientWidth + 2) &&
        !(clipsY && el.scrollHeight > el.clientHeight + 2)) continue;
    const box = el.getBoundingClientRect();
    if (box.width <= 2 || box.height <= 2) continue;  // visually hidden on purpose
    const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
    let cut = null;
    for (let node = walker.nextNode(); node && !cut; node = walker.nextNode()) {
      const parent = node.parentElement;
      if (!node.textContent.trim() || hiddenOnPurpose(parent)) continue;
      if (getComputedStyle(parent).visibility === 'hidden') continue;
      const range = document.createRange();
      range.selectNodeContents(node);
      for (const r of range.getClientRects()) {
        if (!r.width || !r.height) continue;
        const outX = clipsX && (r.left < box.left - 2 || r.right > box.right + 2);
        const outY = clipsY && (r.top < box.top - 2 || r.bottom > box.bottom + 2);
        if (outX || outY) { cut = node.textContent.trim().slice(0, 60); break; }
      }
    }
    if (!cut) continue;
    found.clipped.push({
      element: el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
        (el.className && typeof el.className === 'string'
          ? '.' + el.className.trim().split(/\\s+/).join('.') : ''),
      text: cut, box: [Math.round(box.width), Math.round(box.height)],
      content: [el.scrollWidth, el.scrollHeight],
    });
  }
  return found;
}"""

# In dark mode each figure keeps a light panel behind it (the theme's rule for images in the
# content): the figures' colours and text were chosen on white.
FIGURE_PANELS_JS = """() => Array.from(document.querySelectorAll('article img'))
  .filter(img => img.getClientRects().length)
  .map(img => {
    let el = img, color = 'rgba(0, 0, 0, 0)';
    while (el && /rgba\\(.*, 0\\)|transparent/.test(color)) {
      color = getComputedStyle(el).backgroundColor;
      el = el.parentElement;
    }
    const rgb = (color.match(/[\\d.]+/g) || [0, 0, 0]).slice(0, 3).map(Number);
    return {src: img.getAttribute('src'), background: color,
            light: rgb.every(c => c >= 180)};
  })"""


ANSWER_EVERY_QUESTION_JS = """() => {
  for (const box of document.querySelectorAll('.Quiz')) {
    const choice = box.querySelector('label.MCButton');
    if (choice) { choice.click(); continue; }
    const input = box.querySelector('input.Input-text');
    if (input) {
      input.value = '1';
      input.dispatchEvent(new KeyboardEvent('keypress', {key: 'Enter', keyCode: 13, which: 13}));
    }
  }
  // jupyterquiz colours an answered choice with a 0.6-0.8 s animation: skip to its end.
  document.getAnimations().forEach(a => a.finish());
}"""


def is_allowed_minor(rule: str, name: str, target: str) -> bool:
    return any(
        rule == r and re.search(p, name) and re.search(t, target) for r, p, t, _why in MINOR_ALLOWED
    )


def record(name: str, mode: str, violations: list[dict]) -> None:
    path = RESULTS / mode / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(violations, indent=1))


@pytest.fixture(scope="module")
def site(request):
    """The built book on a local server (book_fixture's), or with A11Y_HTML=/a/folder that
    folder as it is, unbuilt: to check a published copy, or one built elsewhere."""
    folder = os.environ.get("A11Y_HTML")
    html = Path(folder) if folder else request.getfixturevalue("built_book")["html"]
    if not (html / "index.html").exists():
        pytest.fail(f"no built book in {html} (see test_book.py for the build log)")
    with static_server(html) as base:
        yield base


@pytest.fixture(scope="module")
def axe_file():
    # fetched once (npm pack), before the first page
    return npm_package_file("axe-core", AXE_VERSION, "axe.min.js")


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("name", PAGES)
def test_page_is_accessible(browser, site, axe_file, name, mode):
    context = browser.new_context(**MODES[mode])
    try:
        page = context.new_page()
        console = ConsoleLog(page)
        page.route("**/*", lambda r: r.continue_() if r.request.url.startswith(site) else r.abort())
        page.goto(urljoin(site, f"{name}.html"), wait_until="load")
        # The quizzes are drawn by their scripts after load: wait for them before checking.
        page.wait_for_function(
            "() => Array.from(document.querySelectorAll('[data-shufflequestions]'))"
            ".every(div => div.querySelector('.Quiz'))",
            timeout=20_000,
        )
        theme = page.evaluate("document.documentElement.dataset.theme")
        expected_theme = "dark" if mode == "dark" else "light"
        assert theme == expected_theme, f"{name} [{mode}]: the theme shows {theme!r}"

        violations = axe_violations(page)
        record(name, mode, violations)
        failing = [v for v in violations if v["impact"] in FAILING_IMPACTS]
        minor = [v for v in violations if v["impact"] not in FAILING_IMPACTS]
        if minor:
            print(describe_violations(f"{name} [{mode}]", minor))
        not_allowed = [
            dict(
                v, nodes=[n for n in v["nodes"] if not is_allowed_minor(v["id"], name, n["target"])]
            )
            for v in minor
        ]
        not_allowed = [v for v in not_allowed if v["nodes"]]
        assert not failing, (
            f"{name} [{mode}]: {len(failing)} serious or critical accessibility violation(s) "
            "(axe-core):\n" + describe_violations(f"{name} [{mode}]", failing)
        )
        assert not not_allowed, (
            f"{name} [{mode}]: moderate or minor violation(s) that are not on MINOR_ALLOWED "
            "(fix them, or allow one with its reason):\n"
            + describe_violations(f"{name} [{mode}]", not_allowed)
        )

        if mode != "zoom200" and page.locator(".Quiz").count():
            # Each question answered (its first choice, or 1 typed): the feedback and the
            # marked answer keep their contrast too.
            page.evaluate(ANSWER_EVERY_QUESTION_JS)
            answered = axe_violations(page, ".Quiz", rules=["color-contrast"])
            assert not answered, (
                f"{name} [{mode}]: contrast of the quiz once answered:\n"
                + describe_violations(f"{name} [{mode}]", answered)
            )
        if mode == "dark":
            dark_figures = [f for f in page.evaluate(FIGURE_PANELS_JS) if not f["light"]]
            assert not dark_figures, (
                f"{name} [dark]: figures without a light panel behind them: {dark_figures}"
            )
        if mode == "zoom200":
            cut = page.evaluate(CUT_OFF_JS)
            assert cut["page_width"] <= cut["window_width"], (
                f"{name} [zoom200]: the page is {cut['page_width']} CSS px wide in a "
                f"{cut['window_width']} px window: it scrolls sideways at 200% zoom"
            )
            assert not cut["clipped"], (
                f"{name} [zoom200]: text cut off by its box at 200% zoom: {cut['clipped'][:5]}"
            )
        assert not console.unexpected, f"{name} [{mode}]: console errors: {console.unexpected}"
    finally:
        context.close()


# Every kind of admonition the theme styles (sphinx-exercise's exercise and solution boxes too),
# each with a link in its title bar and in its body.
ADMONITION_CLASSES = [
    "note", "important", "hint", "tip", "seealso", "attention", "caution", "warning", "danger",
    "error", "admonition-todo", "exercise", "solution", "dropdown",
]  # fmt: skip
ADMONITION_SAMPLES_JS = """(classes) => {
  const host = document.createElement('section');
  host.id = 'llmlab-admonition-samples';
  for (const kind of classes) {
    host.insertAdjacentHTML('beforeend',
      `<div class="admonition ${kind}"><p class="admonition-title">${kind}: ` +
      `<a href="#">a link in the title</a></p><p>Body text, <a href="#">a link</a>.</p></div>`);
  }
  document.querySelector('article.bd-article').append(host);
}"""


@pytest.mark.parametrize("mode", ["light", "dark"])
def test_links_have_contrast_on_every_admonition(browser, site, axe_file, mode):
    """Links reach 4.5:1 on every admonition background (title bar and body), light and dark,
    whether or not a page of the book uses that kind of box today."""
    context = browser.new_context(**MODES[mode])
    try:
        page = context.new_page()
        page.route("**/*", lambda r: r.continue_() if r.request.url.startswith(site) else r.abort())
        page.goto(urljoin(site, f"{PAGES[0]}.html"), wait_until="load")
        page.evaluate(ADMONITION_SAMPLES_JS, ADMONITION_CLASSES)
        links = page.locator("#llmlab-admonition-samples a").count()
        assert links == 2 * len(ADMONITION_CLASSES)
        found = axe_violations(page, "#llmlab-admonition-samples", rules=["color-contrast"])
        assert not found, describe_violations(f"admonition samples [{mode}]", found)
    finally:
        context.close()


def summary(results: Path = RESULTS) -> str:
    """The table of violations by rule over every recorded page and mode (Markdown)."""
    pages, elements, impacts, modes = defaultdict(set), defaultdict(int), {}, defaultdict(set)
    runs = sorted(results.glob("*/**/*.json"))
    for path in runs:
        mode = path.relative_to(results).parts[0]
        name = str(path.relative_to(results / mode).with_suffix(""))
        for v in json.loads(path.read_text()):
            pages[v["id"]].add(name)
            elements[v["id"]] += len(v["nodes"])
            impacts[v["id"]] = v["impact"]
            modes[v["id"]].add(mode)
    order = ["critical", "serious", "moderate", "minor"]
    lines = [
        f"{len(runs)} page runs recorded under {results}",
        "",
        "| rule | impact | pages | elements | modes |",
        "|---|---|---|---|---|",
    ]
    for rule in sorted(pages, key=lambda r: (order.index(impacts[r]), -len(pages[r]), r)):
        lines.append(
            f"| {rule} | {impacts[rule]} | {len(pages[rule])} | {elements[rule]} | "
            f"{', '.join(sorted(modes[rule]))} |"
        )
    if not pages:
        lines.append("| (none) | | 0 | 0 | |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(summary(Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS))

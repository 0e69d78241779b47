"""Maths renders in the built book offline: MathJax from the book itself, no raw TeX left, no
MathJax error.

The book serves MathJax 3 from its own copy (_vendor/mathjax, vendored from npm), so a reader without
the network still sees typeset maths; every request that leaves the local server is cut off here.
On every page of _toc.yml, once MathJax has typeset the page: no TeX error (`mjx-merror`), no TeX
left as text outside code ($...$, \\(...\\), \\[...\\], or a TeX command such as \\frac), and no
console error beyond the project's allow-list. Screenshots: _build/screenshots/math_*.png.
"""

import re
import shutil
from urllib.parse import urljoin

import pytest
from browser_tools import ConsoleLog, screenshot_path, static_server
from notebook_tools import ROOT, toc_files

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("book")]

PAGES = toc_files()

# Text a reader should never see: TeX that MathJax did not typeset. Code blocks and outputs
# (pre, code) may show TeX on purpose and are skipped.
RAW_TEX = re.compile(
    r"\$\$|\$[^$\s][^$\n]*?\$|\\\(|\\\)|\\\[|\\\]"
    r"|\\(?:frac|sqrt|begin|end|mathrm|mathbf|text|cdot|times|left|right|sum|top|softmax|operatorname)\b"
)

TEXT_NODES_JS = """() => {
  const root = document.querySelector('article.bd-article') || document.body;
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT, {
    acceptNode: node => node.parentElement.closest(
      'pre, code, script, style, textarea, mjx-container, .MathJax, mjx-assistive-mml'
    ) ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT,
  });
  const texts = [];
  while (walker.nextNode()) texts.push(walker.currentNode.textContent);
  return texts.join('\\n');
}"""


def raw_tex(text: str) -> list[str]:
    """The pieces of `text` that are TeX a reader would see raw (with some context)."""
    return [text[max(0, m.start() - 30) : m.end() + 30] for m in RAW_TEX.finditer(text)]


def test_raw_tex_is_recognised():
    """The detector itself: typeset-looking prose passes, raw TeX is found."""
    assert raw_tex("costs O(N^2) and $5 per hour, 2 x 3") == []
    for raw in [r"softmax $QK^\top$", r"\(d_k\)", r"$$x$$", r"\frac{1}{2}", r"\[ y \]"]:
        assert raw_tex(f"before {raw} after"), raw


def typeset_problems(browser, site, path, page_html):
    """Open `path` on `site` with every other host cut off; returns the problems a reader sees.

    A page without maths loads no MathJax (Sphinx adds it only where there is maths): it is
    still searched for raw TeX.
    """
    scripts = [m for m in re.findall(r'src="([^"]+)"', page_html) if "tex-mml-chtml" in m]
    problems = [f"MathJax is loaded from another host: {u}" for u in scripts if "://" in u]
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        console = ConsoleLog(page)

        def route_request(route):
            if route.request.url.startswith(site):
                route.continue_()
            else:
                route.abort()

        page.route("**/*", route_request)
        page.goto(urljoin(site, path), wait_until="load")
        if scripts and not problems:
            page.wait_for_function(
                "() => window.MathJax && MathJax.startup && MathJax.startup.promise",
                timeout=30_000,
            )
            page.evaluate("() => MathJax.startup.promise")
            errors = page.locator("mjx-merror").evaluate_all(
                "els => els.map(e => e.getAttribute('data-mjx-error') || e.textContent)"
            )
            if errors:
                problems.append(f"MathJax could not typeset: {errors}")
        left = raw_tex(page.evaluate(TEXT_NODES_JS))
        if left:
            problems.append(f"TeX shown raw to the reader: {left[:5]}")
        if console.unexpected:
            problems.append(f"console errors: {console.unexpected}")
        page.screenshot(path=screenshot_path("math", path.removesuffix(".html")), full_page=True)
        return problems
    finally:
        context.close()


@pytest.mark.parametrize("name", PAGES)
def test_maths_is_typeset_without_errors(browser, site, built_book, name):
    page_html = (built_book["html"] / f"{name}.html").read_text()
    problems = typeset_problems(browser, site, f"{name}.html", page_html)
    assert not problems, f"{name}: " + "; ".join(problems)


BROKEN_PAGE = """<!doctype html><html><head><meta charset="utf-8">
<script defer src="mathjax/tex-mml-chtml.js"></script>
</head><body><article class="bd-article">
<p>Fine: <span class="math">\\(q \\cdot k\\)</span>.</p>
<p>Broken: <span class="math">\\(\\frac{1}\\)</span>.</p>
<div class="output"><p>A glued role never rendered: $QK^\\top$ costs</p></div>
</article></body></html>"""


def test_a_page_with_a_tex_error_and_raw_tex_fails(browser, tmp_path):
    """The check can fail: a TeX error MathJax reports, and TeX it was never given."""
    (tmp_path / "broken.html").write_text(BROKEN_PAGE)
    shutil.copytree(ROOT / "_vendor" / "mathjax", tmp_path / "mathjax")
    with static_server(tmp_path) as site:
        problems = typeset_problems(browser, site, "broken.html", BROKEN_PAGE)
        assert any("could not typeset" in p for p in problems), problems
        assert any("raw" in p and "QK" in p for p in problems), problems
        cdn = BROKEN_PAGE.replace("mathjax/tex", "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex")
        problems = typeset_problems(browser, site, "broken.html", cdn)
    assert any("loaded from another host" in p for p in problems), problems

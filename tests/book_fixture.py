"""The built book (built by book_build.py, as `make book` does), shared by every test that reads
the HTML (registered in conftest.py), and the two fixtures the browser tests share: `site`, the
built HTML served on localhost, and `browser`, Debian's Chromium driven by Playwright.

Tests that use them carry pytest.mark.xdist_group("book") so that, under pytest-xdist, one worker
builds the book once and runs them all.
"""

import pytest
from book_build import BUILD, ROOT, build_book, drop_stale_execution_cache  # noqa: F401


@pytest.fixture(scope="session")
def built_book():
    """Build the book as `make book` does (warnings are errors); returns its exit code and log.

    One build at a time: if tests of the "book" group ever run on two workers at once (it
    happened), the second waits for the first and then finds every notebook in the execution
    cache, instead of both writing the same _build."""
    BUILD.mkdir(parents=True, exist_ok=True)
    with open(BUILD / ".build.lock", "w") as lock:
        try:
            import fcntl
        except ImportError:  # Windows: no lock; one worker there
            return build_book(capture=True)
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return build_book(capture=True)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(scope="module")
def site(built_book):
    """The built HTML on a local server: its base URL."""
    from browser_tools import static_server

    html = built_book["html"]
    if not (html / "index.html").exists():
        pytest.fail("the book was not built (see test_book.py for the build log)")
    with static_server(html) as base:
        yield base


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium (never a downloaded browser), one per test module."""
    from browser_tools import chromium

    with chromium() as b:
        yield b

"""A change to llmlab reruns every notebook in the next book build (tests/book_fixture.py).

jupyter-book's cache reruns a notebook only when its own code changes; without this, a page
built before an engine change would keep the old engine's figures.
"""

from book_fixture import drop_stale_execution_cache


def test_the_execution_cache_survives_until_llmlab_changes(tmp_path):
    build = tmp_path / "_build"
    (build / ".jupyter_cache").mkdir(parents=True)
    (build / ".doctrees").mkdir()
    assert drop_stale_execution_cache(build)  # no record of llmlab yet: the cache is stale
    assert not (build / ".jupyter_cache").exists() and not (build / ".doctrees").exists()

    (build / ".jupyter_cache").mkdir()
    assert not drop_stale_execution_cache(build)  # same llmlab: the cache is kept
    assert (build / ".jupyter_cache").exists()

    stamp = build / "llmlab.sha256"
    stamp.write_text("0" * 64)  # as if llmlab had been edited since
    assert drop_stale_execution_cache(build)
    assert not (build / ".jupyter_cache").exists()
    assert stamp.read_text() != "0" * 64

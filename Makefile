# Two commands matter: `make book` (set up + build the HTML book) and `make test` (set up + run all tests).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# PyTorch's idle OpenMP threads otherwise spin and starve a second process on a 2-core machine
# (two notebooks at once went from ~40 s to ~650 s each). Kernels inherit this.
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: book test lab setup clean

$(STAMP): requirements.txt requirements-test.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt -r requirements-test.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

book: $(STAMP)
	$(BIN)/jupyter-book build . -W -n --keep-going
	@echo "Open $(CURDIR)/_build/html/index.html in a browser."

test: $(STAMP)
	$(BIN)/python -m pytest

lab: $(STAMP)
	$(BIN)/jupyter lab

clean:
	rm -rf _build

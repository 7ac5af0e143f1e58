# bkbench: two entry points (see README "Quick start").
#   make bench  -> set up .venv, run the default suite on whatever device exists, write the HTML report
#   make test   -> set up .venv, run the test suite
# Override TORCH_SPEC on a machine that needs another torch build (e.g. TORCH_SPEC="torch" on a CUDA box),
# or SYSTEM_SITE=1 to reuse the interpreter's torch/triton.

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
TRITON_SPEC ?= triton==3.6.0
SYSTEM_SITE ?= 0
DB ?= results/bkbench.db
REPORT ?= results/report
BIN := $(VENV)/bin

.PHONY: setup bench test gate lint clean

setup: $(VENV)/.bkbench-installed

$(VENV)/.bkbench-installed: pyproject.toml
	$(PYTHON) -m venv $(if $(filter 1,$(SYSTEM_SITE)),--system-site-packages,) $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -c "import triton" 2>/dev/null || $(BIN)/python -m pip install -q "$(TRITON_SPEC)"
	$(BIN)/python -m pip install -q -e ".[test,bench]"
	touch $@

bench: setup
	$(BIN)/bkbench run quick --db $(DB)
	$(BIN)/bkbench report --db $(DB) --out $(REPORT)
	@echo "report: $(REPORT)/index.html"

test: setup
	$(BIN)/python -m pytest

gate: setup
	$(BIN)/bkbench gate

lint: setup
	$(BIN)/ruff check bkbench kernels suites tests

clean:
	rm -rf $(VENV) results .pytest_cache

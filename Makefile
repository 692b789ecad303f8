# Quick start:  make demo   (install + compile and train an HCLT on bundled data)
#               make test   (install + lint, format and type checks, the test suite; CI runs exactly this)
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch: pinned where a local wheel exists, otherwise any torch >= 2.1.
TORCH ?= torch==2.13.0

.PHONY: install demo test clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q "$(TORCH)" || $(BIN)/pip install -q "torch>=2.1"
	$(BIN)/pip install -q -e '.[test]'
	touch $@

demo: install
	$(BIN)/pcc demo

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache

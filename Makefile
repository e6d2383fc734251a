# Two entry points for a fresh checkout; each creates .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: examples test

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

## Run the engine on the example notebooks.
examples: $(VENV)/.installed
	$(BIN)/nbci run examples --html

## Run the test suite (real kernels, and the action itself under act).
test: $(VENV)/.installed
	$(BIN)/python -m pytest

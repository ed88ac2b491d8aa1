# Roomscribe developer commands. `make test` and `make demo` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?= dev,stt,orchestrator

.PHONY: setup test check bench-store clean

setup: $(VENV)/.installed-$(EXTRAS)

# Re-installs only when pyproject.toml changes, so repeated `make test` is fast.
$(VENV)/.installed-$(EXTRAS): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e ".[$(EXTRAS)]"
	touch $@

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

check: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

bench-store: setup
	$(PY) -m bench.store $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

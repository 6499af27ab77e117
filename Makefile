# Two commands do all the set-up on a fresh clone:
#   make demo   runs the sample event app guarded by privguard (SQLite)
#   make test   runs the whole test suite
# Each creates .venv and installs the project with its dev extras on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck bench clean

$(STAMP): pyproject.toml integrations/fastapi/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "privguard needs Python >= 3.11")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]' -e integrations/fastapi
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m demo $(ARGS)

test: $(STAMP)
	$(PY) -m pytest $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks demo integrations
	$(VENV)/bin/ruff format --check src tests benchmarks demo integrations

typecheck: $(STAMP)
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache

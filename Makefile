# make run    set everything up and serve on http://127.0.0.1:8000 (SQLite under ./var)
# make test   set everything up and run the whole suite (lint, types, tests on SQLite and PostgreSQL)
# make bench  the benchmarks, each figure printed beside its baseline

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test install system-deps lint typecheck unit bench clean format

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11+ is needed"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

system-deps:
	@scripts/install-system-deps

run: install
	$(BIN)/commcredits serve

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: install
	$(BIN)/mypy src

unit: install
	$(BIN)/python -m pytest tests/unit -q

test: install system-deps lint typecheck
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python -m bench

format: install
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis build *.egg-info src/*.egg-info

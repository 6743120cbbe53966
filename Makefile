# make run    set everything up, build the demo (var/demo.db: three simulated months, a summary)
#             and serve it on http://127.0.0.1:8000 (API and console)
# make serve  set everything up and serve var/commcredits.db, with no demo data
# make test   set everything up and run the whole suite (lint, types, tests on SQLite and PostgreSQL)
# make bench  the benchmarks, each figure printed beside its baseline
# make stress the long forms of the simulation, crash, concurrency and fuzzing suites

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run serve test install system-deps lint typecheck unit bench clean format

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11+ is needed"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

system-deps:
	@scripts/install-system-deps --browser --sip

run: install
	$(BIN)/commcredits demo

serve: install
	$(BIN)/commcredits serve

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: install
	$(BIN)/mypy src

unit: install
	$(BIN)/python -m pytest tests/unit -q

test: install system-deps lint typecheck audit
	$(BIN)/python -m pytest -q

bench: install
	@scripts/install-system-deps --bench
	$(BIN)/python -m bench

# Known vulnerabilities in the installed packages (pip-audit). A finding always fails; an
# unreachable vulnerability service is reported and passes unless AUDIT_STRICT=1.
.PHONY: audit
audit: install
	$(BIN)/python -m tests.security.dependency_audit

# The long forms of tests/stress (about two hours here; see docs/reliability.md): the million
# simulated operations as one seed per core side by side, then crashes, concurrency and fuzzing.
.PHONY: stress
stress: install
	$(BIN)/python -m tests.stress.shards --ops 1000000
	STRESS_CRASH_KILLS=100 $(BIN)/python -m pytest tests/stress/test_crash.py -q -s
	$(BIN)/python -m bench concurrency
	FUZZ_EXAMPLES=500 $(BIN)/python -m pytest tests/fuzz -q --timeout 3600

format: install
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis build *.egg-info src/*.egg-info

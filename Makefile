# The two commands: `make run` and `make test`. Both create or reuse .venv and install first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install run test check lint typecheck bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
	$(PY) -m pip install -q -e '.[probes,test]' 2>&1 | grep -v "is ignored" || true
	$(PY) -c "import connectord, asyncpg, fastapi, pytest" && touch $(STAMP)

install: $(STAMP)

run: install
	$(VENV)/bin/connectord --help

test: install
	bash scripts/ensure-services.sh
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src

typecheck: install
	$(VENV)/bin/mypy --strict src/connectord

check: lint typecheck test

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

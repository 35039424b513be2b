# The two commands: `make run` and `make test`. Both create or reuse .venv and install first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install run test check lint typecheck bench clean

PLUGIN := examples/connectord-example-plugin

# pip's output is filtered of this machine's index-location warnings; success is
# checked by importing what was installed, not by pip's exit code through the pipe.
$(STAMP): pyproject.toml $(PLUGIN)/pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
	$(PY) -m pip install -q -e '.[probes,test]' 2>&1 | grep -v "is ignored" || true
	$(PY) -m pip install -q -e $(PLUGIN) 2>&1 | grep -v "is ignored" || true
	$(PY) -c "import connectord, asyncpg, fastapi, pytest, aiosmtpd, connectord_example_plugin" && touch $(STAMP)

install: $(STAMP)

# The local quickstart: embedded SQLite in ./.data, loopback opened for tests of local services.
run: install
	CONNECTORD_DATA_DIR=$${CONNECTORD_DATA_DIR:-$(CURDIR)/.data} \
	CONNECTORD_EGRESS_ALLOW=$${CONNECTORD_EGRESS_ALLOW:-127.0.0.0/8,::1/128} \
	$(VENV)/bin/connectord serve --demo

# The console's browser tests save a screenshot of each page they visit (docs/console.md).
SCREENSHOTS := $(CURDIR)/build/screenshots/console

test: install
	bash scripts/ensure-services.sh
	bash scripts/ensure-chromium.sh
	$(PY) -m pytest $(PYTEST_ARGS); status=$$?; echo "Console screenshots: $(SCREENSHOTS)"; exit $$status

# The layering (docs/architecture.md) is a contract: .importlinter.
lint: install
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests
	$(VENV)/bin/lint-imports

typecheck: install
	$(VENV)/bin/mypy --strict src/connectord

check: lint typecheck test

bench: install
	command -v wrk >/dev/null || (apt-get update -q && apt-get install -y -q wrk)
	$(PY) bench/api.py
	$(PY) bench/client_ceiling.py
	$(PY) bench/probes.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

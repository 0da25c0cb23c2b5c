# The two set-up commands: `make demo` runs the bridge with everything it needs; `make test` runs the checks.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest redis-server browser bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/d6-bridge demo

test: $(STAMP) redis-server browser lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check bridge tests bench
	$(BIN)/ruff format --check bridge tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -q

# The tests start their own redis-server on a free port; make sure the binary exists.
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null); \
	  else \
	    echo "redis-server is missing: install it (apt-get install redis-server) or set BRIDGE_TEST_REDIS_URL" >&2; \
	    [ -n "$$BRIDGE_TEST_REDIS_URL" ]; \
	  fi; }

# The console's browser tests drive Debian's chromium (never a downloaded browser); they skip without it.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "chromium could not be installed: the console's browser tests will skip" >&2; \
	  else \
	    echo "chromium is missing: the console's browser tests will skip (apt-get install chromium)" >&2; \
	  fi; }

# Benchmarks (bench/RESULTS.md): each starts its own redis-server; all run, and any missed target fails.
bench: $(STAMP) redis-server
	@status=0; for name in diff_throughput memory d6_requests; do \
	  $(BIN)/python -m bench.$$name || status=1; echo; done; exit $$status

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache

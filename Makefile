# The two set-up commands: `make demo` runs the bridge with everything it needs; `make test` runs the checks.
PYTHON ?= python3
comma := ,
VENV := .venv
BIN := $(VENV)/bin
DEMO_STAMP := $(VENV)/.installed-demo
STAMP := $(VENV)/.installed
SUITES_STAMP := $(VENV)/.installed-suites

# Installs go through uv (from PyPI, put into the venv by pip), several times faster than pip; pip does them
# when uv cannot be had. Set-up times are in docs/development.md.
define install
	if $(BIN)/python -m uv --version >/dev/null 2>&1; then \
	  $(BIN)/python -m uv pip install --quiet --python $(BIN)/python $(1); \
	else \
	  $(BIN)/python -m pip install --quiet --upgrade pip && $(BIN)/python -m pip install --quiet $(1); \
	fi
endef

.PHONY: demo test lint typecheck pytest redis-server browser promtool bench chaos faults scale soak suites clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet uv || echo "uv could not be installed: installing with pip (slower)" >&2

# What the demo needs (the package alone), and what the checks need (with the dev tools).
$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	@$(call install,-e .)
	touch $(DEMO_STAMP)

$(STAMP): pyproject.toml | $(BIN)/python
	@$(call install,-e '.[dev]')
	touch $(STAMP)

$(SUITES_STAMP): pyproject.toml $(STAMP)
	@$(call install,-e '.[dev$(comma)suites]')
	touch $(SUITES_STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/d6-bridge demo

test: $(STAMP) redis-server browser promtool lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check bridge tests bench suites
	$(BIN)/ruff format --check bridge tests bench suites

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -q -n 3 --dist worksteal --durations=25

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

# The metrics test runs `promtool check metrics` (Debian's prometheus package) on /metrics; it skips without it.
promtool:
	@command -v promtool >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null) \
	      || echo "prometheus could not be installed: the promtool test will skip" >&2; \
	  else \
	    echo "promtool is missing: the metrics lint test will skip (apt-get install prometheus)" >&2; \
	  fi; }

# Benchmarks (bench/RESULTS.md): each starts its own redis-server; all run, and any missed target fails.
# The delivery benchmark's arq baseline runs in a virtualenv of its own: arq 0.28 needs redis<6.
ARQ_VENV := .venv-arq
ARQ_STAMP := $(ARQ_VENV)/.installed

$(ARQ_STAMP): bench/arq/requirements.txt
	$(PYTHON) -m venv $(ARQ_VENV)
	$(ARQ_VENV)/bin/pip install -q -r bench/arq/requirements.txt
	touch $(ARQ_STAMP)

bench: $(SUITES_STAMP) $(ARQ_STAMP) redis-server
	@status=0; for name in diff_throughput memory d6_requests finance delivery freshness resync feed; do \
	  $(BIN)/python -m bench.$$name || status=1; echo; done; exit $$status

# Proof under fire (bench/RESULTS.md, README "Guarantees"): each prints its figures and PASS or FAIL.
# Short defaults; the long runs: `make chaos CHAOS_ARGS="--iterations 200"`, `make soak SOAK_ARGS="--minutes 60"`.
chaos: $(SUITES_STAMP) redis-server
	$(BIN)/python -m suites.chaos $(CHAOS_ARGS)

faults: $(SUITES_STAMP) redis-server
	@status=0; for name in redis_faults d6_faults api_fuzz; do \
	  $(BIN)/python -m suites.$$name || status=1; echo; done; exit $$status

scale: $(SUITES_STAMP) redis-server
	$(BIN)/python -m suites.scale $(SCALE_ARGS)

soak: $(SUITES_STAMP) redis-server
	$(BIN)/python -m suites.soak $(SOAK_ARGS)

suites: chaos faults scale soak

clean:
	rm -rf $(VENV) $(ARQ_VENV) .mypy_cache .pytest_cache .ruff_cache

#!/usr/bin/env bash
# Runs the Dockerfile's build-stage install outside Docker (CI has no Docker engine) and checks its result.
#
# KEEP IN SYNC with the build stage of ../Dockerfile. This script does what that stage does:
#   FROM python:<X.Y>-slim...          -> uses pythonX.Y (the minor version is read from the Dockerfile)
#   RUN python -m venv /opt/venv       -> a venv in a temporary directory
#   COPY pyproject.toml README.md ./   -> copies exactly these into a clean source directory,
#   COPY bridge ./bridge                  so a file the build needs but the COPYs miss fails here too
#   RUN /opt/venv/bin/pip install ...  -> the same pip line ($PIP_INSTALL below)
# It fails if the Dockerfile no longer contains those lines, so a change there must be made here as well.
#
# Then it checks that the install works and is lean:
#   - `d6-bridge --help` and `d6-bridge serve --help` run from the venv (the console script);
#   - `pip check` finds no broken requirement;
#   - none of the dev extras (pytest, ruff, mypy, ... read from pyproject.toml) got installed;
#   - `d6-bridge serve` starts from that venv (in-memory store, no d6 reachable), the Dockerfile's
#     HEALTHCHECK command (taken from the Dockerfile itself) passes against it, /health/ready answers,
#     and SIGTERM stops it cleanly.
# Needs only PyPI (through pip as configured on the machine). Exit status non-zero on any failure.
#
# Usage: deploy/check-image-steps.sh            (PYTHON=/path/to/python3.11 to choose the interpreter)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DOCKERFILE="$ROOT/Dockerfile"
PIP_INSTALL='pip install --no-cache-dir --only-binary=:all: .'
START=$(date +%s)

fail() { echo "check-image-steps: FAIL: $*" >&2; exit 1; }
step() { echo "check-image-steps: $*"; }

# --- the Dockerfile still runs what this script runs -----------------------------------------------
for line in \
  'RUN python -m venv /opt/venv' \
  'COPY pyproject.toml README.md ./' \
  'COPY bridge ./bridge' \
  "RUN /opt/venv/bin/$PIP_INSTALL"; do
  grep -qxF -- "$line" "$DOCKERFILE" || fail "Dockerfile has no line '$line': update this script and the Dockerfile together"
done
PY_MINOR=$(sed -n 's/^ARG PYTHON_IMAGE=python:\([0-9]*\.[0-9]*\)-slim.*/\1/p' "$DOCKERFILE")
[ -n "$PY_MINOR" ] || fail "cannot read the Python version from 'ARG PYTHON_IMAGE=python:X.Y-slim...' in the Dockerfile"

PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
  # (a pyenv shim may exist and still fail, hence running it rather than `command -v`)
  if "python$PY_MINOR" -c pass >/dev/null 2>&1; then PYTHON="python$PY_MINOR"; else PYTHON=python3; fi
fi
HAVE=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])') || fail "cannot run $PYTHON"
[ "$HAVE" = "$PY_MINOR" ] || fail "the image uses Python $PY_MINOR but $PYTHON is $HAVE (set PYTHON=...)"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/d6-image-steps.XXXXXX")"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then kill "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# --- the build stage --------------------------------------------------------------------------------
step "python -m venv (Python $HAVE)"
"$PYTHON" -m venv "$WORK/venv"
VENV="$WORK/venv"

mkdir "$WORK/src"
cp "$ROOT/pyproject.toml" "$ROOT/README.md" "$WORK/src/"
cp -R "$ROOT/bridge" "$WORK/src/bridge"
find "$WORK/src" -name __pycache__ -prune -exec rm -rf {} +

step "$PIP_INSTALL"
# $PIP_INSTALL is split into words on purpose: "pip" joins the venv's bin/ path, the rest are arguments.
# shellcheck disable=SC2086
(cd "$WORK/src" && PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/"$PIP_INSTALL >"$WORK/pip.log" 2>&1) \
  || { tail -n 40 "$WORK/pip.log" >&2; fail "pip install failed (log above)"; }

# --- the result ------------------------------------------------------------------------------------
step "d6-bridge --help, d6-bridge serve --help"
"$VENV/bin/d6-bridge" --help >/dev/null || fail "d6-bridge --help failed"
"$VENV/bin/d6-bridge" serve --help >/dev/null || fail "d6-bridge serve --help failed"
"$VENV/bin/d6-bridge" --version

step "pip check"
"$VENV/bin/python" -m pip check --disable-pip-version-check || fail "pip check found broken requirements"

step "no dev extras in the image"
"$VENV/bin/python" - "$ROOT/pyproject.toml" <<'PY' || fail "dev dependencies were installed"
import re, sys, tomllib
from importlib import metadata

dev = tomllib.load(open(sys.argv[1], "rb"))["project"]["optional-dependencies"]["dev"]
names = {re.split(r"[\s\[<>=!~;]", req, maxsplit=1)[0] for req in dev} | {"pytest", "ruff", "mypy"}
found = []
for name in sorted(names):
    try:
        found.append(f"{name} {metadata.version(name)}")
    except metadata.PackageNotFoundError:
        pass
if found:
    print("installed but dev-only:", ", ".join(found), file=sys.stderr)
    sys.exit(1)
print("none of:", ", ".join(sorted(names)))
PY

# --- serve starts, and the Dockerfile's HEALTHCHECK passes against it ------------------------------
PORT=$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
HEALTHCHECK_ARGV="$WORK/healthcheck.json"
"$VENV/bin/python" - "$DOCKERFILE" "$VENV/bin/python" >"$HEALTHCHECK_ARGV" <<'PY' || fail "no exec-form HEALTHCHECK CMD [...] with /opt/venv/bin/python in the Dockerfile"
import json, re, sys

text = open(sys.argv[1]).read().replace("\\\n", " ")
match = re.search(r"^HEALTHCHECK\b.*?\bCMD\s+(\[.*\])\s*$", text, re.M)
argv = json.loads(match.group(1))
assert argv[0] == "/opt/venv/bin/python", argv
argv[0] = sys.argv[2]
print(json.dumps(argv))
PY

step "d6-bridge serve on 127.0.0.1:$PORT (memory:// store), then the Dockerfile's HEALTHCHECK"
env -i PATH="$VENV/bin:/usr/bin:/bin" HOME="$WORK" \
  BRIDGE_HOST=127.0.0.1 BRIDGE_PORT="$PORT" BRIDGE_REDIS_URL=memory:// \
  BRIDGE_D6_BASE_URL=http://127.0.0.1:9/api BRIDGE_D6_USERNAME=check BRIDGE_D6_PASSWORD=check \
  BRIDGE_ADMIN_TOKEN=check-image-steps BRIDGE_LOG_FORMAT=json BRIDGE_LOG_LEVEL=warning \
  "$VENV/bin/d6-bridge" serve >"$WORK/serve.log" 2>&1 &
SERVER_PID=$!

healthy=""
for _ in $(seq 1 60); do
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/serve.log" >&2; fail "d6-bridge serve exited at start"; }
  if BRIDGE_PORT="$PORT" "$VENV/bin/python" -c 'import json, subprocess, sys; sys.exit(subprocess.run(json.load(open(sys.argv[1])), capture_output=True).returncode)' "$HEALTHCHECK_ARGV"; then
    healthy=yes; break
  fi
  sleep 0.5
done
[ -n "$healthy" ] || { cat "$WORK/serve.log" >&2; fail "the HEALTHCHECK command never passed within 30 s"; }

READY=$("$VENV/bin/python" -c '
import sys, urllib.error, urllib.request
try:
    print(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health/ready", timeout=10).status)
except urllib.error.HTTPError as error:
    print(error.code)
' "$PORT")
case "$READY" in
  200|503) step "/health/ready answered $READY" ;;
  *) cat "$WORK/serve.log" >&2; fail "/health/ready answered '$READY', expected 200 or 503" ;;
esac

step "SIGTERM: serve drains and exits"
kill -TERM "$SERVER_PID"
for _ in $(seq 1 90); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.5; done
if kill -0 "$SERVER_PID" 2>/dev/null; then
  cat "$WORK/serve.log" >&2; fail "serve still running 45 s after SIGTERM"
fi
set +e; wait "$SERVER_PID"; RC=$?; set -e
SERVER_PID=""
# 0, or 143 (128 + SIGTERM) when uvicorn re-raises the signal after its graceful shutdown.
case "$RC" in
  0|143) step "serve exited with status $RC" ;;
  *) cat "$WORK/serve.log" >&2; fail "serve exited with status $RC after SIGTERM" ;;
esac

step "OK in $(( $(date +%s) - START )) s"

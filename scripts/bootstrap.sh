#!/usr/bin/env bash
# Set up everything the hub needs on a fresh machine: uv (bootstrapped with pip), the
# locked environment in .venv, and the PostgreSQL 15 server binaries the tests use.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.9
PY=${PYTHON:-python3}

if ! "$PY" -m uv --version >/dev/null 2>&1; then
  echo "bootstrap: installing uv $UV_VERSION with pip" >&2
  "$PY" -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi

# --frozen: install exactly what uv.lock pins; never re-resolve on a user's machine.
# --compile-bytecode: compile once here, not in every process that imports Dagster first
# (on a fresh clone the test suite's many worker and child processes each compiled it
# again: 19 CPU minutes instead of 15).
"$PY" -m uv sync --frozen --quiet --compile-bytecode

# The Salesforce Pub/Sub gRPC stubs are generated from the vendored proto, not committed.
.venv/bin/python -m connectors.salesforce_pubsub.generate 2>/dev/null

# The tests also need a PostgreSQL 15 server (initdb/pg_ctl) and Debian's Chromium for the
# browser test; install them from Debian's packages when missing (root only).
if [ "${1:-}" = "--with-test-deps" ]; then
  missing=()
  if ! command -v initdb >/dev/null 2>&1 && [ ! -x /usr/lib/postgresql/15/bin/initdb ]; then
    missing+=(postgresql-15)
  fi
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
      echo "bootstrap: installing ${missing[*]} from Debian's packages" >&2
      apt-get update -qq >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
      echo "bootstrap: the tests need: ${missing[*]} (install them, or run as root)" >&2
      exit 1
    fi
  fi
fi

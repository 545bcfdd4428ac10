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
"$PY" -m uv sync --frozen --quiet

if [ "${1:-}" = "--with-postgres" ]; then
  if ! command -v initdb >/dev/null 2>&1 && [ ! -x /usr/lib/postgresql/15/bin/initdb ]; then
    if [ "$(id -u)" = 0 ]; then
      echo "bootstrap: installing PostgreSQL 15 server binaries" >&2
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null
    else
      echo "bootstrap: PostgreSQL 15 (initdb, pg_ctl) is required for the tests" >&2
      exit 1
    fi
  fi
fi

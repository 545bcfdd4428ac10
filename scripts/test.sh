#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (`make test` and .ci/run call this).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh --with-test-deps
echo "== dependency check"; python3 -m uv pip check --python .venv/bin/python

# uv itself (installed by bootstrap into the system Python, not into .venv): the wheel
# test builds the production wheel with it.
export HUB_UV_BIN="${HUB_UV_BIN:-$(python3 -c 'import uv; print(uv.find_uv_bin())')}"
export PATH="$PWD/.venv/bin:$PATH"
# Never let a developer's environment point the suite at a real store or system.
unset HUB_DATABASE_URL BILLING_DATABASE_URL DAGSTER_HOME
# Scratch files (SQLite stores, Dagster instances, sandboxes, PostgreSQL clusters) live in
# RAM where the machine has a tmpfs at /dev/shm: the suite commits tens of thousands of
# small SQLite transactions (Dagster's event log syncs each one to disk), and none of its
# tests is about surviving a power cut (the crash tests kill processes, which the page
# cache outlives). Removed when the run ends.
if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then
  TMPDIR="$(mktemp -d /dev/shm/hub-tests.XXXXXX)"
  chmod 711 "$TMPDIR"  # the PostgreSQL clusters the tests start run as the postgres user
  export TMPDIR
  trap 'rm -rf "$TMPDIR"' EXIT
fi
export HUB_DATA_DIR="${HUB_TEST_DATA_DIR:-$(mktemp -d)}"
# Bytecode is written and reused, whatever the shell says: with PYTHONDONTWRITEBYTECODE set
# every one of the suite's hundreds of Python processes (workers, `hub` commands, Dagster
# runs, listeners) compiled the project's modules again, and every worker rewrote every
# test module's asserts again. The project is compiled once here, before the workers race
# to do it (every tracked module; a speed-up only, so never a failure); `__pycache__` is
# ignored by git.
unset PYTHONDONTWRITEBYTECODE
{ git ls-files -z -- '*.py' | xargs -0 -r python -m compileall -q -j 0 >/dev/null; } || true

echo "== ruff";  ruff check . && ruff format --check .
echo "== mappings"; hub mappings check
# mypy and the pip-audit vulnerability check run inside pytest (tests/test_static_checks.py),
# beside the other tests: on 2 cores they cost the suite ~40 s less wall time that way.
echo "== pytest (with mypy and pip-audit)"
# Tests run in parallel worker processes (pytest-xdist): most of the suite's wall time is
# spent waiting on emulators, subprocesses and databases, so more workers than cores pay
# off. Tests go out one at a time (--maxschedchunk 1) in the order tests/conftest.py sets,
# longest first, so no worker is handed a run of end-to-end tests while the others idle.
# HUB_TEST_WORKERS=0 runs everything in this process.
pytest -p no:cacheprovider --timeout=600 --durations=25 \
  -n "${HUB_TEST_WORKERS:-6}" --dist load --maxschedchunk 1 "$@"

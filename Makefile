# Two commands on a fresh machine: `make demo` (set up, run the main job) and `make test`.
.PHONY: demo test dev setup

demo:
	@scripts/bootstrap.sh
	@.venv/bin/hub demo

test:
	@scripts/test.sh

# The Dagster UI on http://127.0.0.1:3000 with the repo's dagster.yaml; another port with
# `make dev PORT=3100` or HUB_UI_PORT=3100. HUB_LISTEN=1 also runs `hub listen` (change
# events in seconds) beside the UI, stopped with it; the instance is created first (two
# processes creating a fresh one at once left two alembic heads and the UI failed).
PORT ?= $(or $(HUB_UI_PORT),3000)
dev:
	@scripts/bootstrap.sh
	@DAGSTER_HOME=$${DAGSTER_HOME:-$$PWD/data/dagster_home}; mkdir -p $$DAGSTER_HOME; \
	  [ -f $$DAGSTER_HOME/dagster.yaml ] || cp dagster.yaml $$DAGSTER_HOME/; \
	  if [ "$${HUB_LISTEN:-0}" = 1 ]; then \
	    DAGSTER_HOME=$$DAGSTER_HOME .venv/bin/dagster instance migrate >/dev/null || exit 1; \
	    DAGSTER_HOME=$$DAGSTER_HOME .venv/bin/hub listen & LISTEN_PID=$$!; \
	    trap 'kill -TERM $$LISTEN_PID 2>/dev/null; wait $$LISTEN_PID' EXIT INT TERM; \
	    DAGSTER_HOME=$$DAGSTER_HOME .venv/bin/dg dev -h 127.0.0.1 -p $(PORT); \
	  else \
	    DAGSTER_HOME=$$DAGSTER_HOME exec .venv/bin/dg dev -h 127.0.0.1 -p $(PORT); \
	  fi

setup:
	@scripts/bootstrap.sh --with-test-deps

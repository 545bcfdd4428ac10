# Two commands on a fresh machine: `make demo` (set up, run the main job) and `make test`.
.PHONY: demo test dev setup

demo:
	@scripts/bootstrap.sh
	@.venv/bin/hub demo

test:
	@scripts/test.sh

# The Dagster UI on http://127.0.0.1:3000 with the repo's dagster.yaml.
dev:
	@scripts/bootstrap.sh
	@DAGSTER_HOME=$${DAGSTER_HOME:-$$PWD/data/dagster_home}; mkdir -p $$DAGSTER_HOME; \
	  [ -f $$DAGSTER_HOME/dagster.yaml ] || cp dagster.yaml $$DAGSTER_HOME/; \
	  DAGSTER_HOME=$$DAGSTER_HOME .venv/bin/dg dev -h 127.0.0.1 -p 3000

setup:
	@scripts/bootstrap.sh --with-test-deps

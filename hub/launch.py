"""Run the code location's jobs from the CLI against the real Dagster instance, so a run
started from a terminal is recorded in $DAGSTER_HOME and shows up in the UI like any other."""

from __future__ import annotations

from typing import Any

from dagster import DagsterInstance, ExecuteInProcessResult

from hub.dagster_home import ensure_dagster_home


def run_job(
    name: str,
    run_config: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
    log_level: str = "WARNING",
) -> ExecuteInProcessResult:
    """Execute ``name`` in this process, recorded in the instance. The console shows
    warnings and errors only: the full event log is in the UI."""
    ensure_dagster_home()
    from hub.definitions import defs

    job = defs.resolve_job_def(name)
    config = {"loggers": {"console": {"config": {"log_level": log_level}}}, **(run_config or {})}
    with DagsterInstance.get() as instance:
        return job.execute_in_process(
            run_config=config,
            instance=instance,
            tags={"hub/launched-by": "cli", **(tags or {})},
            raise_on_error=False,
        )

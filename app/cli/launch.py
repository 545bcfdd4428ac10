"""Run the code location's jobs from the CLI against the real Dagster instance, so a run
started from a terminal is recorded in $DAGSTER_HOME and shows up in the UI like any other."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dagster import AssetKey, DagsterInstance, Definitions, ExecuteInProcessResult

from app.dagster_home import ensure_dagster_home


def code_location() -> Definitions:
    """The definitions the CLI runs jobs from (tests substitute their own)."""
    from app.definitions import defs

    return defs


def run_job(
    name: str,
    run_config: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
    log_level: str = "WARNING",
    asset_selection: Sequence[AssetKey] | None = None,
) -> ExecuteInProcessResult:
    """Execute ``name`` in this process, recorded in the instance. The console shows
    warnings and errors only: the full event log is in the UI."""
    ensure_dagster_home()
    job = code_location().resolve_job_def(name)
    config = {"loggers": {"console": {"config": {"log_level": log_level}}}, **(run_config or {})}
    with DagsterInstance.get() as instance:
        return job.execute_in_process(
            run_config=config,
            instance=instance,
            tags={"hub/launched-by": "cli", **(tags or {})},
            raise_on_error=False,
            asset_selection=asset_selection,
        )


COUNT_FIELDS = ("read", "created", "updated", "unchanged", "conflicts", "quarantined", "failed")


def sync_counts(result: ExecuteInProcessResult) -> dict[str, dict[str, dict[str, int]]]:
    """{system: {entity: counts}} summed over the run's extract and push materializations
    (golden-record changes under the pseudo-system "hub")."""
    out: dict[str, dict[str, dict[str, int]]] = {}

    def add(system: str, entity: str, values: dict[str, Any]) -> None:
        slot = out.setdefault(system, {}).setdefault(entity, dict.fromkeys(COUNT_FIELDS, 0))
        for name in COUNT_FIELDS:
            slot[name] += int(values.get(name, 0) or 0)

    for event in result.get_asset_materialization_events():
        mat = event.materialization
        if len(mat.asset_key.path) != 2:
            continue
        system, name = mat.asset_key.path
        entity = name.removesuffix("_extract").removesuffix("_golden")
        if "read" in mat.metadata:  # an extract or a push
            counts = {k: v.value for k, v in mat.metadata.items() if k in COUNT_FIELDS}
            add(system, entity, counts)
        # golden-record changes: the extracts' merges, and the golden asset's quarantine
        # retry and delivery planning
        golden = mat.metadata.get("golden_changes")
        if golden is not None and isinstance(golden.value, dict):
            add("hub", entity, golden.value)
    return out


def failure_summary(result: ExecuteInProcessResult) -> str:
    """The failed steps of a run and why, in one line (the full story is in the UI)."""
    messages = []
    for event in result.all_events:
        if event.event_type_value != "STEP_FAILURE":
            continue
        data = event.event_specific_data
        user = getattr(data, "user_failure_data", None)
        error = getattr(data, "error", None)
        text = (user.description if user and user.description else None) or (
            error.message.strip() if error else "failed"
        )
        messages.append(f"{event.step_key}: {text}")
    return "; ".join(messages) or "see the run in the Dagster UI"

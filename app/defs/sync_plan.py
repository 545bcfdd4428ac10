"""``sync_plan``: the dry run of a sync as a Launchpad job (hub.sync.dry_run). It reads
every chosen system as a sync would, plans, and shows in the step's metadata what the sync
would send (creates, updates with each field before -> after, deactivations, tombstones),
then rolls everything back: no push, no golden record, no cursor. An op job, like the
resync: a preview must not look like a materialization in the asset graph."""

from typing import Any

from dagster import Config, Failure, MetadataValue, OpExecutionContext, job, op
from pydantic import Field

from app.choices import EntityItem, SystemName
from app.defs.failures import fails_fast
from app.defs.resources import SYSTEM_RESOURCES, HubStoreResource, connectors_from
from app.stop import stop_requested
from hub.sync.dry_run import DryRunReport, dry_run_sync

#: rows of the plan table in the metadata (the counts are always complete)
TABLE_ROWS = 200


class SyncPlanConfig(Config):
    """What to preview: entities and systems (empty: all of them)."""

    entities: list[EntityItem] = Field(default=[], description="empty: every entity")
    systems: list[SystemName] = Field(default=[], description="empty: every configured system")


def plan_table(report: DryRunReport, rows: int = TABLE_ROWS) -> str:
    total = sum(sum(ops.values()) for ops in report.planned.values())
    if not total:
        return "Nothing to send."
    lines = [
        f"{min(total, rows, len(report.pushes))} of {total} planned push(es) shown.",
        "",
        "| system | entity | hub id | operation | changes (before -> after) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for push in report.pushes[:rows]:
        changes = "; ".join(
            f"{name}: {c['before']!r} -> {c['after']!r}" for name, c in push["changes"].items()
        ).replace("|", "\\|")
        operation = push["operation"] + (" (held)" if push["held"] else "")
        lines.append(
            f"| {push['system']} | {push['entity']} | {push['key']} | {operation} | {changes} |"
        )
    return "\n".join(lines)


@op(
    description="Read and plan as a sync would, show what it would send, write nothing.",
    required_resource_keys={"hub_store", *SYSTEM_RESOURCES},
    tags={"hub/kind": "sync_plan"},
)
@fails_fast
def plan_sync(context: OpExecutionContext, config: SyncPlanConfig) -> dict[str, Any]:
    store: HubStoreResource = context.resources.hub_store
    connectors = connectors_from(context.resources, [str(s) for s in config.systems], context.log)
    try:
        report = dry_run_sync(
            store.engine(),
            connectors,
            [str(e) for e in config.entities] or None,
            [str(s) for s in config.systems] or None,
            should_stop=stop_requested,
        )
    finally:
        for connector in connectors.values():
            connector.close()
    summary = report.as_dict()
    context.add_output_metadata(
        {
            "planned": MetadataValue.json(summary["planned"]),
            "plan": MetadataValue.md(plan_table(report)),
            "tombstoned": MetadataValue.json(report.tombstoned[:TABLE_ROWS]),
            "written": MetadataValue.text("nothing: a dry run"),
        }
    )
    if report.errors:
        raise Failure(description="; ".join(report.errors))
    return summary


@job(
    name="sync_plan",
    description="Dry run of a sync: what it would create, update (field before -> after) "
    "and deactivate, shown in the step's metadata; nothing is written anywhere.",
    tags={"hub/kind": "sync_plan"},
)
def sync_plan_job() -> None:
    plan_sync()

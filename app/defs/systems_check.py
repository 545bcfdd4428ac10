"""``systems_check``: `hub systems check` as a Launchpad job. Every configured system is
reached through its resource, its declared fields are read, and every mapped field it
lacks is listed in the step's metadata; the run fails when one is missing or a system is
unreachable, before a sync touches anything."""

from typing import Any

from dagster import Config, Failure, MetadataValue, OpExecutionContext, job, op
from pydantic import Field

from app.choices import SystemName
from app.defs.failures import fails_fast
from app.defs.resources import SYSTEM_RESOURCES, connectors_from
from hub.systems_check import SystemReport, check_connector


class SystemsCheckConfig(Config):
    """Which systems to check (empty: every configured one)."""

    systems: list[SystemName] = Field(default=[], description="empty: every configured system")


def report_table(reports: list[SystemReport]) -> str:
    lines = ["| system | state | detail | problems |", "| --- | --- | --- | --- |"]
    for r in reports:
        state = "OK" if r.ok else "FAILED"
        problems = "<br>".join(p.replace("|", "\\|") for p in r.problems) or "none"
        lines.append(f"| {r.system} | {state} | {r.detail} | {problems} |")
    return "\n".join(lines)


@op(
    description="Reach every configured system and name each mapped field it lacks.",
    required_resource_keys={"hub_store", *SYSTEM_RESOURCES},
    tags={"hub/kind": "systems_check"},
)
@fails_fast
def check_systems_op(context: OpExecutionContext, config: SystemsCheckConfig) -> dict[str, Any]:
    connectors = connectors_from(context.resources, [str(s) for s in config.systems], context.log)
    reports = []
    try:
        for system, connector in connectors.items():
            reports.append(check_connector(system, connector))
    finally:
        for connector in connectors.values():
            connector.close()
    context.add_output_metadata({"systems": MetadataValue.md(report_table(reports))})
    failed = [r for r in reports if not r.ok]
    if failed:
        raise Failure(
            description="; ".join(f"{r.system}: {r.detail}" for r in failed),
            metadata={"problems": MetadataValue.json([p for r in failed for p in r.problems])},
            allow_retries=False,
        )
    return {r.system: r.detail for r in reports}


@job(
    name="systems_check",
    description="Before a first sync: every configured system reached and each mapped field "
    "it lacks named, with the mapping file, the line and the fix.",
    tags={"hub/kind": "systems_check"},
)
def systems_check_job() -> None:
    check_systems_op()

"""The resync as a Dagster op job with typed run config (see DAGSTER_NOTES: a corrective,
parameterised write-back is an op job, not an asset materialisation - a resync of twelve
ids must not look like a full sync in the asset graph).

The Launchpad shows every field with its default and description; ``entity`` and
``systems`` are enums, so a typo is refused before the run starts. There is no way to push
without re-reading the owners first (hub.sync.resync)."""

from datetime import datetime

from dagster import (
    Config,
    Failure,
    MetadataValue,
    OpExecutionContext,
    job,
    op,
)
from pydantic import Field, field_validator

from app.choices import EntityName, SystemName
from app.defs.failures import fails_fast
from app.defs.resources import SYSTEM_RESOURCES, HubStoreResource
from app.progress import step_reporter
from app.stop import stop_requested
from connectors.base import Connector
from connectors.errors import AuthError, PermanentError
from hub.sync.engine import SyncEngine
from hub.sync.resync import ResyncReport, ResyncRequest, ResyncRequestError, resync


class ResyncConfig(Config):
    """Which records to put right, where, and how."""

    entity: EntityName = Field(default="customer", description="the entity to resync")
    # not "keys": a Config field may not shadow Mapping.keys (dagster calls dict(config))
    hub_ids: list[str] = Field(
        default=[], description="hub ids of the records (e.g. CUS-0000042); or give a window"
    )
    systems: list[SystemName] = Field(  # an enum in the Launchpad: refused before launch
        default=[],
        description=f"target systems ({', '.join(SYSTEM_RESOURCES)}); empty = every system "
        "mapping the entity",
    )
    window_start: str = Field(
        default="",
        description="ISO 8601 UTC, e.g. 2025-06-30T00:00:00Z: golden records changed since",
    )
    window_end: str = Field(default="", description="ISO 8601 UTC, exclusive; empty = now")
    dry_run: bool = Field(default=False, description="plan and report, send nothing")

    @field_validator("systems", mode="before")
    @classmethod
    def _known_systems(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(SYSTEM_RESOURCES))
        if unknown:
            raise ValueError(f"unknown system(s) {unknown}; choose from {sorted(SYSTEM_RESOURCES)}")
        return value

    @field_validator("window_start", "window_end")
    @classmethod
    def _iso_utc(cls, value: str) -> str:
        if value:
            parse_utc(value)
        return value

    def request(self) -> ResyncRequest:
        return ResyncRequest(
            entity=self.entity,
            keys=list(self.hub_ids),
            systems=[str(system) for system in self.systems],
            start=parse_utc(self.window_start) if self.window_start else None,
            end=parse_utc(self.window_end) if self.window_end else None,
            dry_run=self.dry_run,
        )


def parse_utc(text: str) -> datetime:
    """An ISO 8601 timestamp with its zone (Z or an offset); a naive one is refused,
    because guessing the zone of an incident window moves it by hours."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is not an ISO 8601 timestamp; write e.g. 2025-06-30T00:00:00Z"
        ) from None
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone; append Z for UTC")
    return moment


def _markdown(report: ResyncReport) -> str:
    rows = ["| system | key | payload |", "| --- | --- | --- |"]
    for system, samples in sorted(report.samples.items()):
        for sample in samples:
            payload = ", ".join(f"{k}={v}" for k, v in list(sample["payload"].items())[:6])
            rows.append(f"| {system} | {sample['key']} | {payload[:160]} |")
    return "\n".join(rows)


def _undelivered_text(undelivered: dict[str, dict[str, str]], shown: int = 10) -> str:
    total = sum(len(keys) for keys in undelivered.values())
    lines = [f"{total} chosen record(s) were not delivered:"]
    for system, keys in sorted(undelivered.items()):
        for hub_id, reason in list(sorted(keys.items()))[:shown]:
            lines.append(f"{system} {hub_id}: {reason}")
        if len(keys) > shown:
            lines.append(f"{system}: and {len(keys) - shown} more (see `hub quarantine list`)")
    return "\n".join(lines)


@op(
    description="Re-read the owners of the chosen records (by key or change window), then "
    "push the golden records to the chosen systems; dry run plans only.",
    required_resource_keys={"hub_store", *SYSTEM_RESOURCES},
    tags={"hub/kind": "resync"},
)
@fails_fast
def resync_records(context: OpExecutionContext, config: ResyncConfig) -> dict[str, object]:
    store: HubStoreResource = context.resources.hub_store
    wanted = [str(system) for system in config.systems] or list(SYSTEM_RESOURCES)
    connectors: dict[str, Connector] = {}
    for system in wanted:
        try:
            connectors[system] = getattr(context.resources, system).connector()
        except (ValueError, AuthError, PermanentError) as exc:
            if config.systems:  # asked for by name: not being able to reach it is an error
                raise Failure(description=str(exc), allow_retries=False) from exc
            context.log.info(f"{system} not configured, skipped: {exc}")
    engine = SyncEngine(
        store.engine(),
        connectors,
        should_stop=stop_requested,
        progress=step_reporter(context),
    )
    try:
        report = resync(engine, config.request())
    except ResyncRequestError as exc:
        raise Failure(description=str(exc), allow_retries=False) from exc
    finally:
        for connector in connectors.values():
            connector.close()
    context.add_output_metadata(
        {
            "entity": config.entity,
            "dry_run": config.dry_run,
            "selected": MetadataValue.int(report.selected),
            "missing_keys": MetadataValue.json(report.missing_keys[:50]),
            "planned": MetadataValue.json(report.planned),
            "pushed": MetadataValue.json(report.pushed),
            "repulled": MetadataValue.json(report.repulled),
            "undelivered": MetadataValue.json(report.undelivered),
            "sample": MetadataValue.md(_markdown(report)),
        }
    )
    if report.errors:
        raise Failure(description="; ".join(report.errors))
    if report.undelivered:  # a chosen record a target still lacks: the run is not a repair
        raise Failure(
            description=_undelivered_text(report.undelivered),
            metadata={"undelivered": MetadataValue.json(report.undelivered)},
            allow_retries=False,
        )
    if report.missing_keys:  # a chosen record not delivered: the run must not look green
        shown = ", ".join(report.missing_keys[:20])
        more = f" and {len(report.missing_keys) - 20} more" if len(report.missing_keys) > 20 else ""
        raise Failure(
            description=f"{len(report.missing_keys)} {config.entity} hub id(s) are not in the hub "
            f"(never synced, or mistyped): {shown}{more}; the {report.selected} known record(s) "
            "were handled",
            metadata={"missing_keys": MetadataValue.json(report.missing_keys[:50])},
            allow_retries=False,
        )
    return report.as_dict()


@job(
    name="resync",
    description="Targeted resync: put chosen records right in chosen systems after an "
    "incident (keys from findings, or a time window).",
    tags={"hub/kind": "resync"},
)
def resync_job() -> None:
    resync_records()

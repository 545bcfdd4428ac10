"""The resync as a Dagster op job with typed run config (see DAGSTER_NOTES: a corrective,
parameterised write-back is an op job, not an asset materialisation - a resync of twelve
ids must not look like a full sync in the asset graph).

The Launchpad shows every field with its default and description; ``entity`` and
``systems`` are enums, so a typo is refused before the run starts. There is no way to push
without re-reading the owners first (hub.sync.resync)."""

import enum
from datetime import datetime
from typing import Any, cast

from dagster import (
    Config,
    Failure,
    MetadataValue,
    OpExecutionContext,
    job,
    op,
)
from pydantic import Field, field_validator, model_validator

from app.choices import EntityItem, EntityName, SystemName
from app.defs.failures import fails_fast
from app.defs.resources import SYSTEM_RESOURCES, HubStoreResource, connectors_from
from app.progress import step_reporter
from app.stop import stop_requested
from connectors.base import Connector
from hub.store.db import session_factory
from hub.sync.engine import SyncEngine
from hub.sync.repair_scope import FIXABLE_KINDS, RepairScope, RepairScopeError, select_repairs
from hub.sync.resync import ResyncReport, ResyncRequest, ResyncRequestError, resync
from hub.sync.triage import NeedsAPerson

#: Lists of enums (Dagster's config schema takes no ``list[Literal]``): shown as enums in
#: the Launchpad and checked before launch.
FindingKind = enum.StrEnum("FindingKind", {kind: kind for kind in FIXABLE_KINDS})  # type: ignore[misc]
#: rows of the plan and needs-a-person tables in a run's metadata (large metadata breaks
#: the UI's transport); the totals are always given
TABLE_ROWS = 200


class ResyncConfig(Config):
    """Which records to put right, where, and how: hub ids or a golden-record change
    window (one ``entity``), or the records of open findings (``from_findings`` /
    ``from_latest_reconciliation``, narrowed by ``entities``, ``systems``,
    ``finding_kinds`` and ``opened_since``). A dry run (the default) plans and shows the
    plan; set ``dry_run: false`` to push."""

    entity: EntityName = Field(
        default="customer", description="the entity to resync by hub ids or window"
    )
    # not "keys": a Config field may not shadow Mapping.keys (dagster calls dict(config))
    hub_ids: list[str] = Field(
        default=[], description="hub ids of the records (e.g. CUS-0000042); or give a window"
    )
    systems: list[SystemName] = Field(  # an enum in the Launchpad: refused before launch
        default=[],
        description=f"target systems ({', '.join(SYSTEM_RESOURCES)}); empty = every system "
        "mapping the entity (from findings: every system with findings)",
    )
    window_start: str = Field(
        default="",
        description="ISO 8601 UTC, e.g. 2025-06-30T00:00:00Z: golden records changed since",
    )
    window_end: str = Field(default="", description="ISO 8601 UTC, exclusive; empty = now")
    from_findings: bool = Field(
        default=False,
        description="resync the records of open findings a push can repair (instead of "
        "hub ids or a window); conflicts and drift on a field's owner are listed as "
        "needing a person and never pushed",
    )
    from_latest_reconciliation: bool = Field(
        default=False,
        description="like from_findings, limited to the open findings the last completed "
        "reconciliation observed",
    )
    entities: list[EntityItem] = Field(
        default=[],
        description="from findings: the entities to take (empty = every entity); run parents first",
    )
    finding_kinds: list[FindingKind] = Field(
        default=cast(Any, list(FIXABLE_KINDS)),  # strings: Dagster serialises no Enum default
        description=f"from findings: the kinds to take ({', '.join(FIXABLE_KINDS)})",
    )
    opened_since: str = Field(
        default="",
        description="from findings: only findings first seen at or after this ISO 8601 "
        "moment with its zone, e.g. 2025-06-30T00:00:00Z; empty = any",
    )
    dry_run: bool = Field(
        default=True,
        description="plan and show the plan (the run's metadata), send nothing; false to push",
    )

    @field_validator("systems", mode="before")
    @classmethod
    def _known_systems(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(SYSTEM_RESOURCES))
        if unknown:
            raise ValueError(f"unknown system(s) {unknown}; choose from {sorted(SYSTEM_RESOURCES)}")
        return value

    @field_validator("finding_kinds", mode="before")
    @classmethod
    def _repairable_kinds(cls, value: list[str]) -> list[str]:
        wrong = sorted({str(k) for k in value} - set(FIXABLE_KINDS))
        if wrong:
            raise ValueError(
                f"finding kind(s) {wrong} are not repaired by a resync; choose from "
                f"{list(FIXABLE_KINDS)} (the others need a person: `hub findings`)"
            )
        return value

    @field_validator("window_start", "window_end", "opened_since")
    @classmethod
    def _iso_utc(cls, value: str) -> str:
        if value:
            parse_utc(value)
        return value

    @model_validator(mode="after")
    def _one_way_to_choose(self) -> "ResyncConfig":
        if self.from_findings_mode and (self.hub_ids or self.window_start or self.window_end):
            raise ValueError(
                "choose records one way: hub_ids or a window, or from_findings / "
                "from_latest_reconciliation (not both)"
            )
        if not self.from_findings_mode and (self.entities or self.opened_since):
            raise ValueError(
                "entities and opened_since select findings: set from_findings: true "
                "(or from_latest_reconciliation: true)"
            )
        return self

    @property
    def from_findings_mode(self) -> bool:
        return self.from_findings or self.from_latest_reconciliation

    def request(self) -> ResyncRequest:
        return ResyncRequest(
            entity=self.entity,
            keys=list(self.hub_ids),
            systems=[str(system) for system in self.systems],
            start=parse_utc(self.window_start) if self.window_start else None,
            end=parse_utc(self.window_end) if self.window_end else None,
            dry_run=self.dry_run,
        )

    def repair_scope(self, engine: SyncEngine) -> RepairScope:
        """The open findings this config chooses, triaged and grouped (the selection
        ``hub resync --from-findings`` uses)."""
        with session_factory(engine.engine)() as s:
            return select_repairs(
                s,
                list(engine.specs.values()),
                entities=[str(e) for e in self.entities] or None,
                systems=[str(system) for system in self.systems] or None,
                kinds=[str(k) for k in self.finding_kinds] or None,
                opened_since=parse_utc(self.opened_since) if self.opened_since else None,
                latest_reconciliation=self.from_latest_reconciliation,
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


def _cell(value: Any, width: int = 60) -> str:
    text = "" if value is None else str(value)
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def _change_text(change: dict[str, Any]) -> str:
    if change.get("kind") == "missing" or not change.get("field"):
        return "missing there: created"
    return f"{change['field']}: {change.get('before')!r} -> {change.get('after')!r}"


def plan_markdown(reports: list[tuple[str, ResyncReport]], rows: int = TABLE_ROWS) -> str:
    """The planned pushes of every (entity, report) as one Markdown table, capped at
    ``rows`` with the total: system, hub id, what changes (before -> after, where the
    findings say) and the payload the target gets."""
    total = sum(sum(report.planned.values()) for _, report in reports)
    head = [
        "| entity | system | hub id | changes (before -> after) | payload |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines: list[str] = []
    for entity, report in reports:
        for row in report.plan:
            if len(lines) >= rows:
                break
            changes = "; ".join(_change_text(c) for c in row.get("changes", []))
            payload = ", ".join(f"{k}={v}" for k, v in row["payload"].items())
            lines.append(
                f"| {entity} | {row['system']} | {_cell(row['key'])} | {_cell(changes, 160)} "
                f"| {_cell(payload, 200)} |"
            )
    listed = len(lines)
    if not total:
        title = "Nothing to push."
    elif listed < total:
        title = f"{listed} of {total} planned push(es) shown (the counts are in `planned`)."
    else:
        title = f"{total} planned push(es)."
    return "\n".join([title, "", *head, *lines]) if total else title


def needs_a_person_markdown(held: list[NeedsAPerson], rows: int = TABLE_ROWS) -> str:
    """Findings no resync pushes (conflicts, drift on the field's owner), with why."""
    title = f"{len(held)} finding(s) need a person and were not pushed"
    if len(held) > rows:
        title += f" ({rows} shown; all of them: `hub findings --open`)"
    lines = [
        f"{title}.",
        "",
        "| finding | entity | hub id | system | kind | field | reason |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for h in held[:rows]:
        cells = (h.finding_id[:12], h.entity, h.key, h.system, h.kind, h.field, h.reason)
        lines.append(
            "| " + " | ".join(_cell(c, 300 if c is h.reason else 60) for c in cells) + " |"
        )
    return "\n".join(lines)


def _undelivered_text(undelivered: dict[str, dict[str, str]], shown: int = 10) -> str:
    total = sum(len(keys) for keys in undelivered.values())
    lines = [f"{total} chosen record(s) were not delivered:"]
    for system, keys in sorted(undelivered.items()):
        for hub_id, reason in list(sorted(keys.items()))[:shown]:
            lines.append(f"{system} {hub_id}: {reason}")
        if len(keys) > shown:
            lines.append(f"{system}: and {len(keys) - shown} more (see `hub quarantine list`)")
    return "\n".join(lines)


def _connectors(context: OpExecutionContext, config: ResyncConfig) -> dict[str, Connector]:
    return connectors_from(context.resources, [str(s) for s in config.systems], context.log)


def _requests(
    context: OpExecutionContext, config: ResyncConfig, engine: SyncEngine
) -> tuple[list[ResyncRequest], RepairScope | None]:
    """One request (hub ids or a window), or one per (entity, system) of the chosen
    open findings, parents first."""
    if not config.from_findings_mode:
        return [config.request()], None
    try:
        scope = config.repair_scope(engine)
    except RepairScopeError as exc:
        raise Failure(description=str(exc), allow_retries=False) from exc
    context.log.info(
        f"from findings: {len(scope.groups)} (entity, system) group(s) to resync, "
        f"{len(scope.needs_a_person)} finding(s) need a person"
    )
    requests = [
        ResyncRequest(
            entity=group.entity,
            keys=group.keys,
            systems=[group.system],
            dry_run=config.dry_run,
            changes=group.changes,
        )
        for group in scope.groups
    ]
    return requests, scope


@op(
    description="Re-read the owners of the chosen records (by hub id, change window or "
    "open findings), then push the golden records to the chosen systems; a dry run (the "
    "default) plans only and shows the plan in the step's metadata.",
    required_resource_keys={"hub_store", *SYSTEM_RESOURCES},
    tags={"hub/kind": "resync"},
)
@fails_fast
def resync_records(context: OpExecutionContext, config: ResyncConfig) -> dict[str, object]:
    store: HubStoreResource = context.resources.hub_store
    connectors = _connectors(context, config)
    reports: list[tuple[ResyncRequest, ResyncReport]] = []
    failures: list[str] = []
    progress = step_reporter(context)
    try:
        requests, scope = _requests(
            context, config, SyncEngine(store.engine(), connectors, should_stop=stop_requested)
        )
        for request in requests:
            # a fresh engine per request: its errors and counts are the request's own
            engine = SyncEngine(
                store.engine(), connectors, should_stop=stop_requested, progress=progress
            )
            try:
                reports.append((request, resync(engine, request)))
            except ResyncRequestError as exc:
                if scope is None:
                    raise Failure(description=str(exc), allow_retries=False) from exc
                failures.append(f"{request.entity} to {', '.join(request.systems)}: {exc}")
    finally:
        for connector in connectors.values():
            connector.close()
    held = scope.needs_a_person if scope is not None else []
    context.add_output_metadata(_metadata(config, reports, scope))
    errors = failures + [e for _, report in reports for e in report.errors]
    undelivered = _merged_undelivered(reports)
    missing = [(r.entity, k) for _, r in reports for k in r.missing_keys]
    if errors:
        raise Failure(description="; ".join(errors))
    if undelivered:  # a chosen record a target still lacks: the run is not a repair
        raise Failure(
            description=_undelivered_text(undelivered),
            metadata={"undelivered": MetadataValue.json(undelivered)},
            allow_retries=False,
        )
    if missing:  # a chosen record not delivered: the run must not look green
        entities = sorted({entity for entity, _ in missing})
        keys = [key for _, key in missing]
        shown = ", ".join(keys[:20])
        more = f" and {len(keys) - 20} more" if len(keys) > 20 else ""
        selected = sum(report.selected for _, report in reports)
        raise Failure(
            description=f"{len(keys)} {'/'.join(entities)} hub id(s) are not in the hub "
            f"(never synced, or mistyped): {shown}{more}; the {selected} known record(s) "
            "were handled",
            metadata={"missing_keys": MetadataValue.json(keys[:50])},
            allow_retries=False,
        )
    if scope is None:
        return reports[0][1].as_dict()
    return {
        "dry_run": config.dry_run,
        "selected": sum(report.selected for _, report in reports),
        "reconciliation_run": scope.reconciliation_run,
        "groups": [
            {**report.as_dict(), "systems": list(request.systems)} for request, report in reports
        ],
        "needs_a_person": [h.as_dict() for h in held],
    }


def _merged_undelivered(
    reports: list[tuple[ResyncRequest, ResyncReport]],
) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for _, report in reports:
        for system, keys in report.undelivered.items():
            out.setdefault(system, {}).update(keys)
    return out


def _metadata(
    config: ResyncConfig,
    reports: list[tuple[ResyncRequest, ResyncReport]],
    scope: RepairScope | None,
) -> dict[str, Any]:
    def per_group(attr: str) -> Any:
        if scope is None:
            return getattr(reports[0][1], attr) if reports else {}
        return {
            f"{request.entity}/{','.join(request.systems)}": getattr(report, attr)
            for request, report in reports
        }

    plan = plan_markdown([(request.entity, report) for request, report in reports])
    meta: dict[str, Any] = {
        "mode": (
            "latest reconciliation"
            if config.from_latest_reconciliation
            else "findings"
            if config.from_findings
            else "hub ids"
            if config.hub_ids
            else "window"
        ),
        "entity": ", ".join(dict.fromkeys(r.entity for r, _ in reports)) or config.entity,
        "dry_run": config.dry_run,
        "selected": MetadataValue.int(sum(report.selected for _, report in reports)),
        "missing_keys": MetadataValue.json([k for _, r in reports for k in r.missing_keys][:50]),
        "planned": MetadataValue.json(per_group("planned")),
        "pushed": MetadataValue.json(per_group("pushed")),
        "repulled": MetadataValue.json(per_group("repulled")),
        "undelivered": MetadataValue.json(_merged_undelivered(reports)),
        "plan": MetadataValue.md(plan),
        # the same table under the name earlier runs used
        "sample": MetadataValue.md(plan),
    }
    if scope is not None:
        meta["groups"] = MetadataValue.int(len(scope.groups))
        meta["needs_a_person_count"] = MetadataValue.int(len(scope.needs_a_person))
        meta["needs_a_person"] = MetadataValue.md(needs_a_person_markdown(scope.needs_a_person))
        if scope.reconciliation_run:
            meta["reconciliation_run"] = MetadataValue.text(scope.reconciliation_run)
    return meta


@job(
    name="resync",
    description="Targeted resync: put chosen records right in chosen systems after an "
    "incident (hub ids, a time window, or open findings by filter). Dry run by default: "
    "the plan is in the step's metadata; set dry_run: false to push.",
    tags={"hub/kind": "resync"},
)
def resync_job() -> None:
    resync_records()

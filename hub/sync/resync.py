"""Targeted resync: put chosen records right in chosen systems after an incident.

A resync is corrective, not routine: it names an entity, the records (hub keys, or the
golden records changed in a time window) and the target systems, and it pushes the golden
record to them even when the hub believes they already hold it (their fingerprints are
forgotten first, because the incident is exactly the case where that belief is wrong).

Owner first, always: the systems that own fields of the chosen records are read again
for exactly those records and merged by ownership *before* anything is planned, so a push
never carries a golden value older than the owner's current one (an invoice line billing
changed since the last sync, a SKU the PIM retired). When an owner cannot be read, nothing
is pushed. ``dry_run`` re-reads and plans in a transaction that is rolled back: it reports
what a real run would send and changes nothing in the hub or any system.

Every planned push is listed in ``ResyncReport.plan`` (up to :data:`PLAN_ROWS`): the
target, the hub id, the payload, and when the request came from findings
(hub.sync.repair_scope) each finding's field with the target's value before and the
golden value (after the owners were re-read) the push carries.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.errors import ConnectorError
from hub.model import ENTITIES
from hub.store import findings, repo
from hub.store.models import GoldenRecord, OutboxEntry, QuarantineEntry
from hub.sync import deletions
from hub.sync.engine import SyncEngine
from hub.sync.fingerprints import with_claims
from hub.sync.lock import store_lock

#: pushes shown per system in a report (the full plan can be large)
SAMPLE = 5
#: planned pushes listed in a report's ``plan`` (the counts in ``planned`` are complete)
PLAN_ROWS = 200


class ResyncRequestError(ValueError):
    """The request cannot be run as given (unknown entity or system, nothing selected)."""


@dataclass
class ResyncRequest:
    entity: str
    keys: Sequence[str] = ()
    systems: Sequence[str] = ()
    start: datetime | None = None
    end: datetime | None = None
    dry_run: bool = False
    #: per hub id, what findings say will change (hub.sync.repair_scope.RepairGroup):
    #: shown in the plan as before -> after
    changes: Mapping[str, Sequence[Mapping[str, Any]]] = field(default_factory=dict)


@dataclass
class ResyncReport:
    entity: str
    dry_run: bool
    selected: int = 0
    missing_keys: list[str] = field(default_factory=list)
    #: chosen records their owner deleted: never pushed (``hub tombstones restore``)
    tombstoned: list[str] = field(default_factory=list)
    repulled: dict[str, int] = field(default_factory=dict)
    planned: dict[str, int] = field(default_factory=dict)
    pushed: dict[str, dict[str, int]] = field(default_factory=dict)
    samples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    #: chosen records a target still does not hold after the push, with the reason
    #: (rejected and quarantined, or still waiting in the outbox)
    undelivered: dict[str, dict[str, str]] = field(default_factory=dict)
    #: the first PLAN_ROWS planned pushes: system, key, payload, changes (before/after);
    #: metadata only, not part of as_dict (the CLI's JSON stays as it was)
    plan: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "entity": self.entity,
            "dry_run": self.dry_run,
            "selected": self.selected,
            "missing_keys": self.missing_keys,
            "tombstoned": self.tombstoned,
            "repulled": self.repulled,
            "planned": self.planned,
            "pushed": self.pushed,
            "samples": self.samples,
            "errors": self.errors,
            "undelivered": self.undelivered,
        }


def validate_request(engine: SyncEngine, request: ResyncRequest) -> list[str]:
    """The target systems; raises ResyncRequestError naming what to fix."""
    if request.entity not in ENTITIES:
        raise ResyncRequestError(
            f"entity {request.entity!r} is unknown; choose one of {sorted(ENTITIES)}"
        )
    mapped = engine.systems_for(request.entity)
    unknown = [s for s in request.systems if s not in mapped]
    if unknown:
        raise ResyncRequestError(
            f"{request.entity} has no mapping for {unknown}; systems with one: {mapped}"
        )
    targets = [s for s in (request.systems or mapped) if s in engine.connectors]
    if not targets:
        raise ResyncRequestError(
            f"none of {list(request.systems or mapped)} is configured for {request.entity}: "
            "start the sandbox or set the systems' environment variables"
        )
    if not request.keys and request.start is None and request.end is None:
        raise ResyncRequestError(
            "say which records: give keys (hub ids) or a time window (start and/or end)"
        )
    if request.start and request.end and request.start >= request.end:
        raise ResyncRequestError(f"window start {request.start} is not before end {request.end}")
    return targets


def resync(engine: SyncEngine, request: ResyncRequest) -> ResyncReport:
    """Run one resync under the entity's sync lock (a routine sync never interleaves)."""
    targets = validate_request(engine, request)
    report = ResyncReport(entity=request.entity, dry_run=request.dry_run)
    with store_lock(engine.engine, f"sync:{request.entity}", wait_seconds=engine.lock_wait_seconds):
        keys = _select_keys(engine, request, report)
        report.selected = len(keys)
        if request.dry_run:
            # one transaction, never committed: the re-read merges and the forgotten
            # fingerprints make it plan exactly what a real run would, and nothing sticks
            with engine.sessions() as s:
                if _reread_owners(engine, s, request.entity, keys, report):
                    _plan(engine, s, request, keys, targets, report)
                s.rollback()
        else:
            with engine.sessions.begin() as s:
                reread = _reread_owners(engine, s, request.entity, keys, report)
            if reread:
                with engine.sessions.begin() as s:
                    _plan(engine, s, request, keys, targets, report)
                _push(engine, request.entity, keys, targets, report)
    report.errors.extend(engine.errors)
    return report


def _push(
    engine: SyncEngine, entity: str, keys: list[str], targets: list[str], report: ResyncReport
) -> None:
    for system in targets:
        engine.push(system, entity)
        counts = engine.counts[system][entity]
        report.pushed[system] = {
            "created": counts.created,
            "updated": counts.updated,
            "unchanged": counts.unchanged,
            "failed": counts.failed,
            "quarantined": counts.quarantined,
        }
    _resolve_conflicts(engine, entity, keys, targets)
    report.undelivered = _undelivered(engine, entity, keys, targets)


def _undelivered(
    engine: SyncEngine, entity: str, keys: list[str], targets: list[str]
) -> dict[str, dict[str, str]]:
    """What each target still lacks of the chosen records: an exit code of 0 must mean
    every chosen record arrived."""
    out: dict[str, dict[str, str]] = {}
    with engine.sessions() as s:
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            waiting = s.execute(
                select(OutboxEntry.system, OutboxEntry.hub_id, OutboxEntry.last_error).where(
                    OutboxEntry.entity == entity,
                    OutboxEntry.system.in_(targets),
                    OutboxEntry.hub_id.in_(chunk),
                )
            )
            for system, hub_id, error in waiting:
                out.setdefault(system, {})[hub_id] = error or "still waiting in the outbox"
            held = s.execute(
                select(
                    QuarantineEntry.system, QuarantineEntry.external_key, QuarantineEntry.reason
                ).where(
                    QuarantineEntry.entity == entity,
                    QuarantineEntry.direction == "outbound",
                    QuarantineEntry.status == "open",
                    QuarantineEntry.system.in_(targets),
                    QuarantineEntry.external_key.in_(chunk),
                )
            )
            for system, hub_id, reason in held:
                out.setdefault(system, {})[hub_id] = reason
    return out


def _resolve_conflicts(
    engine: SyncEngine, entity: str, keys: list[str], targets: list[str]
) -> None:
    """A conflict finding (a non-owner changed an owned field) is over once the golden
    record has been delivered to that system: resolve those whose push went through."""
    if not keys:
        return
    with engine.sessions.begin() as s:
        for system in targets:
            undelivered = set(
                s.scalars(
                    select(OutboxEntry.hub_id).where(
                        OutboxEntry.system == system,
                        OutboxEntry.entity == entity,
                        OutboxEntry.hub_id.in_(keys),
                    )
                )
            )
            delivered = [k for k in keys if k not in undelivered]
            findings.resolve_open(s, entity=entity, system=system, kind="conflict", keys=delivered)


def _owners(engine: SyncEngine, entity: str) -> list[str]:
    owners = set(engine.owners[entity].values())
    return sorted(s for s in owners if s in engine.connectors)


def _reread_owners(
    engine: SyncEngine, s: Session, entity: str, keys: list[str], report: ResyncReport
) -> bool:
    """Read the chosen records again from every system that owns fields of them and merge
    them by ownership, so the golden record holds each owner's current values before
    anything is planned. False (and nothing may be pushed) when an owner cannot be read:
    pushing without knowing the owner's current value is how an owner's change is undone."""
    ok = True
    for system in _owners(engine, entity):
        connector = engine.connectors[system]
        read = 0
        try:
            for batch in connector.read_by_keys(entity, keys):
                engine._ingest(s, system, entity, batch.records)
                read += len(batch.records)
        except ConnectorError as exc:
            report.errors.append(
                f"re-reading {entity} from its owner {exc}; nothing was pushed (an owner's "
                "current values must be known before the golden record goes out)"
            )
            ok = False
        report.repulled[system] = read
    # what the re-read empties elsewhere (beyond the chosen targets) waits for the guard
    deletions.settle_blanking(s, entity, engine.guard)
    return ok


def _select_keys(engine: SyncEngine, request: ResyncRequest, report: ResyncReport) -> list[str]:
    with engine.sessions() as s:
        if request.keys:
            found = repo.golden_for(s, request.entity, list(request.keys))
            report.missing_keys = [k for k in request.keys if k not in found]
            report.tombstoned = [k for k in request.keys if k in found and found[k].deleted]
            return [k for k in request.keys if k in found and not found[k].deleted]
        stmt = select(GoldenRecord.hub_id).where(
            GoldenRecord.entity == request.entity, GoldenRecord.deleted.is_(False)
        )
        if request.start is not None:
            stmt = stmt.where(GoldenRecord.updated_at >= request.start)
        if request.end is not None:
            stmt = stmt.where(GoldenRecord.updated_at < request.end)
        return list(s.scalars(stmt.order_by(GoldenRecord.hub_id)))


def _plan(
    engine: SyncEngine,
    s: Session,
    request: ResyncRequest,
    keys: list[str],
    targets: list[str],
    report: ResyncReport,
) -> None:
    planned: Counter[str] = Counter()
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        goldens = repo.golden_for(s, request.entity, chunk)
        for hub_id in chunk:
            if goldens[hub_id].deleted:  # its owner's delete was read by the re-read
                report.tombstoned.append(hub_id)
                continue
            for system in targets:  # what the hub believes each target holds
                repo.forget_fingerprint(s, system, request.entity, hub_id)
                repo.forget_fingerprint(s, with_claims(system), request.entity, hub_id)
            pushes = engine._plan(
                s,
                request.entity,
                hub_id,
                goldens[hub_id].data,
                only=targets,
                dry_run=request.dry_run,
            )
            for system, payload in pushes:
                planned[system] += 1
                sample = report.samples.setdefault(system, [])
                if len(sample) < SAMPLE:
                    sample.append({"key": hub_id, "payload": payload})
                if len(report.plan) < PLAN_ROWS:
                    report.plan.append(
                        {
                            "system": system,
                            "key": hub_id,
                            "payload": payload,
                            "changes": _changes(
                                request.changes.get(hub_id, ()), goldens[hub_id].data
                            ),
                        }
                    )
    report.planned = dict(planned)


def _changes(known: Sequence[Mapping[str, Any]], golden: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The findings' changes of one record, ``after`` taken from the golden record as it
    stands now (the owners were just re-read) where the field's path leads to a value."""
    out = []
    for change in known:
        row = dict(change)
        if change.get("field"):
            found, value = value_at(golden, str(change["field"]))
            if found:
                row["after"] = value
        out.append(row)
    return out


def value_at(data: Any, path: str) -> tuple[bool, Any]:
    """The value at a canonical field path (``billing_address.city``,
    ``lines[3].amount_minor``); (False, None) when the path does not lead anywhere."""
    current = data
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        if part.startswith("["):
            index = int(part[1:-1])
            if not isinstance(current, list) or index >= len(current):
                return False, None
            current = current[index]
        elif isinstance(current, Mapping) and part in current:
            current = current[part]
        else:
            return False, None
    return True, current

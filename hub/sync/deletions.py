"""Deletes read from the systems, applied by who deleted.

A record deleted in its owner or creator (a Salesforce Account) is a decision: the golden
record is marked deleted and gets a tombstone (who, where, when), nothing brings it back
unasked, and every other system that holds it is told per its mapping's ``on_delete``
policy (``keep`` it, or ``deactivate`` it by setting canonical values such as
``status: inactive``). A record deleted in a system that only receives it is drift: its
stale id is forgotten and it is re-planned as a create.

The blast-radius guard: when one pass would tombstone more than max(``min_records``,
``share`` of the entity's live records), the deactivations it plans are *held* in the
outbox (status ``held``) for a person: ``hub outbox held`` shows them, ``hub outbox
release`` lets them go out with the next sync. A mistaken mass delete is then undone with
``hub tombstones restore`` before any system was touched.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from connectors.base import Deletion
from hub.fingerprint import fingerprint
from hub.mapping.mapper import MappingValueError, set_path
from hub.store import repo
from hub.store.models import GoldenRecord, OutboxEntry, Tombstone, utcnow
from hub.sync.fingerprints import EXTERNAL_IDS, push_projection, with_claims

if TYPE_CHECKING:
    from hub.sync.engine import SyncEngine

log = logging.getLogger("hub.sync")

#: a deletion re-read starts this long before the last one seen (re-reads change nothing)
OVERLAP = timedelta(minutes=5)
#: how long a tombstone can be restored
TOMBSTONE_DAYS = 30
HELD = "held"
#: a planned push that empties a field, until the pass's count says pending or held
BLANKING = "blanking"


def cursor_slot(entity: str) -> str:
    """The cursors-table entity under which a system's deletions cursor is kept."""
    return f"{entity}@deletions"


@dataclass(frozen=True)
class GuardLimits:
    """One pass may tombstone at most max(min_records, share x live records) of an entity
    before what it plans is held for a person."""

    min_records: int = 50
    share: float = 0.10

    @classmethod
    def from_env(cls) -> GuardLimits:
        return cls(
            min_records=_env_number("HUB_GUARD_MIN_RECORDS", 50, int, "a whole number, 0 or more"),
            share=_env_number("HUB_GUARD_SHARE", 0.10, float, "a fraction between 0 and 1"),
        )

    def limit(self, live: int) -> int:
        return max(self.min_records, math.floor(self.share * live))


def scan_interval() -> timedelta:
    """``HUB_DELETE_SCAN_HOURS``: how often a system that does not tell its deletes (billing,
    SAP, the PIM, the WMS) has its keys compared with the hub's; 0 compares every pass."""
    hours = _env_number("HUB_DELETE_SCAN_HOURS", 24.0, float, "hours, 0 or more")
    return timedelta(hours=hours)


def _env_number(name: str, default: Any, kind: Callable[[str], Any], expected: str) -> Any:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    share = name.endswith("_SHARE")
    if value is None or not math.isfinite(value) or value < 0 or (share and value > 1):
        raise ValueError(f"{name}={raw!r} is not valid: give {expected} (default {default})")
    return value


@dataclass
class Applied:
    """What one system's deletions did in one pass."""

    tombstoned: int = 0
    recreating: int = 0
    held: int = 0


class DeletionPass:
    """Applies one system's deletions of one entity, in the caller's transaction."""

    def __init__(self, engine: SyncEngine, s: Session, system: str, entity: str) -> None:
        self.engine, self.s, self.system, self.entity = engine, s, system, entity

    def apply(self, found: Sequence[Deletion], guard: GuardLimits) -> Applied:
        known = repo.hub_ids_for(self.s, self.entity, self.system, [d.external_id for d in found])
        goldens = repo.golden_for(self.s, self.entity, sorted(set(known.values())))
        live = [
            (d, goldens[known[d.external_id]])
            for d in found
            if d.external_id in known
            and known[d.external_id] in goldens
            and not goldens[known[d.external_id]].deleted
        ]
        applied = Applied()
        if not live:
            return applied
        held = repo.BatchRows(self.s, self.entity, [g.hub_id for _, g in live])
        if not self.engine._owns_records(self.system, self.entity):
            for _, golden in live:  # drift: recreate it there
                self.engine._recreate(self.s, self.system, self.entity, golden.hub_id, held)
                applied.recreating += 1
            return applied
        hold = len(live) > guard.limit(_live(self.s, self.entity))
        for deletion, golden in live:
            self._tombstone(deletion, golden, held)
            applied.held += self._propagate(golden, held, hold)
            applied.tombstoned += 1
        return applied

    def _tombstone(self, deletion: Deletion, golden: GoldenRecord, held: repo.BatchRows) -> None:
        golden.deleted, golden.version, golden.updated_at = True, golden.version + 1, utcnow()
        stone = self.s.get(Tombstone, (self.entity, golden.hub_id))
        if stone is None:
            stone = Tombstone(entity=self.entity, hub_id=golden.hub_id)
            self.s.add(stone)
        stone.system, stone.external_id = self.system, deletion.external_id
        stone.deleted_at, stone.recorded_at, stone.restored_at = deletion.deleted_at, utcnow(), None
        held.forget(golden.hub_id, self.system, (self.system, with_claims(self.system)))
        log.warning(
            "%s %s was deleted in %s (id %s) at %s: tombstoned",
            self.entity,
            golden.hub_id,
            self.system,
            deletion.external_id,
            deletion.deleted_at.isoformat(),
        )

    def _propagate(self, golden: GoldenRecord, held: repo.BatchRows, hold: bool) -> int:
        """Tell every other system holding the record, per its ``on_delete`` policy;
        returns how many of those pushes were held by the guard."""
        ids = held.external_ids(golden.hub_id)
        count = 0
        for system in sorted(ids):
            spec = self.engine.specs.get((system, self.entity))
            held.drop_pending(system, golden.hub_id)  # the live record no longer goes out
            if spec is None or spec.on_delete.action == "keep":
                continue
            if spec.on_delete.action == "delete":
                self._enqueue(system, golden.hub_id, "delete", {"id": ids[system]}, "", hold)
                count += hold
                continue
            mapper = self.engine._mapper(system, self.entity, self.s)
            data = {**golden.data, **spec.on_delete.set, EXTERNAL_IDS: ids}
            try:
                payload = mapper.to_native(data)
            except MappingValueError as exc:
                log.error(
                    "cannot deactivate %s %s in %s: %s", self.entity, golden.hub_id, system, exc
                )
                continue
            set_path(payload, spec.key.system_id_field, ids[system])
            fp = fingerprint(push_projection(mapper, data))
            self._enqueue(system, golden.hub_id, "deactivate", payload, fp, hold)
            count += hold
        return count

    def _enqueue(
        self, system: str, hub_id: str, operation: str, payload: dict[str, Any], fp: str, hold: bool
    ) -> None:
        self.s.add(
            OutboxEntry(
                system=system,
                entity=self.entity,
                hub_id=hub_id,
                operation=operation,
                payload=payload,
                fingerprint=fp,
                status=HELD if hold else "pending",
            )
        )


def settle_blanking(s: Session, entity: str, guard: GuardLimits) -> dict[str, int]:
    """Every push of ``entity`` waiting as ``blanking``: per target system, pending when
    there are at most the guard's limit of them, else held. Returns {target: held}."""
    counts: dict[str, int] = {
        system: int(n)
        for system, n in s.execute(
            select(OutboxEntry.system, func.count())
            .where(OutboxEntry.entity == entity, OutboxEntry.status == BLANKING)
            .group_by(OutboxEntry.system)
        )
    }
    if not counts:
        return {}
    limit = guard.limit(_live(s, entity))
    held: dict[str, int] = {}
    for system, n in counts.items():
        verdict = HELD if n > limit else "pending"
        s.execute(
            update(OutboxEntry)
            .where(
                OutboxEntry.entity == entity,
                OutboxEntry.system == system,
                OutboxEntry.status == BLANKING,
            )
            .values(status=verdict)
        )
        if verdict == HELD:
            held[system] = n
    return held


def _live(s: Session, entity: str) -> int:
    return int(
        s.scalar(
            select(func.count())
            .select_from(GoldenRecord)
            .where(GoldenRecord.entity == entity, GoldenRecord.deleted.is_(False))
        )
        or 0
    )


# -- operator actions ---------------------------------------------------------------------
def tombstones(s: Session, entity: str | None = None) -> list[Tombstone]:
    stmt = select(Tombstone).where(Tombstone.restored_at.is_(None))
    if entity is not None:
        stmt = stmt.where(Tombstone.entity == entity)
    return list(s.scalars(stmt.order_by(Tombstone.entity, Tombstone.deleted_at)))


def restore(engine: SyncEngine, entity: str, hub_ids: Sequence[str], now: datetime) -> list[str]:
    """Bring tombstoned records back: the golden record is live again and planned to every
    system (recreated where it was deleted, reactivated where it was deactivated); they
    go out with the next sync. Returns the ids restored; raises for any that cannot be."""
    with engine.sessions.begin() as s:
        stones = {
            t.hub_id: t
            for t in s.scalars(
                select(Tombstone).where(
                    Tombstone.entity == entity,
                    Tombstone.hub_id.in_(hub_ids),
                    Tombstone.restored_at.is_(None),
                )
            )
        }
        refused = [h for h in hub_ids if h not in stones]
        expired = [h for h, t in stones.items() if t.deleted_at < now - timedelta(TOMBSTONE_DAYS)]
        if refused or expired:
            raise ValueError(
                "cannot restore: "
                + "; ".join(
                    [f"{h}: no open tombstone for this {entity}" for h in refused]
                    + [f"{h}: deleted more than {TOMBSTONE_DAYS} days ago" for h in expired]
                )
            )
        goldens = repo.golden_for(s, entity, list(stones))
        for hub_id, stone in stones.items():
            golden = goldens[hub_id]
            golden.deleted, golden.version, golden.updated_at = False, golden.version + 1, now
            stone.restored_at = now
            s.execute(  # a deactivation or delete not yet sent is no longer wanted
                delete(OutboxEntry).where(
                    OutboxEntry.entity == entity,
                    OutboxEntry.hub_id == hub_id,
                    OutboxEntry.operation.in_(["deactivate", "delete"]),
                    OutboxEntry.status.in_(["pending", HELD]),
                )
            )
            engine._plan(s, entity, hub_id, golden.data)
    return sorted(stones)


def held_pushes(s: Session) -> list[tuple[str, str, str, int]]:
    """(system, entity, operation, count) of the pushes held for a person."""
    rows = s.execute(
        select(OutboxEntry.system, OutboxEntry.entity, OutboxEntry.operation, func.count())
        .where(OutboxEntry.status == HELD)
        .group_by(OutboxEntry.system, OutboxEntry.entity, OutboxEntry.operation)
        .order_by(OutboxEntry.system, OutboxEntry.entity)
    )
    return [(a, b, c, int(n)) for a, b, c, n in rows]


def release(
    s: Session, systems: Sequence[str] | None = None, entities: Sequence[str] | None = None
) -> int:
    """Let held pushes (of these systems and entities; all by default) go out with the
    next sync; returns how many."""
    stmt = update(OutboxEntry).where(OutboxEntry.status == HELD)
    if systems:
        stmt = stmt.where(OutboxEntry.system.in_(systems))
    if entities:
        stmt = stmt.where(OutboxEntry.entity.in_(entities))
    result = s.execute(stmt.values(status="pending", updated_at=utcnow()))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]

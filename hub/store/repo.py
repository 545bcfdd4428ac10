"""Bookkeeping operations on the hub store, used inside the sync engine's transactions.

Every function takes the caller's Session and never commits: the engine commits a batch's
golden records, xrefs, fingerprints, outbox rows and cursor together, so a crash leaves
either all of a batch or none of it."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from hub.store.models import (
    Cursor,
    Finding,
    Fingerprint,
    GoldenRecord,
    OutboxEntry,
    QuarantineEntry,
    Xref,
    utcnow,
)


# -- cursors --------------------------------------------------------------------------
def get_cursor(session: Session, system: str, entity: str) -> str | None:
    row = session.get(Cursor, (system, entity))
    return row.value if row else None


def set_cursor(session: Session, system: str, entity: str, value: str) -> None:
    row = session.get(Cursor, (system, entity))
    if row is None:
        session.add(Cursor(system=system, entity=entity, value=value))
    else:
        row.value, row.updated_at = value, utcnow()


# -- external ids ---------------------------------------------------------------------
def hub_ids_for(
    session: Session, entity: str, system: str, external_ids: Sequence[str]
) -> dict[str, str]:
    """external id -> hub id, for one batch (one query, not one per record)."""
    if not external_ids:
        return {}
    rows = session.execute(
        select(Xref.external_id, Xref.hub_id).where(
            Xref.entity == entity, Xref.system == system, Xref.external_id.in_(external_ids)
        )
    )
    return {ext: hub for ext, hub in rows}


def external_ids_for(
    session: Session, entity: str, system: str, hub_ids: Sequence[str]
) -> dict[str, str]:
    """hub id -> this system's id."""
    if not hub_ids:
        return {}
    rows = session.execute(
        select(Xref.hub_id, Xref.external_id).where(
            Xref.entity == entity, Xref.system == system, Xref.hub_id.in_(hub_ids)
        )
    )
    return {hub: ext for hub, ext in rows}


def all_external_ids(session: Session, entity: str, hub_id: str) -> dict[str, str]:
    rows = session.execute(
        select(Xref.system, Xref.external_id).where(Xref.entity == entity, Xref.hub_id == hub_id)
    )
    return {system: ext for system, ext in rows}


def set_xref(session: Session, entity: str, hub_id: str, system: str, external_id: str) -> bool:
    """Record (or move) a cross reference; returns True when it is new or changed."""
    row = session.get(Xref, (entity, hub_id, system))
    if row is not None and row.external_id == external_id:
        return False
    # The external id may still point at another hub id after a merge of duplicates.
    session.execute(
        delete(Xref).where(
            Xref.entity == entity,
            Xref.system == system,
            Xref.external_id == external_id,
            Xref.hub_id != hub_id,
        )
    )
    if row is None:
        session.add(Xref(entity=entity, hub_id=hub_id, system=system, external_id=external_id))
    else:
        row.external_id, row.updated_at = external_id, utcnow()
    session.flush()
    return True


# -- fingerprints ---------------------------------------------------------------------
def fingerprints_for(
    session: Session, system: str, entity: str, hub_ids: Sequence[str]
) -> dict[str, str]:
    if not hub_ids:
        return {}
    rows = session.execute(
        select(Fingerprint.hub_id, Fingerprint.fingerprint).where(
            Fingerprint.system == system,
            Fingerprint.entity == entity,
            Fingerprint.hub_id.in_(hub_ids),
        )
    )
    return {hub: fp for hub, fp in rows}


def set_fingerprint(session: Session, system: str, entity: str, hub_id: str, fp: str) -> None:
    row = session.get(Fingerprint, (system, entity, hub_id))
    if row is None:
        session.add(Fingerprint(system=system, entity=entity, hub_id=hub_id, fingerprint=fp))
    elif row.fingerprint != fp:
        row.fingerprint, row.updated_at = fp, utcnow()


def forget_fingerprint(session: Session, system: str, entity: str, hub_id: str) -> None:
    """Force the next plan to push this record to ``system`` again."""
    session.execute(
        delete(Fingerprint).where(
            Fingerprint.system == system,
            Fingerprint.entity == entity,
            Fingerprint.hub_id == hub_id,
        )
    )


# -- golden records -------------------------------------------------------------------
def golden_for(session: Session, entity: str, hub_ids: Sequence[str]) -> dict[str, GoldenRecord]:
    if not hub_ids:
        return {}
    rows = session.scalars(
        select(GoldenRecord).where(GoldenRecord.entity == entity, GoldenRecord.hub_id.in_(hub_ids))
    )
    return {row.hub_id: row for row in rows}


# -- outbox ---------------------------------------------------------------------------
def enqueue(
    session: Session, system: str, entity: str, hub_id: str, payload: dict[str, Any], fp: str
) -> None:
    """One pending push per (system, entity, record): a newer plan replaces the payload."""
    pending = session.scalars(
        select(OutboxEntry).where(
            OutboxEntry.system == system,
            OutboxEntry.entity == entity,
            OutboxEntry.hub_id == hub_id,
            OutboxEntry.status == "pending",
        )
    ).first()
    if pending is None:
        session.add(
            OutboxEntry(
                system=system, entity=entity, hub_id=hub_id, payload=payload, fingerprint=fp
            )
        )
    elif pending.fingerprint != fp:
        pending.payload, pending.fingerprint, pending.updated_at = payload, fp, utcnow()


def drop_pending(session: Session, system: str, entity: str, hub_id: str) -> None:
    """Forget a planned push the system no longer needs (it already holds that state)."""
    session.execute(
        delete(OutboxEntry).where(
            OutboxEntry.system == system,
            OutboxEntry.entity == entity,
            OutboxEntry.hub_id == hub_id,
            OutboxEntry.status == "pending",
        )
    )


def pending(
    session: Session, system: str, entity: str, limit: int, after_id: int = 0
) -> list[OutboxEntry]:
    return list(
        session.scalars(
            select(OutboxEntry)
            .where(
                OutboxEntry.system == system,
                OutboxEntry.entity == entity,
                OutboxEntry.status == "pending",
                OutboxEntry.id > after_id,
            )
            .order_by(OutboxEntry.id)
            .limit(limit)
        )
    )


def complete(session: Session, ids: Iterable[int]) -> None:
    ids = list(ids)
    if ids:
        session.execute(delete(OutboxEntry).where(OutboxEntry.id.in_(ids)))


def fail(session: Session, entry_id: int, error: str) -> None:
    session.execute(
        update(OutboxEntry)
        .where(OutboxEntry.id == entry_id)
        .values(
            status="failed",
            last_error=error,
            attempts=OutboxEntry.attempts + 1,
            updated_at=utcnow(),
        )
    )


def note_attempt(session: Session, ids: Iterable[int], error: str) -> None:
    ids = list(ids)
    if ids:
        session.execute(
            update(OutboxEntry)
            .where(OutboxEntry.id.in_(ids))
            .values(attempts=OutboxEntry.attempts + 1, last_error=error, updated_at=utcnow())
        )


# -- quarantine -----------------------------------------------------------------------
def quarantine(
    session: Session,
    *,
    system: str,
    entity: str,
    external_key: str,
    payload: Any,
    reason: str,
    errors: list[Any] | None = None,
    direction: str = "inbound",
) -> None:
    """Keep the raw record and why it was refused; a repeat bumps the attempt count."""
    row = session.scalars(
        select(QuarantineEntry).where(
            QuarantineEntry.system == system,
            QuarantineEntry.entity == entity,
            QuarantineEntry.direction == direction,
            QuarantineEntry.external_key == external_key,
        )
    ).first()
    if row is None:
        session.add(
            QuarantineEntry(
                system=system,
                entity=entity,
                external_key=external_key,
                direction=direction,
                payload=payload,
                reason=reason,
                errors=errors or [],
            )
        )
    else:
        row.payload, row.reason, row.errors = payload, reason, errors or []
        row.attempts += 1
        row.status, row.last_seen = "open", utcnow()


def open_inbound_quarantine(
    session: Session, system: str, entity: str, keys: Sequence[str]
) -> set[str]:
    """Which of ``keys`` wait in inbound quarantine for this system (one query a batch)."""
    if not keys:
        return set()
    return set(
        session.scalars(
            select(QuarantineEntry.external_key).where(
                QuarantineEntry.system == system,
                QuarantineEntry.entity == entity,
                QuarantineEntry.direction == "inbound",
                QuarantineEntry.status == "open",
                QuarantineEntry.external_key.in_(list(keys)),
            )
        )
    )


def release_quarantine(
    session: Session, system: str, entity: str, external_key: str, direction: str = "inbound"
) -> None:
    """A record that now goes through leaves quarantine (kept as 'resolved' history)."""
    session.execute(
        update(QuarantineEntry)
        .where(
            QuarantineEntry.system == system,
            QuarantineEntry.entity == entity,
            QuarantineEntry.direction == direction,
            QuarantineEntry.external_key == external_key,
            QuarantineEntry.status == "open",
        )
        .values(status="resolved", last_seen=utcnow())
    )


# -- conflict findings ----------------------------------------------------------------
def finding_id(entity: str, key: str, system: str, kind: str, field: str | None) -> str:
    """Stable identity: the same drift is the same finding in every run."""
    raw = "\x1f".join((entity, key, system, kind, field or ""))
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def record_conflict(
    session: Session,
    *,
    entity: str,
    key: str,
    system: str,
    external_id: str | None,
    field: str,
    expected: Any,
    actual: Any,
    seen_at: datetime,
) -> None:
    fid = finding_id(entity, key, system, "conflict", field)
    row = session.get(Finding, fid)
    if row is None:
        session.add(
            Finding(
                id=fid,
                entity=entity,
                key=key,
                system=system,
                external_id=external_id,
                kind="conflict",
                field=field,
                expected=expected,
                actual=actual,
                severity="warning",
                first_seen=seen_at,
                last_seen=seen_at,
            )
        )
    else:
        row.expected, row.actual, row.last_seen = expected, actual, seen_at
        row.status, row.resolved_at = "open", None

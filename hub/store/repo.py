"""Bookkeeping operations on the hub store, used inside the sync engine's transactions.

Every function takes the caller's Session and never commits: the engine commits a batch's
golden records, xrefs, fingerprints, outbox rows and cursor together, so a crash leaves
either all of a batch or none of it."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Select,
    and_,
    bindparam,
    delete,
    event,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

# conflict findings belong to the findings repository; re-exported for older callers
from hub.store.db import json_loads, one_of
from hub.store.findings import finding_id as finding_id
from hub.store.findings import record_conflict as record_conflict
from hub.store.models import (
    Cursor,
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
            Xref.entity == entity, Xref.system == system, one_of(Xref.external_id, external_ids)
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
            Xref.entity == entity, Xref.system == system, one_of(Xref.hub_id, hub_ids)
        )
    )
    return {hub: ext for hub, ext in rows}


def external_ids_by_system(
    session: Session, entity: str, systems: Sequence[str], hub_ids: Sequence[str]
) -> dict[tuple[str, str], str]:
    """(system, hub id) -> that system's id, for several systems in one query per chunk."""
    out: dict[tuple[str, str], str] = {}
    for start in range(0, len(hub_ids), _IN_CHUNK):
        rows = session.execute(
            select(Xref.system, Xref.hub_id, Xref.external_id).where(
                Xref.entity == entity,
                Xref.system.in_(systems),
                one_of(Xref.hub_id, hub_ids[start : start + _IN_CHUNK]),
            )
        )
        out.update({(system, hub): ext for system, hub, ext in rows})
    return out


def known_external_ids(session: Session, entity: str, system: str) -> dict[str, str]:
    """Every id the hub knows ``system`` holds for ``entity``: external id -> hub id."""
    rows = session.execute(
        select(Xref.external_id, Xref.hub_id).where(Xref.entity == entity, Xref.system == system)
    )
    return {ext: hub for ext, hub in rows}


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
            one_of(Fingerprint.hub_id, hub_ids),
        )
    )
    return {hub: fp for hub, fp in rows}


def set_fingerprint(session: Session, system: str, entity: str, hub_id: str, fp: str) -> None:
    row = session.get(Fingerprint, (entity, hub_id, system))
    if row is None:
        session.add(Fingerprint(system=system, entity=entity, hub_id=hub_id, fingerprint=fp))
    elif row.fingerprint != fp:
        row.fingerprint, row.updated_at = fp, utcnow()


def forget_xref(session: Session, entity: str, hub_id: str, system: str) -> None:
    """The record no longer exists in ``system`` (the hub deleted it there)."""
    session.execute(
        delete(Xref).where(Xref.entity == entity, Xref.hub_id == hub_id, Xref.system == system)
    )


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
@dataclass
class XrefRow:
    """A cross reference as plain data, for the sync's batches (see GoldenRow)."""

    hub_id: str
    system: str
    external_id: str


@dataclass
class GoldenRow:
    """A golden record as plain data, for the sync's batches: read with one query per
    chunk and written with one executemany per batch (:class:`BatchRows`), where ORM
    objects cost more than the rest of the merge (issue 18)."""

    entity: str
    hub_id: str
    data: dict[str, Any]
    field_meta: dict[str, Any]
    fingerprint: str
    version: int = 1
    deleted: bool = False


def existing_golden_ids(session: Session, entity: str, hub_ids: Iterable[str]) -> set[str]:
    """Which of ``hub_ids`` have a golden record (tombstones included)."""
    ids, found = sorted(set(hub_ids)), set[str]()
    for start in range(0, len(ids), _IN_CHUNK):
        found.update(
            session.scalars(
                select(GoldenRecord.hub_id).where(
                    GoldenRecord.entity == entity,
                    one_of(GoldenRecord.hub_id, ids[start : start + _IN_CHUNK]),
                )
            )
        )
    return found


def existing_any(session: Session, entity: str) -> bool:
    """Whether the store holds any golden record of ``entity``."""
    found = session.scalar(
        select(GoldenRecord.hub_id).where(GoldenRecord.entity == entity).limit(1)
    )
    return found is not None


def pushes_held_back(session: Session, entity: str, hub_ids: Sequence[str]) -> dict[str, set[str]]:
    """Per record, the systems a push to which waits for a person or for the blanking
    guard's count (outbox rows neither pending nor failed): a new plan must not queue a
    pending push beside them."""
    out: dict[str, set[str]] = {}
    for start in range(0, len(hub_ids), _IN_CHUNK):
        for system, hub_id in session.execute(
            select(OutboxEntry.system, OutboxEntry.hub_id).where(
                OutboxEntry.entity == entity,
                OutboxEntry.status.not_in(("pending", "failed")),
                one_of(OutboxEntry.hub_id, hub_ids[start : start + _IN_CHUNK]),
            )
        ):
            out.setdefault(hub_id, set()).add(system)
    return out


def golden_for(session: Session, entity: str, hub_ids: Sequence[str]) -> dict[str, GoldenRecord]:
    if not hub_ids:
        return {}
    rows = session.scalars(
        select(GoldenRecord).where(GoldenRecord.entity == entity, GoldenRecord.hub_id.in_(hub_ids))
    )
    return {row.hub_id: row for row in rows}


def golden_changed_since(
    session: Session, entity: str, after: tuple[datetime, str] | None, limit: int
) -> list[GoldenRecord]:
    """The next ``limit`` golden records changed after ``after`` (updated_at, hub_id),
    oldest first: a resumable walk over what changed (index on entity, updated_at)."""
    return list(session.scalars(_changed_since(select(GoldenRecord), entity, after, limit)))


def live_changed_since(
    session: Session, entity: str, after: tuple[datetime, str] | None, limit: int
) -> tuple[list[tuple[str, dict[str, Any]]], tuple[datetime, str] | None]:
    """As :func:`golden_changed_since`, as plain rows: the (hub id, data) of the records
    not deleted, and the position of the last record walked (None: nothing left)."""
    cols = select(
        GoldenRecord.hub_id, GoldenRecord.data, GoldenRecord.deleted, GoldenRecord.updated_at
    )
    rows = session.execute(_changed_since(cols, entity, after, limit)).all()
    if not rows:
        return [], None
    live = [(hub_id, data) for hub_id, data, deleted, _ in rows if not deleted]
    return live, (rows[-1].updated_at, rows[-1].hub_id)


def _changed_since(
    stmt: Select[Any], entity: str, after: tuple[datetime, str] | None, limit: int
) -> Select[Any]:
    stmt = stmt.where(GoldenRecord.entity == entity)
    if after is not None:
        stamp, key = after
        stmt = stmt.where(
            or_(
                GoldenRecord.updated_at > stamp,
                and_(GoldenRecord.updated_at == stamp, GoldenRecord.hub_id > key),
            )
        )
    return stmt.order_by(GoldenRecord.updated_at, GoldenRecord.hub_id).limit(limit)


def golden_ids_by(session: Session, entity: str, field: str) -> dict[str, list[str]]:
    """Hub ids of ``entity``'s golden records grouped by the value of one top-level field
    (allocations by subscription): one streamed read of two columns."""
    value = GoldenRecord.data[field].as_string()
    out: dict[str, list[str]] = {}
    rows = session.execute(
        select(value, GoldenRecord.hub_id).where(GoldenRecord.entity == entity)
    ).yield_per(10_000)
    for ref, hub_id in rows:
        if ref is not None:
            out.setdefault(str(ref), []).append(hub_id)
    return out


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


# -- one batch's rows, read once ------------------------------------------------------
class BatchRows:
    """The xrefs, fingerprints, pending pushes and open inbound quarantine of one batch's
    records, read in a few queries when the batch starts and kept in step with every write
    the batch makes through this object.

    Why: the sync engine judges and plans each record against these rows; asking the
    database per record and per system cost ~20 statements per record read (an initial
    load of 100k customers would take hours). Reads are answered from the objects loaded
    into the caller's Session; writes still go through that Session (added, changed or
    deleted ORM objects, flushed with the batch), so the database ends the transaction
    exactly as the per-record functions above would leave it. Records outside the batch
    fall back to those functions.
    """

    def __init__(
        self,
        session: Session,
        entity: str,
        hub_ids: Iterable[str],
        external_ids: Mapping[str, Iterable[str]] | None = None,
        *,
        lock_rows: bool = False,
    ) -> None:
        self.session, self.entity = session, entity
        #: read golden records FOR UPDATE (PostgreSQL): concurrent writers of the same
        #: records (backfill partitions) then wait for each other instead of losing an update
        self.lock_rows = lock_rows and session.get_bind().dialect.name == "postgresql"
        self.hub_ids: set[str] = set()
        #: (system, external id) pairs whose every holder is loaded
        self.covered: set[tuple[str, str]] = set()
        self.xrefs: dict[str, dict[str, XrefRow]] = {}  # hub id -> system -> row
        self.holders: dict[tuple[str, str], XrefRow] = {}  # (system, external id) -> row
        #: new links of this batch, inserted with one executemany (rarer moves and
        #: changes are written at once, in order, after what is buffered)
        self.xref_inserts: dict[tuple[str, str], XrefRow] = {}
        self.fps: dict[tuple[str, str], str] = {}  # (system slot, hub id) -> fingerprint
        #: pending pushes already in the table: (system, hub id) -> [(id, fingerprint)]
        self.pending: dict[tuple[str, str], list[tuple[int, str]]] = {}
        #: of those, replaced (id -> payload, fingerprint) or dropped in this batch
        self.outbox_updates: dict[int, tuple[dict[str, Any], str]] = {}
        self.outbox_deletes: set[int] = set()
        self.open: set[tuple[str, str, str]] = set()  # (system, direction, external key)
        #: new pending pushes of this batch, as plain rows: written with one executemany
        #: (:meth:`write`) before the session next executes a statement or commits.
        #: Why not ORM objects: the outbox's autoincrement key makes the unit of work
        #: insert them one statement per row on SQLite (it must read each id back), and an
        #: initial load queues a push per record read.
        self.new_pending: dict[tuple[str, str], dict[str, Any]] = {}
        #: fingerprints set (upserted) and forgotten (deleted) in this batch, written with
        #: the pushes: one executemany each, not an ORM object per row
        self.fp_writes: dict[tuple[str, str], str] = {}
        self.fp_deletes: set[tuple[str, str]] = set()
        #: golden records created / given a new version in this batch (by hub id)
        self.golden_inserts: dict[str, GoldenRow] = {}
        self.golden_updates: dict[str, GoldenRow] = {}
        self.golden_meta_updates: dict[str, GoldenRow] = {}
        self._hooked = False  # registered with the session (_write_buffers_of)
        self.extend(hub_ids, external_ids)

    def extend(
        self, hub_ids: Iterable[str], external_ids: Mapping[str, Iterable[str]] | None = None
    ) -> None:
        """Load the rows of more records (and every holder of these external ids)."""
        entity = self.entity
        ids = sorted(set(hub_ids) - self.hub_ids)
        self.hub_ids.update(ids)
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            for hub_id, system, ext in self._read_plain(
                select(Xref.hub_id, Xref.system, Xref.external_id).where(
                    Xref.entity == entity, one_of(Xref.hub_id, chunk)
                )
            ):
                self._hold(XrefRow(hub_id, system, ext))
            for slot, hub_id, fp in self._read_plain(
                select(Fingerprint.system, Fingerprint.hub_id, Fingerprint.fingerprint).where(
                    Fingerprint.entity == entity, one_of(Fingerprint.hub_id, chunk)
                )
            ):
                self.fps[(slot, hub_id)] = fp
            for row_id, system, hub_id, fp in self._read_plain(
                select(
                    OutboxEntry.id, OutboxEntry.system, OutboxEntry.hub_id, OutboxEntry.fingerprint
                )
                .where(
                    OutboxEntry.entity == entity,
                    OutboxEntry.status == "pending",
                    one_of(OutboxEntry.hub_id, chunk),
                )
                .order_by(OutboxEntry.id)
            ):
                self.pending.setdefault((system, hub_id), []).append((row_id, fp))
            for system, direction, key in self._read_plain(
                select(
                    QuarantineEntry.system, QuarantineEntry.direction, QuarantineEntry.external_key
                ).where(
                    QuarantineEntry.entity == entity,
                    QuarantineEntry.status == "open",
                    one_of(QuarantineEntry.external_key, chunk),
                )
            ):
                self.open.add((system, direction, key))
        for system, exts in (external_ids or {}).items():
            wanted = sorted({e for e in exts if (system, e) not in self.covered})
            self.covered.update((system, e) for e in wanted)
            for start in range(0, len(wanted), _IN_CHUNK):
                for hub_id, ext in self._read_plain(
                    select(Xref.hub_id, Xref.external_id).where(
                        Xref.entity == entity,
                        Xref.system == system,
                        one_of(Xref.external_id, wanted[start : start + _IN_CHUNK]),
                    )
                ):
                    self._hold(XrefRow(hub_id, system, ext))

    def _read_plain(self, query: Any) -> list[Any]:
        """:meth:`_read` of a query whose columns are text and integers, as the driver
        returns them: such columns have no result processing, and building SQLAlchemy
        rows one fetch at a time cost a third more than the driver's own fetchall for
        the thousands of xref and fingerprint rows each batch reads."""
        result = self._read(query)
        try:
            return list(result.cursor.fetchall())
        finally:
            result.close()

    def _read(self, query: Any) -> Any:
        """Rows of a plain column query, through the session's connection: what the ORM
        adds to ``session.execute`` (entity loading, events) cost a tenth of an initial
        load here. What ``session.execute`` would have done first is done by hand: the
        session's pending ORM changes flushed and every batch's buffered rows written, so
        the query sees them."""
        session = self.session
        if session.new or session.dirty or session.deleted:
            session.flush()
        _write_buffered(session)
        return session.connection().execute(query)

    def _hold(self, row: XrefRow) -> None:
        self.xrefs.setdefault(row.hub_id, {})[row.system] = row
        self.holders[(row.system, row.external_id)] = row

    def _drop(self, row: XrefRow) -> None:
        if self.xrefs.get(row.hub_id, {}).get(row.system) is row:
            del self.xrefs[row.hub_id][row.system]
        if self.holders.get((row.system, row.external_id)) is row:
            del self.holders[(row.system, row.external_id)]

    # -- external ids -------------------------------------------------------------------
    def external_ids(self, hub_id: str) -> dict[str, str]:
        """As :func:`all_external_ids`."""
        if hub_id not in self.hub_ids:
            return all_external_ids(self.session, self.entity, hub_id)
        return {system: x.external_id for system, x in self.xrefs.get(hub_id, {}).items()}

    def set_xref(self, hub_id: str, system: str, external_id: str) -> bool:
        """As :func:`set_xref`: record (or move) a cross reference; True when new/changed."""
        if hub_id not in self.hub_ids or (system, external_id) not in self.covered:
            changed = set_xref(self.session, self.entity, hub_id, system, external_id)
            if changed:  # re-read what moved, so the loaded rows stay true
                self._reload_xref(hub_id, system, external_id)
            return changed
        row = self.xrefs.get(hub_id, {}).get(system)
        if row is not None and row.external_id == external_id:
            return False
        other = self.holders.get((system, external_id))
        if other is not None and other.hub_id != hub_id:  # a merge of duplicates moved it
            self._drop(other)
            self._delete_xref(other)  # the unique (system, external id) is free before reuse
        if row is None:
            row = XrefRow(hub_id, system, external_id)
            self.xref_inserts[(hub_id, system)] = row
            self._hook()
        else:
            self._drop(row)
            self.write()  # an id changed in place: the database sees it in order
            row.external_id = external_id
            self.session.connection().execute(
                update(Xref)
                .where(Xref.entity == self.entity, Xref.hub_id == hub_id, Xref.system == system)
                .values(external_id=external_id, updated_at=utcnow())
            )
        self._hold(row)
        return True

    def _delete_xref(self, row: XrefRow) -> None:
        """Delete a link now, after what the batch buffered (it may be one of them)."""
        self.write()
        self.session.connection().execute(
            delete(Xref).where(
                Xref.entity == self.entity, Xref.hub_id == row.hub_id, Xref.system == row.system
            )
        )

    def forget(self, hub_id: str, system: str, slots: Iterable[str]) -> str | None:
        """The record is gone from ``system`` (deleted there): forget its id there, what
        the hub believed each of ``slots`` held (fingerprints) and its pending pushes to
        ``system``, so the next plan creates it anew. Returns the forgotten id."""
        self.extend([hub_id])
        for slot in slots:
            if self.fps.pop((slot, hub_id), None) is not None:
                self.fp_writes.pop((slot, hub_id), None)
                self.fp_deletes.add((slot, hub_id))
                self._hook()
        self.drop_pending(system, hub_id)
        row = self.xrefs.get(hub_id, {}).get(system)
        if row is None:
            return None
        self._drop(row)
        self._delete_xref(row)
        return row.external_id

    def _reload_xref(self, hub_id: str, system: str, external_id: str) -> None:
        for key in [k for k, x in self.holders.items() if k == (system, external_id)]:
            self._drop(self.holders[key])
        if hub_id in self.hub_ids:
            stale = self.xrefs.get(hub_id, {}).get(system)
            if stale is not None:
                self._drop(stale)
        ext = self.session.scalar(
            select(Xref.external_id).where(
                Xref.entity == self.entity, Xref.hub_id == hub_id, Xref.system == system
            )
        )
        if ext is not None and (hub_id in self.hub_ids or (system, external_id) in self.covered):
            self._hold(XrefRow(hub_id, system, ext))

    # -- golden records -----------------------------------------------------------------
    def goldens(self, hub_ids: Iterable[str]) -> dict[str, GoldenRow]:
        """The golden records of ``hub_ids`` that exist, as plain rows (one query per
        chunk; the session's buffered writes go first, so rows this batch wrote are read
        as written)."""
        ids, out = sorted(set(hub_ids)), {}
        cols = (
            GoldenRecord.hub_id, GoldenRecord.data, GoldenRecord.field_meta,
            GoldenRecord.fingerprint, GoldenRecord.version, GoldenRecord.deleted,
        )  # fmt: skip
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            query = (
                select(*cols)
                .where(GoldenRecord.entity == self.entity, one_of(GoldenRecord.hub_id, chunk))
                .order_by(GoldenRecord.hub_id)  # one lock order for every writer
            )
            if self.lock_rows:
                query = query.with_for_update()
            for hub_id, data, meta, fp, version, deleted in self._golden_rows(query):
                out[hub_id] = GoldenRow(self.entity, hub_id, data, meta or {}, fp, version, deleted)
        return out

    def _golden_rows(self, query: Any) -> Iterable[tuple[Any, ...]]:
        """The rows of a golden-record query (hub id, data, field_meta, fingerprint,
        version, deleted). On SQLite from the driver, the two documents decoded here: a
        batch of a second system reads back every record the first created, and
        SQLAlchemy's row building and two layers of JSON processing per document cost a
        fifth of that read."""
        if self.session.get_bind().dialect.name != "sqlite":
            return self._read(query)
        return [
            (hub_id, json_loads(data), meta and json_loads(meta), fp, version, bool(deleted))
            for hub_id, data, meta, fp, version, deleted in self._read_plain(query)
        ]

    def create_golden(self, row: GoldenRow) -> None:
        """Insert ``row`` with the batch's writes."""
        self.golden_inserts[row.hub_id] = row
        self._hook()

    def update_golden(self, row: GoldenRow, *, provenance_only: bool = False) -> None:
        """Write ``row``'s new content and version with the batch's writes (a row created
        in this batch is simply inserted as it is now). ``provenance_only``: only its
        field_meta changed - written without touching updated_at, which the walks over
        changed records (plans, delivery planning) read as "the content changed"."""
        if row.hub_id in self.golden_inserts:
            return
        if provenance_only and row.hub_id not in self.golden_updates:
            self.golden_meta_updates[row.hub_id] = row
        else:
            self.golden_meta_updates.pop(row.hub_id, None)
            self.golden_updates[row.hub_id] = row
        self._hook()

    def _write_goldens(self, conn: Connection, now: datetime) -> None:
        if self.golden_inserts:
            new, self.golden_inserts = list(self.golden_inserts.values()), {}
            insert_goldens(conn, new, now)
        if self.golden_meta_updates:
            confirmed, self.golden_meta_updates = list(self.golden_meta_updates.values()), {}
            update_golden_provenance(conn, self.entity, confirmed)
        if self.golden_updates:
            changed, self.golden_updates = list(self.golden_updates.values()), {}
            conn.execute(
                update(GoldenRecord)
                .where(GoldenRecord.entity == self.entity, GoldenRecord.hub_id == bindparam("h"))
                .values(
                    data=bindparam("d"), field_meta=bindparam("m"), fingerprint=bindparam("f"),
                    version=bindparam("v"), updated_at=bindparam("u"),
                ),
                [
                    {"h": g.hub_id, "d": g.data, "m": g.field_meta, "f": g.fingerprint,
                     "v": g.version, "u": now}
                    for g in changed
                ],
            )  # fmt: skip

    # -- fingerprints -------------------------------------------------------------------
    def fingerprint(self, system: str, hub_id: str) -> str | None:
        """As :func:`fingerprints_for` for one record."""
        if hub_id not in self.hub_ids:
            return fingerprints_for(self.session, system, self.entity, [hub_id]).get(hub_id)
        return self.fps.get((system, hub_id))

    def set_fingerprint(self, system: str, hub_id: str, fp: str) -> None:
        """As :func:`set_fingerprint`."""
        if hub_id not in self.hub_ids:
            set_fingerprint(self.session, system, self.entity, hub_id, fp)
            return
        key = (system, hub_id)
        if self.fps.get(key) == fp:
            return
        self.fps[key] = self.fp_writes[key] = fp
        self.fp_deletes.discard(key)
        self._hook()

    # -- outbox ---------------------------------------------------------------------------
    def enqueue(
        self, system: str, hub_id: str, payload: dict[str, Any], fp: str, status: str = "pending"
    ) -> None:
        """As :func:`enqueue`; a push with another ``status`` (``blanking``) replaces
        the pending one (it waits for the guard's count)."""
        if status != "pending":
            self.drop_pending(system, hub_id)
            self.session.add(
                OutboxEntry(
                    system=system, entity=self.entity, hub_id=hub_id, payload=payload,
                    fingerprint=fp, status=status,
                )
            )  # fmt: skip
            return
        if hub_id not in self.hub_ids:
            enqueue(self.session, system, self.entity, hub_id, payload, fp)
            return
        rows = self.pending.get((system, hub_id))
        if rows:
            row_id, there = rows[0]
            if there != fp:
                rows[0] = (row_id, fp)
                self.outbox_updates[row_id] = (payload, fp)
                self._hook()
            return
        self._hook()
        self.new_pending[(system, hub_id)] = {
            "system": system, "entity": self.entity, "hub_id": hub_id, "payload": payload,
            "fingerprint": fp, "status": "pending",
        }  # fmt: skip

    def _hook(self) -> None:
        """Have the session write this buffer before it runs any other statement (so
        every query in the transaction sees the rows) and before it commits."""
        if not self._hooked:
            _write_buffers_of(self.session).append(self)
            self._hooked = True

    def _buffers(self) -> tuple[dict[Any, Any] | set[Any], ...]:
        """Every write buffer of the batch (see :meth:`write`)."""
        return (
            self.xref_inserts, self.new_pending, self.fp_writes, self.fp_deletes,
            self.golden_inserts, self.golden_updates, self.golden_meta_updates,
            self.outbox_updates, self.outbox_deletes,
        )  # fmt: skip

    def discard_buffers(self) -> None:
        """The transaction ended without them (rolled back): forget what was not written."""
        for buffer in self._buffers():
            buffer.clear()
        self._hooked = False

    def _buffered(self) -> bool:
        return any(self._buffers())

    def write(self) -> None:
        """Write what the batch buffered: fingerprints forgotten and set, then the new
        pending pushes (oldest plan first) - one executemany each, on the session's
        connection (not session.execute: no ORM event, no autoflush)."""
        if not self._buffered():
            return
        conn, now, entity = self.session.connection(), utcnow(), self.entity
        self._write_goldens(conn, now)
        if self.xref_inserts:
            links, self.xref_inserts = list(self.xref_inserts.values()), {}
            insert_xrefs(conn, entity, links, now)
        if self.fp_deletes:
            gone, self.fp_deletes = sorted(self.fp_deletes), set()
            conn.execute(
                delete(Fingerprint).where(
                    Fingerprint.system == bindparam("s"),
                    Fingerprint.entity == entity,
                    Fingerprint.hub_id == bindparam("h"),
                ),
                [{"s": slot, "h": hub_id} for slot, hub_id in gone],
            )
        if self.fp_writes:
            fps, self.fp_writes = self.fp_writes, {}
            upsert_fingerprints(conn, entity, fps, now)
        self._write_outbox(conn, now)

    def _write_outbox(self, conn: Connection, now: datetime) -> None:
        if self.outbox_deletes:
            gone, self.outbox_deletes = sorted(self.outbox_deletes), set()
            for start in range(0, len(gone), _IN_CHUNK):
                chunk = gone[start : start + _IN_CHUNK]
                conn.execute(delete(OutboxEntry).where(OutboxEntry.id.in_(chunk)))
        if self.outbox_updates:
            changed, self.outbox_updates = self.outbox_updates, {}
            conn.execute(
                update(OutboxEntry)
                .where(OutboxEntry.id == bindparam("i"))
                .values(payload=bindparam("p"), fingerprint=bindparam("f"), updated_at=now),
                [{"i": i, "p": p, "f": f} for i, (p, f) in changed.items()],
            )
        if self.new_pending:
            rows, self.new_pending = list(self.new_pending.values()), {}
            for row in rows:
                row["created_at"] = row["updated_at"] = now
            conn.execute(insert(OutboxEntry), rows)

    def drop_pending(self, system: str, hub_id: str) -> None:
        """As :func:`drop_pending`."""
        if hub_id not in self.hub_ids:
            drop_pending(self.session, system, self.entity, hub_id)
            return
        self.new_pending.pop((system, hub_id), None)
        for row_id, _ in self.pending.pop((system, hub_id), []):
            self.outbox_updates.pop(row_id, None)
            self.outbox_deletes.add(row_id)
            self._hook()

    # -- quarantine -----------------------------------------------------------------------
    def quarantined(self, system: str, external_key: str, direction: str) -> None:
        """Note a record quarantined during the batch (so a later release finds it)."""
        self.open.add((system, direction, external_key))

    def release_quarantine(
        self, system: str, external_key: str, direction: str = "inbound"
    ) -> None:
        """As :func:`release_quarantine`, with no statement when nothing is open."""
        key = (system, direction, external_key)
        if external_key in self.hub_ids and key not in self.open:
            return
        self.open.discard(key)
        release_quarantine(self.session, system, self.entity, external_key, direction)


_BUFFERS = "hub.repo.write_buffers"


def upsert(conn: Connection, model: type[Any], rows: list[dict[str, Any]], keys: list[str]) -> None:
    """Insert ``rows``, or update every other given column where ``keys`` exist already:
    one ``INSERT ... ON CONFLICT DO UPDATE`` executemany (SQLite and PostgreSQL alike)."""
    insert_of = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = insert_of(model.__table__)
    changed = [c for c in rows[0] if c not in keys]
    stmt = stmt.on_conflict_do_update(
        index_elements=keys, set_={c: getattr(stmt.excluded, c) for c in changed}
    )
    conn.execute(stmt, rows)


#: The fingerprint upsert as SQLite takes it, rows as plain tuples (see upsert_fingerprints).
_SQLITE_FINGERPRINT_UPSERT = (
    "INSERT INTO fingerprints (system, entity, hub_id, fingerprint, updated_at) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (system, entity, hub_id) DO UPDATE SET "
    "fingerprint = excluded.fingerprint, updated_at = excluded.updated_at"
)
#: A golden record's insert as SQLite takes it (see insert_goldens).
_SQLITE_GOLDEN_INSERT = (
    "INSERT INTO golden_records (entity, hub_id, data, field_meta, fingerprint, version, "
    "deleted, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _binder(conn: Connection, column: Any) -> Callable[[Any], Any]:
    """What turns a value into what the driver takes for ``column``: the column type's
    own bind processor (a timestamp's text, a JSON document's), for rows sent to the
    driver as tuples."""
    bind = column.type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
    return bind if bind is not None else _as_is


def _as_is(value: Any) -> Any:
    return value


def upsert_fingerprints(
    conn: Connection, entity: str, fps: Mapping[tuple[str, str], str], now: datetime
) -> None:
    """Write ``{(slot, hub id): fingerprint}`` of ``entity``, inserted or replaced, one
    executemany. The initial load writes a few fingerprints per record read: on SQLite
    SQLAlchemy's per-row parameter handling (a dict per row, every value through its
    processor) cost more than SQLite's own insert, so the rows go to the driver as
    tuples, ``now`` converted once by the column's own type. PostgreSQL keeps the
    SQLAlchemy statement: its executemany of an INSERT is batched into multi-row VALUES
    (insertmanyvalues), which a driver-level executemany would lose."""
    if conn.dialect.name != "sqlite":
        rows = [
            {"system": slot, "entity": entity, "hub_id": hub_id, "fingerprint": fp,
             "updated_at": now}
            for (slot, hub_id), fp in fps.items()
        ]  # fmt: skip
        upsert(conn, Fingerprint, rows, ["system", "entity", "hub_id"])
        return
    stamped = _binder(conn, Fingerprint.__table__.c.updated_at)(now)
    conn.exec_driver_sql(
        _SQLITE_FINGERPRINT_UPSERT,
        [(slot, entity, hub_id, fp, stamped) for (slot, hub_id), fp in fps.items()],
    )


def insert_goldens(conn: Connection, rows: Sequence[GoldenRow], now: datetime) -> None:
    """Insert new golden records, one executemany, stamped ``now``. As for
    :func:`upsert_fingerprints`, SQLite gets the rows as tuples (each document encoded
    by its column's own JSON processor): the initial load inserts one per record it
    creates, and SQLAlchemy's per-row parameter handling cost a third of the insert."""
    if conn.dialect.name != "sqlite":
        conn.execute(
            insert(GoldenRecord),
            [
                {"entity": g.entity, "hub_id": g.hub_id, "data": g.data,
                 "field_meta": g.field_meta, "fingerprint": g.fingerprint,
                 "version": g.version, "deleted": g.deleted, "created_at": now,
                 "updated_at": now}
                for g in rows
            ],
        )  # fmt: skip
        return
    columns = GoldenRecord.__table__.c
    stamped = _binder(conn, columns.created_at)(now)
    document, flag = _binder(conn, columns.data), _binder(conn, columns.deleted)
    conn.exec_driver_sql(
        _SQLITE_GOLDEN_INSERT,
        [
            (g.entity, g.hub_id, document(g.data), document(g.field_meta), g.fingerprint,
             g.version, flag(g.deleted), stamped, stamped)
            for g in rows
        ],
    )  # fmt: skip


#: A golden record's provenance update as SQLite takes it (see update_golden_provenance).
_SQLITE_PROVENANCE_UPDATE = (
    "UPDATE golden_records SET field_meta = ? WHERE entity = ? AND hub_id = ?"
)


def update_golden_provenance(conn: Connection, entity: str, rows: Sequence[GoldenRow]) -> None:
    """Write the field_meta of golden records whose content did not change (an owner
    confirmed what another system filled in, a newer source of an unowned field), one
    executemany. The initial load writes one for most records a second system holds:
    on SQLite they go to the driver as tuples, as :func:`insert_goldens` does."""
    if conn.dialect.name != "sqlite":
        conn.execute(
            update(GoldenRecord)
            .where(GoldenRecord.entity == entity, GoldenRecord.hub_id == bindparam("h"))
            .values(field_meta=bindparam("m")),
            [{"h": g.hub_id, "m": g.field_meta} for g in rows],
        )
        return
    document = _binder(conn, GoldenRecord.__table__.c.field_meta)
    conn.exec_driver_sql(
        _SQLITE_PROVENANCE_UPDATE, [(document(g.field_meta), entity, g.hub_id) for g in rows]
    )


#: An xref's insert as SQLite takes it (see insert_xrefs).
_SQLITE_XREF_INSERT = (
    "INSERT INTO xref (entity, hub_id, system, external_id, updated_at) VALUES (?, ?, ?, ?, ?)"
)


def insert_xrefs(conn: Connection, entity: str, links: Sequence[XrefRow], now: datetime) -> None:
    """Insert new links between hub ids and system ids, one executemany, stamped ``now``:
    on SQLite as driver-level tuples (one per record the initial load reads), on
    PostgreSQL by the SQLAlchemy statement (batched into multi-row VALUES)."""
    if conn.dialect.name != "sqlite":
        conn.execute(
            insert(Xref),
            [{"entity": entity, "hub_id": x.hub_id, "system": x.system,
              "external_id": x.external_id, "updated_at": now} for x in links],
        )  # fmt: skip
        return
    stamped = _binder(conn, Xref.__table__.c.updated_at)(now)
    conn.exec_driver_sql(
        _SQLITE_XREF_INSERT,
        [(entity, x.hub_id, x.system, x.external_id, stamped) for x in links],
    )


def _write_buffered(session: Session) -> None:
    """Write the rows every BatchRows of ``session``'s transaction holds back."""
    for rows in session.info.get(_BUFFERS, ()):
        rows.write()


def _write_buffers_of(session: Session) -> list[BatchRows]:
    """The BatchRows of ``session``'s transaction holding unwritten rows; the session's
    hooks (installed once per session) write them before any statement it executes and
    before it commits, and forget them when its transaction ends."""
    buffers: list[BatchRows] | None = session.info.get(_BUFFERS)
    if buffers is None:
        buffers = session.info[_BUFFERS] = []

        def write_all(*_: Any) -> None:
            _write_buffered(session)

        def forget(_: Session, transaction: Any) -> None:
            if transaction.parent is None:  # not a flush's or savepoint's inner one
                for rows in buffers:
                    rows.discard_buffers()
                buffers.clear()

        event.listen(session, "do_orm_execute", write_all)
        event.listen(session, "before_commit", write_all)
        event.listen(session, "after_transaction_end", forget)
    return buffers


#: Keys per IN list: well under SQLite's 32,766 bound parameters and PostgreSQL's 65,535
#: (an expanded IN), and a bound on one array's size (:func:`hub.store.db.one_of`).
_IN_CHUNK = 5000

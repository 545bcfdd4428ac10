"""The durable event inbox in the hub store.

Every change event is stored here before it is acknowledged (an HTTP 202 to SAP) or its
replay id is committed (Salesforce Pub/Sub): :func:`store_events` inserts the events and,
in the same transaction, the channel's replay position, so a listener restarted at any
point resumes after what is stored and loses nothing. Storing is idempotent: the inbox is
unique on (system, event id) and a redelivered event is skipped (insert-or-ignore on
SQLite and PostgreSQL alike). Processing reads :func:`pending` in arrival order and
records each outcome with :func:`mark_processed`.

Functions take a SQLAlchemy ``Connection``; the caller owns the transaction
(``with engine.begin() as conn: store_events(conn, ...)``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, select, update
from sqlalchemy.dialects import postgresql, sqlite

from hub.store.models import EventInboxEntry, EventReplayPosition, utcnow

INBOX = cast(Table, EventInboxEntry.__table__)
POSITIONS = cast(Table, EventReplayPosition.__table__)

#: the outcome of an event whose type the hub does not map (stored, never processed)
IGNORED = "ignored"


@dataclass(frozen=True)
class InboxEvent:
    """One event to store. ``record_keys`` has one item per record the event covers (an
    id, or an object of key fields); ``outcome`` set (e.g. :data:`IGNORED`) stores the
    event as already processed."""

    system: str
    event_id: str
    event_type: str
    entity: str | None
    change_type: str | None
    record_keys: Sequence[Any]
    payload: dict[str, Any]
    changed_fields: Sequence[str] | None = None
    replay_id: str | None = None
    channel: str | None = None
    outcome: str | None = None
    received_at: datetime | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ReplayPosition:
    """Where a channel's stored events end: the replay id to resume after."""

    system: str
    channel: str
    replay_id: str


@dataclass(frozen=True)
class InboxRow:
    id: int
    system: str
    event_id: str
    event_type: str
    entity: str | None
    change_type: str | None
    record_keys: list[Any]
    changed_fields: list[str] | None
    payload: dict[str, Any]
    replay_id: str | None
    channel: str | None
    received_at: datetime
    processed_at: datetime | None
    outcome: str | None


def _insert(conn: Connection) -> Any:
    dialect = conn.dialect.name
    if dialect == "sqlite":
        return sqlite.insert(INBOX)
    if dialect == "postgresql":
        return postgresql.insert(INBOX)
    raise NotImplementedError(f"the event inbox supports SQLite and PostgreSQL, not {dialect}")


def store_events(
    conn: Connection,
    events: Iterable[InboxEvent],
    replay_position: ReplayPosition | None = None,
) -> list[str]:
    """Store ``events`` (skipping any already stored, by system and event id) and, when
    given, the channel's ``replay_position``, on ``conn`` in its transaction. Returns the
    event ids that were new."""
    now = utcnow()
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for event in events:
        key = (event.system, event.event_id)
        if key in rows:
            continue  # a duplicate within one delivery
        received = event.received_at or now
        rows[key] = {
            "system": event.system,
            "event_id": event.event_id,
            "event_type": event.event_type,
            "entity": event.entity,
            "record_keys": list(event.record_keys),
            "change_type": event.change_type,
            "changed_fields": None if event.changed_fields is None else list(event.changed_fields),
            "payload": event.payload,
            "replay_id": event.replay_id,
            "channel": event.channel,
            "received_at": received,
            "processed_at": received if event.outcome is not None else None,
            "outcome": event.outcome,
        }
    new: list[str] = []
    if rows:
        # skip what is stored already, then insert-or-ignore (a concurrent delivery of the
        # same event loses the race quietly instead of failing on the unique constraint)
        by_system: dict[str, list[str]] = {}
        for system, event_id in rows:
            by_system.setdefault(system, []).append(event_id)
        for system, ids in by_system.items():
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                stored = conn.execute(
                    select(INBOX.c.event_id).where(
                        INBOX.c.system == system, INBOX.c.event_id.in_(chunk)
                    )
                ).scalars()
                for event_id in stored:
                    rows.pop((system, event_id), None)
        remaining = list(rows.values())
        for start in range(0, len(remaining), 200):
            chunk_rows = remaining[start : start + 200]
            statement = (
                _insert(conn)
                .values(chunk_rows)
                .on_conflict_do_nothing(index_elements=["system", "event_id"])
                .returning(INBOX.c.event_id)
            )
            new += conn.execute(statement).scalars().all()
    if replay_position is not None:
        _save_position(conn, replay_position, now)
    return new


def _save_position(conn: Connection, position: ReplayPosition, now: datetime) -> None:
    values = {
        "system": position.system,
        "channel": position.channel,
        "replay_id": position.replay_id,
        "updated_at": now,
    }
    dialect = conn.dialect.name
    insert = sqlite.insert(POSITIONS) if dialect == "sqlite" else postgresql.insert(POSITIONS)
    conn.execute(
        insert.values(**values).on_conflict_do_update(
            index_elements=["system", "channel"],
            set_={"replay_id": values["replay_id"], "updated_at": values["updated_at"]},
        )
    )


def replay_position(conn: Connection, system: str, channel: str) -> str | None:
    """The replay id stored for ``channel`` (None: nothing stored yet)."""
    return conn.execute(
        select(POSITIONS.c.replay_id).where(
            POSITIONS.c.system == system, POSITIONS.c.channel == channel
        )
    ).scalar_one_or_none()


def pending(conn: Connection, limit: int = 1000, system: str | None = None) -> list[InboxRow]:
    """Unprocessed events in arrival order (oldest first), at most ``limit``."""
    query = select(INBOX).where(INBOX.c.processed_at.is_(None))
    if system is not None:
        query = query.where(INBOX.c.system == system)
    result = conn.execute(query.order_by(INBOX.c.id).limit(limit))
    return [InboxRow(**row._asdict()) for row in result]


def mark_processed(conn: Connection, ids: Iterable[int], outcome: str) -> int:
    """Record ``outcome`` for the events ``ids`` not processed yet; returns how many were
    marked (an event already processed keeps its first outcome)."""
    wanted = sorted(set(ids))
    marked = 0
    now = utcnow()
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        marked += conn.execute(
            update(INBOX)
            .where(INBOX.c.id.in_(chunk), INBOX.c.processed_at.is_(None))
            .values(processed_at=now, outcome=outcome)
        ).rowcount
    return marked


def all_events(conn: Connection, system: str | None = None) -> list[InboxRow]:
    """Every stored event in arrival order (processed or not), for inspection and tests."""
    query = select(INBOX)
    if system is not None:
        query = query.where(INBOX.c.system == system)
    return [InboxRow(**row._asdict()) for row in conn.execute(query.order_by(INBOX.c.id))]

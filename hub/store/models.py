"""SQLAlchemy models of the hub store. Alembic migrations in ``hub/migrations`` must match
these exactly (a test runs autogenerate against a migrated database and expects no diff).

Types are chosen to behave the same on SQLite and PostgreSQL: JSON becomes JSONB on
PostgreSQL, timestamps are stored timezone-aware and always written in UTC, and money is a
BigInteger of minor units next to its currency code.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

JSONType = JSON().with_variant(JSONB(), "postgresql")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in, timezone-aware UTC out, on every backend. SQLite has no
    timezone type, so values are stored as naive UTC there and re-tagged on read; a naive
    value from our own code is a bug and is refused rather than guessed at."""

    impl = DateTime
    cache_ok = True

    def __init__(self, timezone: bool = True) -> None:
        super().__init__(timezone=timezone)

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the hub stores timezone-aware UTC only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        """The bind conversion (:meth:`process_bind_param`, then the backend's own), done
        once per distinct value in a row: a batch write binds the same ``now`` into every
        row it writes (an executemany of thousands), and datetimes are immutable, so the
        last value's converted form is reused while the same object comes again."""
        convert = super().bind_processor(dialect)
        if convert is None:
            return None
        last: list[tuple[Any, Any]] = [(None, None)]

        def process(value: Any) -> Any:
            seen, bound = last[0]  # one tuple, read and replaced whole (thread-safe)
            if value is seen and value is not None:
                return bound
            bound = convert(value)
            last[0] = (value, bound)
            return bound

        return process


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _ts() -> Mapped[datetime]:
    return mapped_column(UtcDateTime(), default=utcnow, nullable=False)


class GoldenRecord(Base):
    """The hub's truth for one record, assembled field by field from the owning systems.

    ``field_meta`` keeps, per canonical field, which system last set it and when, so
    unowned fields can resolve newest-change-wins and conflicts can name their source."""

    __tablename__ = "golden_records"
    entity: Mapped[str] = mapped_column(String(32), primary_key=True)
    hub_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    field_meta: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    fingerprint: Mapped[str] = mapped_column(String(64), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    deleted: Mapped[bool] = mapped_column(default=False, nullable=False)
    created_at: Mapped[datetime] = _ts()
    updated_at: Mapped[datetime] = _ts()

    __table_args__ = (Index(None, "entity", "updated_at"),)


class Xref(Base):
    """Hub id <-> each system's own id for the same record."""

    __tablename__ = "xref"
    entity: Mapped[str] = mapped_column(String(32), primary_key=True)
    hub_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    system: Mapped[str] = mapped_column(String(32), primary_key=True)
    external_id: Mapped[str] = mapped_column(String(128), nullable=False)
    updated_at: Mapped[datetime] = _ts()

    __table_args__ = (UniqueConstraint("entity", "system", "external_id"),)


class Cursor(Base):
    """How far each system's changes of an entity have been committed to the hub."""

    __tablename__ = "cursors"
    system: Mapped[str] = mapped_column(String(32), primary_key=True)
    entity: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[str] = mapped_column(Text, nullable=False)
    updated_at: Mapped[datetime] = _ts()


class Fingerprint(Base):
    """Hash of the payload a system last held for a record (as pushed or as read): plans
    pushes (skip unchanged) and suppresses echoes of the hub's own writes."""

    __tablename__ = "fingerprints"
    system: Mapped[str] = mapped_column(String(32), primary_key=True)
    entity: Mapped[str] = mapped_column(String(32), primary_key=True)
    hub_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64), nullable=False)
    updated_at: Mapped[datetime] = _ts()

    # Keyed (entity, hub id, system): every lookup names the entity and the hub ids (a
    # batch loads all systems' fingerprints of its records at once), and a record's
    # fingerprints - about six, one per system and slot - then share one page. On SQLite
    # the table is that key's B-tree (WITHOUT ROWID): a fingerprint written is one index
    # entry, not three (row, primary key, and the (entity, hub id) index it replaced).
    __table_args__ = (
        PrimaryKeyConstraint("entity", "hub_id", "system"),
        {"sqlite_with_rowid": False},
    )


class OutboxEntry(Base):
    """A push the hub owes a system. Written in the same transaction as the golden record,
    so a crash between push and bookkeeping replays (idempotently) instead of losing it."""

    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    system: Mapped[str] = mapped_column(String(32), nullable=False)
    entity: Mapped[str] = mapped_column(String(32), nullable=False)
    hub_id: Mapped[str] = mapped_column(String(64), nullable=False)
    operation: Mapped[str] = mapped_column(String(16), nullable=False, default="upsert")
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    fingerprint: Mapped[str] = mapped_column(String(64), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="pending")
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _ts()
    updated_at: Mapped[datetime] = _ts()

    # (entity, hub id): a batch's pending pushes, found without scanning every pending one
    __table_args__ = (Index(None, "status", "system", "entity"), Index(None, "entity", "hub_id"))


class QuarantineEntry(Base):
    """A record a system sent (or rejected) that the hub could not accept: the raw payload,
    the reason, and how often it was retried. Nothing is dropped silently."""

    __tablename__ = "quarantine"
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    system: Mapped[str] = mapped_column(String(32), nullable=False)
    entity: Mapped[str] = mapped_column(String(32), nullable=False)
    external_key: Mapped[str] = mapped_column(String(128), nullable=False)
    direction: Mapped[str] = mapped_column(String(8), nullable=False, default="inbound")
    payload: Mapped[Any] = mapped_column(JSONType, nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    errors: Mapped[list[Any]] = mapped_column(JSONType, nullable=False, default=list)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="open")
    first_seen: Mapped[datetime] = _ts()
    last_seen: Mapped[datetime] = _ts()

    __table_args__ = (
        UniqueConstraint("system", "entity", "direction", "external_key"),
        Index(None, "entity", "external_key"),  # a batch's open entries, for every system
    )


class ReconciliationRun(Base):
    __tablename__ = "reconciliation_runs"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    started_at: Mapped[datetime] = _ts()
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    scope: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    counts: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)


class Finding(Base):
    """One drift with a stable identity (hash of entity, key, system, kind, field), so the
    same drift is the same finding across runs and its history can be trended."""

    __tablename__ = "findings"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    entity: Mapped[str] = mapped_column(String(32), nullable=False)
    key: Mapped[str] = mapped_column(String(128), nullable=False)
    system: Mapped[str] = mapped_column(String(32), nullable=False)
    external_id: Mapped[str | None] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    field: Mapped[str | None] = mapped_column(String(128))
    expected: Mapped[Any] = mapped_column(JSONType, nullable=True)
    actual: Mapped[Any] = mapped_column(JSONType, nullable=True)
    severity: Mapped[str] = mapped_column(String(8), nullable=False)
    amount_at_stake_minor: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="open")
    first_seen: Mapped[datetime] = _ts()
    last_seen: Mapped[datetime] = _ts()
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    __table_args__ = (
        Index(None, "status", "entity", "system"),
        Index(None, "entity", "key"),
    )


class FindingObservation(Base):
    """That a finding was seen (or resolved) in a reconciliation run: the trend history."""

    __tablename__ = "finding_observations"
    run_id: Mapped[str] = mapped_column(
        ForeignKey("reconciliation_runs.id", ondelete="CASCADE"), primary_key=True
    )
    finding_id: Mapped[str] = mapped_column(
        ForeignKey("findings.id", ondelete="CASCADE"), primary_key=True
    )
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    observed_at: Mapped[datetime] = _ts()


class Lock(Base):
    """Advisory lease so two syncs of the same scope never run at once against one store;
    the holder and heartbeat let the loser say who it waited for."""

    __tablename__ = "locks"
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    holder: Mapped[str] = mapped_column(String(255), nullable=False)
    acquired_at: Mapped[datetime] = _ts()
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)


class Tombstone(Base):
    """A record its owner (or creator) deleted: who deleted it, where, and when. The golden
    record stays (``deleted``), so no path brings it back unasked and ``hub tombstones
    restore`` can, within ``TOMBSTONE_DAYS``."""

    __tablename__ = "tombstones"
    entity: Mapped[str] = mapped_column(String(32), primary_key=True)
    hub_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    system: Mapped[str] = mapped_column(String(32), nullable=False)
    external_id: Mapped[str] = mapped_column(String(128), nullable=False)
    deleted_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    recorded_at: Mapped[datetime] = _ts()
    restored_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class EventInboxEntry(Base):
    """A change event received from a system (an SAP business event, a Salesforce change
    event), stored before it is acknowledged or its replay id is committed. Unique on
    (system, event id), so a redelivered event stores nothing new; ``processed_at`` and
    ``outcome`` say what the hub did with it (``ignored`` for types it does not map)."""

    __tablename__ = "event_inbox"
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    system: Mapped[str] = mapped_column(String(32), nullable=False)
    event_id: Mapped[str] = mapped_column(String(255), nullable=False)
    event_type: Mapped[str] = mapped_column(String(255), nullable=False)
    entity: Mapped[str | None] = mapped_column(String(32))
    #: one item per record the event covers: its key (an id, or an object of key fields)
    record_keys: Mapped[list[Any]] = mapped_column(JSONType, nullable=False)
    change_type: Mapped[str | None] = mapped_column(String(16))
    changed_fields: Mapped[list[str] | None] = mapped_column(JSONType)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    replay_id: Mapped[str | None] = mapped_column(Text)
    channel: Mapped[str | None] = mapped_column(String(255))
    received_at: Mapped[datetime] = _ts()
    processed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    outcome: Mapped[str | None] = mapped_column(String(32))

    # pending events in arrival order: unprocessed first, by id
    __table_args__ = (UniqueConstraint("system", "event_id"), Index(None, "processed_at", "id"))


class EventReplayPosition(Base):
    """The last replay id of a channel whose events are all in the inbox: written in the
    same transaction as those events, so a listener restarted at any point resumes after
    what is stored and loses nothing."""

    __tablename__ = "event_replay_position"
    system: Mapped[str] = mapped_column(String(32), primary_key=True)
    channel: Mapped[str] = mapped_column(String(255), primary_key=True)
    replay_id: Mapped[str] = mapped_column(Text, nullable=False)
    updated_at: Mapped[datetime] = _ts()

"""Reading and writing entity tables of a SQL system (the billing store) in batches.

Incremental reads use keyset pagination on (change stamp, primary key): rows with equal
stamps are never skipped or read twice within a read, and the cursor is the last row's
pair. The stamp is compared as the database orders time, in ORDER BY and WHERE alike:

* PostgreSQL (and any backend with a real timestamp type): the column itself.
* SQLite, which stores a time as text in whatever form its writer chose (SQLAlchemy's
  ``2025-01-01 10:00:00.123456``, ``CURRENT_TIMESTAMP``'s ``2025-01-01 10:00:00``, ISO
  8601 with ``T``, ``Z`` or an offset): ``strftime('%Y-%m-%d %H:%M:%f', column)``, UTC to
  the millisecond (:func:`sqlite_stamp_key`). Comparing the stored text itself skips rows:
  ``'... 10:00:00' < '... 10:00:00.000000'``, and a ``T`` sorts after every space.

The cursor keeps the database's own key of the last row (SQLite: that normalized text,
otherwise ISO 8601 of the timestamp) plus its primary key as the tie-breaker; cursors
written before (ISO 8601 of the stamp as Python read it) still decode. Each read starts an
*overlap* before its cursor (re-reading the rows stamped in it) so a row committed late
with an earlier stamp is still seen; the sync engine's fingerprints make such re-reads of
unchanged rows write nothing. Between the pages of one read the position only moves
forward, and a cursor handed out is never behind the one the read started from.

Child rows (invoice lines, subscription items) are fetched per batch with one IN query
and nested under the parent, as the sync engine's mappings expect. Writes upsert by the
hub-id column in one transaction per batch."""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from connectors.base import Batch, NativeRecord, Outcome, Window, WriteResult


@dataclass(frozen=True)
class ChildTable:
    table: str
    parent_column: str
    order_by: str
    key_column: str | None = None


@dataclass(frozen=True)
class EntityTable:
    """Where an entity lives: its table, primary key, hub-id column, change stamp and
    child tables."""

    table: str
    primary_key: str = "id"
    hub_id_column: str = "hub_id"
    updated_column: str = "updated_at"
    children: tuple[ChildTable, ...] = field(default_factory=tuple)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


#: SQLite's form of a change stamp as the keyset compares it: UTC, to the millisecond.
SQLITE_STAMP_FORMAT = "%Y-%m-%d %H:%M:%f"
_SQLITE_KEY = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3}")
#: Label of the key column the incremental read selects next to the table's columns.
_KEY_LABEL = "_hub_cursor_key"


def sqlite_stamp_key(column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """The change stamp as SQLite orders time: ``strftime`` reads every text form SQLite
    knows (space or ``T``, with or without seconds' fraction, ``Z`` or ``+HH:MM``) and
    writes it in one form, in UTC, to the millisecond (a 6-digit fraction is rounded).
    Text SQLite cannot read as a time (an offset without its colon, ``+0200``) is ``''``:
    such rows sort first and never stall the pagination. The format is a literal, not a
    bound parameter, so that an index on this very expression (``billing_schema``)
    serves the query."""
    return sa.func.coalesce(
        sa.func.strftime(sa.literal_column(f"'{SQLITE_STAMP_FORMAT}'"), column),
        sa.literal_column("''"),
    )


def _sqlite_text(stamp: datetime) -> str:
    """``stamp`` in the form of :func:`sqlite_stamp_key`, truncated to the millisecond
    (where SQLite rounds), so a lower bound made from it never starts after SQLite's."""
    t = _utc(stamp)
    return (
        f"{t.year:04d}-{t.month:02d}-{t.day:02d} "
        f"{t.hour:02d}:{t.minute:02d}:{t.second:02d}.{t.microsecond // 1000:03d}"
    )


def _parse_stamp(text: str) -> datetime:
    return _utc(datetime.fromisoformat(text.replace("Z", "+00:00")))


def encode_cursor(key: str | datetime, pk: Any) -> str:
    """The stored cursor: the database's key of the last row read (SQLite's normalized
    text, or ISO 8601 of the timestamp) and its primary key, as JSON ``[key, pk]``."""
    return json.dumps([key if isinstance(key, str) else _utc(key).isoformat(), pk])


def decode_cursor(cursor: str) -> tuple[str, Any]:
    """(stamp text, pk) of a stored cursor: one of :func:`encode_cursor`, or one written
    before the stamp was normalized (ISO 8601 of the stamp as Python read it)."""
    stamp, pk = json.loads(cursor)
    return str(stamp), pk


@dataclass(frozen=True)
class _Position:
    """A place in the keyset order: the rows after (key, pk), or with ``pk`` None every
    row whose key is at or after ``key``."""

    key: Any  # SQLite: normalized text; otherwise an aware UTC datetime
    pk: Any = None

    def after(self, other: _Position) -> bool:
        if self.key != other.key:
            return bool(self.key > other.key)
        return other.pk is None or (self.pk is not None and self.pk > other.pk)


def _coerce(column: sa.Column[Any], value: Any) -> Any:
    """Payload values (JSON-ish, from mappings) to what the column's type accepts."""
    if value is None:
        return None
    kind = column.type
    try:
        python_type = kind.python_type
    except NotImplementedError:
        return value
    if python_type is datetime and not isinstance(value, datetime):
        return _utc(datetime.fromisoformat(str(value).replace("Z", "+00:00")))
    if python_type is date and not isinstance(value, date):
        return date.fromisoformat(str(value)[:10])
    if python_type is int and not isinstance(value, int):
        return int(Decimal(str(value)))
    if python_type is bool and not isinstance(value, bool):
        return str(value).lower() in ("true", "1", "yes")
    if python_type is Decimal and not isinstance(value, Decimal):
        return Decimal(str(value))
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return _utc(value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


class SqlEntitySource:
    """Entity tables of one SQL database behind the connector protocol.

    ``overlap``: how far before its cursor each incremental read starts again, so a row
    committed late with an earlier stamp (a long transaction, a job stamping its own
    clock) is read all the same; the rows re-read are the ones stamped in that span."""

    def __init__(
        self,
        engine: Engine,
        tables: dict[str, EntityTable],
        *,
        batch_size: int = 1000,
        overlap: timedelta = timedelta(0),
    ) -> None:
        if overlap < timedelta(0):
            raise ValueError(f"overlap {overlap} must not be negative")
        self.engine = engine
        self.tables = tables
        self.batch_size = batch_size
        self.overlap = overlap
        self.metadata = sa.MetaData()
        self._reflected: dict[str, sa.Table] = {}
        self._sqlite = engine.dialect.name == "sqlite"

    def table(self, name: str) -> sa.Table:
        if name not in self._reflected:
            with warnings.catch_warnings():
                # the SQLite cursor index is on an expression, which SQLAlchemy does not
                # reflect (and says so); reads and writes never need reflected indexes
                warnings.filterwarnings(
                    "ignore", "Skipped unsupported reflection of expression-based index"
                )
                self._reflected[name] = sa.Table(name, self.metadata, autoload_with=self.engine)
        return self._reflected[name]

    # -- keyset -------------------------------------------------------------------------
    def stamp_key(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """The change stamp as the database orders it (see the module docstring)."""
        return sqlite_stamp_key(column) if self._sqlite else column

    def _key_at(self, stamp: datetime) -> Any:
        """The key of a point in time, to compare :meth:`stamp_key` with."""
        return _sqlite_text(stamp) if self._sqlite else _utc(stamp)

    def _bound(self, column: sa.Column[Any], key: Any) -> Any:
        """``key`` as a bind value: a timestamp without time zone gets naive UTC."""
        if isinstance(key, datetime) and not getattr(column.type, "timezone", False):
            return _utc(key).replace(tzinfo=None)
        return key

    def _row_key(self, value: Any) -> Any:
        return value if self._sqlite or value is None else _utc(value)

    def _start(self, cursor: str | None) -> tuple[_Position | None, _Position | None]:
        """(where an incremental read starts, where its cursor stood): the cursor's
        position less the overlap; a cursor from before the normalized key (SQLite) starts
        at its millisecond, tie-breaker dropped, as its rows were ordered otherwise."""
        if not cursor:
            return None, None
        text, pk = decode_cursor(cursor)
        if self._sqlite and (text == "" or _SQLITE_KEY.fullmatch(text)):
            stored = start = _Position(text, pk)
        else:
            stored = _Position(self._key_at(_parse_stamp(text)), pk)
            start = _Position(stored.key) if self._sqlite else stored
        if not self.overlap or start.key == "":
            return start, stored
        stamp = start.key if isinstance(start.key, datetime) else _parse_stamp(start.key)
        try:
            return _Position(self._key_at(stamp - self.overlap)), stored
        except OverflowError:  # a cursor near year 1: read from the beginning
            return None, stored

    # -- reads --------------------------------------------------------------------------
    def _rows(
        self, conn: sa.Connection, spec: EntityTable, rows: list[sa.Row[Any]]
    ) -> list[NativeRecord]:
        records = [
            {k: _plain(v) for k, v in row._mapping.items() if k != _KEY_LABEL} for row in rows
        ]
        if not records or not spec.children:
            return records
        by_pk = {r[spec.primary_key]: r for r in records}
        for child in spec.children:
            table = self.table(child.table)
            for r in records:
                r[child.table] = []
            stmt = (
                sa.select(table)
                .where(table.c[child.parent_column].in_(list(by_pk)))
                .order_by(table.c[child.parent_column], table.c[child.order_by])
            )
            for row in conn.execute(stmt):
                item = {k: _plain(v) for k, v in row._mapping.items()}
                by_pk[item[child.parent_column]][child.table].append(item)
        return records

    def read_changes(self, entity: str, cursor: str | None) -> Iterator[Batch]:
        """Rows changed since ``cursor`` (everything when None), oldest first, in
        batches; each batch's cursor is where a later read resumes."""
        spec = self.tables[entity]
        table = self.table(spec.table)
        stamp_col, pk_col = table.c[spec.updated_column], table.c[spec.primary_key]
        key = self.stamp_key(stamp_col)
        position, stored = self._start(cursor)
        while True:
            stmt = (
                sa.select(table, key.label(_KEY_LABEL)).order_by(key, pk_col).limit(self.batch_size)
            )
            if position is not None:
                bound = self._bound(stamp_col, position.key)
                # key >= bound narrows the index range; the tie-breaker within it
                stmt = stmt.where(key >= bound)
                if position.pk is not None:
                    stmt = stmt.where(sa.or_(key > bound, pk_col > position.pk))
            with self.engine.connect() as conn:
                rows = list(conn.execute(stmt))
                records = self._rows(conn, spec, rows)
            if not rows:
                return
            last = rows[-1]._mapping
            position = _Position(self._row_key(last[_KEY_LABEL]), last[spec.primary_key])
            if stored is None or position.after(stored):
                yield Batch(records, encode_cursor(position.key, position.pk))
            else:  # still re-reading the overlap: the cursor stays where it was
                yield Batch(records, cursor)
            if len(rows) < self.batch_size:
                return

    def read_snapshot(self, entity: str, window: Window | None = None) -> Iterator[Batch]:
        spec = self.tables[entity]
        table = self.table(spec.table)
        pk_col, stamp_col = table.c[spec.primary_key], table.c[spec.updated_column]
        key = self.stamp_key(stamp_col)
        last: Any = None
        while True:
            stmt = sa.select(table).order_by(pk_col).limit(self.batch_size)
            if last is not None:
                stmt = stmt.where(pk_col > last)
            if window and window.start:
                stmt = stmt.where(key >= self._bound(stamp_col, self._key_at(window.start)))
            if window and window.end:
                stmt = stmt.where(key < self._bound(stamp_col, self._key_at(window.end)))
            with self.engine.connect() as conn:
                rows = list(conn.execute(stmt))
                records = self._rows(conn, spec, rows)
            if not rows:
                return
            last = rows[-1]._mapping[spec.primary_key]
            yield Batch(records)

    def read_by_keys(self, entity: str, keys: Sequence[str]) -> Iterator[Batch]:
        spec = self.tables[entity]
        table = self.table(spec.table)
        for i in range(0, len(keys), self.batch_size):
            chunk = list(keys[i : i + self.batch_size])
            stmt = sa.select(table).where(table.c[spec.hub_id_column].in_(chunk))
            with self.engine.connect() as conn:
                rows = list(conn.execute(stmt))
                yield Batch(self._rows(conn, spec, rows))

    # -- writes -------------------------------------------------------------------------
    def write_batch(self, entity: str, records: Iterable[NativeRecord]) -> list[WriteResult]:
        """Upsert by hub id in one transaction; children are replaced when they differ."""
        spec = self.tables[entity]
        table = self.table(spec.table)
        records = list(records)
        keys = [str(r[spec.hub_id_column]) for r in records]
        with self.engine.begin() as conn:
            existing = {
                str(row._mapping[spec.hub_id_column]): row._mapping
                for row in conn.execute(
                    sa.select(table).where(table.c[spec.hub_id_column].in_(keys))
                )
            }
            return [
                self.upsert_one(conn, spec, key, record, existing.get(key))
                for key, record in zip(keys, records, strict=True)
            ]

    def upsert_one(
        self,
        conn: sa.Connection,
        spec: EntityTable,
        key: str,
        record: NativeRecord,
        current: Any,
    ) -> WriteResult:
        """Insert ``record`` (``current`` is None) or update the row ``current`` with what
        differs, replacing children that differ; the parent's stamp moves only on a real
        change. Runs inside the caller's transaction (a connector may wrap each call in a
        savepoint to reject one record without losing the batch)."""
        table = self.table(spec.table)
        values = {
            name: _coerce(table.c[name], value)
            for name, value in record.items()
            if name in table.c and name != spec.primary_key
        }
        children = {c.table: record[c.table] for c in spec.children if c.table in record}
        if current is None:
            now = datetime.now(UTC)
            values[spec.updated_column] = now
            if "created_at" in table.c:  # reflected tables carry no Python-side defaults
                values.setdefault("created_at", now)
            pk = conn.execute(
                sa.insert(table).values(values).returning(table.c[spec.primary_key])
            ).scalar_one()
            self._replace_children(conn, spec, pk, children)
            return WriteResult(key, Outcome.CREATED, external_id=str(pk))
        pk = current[spec.primary_key]
        changed = {k: v for k, v in values.items() if _plain(current.get(k)) != _plain(v)}
        kids_changed = self._replace_children(conn, spec, pk, children, only_if_changed=True)
        if not changed and not kids_changed:
            return WriteResult(key, Outcome.UNCHANGED, external_id=str(pk))
        changed[spec.updated_column] = datetime.now(UTC)
        conn.execute(sa.update(table).where(table.c[spec.primary_key] == pk).values(changed))
        return WriteResult(key, Outcome.UPDATED, external_id=str(pk))

    def _replace_children(
        self,
        conn: sa.Connection,
        spec: EntityTable,
        pk: Any,
        children: dict[str, list[dict[str, Any]]],
        only_if_changed: bool = False,
    ) -> bool:
        changed = False
        for child in spec.children:
            if child.table not in children:
                continue
            table = self.table(child.table)
            wanted = [
                {
                    name: _coerce(table.c[name], value)
                    for name, value in row.items()
                    if name in table.c and name not in ("id", child.parent_column)
                }
                for row in children[child.table]
            ]
            if only_if_changed:
                have = [
                    {
                        k: _plain(v)
                        for k, v in row._mapping.items()
                        if k not in ("id", child.parent_column)
                    }
                    for row in conn.execute(
                        sa.select(table)
                        .where(table.c[child.parent_column] == pk)
                        .order_by(table.c[child.order_by])
                    )
                ]
                want_plain = [{k: _plain(v) for k, v in w.items()} for w in wanted]
                if [
                    {k: h.get(k) for k in w} for h, w in zip(have, want_plain, strict=False)
                ] == want_plain and len(have) == len(want_plain):
                    continue
            conn.execute(sa.delete(table).where(table.c[child.parent_column] == pk))
            if wanted:
                now = datetime.now(UTC)
                stamps = {c: now for c in ("created_at", "updated_at") if c in table.c}
                conn.execute(
                    sa.insert(table), [{**stamps, **w, child.parent_column: pk} for w in wanted]
                )
            changed = True
        return changed

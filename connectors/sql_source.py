"""Reading and writing entity tables of a SQL system (the billing store) in batches.

Incremental reads use keyset pagination on (updated_at, primary key): rows with equal
timestamps are never skipped or read twice, and the cursor is the last row's pair. Child
rows (invoice lines, subscription items) are fetched per batch with one IN query and nested
under the parent, as the sync engine's mappings expect. Writes upsert by the hub-id column
in one transaction per batch."""

from __future__ import annotations

import json
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


def encode_cursor(stamp: datetime, pk: Any) -> str:
    return json.dumps([_utc(stamp).isoformat(), pk])


def decode_cursor(cursor: str) -> tuple[datetime, Any]:
    stamp, pk = json.loads(cursor)
    return datetime.fromisoformat(stamp), pk


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
    def __init__(
        self,
        engine: Engine,
        tables: dict[str, EntityTable],
        *,
        batch_size: int = 1000,
        lookback: timedelta = timedelta(0),
    ) -> None:
        self.engine = engine
        self.tables = tables
        self.batch_size = batch_size
        self.lookback = lookback
        self.metadata = sa.MetaData()
        self._reflected: dict[str, sa.Table] = {}

    def table(self, name: str) -> sa.Table:
        if name not in self._reflected:
            self._reflected[name] = sa.Table(name, self.metadata, autoload_with=self.engine)
        return self._reflected[name]

    # -- reads --------------------------------------------------------------------------
    def _rows(
        self, conn: sa.Connection, spec: EntityTable, rows: list[sa.Row[Any]]
    ) -> list[NativeRecord]:
        records = [{k: _plain(v) for k, v in row._mapping.items()} for row in rows]
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
        spec = self.tables[entity]
        table = self.table(spec.table)
        stamp_col, pk_col = table.c[spec.updated_column], table.c[spec.primary_key]
        position = decode_cursor(cursor) if cursor else None
        if position is not None and self.lookback:
            position = (position[0] - self.lookback, None)
        while True:
            stmt = sa.select(table).order_by(stamp_col, pk_col).limit(self.batch_size)
            if position is not None:
                stamp, pk = position
                stamp_value = _coerce(stamp_col, stamp)
                if pk is None:
                    stmt = stmt.where(stamp_col >= stamp_value)
                else:
                    stmt = stmt.where(
                        sa.or_(
                            stamp_col > stamp_value, sa.and_(stamp_col == stamp_value, pk_col > pk)
                        )
                    )
            with self.engine.connect() as conn:
                rows = list(conn.execute(stmt))
                records = self._rows(conn, spec, rows)
            if not rows:
                return
            last = rows[-1]._mapping
            position = (_utc(last[spec.updated_column]), last[spec.primary_key])
            yield Batch(records, encode_cursor(*position))
            if len(rows) < self.batch_size:
                return

    def read_snapshot(self, entity: str, window: Window | None = None) -> Iterator[Batch]:
        spec = self.tables[entity]
        table = self.table(spec.table)
        pk_col, stamp_col = table.c[spec.primary_key], table.c[spec.updated_column]
        last: Any = None
        while True:
            stmt = sa.select(table).order_by(pk_col).limit(self.batch_size)
            if last is not None:
                stmt = stmt.where(pk_col > last)
            if window and window.start:
                stmt = stmt.where(stamp_col >= _coerce(stamp_col, window.start))
            if window and window.end:
                stmt = stmt.where(stamp_col < _coerce(stamp_col, window.end))
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

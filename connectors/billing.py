"""The billing store connector: SQLAlchemy Core over the tables of ``billing_schema``.

Billing is a database, not an API, so this connector is a thin layer over
:class:`~connectors.sql_source.SqlEntitySource` (keyset reads on ``(updated_at, id)``,
children per batch, upserts by hub id) that adds what the billing schema needs:

* **References as hub ids.** Billing keeps ``hub_id`` on every synced table, so a
  subscription's account, an invoice's account and subscription, an allocation's
  subscription and an account's parent are resolved *inside the database*, one query per
  reference per batch, and handed over as native fields ``account_hub_id``,
  ``subscription_hub_id`` and ``parent_account_hub_id``. Mappings then need no xref
  round trip, and writes translate them back to billing's integer foreign keys.
* **One transaction per batch, one savepoint per record.** A record the database refuses
  (a CHECK, NOT NULL or UNIQUE constraint, a reference to nothing) is rolled back to its
  savepoint and reported ``rejected`` with the database's own message and the field it
  names; the batch's other records commit together. Deferred constraints are checked per
  record (PostgreSQL: ``SET CONSTRAINTS ALL IMMEDIATE`` inside the savepoint) so a bad
  record can never fail the batch's COMMIT.
* **Cursors that never skip.** Rows are paged by ``updated_at`` as the database orders
  time (on SQLite whatever text form a trigger or job wrote it in), then ``id``; each
  read starts ``BILLING_CURSOR_OVERLAP_SECONDS`` (5 minutes) before its cursor, so a row
  committed late with an earlier stamp is read too (see ``connectors.sql_source``).
* **Connector-owned stamps.** ``id``, ``created_at`` and ``updated_at`` in a payload are
  ignored: the store stamps what it changes, and an upsert that changes nothing is
  ``unchanged`` and keeps its stamp (so it does not echo back on the next read).
* **SQLite behaves like PostgreSQL.** Foreign keys are enforced and SAVEPOINTs work (the
  pysqlite driver's own transaction handling is switched off, as SQLAlchemy documents), and
  string lengths are checked before writing because SQLite would not.

The URL's password is registered as a secret and URLs are only ever logged redacted.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url

from connectors import billing_schema as S
from connectors.base import (
    Batch,
    Health,
    MappedObjects,
    NativeRecord,
    Outcome,
    Window,
    WriteResult,
)
from connectors.errors import ConnectorError, PermanentError, TransientError
from connectors.redact import redact, redact_url, register_secret
from connectors.settings import (
    CURSOR_OVERLAP_SECONDS,
    cursor_overlap_env,
    env_var,
    read_settings,
)
from connectors.sql_source import ChildTable, EntityTable, SqlEntitySource, _coerce

SYSTEM = "billing"
log = logging.getLogger("hub.connectors.billing")

#: Where each canonical entity lives in the billing store.
TABLES: dict[str, EntityTable] = {
    "customer": EntityTable("accounts"),
    "product": EntityTable("products", hub_id_column="sku"),
    # items keep the order they were sold in (their id order), which is the canonical order
    "subscription": EntityTable(
        "subscriptions",
        children=(ChildTable("subscription_items", "subscription_id", "id", "item_id"),),
    ),
    "invoice": EntityTable(
        "invoices",
        children=(ChildTable("invoice_lines", "invoice_id", "line_no", "line_no"),),
    ),
    "allocation": EntityTable("allocations"),
}


@dataclass(frozen=True)
class Reference:
    """A foreign key that crosses the connector boundary as the referenced row's hub id."""

    native: str  # native field carrying the referenced hub id
    column: str  # billing's foreign-key column
    table: str  # referenced table (which has ``id`` and ``hub_id``)


REFERENCES: dict[str, tuple[Reference, ...]] = {
    "customer": (Reference("parent_account_hub_id", "parent_account_id", "accounts"),),
    "subscription": (Reference("account_hub_id", "account_id", "accounts"),),
    "invoice": (
        Reference("account_hub_id", "account_id", "accounts"),
        Reference("subscription_hub_id", "subscription_id", "subscriptions"),
    ),
    "allocation": (Reference("subscription_hub_id", "subscription_id", "subscriptions"),),
}

#: A row as read for an upsert (``Row._mapping``): column name -> value.
CurrentRow = Any

#: Columns the store stamps itself; a payload's values for them are ignored.
STAMPS = frozenset({"id", "created_at", "updated_at"})
#: Optional address groups: all-NULL columns mean "no address", not an address of NULLs.
OPTIONAL_GROUPS: dict[str, tuple[str, ...]] = {"customer": ("shipping_",)}


class _Rejected(Exception):
    """One record refused before or while writing it (rolled back to its savepoint)."""

    def __init__(self, field: str, message: str, code: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message, self.code = field, message, code


def create_billing_engine(url: str) -> Engine:
    """An engine on which savepoints and foreign keys behave alike on SQLite and
    PostgreSQL (the per-record rejection relies on both)."""
    parsed = make_url(url)
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() == "postgresql":
        connect_args["connect_timeout"] = 10
    engine = sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
            # pysqlite opens transactions lazily and commits behind SQLAlchemy's back around
            # SAVEPOINT; hand transaction control to SQLAlchemy (documented recipe).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: sa.Connection) -> None:
            conn.exec_driver_sql("BEGIN")

    return engine


class BillingConnector(SqlEntitySource):
    """The billing store behind the :class:`~connectors.base.Connector` protocol."""

    system = SYSTEM

    def __init__(
        self,
        url: str,
        *,
        batch_size: int = 1000,
        overlap: timedelta = timedelta(seconds=CURSOR_OVERLAP_SECONDS),
    ) -> None:
        register_secret(make_url(url).password)
        self.url = url
        super().__init__(create_billing_engine(url), TABLES, batch_size=batch_size, overlap=overlap)
        self._entity_of = {spec.table: entity for entity, spec in TABLES.items()}
        self._constraint_fields = _constraint_fields()
        log.info(
            "billing store at %s (batch size %d, cursor overlap %ss)",
            redact_url(url),
            batch_size,
            f"{overlap.total_seconds():g}",
        )

    def entities(self) -> Sequence[str]:
        return list(TABLES)

    def _spec(self, entity: str) -> EntityTable:
        try:
            return self.tables[entity]
        except KeyError:
            raise PermanentError(
                SYSTEM, f"unknown entity {entity!r}; billing holds {list(TABLES)}"
            ) from None

    # -- reads --------------------------------------------------------------------------
    def read_changes(self, entity: str, cursor: str | None) -> Iterator[Batch]:
        self._spec(entity)
        return self._guard(super().read_changes(entity, cursor))

    def read_snapshot(self, entity: str, window: Window | None = None) -> Iterator[Batch]:
        self._spec(entity)
        return self._guard(super().read_snapshot(entity, window))

    def read_by_keys(self, entity: str, keys: Sequence[str]) -> Iterator[Batch]:
        self._spec(entity)
        return self._guard(super().read_by_keys(entity, list(dict.fromkeys(keys))))

    def _guard(self, batches: Iterator[Batch]) -> Iterator[Batch]:
        try:
            yield from batches
        except (sa.exc.DBAPIError, sa.exc.NoSuchTableError) as exc:
            raise self._connector_error(exc) from None

    def _rows(
        self, conn: sa.Connection, spec: EntityTable, rows: list[sa.Row[Any]]
    ) -> list[NativeRecord]:
        """Rows with their children (the base class: one query per child table per batch),
        plus each reference's hub id (one query per reference per batch)."""
        records = super()._rows(conn, spec, rows)
        entity = self._entity_of[spec.table]
        for ref in REFERENCES.get(entity, ()):
            ids = {r[ref.column] for r in records if r.get(ref.column) is not None}
            hub_ids: dict[Any, str | None] = {}
            if ids:
                table = self.table(ref.table)
                stmt = sa.select(table.c.id, table.c.hub_id).where(table.c.id.in_(sorted(ids)))
                hub_ids = {row.id: row.hub_id for row in conn.execute(stmt)}
            for r in records:
                r[ref.native] = hub_ids.get(r.get(ref.column))
        for prefix in OPTIONAL_GROUPS.get(entity, ()):
            for r in records:
                group = [k for k in r if k.startswith(prefix)]
                if all(r[k] is None for k in group):
                    for k in group:
                        del r[k]
        return records

    # -- writes -------------------------------------------------------------------------
    def write_batch(self, entity: str, records: Iterable[NativeRecord]) -> list[WriteResult]:
        """Upsert by hub id (falling back to billing's ``id`` for rows billing created
        before the hub linked them), one transaction for the batch and one savepoint per
        record: a rejected record is rolled back alone and the others commit together.
        Exactly one result per record, in input order."""
        spec = self._spec(entity)
        records = list(records)
        keys = [_key(r, spec) for r in records]
        results: list[WriteResult] = []
        try:
            table = self.table(spec.table)
            with self.engine.begin() as conn:
                existing = self._existing(conn, spec, records, keys)
                refs = _RefCache(self, conn)
                refs.prefetch(entity, records)
                written: dict[str, Any] = {}
                for key, record in zip(keys, records, strict=True):
                    if not key:
                        results.append(
                            _rejection(key, spec.hub_id_column, "missing record key", "missing_key")
                        )
                        continue
                    current = existing.get(key)
                    if key in written:  # the same key twice in one batch: see the first write
                        current = (
                            conn.execute(
                                sa.select(table).where(table.c[spec.primary_key] == written[key])
                            )
                            .one()
                            ._mapping
                        )
                    try:
                        with conn.begin_nested():
                            payload = self._prepare(conn, entity, spec, record, current, refs)
                            result = self.upsert_one(conn, spec, key, payload, current)
                            self._check_after(conn, entity, result, payload)
                            if conn.dialect.name == "postgresql":
                                conn.exec_driver_sql("SET CONSTRAINTS ALL IMMEDIATE")
                                conn.exec_driver_sql("SET CONSTRAINTS ALL DEFERRED")
                    except _Rejected as exc:
                        results.append(_rejection(key, exc.field, exc.message, exc.code))
                        continue
                    except (sa.exc.IntegrityError, sa.exc.DataError) as exc:
                        field, message, code = self._explain(exc, spec.table)
                        results.append(_rejection(key, field, message, code))
                        continue
                    written[key] = int(result.external_id or 0)
                    results.append(result)
        except (sa.exc.DBAPIError, sa.exc.NoSuchTableError) as exc:
            raise self._connector_error(exc) from None
        return results

    def _existing(
        self,
        conn: sa.Connection,
        spec: EntityTable,
        records: list[NativeRecord],
        keys: list[str],
    ) -> dict[str, CurrentRow]:
        """Current rows by record key: by hub id, then by billing's own id (a row billing
        created is linked on its first push, when its hub_id is still NULL)."""
        table = self.table(spec.table)
        hub_col, pk_col = table.c[spec.hub_id_column], table.c[spec.primary_key]
        wanted = sorted({k for k in keys if k})
        found: dict[str, CurrentRow] = {}
        if wanted:
            for row in conn.execute(sa.select(table).where(hub_col.in_(wanted))):
                found[str(row._mapping[spec.hub_id_column])] = row._mapping
        by_pk: dict[int, str] = {}
        for key, record in zip(keys, records, strict=True):
            own = record.get(spec.primary_key)
            if key and key not in found and own is not None and str(own).isdigit():
                by_pk[int(own)] = key
        if by_pk:
            for row in conn.execute(sa.select(table).where(pk_col.in_(sorted(by_pk)))):
                mapping = row._mapping
                if mapping[spec.hub_id_column] in (None, by_pk[mapping[spec.primary_key]]):
                    found[by_pk[mapping[spec.primary_key]]] = mapping
        return found

    def _prepare(
        self,
        conn: sa.Connection,
        entity: str,
        spec: EntityTable,
        record: NativeRecord,
        current: CurrentRow | None,
        refs: _RefCache,
    ) -> NativeRecord:
        """The record as column values: references resolved, stamps dropped, every value
        checked against its column so the field is named before the database is asked."""
        table = self.table(spec.table)
        children = {c.table: c for c in spec.children}
        virtual = {ref.native: ref for ref in REFERENCES.get(entity, ())}
        out: NativeRecord = {}
        for name, value in record.items():
            if name in STAMPS:
                continue
            if name in virtual:
                ref = virtual[name]
                out[ref.column] = None if value is None else refs.resolve(ref, str(value))
            elif name in children:
                out[name] = self._prepare_children(
                    conn, children[name], entity, record, current, value
                )
            elif name in table.c:
                out[name] = _checked(table.c[name], name, value)
            else:
                raise _Rejected(
                    name, f"not a column of billing table {spec.table}", "unknown_field"
                )
        if current is None and entity == "customer" and not out.get("account_number"):
            out["account_number"] = account_number_for(str(record.get("hub_id")))
        if entity == "allocation":
            self._check_item(conn, out, current)
        return out

    def _prepare_children(
        self,
        conn: sa.Connection,
        child: ChildTable,
        entity: str,
        record: NativeRecord,
        current: CurrentRow | None,
        rows: Any,
    ) -> list[dict[str, Any]]:
        if not isinstance(rows, list):
            raise _Rejected(child.table, "must be a list of rows", "invalid_value")
        table = self.table(child.table)
        out = []
        for i, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise _Rejected(f"{child.table}[{i}]", "must be a row", "invalid_value")
            clean: dict[str, Any] = {}
            for name, value in row.items():
                if name in STAMPS or name == child.parent_column:
                    continue
                if name not in table.c:
                    raise _Rejected(
                        f"{child.table}[{i}].{name}",
                        f"not a column of billing table {child.table}",
                        "unknown_field",
                    )
                clean[name] = _checked(table.c[name], f"{child.table}[{i}].{name}", value)
            out.append(clean)
        if entity == "subscription":
            self._fill_price_ids(conn, out, record, current)
        return out

    def _fill_price_ids(
        self,
        conn: sa.Connection,
        items: list[dict[str, Any]],
        record: NativeRecord,
        current: CurrentRow | None,
    ) -> None:
        """Point new items at the list price they were sold from (SKU x currency x period),
        as billing does; an item with no list price keeps ``price_id`` empty."""
        currency = record.get("currency") or (current or {}).get("currency")
        period = record.get("billing_period") or (current or {}).get("billing_period")
        skus = sorted({item["sku"] for item in items if "price_id" not in item and item.get("sku")})
        if not skus or not currency or not period:
            return
        prices = self.table("prices")
        found: dict[str, int] = {
            row.sku: row.id
            for row in conn.execute(
                sa.select(prices.c.sku, prices.c.id).where(
                    prices.c.sku.in_(skus),
                    prices.c.currency == currency,
                    prices.c.billing_period == period,
                )
            )
        }
        for item in items:
            if "price_id" not in item and item.get("sku") in found:
                item["price_id"] = found[item["sku"]]

    def _check_item(
        self, conn: sa.Connection, values: NativeRecord, current: CurrentRow | None
    ) -> None:
        """An allocation plans a delivery of an existing subscription item."""
        sub_id = values.get("subscription_id", (current or {}).get("subscription_id"))
        item_id = values.get("item_id", (current or {}).get("item_id"))
        if sub_id is None or item_id is None:
            return  # NOT NULL names the missing field
        items = self.table("subscription_items")
        hit = conn.execute(
            sa.select(items.c.id).where(
                items.c.subscription_id == sub_id, items.c.item_id == item_id
            )
        ).first()
        if hit is None:
            raise _Rejected(
                "item_id", f"subscription has no item {item_id!r}", "foreign_key_violation"
            )

    def _check_after(
        self, conn: sa.Connection, entity: str, result: WriteResult, payload: NativeRecord
    ) -> None:
        """Replacing a subscription's items must not orphan an allocation (the deferred
        foreign key would only fail at COMMIT, taking the whole batch with it)."""
        if entity != "subscription" or "subscription_items" not in payload:
            return
        if result.outcome is not Outcome.UPDATED:
            return
        allocations, items = self.table("allocations"), self.table("subscription_items")
        pk = int(result.external_id or 0)
        kept = sa.select(items.c.item_id).where(items.c.subscription_id == pk)
        orphans = sorted(
            conn.execute(
                sa.select(allocations.c.item_id)
                .where(allocations.c.subscription_id == pk, allocations.c.item_id.not_in(kept))
                .distinct()
            ).scalars()
        )
        if orphans:
            raise _Rejected(
                "subscription_items",
                f"items {orphans} still have allocations; release or move them first",
                "foreign_key_violation",
            )

    # -- errors -------------------------------------------------------------------------
    def _explain(self, exc: sa.exc.DBAPIError, table: str) -> tuple[str, str, str]:
        """(field, database message, error code) of a refused statement."""
        orig = exc.orig
        message = redact(str(orig).strip().splitlines()[0] if str(orig).strip() else repr(orig))
        field = "<record>"
        code = "integrity_error" if isinstance(exc, sa.exc.IntegrityError) else "data_error"
        diag = getattr(orig, "diag", None)
        if diag is not None:  # psycopg2: the server names constraint and column
            code = _PG_CODES.get(getattr(orig, "pgcode", "") or "", code)
            if diag.constraint_name:
                field = self._constraint_fields.get(diag.constraint_name, field)
            if diag.column_name:
                owner = diag.table_name or table
                field = diag.column_name if owner == table else f"{owner}.{diag.column_name}"
        else:  # SQLite: "<KIND> constraint failed: <table.column | constraint name>"
            match = re.match(
                r"(NOT NULL|UNIQUE|CHECK|FOREIGN KEY) constraint failed(?:: (.*))?", message
            )
            if match:
                code = _SQLITE_CODES[match.group(1)]
                target = (match.group(2) or "").split(",")[0].strip()
                if target in self._constraint_fields:
                    field = self._constraint_fields[target]
                elif "." in target:
                    owner, column = target.split(".", 1)
                    field = column if owner == table else f"{owner}.{column}"
        if "." in field and field.split(".", 1)[0] == table:
            field = field.split(".", 1)[1]
        return field, message, code

    def _connector_error(self, exc: sa.exc.DBAPIError | sa.exc.NoSuchTableError) -> ConnectorError:
        if isinstance(exc, sa.exc.NoSuchTableError):
            return PermanentError(
                SYSTEM,
                f"table {exc} not found in {redact_url(self.url)}: is BILLING_DATABASE_URL "
                "the billing store (created by `hub sandbox up` or the billing product)?",
            )
        text = redact(str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc))
        if isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError):
            return TransientError(
                SYSTEM, f"{text} (store {redact_url(self.url)}); the sync resumes from its cursor"
            )
        return PermanentError(SYSTEM, f"{text} (store {redact_url(self.url)})")

    # -- health -------------------------------------------------------------------------
    def health(self) -> Health:
        started = time.monotonic()
        detail = {"url": redact_url(self.url), "dialect": self.engine.dialect.name}
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1")).scalar_one()
        except sa.exc.DBAPIError as exc:
            return Health(SYSTEM, False, str(self._connector_error(exc)), extra=detail)
        latency = (time.monotonic() - started) * 1000
        return Health(SYSTEM, True, "ok", latency, extra=detail)

    def close(self) -> None:
        self.engine.dispose()


class _RefCache:
    """Hub id -> billing id per referenced table for one batch: one query per reference
    up front, and a single-row query on a miss (the parent may have been written earlier
    in the same batch)."""

    def __init__(self, source: BillingConnector, conn: sa.Connection) -> None:
        self.source, self.conn = source, conn
        self.ids: dict[tuple[str, str], int] = {}

    def _load(self, table_name: str, hub_ids: Iterable[str]) -> None:
        table = self.source.table(table_name)
        wanted = sorted(set(hub_ids))
        if not wanted:
            return
        for row in self.conn.execute(
            sa.select(table.c.hub_id, table.c.id).where(table.c.hub_id.in_(wanted))
        ):
            self.ids[(table_name, row.hub_id)] = row.id

    def prefetch(self, entity: str, records: list[NativeRecord]) -> None:
        for ref in REFERENCES.get(entity, ()):
            self._load(ref.table, (str(r[ref.native]) for r in records if r.get(ref.native)))

    def resolve(self, ref: Reference, hub_id: str) -> int:
        if (ref.table, hub_id) not in self.ids:
            self._load(ref.table, [hub_id])
        if (ref.table, hub_id) not in self.ids:
            raise _Rejected(
                ref.native,
                f"no billing {ref.table} row with hub_id {hub_id!r}",
                "unknown_reference",
            )
        return self.ids[(ref.table, hub_id)]


_PG_CODES = {
    "23502": "not_null_violation",
    "23505": "unique_violation",
    "23503": "foreign_key_violation",
    "23514": "check_violation",
    "22001": "value_too_long",
    "22003": "numeric_out_of_range",
    "22007": "invalid_datetime",
    "22008": "invalid_datetime",
}
_SQLITE_FAILED = re.compile(r"(NOT NULL|UNIQUE|CHECK|FOREIGN KEY) constraint failed(?:: (.*))?")
_SQLITE_CODES = {
    "NOT NULL": "not_null_violation",
    "UNIQUE": "unique_violation",
    "CHECK": "check_violation",
    "FOREIGN KEY": "foreign_key_violation",
}


def _constraint_fields() -> dict[str, str]:
    """Constraint name -> the field(s) it guards, as ``table.column[, column]``: CHECK
    constraints by the columns their expression mentions."""
    out: dict[str, str] = {}
    for table in S.TABLES:
        for constraint in table.constraints:
            name = constraint.name
            if not isinstance(name, str):
                continue
            if isinstance(constraint, sa.CheckConstraint):
                text = str(constraint.sqltext)
                columns = [c.name for c in table.c if re.search(rf"\b{c.name}\b", text)]
            else:
                columns = [c.name for c in getattr(constraint, "columns", [])]
            if columns:
                out[name] = f"{table.name}." + ", ".join(columns)
    return out


def _checked(column: sa.Column[Any], field: str, value: Any) -> Any:
    """``value`` as the column takes it, or a rejection naming the field (SQLite would
    store an over-long string or a malformed date that PostgreSQL refuses)."""
    try:
        coerced = _coerce(column, value)
    except (ValueError, TypeError, ArithmeticError) as exc:
        raise _Rejected(field, f"invalid value {value!r}: {exc}", "invalid_value") from None
    length = getattr(column.type, "length", None)
    if isinstance(coerced, str) and length is not None and len(coerced) > length:
        raise _Rejected(
            field, f"value too long ({len(coerced)} > {length} characters)", "value_too_long"
        )
    return coerced


def _key(record: NativeRecord, spec: EntityTable) -> str:
    value = record.get(spec.hub_id_column)
    return "" if value in (None, "") else str(value)


def _rejection(key: str, field: str, message: str, code: str) -> WriteResult:
    return WriteResult(key, Outcome.REJECTED, error=f"{field}: {message}", error_code=code)


def account_number_for(hub_id: str) -> str:
    """Billing's own account number for an account the hub creates (32 characters max;
    derived from the hub id, so a replayed create finds the same number)."""
    number = f"H-{hub_id}"
    if len(number) <= 32:
        return number
    return "H-" + hashlib.sha256(hub_id.encode()).hexdigest()[:30]


@dataclass(frozen=True)
class BillingSettings:
    database_url: str = field(
        metadata=env_var(
            "BILLING_DATABASE_URL",
            required=True,
            doc="SQLAlchemy URL of the billing store",
        )
    )
    #: Seconds each incremental read starts before its cursor's stamp, re-reading the rows
    #: stamped in that span: a row committed after the last read with an earlier stamp (a
    #: long transaction, a job stamping rows with its own clock or its start time) is read
    #: all the same. Re-read rows that did not change write nothing (the sync engine's
    #: fingerprints); a larger overlap costs only re-reading. 0 turns it off.
    cursor_overlap_seconds: float = field(
        default=CURSOR_OVERLAP_SECONDS,
        metadata=cursor_overlap_env("BILLING_CURSOR_OVERLAP_SECONDS"),
    )


def from_env(env: Mapping[str, str], objects: MappedObjects | None = None) -> BillingConnector:
    """The connector for the billing store's URL (the registry's entry point)."""
    settings = read_settings(BillingSettings, env)
    return BillingConnector(
        settings.database_url, overlap=timedelta(seconds=settings.cursor_overlap_seconds)
    )

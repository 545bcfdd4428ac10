"""A sync that writes nothing (``hub sync --dry-run``): it reads every system as a sync
would, merges, plans and applies deletes, all inside one database transaction that is
rolled back at the end, and never calls a connector's write. What it reports is what the
sync would send: per system and entity the creates, the updates (each changed field,
before -> after) and the deactivations, with the records the guard would hold.

Why a rolled-back transaction rather than a second code path: the plan is the real
engine's plan, so the dry run cannot drift from the sync it previews. The sync's own
per-batch transactions become savepoints inside the outer one (SQLite gets SQLAlchemy's
documented pysqlite recipe so that savepoints and the final rollback really happen).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, create_engine, event, select
from sqlalchemy.orm import Session, sessionmaker

from connectors.base import Connector
from hub.store import repo
from hub.store.db import create_store_engine
from hub.store.models import OutboxEntry, Tombstone, Xref, utcnow
from hub.sync.engine import SyncEngine, SyncIncompleteError
from hub.sync.merge import flatten

#: change lines kept in a report (the counts cover everything)
SHOWN = 200


@dataclass
class DryRunReport:
    counts: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    #: {(system, entity): {create|update|deactivate: n}}
    planned: dict[tuple[str, str], Counter[str]] = field(default_factory=dict)
    #: the first SHOWN planned pushes: system, entity, key, operation, changes, held
    pushes: list[dict[str, Any]] = field(default_factory=list)
    tombstoned: list[dict[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        planned: dict[str, dict[str, dict[str, int]]] = {}
        for (system, entity), ops in sorted(self.planned.items()):
            planned.setdefault(system, {})[entity] = dict(ops)
        return {
            "dry_run": True,
            "counts": self.counts,
            "planned": planned,
            "pushes": self.pushes,
            "tombstoned": self.tombstoned,
            "errors": self.errors,
        }


def _savepoint_engine(store: Engine) -> Engine:
    """An engine on the same database whose nested transactions are real savepoints."""
    if store.dialect.name != "sqlite":
        return create_engine(store.url, pool_pre_ping=True)
    engine = create_store_engine(store.url.render_as_string(hide_password=False))

    @event.listens_for(engine, "connect")
    def _autocommit_driver(dbapi_conn: Any, _: Any) -> None:
        dbapi_conn.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN")

    return engine


def dry_run_sync(
    store: Engine,
    connectors: Mapping[str, Connector],
    entities: Sequence[str] | None = None,
    systems: Sequence[str] | None = None,
    **engine_options: Any,
) -> DryRunReport:
    report = DryRunReport()
    started = utcnow()
    engine = _savepoint_engine(store)
    try:
        with engine.connect() as conn:
            outer = conn.begin()
            try:
                sync = SyncEngine(engine, connectors, dry_run=True, **engine_options)
                sync.sessions = sessionmaker(
                    bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False
                )
                with suppress(SyncIncompleteError):  # each error is in sync.errors
                    sync.run(entities, systems)
                report.counts, report.errors = sync.report(), list(sync.errors)
                with Session(bind=conn, join_transaction_mode="create_savepoint") as s:
                    _collect(report, s, store, sync, started)
            finally:
                outer.rollback()
    finally:
        engine.dispose()
    return report


def _collect(
    report: DryRunReport, s: Session, store: Engine, sync: SyncEngine, started: Any
) -> None:
    """The outbox as the dry run left it, against the golden records as they are
    committed (read on another connection: the dry run's writes are not visible there)."""
    rows = list(
        s.scalars(
            select(OutboxEntry)
            .where(OutboxEntry.status.in_(["pending", "held"]))
            .order_by(OutboxEntry.entity, OutboxEntry.system, OutboxEntry.id)
        )
    )
    known = _linked(s, rows)
    after = _goldens(s, rows)
    with Session(store) as committed:
        before = _goldens(committed, rows)
    for row in rows:
        if row.operation in ("deactivate", "delete"):
            operation = row.operation
        else:
            linked = (row.entity, row.hub_id, row.system) in known
            operation = "update" if linked else "create"
        report.planned.setdefault((row.system, row.entity), Counter())[operation] += 1
        if len(report.pushes) < SHOWN:
            spec = sync.specs.get((row.system, row.entity))
            mapped = set(spec.fields) if spec is not None else set()
            old = flatten(before.get((row.entity, row.hub_id), {}))
            new = flatten(after.get((row.entity, row.hub_id), {}))
            changes = {
                name: {"before": old.get(name), "after": new.get(name)}
                for name in sorted(mapped)
                if operation == "update" and old.get(name) != new.get(name)
            }
            report.pushes.append(
                {
                    "system": row.system,
                    "entity": row.entity,
                    "key": row.hub_id,
                    "operation": operation,
                    "held": row.status == "held",
                    "changes": changes,
                }
            )
    for stone in s.scalars(select(Tombstone).where(Tombstone.recorded_at >= started)):
        report.tombstoned.append(
            {"entity": stone.entity, "key": stone.hub_id, "deleted_in": stone.system}
        )


def _by_entity(rows: Sequence[OutboxEntry]) -> Iterator[tuple[str, list[str]]]:
    """The rows' hub ids per entity, in chunks a query's IN list takes."""
    by_entity: dict[str, set[str]] = {}
    for row in rows:
        by_entity.setdefault(row.entity, set()).add(row.hub_id)
    for entity, hub_ids in by_entity.items():
        ids = sorted(hub_ids)
        for start in range(0, len(ids), 500):
            yield entity, ids[start : start + 500]


def _linked(s: Session, rows: Sequence[OutboxEntry]) -> set[tuple[str, str, str]]:
    """(entity, hub id, system) of the rows' records each system already holds."""
    return {
        (entity, hub_id, system)
        for entity, chunk in _by_entity(rows)
        for hub_id, system in s.execute(
            select(Xref.hub_id, Xref.system).where(Xref.entity == entity, Xref.hub_id.in_(chunk))
        )
    }


def _goldens(s: Session, rows: Sequence[OutboxEntry]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (entity, hub_id): dict(golden.data)
        for entity, chunk in _by_entity(rows)
        for hub_id, golden in repo.golden_for(s, entity, chunk).items()
    }

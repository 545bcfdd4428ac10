"""How many SQL statements a pull costs: an initial load must not pay one per record.

Why: the outbox's autoincrement key made SQLAlchemy's unit of work insert each planned
push with its own statement (it reads every id back), so a first load of N records cost
more than N statements (issue 18: at most 0.03 statements per record read)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import pytest
import sqlalchemy as sa

from hub.store import OutboxEntry
from hub.store.models import GoldenRecord
from tests.sync.conftest import CRM, account, count, landscape


@contextmanager
def executed(engine: sa.Engine) -> Iterator[list[tuple[str, Any, bool]]]:
    """Every statement ``engine`` executes inside the block: (SQL, parameters, many)."""
    seen: list[tuple[str, Any, bool]] = []

    def record(_c: object, _cur: object, sql: str, params: Any, _ctx: object, many: bool) -> None:
        seen.append((sql, params, many))

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


def test_an_initial_pull_writes_its_planned_pushes_in_bulk(setup) -> None:
    make, crm, _, engine = setup
    n = 400
    crm.page = 200
    for i in range(n):
        crm.put(account(f"Customer {i:04d}"))
    with executed(engine) as seen:
        make().pull("salesforce", "customer")
    statements = [sql for sql, _, _ in seen]
    # per record: a push to SAP, and the hub id back to the CRM
    assert count(engine, OutboxEntry) == 2 * n
    outbox_inserts = [s for s in statements if s.lstrip().upper().startswith("INSERT INTO OUTBOX")]
    assert 1 <= len(outbox_inserts) <= 4, len(outbox_inserts)
    assert len(statements) <= 0.1 * n, len(statements)


def _rebuild_store(engine: sa.Engine) -> None:
    """Empty the hub store's sync state, as a rebuild after an incident would."""
    from hub.store.models import Cursor, Fingerprint, GoldenRecord, Xref

    with engine.begin() as conn:
        for model in (OutboxEntry, Fingerprint, Xref, GoldenRecord, Cursor):
            conn.execute(sa.delete(model))


def test_a_load_plans_each_new_record_once_after_every_system_was_read(setup) -> None:
    """Rebuilding the store from two systems that already agree queues no push at all:
    a record's pushes are planned once after both were read, not planned from the first
    system's copy and dropped when the second turns out to hold it (issue 18)."""
    make, crm, erp, engine = setup
    for i in range(20):
        crm.put(account(f"Customer {i:02d}"))
    make().run(["customer"])
    assert len(erp.rows) == 20
    _rebuild_store(engine)
    with executed(engine) as seen:
        report = make().run(["customer"])
    inserted = [
        len(params) if many and isinstance(params, list) else 1
        for sql, params, many in seen
        if sql.lstrip().upper().startswith("INSERT INTO OUTBOX")
    ]
    assert report["hub"]["customer"]["created"] == 20
    assert sum(inserted) == 0
    assert count(engine, OutboxEntry) == 0


def test_records_left_unplanned_by_a_crash_are_planned_by_the_next_pass(setup, monkeypatch) -> None:
    """The plan after the pulls is driven by a cursor over the golden records, so a pass
    that dies between its pulls and that plan loses no push."""
    from hub.sync.engine import SyncEngine

    make, crm, erp, _ = setup
    crm.put(account("Acme GmbH"))

    def crash(self: SyncEngine, entity: str, chunk: int = 1000) -> None:
        raise RuntimeError("killed between the pulls and the plan")

    with monkeypatch.context() as m:
        m.setattr(SyncEngine, "plan_new_records", crash)
        with pytest.raises(RuntimeError, match="killed"):
            make().run(["customer"])
    assert erp.rows == {}
    make().run(["customer"])
    ((_, row),) = erp.rows.items()
    assert row["CustomerName"] == "Acme GmbH"


@pytest.fixture
def with_parents(tmp_path, store_url: str):
    """The CRM of tests.sync.conftest alone, with accounts that name their parent."""
    fields = {**cast(dict, CRM["fields"]), "parent_id": {"field": "ParentId", "ref": "customer"}}
    make, crm, _, engine = landscape(tmp_path, store_url, ({**CRM, "fields": fields},))
    return make, crm, engine


def test_references_to_accounts_of_the_same_batch_resolve_in_one_query(with_parents) -> None:
    """A child account read before its parent, in the same batch, resolves its parent
    through the link the batch recorded - and the batch's references are looked up in one
    query, not one per record (issue 18: SQL statements per record read)."""
    make, crm, engine = with_parents
    n = 100
    crm.page = 2 * n
    for i in range(n):  # each child first, its parent after it
        crm.put(account(f"Child {i:03d}", Id=f"001C{i:04d}", Hub_Id__c=f"CUS-C{i:04d}",
                        ParentId=f"001P{i:04d}"))  # fmt: skip
        crm.put(account(f"Parent {i:03d}", Id=f"001P{i:04d}", Hub_Id__c=f"CUS-P{i:04d}"))
    with executed(engine) as seen:
        make().pull("salesforce", "customer")
    selects = [
        sql
        for sql, _, _ in seen
        if sql.lstrip().upper().startswith("SELECT") and " xref" in sql.lower()
    ]
    with engine.connect() as conn:
        parents = dict(
            conn.execute(
                sa.select(GoldenRecord.hub_id, GoldenRecord.data).where(
                    GoldenRecord.hub_id.like("CUS-C%")
                )
            ).all()
        )
    assert len(parents) == n
    assert all(data["parent_id"] == hub_id.replace("-C", "-P") for hub_id, data in parents.items())
    assert len(selects) <= 6, len(selects)

"""How many SQL statements a pull costs: an initial load must not pay one per record.

Why: the outbox's autoincrement key made SQLAlchemy's unit of work insert each planned
push with its own statement (it reads every id back), so a first load of N records cost
more than N statements (issue 18: at most 0.03 statements per record read)."""

from __future__ import annotations

import sqlalchemy as sa

from hub.store import OutboxEntry
from tests.sync.conftest import account, count


def test_an_initial_pull_writes_its_planned_pushes_in_bulk(setup) -> None:
    make, crm, _, engine = setup
    n = 400
    crm.page = 200
    for i in range(n):
        crm.put(account(f"Customer {i:04d}"))
    statements: list[str] = []

    def record(_c, _cur, statement: str, *_: object) -> None:
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        make().pull("salesforce", "customer")
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    # per record: a push to SAP, and the hub id back to the CRM
    assert count(engine, OutboxEntry) == 2 * n
    outbox_inserts = [s for s in statements if s.lstrip().upper().startswith("INSERT INTO OUTBOX")]
    assert 1 <= len(outbox_inserts) <= 4, len(outbox_inserts)
    assert len(statements) <= 0.1 * n, len(statements)

"""BatchRows reads its xrefs, fingerprints, pending pushes and open quarantine as the
driver returns them (hub.store.repo.BatchRows._read_plain): on SQLite and PostgreSQL
alike they must come back as the same plain text and integers the ORM reads."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from hub.store import repo
from hub.store.db import create_store_engine
from hub.store.migrate import upgrade
from hub.store.models import OutboxEntry


@pytest.fixture
def engine(store_url: str) -> Engine:
    upgrade(store_url)
    return create_store_engine(store_url)


def test_loaded_rows_are_what_the_orm_reads(engine: Engine) -> None:
    with Session(engine) as s, s.begin():
        repo.set_xref(s, "customer", "CUS-1", "sap", "1000042")
        repo.set_fingerprint(s, "sap", "customer", "CUS-1", "f" * 64)
        repo.enqueue(s, "billing", "customer", "CUS-1", {"id": "B-1"}, "e" * 64)
        repo.quarantine(
            s, system="salesforce", entity="customer", external_key="CUS-1",
            payload={}, reason="why",
        )  # fmt: skip
    with Session(engine) as s, s.begin():
        held = repo.BatchRows(s, "customer", ["CUS-1"], {"sap": ["1000042"]})
        row_id = s.scalar(select(OutboxEntry.id))
    assert held.external_ids("CUS-1") == {"sap": "1000042"}
    assert held.holders[("sap", "1000042")].hub_id == "CUS-1"
    assert held.fps == {("sap", "CUS-1"): "f" * 64}
    assert held.pending == {("billing", "CUS-1"): [(row_id, "e" * 64)]}
    assert type(held.pending[("billing", "CUS-1")][0][0]) is int
    assert held.open == {("salesforce", "inbound", "CUS-1")}

"""The billing schema and the billing writer, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from connectors import billing_schema as S
from sandbox.postgres import fresh_database
from sandbox.seed.billing import BillingWriter
from sandbox.seed.book import Book
from sandbox.seed.drift import WITHHOLD_INVOICE, plan
from sandbox.seed.load import seed_systems


@pytest.fixture(scope="module")
def pg_url(request: pytest.FixtureRequest) -> str:
    """A database of its own in the session's PostgreSQL cluster."""
    server: str = request.getfixturevalue("postgres_server")
    return fresh_database(server, "sandbox_billing")


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'billing.sqlite'}"
    else:
        url = request.getfixturevalue("pg_url")
    eng = sa.create_engine(url)
    S.metadata.drop_all(eng)
    yield eng
    S.metadata.drop_all(eng)
    eng.dispose()


def test_schema_has_cursor_indexes_and_minor_unit_money(engine: sa.Engine) -> None:
    S.create_billing_schema(engine)
    S.create_billing_schema(engine)  # idempotent
    inspector = sa.inspect(engine)
    for table in S.TABLES:
        indexes = {tuple(ix["column_names"]) for ix in inspector.get_indexes(table.name)}
        assert ("updated_at", "id") in indexes, table.name
        for column in inspector.get_columns(table.name):
            if column["name"].endswith("_minor"):
                assert isinstance(column["type"], sa.BigInteger | sa.Integer), column
            if column["name"] == "currency":
                assert getattr(column["type"], "length", None) == 3


def test_seeded_book_reads_back_and_drift_is_planted(engine: sa.Engine, tmp_path: Path) -> None:
    book = Book(5, 120)
    report = seed_systems(book, [BillingWriter(engine)], tmp_path / "manifest.json")
    with engine.connect() as conn:
        count = conn.execute(sa.select(sa.func.count()).select_from(S.invoices)).scalar()
        assert count == report.counts["invoice"]
        # every invoice's lines add up, except the one planted off by one
        rows = conn.execute(
            sa.select(S.invoices.c.hub_id, S.invoices.c.total_minor, S.invoices.c.tax_minor)
            .add_columns(sa.func.sum(S.invoice_lines.c.amount_minor).label("lines"))
            .join(S.invoice_lines)
            .group_by(S.invoices.c.id)
        ).all()
        wrong = [r.hub_id for r in rows if r.lines + r.tax_minor != r.total_minor]
        # the cursor columns are timezone-aware UTC and ordered keyset reads work
        first = conn.execute(
            sa.select(S.accounts).order_by(S.accounts.c.updated_at, S.accounts.c.id).limit(1)
        ).one()
        assert first.updated_at.tzinfo is not None
        xref = conn.execute(
            sa.select(S.accounts.c.sap_customer_number, S.accounts.c.salesforce_account_id)
        ).first()
        assert xref is not None and len(xref.salesforce_account_id) == 18
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    # the planted price and proration drifts raise a line with its invoice's sums
    aggregate = [
        e["key"] for e in manifest if e["kind"] == "aggregate" and e["field"] == "sum:total_minor"
    ]
    assert wrong == aggregate
    terms = next(e for e in manifest if e["field"] == "payment_terms")
    assert terms["system"] == "billing" and terms["entity"] == "customer"
    # the unbilled period: its invoice was never written, and it is in the manifest
    withheld = next(d for d in plan(book) if d.action == WITHHOLD_INVOICE)
    unbilled = [e for e in manifest if e["field"] == "unbilled:period"]
    assert unbilled == [
        {"entity": "invoice", "key": withheld.key, "system": "billing", "kind": "aggregate",
         "field": "unbilled:period"}
    ]  # fmt: skip
    with engine.connect() as conn:
        hub_ids = set(conn.execute(sa.select(S.invoices.c.hub_id)).scalars())
    assert withheld.value["invoice"] not in hub_ids
    assert sum(len(s.invoices) for s in book.slices()) == len(hub_ids) + 1
    # ordinary inserts still work after a load with explicit ids (PostgreSQL sequences)
    with engine.begin() as conn:
        now = datetime.now(UTC)
        new_id = conn.execute(
            sa.insert(S.products)
            .values(sku="NEW-SKU", name="New", created_at=now, updated_at=now)
            .returning(S.products.c.id)
        ).scalar_one()
    assert new_id > 18


def test_manifest_is_byte_identical_for_the_same_seed(tmp_path: Path) -> None:
    outputs = []
    for run in ("a", "b"):
        root = tmp_path / run
        root.mkdir()
        engine = sa.create_engine(f"sqlite:///{root / 'billing.sqlite'}")
        seed_systems(Book(11, 80), [BillingWriter(engine)], root / "manifest.json")
        engine.dispose()
        outputs.append((root / "manifest.json").read_bytes())
    assert outputs[0] == outputs[1]

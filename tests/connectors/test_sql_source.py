"""Keyset-paginated reads and batched upserts of SQL entity tables, on SQLite and
PostgreSQL."""

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.base import Outcome
from connectors.sql_source import ChildTable, EntityTable, SqlEntitySource

md = sa.MetaData()
invoices = sa.Table(
    "invoices",
    md,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("hub_id", sa.String(64), unique=True, nullable=False),
    sa.Column("total_minor", sa.BigInteger, nullable=False),
    sa.Column("issue_date", sa.Date),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
lines = sa.Table(
    "invoice_lines",
    md,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("invoice_id", sa.ForeignKey("invoices.id"), nullable=False),
    sa.Column("line_no", sa.Integer, nullable=False),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
)
TABLES = {
    "invoice": EntityTable(
        "invoices", children=(ChildTable("invoice_lines", "invoice_id", "line_no"),)
    )
}
SAME = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture
def engine(store_url: str) -> sa.Engine:
    engine = sa.create_engine(store_url)
    md.create_all(engine)
    return engine


def seed(engine: sa.Engine, n: int, stamps: list[datetime]) -> None:
    with engine.begin() as conn:
        for i in range(n):
            pk = conn.execute(
                sa.insert(invoices)
                .values(
                    hub_id=f"INV-{i:04d}",
                    total_minor=i,
                    updated_at=stamps[i % len(stamps)],
                )
                .returning(invoices.c.id)
            ).scalar_one()
            conn.execute(sa.insert(lines), [{"invoice_id": pk, "line_no": 1, "amount_minor": i}])


def test_equal_timestamps_are_never_skipped_across_batches(engine: sa.Engine) -> None:
    seed(engine, 23, [SAME])
    source = SqlEntitySource(engine, TABLES, batch_size=5)
    seen: list[str] = []
    cursor = None
    for batch in source.read_changes("invoice", None):
        seen += [r["hub_id"] for r in batch.records]
        assert all(len(r["invoice_lines"]) == 1 for r in batch.records)
        cursor = batch.cursor
        if len(seen) == 10:
            break  # a crash after two committed batches: resume from the stored cursor
    for batch in source.read_changes("invoice", cursor):
        seen += [r["hub_id"] for r in batch.records]
    assert seen == [f"INV-{i:04d}" for i in range(23)]


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)  # db reset per example
@given(n=st.integers(0, 30), batch=st.integers(1, 7), distinct=st.integers(1, 4))
def test_every_row_exactly_once_for_any_batching(
    store_url: str, n: int, batch: int, distinct: int
) -> None:
    engine = sa.create_engine(store_url)
    md.drop_all(engine)
    md.create_all(engine)
    seed(engine, n, [datetime(2024, 1, d + 1, tzinfo=UTC) for d in range(distinct)])
    source = SqlEntitySource(engine, TABLES, batch_size=batch)
    got = [r["hub_id"] for b in source.read_changes("invoice", None) for r in b.records]
    assert sorted(got) == sorted(f"INV-{i:04d}" for i in range(n))
    assert len(got) == len(set(got))
    engine.dispose()


def test_upserts_report_created_updated_unchanged_and_bump_the_stamp(engine: sa.Engine) -> None:
    source = SqlEntitySource(engine, TABLES)
    payload = {
        "hub_id": "INV-1",
        "total_minor": 500,
        "issue_date": "2024-02-01",
        "invoice_lines": [{"line_no": 1, "amount_minor": 500}],
    }
    (created,) = source.write_batch("invoice", [payload])
    assert created.outcome is Outcome.CREATED and created.external_id
    (same,) = source.write_batch("invoice", [payload])
    assert same.outcome is Outcome.UNCHANGED and same.external_id == created.external_id
    changed = {
        **payload,
        "invoice_lines": [{"line_no": 1, "amount_minor": 400}, {"line_no": 2, "amount_minor": 100}],
    }
    (updated,) = source.write_batch("invoice", [changed])
    assert updated.outcome is Outcome.UPDATED
    (record,) = next(iter(source.read_by_keys("invoice", ["INV-1"]))).records
    assert [line["amount_minor"] for line in record["invoice_lines"]] == [400, 100]
    assert record["issue_date"] == "2024-02-01"
    changes = [r for b in source.read_changes("invoice", None) for r in b.records]
    assert [r["hub_id"] for r in changes] == ["INV-1"]

"""Keyset-paginated reads and batched upserts of SQL entity tables, on SQLite and
PostgreSQL."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

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


#: Text forms SQLite stores a time in, by who writes it.
TEXT_FORMS: tuple[Callable[[datetime], str], ...] = (
    lambda t: t.strftime("%Y-%m-%d %H:%M:%S"),  # CURRENT_TIMESTAMP (drops the fraction)
    lambda t: t.strftime("%Y-%m-%d %H:%M:%S.%f"),  # SQLAlchemy
    lambda t: t.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],  # strftime('%f')
    lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    lambda t: t.isoformat(),  # 'T' and +00:00
    lambda t: t.astimezone(timezone(timedelta(hours=2))).isoformat(),  # +02:00
)


@settings(max_examples=30, deadline=None)
@given(
    rows=st.lists(st.tuples(st.integers(0, 7), st.integers(0, len(TEXT_FORMS) - 1)), max_size=20),
    batch=st.integers(1, 6),
)
def test_sqlite_stamps_in_any_text_form_are_read_in_time_order(
    rows: list[tuple[int, int]], batch: int
) -> None:
    """Half-second instants, each written in any of SQLite's text forms: read in time
    order (ties by id), exactly once, and a read resumed after any batch reads the rest."""
    engine = sa.create_engine("sqlite://")
    md.create_all(engine)
    seed(engine, len(rows), [SAME])
    stored = {}
    with engine.begin() as conn:
        for pk, (half_seconds, form) in enumerate(rows, start=1):
            text = TEXT_FORMS[form](SAME + timedelta(milliseconds=500 * half_seconds))
            stored[pk] = datetime.fromisoformat(text.replace("Z", "+00:00"))
            conn.exec_driver_sql("UPDATE invoices SET updated_at = ? WHERE id = ?", (text, pk))
    instant = {pk: t if t.tzinfo else t.replace(tzinfo=UTC) for pk, t in stored.items()}
    expected = [f"INV-{pk - 1:04d}" for pk in sorted(instant, key=lambda pk: (instant[pk], pk))]
    source = SqlEntitySource(engine, TABLES, batch_size=batch)
    batches = list(source.read_changes("invoice", None))
    assert [r["hub_id"] for b in batches for r in b.records] == expected
    for n, b in enumerate(batches):
        rest = [
            r["hub_id"] for later in source.read_changes("invoice", b.cursor) for r in later.records
        ]
        assert rest == expected[batch * (n + 1) :]
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

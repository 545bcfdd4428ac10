"""Hash pushdown finds exactly the differing keys (SQLite and PostgreSQL); the golden
loader streams golden_records into flattened Arrow that compares clean."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.fingerprint import fingerprint
from hub.recon.compare import compare
from hub.recon.engine import connect
from hub.recon.golden import children, golden_batches, load_golden
from hub.recon.pushdown import SqlTable, hashdiff
from hub.store.db import create_store_engine
from hub.store.migrate import upgrade
from hub.store.models import GoldenRecord

META = sa.MetaData()
INVOICES = sa.Table(
    "invoices",
    META,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("number", sa.String(20)),
    sa.Column("total_minor", sa.BigInteger),
    sa.Column("status", sa.String(10)),
)
COLS = ("number", "total_minor", "status")


def _fill(engine: sa.Engine, n: int) -> None:
    META.drop_all(engine)
    META.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(INVOICES),
            [
                {
                    "id": i,
                    "number": f"N{i}",
                    "total_minor": i * 10,
                    "status": "paid" if i % 3 else None,
                }
                for i in range(1, n + 1)
            ],
        )


def _drift(engine: sa.Engine, changed: set[int], deleted: set[int], added: set[int]) -> None:
    with engine.begin() as conn:
        for i in changed:
            conn.execute(sa.update(INVOICES).where(INVOICES.c.id == i).values(status="void"))
        if deleted:
            conn.execute(sa.delete(INVOICES).where(INVOICES.c.id.in_(deleted)))
        for i in added:
            conn.execute(sa.insert(INVOICES).values(id=i, number="X", total_minor=1, status=None))


@settings(max_examples=15, deadline=None)
@given(st.data())
def test_bisection_finds_exactly_the_differing_keys(
    tmp_path_factory: object, data: st.DataObject
) -> None:
    base = Path(tmp_path_factory.mktemp("hd"))  # type: ignore[attr-defined]
    n = 3000
    golden = sa.create_engine(f"sqlite:///{base / 'golden.sqlite'}")
    billing = sa.create_engine(f"sqlite:///{base / 'billing.sqlite'}")
    _fill(golden, n)
    _fill(billing, n)
    keys = st.integers(1, n)
    changed = data.draw(st.sets(keys, max_size=20))
    deleted = data.draw(st.sets(keys, max_size=10)) - changed
    added = data.draw(st.sets(st.integers(n + 1, n + 500), max_size=10))
    _drift(billing, changed, deleted, added)
    diff = hashdiff(
        SqlTable(golden, "invoices", "id", COLS),
        SqlTable(billing, "invoices", "id", COLS),
        fanout=8,
        leaf_rows=64,
    )
    assert diff.differing == sorted(changed)
    assert diff.only_a == sorted(deleted)
    assert diff.only_b == sorted(added)
    if not (changed or deleted or added):
        assert diff.rows_fetched == 0
    golden.dispose()
    billing.dispose()


def test_pushdown_on_postgresql_against_sqlite(store_url: str, tmp_path: Path) -> None:
    """Mixed dialects hash with MD5 on both sides; same-dialect PostgreSQL natively."""
    pg_or_lite = sa.create_engine(store_url)
    lite = sa.create_engine(f"sqlite:///{tmp_path / 'other.sqlite'}")
    _fill(pg_or_lite, 500)
    _fill(lite, 500)
    _drift(pg_or_lite, {7, 300}, {42}, {900})
    diff = hashdiff(
        SqlTable(lite, "invoices", "id", COLS),
        SqlTable(pg_or_lite, "invoices", "id", COLS),
        fanout=4,
        leaf_rows=16,
    )
    assert (diff.differing, diff.only_a, diff.only_b) == ([7, 300], [42], [900])
    assert diff.rows_fetched < 200  # bisection, not a full download
    pg_or_lite.dispose()
    lite.dispose()


def _customer(i: int, city: str = "Berlin") -> dict[str, object]:
    return {
        "hub_id": f"c{i}",
        "legal_name": f"Cust {i}",
        "currency": "EUR",
        "billing_address": {"street": "S", "city": city, "postal_code": "1", "country": "DE"},
        "updated_at": "2024-05-01T10:00:00+00:00",
    }


def _invoice(i: int) -> dict[str, object]:
    return {
        "hub_id": f"i{i}",
        "number": f"N{i}",
        "customer_id": "c1",
        "currency": "EUR",
        "lines": [
            {"line_no": 1, "amount_minor": 5, "period_start": "2024-05-01"},
            {"line_no": 2, "amount_minor": 7},
        ],
        "subtotal_minor": 12,
        "total_minor": 12,
        "issue_date": "2024-05-01",
        "due_date": "2024-05-31",
        "status": "open",
        "updated_at": "2024-05-01T10:00:00+02:00",
    }


def test_golden_loader_streams_flattened_arrow(store_url: str) -> None:
    upgrade(store_url)
    engine = create_store_engine(store_url)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        rows = [("customer", _customer(i)) for i in range(5)] + [
            ("invoice", _invoice(i)) for i in range(3)
        ]
        conn.execute(
            sa.insert(GoldenRecord),
            [
                {
                    "entity": e,
                    "hub_id": d["hub_id"],
                    "data": d,
                    "field_meta": {},
                    "fingerprint": fingerprint(d),
                    "created_at": now,
                    "updated_at": now,
                }
                for e, d in rows
            ],
        )
    batches = list(golden_batches(engine, "customer", batch_size=2))
    assert [b.num_rows for b in batches] == [2, 2, 1]
    customers = pa.concat_tables(batches)
    assert customers.column("billing_address.city").to_pylist() == ["Berlin"] * 5
    assert customers.column("key").to_pylist() == [f"c{i}" for i in range(5)]
    assert customers.schema.field("updated_at").type == pa.timestamp("us", tz="UTC")

    system = pa.Table.from_pylist(
        [
            {"key": f"c{i}", "billing_address.city": c, "legal_name": f"Cust {i}"}
            for i, c in enumerate(["Berlin", "Rome", "Berlin", "Berlin"])
        ]
    )
    found = compare(connect(), customers, system, entity="customer", system="salesforce")
    assert {(r["key"], r["kind"], r["field"]) for r in found.to_pylist()} == {
        ("c1", "mismatch", "billing_address.city"),
        ("c4", "missing", None),
    }

    invoices = load_golden(engine, "invoice")
    lines = children(invoices, "lines")
    assert lines.num_rows == 6
    assert lines.column("key").to_pylist() == ["i0", "i0", "i1", "i1", "i2", "i2"]
    assert str(lines.column("period_start").type) == "date32[day]"
    assert str(invoices.column("updated_at")[0]) == "2024-05-01 08:00:00+00:00"
    engine.dispose()

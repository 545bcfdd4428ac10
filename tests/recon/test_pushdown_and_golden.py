"""Hash pushdown finds exactly the differing keys (SQLite-SQLite, PostgreSQL-PostgreSQL with
its native 64-bit hash, and mixed); the golden loader streams golden_records into flattened
Arrow that compares clean."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects.postgresql import JSONB

from hub.fingerprint import fingerprint
from hub.recon.compare import compare
from hub.recon.engine import connect
from hub.recon.golden import children, golden_batches, load_golden
from hub.recon.pushdown import HashDiff, SqlTable, hashdiff
from hub.store.db import create_store_engine
from hub.store.migrate import upgrade
from hub.store.models import GoldenRecord
from sandbox.postgres import fresh_database

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


# -- both sides on one backend: PostgreSQL pairs hash natively (64-bit), SQLite by CRC-32 --
PAIR_META = sa.MetaData()
PAIR_COLS = ("number", "total_minor", "status", "issued")
PAIR_TABLES = {
    name: sa.Table(
        name,
        PAIR_META,
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("number", sa.Text),
        sa.Column("total_minor", sa.BigInteger),
        sa.Column("status", sa.String(40)),
        sa.Column("issued", sa.Date),
    )
    for name in ("golden_inv", "billing_inv")
}
TEXT = st.sampled_from(["", "'", "''", "O'Brien", '"q"', "a|b", "\\", "NULL", "é€"]) | st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\x1e"),
    max_size=6,
)
VALUES = {
    "number": st.none() | TEXT,
    "total_minor": st.none() | st.integers(-(2**62), 2**62),
    "status": st.none() | TEXT,
    "issued": st.none() | st.dates(date(1900, 1, 1), date(2200, 12, 31)),
}
PAIR_N = 300


def _base_row(i: int) -> dict[str, object]:
    return {
        "id": i,
        "number": f"N'{i}" if i % 5 == 0 else f"N{i}",
        "total_minor": None if i % 7 == 0 else i * 10,
        "status": None if i % 3 == 0 else "paid",
        "issued": date(2024, 1, 1) + timedelta(days=i % 365),
    }


@pytest.fixture(scope="module")
def pair_engines(
    postgres_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, tuple[sa.Engine, sa.Engine]]]:
    pg_url = fresh_database(postgres_server, "pushdown_pairs")
    # the two PostgreSQL sides in different session time zones: timestamps hash as UTC
    pg_a = sa.create_engine(pg_url, connect_args={"options": "-c TimeZone=UTC"})
    pg_b = sa.create_engine(pg_url, connect_args={"options": "-c TimeZone=Asia/Kolkata"})
    base = tmp_path_factory.mktemp("pairs")
    lite_a = sa.create_engine(f"sqlite:///{base / 'golden.sqlite'}")
    lite_b = sa.create_engine(f"sqlite:///{base / 'billing.sqlite'}")
    yield {"postgresql": (pg_a, pg_b), "sqlite": (lite_a, lite_b)}
    for e in (pg_a, pg_b, lite_a, lite_b):
        e.dispose()


def _load(engine: sa.Engine, table: sa.Table, rows: list[dict[str, object]]) -> None:
    table.drop(engine, checkfirst=True)
    table.create(engine)
    with engine.begin() as conn:
        if rows:
            conn.execute(sa.insert(table), rows)
        if engine.dialect.name == "postgresql":
            conn.execute(sa.text(f"ANALYZE {table.name}"))


def _pair_diff(
    engines: tuple[sa.Engine, sa.Engine],
    golden_rows: list[dict[str, object]],
    billing_rows: list[dict[str, object]],
    **kw: int,
) -> HashDiff:
    ga, gb = engines
    _load(ga, PAIR_TABLES["golden_inv"], golden_rows)
    _load(gb, PAIR_TABLES["billing_inv"], billing_rows)
    return hashdiff(
        SqlTable(ga, "golden_inv", "id", PAIR_COLS),
        SqlTable(gb, "billing_inv", "id", PAIR_COLS),
        **kw,
    )


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
@settings(max_examples=12, deadline=None)
@given(data=st.data())
def test_same_backend_pushdown_finds_exactly_the_planted_keys(
    pair_engines: dict[str, tuple[sa.Engine, sa.Engine]], backend: str, data: st.DataObject
) -> None:
    golden_rows = [_base_row(i) for i in range(1, PAIR_N + 1)]
    billing = {r["id"]: dict(r) for r in golden_rows}
    keys = st.integers(1, PAIR_N)
    changed: set[int] = set()
    for key in data.draw(st.sets(keys, max_size=12), label="changed"):
        col = data.draw(st.sampled_from(PAIR_COLS), label="column")
        value = data.draw(VALUES[col], label="value")
        if billing[key][col] != value:
            billing[key][col] = value
            changed.add(key)
    deleted = data.draw(st.sets(keys, max_size=6), label="deleted") - changed
    for key in deleted:
        del billing[key]
    added = data.draw(st.sets(st.integers(PAIR_N + 1, 3 * PAIR_N), max_size=6), label="added")
    for key in added:
        billing[key] = {"id": key, **{c: data.draw(VALUES[c]) for c in PAIR_COLS}}
    kw = data.draw(
        st.fixed_dictionaries(
            {
                "first_rows": st.sampled_from([4, 32, 128, 1000]),
                "leaf_rows": st.sampled_from([1, 4, 32]),
                "fanout": st.sampled_from([2, 8, 64]),
            }
        ),
        label="params",
    )
    diff = _pair_diff(pair_engines[backend], golden_rows, list(billing.values()), **kw)
    assert diff.hash == ("pg64" if backend == "postgresql" else "crc32")
    assert diff.differing == sorted(changed)
    assert diff.only_a == sorted(deleted)
    assert diff.only_b == sorted(added)
    if not (changed or deleted or added):
        assert diff.rows_fetched == 0


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_values_swapped_between_keys_of_one_segment_are_found(
    pair_engines: dict[str, tuple[sa.Engine, sa.Engine]], backend: str
) -> None:
    """The row hash covers the key: the same multiset of values under other keys differs."""
    golden_rows = [_base_row(i) for i in range(1, 65)]
    billing_rows = [dict(r) for r in golden_rows]
    billing_rows[9] = {**golden_rows[10], "id": 10}
    billing_rows[10] = {**golden_rows[9], "id": 11}
    diff = _pair_diff(pair_engines[backend], golden_rows, billing_rows)
    assert (diff.differing, diff.only_a, diff.only_b) == ([10, 11], [], [])
    empty = _pair_diff(pair_engines[backend], [], [])
    assert (empty.differing, empty.only_a, empty.only_b, empty.queries > 0) == ([], [], [], True)


def test_postgresql_native_hash_covers_its_types(
    pair_engines: dict[str, tuple[sa.Engine, sa.Engine]],
) -> None:
    """numeric, timestamptz (sides in different session time zones), bool, float, jsonb,
    uuid, smallint and varchar columns hash by their type's own function; NULLs count."""
    meta = sa.MetaData()
    cols = ("amount", "at", "flag", "ratio", "doc", "ref", "small", "code")
    tables = [
        sa.Table(
            name,
            meta,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("amount", sa.Numeric(12, 2)),
            sa.Column("at", sa.DateTime(timezone=True)),
            sa.Column("flag", sa.Boolean),
            sa.Column("ratio", sa.Float),
            sa.Column("doc", JSONB),
            sa.Column("ref", sa.Uuid),
            sa.Column("small", sa.SmallInteger),
            sa.Column("code", sa.String(10)),
        )
        for name in ("golden_typed", "billing_typed")
    ]
    at = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    rows = [
        {
            "id": i,
            "amount": Decimal(i) / 4,
            "at": at + timedelta(hours=i),
            "flag": i % 2 == 0,
            "ratio": i / 3,
            "doc": {"k": i, "q": "it's"},
            "ref": uuid.UUID(int=i),
            "small": i % 100,
            "code": None if i % 4 == 0 else f"c'{i}",
        }
        for i in range(1, 201)
    ]
    changes = {
        3: ("amount", Decimal("0.76")),
        17: ("at", at + timedelta(hours=17, seconds=1)),
        40: ("flag", None),
        41: ("ratio", 41 / 3 + 1e-9),
        77: ("doc", {"k": 77, "q": "its"}),
        120: ("ref", uuid.UUID(int=7)),
        150: ("small", None),
        160: ("code", "c'161"),
        199: ("code", ""),
    }
    billing_rows = [dict(r) for r in rows]
    for key, (col, value) in changes.items():
        billing_rows[key - 1][col] = value
    ga, gb = pair_engines["postgresql"]
    _load(ga, tables[0], rows)
    _load(gb, tables[1], billing_rows)
    diff = hashdiff(
        SqlTable(ga, "golden_typed", "id", cols), SqlTable(gb, "billing_typed", "id", cols)
    )
    assert diff.hash == "pg64"
    assert (diff.differing, diff.only_a, diff.only_b) == (sorted(changes), [], [])

"""one_of (hub.store.db): ``column IN (keys)`` with the keys as one bound array. It must
select exactly what an expanded IN selects, for text and integer keys, none, repeats,
and more keys than SQLite binds parameters; compile to one cached statement whatever
the list; and be served by the column's index on SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, Select, insert, select

from hub.store.db import create_store_engine, one_of
from hub.store.migrate import upgrade
from hub.store.models import OutboxEntry, Xref

NOW = datetime(2026, 12, 7, tzinfo=UTC)


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    upgrade(store_url)
    engine = create_store_engine(store_url)
    with engine.begin() as conn:
        conn.execute(
            insert(Xref),
            [
                {"entity": "customer", "hub_id": f"CUS-{i}", "system": "sap",
                 "external_id": str(1000 + i), "updated_at": NOW}
                for i in range(300)
            ],
        )  # fmt: skip
        conn.execute(
            insert(OutboxEntry),
            [
                {"system": "sap", "entity": "customer", "hub_id": f"CUS-{i}",
                 "payload": {}, "fingerprint": "f", "status": "pending",
                 "created_at": NOW, "updated_at": NOW}
                for i in range(5)
            ],
        )  # fmt: skip
    yield engine
    engine.dispose()  # the fixture drops the database next


@pytest.mark.parametrize(
    "keys",
    [
        [],
        ["CUS-3"],
        ["CUS-3", "CUS-3", "CUS-7"],
        ["nope", "CUS-299"],
        [f"CUS-{i}" for i in range(0, 300, 2)],
    ],
)
def test_selects_what_an_expanded_in_selects(engine: Engine, keys: list[str]) -> None:
    with engine.connect() as conn:
        expanded = set(conn.scalars(select(Xref.external_id).where(Xref.hub_id.in_(keys))))
        bound = set(conn.scalars(select(Xref.external_id).where(one_of(Xref.hub_id, keys))))
    assert bound == expanded


def test_integer_keys_and_more_than_sqlite_binds(engine: Engine) -> None:
    with engine.connect() as conn:
        ids = sorted(conn.scalars(select(OutboxEntry.id)))
        wanted = [ids[1], ids[3], *range(10**6, 10**6 + 40_000)]
        found = sorted(conn.scalars(select(OutboxEntry.id).where(one_of(OutboxEntry.id, wanted))))
    assert found == [ids[1], ids[3]]


def test_one_statement_whatever_the_list(engine: Engine) -> None:
    def stmt(keys: list[str]) -> Select[tuple[str]]:
        return select(Xref.external_id).where(one_of(Xref.hub_id, keys))

    one, two = stmt(["a"]), stmt(["a", "b", "c"])
    assert one._generate_cache_key() == two._generate_cache_key()
    assert str(one.compile(engine)) == str(two.compile(engine))


def test_sqlite_searches_the_index(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/hub.sqlite"
    upgrade(url)
    engine = create_store_engine(url)
    query = select(Xref.hub_id).where(
        Xref.entity == "customer", Xref.system == "sap", one_of(Xref.external_id, ["1001"])
    )
    sql = str(query.compile(engine))
    assert sql.endswith("IN (SELECT value FROM json_each(?))"), sql  # no "= 1" after it
    with engine.connect() as conn:
        explained = conn.exec_driver_sql(
            f"EXPLAIN QUERY PLAN {sql}", ("customer", "sap", '["1001"]')
        )
        plan = explained.all()
    engine.dispose()
    assert any("USING" in row[3] and "INDEX" in row[3] for row in plan), plan
    assert not any("SCAN xref" in row[3] for row in plan), plan

"""Delta queries read from the store's stamp index: a WHERE that bounds SystemModstamp
(or LastModifiedDate) from below - alone, in an AND, or the connector's keyset OR - reads
only the records from that stamp on, and answers exactly what a full scan answers."""

from __future__ import annotations

import dataclasses
import datetime as dt
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox.salesforce import seed_records
from sandbox.salesforce.ids import make_id
from sandbox.salesforce.query import execute
from sandbox.salesforce.soql import STAMP_FIELDS, Floor, parse
from sandbox.salesforce.values import format_datetime
from sandbox.store import DocumentStore
from tests.sandbox.salesforce.conftest import BASE_TS, Org, account_id, seed_accounts

pytestmark = pytest.mark.timeout(120)

X = "2025-06-01T00:05:00.000Z"
X_STORED = "2025-06-01T00:05:00.000+0000"


@pytest.mark.parametrize(
    ("where", "floor"),
    [
        (f"SystemModstamp >= {X}", Floor("SystemModstamp", X_STORED)),
        (f"SystemModstamp > {X}", Floor("SystemModstamp", X_STORED)),
        (f"SystemModstamp = {X}", Floor("SystemModstamp", X_STORED)),
        ("SystemModstamp > 2025-06-01T02:05:00+02:00", Floor("SystemModstamp", X_STORED)),
        (
            f"SystemModstamp > {X} OR (SystemModstamp = {X} AND Id > '001000000000001AAA')",
            Floor("SystemModstamp", X_STORED),
        ),
        (
            f"SystemModstamp >= {X} AND SystemModstamp < 2025-07-01T00:00:00Z",
            Floor("SystemModstamp", X_STORED),
        ),
        (  # an AND keeps the highest bound
            f"SystemModstamp >= 2025-01-01T00:00:00Z AND (SystemModstamp > {X})",
            Floor("SystemModstamp", X_STORED),
        ),
        (  # an OR keeps the lowest bound
            f"SystemModstamp >= 2025-09-01T00:00:00Z OR SystemModstamp = {X}",
            Floor("SystemModstamp", X_STORED),
        ),
        (f"Name = 'a' AND LastModifiedDate > {X}", Floor("LastModifiedDate", X_STORED)),
        (
            f"LastModifiedDate > {X} AND SystemModstamp >= 2025-01-01T00:00:00Z",
            Floor("SystemModstamp", "2025-01-01T00:00:00.000+0000"),
        ),
        # no lower bound every match satisfies: the full scan
        (f"SystemModstamp < {X}", None),
        (f"SystemModstamp <= {X}", None),
        (f"SystemModstamp != {X}", None),
        (f"NOT SystemModstamp < {X}", None),
        (f"SystemModstamp > {X} OR Name = 'a'", None),
        (f"SystemModstamp > {X} OR LastModifiedDate > {X}", None),
        ("SystemModstamp = null", None),
        (f"CreatedDate > {X}", None),
        ("Name = 'a'", None),
    ],
)
def test_floor_of_where_shapes(where: str, floor: Floor | None) -> None:
    assert parse(f"SELECT Id FROM Account WHERE {where}").floor == floor


def test_relationship_stamp_is_not_a_floor() -> None:
    query = parse(f"SELECT Id FROM Contact WHERE Account.SystemModstamp > {X}")
    assert query.floor is None


# -- the narrowed read answers what the full scan answers -----------------------------------
STAMPS = [BASE_TS + dt.timedelta(milliseconds=250 * n) for n in range(8)]
NAMES = ["Acme", "acme", "Beta", "Gamma"]


def _literal(moment: dt.datetime, style: int) -> str:
    """The same moment as SOQL datetime literals of several layouts."""
    if style == 0:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    if style == 1:
        return moment.astimezone(dt.timezone(dt.timedelta(hours=2))).isoformat()
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")  # whole seconds


SHAPES = [
    "SELECT Id, Name FROM Account WHERE SystemModstamp >= {x} ORDER BY SystemModstamp, Id",
    "SELECT Id, Name, SystemModstamp FROM Account WHERE SystemModstamp > {x} OR "
    "(SystemModstamp = {x} AND Id > '{id}') ORDER BY SystemModstamp, Id LIMIT {n}",
    "SELECT Id FROM Account WHERE SystemModstamp >= {x} AND SystemModstamp < {y}",
    "SELECT Id, Name FROM Account WHERE SystemModstamp > {x} LIMIT {n} OFFSET {m}",
    "SELECT Id, Name FROM Account WHERE SystemModstamp > {x} ORDER BY Name DESC LIMIT {n}",
    "SELECT Id, Name FROM Account WHERE SystemModstamp = {x} ORDER BY Name",
    "SELECT Id, Name FROM Account WHERE SystemModstamp >= {x} ORDER BY Name",
    "SELECT COUNT() FROM Account WHERE SystemModstamp > {x} LIMIT {n}",
    "SELECT Id FROM Account WHERE LastModifiedDate >= {x} AND Name LIKE 'a%'",
    "SELECT Id FROM Account WHERE Id = '{id}' AND SystemModstamp >= {x}",
    "SELECT Id, Account.Name FROM Contact WHERE SystemModstamp >= {x} ORDER BY LastName",
    "SELECT Id, LastName FROM Contact WHERE SystemModstamp > {x} OR "
    "(SystemModstamp = {x} AND Id > '{cid}') ORDER BY SystemModstamp, Id",
]

record = st.tuples(
    st.sampled_from(STAMPS), st.sampled_from(STAMPS), st.sampled_from(NAMES), st.booleans()
)


def _seed(store: DocumentStore, accounts: list[Any], contacts: list[Any]) -> None:
    seed_records(
        store,
        "Account",
        [
            {"Id": account_id(i), "Name": name, "LastModifiedDate": changed,
             "SystemModstamp": stamp, "IsDeleted": deleted}
            for i, (stamp, changed, name, deleted) in enumerate(accounts)
        ],
    )  # fmt: skip
    seed_records(
        store,
        "Contact",
        [
            {"Id": make_id("003", i), "LastName": name, "SystemModstamp": stamp,
             "AccountId": account_id(i % len(accounts)) if accounts and i % 3 else None,
             "IsDeleted": deleted}
            for i, (stamp, _, name, deleted) in enumerate(contacts)
        ],
    )  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    accounts=st.lists(record, max_size=25),
    contacts=st.lists(record, max_size=10),
    shape=st.sampled_from(SHAPES),
    low=st.sampled_from(
        [*STAMPS, STAMPS[0] - dt.timedelta(days=1), STAMPS[3] + dt.timedelta(microseconds=100)]
    ),
    style=st.integers(0, 2),
    high=st.sampled_from(STAMPS),
    key=st.integers(0, 30),
    n=st.integers(1, 10),
    m=st.integers(0, 5),
    include_deleted=st.booleans(),
)
def test_index_read_matches_full_scan(
    accounts: list[Any],
    contacts: list[Any],
    shape: str,
    low: dt.datetime,
    style: int,
    high: dt.datetime,
    key: int,
    n: int,
    m: int,
    include_deleted: bool,
) -> None:
    store = DocumentStore(":memory:")
    try:
        for name in STAMP_FIELDS:
            store.index_field(name)
        _seed(store, accounts, contacts)
        soql = shape.format(
            x=_literal(low, style), y=_literal(high, 0), id=account_id(key),
            cid=make_id("003", key), n=n, m=m,
        )  # fmt: skip
        query = parse(soql)
        assert query.floor is not None
        narrowed = execute(store, query, include_deleted=include_deleted)
        scanned = execute(
            store, dataclasses.replace(query, floor=None), include_deleted=include_deleted
        )
        assert narrowed.rows == scanned.rows
        assert narrowed.total == scanned.total
        assert narrowed.relationships == scanned.relationships
    finally:
        store.close()


def test_ties_keep_the_full_scan_order() -> None:
    """Rows the ORDER BY keys tie on (names equal case-insensitively), or every row without
    ORDER BY, come in id order, as a scan reads them - not in the index's stamp order."""
    late, early = STAMPS[5], STAMPS[1]
    store = DocumentStore(":memory:")
    try:
        _seed(store, [(late, late, "acme", False), (early, early, "Acme", False)], [])
        for soql in (
            f"SELECT Id FROM Account WHERE SystemModstamp >= {_literal(early, 0)} ORDER BY Name",
            f"SELECT Id FROM Account WHERE SystemModstamp >= {_literal(early, 0)} LIMIT 1",
        ):
            query = parse(soql)
            assert query.floor is not None
            rows = execute(store, query, include_deleted=False).rows
            assert rows[0][0] == account_id(0), soql
    finally:
        store.close()


# -- the emulator reads delta queries from the index -----------------------------------------
def test_emulator_indexes_stamps_and_sqlite_uses_the_index(org: Org) -> None:
    seed_accounts(org.store, 50)
    with sqlite3.connect(org.store.path) as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        assert {"docs_by_SystemModstamp", "docs_by_LastModifiedDate"} <= names
        value = "json_extract(data, '$.SystemModstamp')"
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT id, data FROM docs WHERE collection=? "
            f"AND {value}>=? ORDER BY {value}, id LIMIT 10",
            ("Account", X_STORED),
        ).fetchall()
    assert any("docs_by_SystemModstamp" in str(row[-1]) for row in plan), plan


def test_delta_query_reads_only_changed_records(
    seeded: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    """500 accounts a minute apart; the connector's keyset query from minute 489 decodes
    the 11 records from that stamp on, never scanning the object."""
    read: list[str] = []
    original = DocumentStore.iter_from

    def counting(self: DocumentStore, *args: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
        for doc in original(self, *args, **kwargs):
            read.append(doc["Id"])
            yield doc

    def no_scan(self: DocumentStore, collection: str, batch_size: int = 2000) -> Any:
        raise AssertionError(f"full scan of {collection}")

    monkeypatch.setattr(DocumentStore, "iter_from", counting)
    monkeypatch.setattr(DocumentStore, "iter", no_scan)
    stamp = format_datetime(BASE_TS + dt.timedelta(minutes=489))[:23] + "Z"
    sf = seeded.client()
    result = sf.query(
        f"SELECT Id, Hub_Id__c, SystemModstamp FROM Account WHERE SystemModstamp > {stamp} "
        f"OR (SystemModstamp = {stamp} AND Id > '{account_id(489)}') "
        "ORDER BY SystemModstamp, Id"
    )
    assert [r["Id"] for r in result["records"]] == [account_id(i) for i in range(490, 500)]
    assert sorted(read) == [account_id(i) for i in range(489, 500)]

"""The billing store's change cursor never skips a row (issue 15, "Cursors that never skip").

A trigger or a nightly job stamps thousands of rows in one statement with SQLite's own
``CURRENT_TIMESTAMP`` (``2030-01-01 10:00:00``, no fraction) or ISO 8601 (``T``, ``Z``,
``+01:00``): the keyset must compare stamps as times, not as text, and resume across
batches inside one second. Each incremental read also starts an overlap before its cursor
(``BILLING_CURSOR_OVERLAP_SECONDS``) so a row committed late with an earlier stamp is
read, and the sync engine's fingerprints make that re-read write nothing anywhere.

The connectors are built the way the hub builds them (``from_env``), so the overlap is the
setting's."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from connectors import billing_schema as S
from connectors.base import Batch, Window
from connectors.billing import BillingConnector, BillingSettings, from_env
from connectors.settings import declared, read_settings
from hub.mapping.spec import MAPPINGS_DIR, load_all
from hub.store import create_store_engine
from hub.store.migrate import upgrade
from hub.sync.engine import SyncEngine
from sandbox.postgres import fresh_database
from sandbox.seed.billing import BillingWriter
from sandbox.seed.book import Book
from tests.sync.memory_system import MemorySystem

BASE = datetime(2025, 1, 1, tzinfo=UTC)
DAY = date(2025, 1, 1)
#: what a test opened, closed after it (PostgreSQL drops no database still in use)
_OPENED: list[Callable[[], None]] = []


def _parse_overlap(raw: str) -> float | None:
    parse = declared(BillingSettings)["cursor_overlap_seconds"].parse
    assert parse is not None
    return parse(raw)


@pytest.fixture(autouse=True)
def _close_what_was_opened() -> Iterator[None]:
    yield
    while _OPENED:
        _OPENED.pop()()


def billing(url: str, overlap_seconds: float = 300) -> BillingConnector:
    """The connector as the hub builds it (batches of 1,000)."""
    connector = from_env(
        {"BILLING_DATABASE_URL": url, "BILLING_CURSOR_OVERLAP_SECONDS": str(overlap_seconds)}
    )
    _OPENED.append(connector.close)
    return connector


def create_store(url: str) -> sa.Engine:
    """An empty billing store with one account for the invoices to belong to."""
    engine = sa.create_engine(url)
    _OPENED.append(engine.dispose)
    S.metadata.drop_all(engine)
    S.create_billing_schema(engine)
    with engine.begin() as conn:
        conn.execute(
            S.accounts.insert().values(
                id=1,
                account_number="A-1",
                legal_name="Acme",
                billing_street="1 Main St",
                billing_city="Berlin",
                billing_postal_code="10115",
                billing_country="DE",
                currency="EUR",
            )
        )
    return engine


def add_invoices(engine: sa.Engine, ids: Iterable[int], stamp: Any = None) -> None:
    """Invoices as the billing product writes them; ``stamp``: one stamp for all, else
    one second apart from BASE."""
    rows = [
        {
            "id": i,
            "hub_id": f"INV-{i:05d}",
            "number": f"N-{i:05d}",
            "account_id": 1,
            "currency": "EUR",
            "issue_date": DAY,
            "due_date": DAY,
            "status": "open",
            "updated_at": stamp or BASE + timedelta(seconds=i),
        }
        for i in ids
    ]
    with engine.begin() as conn:
        conn.execute(S.invoices.insert(), rows)


def stamp_raw(engine: sa.Engine, stamps: dict[int, str]) -> None:
    """Set ``updated_at`` to exactly this text (SQLite keeps whatever it is given)."""
    with engine.begin() as conn:
        for pk, text in stamps.items():
            conn.exec_driver_sql("UPDATE invoices SET updated_at = ? WHERE id = ?", (text, pk))


def keys(batches: Iterable[Batch]) -> list[str]:
    return [r["hub_id"] for b in batches for r in b.records]


def last_cursor(batches: list[Batch], before: str | None = None) -> str | None:
    return batches[-1].cursor if batches else before


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'billing.sqlite'}"


@pytest.fixture
def pg_url(postgres_server: str, request: pytest.FixtureRequest) -> str:
    """A database of the test's own in the session's PostgreSQL (tests/conftest.py)."""
    name = "bc_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[:50].lower()
    return fresh_database(postgres_server, name)


# -- many rows, one second ------------------------------------------------------------------
@pytest.mark.parametrize(
    "new_stamp",
    [
        "CURRENT_TIMESTAMP",  # 2030-01-01 10:00:00: a trigger, a dunning job
        "strftime('%Y-%m-%d %H:%M:%f', 'now')",  # 2030-01-01 10:00:00.123
        "strftime('%Y-%m-%dT%H:%M:%SZ', 'now')",  # 2030-01-01T10:00:00Z
    ],
    ids=["current_timestamp", "fraction", "iso_z"],
)
def test_5000_rows_stamped_by_one_statement_are_all_read(sqlite_url: str, new_stamp: str) -> None:
    engine = create_store(sqlite_url)
    add_invoices(engine, range(1, 5001))
    connector = billing(sqlite_url)
    everything = list(connector.read_changes("invoice", None))
    before = last_cursor(everything)
    assert len(keys(everything)) == 5000

    with engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE invoices SET updated_at = {new_stamp}")

    batches = list(connector.read_changes("invoice", before))
    seen = keys(batches)
    assert [len(b.records) for b in batches] == [1000] * 5
    assert sorted(seen) == sorted(f"INV-{i:05d}" for i in range(1, 5001))
    assert len(set(seen)) == len(seen)
    # a reader that stopped after the first batch resumes in the same second
    resumed = list(billing(sqlite_url, 0).read_changes("invoice", batches[0].cursor))
    assert keys(resumed) == seen[1000:]

    # the next read finds nothing new: only the overlap's rows again, unchanged
    final = last_cursor(batches)
    again = list(connector.read_changes("invoice", final))
    stamps = {r["hub_id"]: r["updated_at"] for b in batches for r in b.records}
    assert {r["hub_id"]: r["updated_at"] for b in again for r in b.records}.items() <= (
        stamps.items()
    )
    assert all(b.cursor == final for b in again)  # the cursor never moves back
    assert list(billing(sqlite_url, 0).read_changes("invoice", final)) == []


@pytest.mark.parametrize(
    "new_stamp",
    ["date_trunc('second', now())", "now()"],  # whole seconds, and with microseconds
    ids=["whole_second", "fraction"],
)
def test_5000_rows_stamped_in_one_second_on_postgresql(pg_url: str, new_stamp: str) -> None:
    engine = create_store(pg_url)
    add_invoices(engine, range(1, 5001))
    connector = billing(pg_url)
    before = last_cursor(list(connector.read_changes("invoice", None)))

    with engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE invoices SET updated_at = {new_stamp}")
    batches = list(connector.read_changes("invoice", before))
    seen = keys(batches)
    assert [len(b.records) for b in batches] == [1000] * 5
    assert sorted(seen) == sorted(f"INV-{i:05d}" for i in range(1, 5001))
    assert len(set(seen)) == len(seen)
    resumed = list(billing(pg_url, 0).read_changes("invoice", batches[1].cursor))
    assert keys(resumed) == seen[2000:]

    # committed late, stamped a minute before the others: inside the overlap
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO invoices (id, hub_id, number, account_id, currency, issue_date,"
            " due_date, status, created_at, updated_at) VALUES (5001, 'INV-05001', 'N-05001',"
            " 1, 'EUR', '2025-01-01', '2025-01-01', 'open', now(),"
            " date_trunc('second', now()) - interval '60 seconds')"
        )
    again = keys(connector.read_changes("invoice", last_cursor(batches)))
    assert "INV-05001" in again and set(again) - set(seen) == {"INV-05001"}
    assert list(billing(pg_url, 0).read_changes("invoice", last_cursor(batches))) == []


# -- ties and late rows ---------------------------------------------------------------------
def test_a_row_stamped_at_the_cursor_with_a_higher_id_is_read(sqlite_url: str) -> None:
    engine = create_store(sqlite_url)
    add_invoices(engine, range(1, 6))
    stamp_raw(engine, dict.fromkeys(range(1, 6), "2030-01-01 10:00:00"))
    connector = billing(sqlite_url, 0)
    cursor = last_cursor(list(connector.read_changes("invoice", None)))
    assert cursor is not None and json.loads(cursor)[1] == 5

    # the same instant, written by a trigger and by an ISO 8601 writer
    add_invoices(engine, [6, 7])
    stamp_raw(engine, {6: "2030-01-01 10:00:00", 7: "2030-01-01T10:00:00Z"})
    assert keys(connector.read_changes("invoice", cursor)) == ["INV-00006", "INV-00007"]


def test_a_row_committed_late_inside_the_overlap_is_read(sqlite_url: str) -> None:
    engine = create_store(sqlite_url)
    add_invoices(engine, range(1, 11))  # BASE + 1 s ... BASE + 10 s
    connector = billing(sqlite_url)  # 300 s: the setting's default
    cursor = last_cursor(list(connector.read_changes("invoice", None)))

    # a long transaction commits after that read, its rows stamped when it began
    add_invoices(engine, [11], stamp=BASE - timedelta(seconds=60))
    add_invoices(engine, [12], stamp=BASE - timedelta(seconds=600))  # beyond the overlap
    batches = list(connector.read_changes("invoice", cursor))
    assert sorted(keys(batches)) == [f"INV-{i:05d}" for i in range(1, 12)]
    assert all(b.cursor == cursor for b in batches)  # nothing newer: the cursor stays
    # without the overlap the late row is lost
    assert list(billing(sqlite_url, 0).read_changes("invoice", cursor)) == []


def test_mixed_text_forms_are_read_in_time_order(sqlite_url: str) -> None:
    engine = create_store(sqlite_url)
    forms = {
        1: "2030-01-01T10:00:00.250+01:00",  # 09:00:00.250 UTC
        2: "2030-01-01 10:00:00",
        3: "2030-01-01T09:59:59Z",
        4: "2030-01-01 10:00:00.500000",
        5: "2030-01-01T10:00:00Z",  # the same instant as 2: by id
        6: "2030-01-01 10:00:01+00:00",
        7: "2030-01-01 10:00:00.250",
        8: "2030-01-01T09:59:59.999",
    }
    add_invoices(engine, forms)
    stamp_raw(engine, forms)
    connector = billing(sqlite_url, 0)
    connector.batch_size = 2
    batches = list(connector.read_changes("invoice", None))
    order = [1, 3, 8, 2, 5, 7, 4, 6]
    assert keys(batches) == [f"INV-{i:05d}" for i in order]
    read = [datetime.fromisoformat(r["updated_at"]) for b in batches for r in b.records]
    assert read == sorted(read) and read[0] == datetime(2030, 1, 1, 9, 0, 0, 250000, tzinfo=UTC)
    for n, batch in enumerate(batches):  # resuming after any batch reads exactly the rest
        rest = keys(connector.read_changes("invoice", batch.cursor))
        assert rest == [f"INV-{i:05d}" for i in order[2 * (n + 1) :]]
    # a snapshot window compares the same way: [10:00:00, 10:00:00.500)
    start = datetime(2030, 1, 1, 10, tzinfo=UTC)
    window = Window(start, start + timedelta(milliseconds=500))
    assert sorted(keys(connector.read_snapshot("invoice", window))) == [
        "INV-00002",
        "INV-00005",
        "INV-00007",
    ]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_cursors_stored_before_still_resume(
    backend: str, sqlite_url: str, request: pytest.FixtureRequest
) -> None:
    """A cursor from before the normalized key (``[ISO 8601 of the stamp, pk]``) resumes
    after its row (SQLite: at its row, re-reading that millisecond once)."""
    url = sqlite_url if backend == "sqlite" else request.getfixturevalue("pg_url")
    engine = create_store(url)
    add_invoices(engine, range(1, 11))
    old = json.dumps([(BASE + timedelta(seconds=4)).isoformat(), 4])
    rest = keys(billing(url, 0).read_changes("invoice", old))
    first = 4 if backend == "sqlite" else 5
    assert rest == [f"INV-{i:05d}" for i in range(first, 11)]
    again = keys(billing(url, 3).read_changes("invoice", old))  # overlap: 3 s before it
    assert again == [f"INV-{i:05d}" for i in range(1, 11)]


def test_sqlite_reads_walk_the_stamp_key_index(sqlite_url: str) -> None:
    """Each batch is an index range, not a scan and sort of the table (a read of N rows
    would cost N / batch scans); a store created before the index gets it."""
    engine = create_store(sqlite_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP INDEX ix_invoices_stamp_key_id")
    S.create_billing_schema(engine)  # an existing store: the missing index is added
    add_invoices(engine, range(1, 30))
    connector = billing(sqlite_url)
    connector.batch_size = 10
    statements: list[tuple[str, Any]] = []

    def note(_c: Any, _cur: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "FROM invoices" in statement and "ORDER BY" in statement:
            statements.append((statement, parameters))

    sa.event.listen(connector.engine, "before_cursor_execute", note)
    cursor = last_cursor(list(connector.read_changes("invoice", None)))
    list(connector.read_changes("invoice", cursor))
    assert len(statements) == 6  # 3 batches, then 3 again: the overlap re-reads all 29
    with engine.connect() as conn:
        for statement, parameters in statements:
            plan = " ".join(
                row[-1]
                for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
            )
            assert "USING INDEX ix_invoices_stamp_key_id" in plan, plan
            assert "TEMP B-TREE" not in plan, plan  # no sort


# -- the setting ----------------------------------------------------------------------------
def test_the_overlap_is_a_setting_with_a_five_minute_default(sqlite_url: str) -> None:
    settings = read_settings(BillingSettings, {"BILLING_DATABASE_URL": sqlite_url})
    assert settings.cursor_overlap_seconds == 300
    for connector, overlap in (
        (from_env({"BILLING_DATABASE_URL": sqlite_url}), timedelta(minutes=5)),
        (billing(sqlite_url, 0), timedelta(0)),
        (billing(sqlite_url, 1.5), timedelta(seconds=1.5)),
    ):
        assert connector.overlap == overlap
        connector.close()
    assert _parse_overlap(" ") is None
    for bad in ("-1", "five", "nan", "inf"):
        with pytest.raises(ValueError, match="BILLING_CURSOR_OVERLAP_SECONDS"):
            _parse_overlap(bad)


# -- the re-read writes nothing -------------------------------------------------------------
class Recording:
    """A connector with every record it was asked to write noted."""

    def __init__(self, connector: Any) -> None:
        self.connector = connector
        self.system = connector.system
        self.written: list[tuple[str, str]] = []

    def write_batch(self, entity: str, records: Iterable[dict[str, Any]]) -> Any:
        results = self.connector.write_batch(entity, list(records))
        self.written += [(entity, r.key) for r in results]
        return results

    def __getattr__(self, name: str) -> Any:
        return getattr(self.connector, name)


class Crm(MemorySystem):
    """An in-memory Salesforce holding customers only."""

    def read_changes(self, entity: str, cursor: str | None) -> Iterator[Batch]:
        return super().read_changes(entity, cursor) if entity == "customer" else iter(())


def test_a_second_sync_rereading_the_overlap_writes_nothing(tmp_path: Path) -> None:
    """The first sync writes to billing (the Salesforce ids it learns) and to the CRM; the
    second re-reads every billing row (an overlap longer than the book's history) and must
    find each one already held: no write to any system."""
    url = f"sqlite:///{tmp_path / 'billing.sqlite'}"
    engine = sa.create_engine(url)
    writer = BillingWriter(engine)
    book = Book(7, 20)
    writer.write_products(book.products())
    writer.write_slices(book.slices())
    writer.finish()
    engine.dispose()
    hub_url = f"sqlite:///{tmp_path / 'hub.sqlite'}"
    upgrade(hub_url)
    specs = [
        s
        for s in load_all(MAPPINGS_DIR)[0]
        if s.system == "billing" or (s.system, s.entity) == ("salesforce", "customer")
    ]
    crm = Crm("salesforce", "Hub_Id__c", "001")
    entities = ["customer", "subscription", "allocation", "invoice"]  # products: PIM's

    def sync() -> tuple[Recording, dict[str, dict[str, dict[str, int]]]]:
        connector = Recording(billing(url, 10 * 365 * 86400))
        store = create_store_engine(hub_url)
        _OPENED.append(store.dispose)
        report = SyncEngine(store, {"billing": connector, "salesforce": crm}, specs=specs).run(
            entities
        )
        return connector, report

    first, _ = sync()
    assert first.written and crm.writes  # the hub wrote to both
    crm_writes = crm.write_calls
    second, report = sync()
    assert all(report["billing"][e]["read"] > 0 for e in entities), report  # re-read
    assert second.written == []
    assert crm.write_calls == crm_writes

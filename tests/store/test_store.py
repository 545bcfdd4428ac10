"""The hub store on SQLite and PostgreSQL: migrations create exactly the models' schema,
and the types behave the same on both."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.exc import IntegrityError, StatementError

from hub.store import (
    Base,
    Finding,
    GoldenRecord,
    OutboxEntry,
    QuarantineEntry,
    Xref,
    create_store_engine,
    session_factory,
)
from hub.store.db import WAL_CHECKPOINT_PAGES
from hub.store.migrate import current_revision, head_revision, upgrade
from hub.store.repo import (
    BatchRows,
    GoldenRow,
    XrefRow,
    insert_goldens,
    insert_xrefs,
    update_golden_provenance,
)


@pytest.fixture
def migrated(store_url: str) -> str:
    assert upgrade(store_url) == head_revision()
    return store_url


def test_migrations_match_models(migrated: str) -> None:
    engine = create_store_engine(migrated)
    with engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
        )
    engine.dispose()
    assert diff == []


def test_upgrade_is_idempotent(migrated: str) -> None:
    assert upgrade(migrated) == head_revision()
    assert current_revision(migrated) == head_revision()
    tables = set(sa.inspect(create_store_engine(migrated)).get_table_names())
    assert {
        "golden_records",
        "xref",
        "cursors",
        "fingerprints",
        "outbox",
        "quarantine",
        "findings",
        "finding_observations",
        "reconciliation_runs",
        "locks",
    } <= tables


def test_timestamps_round_trip_as_aware_utc(migrated: str) -> None:
    session = session_factory(create_store_engine(migrated))
    local = datetime(2024, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    with session.begin() as s:
        s.add(
            GoldenRecord(
                entity="customer",
                hub_id="C-1",
                data={"legal_name": "Ä GmbH"},
                fingerprint="f" * 64,
                updated_at=local,
            )
        )
    with session() as s:
        row = s.get(GoldenRecord, ("customer", "C-1"))
        assert row is not None
        assert row.updated_at == local
        assert row.updated_at.tzinfo is not None and row.updated_at.utcoffset() == timedelta(0)
        assert row.data == {"legal_name": "Ä GmbH"}


def test_golden_records_inserted_in_bulk_read_back_as_the_orm_writes_them(migrated: str) -> None:
    """insert_goldens sends SQLite its rows as tuples, each value through its column's
    own processor: what comes back is what an ORM insert gives (documents, a flag, aware
    timestamps), on both backends."""
    engine = create_store_engine(migrated)
    now = datetime(2024, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    meta = {"legal_name": {"system": "sap", "at": "2024-05-01T10:00:00+00:00"}}
    rows = [
        GoldenRow("customer", "C-1", {"legal_name": "Ä GmbH", "limit": 2**70}, meta, "f" * 64),
        GoldenRow("customer", "C-2", {"address": {"city": "Köln"}}, {}, "e" * 64, 3, True),
    ]
    with engine.begin() as conn:
        insert_goldens(conn, rows, now)
    with session_factory(engine)() as s:
        for want in rows:
            got = s.get(GoldenRecord, (want.entity, want.hub_id))
            assert got is not None
            assert (got.data, got.field_meta, got.fingerprint) == (
                want.data,
                want.field_meta,
                want.fingerprint,
            )
            assert (got.version, got.deleted) == (want.version, want.deleted)
            assert got.created_at == got.updated_at == now
            assert got.created_at.utcoffset() == timedelta(0)
        # and the sync's batches read them back as they were (SQLite: from the driver)
        read = BatchRows(s, "customer", ["C-1", "C-2"]).goldens(["C-1", "C-2", "C-3"])
        assert read == {row.hub_id: row for row in rows}
        assert all(type(row.deleted) is bool for row in read.values())
    engine.dispose()


def test_provenance_and_links_written_in_bulk_read_back_as_written(migrated: str) -> None:
    """update_golden_provenance changes only field_meta (SQLite: driver-level tuples), and
    insert_xrefs' links read back with aware timestamps, on both backends."""
    engine = create_store_engine(migrated)
    now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    golden = GoldenRow("customer", "C-1", {"legal_name": "Ä GmbH"}, {}, "f" * 64, 2)
    other = GoldenRow("customer", "C-2", {"legal_name": "B AG"}, {}, "e" * 64)
    confirmed = {"legal_name": {"system": "salesforce", "at": "2024-05-01T12:00:00+00:00"}}
    with engine.begin() as conn:
        insert_goldens(conn, [golden, other], now)
        changed = GoldenRow("customer", "C-1", {"legal_name": "ignored"}, confirmed, "x" * 64)
        update_golden_provenance(conn, "customer", [changed])
        insert_xrefs(
            conn, "customer", [XrefRow("C-1", "sap", "0001"), XrefRow("C-2", "sap", "2")], now
        )
    with session_factory(engine)() as s:
        got = s.get(GoldenRecord, ("customer", "C-1"))
        assert got is not None
        assert (got.data, got.field_meta, got.fingerprint, got.version) == (
            golden.data,
            confirmed,
            golden.fingerprint,
            2,
        )
        untouched = s.get(GoldenRecord, ("customer", "C-2"))
        assert untouched is not None and untouched.field_meta == {}
        links = {(x.hub_id, x.external_id, x.updated_at) for x in s.scalars(sa.select(Xref))}
        assert links == {("C-1", "0001", now), ("C-2", "2", now)}
    engine.dispose()


def test_naive_timestamps_are_refused(migrated: str) -> None:
    session = session_factory(create_store_engine(migrated))
    with pytest.raises(StatementError, match="naive datetime"), session.begin() as s:
        s.add(
            GoldenRecord(
                entity="customer",
                hub_id="C-2",
                data={},
                fingerprint="f",
                updated_at=datetime(2024, 1, 1),
            )
        )


def test_external_ids_are_unique_per_system(migrated: str) -> None:
    session = session_factory(create_store_engine(migrated))
    with session.begin() as s:
        s.add(Xref(entity="customer", hub_id="C-1", system="sap", external_id="1000001"))
        s.add(Xref(entity="customer", hub_id="C-1", system="salesforce", external_id="001A"))
    with pytest.raises(IntegrityError), session.begin() as s:
        s.add(Xref(entity="customer", hub_id="C-2", system="sap", external_id="1000001"))


def test_outbox_quarantine_and_findings_keep_their_payloads(migrated: str) -> None:
    session = session_factory(create_store_engine(migrated))
    now = datetime.now(UTC)
    with session.begin() as s:
        s.add(
            OutboxEntry(
                system="sap",
                entity="customer",
                hub_id="C-1",
                payload={"CreditLimit": "1000.00"},
                fingerprint="a" * 64,
            )
        )
        s.add(
            QuarantineEntry(
                system="salesforce",
                entity="customer",
                external_key="001X",
                payload={"Name": None, "weird": "\u2603"},
                reason="missing name",
                errors=[{"field": "legal_name", "rule": "missing"}],
            )
        )
        s.add(
            Finding(
                id="f1",
                entity="invoice",
                key="INV-1",
                system="sap",
                kind="mismatch",
                field="total_minor",
                expected=1000,
                actual=1001,
                severity="error",
                amount_at_stake_minor=1,
                currency="EUR",
                first_seen=now,
                last_seen=now,
            )
        )
    with session() as s:
        outbox = s.scalars(sa.select(OutboxEntry)).one()
        assert (outbox.status, outbox.attempts, outbox.payload) == (
            "pending",
            0,
            {"CreditLimit": "1000.00"},
        )
        quarantined = s.scalars(sa.select(QuarantineEntry)).one()
        assert quarantined.payload["weird"] == "\u2603" and quarantined.status == "open"
        finding = s.get(Finding, "f1")
        assert finding is not None
        assert (finding.expected, finding.actual, finding.status) == (1000, 1001, "open")


def test_a_bulk_load_is_not_checkpointed_every_four_megabytes(tmp_path) -> None:
    """SQLite's default copies the WAL into the database file (and syncs it) every 1,000
    pages; the hub store's engine lets the WAL grow to WAL_CHECKPOINT_PAGES first, so a
    bulk load copies its hot index pages once per many batches (issue 18)."""
    path = tmp_path / "hub.sqlite"
    engine = create_store_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE blob (v TEXT)")
    for _ in range(8):  # eight commits of 1 MB each: twice the default's 4 MB
        with engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO blob VALUES (?)", [("x" * 1024,)] * 1024)
    with engine.connect() as conn:
        pages = conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
        wal = path.with_name(path.name + "-wal").stat().st_size
    engine.dispose()
    assert pages == WAL_CHECKPOINT_PAGES
    assert wal > 6 * 2**20  # not wound back to the start at 4 MB

"""The billing connector and the billing mappings against a seeded billing store, on
SQLite and PostgreSQL: what the connector reads maps to exactly the book's canonical
records; incremental reads see exactly what changed; writes report created / updated /
unchanged / rejected per record in one transaction; reads stream in bounded batches."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors import billing_schema as S
from connectors.base import Connector, Outcome, Window, WriteResult
from connectors.billing import BillingConnector
from connectors.errors import PermanentError, TransientError
from hub.mapping.mapper import Mapper
from hub.mapping.spec import MAPPINGS_DIR, MappingSpec, load_all
from hub.mapping.transforms import load_code_lists
from hub.model import ENTITIES, validate_record
from hub.systems import connect
from sandbox.seed.billing import BillingWriter
from sandbox.seed.book import Book
from tests.unit import strategies

SPECS: dict[str, MappingSpec] = {
    s.entity: s for s in load_all(MAPPINGS_DIR)[0] if s.system == "billing"
}
CODES = load_code_lists(MAPPINGS_DIR)
BATCH = 7
SEED, CUSTOMERS = 7, 20


def mapper(entity: str) -> Mapper:
    return Mapper(SPECS[entity], CODES)


def to_canonical(entity: str, native: dict[str, Any]) -> dict[str, Any]:
    """What the sync engine makes of a billing row: mapped, keyed, validated."""
    m = mapper(entity)
    data = m.to_canonical(native)
    data.pop("external_ids", None)
    if m.hub_id(native):
        data["hub_id"] = m.hub_id(native)
    return validate_record(entity, data).model_dump(mode="json")


def compared_fields(entity: str) -> set[str]:
    """Canonical top-level fields billing maps (customers: no segment in billing)."""
    spec = SPECS[entity]
    names = {n.split(".")[0] for n in spec.fields if not n.startswith("external_ids.")}
    return names | set(spec.children) | {ENTITIES[entity].key_field}


def book_records(book: Book) -> dict[str, dict[str, dict[str, Any]]]:
    out: dict[str, dict[str, dict[str, Any]]] = {e: {} for e in SPECS}
    for product in book.products():
        out["product"][product["sku"]] = product
    for s in book.slices():
        out["customer"][s.customer["hub_id"]] = s.customer
        for entity, records in (
            ("subscription", s.subscriptions),
            ("invoice", s.invoices),
            ("allocation", s.allocations),
        ):
            for record in records:
                out[entity][record["hub_id"]] = record
    return {
        entity: {
            key: validate_record(entity, record).model_dump(mode="json")
            for key, record in records.items()
        }
        for entity, records in out.items()
    }


@pytest.fixture
def seeded(store_url: str) -> Iterator[str]:
    """A billing store holding ``Book(SEED, CUSTOMERS)``, loaded by the sandbox's writer."""
    engine = sa.create_engine(store_url)
    S.metadata.drop_all(engine)
    writer = BillingWriter(engine)
    book = Book(SEED, CUSTOMERS)
    writer.write_products(book.products())
    writer.write_slices(book.slices())
    writer.finish()
    engine.dispose()
    yield store_url


@pytest.fixture
def billing(seeded: str) -> Iterator[BillingConnector]:
    # the exact keyset, no overlap re-read (that is tests/connectors/test_billing_cursor.py)
    connector = BillingConnector(seeded, batch_size=BATCH, overlap=timedelta(0))
    yield connector
    connector.close()


def rows(connector: BillingConnector, entity: str, keys: list[str]) -> dict[str, dict[str, Any]]:
    found = {}
    for batch in connector.read_by_keys(entity, keys):
        for record in batch.records:
            found[str(record[connector.tables[entity].hub_id_column])] = record
    return found


class StatementLog:
    """Statements an engine runs (SELECTs, BEGIN/COMMIT/SAVEPOINT), for counting."""

    def __init__(self, engine: sa.Engine) -> None:
        self.statements: list[str] = []
        self.commits = 0
        sa.event.listen(engine, "before_cursor_execute", self._statement)
        sa.event.listen(engine, "commit", self._commit)

    def _statement(self, _c: Any, _cur: Any, statement: str, *_: Any) -> None:
        self.statements.append(statement.strip().split()[0].upper())

    def _commit(self, _conn: Any) -> None:
        self.commits += 1

    def count(self, kind: str) -> int:
        return self.statements.count(kind)


# -- reads and mappings -------------------------------------------------------------------
def test_mapped_records_equal_the_book_for_every_entity(billing: BillingConnector) -> None:
    expected = book_records(Book(SEED, CUSTOMERS))
    assert isinstance(billing, Connector)
    assert set(billing.entities()) == set(SPECS) == set(expected)
    for entity in billing.entities():
        fields = compared_fields(entity)
        got: dict[str, dict[str, Any]] = {}
        for batch in billing.read_snapshot(entity):
            assert 0 < len(batch.records) <= BATCH and batch.cursor is None
            for native in batch.records:
                record = to_canonical(entity, native)
                got[record[ENTITIES[entity].key_field]] = record
        assert got.keys() == expected[entity].keys(), entity
        for key, record in got.items():
            want = {k: v for k, v in expected[entity][key].items() if k in fields}
            assert {k: v for k, v in record.items() if k in fields} == want, (entity, key)
    # the book has what the mapping must handle: shipping addresses present and absent,
    # parents, tiered prices, invoices without lines, several allocation states
    customers = expected["customer"].values()
    assert {c["shipping_address"] is None for c in customers} == {True, False}
    assert any(c["parent_id"] for c in customers)
    items = [i for s in expected["subscription"].values() for i in s["items"]]
    assert any(i["price"]["tiers"] for i in items)


def test_incremental_reads_see_exactly_the_changed_rows(billing: BillingConnector) -> None:
    first = [b for b in billing.read_changes("invoice", None)]
    everything = [r["hub_id"] for b in first for r in b.records]
    assert len(everything) == len(set(everything)) == len(book_records(Book(SEED, 20))["invoice"])
    cursor = first[-1].cursor
    assert cursor is not None
    assert list(billing.read_changes("invoice", cursor)) == []

    # nine invoices change in one statement: one shared updated_at, straddling a batch edge
    changed = sorted(everything)[3:12]
    stamp = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=5)
    with billing.engine.begin() as conn:
        conn.execute(
            sa.update(S.invoices)
            .where(S.invoices.c.hub_id.in_(changed))
            .values(dunning_stage=1, updated_at=stamp)
        )
    batches = list(billing.read_changes("invoice", cursor))
    assert [len(b.records) for b in batches] == [7, 2]
    seen = [r["hub_id"] for b in batches for r in b.records]
    assert sorted(seen) == changed and len(set(seen)) == len(seen)
    assert all(r["dunning_stage"] == 1 and r["invoice_lines"] for b in batches for r in b.records)

    # a reader that committed only the first batch resumes after it, tie-broken by id
    resumed = [
        r["hub_id"] for b in billing.read_changes("invoice", batches[0].cursor) for r in b.records
    ]
    assert resumed == seen[7:]
    assert list(billing.read_changes("invoice", batches[-1].cursor)) == []

    # a write through the connector moves the stamp: the next read sees just that record
    sub_cursor = [b for b in billing.read_changes("subscription", None)][-1].cursor
    native = next(iter(rows(billing, "subscription", ["SUB-0000003-1"]).values()))
    payload = mapper("subscription").to_native(to_canonical("subscription", native))
    payload["auto_renew"] = not payload["auto_renew"]
    (result,) = billing.write_batch("subscription", [payload])
    assert result.outcome is Outcome.UPDATED
    again = [
        r["hub_id"] for b in billing.read_changes("subscription", sub_cursor) for r in b.records
    ]
    assert again == ["SUB-0000003-1"]


def test_snapshot_window_and_reads_by_key(billing: BillingConnector) -> None:
    expected = book_records(Book(SEED, CUSTOMERS))["invoice"]
    start, end = datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 5, 1, tzinfo=UTC)
    inside = {
        k for k, r in expected.items() if start <= datetime.fromisoformat(r["updated_at"]) < end
    }
    window = [
        r["hub_id"] for b in billing.read_snapshot("invoice", Window(start, end)) for r in b.records
    ]
    assert inside and sorted(window) == sorted(inside)

    keys = [*sorted(expected)[:17], "INV-NOPE", sorted(expected)[0]]
    batches = list(billing.read_by_keys("invoice", keys))
    assert len(batches) == math.ceil(18 / BATCH)  # chunked IN, duplicates asked once
    assert sorted(r["hub_id"] for b in batches for r in b.records) == sorted(expected)[:17]
    products = rows(billing, "product", ["SEAT-STD", "DEV-SCAN-100"])
    assert set(products) == {"SEAT-STD", "DEV-SCAN-100"}


def test_reads_stream_in_bounded_batches_with_a_fixed_number_of_queries(
    billing: BillingConnector,
) -> None:
    list(billing.read_snapshot("invoice"))  # reflect the tables once
    log = StatementLog(billing.engine)
    batches = billing.read_changes("invoice", None)
    first = next(batches)
    # lazily: one batch read = the invoices, their lines, their accounts, their subscriptions
    assert len(first.records) == BATCH and log.count("SELECT") == 4
    rest = list(batches)
    total = BATCH + sum(len(b.records) for b in rest)
    assert all(len(b.records) <= BATCH for b in rest)
    assert len(rest) + 1 == math.ceil(total / BATCH)
    # queries grow with the number of batches, never with the number of rows or lines
    assert log.count("SELECT") <= 4 * (len(rest) + 1) + 1


# -- writes -------------------------------------------------------------------------------
def canonical_of(billing: BillingConnector, entity: str, key: str) -> dict[str, Any]:
    return to_canonical(entity, rows(billing, entity, [key])[key])


def test_write_batch_reports_each_outcome_in_one_transaction(billing: BillingConnector) -> None:
    subs = mapper("subscription")
    same = canonical_of(billing, "subscription", "SUB-0000001-1")
    more = canonical_of(billing, "subscription", "SUB-0000002-1")
    more["items"][0]["quantity"] += 5
    new = {**same, "hub_id": "SUB-NEW-1", "contract_number": "CT-NEW-1", "status": "active"}
    new["items"] = [{**i, "item_id": f"SUB-NEW-1-{n}"} for n, i in enumerate(same["items"], 1)]
    victim = rows(billing, "subscription", ["SUB-0000004-1"])["SUB-0000004-1"]
    bad_qty = subs.to_native(to_canonical("subscription", victim))
    bad_qty["subscription_items"][0]["quantity"] = -1
    payloads = [
        subs.to_native(same),
        subs.to_native(more),
        subs.to_native(new),
        {**subs.to_native(same), "status": "lapsed"},
        {**subs.to_native(new), "hub_id": "SUB-NEW-2", "account_hub_id": "CUS-9999999"},
        bad_qty,
        {**subs.to_native(new), "hub_id": "SUB-NEW-3", "currency": "EURO"},
        {**subs.to_native(new), "hub_id": "SUB-NEW-4", "mood": "sunny"},
    ]
    before = rows(billing, "subscription", ["SUB-0000001-1", "SUB-0000004-1"])
    log = StatementLog(billing.engine)
    results = billing.write_batch("subscription", payloads)
    assert log.commits == 1  # one transaction for the batch, good and bad records alike

    outcomes = [r.outcome for r in results]
    assert (
        outcomes == [Outcome.UNCHANGED, Outcome.UPDATED, Outcome.CREATED] + [Outcome.REJECTED] * 5
    )
    assert [r.key for r in results][:3] == ["SUB-0000001-1", "SUB-0000002-1", "SUB-NEW-1"]
    assert results[0].external_id == str(before["SUB-0000001-1"]["id"])
    rejected = {r.key: r for r in results[3:]}
    assert_rejected(rejected["SUB-0000001-1"], "status", "check_violation")
    assert_rejected(rejected["SUB-NEW-2"], "account_hub_id", "unknown_reference")
    assert_rejected(rejected["SUB-0000004-1"], "subscription_items.quantity", "check_violation")
    assert_rejected(rejected["SUB-NEW-3"], "currency", "value_too_long")
    assert_rejected(rejected["SUB-NEW-4"], "mood", "unknown_field")

    after = rows(
        billing,
        "subscription",
        ["SUB-0000001-1", "SUB-0000002-1", "SUB-NEW-1", "SUB-0000004-1", "SUB-NEW-2"],
    )
    assert "SUB-NEW-2" not in after
    # unchanged keeps its stamp (no echo); the rejected record's item replacement was undone
    assert after["SUB-0000001-1"]["updated_at"] == before["SUB-0000001-1"]["updated_at"]
    assert after["SUB-0000004-1"] == before["SUB-0000004-1"]
    assert to_canonical("subscription", after["SUB-0000002-1"])["items"] == more["items"]
    assert after["SUB-0000002-1"]["updated_at"] > before["SUB-0000001-1"]["updated_at"]
    created = to_canonical("subscription", after["SUB-NEW-1"])
    assert {k: v for k, v in created.items() if k != "updated_at"} == {
        k: v for k, v in new.items() if k != "updated_at"
    }
    # new items point at the list price they were sold from, as the seeded ones do
    price_ids = [i["price_id"] for i in after["SUB-NEW-1"]["subscription_items"]]
    assert price_ids == [i["price_id"] for i in before["SUB-0000001-1"]["subscription_items"]]
    assert all(price_ids)
    # replaying the same batch is idempotent: nothing left to change
    replay = billing.write_batch("subscription", payloads[:3])
    assert [r.outcome for r in replay] == [Outcome.UNCHANGED] * 3


def assert_rejected(result: WriteResult, field: str, code: str) -> None:
    assert result.outcome is Outcome.REJECTED
    assert result.error_code == code, result
    assert result.error is not None and result.error.startswith(f"{field}: "), result


def test_database_constraints_reject_records_naming_the_field(billing: BillingConnector) -> None:
    invoices = mapper("invoice")
    base = canonical_of(billing, "invoice", "INV-0000001-1-001")
    good = {**base, "hub_id": "INV-NEW-1", "number": "N-NEW-1"}
    results = billing.write_batch(
        "invoice",
        [
            {**invoices.to_native(good), "due_date": "2000-01-01"},
            {**invoices.to_native(good), "hub_id": "INV-NEW-2", "number": base["number"]},
            {
                k: v
                for k, v in invoices.to_native({**good, "hub_id": "INV-NEW-3"}).items()
                if k != "number"
            },
            invoices.to_native(good),
        ],
    )
    assert_rejected(results[0], "issue_date, due_date", "check_violation")
    assert_rejected(results[1], "number", "unique_violation")
    assert_rejected(results[2], "number", "not_null_violation")
    assert results[3].outcome is Outcome.CREATED
    assert canonical_of(billing, "invoice", "INV-NEW-1")["lines"] == base["lines"]

    # an allocation must plan a delivery of an existing item; an item with allocations
    # cannot be dropped from its subscription (the deferred foreign key, checked per record)
    alloc = canonical_of(
        billing, "allocation", sorted(book_records(Book(SEED, CUSTOMERS))["allocation"])[0]
    )
    (bad_alloc,) = billing.write_batch(
        "allocation",
        [{**mapper("allocation").to_native(alloc), "hub_id": "ALC-NEW", "item_id": "NO-SUCH-ITEM"}],
    )
    assert_rejected(bad_alloc, "item_id", "foreign_key_violation")
    sub = canonical_of(billing, "subscription", alloc["subscription_id"])
    kept = [i for i in sub["items"] if i["item_id"] != alloc["subscription_item_id"]]
    (dropped,) = billing.write_batch(
        "subscription", [mapper("subscription").to_native({**sub, "items": kept})]
    )
    assert_rejected(dropped, "subscription_items", "foreign_key_violation")
    (moved,) = billing.write_batch(
        "allocation", [mapper("allocation").to_native({**alloc, "quantity": alloc["quantity"] + 1})]
    )
    assert moved.outcome is Outcome.UPDATED


def test_a_batch_that_fails_midway_commits_nothing(billing: BillingConnector) -> None:
    """Rejections are per record, but the batch is one transaction: if the store itself
    fails mid-batch, none of its records are kept and the batch can simply be retried."""
    base = canonical_of(billing, "customer", "CUS-0000001")
    customers = mapper("customer")
    payloads = [
        customers.to_native({**base, "hub_id": f"CUS-NEW-{n}", "parent_id": None}) for n in range(3)
    ]
    inserts = 0

    def fail_on_third(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        nonlocal inserts
        if statement.lstrip().upper().startswith("INSERT INTO ACCOUNTS"):
            inserts += 1
            if inserts == 3:
                raise sa.exc.OperationalError(statement, {}, Exception("connection reset"))

    sa.event.listen(billing.engine, "before_cursor_execute", fail_on_third)
    with pytest.raises(TransientError, match="connection reset"):
        billing.write_batch("customer", payloads)
    sa.event.remove(billing.engine, "before_cursor_execute", fail_on_third)
    assert rows(billing, "customer", [f"CUS-NEW-{n}" for n in range(3)]) == {}
    results = billing.write_batch("customer", payloads)
    assert [r.outcome for r in results] == [Outcome.CREATED] * 3
    # a customer the hub creates gets an account number of its own, and its parent by hub id
    child = customers.to_native({**base, "hub_id": "CUS-NEW-9", "parent_id": "CUS-NEW-0"})
    (linked,) = billing.write_batch("customer", [child])
    stored = rows(billing, "customer", ["CUS-NEW-9"])["CUS-NEW-9"]
    assert linked.outcome is Outcome.CREATED and stored["account_number"] == "H-CUS-NEW-9"
    assert stored["parent_account_hub_id"] == "CUS-NEW-0"


def test_rows_billing_created_are_linked_by_their_own_id(billing: BillingConnector) -> None:
    """A row billing created before the hub knew it has no hub_id; the hub's first push
    carries billing's id (from the xref) and links that row instead of duplicating it."""
    with billing.engine.begin() as conn:
        conn.execute(sa.update(S.allocations).where(S.allocations.c.id == 1).values(hub_id=None))
    native = next(r for b in billing.read_snapshot("allocation") for r in b.records if r["id"] == 1)
    canonical = to_canonical("allocation", {**native, "hub_id": "ALC-LINKED"})
    payload = {**mapper("allocation").to_native(canonical), "id": "1"}
    (result,) = billing.write_batch("allocation", [payload])
    assert result.outcome is Outcome.UPDATED and result.external_id == "1"
    with billing.engine.connect() as conn:
        linked = conn.execute(
            sa.select(S.allocations.c.id).where(S.allocations.c.hub_id == "ALC-LINKED")
        ).scalars()
        assert list(linked) == [1]


# -- round trips (hypothesis) -------------------------------------------------------------
@settings(max_examples=150, deadline=None)
@given(
    entity_and_record=st.one_of(
        st.tuples(st.just("subscription"), strategies.subscriptions()),
        st.tuples(st.just("invoice"), strategies.invoices()),
    )
)
def test_mapping_round_trip_is_lossless(entity_and_record: tuple[str, dict[str, Any]]) -> None:
    entity, record = entity_and_record
    canonical = validate_record(entity, record).model_dump(mode="json")
    native = mapper(entity).to_native(canonical)
    assert "updated_at" not in native  # the store stamps its own changes
    back = to_canonical(entity, {**native, "updated_at": canonical["updated_at"]})
    assert back == canonical


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)  # one store per backend, shared by the examples (writes are upserts)
@given(
    entity_and_record=st.one_of(
        st.tuples(st.just("subscription"), strategies.subscriptions()),
        st.tuples(st.just("invoice"), strategies.invoices()),
    )
)
def test_round_trip_through_the_store(
    billing: BillingConnector, entity_and_record: tuple[str, dict[str, Any]]
) -> None:
    entity, record = entity_and_record
    if entity == "invoice":
        record = {**record, "number": f"N-{record['hub_id']}"}  # numbers are unique
    canonical = validate_record(entity, record).model_dump(mode="json")
    account = {
        "hub_id": canonical["customer_id"],
        "legal_name": "Round Trip Ltd",
        "billing_street": "1 Test Way",
        "billing_city": "Testville",
        "billing_postal_code": "12345",
        "billing_country": "GB",
        "currency": canonical["currency"],
    }
    (acct,) = billing.write_batch("customer", [account])
    assert acct.outcome is not Outcome.REJECTED, acct
    (result,) = billing.write_batch(entity, [mapper(entity).to_native(canonical)])
    assert result.outcome is not Outcome.REJECTED, result
    back = canonical_of(billing, entity, canonical["hub_id"])
    assert {k: v for k, v in back.items() if k != "updated_at"} == {
        k: v for k, v in canonical.items() if k != "updated_at"
    }


# -- configuration, health, secrets -------------------------------------------------------
def test_registry_builds_it_and_health_never_shows_the_password(
    postgres_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "hunter2-billing-secret"
    url = postgres_server.replace("postgres@", f"postgres:{secret}@")  # trust auth: ignored
    caplog.set_level(logging.DEBUG)
    connector = connect("billing", {"BILLING_DATABASE_URL": url})
    assert isinstance(connector, BillingConnector)
    health = connector.health()
    connector.close()
    assert health.ok and health.latency_ms is not None and health.latency_ms >= 0
    assert "***" in health.extra["url"] and secret not in repr(health)

    down = BillingConnector(f"postgresql+psycopg2://hub:{secret}@127.0.0.1:1/billing")
    bad = down.health()
    down.close()
    assert not bad.ok and bad.detail and secret not in repr(bad)
    with pytest.raises(TransientError) as unreachable:
        list(down.read_changes("invoice", None))
    assert secret not in str(unreachable.value) and "***" in str(unreachable.value)
    assert secret not in caplog.text


def test_wrong_store_and_unknown_entity_are_named(tmp_path: Any) -> None:
    empty = BillingConnector(f"sqlite:///{tmp_path / 'empty.sqlite'}")
    with pytest.raises(PermanentError, match="invoices"):
        list(empty.read_changes("invoice", None))
    with pytest.raises(PermanentError, match="accounts"):
        empty.write_batch("customer", [{"hub_id": "CUS-1"}])
    with pytest.raises(PermanentError, match="unknown entity 'contract'"):
        list(empty.read_snapshot("contract"))
    empty.close()


def test_products_by_sku_and_the_same_key_twice_in_a_batch(billing: BillingConnector) -> None:
    products = mapper("product")
    seat = canonical_of(billing, "product", "SEAT-STD")
    renamed = {**seat, "name": "Standard Seat (2025)"}
    results = billing.write_batch(
        "product",
        [products.to_native(seat), products.to_native(renamed), products.to_native(renamed)],
    )
    assert [r.outcome for r in results] == [Outcome.UNCHANGED, Outcome.UPDATED, Outcome.UNCHANGED]
    assert len({r.external_id for r in results}) == 1
    assert canonical_of(billing, "product", "SEAT-STD")["name"] == "Standard Seat (2025)"
    new = {**seat, "sku": "SEAT-NEW", "name": "New Seat"}
    twice = billing.write_batch(
        "product", [products.to_native(new), products.to_native({**new, "unit": "USER"})]
    )
    assert [r.outcome for r in twice] == [Outcome.CREATED, Outcome.UPDATED]
    assert canonical_of(billing, "product", "SEAT-NEW")["unit"] == "USER"

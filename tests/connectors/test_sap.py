"""The SAP connector against the SAP emulator with the real pyodata client over loopback.

Each test gets its own emulator (``serve_in_thread``) holding a small book written by the
sandbox's SAP writer, with a server page of four entities so every read crosses several
``__next`` pages. Faults are switched on the emulator's FaultState, as tests/sandbox/sap
does. Covered: incremental reads that neither skip nor repeat (also inside a run of equal
change stamps), snapshot windows, chunked reads by key with literal-safe filters, ``$batch``
writes with one result per record (SAP's message on the rejected one), the stale-ETag path
(re-read once, then a conflict), CSRF expiry, 429/503/500/drop with nothing lost or applied
twice, plant stock, the password never shown, and the mappings' round trip on the book's
records."""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import unquote, unquote_plus

import httpx
import pytest
import requests

from connectors.base import Connector, Outcome, Window
from connectors.errors import AuthError
from connectors.retry import RetryPolicy
from connectors.sap import ETAG, SapConnector
from hub.mapping.mapper import Mapper
from hub.mapping.spec import MAPPINGS_DIR, MappingSpec, load_all
from hub.mapping.transforms import load_code_lists
from hub.model import validate_record
from hub.systems import connect
from sandbox.faults import FaultSpec, FaultState
from sandbox.sap import SERVICES, SapSettings, create_app, seed_records
from sandbox.sap.repository import doc_id
from sandbox.seed import xref
from sandbox.seed.book import Book
from sandbox.seed.sap import SapWriter, contract_number
from sandbox.server import serve_in_thread
from sandbox.store import DocumentStore

SEED, CUSTOMERS, PAGE = 11, 10, 4
USER, PASSWORD, CLIENT = "HUB_SANDBOX", "sandbox-password", "100"
FAST = RetryPolicy(max_attempts=5, max_seconds=20, initial_wait=0.05, max_wait=2, jitter=0)
SPECS: dict[str, MappingSpec] = {
    s.entity: s for s in load_all(MAPPINGS_DIR)[0] if s.system == "sap"
}
CODES = load_code_lists(MAPPINGS_DIR)


@dataclass
class Emulator:
    base: str
    store: DocumentStore
    faults: FaultState

    @property
    def env(self) -> dict[str, str]:
        return {
            "SAP_ODATA_URL": self.base,
            "SAP_USER": USER,
            "SAP_PASSWORD": PASSWORD,
            "SAP_CLIENT": CLIENT,
        }

    def fault(self, **spec: Any) -> None:
        self.faults.add(FaultSpec(**spec))

    def calls(self) -> int:
        return int(httpx.get(f"{self.base}/__sandbox/stats").json()["api_calls"])


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[Emulator]:
    store = DocumentStore(tmp_path / "sap.sqlite")
    writer = SapWriter(store)
    book = Book(SEED, CUSTOMERS)
    writer.write_products(book.products())
    writer.write_slices(book.slices())
    writer.finish()
    faults = FaultState(seed=7)
    with serve_in_thread(create_app(store, faults, SapSettings(page_size=PAGE))) as base:
        yield Emulator(base, store, faults)
    store.close()


@pytest.fixture
def sap(emulator: Emulator) -> Iterator[SapConnector]:
    connector = connect("sap", emulator.env)
    assert isinstance(connector, SapConnector)
    connector.settings.retry = FAST
    connector.settings.cursor_overlap_seconds = 0  # the exact keyset: test_sap_cursor.py
    yield connector
    connector.close()


def _changes(
    connector: SapConnector, entity: str, cursor: str | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    records: list[dict[str, Any]] = []
    last = cursor
    for batch in connector.read_changes(entity, cursor):
        records += batch.records
        last = batch.cursor or last
    return records, last


def _by_keys(connector: SapConnector, entity: str, keys: list[str]) -> list[dict[str, Any]]:
    return [r for b in connector.read_by_keys(entity, keys) for r in b.records]


class GetLog:
    """GET requests the connector's own session sends (a requests response hook)."""

    def __init__(self, session: requests.Session) -> None:
        self.urls: list[str] = []
        self.batches: list[str] = []
        session.hooks["response"].append(self._seen)

    def _seen(self, response: requests.Response, *_: Any, **__: Any) -> None:
        url = unquote(response.request.url or "")
        if response.request.method == "GET":
            self.urls.append(url)
        elif url.split("?")[0].endswith("/$batch"):
            self.batches.append(url)


# -- reads ----------------------------------------------------------------------------------
def test_reads_every_record_once_over_several_pages_then_exactly_the_changes(
    sap: SapConnector,
) -> None:
    assert isinstance(sap, Connector)
    log = GetLog(sap.session)
    customers, cursor = _changes(sap, "customer")
    hub_ids = [c["YY1_HubId"] for c in customers]
    assert len(hub_ids) == len(set(hub_ids)) == CUSTOMERS
    # customers are read through their business partner (A_Customer has no change stamp):
    # the first page is a GET; each further page (its __next $skiptoken) rides in one
    # $batch with the tax numbers of the page before
    pages = [u for u in log.urls if "/A_BusinessPartner?" in u]
    assert not [u for u in log.urls if "/A_Customer?" in u]
    assert len(pages) == 1 and len(log.batches) == -(-CUSTOMERS // PAGE) - 1
    assert "LastChangeDate asc,LastChangeTime asc,BusinessPartner asc" in unquote_plus(pages[0])
    assert all(c["CustomerPaymentTerms"] and c["Currency"] for c in customers)
    assert sum(1 for c in customers if c["TaxNumber"]) > CUSTOMERS // 2  # from the BP
    order = [(c["BusinessPartnerLastChange"], int(c["BusinessPartner"])) for c in customers]
    assert order == sorted(order) and all(c["BusinessPartner"] == c["Customer"] for c in customers)
    assert _changes(sap, "customer", cursor) == ([], cursor)

    target = customers[3]
    (result,) = sap.write_batch(
        "customer", [{"YY1_HubId": target["YY1_HubId"], "CustomerPaymentTerms": "NT60"}]
    )
    assert result.outcome is Outcome.UPDATED and result.external_id == target["Customer"]
    changed, cursor = _changes(sap, "customer", cursor)
    assert [c["YY1_HubId"] for c in changed] == [target["YY1_HubId"]]
    assert changed[0]["CustomerPaymentTerms"] == "NT60"
    assert _changes(sap, "customer", cursor)[0] == []


def test_tax_numbers_are_read_by_partner_not_by_a_range_of_the_page(
    sap: SapConnector, emulator: Emulator
) -> None:
    """A page is ordered by change time, so its partner numbers spread over the book: a
    min-max range query read nearly every tax number once per page (92k rows per 1,000
    customers at 100,000). Each tax number must be read once, and the page's partners
    split over several ``or`` queries (two per part here) still get theirs."""
    sap.settings.keys_per_query = 2
    bodies: list[str] = []

    def keep(response: requests.Response, *_: Any, **__: Any) -> None:
        if "$metadata" not in (response.url or ""):  # its XML names BPTaxType too
            bodies.append(response.text)

    sap.session.hooks["response"].append(keep)
    customers, _ = _changes(sap, "customer")
    seen = sum(body.count('"BPTaxType"') for body in bodies)
    stored = list(emulator.store.iter("API_BUSINESS_PARTNER.A_BusinessPartnerTaxNumber"))
    assert len(customers) == CUSTOMERS and seen == len(stored) > CUSTOMERS // 2
    tax_of = {t["BusinessPartner"]: t["BPTaxLongNumber"] or t["BPTaxNumber"] for t in stored}
    assert {c["Customer"]: c["TaxNumber"] for c in customers if c["TaxNumber"]} == tax_of


@pytest.mark.parametrize("entity", ["subscription", "invoice", "allocation"])
def test_other_entities_page_and_resume(sap: SapConnector, entity: str) -> None:
    records, cursor = _changes(sap, entity)
    key = {"subscription": "SalesContract", "invoice": "BillingDocument"}.get(entity, "Reservation")
    assert len(records) > 2 * PAGE
    assert len({r[key] for r in records}) == len(records)
    assert _changes(sap, entity, cursor)[0] == []
    if entity == "subscription":
        assert all(
            r["A_SalesContractItem"] and r["A_SalesContractItem"][0]["Material"] for r in records
        )


def test_a_run_of_equal_stamps_is_resumed_batch_by_batch_without_loss(
    emulator: Emulator, sap: SapConnector
) -> None:
    """Ten customers share one change stamp (a mass load does that): every page's cursor
    lands inside the run, and resuming from each one loses and repeats nothing."""
    _, cursor = _changes(sap, "customer")
    same = dt.datetime(2030, 1, 1, 12, 0, 0, tzinfo=dt.UTC)  # the partner's: to the second
    seed_records(
        emulator.store,
        "A_BusinessPartner",
        (
            {
                "BusinessPartner": str(3_000_000 + i),
                "Customer": str(3_000_000 + i),
                "BusinessPartnerCategory": "2",
                "LastChangeDateTime": same,
                "to_Customer": [
                    {
                        "CustomerName": f"Same Stamp {i}",
                        "CustomerFullName": f"Same Stamp {i}",
                        "YY1_HubId": f"CUS-SAME-{i:02d}",
                        "to_CustomerSalesArea": [
                            {
                                "SalesOrganization": "1010",
                                "DistributionChannel": "10",
                                "Division": "00",
                                "Currency": "EUR",
                                "CustomerPaymentTerms": "NT30",
                            }
                        ],
                    }
                ],
            }
            for i in range(10)
        ),
    )
    seen: list[str] = []
    resumes = 0
    while True:
        batch = next(iter(sap.read_changes("customer", cursor)), None)  # one page, then stop
        if batch is None:
            break
        resumes += 1
        seen += [r["YY1_HubId"] for r in batch.records]
        assert batch.cursor is not None and batch.cursor.startswith("2030-01-01T12:00:00+00:00|")
        cursor = batch.cursor
    assert seen == [f"CUS-SAME-{i:02d}" for i in range(10)]
    assert resumes >= 3  # the cursor sat inside the run at least twice


def test_reservations_are_compared_by_content_and_an_unchanged_book_yields_nothing(
    emulator: Emulator, sap: SapConnector
) -> None:
    """A reservation has no change stamp: each read pages through the book (one call a
    page) and hands on only what differs from the hashes its cursor keeps; an unchanged
    book yields no batch at all (so no cursor write either), a changed item its
    reservation alone, a cursor of the old kind everything once."""
    first = list(sap.read_changes("allocation", None))
    records = [r for b in first for r in b.records]
    assert first[-1].records == [] and all(b.cursor is None for b in first[:-1])
    cursor = first[-1].cursor
    assert cursor is not None and cursor.startswith("hash2:")
    before = emulator.calls()
    assert list(sap.read_changes("allocation", cursor)) == []
    assert emulator.calls() - before == -(-len(records) // PAGE)  # its pages, nothing else
    target = next(r for r in records if r["FulfilmentStatus"] == "reserved")
    (result,) = sap.write_batch(
        "allocation", [{"YY1_HubId": target["YY1_HubId"], "FulfilmentStatus": "picked"}]
    )
    assert result.outcome is Outcome.UPDATED
    again = list(sap.read_changes("allocation", cursor))
    assert [r["YY1_HubId"] for b in again for r in b.records] == [target["YY1_HubId"]]
    assert again[-1].cursor not in (None, cursor)
    assert list(sap.read_changes("allocation", again[-1].cursor)) == []
    # a stamp|key cursor stored before: every reservation once, then the hashes
    old = [
        r
        for b in sap.read_changes("allocation", "2026-01-01T00:00:00+00:00|0000000001")
        for r in b.records
    ]
    assert len(old) == len(records)


RESERVATION_SERVICE = SERVICES["API_RESERVATION_DOCUMENT_SRV"]
RESERVATION_ITEMS = "A_ReservationDocumentItem"
RESERVATION_HEADERS = "A_ReservationDocumentHeader"


def _edit_in_sap(emulator: Emulator, entity_set: str, reservation: str, **values: Any) -> None:
    """A change made in SAP itself (not through the hub) to a reservation's header or its
    item, straight in the emulator's store."""
    es = RESERVATION_SERVICE.sets[entity_set]
    coll = f"{RESERVATION_SERVICE.name}.{entity_set}"
    doc = next(d for d in emulator.store.iter(coll) if d["Reservation"] == reservation)
    emulator.store.put(coll, doc_id(es, doc), {**doc, **values})


def test_the_reservation_compare_reads_and_hashes_only_what_the_mappings_read(
    emulator: Emulator, sap: SapConnector
) -> None:
    """The compare asks SAP for the mapped fields alone ($select, the item's through
    ``to_ReservationDocumentItem/...``): an item's quantity changed in SAP is handed on, a
    change to a field no mapping reads (the item text, the header's cost center) is not;
    what it hands on is what a whole read gives for every mapped field."""
    log = GetLog(sap.session)
    records, cursor = _changes(sap, "allocation")
    reads = [u for u in log.urls if "A_ReservationDocumentHeader" in u]
    assert reads and all("$select=" in u for u in reads)
    mapped = set(SPECS["allocation"].fields[f].field for f in SPECS["allocation"].fields)
    whole = {r["Reservation"]: r for b in sap.read_snapshot("allocation") for r in b.records}
    assert len(records) == len(whole)
    for record in records:
        assert "CostCenter" not in record and "ReservationItemText" not in record
        full = whole[record["Reservation"]]
        for name in mapped | {"Reservation", "YY1_HubId"}:
            assert record[name] == full[name], name
    target = records[0]["Reservation"]
    _edit_in_sap(emulator, RESERVATION_ITEMS, target, ReservationItemText="moved shelf")
    _edit_in_sap(emulator, RESERVATION_HEADERS, target, CostCenter="0010101321")
    assert _changes(sap, "allocation", cursor) == ([], cursor)  # no change to the hub
    _edit_in_sap(emulator, RESERVATION_ITEMS, target, ResvnItmRequiredQtyInBaseUnit="7.000")
    changed, after = _changes(sap, "allocation", cursor)
    assert [r["Reservation"] for r in changed] == [target]
    assert changed[0]["ResvnItmRequiredQtyInBaseUnit"] == "7.000"
    assert after not in (None, cursor)
    assert _changes(sap, "allocation", after) == ([], after)


def test_without_the_mappings_the_compare_hashes_whole_reservations(
    emulator: Emulator, sap: SapConnector
) -> None:
    """A connector built without the mappings reads and hashes whole records, so any
    change counts; a cursor of hashes over other fields than it hashes counts as none
    (every reservation once), either way round."""
    bare = SapConnector(sap.settings)
    try:
        records, cursor = _changes(bare, "allocation")
        _, mapped_cursor = _changes(sap, "allocation")
        assert "CostCenter" in records[0]
        target = records[0]["Reservation"]
        _edit_in_sap(emulator, RESERVATION_HEADERS, target, CostCenter="0010101321")
        changed, _ = _changes(bare, "allocation", cursor)
        assert [r["Reservation"] for r in changed] == [target]
        assert len(_changes(bare, "allocation", mapped_cursor)[0]) == len(records)
        assert len(_changes(sap, "allocation", cursor)[0]) == len(records)
    finally:
        bare.close()


def test_a_snapshot_window_is_start_inclusive_end_exclusive(sap: SapConnector) -> None:
    everything = [r for b in sap.read_snapshot("invoice") for r in b.records]
    stamps = sorted({r["LastChangeDateTime"] for r in everything})
    start, end = stamps[2], stamps[-3]

    def moment(text: str) -> dt.datetime:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))

    window = Window(moment(start), moment(end))
    inside = [r for b in sap.read_snapshot("invoice", window) for r in b.records]
    expected = {r["BillingDocument"] for r in everything if start <= r["LastChangeDateTime"] < end}
    assert {r["BillingDocument"] for r in inside} == expected and len(inside) == len(expected)
    assert all(b.cursor is None for b in sap.read_snapshot("invoice", window))


def test_reads_by_key_go_in_chunks_and_take_values_literally(sap: SapConnector) -> None:
    customers, _ = _changes(sap, "customer")
    wanted = [c["YY1_HubId"] for c in customers[:7]]
    hostile = ["x' or YY1_HubId ne 'y", "a\\b", "CUS') or (1 eq 1"]
    sap.settings.keys_per_query = 3
    log = GetLog(sap.session)
    found = _by_keys(sap, "customer", [*wanted, *hostile])
    assert sorted(r["YY1_HubId"] for r in found) == sorted(wanted)
    assert len([u for u in log.urls if "/A_Customer?" in u]) == 4  # 10 keys in threes
    assert _by_keys(sap, "customer", hostile) == []
    invoices, _ = _changes(sap, "invoice")
    (one,) = _by_keys(sap, "invoice", [invoices[-1]["YY1_HubId"]])
    assert one["BillingDocument"] == invoices[-1]["BillingDocument"] and one[ETAG]


def test_plant_stock_is_summed_per_material_and_plant(sap: SapConnector) -> None:
    stock = sap.read_plant_stock()
    assert stock and all(q > 0 for q in stock.values())
    assert all(isinstance(q, int) for q in stock.values())
    book = Book(SEED, CUSTOMERS)
    open_at = {
        (a["sku"], a["location"])
        for s in book.slices()
        for a in s.allocations
        if a["status"] in ("reserved", "picked")
    }
    assert set(stock) == open_at  # the seed stocks every plant with open allocations


# -- writes ---------------------------------------------------------------------------------
def test_a_batch_creates_and_updates_and_reports_the_rejected_record_with_sap_message(
    emulator: Emulator, sap: SapConnector
) -> None:
    customers, _ = _changes(sap, "customer")
    emulator.fault(mode="reject", rate=0.5)  # SAP refuses some records by hub id
    refused = emulator.faults.should_reject
    candidates = [f"CUS-NEW-{i:04d}" for i in range(2, 200)]
    new_bad = next(k for k in candidates if refused(k))
    new_ok = next(k for k in candidates if not refused(k))
    updatable, unchanged = [c for c in customers if not refused(c["YY1_HubId"])][:2]
    rows: list[dict[str, Any]] = [
        {"YY1_HubId": updatable["YY1_HubId"], "CustomerFullName": "Renamed By Hub AG"},
        {
            "YY1_HubId": new_bad,
            "CustomerFullName": "Locked Ltd",
            "Currency": "EUR",
            "CustomerPaymentTerms": "NT30",
        },
        {
            "YY1_HubId": new_ok,
            "CustomerFullName": "Nordlicht GmbH",
            "Currency": "EUR",
            "CustomerPaymentTerms": "NT30",
            "YY1_CreditLimitAmount": "5000.00",
        },
        {"YY1_HubId": unchanged["YY1_HubId"], "CustomerFullName": unchanged["CustomerFullName"]},
    ]
    results = sap.write_batch("customer", rows)
    assert [r.key for r in results] == [r["YY1_HubId"] for r in rows]
    assert [r.outcome for r in results] == [
        Outcome.UPDATED,
        Outcome.REJECTED,
        Outcome.CREATED,
        Outcome.UNCHANGED,
    ]
    error = results[1].error or ""
    assert new_bad in error and "locked by a background process" in error  # SAP's words
    assert results[1].error_code == "400"
    (created,) = _by_keys(sap, "customer", [new_ok])
    assert created["Customer"] == results[2].external_id
    assert created["CustomerPaymentTerms"] == "NT30" and created["Currency"] == "EUR"
    assert Decimal(created["YY1_CreditLimitAmount"]) == Decimal("5000.00")
    assert created["YY1_CreditLimitCurrency"] == "EUR"
    assert _by_keys(sap, "customer", [new_bad]) == []
    (renamed,) = _by_keys(sap, "customer", [updatable["YY1_HubId"]])
    assert renamed["CustomerFullName"] == "Renamed By Hub AG"
    again = sap.write_batch(
        "customer", [{"YY1_HubId": new_ok, "CustomerFullName": "Nordlicht GmbH"}]
    )
    assert again[0].outcome is Outcome.UNCHANGED  # an upsert by hub id: never a second one


def test_updates_read_what_sap_holds_by_its_key_not_by_hub_id(
    emulator: Emulator, sap: SapConnector
) -> None:
    """Before writing, the connector reads what SAP holds of each record. The hub id is a
    custom field S/4 does not index, so asking by it made every chunk scan the whole book
    (most of a 1% incremental pass at 100,000 customers). A record the hub knows the SAP
    number of is read by that key, in the first read and in the read-ahead riding on each
    $batch; one whose YY1_HubId SAP lost is still found by its key, and is repaired, not
    created twice."""
    customers, _ = _changes(sap, "customer")
    targets = customers[:5]
    coll = "API_BUSINESS_PARTNER.A_Customer"
    lost = emulator.store.get(coll, targets[0]["Customer"])
    assert lost is not None
    emulator.store.put(coll, targets[0]["Customer"], {**lost, "YY1_HubId": ""})
    before = emulator.store.count(coll)
    sent: list[str] = []

    def keep(response: requests.Response, *_: Any, **__: Any) -> None:
        body = response.request.body or b""
        text = body.decode() if isinstance(body, bytes) else str(body)
        sent.append(unquote_plus(f"{response.request.url} {text}"))

    sap.session.hooks["response"].append(keep)
    sap.settings.batch_size = 2  # three chunks: the 2nd and 3rd are read ahead
    rows = [
        {"YY1_HubId": c["YY1_HubId"], "Customer": c["Customer"], "CustomerFullName": f"Re {i}"}
        for i, c in enumerate(targets)
    ]
    results = sap.write_batch("customer", rows)
    assert [(r.outcome, r.external_id) for r in results] == [
        (Outcome.UPDATED, c["Customer"]) for c in targets
    ]
    assert emulator.store.count(coll) == before
    assert not [t for t in sent if "YY1_HubId eq" in t]
    assert sum(t.count("Customer eq") for t in sent) >= len(targets)
    for i, c in enumerate(targets):
        doc = emulator.store.get(coll, c["Customer"])
        assert doc is not None
        assert (doc["CustomerFullName"], doc["YY1_HubId"]) == (f"Re {i}", c["YY1_HubId"])


def test_a_field_sap_refuses_is_reported_per_record(sap: SapConnector) -> None:
    customers, _ = _changes(sap, "customer")
    results = sap.write_batch(
        "customer",
        [
            {"YY1_HubId": customers[0]["YY1_HubId"], "CustomerPaymentTerms": "BOGUS"},
            {"YY1_HubId": customers[1]["YY1_HubId"], "CustomerPaymentTerms": "NT90"},
        ],
    )
    assert [r.outcome for r in results] == [Outcome.REJECTED, Outcome.UPDATED]
    assert "BOGUS" in (results[0].error or "")


def test_invoices_are_created_and_updated(sap: SapConnector) -> None:
    customers, _ = _changes(sap, "customer")
    invoices, _ = _changes(sap, "invoice")
    existing = invoices[0]
    results = sap.write_batch(
        "invoice",
        [
            {"YY1_HubId": existing["YY1_HubId"], "TaxAmount": "0.00"},
            {
                "YY1_HubId": "INV-NEW-1",
                "SoldToParty": customers[0]["Customer"],
                "BillingDocumentDate": "2025-03-01",
                "TotalNetAmount": "100.00",
                "TaxAmount": "19.00",
                "TotalGrossAmount": "119.00",
                "TransactionCurrency": "EUR",
            },
        ],
    )
    assert [r.outcome for r in results] == [Outcome.UPDATED, Outcome.CREATED]
    (created,) = _by_keys(sap, "invoice", ["INV-NEW-1"])
    assert created["BillingDocument"] == results[1].external_id
    assert Decimal(created["TotalGrossAmount"]) == Decimal("119")
    assert created["BillingDocumentDate"].startswith("2025-03-01")


def test_subscriptions_are_kept_as_contract_headers(sap: SapConnector) -> None:
    """Creates a value contract in the sales area; an unchanged header (an open end and
    no customer reference, as SAP's initial values) is recognised as such; an update
    carries the new validity end."""
    customers, _ = _changes(sap, "customer")
    contracts, _ = _changes(sap, "subscription")
    open_ended = next(c for c in contracts if c["SalesContractValidityEndDate"] is None)
    same = {
        k: open_ended[k]
        for k in (
            "YY1_HubId",
            "SoldToParty",
            "PurchaseOrderByCustomer",
            "TransactionCurrency",
            "SalesContractValidityEndDate",
        )
    }
    same["SalesContractValidityStartDate"] = open_ended["SalesContractValidityStartDate"][:10]
    ending = next(c for c in contracts if c is not open_ended)
    results = sap.write_batch(
        "subscription",
        [
            same,
            {"YY1_HubId": ending["YY1_HubId"], "SalesContractValidityEndDate": "2031-06-30"},
            {
                "YY1_HubId": "SUB-NEW-1",
                "SoldToParty": customers[0]["Customer"],
                "PurchaseOrderByCustomer": None,
                "TransactionCurrency": "EUR",
                "SalesContractValidityStartDate": "2025-04-01",
                "SalesContractValidityEndDate": None,
            },
        ],
    )
    assert [r.outcome for r in results] == [Outcome.UNCHANGED, Outcome.UPDATED, Outcome.CREATED]
    (ended,) = _by_keys(sap, "subscription", [ending["YY1_HubId"]])
    assert ended["SalesContractValidityEndDate"].startswith("2031-06-30")
    (created,) = _by_keys(sap, "subscription", ["SUB-NEW-1"])
    assert created["SalesContract"] == results[2].external_id
    assert created["SalesContractValidityEndDate"] is None  # stored as 9999-12-31
    assert created["PurchaseOrderByCustomer"] is None
    assert (created["SalesContractType"], created["SalesOrganization"]) == ("WK1", "1010")
    assert created["SalesContractDate"].startswith("2025-04-01")


def _reservation(hub_id: str, contract: str, status: str = "reserved") -> dict[str, Any]:
    """An allocation as mappings/sap/allocation.yaml hands it to the connector."""
    return {
        "YY1_HubId": hub_id,
        "SalesOrder": contract,
        "Product": "SKU-WIDGET",
        "Plant": "1010",
        "ResvnItmRequiredQtyInBaseUnit": 4,
        "MatlCompRequirementDate": "2025-07-01",
        "FulfilmentStatus": status,
    }


def test_allocations_are_kept_as_reservations_with_one_item(sap: SapConnector) -> None:
    """A new allocation is created as a reservation (movement type 601) with its item in
    one deep insert; the fulfilment status is written as the item's flags and read back
    from them; an unchanged allocation writes nothing; a status change updates the item."""
    contracts, _ = _changes(sap, "subscription")
    contract = contracts[0]["SalesContract"]
    (created,) = sap.write_batch("allocation", [_reservation("ALC-NEW-1", contract)])
    assert created.outcome is Outcome.CREATED and created.external_id
    (held,) = _by_keys(sap, "allocation", ["ALC-NEW-1"])
    assert held["Reservation"] == created.external_id
    assert (held["GoodsMovementType"], held["SalesOrder"]) == ("601", contract)
    assert (held["Product"], held["Plant"], held["ReservationItem"]) == (
        "SKU-WIDGET",
        "1010",
        "0001",
    )
    assert Decimal(held["ResvnItmRequiredQtyInBaseUnit"]) == 4
    assert held["MatlCompRequirementDate"].startswith("2025-07-01")
    assert held["FulfilmentStatus"] == "reserved"
    same = sap.write_batch("allocation", [_reservation("ALC-NEW-1", contract)])
    assert same[0].outcome is Outcome.UNCHANGED
    for status in ("picked", "shipped", "released"):
        (moved,) = sap.write_batch("allocation", [_reservation("ALC-NEW-1", contract, status)])
        assert moved.outcome is Outcome.UPDATED, status
        (held,) = _by_keys(sap, "allocation", ["ALC-NEW-1"])
        assert held["FulfilmentStatus"] == status
    assert held["ReservationItmIsMarkedForDeltn"] is True
    shipped = _reservation("ALC-NEW-1", contract, "shipped")
    sap.write_batch("allocation", [shipped])
    (held,) = _by_keys(sap, "allocation", ["ALC-NEW-1"])
    assert held["ReservationItemIsFinallyIssued"] is True
    assert Decimal(held["ResvnItmWithdrawnQtyInBaseUnit"]) == 4  # all of it went out
    assert len(_by_keys(sap, "allocation", ["ALC-NEW-1"])) == 1


def test_an_allocation_sap_refuses_is_reported_with_sap_message(sap: SapConnector) -> None:
    contracts, _ = _changes(sap, "subscription")
    bad = {**_reservation("ALC-BAD-1", contracts[0]["SalesContract"]), "Plant": None}
    good = _reservation("ALC-GOOD-1", contracts[0]["SalesContract"])
    results = sap.write_batch("allocation", [bad, good])
    assert [r.outcome for r in results] == [Outcome.REJECTED, Outcome.CREATED]
    assert "Plant" in (results[0].error or "")
    assert _by_keys(sap, "allocation", ["ALC-BAD-1"]) == []


@pytest.mark.parametrize("mode", ["429", "503", "drop"])
def test_allocation_writes_through_faults_lose_nothing_and_apply_nothing_twice(
    emulator: Emulator, sap: SapConnector, mode: str
) -> None:
    reservations, _ = _changes(sap, "allocation")
    open_one = next(r for r in reservations if r["FulfilmentStatus"] == "reserved")
    contract = open_one["SalesOrder"]
    picked = {
        **{k: open_one[k] for k in ("YY1_HubId", "SalesOrder", "Product", "Plant")},
        "ResvnItmRequiredQtyInBaseUnit": open_one["ResvnItmRequiredQtyInBaseUnit"],
        "MatlCompRequirementDate": open_one["MatlCompRequirementDate"][:10],
        "FulfilmentStatus": "shipped",
    }
    emulator.fault(mode=mode, count=1, retry_after=0, path=r"\$batch")
    key = f"ALC-FAULT-{mode}"
    results = sap.write_batch("allocation", [_reservation(key, contract), picked])
    assert [r.outcome for r in results] == [Outcome.CREATED, Outcome.UPDATED]
    assert len(_by_keys(sap, "allocation", [key])) == 1
    (shipped,) = _by_keys(sap, "allocation", [picked["YY1_HubId"]])
    assert shipped["FulfilmentStatus"] == "shipped"
    assert not emulator.faults.active()
    during, _ = _changes(sap, "allocation")
    assert sorted(r["YY1_HubId"] for r in during) == sorted(
        [r["YY1_HubId"] for r in reservations] + [key]
    )


def _meanwhile(sap: SapConnector, env: dict[str, str], hub_id: str, times: int) -> list[str]:
    """Another SAP user changes ``hub_id`` right after each of the connector's reads of it
    (``times`` times): the ETag the connector just read is stale when it writes."""
    other = connect("sap", env)
    names: list[str] = []
    counter = itertools.count()

    def hook(response: requests.Response, *_: Any, **__: Any) -> None:
        url = unquote(response.request.url or "")
        if response.request.method == "GET" and "/A_Customer?" in url and hub_id in url:
            n = next(counter)
            if n < times:
                names.append(f"Changed Meanwhile {n}")
                other.write_batch(
                    "customer", [{"YY1_HubId": hub_id, "CustomerFullName": names[-1]}]
                )

    sap.session.hooks["response"].append(hook)
    return names


def test_a_stale_etag_is_reread_and_the_write_tried_once_more(
    emulator: Emulator, sap: SapConnector
) -> None:
    hub_id = _changes(sap, "customer")[0][4]["YY1_HubId"]
    names = _meanwhile(sap, emulator.env, hub_id, times=1)
    (result,) = sap.write_batch(
        "customer", [{"YY1_HubId": hub_id, "CustomerFullName": "Hub Value"}]
    )
    assert names and result.outcome is Outcome.UPDATED
    (now,) = _by_keys(sap, "customer", [hub_id])
    assert now["CustomerFullName"] == "Hub Value"


def test_a_record_changed_again_after_the_reread_is_reported_as_a_conflict(
    emulator: Emulator, sap: SapConnector
) -> None:
    hub_id = _changes(sap, "customer")[0][5]["YY1_HubId"]
    names = _meanwhile(sap, emulator.env, hub_id, times=100)
    (result,) = sap.write_batch(
        "customer", [{"YY1_HubId": hub_id, "CustomerFullName": "Hub Value"}]
    )
    assert result.outcome is Outcome.REJECTED and result.error_code == "CONFLICT"
    assert "412" in (result.error or "")
    (now,) = _by_keys(sap, "customer", [hub_id])
    assert now["CustomerFullName"] == names[-2]  # the other user's value stands (last read)


@pytest.mark.parametrize("how", ["stale header", "token_expiry fault"])
def test_an_expired_csrf_token_is_fetched_again(
    emulator: Emulator, sap: SapConnector, how: str
) -> None:
    customers, _ = _changes(sap, "customer")
    target = customers[5]["YY1_HubId"]
    sap.write_batch("customer", [{"YY1_HubId": target, "CustomerPaymentTerms": "NT45"}])
    token = sap.session.headers["X-CSRF-Token"]
    if how == "stale header":
        sap.session.headers["X-CSRF-Token"] = "expired-token"
    else:
        emulator.fault(mode="token_expiry")
    (result,) = sap.write_batch("customer", [{"YY1_HubId": target, "CustomerPaymentTerms": "NT90"}])
    assert result.outcome is Outcome.UPDATED
    assert sap.session.headers["X-CSRF-Token"] not in ("expired-token", "")
    if how == "token_expiry fault":
        assert sap.session.headers["X-CSRF-Token"] != token
    (now,) = _by_keys(sap, "customer", [target])
    assert now["CustomerPaymentTerms"] == "NT90"


@pytest.mark.parametrize("mode", ["429", "503", "500", "drop"])
def test_faults_lose_nothing_and_apply_nothing_twice(
    emulator: Emulator, sap: SapConnector, mode: str
) -> None:
    before, _ = _changes(sap, "customer")
    emulator.fault(mode=mode, count=2, retry_after=0)
    during, _ = _changes(sap, "customer")
    assert [c["YY1_HubId"] for c in during] == [c["YY1_HubId"] for c in before]
    key = f"CUS-FAULT-{mode}"
    update = before[0]["YY1_HubId"]
    emulator.fault(mode=mode, count=1, retry_after=0, path=r"\$batch")
    results = sap.write_batch(
        "customer",
        [
            {
                "YY1_HubId": key,
                "CustomerFullName": f"Fault {mode} Ltd",
                "Currency": "EUR",
                "CustomerPaymentTerms": "NT30",
            },
            {"YY1_HubId": update, "CustomerFullName": f"Updated through {mode}"},
        ],
    )
    assert [r.outcome for r in results] == [Outcome.CREATED, Outcome.UPDATED]
    assert len(_by_keys(sap, "customer", [key])) == 1
    (updated,) = _by_keys(sap, "customer", [update])
    assert updated["CustomerFullName"] == f"Updated through {mode}"
    assert not emulator.faults.active()  # the fault did hit


def test_retry_after_is_honoured(emulator: Emulator, sap: SapConnector) -> None:
    _changes(sap, "invoice")  # metadata loaded
    emulator.fault(mode="429", count=1, retry_after=1)
    started = time.monotonic()
    records, _ = _changes(sap, "invoice")
    assert records and time.monotonic() - started >= 1.0


# -- secrets and health --------------------------------------------------------------------
def test_a_wrong_password_is_named_but_never_shown(
    emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "Wr0ng-But-Secret-Pa55"
    connector = connect("sap", {**emulator.env, "SAP_PASSWORD": secret})
    assert isinstance(connector, SapConnector)
    with caplog.at_level(logging.DEBUG), pytest.raises(AuthError) as info:
        list(connector.read_changes("customer", None))
    assert "SAP_PASSWORD" in str(info.value)
    assert secret not in str(info.value) and secret not in repr(info.value)
    health = connector.health()
    assert not health.ok and "401" in health.detail and secret not in health.detail
    assert secret not in caplog.text


def test_the_password_never_reaches_a_log_through_faults_and_rejections(
    emulator: Emulator, sap: SapConnector, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        emulator.fault(mode="503", count=2, retry_after=0)
        customers, _ = _changes(sap, "customer")
        emulator.fault(mode="drop", count=1, path=r"\$batch")
        results = sap.write_batch(
            "customer",
            [
                {"YY1_HubId": customers[0]["YY1_HubId"], "CustomerPaymentTerms": "BOGUS"},
                {"YY1_HubId": customers[1]["YY1_HubId"], "CustomerPaymentTerms": "NT15"},
            ],
        )
    assert [r.outcome for r in results] == [Outcome.REJECTED, Outcome.UPDATED]
    assert "retrying" in caplog.text  # the retries were logged
    assert PASSWORD not in caplog.text
    assert all(PASSWORD not in (r.error or "") for r in results)


def test_health(sap: SapConnector) -> None:
    health = sap.health()
    assert health.ok and health.latency_ms is not None


# -- mappings -------------------------------------------------------------------------------
class BookRefs:
    """References as the hub's xref table would hold them for the book (SAP numbers are
    derived from hub ids by the seed: sandbox.seed.xref)."""

    def __init__(self, book: Book) -> None:
        self.customers = {
            xref.sap_customer_number(s.customer["hub_id"]): s.customer["hub_id"]
            for s in book.slices()
        }

        self.contracts = {
            contract_number(sub["hub_id"]): sub["hub_id"]
            for s in book.slices()
            for sub in s.subscriptions
        }

    def to_hub(self, entity: str, system: str, external_id: str) -> str | None:
        held = {"customer": self.customers, "subscription": self.contracts}.get(entity, {})
        return held.get(external_id)

    def to_system(self, entity: str, system: str, hub_id: str) -> str | None:
        if entity == "subscription":
            return contract_number(hub_id)
        return xref.sap_customer_number(hub_id) if entity == "customer" else None


def _book(entity: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for s in Book(SEED, CUSTOMERS).slices():
        records = {
            "customer": [s.customer],
            "subscription": s.subscriptions,
            "invoice": s.invoices,
            "allocation": s.allocations,
        }[entity]
        for record in records:
            out[record["hub_id"]] = validate_record(entity, record).model_dump(mode="json")
    return out


def _same(native: Any, again: Any) -> bool:
    """Equal as SAP means them: decimals by value, dates by day."""
    if native == again:
        return True
    try:
        return Decimal(str(native)) == Decimal(str(again))
    except InvalidOperation:
        return str(native)[:10] == str(again)[:10] and len(str(again)) == 10


def test_the_sap_mappings_pass_the_check_and_cover_what_the_connector_reads(
    sap: SapConnector,
) -> None:
    errors = [e for e in load_all(MAPPINGS_DIR)[1] if e.file.parent.name == "sap"]
    assert errors == []
    assert set(SPECS) <= set(sap.entities())
    assert SPECS["customer"].owns == ["tax_id", "payment_terms", "credit_limit_minor"]
    assert "subscription" not in SPECS or SPECS["subscription"].owns == []  # billing's


@pytest.mark.parametrize("entity", sorted(SPECS))
def test_mapper_round_trip_on_seeded_records_equals_the_book(
    sap: SapConnector, entity: str
) -> None:
    spec = SPECS[entity]
    mapper = Mapper(spec, CODES, BookRefs(Book(SEED, CUSTOMERS)))
    book = _book(entity)
    natives = [r for b in sap.read_snapshot(entity) for r in b.records]
    held = {k: v for k, v in book.items() if spec.holds(v)}
    assert sorted(mapper.hub_id(n) or "" for n in natives) == sorted(held)
    mapped = {name for name in spec.fields if not name.startswith("external_ids.")}
    views = set(mapper.view_names)  # a contract's items: today's view of the book's
    for native in natives:
        hub_id = mapper.hub_id(native)
        assert hub_id is not None
        expected = book[hub_id]
        canonical = mapper.to_canonical(native)
        assert set(canonical) <= mapped | views | {"external_ids"}
        for name in views:
            assert canonical[name] == mapper.held_form(expected)[name], hub_id
        canonical = {k: v for k, v in canonical.items() if k not in views}
        # what SAP says, laid over the book's record, is the book's record
        merged = validate_record(entity, {**expected, **canonical}).model_dump(mode="json")
        assert {f: merged[f] for f in canonical} == {f: expected[f] for f in canonical}, hub_id
        back = mapper.to_native({**canonical, "hub_id": hub_id})
        for field, value in back.items():
            assert _same(native.get(field), value), (hub_id, field, native.get(field), value)


def test_a_canonical_customer_written_through_the_mapping_reads_back_equal(
    sap: SapConnector,
) -> None:
    mapper = Mapper(SPECS["customer"], CODES)
    book = _book("customer")
    hub_id = sorted(book)[1]
    changed = {
        **book[hub_id],
        "legal_name": "Round Trip Holdings Ltd",
        "payment_terms": "net60",
        "credit_limit_minor": 1_234_567,
    }
    payload = mapper.to_native(changed)
    (result,) = sap.write_batch("customer", [payload])
    assert result.outcome is Outcome.UPDATED
    (native,) = _by_keys(sap, "customer", [hub_id])
    canonical = mapper.to_canonical(native)
    for field in ("legal_name", "payment_terms", "credit_limit_minor", "currency", "tax_id"):
        assert canonical[field] == changed[field], field


def test_an_upgrade_removal_and_addition_reach_the_contract_items_by_hub_item_id(
    sap: SapConnector,
) -> None:
    """Items pair up by the hub's item id: an upgraded item (a new version, same item_id)
    changes the same contract item, a removed item's is deleted, a new one is added; the
    contract then reads back as the view pushed, and writing it again sends nothing."""
    mapper = Mapper(SPECS["subscription"], CODES, BookRefs(Book(SEED, CUSTOMERS)))
    book = _book("subscription")
    hub_id = next(h for h, sub in sorted(book.items()) if len(sub["items"]) >= 2)
    sub = book[hub_id]
    (before,) = _by_keys(sap, "subscription", [hub_id])
    numbers = {i["YY1_HubItemId"]: i["SalesContractItem"] for i in before["A_SalesContractItem"]}
    today = dt.datetime.now(dt.UTC).date()
    kept, removed = sub["items"][0], sub["items"][1]
    upgraded = {**kept, "quantity": kept["quantity"] + 7, "effective_from": today.isoformat()}
    ended = {**kept, "effective_to": (today - dt.timedelta(days=1)).isoformat()}
    added = {**kept, "item_id": f"{hub_id}-new", "sku": "PLAT-CORE", "quantity": 1}
    items = [ended, upgraded, added, *sub["items"][2:]]
    changed = {**sub, "items": items}
    (result,) = sap.write_batch("subscription", [mapper.to_native(changed)])
    assert result.outcome is Outcome.UPDATED
    (native,) = _by_keys(sap, "subscription", [hub_id])
    after = {i["YY1_HubItemId"]: i for i in native["A_SalesContractItem"]}
    assert removed["item_id"] not in after and added["item_id"] in after
    assert after[kept["item_id"]]["SalesContractItem"] == numbers[kept["item_id"]]
    assert Decimal(after[kept["item_id"]]["RequestedQuantity"]) == upgraded["quantity"]
    assert mapper.to_canonical(native)["items"] == mapper.held_form(changed)["items"]
    (again,) = sap.write_batch("subscription", [mapper.to_native(changed)])
    assert again.outcome is Outcome.UNCHANGED


def test_a_csrf_token_expiring_between_batched_pages_is_fetched_again(
    emulator: Emulator, sap: SapConnector
) -> None:
    """Pages after the first ride in $batch POSTs, which need the CSRF token: when SAP
    expires it mid-read, the connector fetches a new one and reads every record once."""
    before, _ = _changes(sap, "customer")
    reader = iter(sap.read_changes("customer", None))
    first = next(reader).records
    emulator.fault(mode="token_expiry")  # the token the first page brought is now stale
    rest = [r for batch in reader for r in batch.records]
    assert [c["YY1_HubId"] for c in first + rest] == [c["YY1_HubId"] for c in before]
    assert [c["TaxNumber"] for c in first + rest] == [c["TaxNumber"] for c in before]


def test_each_chunk_is_planned_from_a_read_made_in_the_batch_before_it(
    sap: SapConnector,
) -> None:
    """Chunks of 2: the first is planned from its own read; every later one from a GET
    that rode in the previous $batch (after its change sets). Creates, updates and
    unchanged records come out as with a read per chunk, and nothing is created twice."""
    sap.settings.batch_size = 2
    customers, _ = _changes(sap, "customer")
    log = GetLog(sap.session)
    rows: list[dict[str, Any]] = [
        {"YY1_HubId": customers[0]["YY1_HubId"], "CustomerFullName": "Chunked Eins AG"},
        {"YY1_HubId": "CUS-CHUNK-1", "CustomerFullName": "Chunk One", "Currency": "EUR"},
        {
            "YY1_HubId": customers[1]["YY1_HubId"],
            "CustomerFullName": customers[1]["CustomerFullName"],
        },
        {"YY1_HubId": "CUS-CHUNK-2", "CustomerFullName": "Chunk Two", "Currency": "EUR"},
        {"YY1_HubId": customers[2]["YY1_HubId"], "CustomerFullName": "Chunked Drei AG"},
    ]
    results = sap.write_batch("customer", rows)
    assert [r.outcome for r in results] == [
        Outcome.UPDATED,
        Outcome.CREATED,
        Outcome.UNCHANGED,
        Outcome.CREATED,
        Outcome.UPDATED,
    ]
    assert len([u for u in log.urls if "/A_Customer?" in u]) == 1  # the first chunk's read
    assert len(log.batches) == 3  # one $batch per chunk, nothing else
    again = sap.write_batch("customer", rows[1:2] + rows[3:4])
    assert [r.outcome for r in again] == [Outcome.UNCHANGED, Outcome.UNCHANGED]
    held = _by_keys(sap, "customer", ["CUS-CHUNK-1", "CUS-CHUNK-2"])
    assert sorted(r["YY1_HubId"] for r in held) == ["CUS-CHUNK-1", "CUS-CHUNK-2"]

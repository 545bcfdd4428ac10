"""The emulator's reads answer byte for byte what the plain path answers: every entity
loaded and rendered on its own from the store, nothing kept (``Dispatcher(reference=True)``,
the code path the kept pages and scans stand in for). Both
dispatchers serve one repository; after every kind of write (through the API, a
``$batch``-style changeset, straight into the store) each read is made twice on the
cached one (rendered, then as kept) and compared with the reference: status, headers,
body, or the error raised."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from sandbox.faults import FaultState
from sandbox.sap import handlers, seed_records
from sandbox.sap.errors import SapError
from sandbox.sap.handlers import Dispatcher, Op
from sandbox.sap.repository import KEY_ID, Repository, UnitOfWork
from sandbox.sap.services import SERVICES
from sandbox.sap.settings import SapSettings
from sandbox.store import DocumentStore

pytestmark = pytest.mark.timeout(120)

RES = SERVICES["API_RESERVATION_DOCUMENT_SRV"]
BP = SERVICES["API_BUSINESS_PARTNER"]
CONTRACTS = SERVICES["API_SALES_CONTRACT_SRV"]
ROOT = "https://sap.example:8443/sap/opu/odata/sap/{}/"
HEADERS = "A_ReservationDocumentHeader"
ITEMS = "A_ReservationDocumentItem"
NAV = "to_ReservationDocumentItem"
#: what the connector's snapshot compare asks for (SapConnector._projection)
PROJECTION = (
    "$select=Reservation,YY1_HubId,SalesOrder,"
    f"{NAV}/ReservationItem,{NAV}/Product,{NAV}/Plant,{NAV}/ResvnItmRequiredQtyInBaseUnit,"
    f"{NAV}/GoodsMovementIsAllowed,{NAV}/ReservationItemIsFinallyIssued,"
    f"{NAV}/ReservationItmIsMarkedForDeltn&$expand={NAV}"
)

#: (service, path, query): collection reads of reservations in every shape the emulator
#: takes, the items, a navigation, single entities, and other services' expands
READS: list[tuple[Any, str, str]] = [
    (RES, HEADERS, ""),
    (RES, HEADERS, PROJECTION),
    (RES, HEADERS, PROJECTION + "&$inlinecount=allpages"),
    (RES, HEADERS, PROJECTION + "&$skiptoken=7"),
    (RES, HEADERS, f"$expand={NAV}"),
    (RES, HEADERS, f"$expand={NAV}&$skip=3&$top=9&$inlinecount=allpages"),
    (RES, HEADERS, f"$expand={NAV}&$top=30"),
    (RES, HEADERS, f"$select=*,{NAV}/*&$expand={NAV}"),
    (RES, HEADERS, f"$select=Reservation,{NAV}&$expand={NAV}"),
    (RES, HEADERS, f"$select=Reservation,{NAV}"),
    (RES, HEADERS, "$select=Reservation,GoodsMovementType&$skip=40"),
    (
        RES,
        HEADERS,
        f"$filter=Reservation ge '0000000010' and Reservation le '0000000020'"
        f"&$expand={NAV}&$select=Reservation,{NAV}/Product",
    ),
    (RES, HEADERS, f"$filter=GoodsMovementType eq '261'&$expand={NAV}&$inlinecount=allpages"),
    (
        RES,
        HEADERS,
        f"$filter=Reservation eq '0000000004' or Reservation eq '0000000031'&$expand={NAV}",
    ),
    (RES, HEADERS, f"$orderby=GoodsRecipientName desc,Reservation&$expand={NAV}&$top=12"),
    (RES, HEADERS, f"$orderby=CostCenter&$expand={NAV}&$skiptoken=7"),
    (RES, HEADERS, f"$filter=YY1_HubId eq 'ALLOC-5'&$expand={NAV}"),
    (RES, HEADERS, "$inlinecount=bogus"),
    (RES, HEADERS, "$select=NoSuchField"),
    (RES, HEADERS + "/$count", ""),
    (RES, HEADERS + "/$count", "$filter=GoodsMovementType eq '201'"),
    (RES, ITEMS, ""),
    (RES, ITEMS, "$expand=to_ReservationDocumentHeader&$top=15"),
    (RES, ITEMS, "$filter=Reservation eq '0000000011'&$select=ReservationItem,Product"),
    (RES, f"{HEADERS}('0000000011')/{NAV}", ""),
    (RES, f"{HEADERS}('0000000011')/{NAV}", "$select=Product&$filter=Plant eq '1010'"),
    (RES, f"{HEADERS}('0000000011')", ""),
    (RES, f"{HEADERS}('0000000011')", PROJECTION),
    (RES, f"{HEADERS}('0000000013')", f"$expand={NAV}"),
    (RES, f"{HEADERS}('0000000099')", ""),
    (RES, f"{ITEMS}(Reservation='0000000011',ReservationItem='0002',RecordType='')", ""),
    (
        RES,
        f"{ITEMS}(Reservation='0000000011',ReservationItem='0001',RecordType='')",
        "$expand=to_ReservationDocumentHeader",
    ),
    (RES, f"{HEADERS}('0000000011')/SalesOrder", ""),
    (BP, "A_BusinessPartner", "$expand=to_Customer/to_CustomerSalesArea"),
    (BP, "A_BusinessPartner", "$expand=to_BusinessPartnerAddress,to_Customer&$top=4"),
    (CONTRACTS, "A_SalesContract", "$expand=to_Item&$inlinecount=allpages"),
]


def _reservation(i: int) -> dict[str, Any]:
    items = [
        {
            "ReservationItem": f"{n:04d}",
            "Product": f"SKU-{(i * 7 + n) % 5}",
            "Plant": "1010" if n % 2 else "1020",
            "StorageLocation": "0001",
            "ResvnItmRequiredQtyInBaseUnit": f"{i % 4 + n}.5",
            "ResvnItmWithdrawnQtyInBaseUnit": "0" if i % 3 else f"{i % 4 + n}.5",
            "ReservationItemIsFinallyIssued": i % 3 == 0,
            "ReservationItemText": 'Grüße ☃ "quoted" O\'Neil' if i % 5 == 0 else "",
            "MatlCompRequirementDate": "/Date(1709251200000)/",
        }
        for n in range(1, i % 4 + 1)  # none, one, two or three items
    ]
    return {
        "Reservation": f"{i:010d}",
        "GoodsMovementType": ("201", "261")[i % 2],
        "CostCenter": "" if i % 6 == 0 else f"CC{i % 9}",
        "GoodsRecipientName": f"R{(i * 13) % 17}",
        "SalesOrder": "" if i % 3 else f"{4000 + i}",
        "YY1_HubId": f"ALLOC-{i}",
        NAV: items,
    }


@pytest.fixture
def dispatchers(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[DocumentStore, Dispatcher, Dispatcher]]:
    # every page stays kept, so a page kept past a write it should not outlive shows
    monkeypatch.setattr(handlers, "PAGE_CACHE_SIZE", 10_000)
    store = DocumentStore(tmp_path / "sap.sqlite")
    settings = SapSettings(page_size=7, max_page_size=11)
    repo = Repository(store, settings.code_lists, check_references=False)
    fast = Dispatcher(repo, FaultState(seed=1), settings)
    reference = Dispatcher(repo, FaultState(seed=1), settings, reference=True)
    seed_records(store, HEADERS, (_reservation(i) for i in range(1, 45)))
    seed_records(
        store,
        "A_BusinessPartner",
        (
            {
                "BusinessPartnerCategory": "2",
                "BusinessPartnerFullName": f"Partner {i}",
                "YY1_HubId": f"CUS-{i}",
                "Customer": f"{1000000 + i}" if i % 2 else "",
                "to_BusinessPartnerAddress": [{"CityName": "Köln", "Country": "DE"}],
            }
            for i in range(8)
        ),
    )
    seed_records(
        store,
        "A_Customer",
        (
            {
                "Customer": f"{1000000 + i}",
                "CustomerName": f"Partner {i}",
                "to_CustomerSalesArea": [
                    {"SalesOrganization": "1010", "DistributionChannel": "10", "Division": "00"}
                ],
            }
            for i in range(1, 8, 2)
        ),
    )
    seed_records(
        store,
        "A_SalesContract",
        (
            {
                "SoldToParty": "1000001",
                "TransactionCurrency": "EUR",
                "to_Item": [{"Material": "SKU-1", "RequestedQuantity": "2"}] * (i % 3),
            }
            for i in range(10)
        ),
    )
    yield store, fast, reference
    store.close()


def _answer(dispatcher: Dispatcher, svc: Any, path: str, query: str) -> tuple[Any, ...]:
    try:
        result = dispatcher.handle(svc, Op("GET", path, query), ROOT.format(svc.name))
    except SapError as exc:
        return ("error", exc.status, exc.code, str(exc))
    return (result.status, sorted(result.headers.items()), result.body)


def _pages(dispatcher: Dispatcher, svc: Any, path: str, query: str) -> Iterator[tuple[Any, ...]]:
    """The read and every page its ``__next`` leads to."""
    while True:
        answer = _answer(dispatcher, svc, path, query)
        yield answer
        if answer[0] != 200 or not answer[2].startswith(b'{"d":{"results"'):
            return
        following = json.loads(answer[2])["d"].get("__next")
        if not following:
            return
        query = following.split("?", 1)[1]


def _same_everywhere(fast: Dispatcher, reference: Dispatcher) -> int:
    """Every read, paged through, twice on ``fast`` (rendered, then as kept), against
    the reference; the number of answers compared."""
    compared = 0
    for svc, path, query in READS:
        expected = list(_pages(reference, svc, path, query))
        for _ in range(2):
            got = list(_pages(fast, svc, path, query))
            assert got == expected, (svc.name, path, query)
        compared += len(expected)
    return compared


def _write(fast: Dispatcher, method: str, path: str, body: Any = None, **headers: str) -> int:
    op = Op(method, path, "", {"if-match": "*", **headers}, json.dumps(body or {}).encode())
    return fast.handle(RES, op, ROOT.format(RES.name)).status


def test_reads_match_the_reference_through_every_kind_of_write(dispatchers):
    store, fast, reference = dispatchers
    assert _same_everywhere(fast, reference) > 60

    item = f"{ITEMS}(Reservation='0000000011',ReservationItem='0002',RecordType='')"
    # an item changed (its header is re-stamped: a new ETag)
    assert _write(fast, "PATCH", item, {"ResvnItmRequiredQtyInBaseUnit": "9"}) == 204
    _same_everywhere(fast, reference)
    # a header changed, by MERGE and by PUT
    assert _write(fast, "PATCH", f"{HEADERS}('0000000003')", {"YY1_HubId": "ALLOC-X"}) == 204
    header = {"GoodsMovementType": "201", "CostCenter": "CC-PUT", "YY1_HubId": "ALLOC-P"}
    assert _write(fast, "PUT", f"{HEADERS}('0000000013')", header) == 204
    _same_everywhere(fast, reference)
    # an item added to a reservation that had none, a reservation created with items
    new_item = {"Product": "SKU-9", "Plant": "1010", "ResvnItmRequiredQtyInBaseUnit": "1"}
    assert _write(fast, "POST", f"{HEADERS}('0000000004')/{NAV}", new_item) == 201
    created = {"GoodsMovementType": "261", "YY1_HubId": "ALLOC-NEW", NAV: [new_item, new_item]}
    assert _write(fast, "POST", HEADERS, created) == 201
    _same_everywhere(fast, reference)
    # an item deleted, a reservation deleted with its items
    assert _write(fast, "DELETE", item) == 204
    assert _write(fast, "DELETE", f"{HEADERS}('0000000031')") == 204
    _same_everywhere(fast, reference)
    # a changeset: several writes, one commit
    uow = UnitOfWork(fast.repo)
    for n in (5, 6, 7):
        op = Op(
            "PATCH",
            f"{HEADERS}('{n:010d}')",
            "",
            {"if-match": "*"},
            json.dumps({"GoodsRecipientName": f"U{n}"}).encode(),
        )
        fast.handle(RES, op, ROOT.format(RES.name), uow)
    uow.commit()
    _same_everywhere(fast, reference)
    # straight into the store: an item rewritten, an item removed (its header is not
    # re-stamped), then a seed
    coll = f"{RES.name}.{ITEMS}"
    doc = store.get(coll, "0000000015\x1f0001\x1f")
    assert doc is not None
    store.put(coll, doc[KEY_ID], {**doc, "Product": "SKU-STORE"})
    _same_everywhere(fast, reference)
    assert store.delete(coll, "0000000015\x1f0002\x1f")
    _same_everywhere(fast, reference)
    seed_records(store, HEADERS, [_reservation(50), _reservation(51)])
    _same_everywhere(fast, reference)
    # a write refused (ETag mismatch) changes nothing
    with pytest.raises(SapError):
        _write(
            fast, "PATCH", f"{HEADERS}('0000000008')", {"CostCenter": "X"}, **{"if-match": 'W/"x"'}
        )
    _same_everywhere(fast, reference)


def test_reservation_pages_match_the_reference_after_single_writes(dispatchers):
    """The connector's read, its pages kept, one item write at a time: only the written
    reservation renders anew, and the pages say so."""
    _, fast, reference = dispatchers
    for n in (2, 9, 14, 27, 43):
        _same_everywhere(fast, reference)
        item = f"{ITEMS}(Reservation='{n:010d}',ReservationItem='0001',RecordType='')"
        status = _write(fast, "PATCH", item, {"ReservationItemText": f"pass {n}"})
        assert status == 204
        page = list(_pages(fast, RES, HEADERS, PROJECTION))
        assert page == list(_pages(reference, RES, HEADERS, PROJECTION))

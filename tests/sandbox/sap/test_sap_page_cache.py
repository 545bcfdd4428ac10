"""Rendered collection pages are kept (Dispatcher._collection) and sent again while the
entity sets they were rendered from are unchanged: every write, through the API or
straight into the store, must show in the next read."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.sap import seed_records

pytestmark = pytest.mark.timeout(60)

SERVICE = "API_RESERVATION_DOCUMENT_SRV"
READ = (
    "A_ReservationDocumentHeader?$select=Reservation,YY1_HubId,"
    "to_ReservationDocumentItem/ReservationItem,"
    "to_ReservationDocumentItem/ResvnItmRequiredQtyInBaseUnit"
    "&$expand=to_ReservationDocumentItem"
)
ITEM = "A_ReservationDocumentItem(Reservation='{}',ReservationItem='0001',RecordType='')"


def _reservation(i: int) -> dict[str, Any]:
    return {
        "Reservation": f"{i:010d}",
        "GoodsMovementType": "201",
        "YY1_HubId": f"ALLOC-{i}",
        "to_ReservationDocumentItem": [
            {
                "ReservationItem": "0001",
                "Product": "SKU-1",
                "Plant": "1010",
                "ResvnItmRequiredQtyInBaseUnit": "2",
            }
        ],
    }


def _rows(session: Any, url: str) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """Every page of the read, as (reservation, hub id, [(item, quantity)])."""
    out = []
    while url:
        answer = session.get(url)
        assert answer.status_code == 200, answer.text
        body = answer.json()["d"]
        out += [
            (
                r["Reservation"],
                r["YY1_HubId"],
                [
                    (i["ReservationItem"], i["ResvnItmRequiredQtyInBaseUnit"])
                    for i in r["to_ReservationDocumentItem"]["results"]
                ],
            )
            for r in body["results"]
        ]
        url = body.get("__next")
    return out


def test_a_write_after_a_read_shows_in_the_same_read_again(sap):
    """page size 20: 25 reservations are two pages, both kept after the first read."""
    seed_records(sap.store, "A_ReservationDocumentHeader", (_reservation(i) for i in range(1, 26)))
    session = sap.session()
    token = sap.fetch_token(session, SERVICE)
    root = sap.service_url(SERVICE)
    first = _rows(session, root + READ)
    assert len(first) == 25
    assert first[0] == ("0000000001", "ALLOC-1", [("0001", "2.000")])
    assert _rows(session, root + READ) == first  # as kept
    items = root + "A_ReservationDocumentHeader('0000000024')/to_ReservationDocumentItem"
    assert [
        i["ResvnItmRequiredQtyInBaseUnit"] for i in session.get(items).json()["d"]["results"]
    ] == ["2.000"]

    write = {"X-CSRF-Token": token, "If-Match": "*"}
    # an item changed through the API (its header is re-stamped too)
    answer = session.patch(
        root + ITEM.format("0000000024"), json={"ResvnItmRequiredQtyInBaseUnit": "7"}, headers=write
    )
    assert answer.status_code == 204, answer.text
    second = _rows(session, root + READ)
    assert second[23] == ("0000000024", "ALLOC-24", [("0001", "7.000")])
    assert second[:23] + second[24:] == first[:23] + first[24:]
    assert [
        i["ResvnItmRequiredQtyInBaseUnit"] for i in session.get(items).json()["d"]["results"]
    ] == ["7.000"]

    # a header changed through the API
    answer = session.patch(
        root + "A_ReservationDocumentHeader('0000000003')",
        json={"YY1_HubId": "ALLOC-X"},
        headers=write,
    )
    assert answer.status_code == 204, answer.text
    assert _rows(session, root + READ)[2] == ("0000000003", "ALLOC-X", [("0001", "2.000")])

    # an item added, and a reservation written straight into the store (as the seed does)
    answer = session.post(
        root + "A_ReservationDocumentHeader('0000000005')/to_ReservationDocumentItem",
        json={"Product": "SKU-2", "Plant": "1010", "ResvnItmRequiredQtyInBaseUnit": "1"},
        headers={"X-CSRF-Token": token},
    )
    assert answer.status_code == 201, answer.text
    seed_records(sap.store, "A_ReservationDocumentHeader", [_reservation(26)])
    third = _rows(session, root + READ)
    assert len(third) == 26
    assert third[4][2] == [("0001", "2.000"), ("0002", "1.000")]
    assert third[25] == ("0000000026", "ALLOC-26", [("0001", "2.000")])

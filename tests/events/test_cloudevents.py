"""CloudEvents parsing (structured, batched, binary) and the SAP business event mapping."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from hub.events.cloudevents import (
    CloudEvent,
    CloudEventError,
    parse_binary,
    parse_http,
    parse_structured,
)
from hub.events.sap_events import classify, system_id

BP_CHANGED = "sap.s4.beh.businesspartner.v1.BusinessPartner.Changed.v1"


def structured(**overrides: object) -> dict[str, object]:
    event: dict[str, object] = {
        "specversion": "1.0",
        "type": BP_CHANGED,
        "source": "/default/sap.s4.beh/244000000",
        "id": "a823e884-5edc-4194-a81a-f1a6c5c6a1b5",
        "time": "2024-03-01T10:15:30.123+01:00",
        "datacontenttype": "application/json",
        "data": {"BusinessPartner": "1000123"},
    }
    event.update(overrides)
    return {k: v for k, v in event.items() if v is not None}


def test_structured_mode() -> None:
    event = parse_structured(json.dumps(structured(sapcorrelationid="x1")).encode())
    assert event.id == "a823e884-5edc-4194-a81a-f1a6c5c6a1b5"
    assert event.type == BP_CHANGED
    assert event.time == datetime(2024, 3, 1, 9, 15, 30, 123000, tzinfo=UTC)
    assert event.time is not None and event.time.tzinfo is UTC
    assert event.data == {"BusinessPartner": "1000123"}
    assert event.extensions == {"sapcorrelationid": "x1"}
    assert event.subject is None
    with pytest.raises(AttributeError):
        event.id = "other"  # type: ignore[misc]
    again = parse_structured(json.dumps(event.attributes()).encode())
    assert again == event


def test_binary_mode_headers_are_case_insensitive_and_percent_decoded() -> None:
    headers = {
        "Ce-Specversion": "1.0",
        "ce-type": BP_CHANGED,
        "CE-SOURCE": "/default/sap.s4.beh/S4H",
        "ce-id": "id-1",
        "ce-time": "2024-03-01T09:15:30Z",
        "ce-subject": "BP%201000123",
        "Content-Type": "application/json; charset=utf-8",
    }
    event = parse_binary(headers, b'{"BusinessPartner":"1000123"}')
    assert event.subject == "BP 1000123"
    assert event.time == datetime(2024, 3, 1, 9, 15, 30, tzinfo=UTC)
    assert event.datacontenttype == "application/json; charset=utf-8"
    assert event.data == {"BusinessPartner": "1000123"}
    assert parse_http(headers, b'{"BusinessPartner":"1000123"}') == [event]
    raw = parse_binary({**headers, "Content-Type": "application/octet-stream"}, b"\x00\x01")
    assert raw.data == b"\x00\x01"


def test_batched_mode_and_mode_detection() -> None:
    body = json.dumps([structured(id="1"), structured(id="2")]).encode()
    events = parse_http({"content-type": "application/cloudevents-batch+json"}, body)
    assert [e.id for e in events] == ["1", "2"]
    one = parse_http(
        {"Content-Type": "application/cloudevents+json; charset=utf-8"},
        json.dumps(structured()).encode(),
    )
    assert isinstance(one[0], CloudEvent)
    with pytest.raises(CloudEventError) as info:
        parse_http({"content-type": "application/json"}, b"{}")
    assert info.value.attribute == "specversion"


@pytest.mark.parametrize(
    ("overrides", "attribute"),
    [
        ({"id": None}, "id"),
        ({"source": None}, "source"),
        ({"type": None}, "type"),
        ({"specversion": None}, "specversion"),
        ({"specversion": "0.3"}, "specversion"),
        ({"id": ""}, "id"),
        ({"id": 7}, "id"),
        ({"time": "2024-03-01T10:15:30"}, "time"),  # no offset: ambiguous
        ({"time": "yesterday"}, "time"),
        ({"subject": 5}, "subject"),
        ({"Bad-Name": "x"}, "Bad-Name"),
        ({"data": None, "data_base64": "!!"}, "data_base64"),
        ({"data_base64": "AA=="}, "data"),  # data and data_base64 together
    ],
)
def test_invalid_events_name_the_attribute(overrides: dict[str, object], attribute: str) -> None:
    with pytest.raises(CloudEventError) as info:
        parse_structured(json.dumps(structured(**overrides)).encode())
    assert info.value.attribute == attribute
    assert attribute in str(info.value)


def test_binary_mode_missing_header_and_bad_body() -> None:
    headers = {"ce-specversion": "1.0", "ce-type": BP_CHANGED, "ce-source": "/x"}
    with pytest.raises(CloudEventError) as info:
        parse_binary(headers, b"{}")
    assert info.value.attribute == "id"
    with pytest.raises(CloudEventError) as info:
        parse_binary({**headers, "ce-id": "1", "content-type": "application/json"}, b"{nope")
    assert info.value.attribute == "data"
    with pytest.raises(CloudEventError) as info:
        parse_structured(b"[not json")
    assert info.value.attribute == "event"


@pytest.mark.parametrize(
    ("event_type", "data", "entity", "change", "keys"),
    [
        (
            BP_CHANGED,
            {"BusinessPartner": "1000123"},
            "customer",
            "update",
            {"BusinessPartner": "1000123"},
        ),
        (
            "sap.s4.beh.businesspartner.v1.BusinessPartner.Created.v1",
            {"BusinessPartner": 1000124},
            "customer",
            "create",
            {"BusinessPartner": "1000124"},
        ),
        (
            "sap.s4.beh.salescontract.v1.SalesContract.Changed.v1",
            {"SalesContract": "40000001"},
            "subscription",
            "update",
            {"SalesContract": "40000001"},
        ),
        (
            "sap.s4.beh.billingdocument.v1.BillingDocument.Canceled.v1",
            {"BillingDocument": "90000001"},
            "invoice",
            "update",
            {"BillingDocument": "90000001"},
        ),
        (
            "sap.s4.beh.billingdocument.v1.BillingDocument.Created.v1",
            {"BillingDocument": "90000002"},
            "invoice",
            "create",
            {"BillingDocument": "90000002"},
        ),
        (
            "sap.s4.beh.reservationdocument.v1.ReservationDocument.Deleted.v1",
            {"Reservation": "0000000042"},
            "allocation",
            "delete",
            {"Reservation": "0000000042"},
        ),
    ],
)
def test_sap_types_map_to_entity_change_and_keys(
    event_type: str, data: dict[str, object], entity: str, change: str, keys: dict[str, str]
) -> None:
    mapped = classify(parse_structured(json.dumps(structured(type=event_type, data=data)).encode()))
    assert (mapped.entity, mapped.change_type, mapped.record_keys) == (entity, change, (keys,))
    assert mapped.ignored is None
    assert mapped.system_id == "244000000"


@pytest.mark.parametrize(
    "event_type",
    [
        "sap.s4.beh.purchaseorder.v1.PurchaseOrder.Changed.v1",
        "sap.s4.beh.businesspartner.v1.BusinessPartner.Archived.v1",
        "com.example.something",
    ],
)
def test_unknown_types_are_ignored_not_errors(event_type: str) -> None:
    mapped = classify(parse_structured(json.dumps(structured(type=event_type)).encode()))
    assert mapped.entity is None and mapped.change_type is None
    assert mapped.ignored


def test_a_mapped_type_without_its_key_is_an_error_naming_it() -> None:
    event = parse_structured(json.dumps(structured(data={"Customer": "1"})).encode())
    with pytest.raises(CloudEventError) as info:
        classify(event)
    assert info.value.attribute == "data.BusinessPartner"
    with pytest.raises(CloudEventError) as info:
        classify(parse_structured(json.dumps(structured(data=None)).encode()))
    assert info.value.attribute == "data"


def test_system_id_from_source() -> None:
    assert system_id("/default/sap.s4.beh/S4H") == "S4H"
    assert system_id("https://example.com/other") is None

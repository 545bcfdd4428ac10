"""Echoes of the hub's own Salesforce writes are told by the change event's header
(``commitUser`` = the integration user, ``changeOrigin`` naming the hub's client) and by
the fingerprint of what the hub wrote: marked ``echo`` without a read-back and without a
write. A change by the same user through another client, or by another user, is read
back and applied.

The listener runs as in `hub listen` (the rig of test_listener, its own sandbox); the
Salesforce connector of its engine counts the keys it reads back."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from simple_salesforce import Salesforce

from connectors.http import requests_session
from connectors.salesforce import CALL_CLIENT, CALL_OPTIONS_HEADER
from connectors.salesforce_pubsub.settings import settings_from_env
from connectors.salesforce_pubsub.subscriber import OAuthTokenProvider, user_id_from_identity
from hub.events.inbox import InboxEvent, InboxRow, all_events, store_events
from hub.events.processor import ECHO, HubIdentity, origin_client, same_user
from tests.events.test_listener import (
    Rig,
    customers,
    flush_sap,
    rig,  # noqa: F401 - the module's own listener rig
    sap_set_tax_id,
    wait_for,
    writes,
)

HUB_ORIGIN = f"com/salesforce/api/rest/61.0;client={CALL_CLIENT}"
OTHER_USER = "005000000000099AAA"


@pytest.fixture
def read_back(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:  # noqa: F811
    """Hub ids the listener's Salesforce connector reads back by key, while the test runs."""
    connector = rig.listener.engine.connectors["salesforce"]
    original = connector.read_by_keys
    keys: list[str] = []

    def counting(entity: str, hub_ids: Any) -> Any:
        keys.extend(hub_ids)
        return original(entity, hub_ids)

    monkeypatch.setattr(connector, "read_by_keys", counting)
    yield keys


def identity(rg: Rig) -> HubIdentity:
    found = wait_for(rg.listener.salesforce_identity, 10, "the listener logged in")
    assert isinstance(found, HubIdentity)
    return found


def salesforce_rows(rg: Rig, sf_id: str, after: int = 0) -> list[InboxRow]:
    with rg.store.connect() as conn:
        return [
            e for e in all_events(conn, "salesforce") if sf_id in e.record_keys and e.id > after
        ]


def last_row_id(rg: Rig) -> int:
    with rg.store.connect() as conn:
        return max((e.id for e in all_events(conn)), default=0)


def stored(rg: Rig, sf_id: str, user: str, origin: str, values: dict[str, Any]) -> str:
    """An UPDATE event of ``sf_id`` in the inbox as the listener stores one."""
    event_id = f"test-{uuid.uuid4()}"
    event = InboxEvent(
        system="salesforce",
        event_id=event_id,
        event_type="/data/AccountChangeEvent",
        entity="customer",
        change_type="UPDATE",
        record_keys=[sf_id],
        payload={
            "values": values,
            "nulled_fields": [],
            "commit_timestamp": datetime.now(UTC).isoformat(),
            "commit_user": user,
            "change_origin": origin,
        },
        changed_fields=[*values, "LastModifiedDate"],
        channel="/data/AccountChangeEvent",
    )
    with rg.store.begin() as conn:
        assert store_events(conn, [event]) == [event_id]
    rg.listener.wake.set()
    return event_id


def outcome(rg: Rig, event_id: str) -> str | None:
    def done() -> str | None:
        with rg.store.connect() as conn:
            for e in all_events(conn, "salesforce"):
                if e.event_id == event_id:
                    return e.outcome
        return None

    return wait_for(done, 10, f"event {event_id} processed")


def test_the_header_rule_parts() -> None:
    assert origin_client(HUB_ORIGIN) == CALL_CLIENT
    assert origin_client("com/salesforce/api/rest/61.0") == ""
    assert origin_client("com/salesforce/api/bulkapi/61.0; client=other") == "other"
    assert same_user("005000000000001AAA", "005000000000001")
    assert not same_user("005000000000001AAA", "005000000000002AAA")
    assert not same_user("", "")
    assert user_id_from_identity("https://x.example/id/00D000000000001AAA/005000000000001AAA") == (
        "005000000000001AAA"
    )


def test_the_hub_names_its_client_and_knows_its_user(rig: Rig) -> None:  # noqa: F811
    tokens = OAuthTokenProvider(settings_from_env(rig.env))
    try:
        assert tokens.user_id is None
        creds = tokens()
        assert creds.user_id and tokens.user_id == creds.user_id
        assert tokens.client == CALL_CLIENT
        assert tokens._connector.session.headers[CALL_OPTIONS_HEADER] == f"client={CALL_CLIENT}"
    finally:
        tokens.close()


def test_an_echo_of_the_hubs_push_is_recognised_without_a_read_back(
    rig: Rig,  # noqa: F811
    read_back: list[str],
) -> None:
    """SAP changes a tax id; the listener pushes it to Salesforce; the change event of
    that push comes back with the integration user and the hub's client: marked echo,
    never read back, nothing written."""
    me = identity(rig)
    hub_id = customers(rig)[5]
    sf_id = rig.salesforce_id(hub_id)
    start = last_row_id(rig)
    sap_set_tax_id(rig.env, rig.sap_number(hub_id), "DE555444333")
    flush_sap(rig)
    wait_for(
        lambda: (rig.read("salesforce", hub_id) or {}).get("Tax_Id__c") == "DE555444333",
        10,
        "the SAP tax id in Salesforce",
    )
    rig.sandbox.reset_calls()
    rows = wait_for(
        lambda: [r for r in salesforce_rows(rig, sf_id, start) if r.processed_at is not None],
        10,
        "the echo of the push processed",
    )
    [echo] = rows
    assert same_user(echo.payload["commit_user"], me.user_id)
    assert origin_client(echo.payload["change_origin"]) == CALL_CLIENT
    assert "Tax_Id__c" in (echo.changed_fields or [])
    assert echo.outcome == ECHO
    assert hub_id not in read_back  # recognised from the header, not read back
    assert writes(rig, "sap") == 0 and writes(rig, "salesforce") == 0
    # the batch is reported after its events are marked processed (a race seen under load)
    wait_for(
        lambda: any(
            r.system == "salesforce" and hub_id in r.keys and r.echoes for r in rig.reports
        ),
        5,
        "the echo batch reported",
    )


def test_a_change_by_the_integration_user_through_another_client_is_applied(
    rig: Rig,  # noqa: F811
    read_back: list[str],
) -> None:
    """Someone using the integration user's login with another tool (no hub client in
    changeOrigin): read back and applied to SAP."""
    identity(rig)
    hub_id = customers(rig)[4]
    sf_id = rig.salesforce_id(hub_id)
    start = last_row_id(rig)
    connector_settings = settings_from_env(rig.env)
    tokens = OAuthTokenProvider(connector_settings)
    try:
        creds = tokens()
        session = requests_session(rig.env["HUB_CA_BUNDLE"], timeout=10)
        session.headers[CALL_OPTIONS_HEADER] = "client=DataLoader"
        other_tool = Salesforce(
            instance_url=creds.instance_url,
            session_id=creds.access_token,
            version=connector_settings.api_version,
            session=session,
        )
        other_tool.restful(
            f"sobjects/Account/{sf_id}", method="PATCH", json={"Name": "Other Client Name AG"}
        )
    finally:
        tokens.close()
    wait_for(
        lambda: (rig.read("sap", hub_id) or {}).get("CustomerFullName") == "Other Client Name AG",
        10,
        "the change in SAP",
    )
    [row] = wait_for(lambda: salesforce_rows(rig, sf_id, start), 5, "the event stored")
    assert origin_client(row.payload["change_origin"]) == "DataLoader"
    assert row.outcome == "applied"
    assert hub_id in read_back


@pytest.mark.parametrize(
    ("user", "origin", "expected"),
    [
        ("me", HUB_ORIGIN, ECHO),
        (OTHER_USER, HUB_ORIGIN, "applied"),
        ("me", "com/salesforce/api/rest/61.0;client=DataLoader", "applied"),
        ("me", "com/salesforce/api/rest/61.0", "applied"),
    ],
    ids=["hub-user-and-client", "another-user", "another-client", "no-client"],
)
def test_only_the_hub_user_through_the_hub_client_is_an_echo(
    rig: Rig,  # noqa: F811
    read_back: list[str],
    user: str,
    origin: str,
    expected: str,
) -> None:
    """The same event - the values the hub holds for the record - told apart by its header
    only: another user (or the same user through another client) is read back."""
    me = identity(rig)
    hub_id = customers(rig)[0]
    sf_id = rig.salesforce_id(hub_id)
    current = rig.read("salesforce", hub_id) or {}
    event_id = stored(
        rig, sf_id, me.user_id if user == "me" else user, origin, {"Name": current["Name"]}
    )
    assert outcome(rig, event_id) == expected
    assert (hub_id in read_back) is (expected != ECHO)


def test_a_hub_header_with_a_value_the_hub_did_not_write_is_read_back(
    rig: Rig,  # noqa: F811
    read_back: list[str],
) -> None:
    """The header alone is not enough: a changed field the hub does not write (or a value
    other than the one it wrote) falls back to the read-back."""
    me = identity(rig)
    hub_id = customers(rig)[0]
    sf_id = rig.salesforce_id(hub_id)
    other_value = stored(rig, sf_id, me.user_id, HUB_ORIGIN, {"Name": "Not What The Hub Wrote"})
    assert outcome(rig, other_value) == "applied"
    unwritten = stored(rig, sf_id, me.user_id, HUB_ORIGIN, {"Description": "by a trigger"})
    assert outcome(rig, unwritten) == "applied"
    assert hub_id in read_back

"""The Change Data Capture subscriber against the sandbox's Pub/Sub API emulator: gRPC
over TLS with the sandbox CA, the OAuth login of the REST connector, writes made through
simple-salesforce (REST, sObject Collections) and read back as change events.

Each test starts after the stream's current position (the emulator's state says where it
is), writes, and reads until it has what it wrote and the stream is idle again (a
keepalive), so the events of one test never leak into another. The expired replay id
test runs last: it drops every retained event."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from simple_salesforce import Salesforce

from connectors.errors import PermanentError
from connectors.retry import RetryPolicy
from connectors.salesforce import SalesforceConnector, SalesforceSettings
from connectors.salesforce_pubsub.events import ChangeEvent, channel_for
from connectors.salesforce_pubsub.settings import settings_from_env
from connectors.salesforce_pubsub.subscriber import (
    Keepalive,
    OAuthTokenProvider,
    PubSubSubscriber,
    Replay,
    ReplayIdExpired,
    Subscription,
)
from sandbox.runner import SandboxHandle, running_sandbox

FAST = RetryPolicy(max_attempts=6, max_seconds=15, initial_wait=0.05, max_wait=0.5, jitter=0)
ACCOUNTS = channel_for("Account")


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxHandle]:
    folder = tmp_path_factory.mktemp("sfpubsub") / "sb"
    with running_sandbox(folder, seed=5, customers=5, systems=("salesforce",)) as sb:
        if "SALESFORCE_PUBSUB_URL" not in sb.env:
            pytest.skip("this sandbox serves no Pub/Sub API")
        admin(sb, "POST", "/pubsub/settings", {"keepalive_seconds": 0.2})
        yield sb


def admin(sandbox: SandboxHandle, method: str, path: str, body: Any = None) -> Any:
    url = sandbox.admin_url("salesforce") + path
    response = httpx.request(method, url, json=body, verify=sandbox.env["HUB_CA_BUNDLE"])
    response.raise_for_status()
    return response.json()


def settings(sandbox: SandboxHandle, **overrides: Any) -> SalesforceSettings:
    s = settings_from_env(sandbox.env)
    s.retry = FAST
    for name, value in overrides.items():
        setattr(s, name, value)
    return s


@pytest.fixture
def sf(sandbox: SandboxHandle) -> Iterator[Salesforce]:
    """simple-salesforce logged in through the REST connector (the hub's own client)."""
    connector = SalesforceConnector(settings(sandbox), {})
    yield connector._client()
    connector.close()


@pytest.fixture
def client(sandbox: SandboxHandle) -> Iterator[tuple[PubSubSubscriber, OAuthTokenProvider]]:
    s = settings(sandbox)
    tokens = OAuthTokenProvider(s)
    with PubSubSubscriber(s, tokens) as subscriber:
        yield subscriber, tokens
    tokens.close()


def here(sandbox: SandboxHandle) -> Replay:
    """The stream's current position: a subscription from here sees only what follows."""
    state = admin(sandbox, "GET", "/pubsub")
    if not state["events"]:
        return Replay.earliest()
    return Replay.after(bytes.fromhex(state["latest_replay_id"]))


def take(sub: Subscription, want: int, timeout: float = 8.0) -> list[ChangeEvent]:
    """``want`` events, acknowledged one by one as a durable store would, then the next
    keepalive (nothing more is coming)."""
    events: list[ChangeEvent] = []
    deadline = time.monotonic() + timeout
    for item in sub:
        if isinstance(item, ChangeEvent):
            events.append(item)
            sub.ack(item.replay_id)
        elif isinstance(item, Keepalive) and len(events) >= want:
            break
        assert time.monotonic() < deadline, f"only {len(events)} of {want} events arrived"
    return events


def create(sf: Salesforce, record: dict[str, Any]) -> str:
    answer: Any = sf.restful("sobjects/Account", method="POST", json=record)
    return str(answer["id"])


def update(sf: Salesforce, record_id: str, values: dict[str, Any]) -> None:
    sf.restful(f"sobjects/Account/{record_id}", method="PATCH", json=values)


def delete(sf: Salesforce, record_id: str) -> None:
    sf.restful(f"sobjects/Account/{record_id}", method="DELETE")


def account(name: str, **extra: Any) -> dict[str, Any]:
    return {"Name": name, "BillingCity": "Oslo", "Phone": "+47 1234", **extra}


def test_create_update_delete_undelete(
    sandbox: SandboxHandle, sf: Salesforce, client: tuple[PubSubSubscriber, Any]
) -> None:
    subscriber, _ = client
    sub = subscriber.subscribe(ACCOUNTS, here(sandbox))
    record_id = create(sf, account("CDC one"))
    update(sf, record_id, {"Name": "CDC one renamed", "Phone": None, "BillingCity": "Bergen"})
    delete(sf, record_id)
    admin(sandbox, "POST", "/pubsub/undelete", {"object": "Account", "id": record_id})
    events = take(sub, 4)
    sub.close()
    assert [e.change_type for e in events] == ["CREATE", "UPDATE", "DELETE", "UNDELETE"]
    assert all(e.record_ids == (record_id,) and e.entity == "Account" for e in events)
    created, updated, deleted, undeleted = events
    assert created.values["Name"] == "CDC one"
    assert created.flat_values()["BillingCity"] == "Oslo"
    assert {"Name", "BillingAddress.City"} <= set(updated.changed_fields)
    assert "Phone" in updated.nulled_fields
    assert updated.values["Name"] == "CDC one renamed"
    assert updated.values["BillingAddress"] == {"City": "Bergen"}
    assert "Phone" not in updated.values
    assert deleted.values == {}
    assert undeleted.values["Name"] == "CDC one renamed"
    for e in events:
        assert e.commit_timestamp.tzinfo is not None
        assert e.commit_user and e.transaction_key and e.sequence_number >= 1
    assert "/rest/" in created.change_origin
    assert len({e.replay_id for e in events}) == 4 and len({e.event_id for e in events}) == 4


def test_one_event_for_several_records(
    sandbox: SandboxHandle, sf: Salesforce, client: tuple[PubSubSubscriber, Any]
) -> None:
    """sObject Collections: the same change to three records in one commit is one event
    listing the three ids; so is deleting them together."""
    ids = [create(sf, account(f"CDC multi {i}")) for i in range(3)]
    subscriber, _ = client
    sub = subscriber.subscribe(ACCOUNTS, here(sandbox))
    body = {
        "allOrNone": True,
        "records": [
            {"attributes": {"type": "Account"}, "Id": i, "Website": "https://example.com"}
            for i in ids
        ],
    }
    sf.restful("composite/sobjects", method="PATCH", json=body)
    sf.restful(f"composite/sobjects?ids={','.join(ids)}&allOrNone=true", method="DELETE")
    events = take(sub, 2)
    sub.close()
    assert [e.change_type for e in events] == ["UPDATE", "DELETE"]
    assert [sorted(e.record_ids) for e in events] == [sorted(ids), sorted(ids)]
    assert "Website" in events[0].changed_fields
    assert events[0].values["Website"] == "https://example.com"


def test_gap_and_overflow_events_pass_through(
    sandbox: SandboxHandle, sf: Salesforce, client: tuple[PubSubSubscriber, Any]
) -> None:
    record_id = create(sf, account("CDC gap"))
    subscriber, _ = client
    sub = subscriber.subscribe(ACCOUNTS, here(sandbox))
    admin(
        sandbox,
        "POST",
        "/pubsub/events",
        {"object": "Account", "changeType": "GAP_UPDATE", "recordIds": [record_id]},
    )
    admin(sandbox, "POST", "/pubsub/events", {"object": "Account", "changeType": "GAP_OVERFLOW"})
    gap, overflow = take(sub, 2)
    sub.close()
    assert (gap.change_type, gap.is_gap, gap.record_ids) == ("GAP_UPDATE", True, (record_id,))
    assert gap.values == {}
    assert overflow.change_type == "GAP_OVERFLOW" and overflow.is_overflow


def test_flow_control_with_a_small_batch(sandbox: SandboxHandle, sf: Salesforce) -> None:
    """25 separate creates, asked for 4 at a time: all arrive, in order, and no request
    ever asked for more than 4."""
    s = settings(sandbox, pubsub_batch=4)
    tokens = OAuthTokenProvider(s)
    with PubSubSubscriber(s, tokens) as subscriber:
        sub = subscriber.subscribe(ACCOUNTS, here(sandbox))
        records = [
            {"attributes": {"type": "Account"}, **account(f"CDC flow {i:02d}")} for i in range(25)
        ]
        sf.restful("composite/sobjects", method="POST", json={"records": records})
        events = take(sub, 25)
        sub.close()
    tokens.close()
    assert [e.values["Name"] for e in events] == [f"CDC flow {i:02d}" for i in range(25)]
    assert subscriber.requested and max(subscriber.requested) <= 4


def test_token_expiry_mid_stream_is_refreshed_without_loss_or_duplicates(
    sandbox: SandboxHandle,
    sf: Salesforce,
    client: tuple[PubSubSubscriber, OAuthTokenProvider],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    subscriber, tokens = client
    sub = subscriber.subscribe(ACCOUNTS, here(sandbox))
    items = iter(sub)
    first = [create(sf, account(f"CDC token {i}")) for i in range(3)]
    seen: list[ChangeEvent] = []
    while len(seen) < 3:
        item = next(items)
        if isinstance(item, ChangeEvent):
            seen.append(item)
            sub.ack(item.replay_id)
    logins = tokens.logins
    old_token = subscriber.credentials().access_token
    admin(sandbox, "POST", "/faults", {"mode": "token_expiry"})  # every token expires now
    # the REST client logs in again by itself; the stream is ended by the emulator
    rest = SalesforceConnector(settings(sandbox), {})
    second = [create(rest._client(), account(f"CDC token {i}")) for i in range(3, 6)]
    rest.close()
    deadline = time.monotonic() + 8
    while len(seen) < 6 or not isinstance(item, Keepalive):
        item = next(items)
        if isinstance(item, ChangeEvent):
            seen.append(item)
            sub.ack(item.replay_id)
        assert time.monotonic() < deadline
    sub.close()
    assert [e.record_ids[0] for e in seen] == first + second  # nothing lost, nothing twice
    assert sub.token_refreshes == 1 and tokens.logins == logins + 1
    assert sub.subscriptions == 2
    expired, fresh = old_token, subscriber.credentials().access_token
    assert expired != fresh
    assert expired not in caplog.text and fresh not in caplog.text


def test_a_channel_without_change_data_capture_names_the_fix(
    client: tuple[PubSubSubscriber, Any],
) -> None:
    subscriber, _ = client
    with pytest.raises(PermanentError) as caught:
        next(iter(subscriber.subscribe(channel_for("Nothing__c"))))
    text = str(caught.value)
    assert "/data/Nothing__ChangeEvent" in text and "Change Data Capture" in text
    assert subscriber.org in text


def test_an_expired_replay_id_raises_replay_id_expired(
    sandbox: SandboxHandle, sf: Salesforce, client: tuple[PubSubSubscriber, Any]
) -> None:
    """Runs last: drops every retained event."""
    create(sf, account("CDC expiring"))
    start = here(sandbox)
    create(sf, account("CDC expiring 2"))
    admin(sandbox, "POST", "/pubsub/expire", {"older_than_seconds": 0})
    subscriber, _ = client
    with pytest.raises(ReplayIdExpired) as caught:
        next(iter(subscriber.subscribe(ACCOUNTS, start)))
    error = caught.value
    assert error.channel == ACCOUNTS and error.replay_id == start.replay_id
    assert start.replay_id.hex() in str(error) and "poll closes the gap" in str(error)
    assert subscriber.org in str(error)

"""The SAP webhook receiver: authentication, validation, durable-before-202, duplicates,
503 when the store fails, and the CloudEvents webhook validation handshake."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from sqlalchemy import Engine

from hub.events.inbox import IGNORED, all_events
from hub.events.receiver import ReceiverAuth, create_receiver
from hub.store.db import create_store_engine
from hub.store.migrate import upgrade
from sandbox.server import serve_in_thread

SECRET = "a-long-shared-secret"
PASSWORD = "basic-password"
PATH = "/events/sap"
STRUCTURED = {"Content-Type": "application/cloudevents+json"}


@pytest.fixture
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path_factory.mktemp('hub') / 'hub.sqlite'}"
    upgrade(url)
    engine = create_store_engine(url)
    yield engine
    engine.dispose()


@contextmanager
def serving(app: object) -> Iterator[httpx.Client]:
    """The app served by uvicorn on loopback, and an HTTP client for it."""
    with serve_in_thread(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        yield client


@pytest.fixture
def client(engine: Engine) -> Iterator[httpx.Client]:
    auth = ReceiverAuth(secret=SECRET, user="s4", password=PASSWORD)
    with serving(create_receiver(engine, auth, allowed_origins=["s4.example.com"])) as client:
        yield client


def event(event_id: str = "e-1", **overrides: object) -> bytes:
    body: dict[str, object] = {
        "specversion": "1.0",
        "type": "sap.s4.beh.businesspartner.v1.BusinessPartner.Changed.v1",
        "source": "/default/sap.s4.beh/S4H",
        "id": event_id,
        "time": "2024-03-01T09:15:30Z",
        "data": {"BusinessPartner": "1000123"},
    }
    body.update(overrides)
    return json.dumps({k: v for k, v in body.items() if v is not None}).encode()


def secret() -> dict[str, str]:
    return {**STRUCTURED, "X-Hub-Event-Secret": SECRET}


def test_missing_or_wrong_credentials_are_401_with_a_challenge(
    client: httpx.Client, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for headers in (
        STRUCTURED,
        {**STRUCTURED, "X-Hub-Event-Secret": "wrong"},
        {**STRUCTURED, "Authorization": "Basic " + "czQ6d3Jvbmc="},  # s4:wrong
        {**STRUCTURED, "Authorization": "Basic !!!"},
    ):
        resp = client.post(PATH, content=event(), headers=headers)
        assert resp.status_code == 401
        assert resp.headers["www-authenticate"].startswith("Basic realm=")
    with engine.connect() as conn:
        assert all_events(conn) == []
    assert SECRET not in caplog.text and PASSWORD not in caplog.text


def test_secret_header_or_basic_auth_stores_then_answers_202(
    client: httpx.Client, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    resp = client.post(PATH, content=event("e-1"), headers=secret())
    assert resp.status_code == 202
    assert resp.json() == {"accepted": 1, "stored": 1, "duplicates": 0}
    resp = client.post(PATH, content=event("e-2"), headers=STRUCTURED, auth=("s4", PASSWORD))
    assert resp.status_code == 202
    with engine.connect() as conn:
        rows = all_events(conn)
    assert [(r.event_id, r.entity, r.change_type, r.record_keys) for r in rows] == [
        ("e-1", "customer", "update", [{"BusinessPartner": "1000123"}]),
        ("e-2", "customer", "update", [{"BusinessPartner": "1000123"}]),
    ]
    assert rows[0].payload["data"] == {"BusinessPartner": "1000123"}
    assert SECRET not in caplog.text and PASSWORD not in caplog.text


def test_a_redelivered_event_is_202_and_stores_nothing_new(
    client: httpx.Client, engine: Engine
) -> None:
    for _ in range(3):
        assert client.post(PATH, content=event("dup"), headers=secret()).status_code == 202
    resp = client.post(PATH, content=event("dup"), headers=secret())
    assert resp.json() == {"accepted": 1, "stored": 0, "duplicates": 1}
    with engine.connect() as conn:
        assert [r.event_id for r in all_events(conn)] == ["dup"]


def test_binary_mode(client: httpx.Client, engine: Engine) -> None:
    headers = {
        "X-Hub-Event-Secret": SECRET,
        "ce-specversion": "1.0",
        "ce-type": "sap.s4.beh.salescontract.v1.SalesContract.Created.v1",
        "ce-source": "/default/sap.s4.beh/S4H",
        "ce-id": "bin-1",
        "content-type": "application/json",
    }
    resp = client.post(PATH, content=b'{"SalesContract":"40000001"}', headers=headers)
    assert resp.status_code == 202
    with engine.connect() as conn:
        (row,) = all_events(conn)
    assert (row.entity, row.change_type, row.record_keys) == (
        "subscription",
        "create",
        [{"SalesContract": "40000001"}],
    )


def test_bad_events_are_400_naming_the_attribute(client: httpx.Client, engine: Engine) -> None:
    resp = client.post(PATH, content=event(id=None), headers=secret())
    assert resp.status_code == 400
    assert resp.json()["attribute"] == "id"
    resp = client.post(PATH, content=event(data={"Customer": "1"}), headers=secret())
    assert resp.status_code == 400
    assert resp.json()["attribute"] == "data.BusinessPartner"
    resp = client.post(PATH, content=event(time="noon"), headers=secret())
    assert resp.json()["attribute"] == "time"
    with engine.connect() as conn:
        assert all_events(conn) == []


def test_unknown_types_are_stored_as_ignored(client: httpx.Client, engine: Engine) -> None:
    body = event("po-1", type="sap.s4.beh.purchaseorder.v1.PurchaseOrder.Changed.v1")
    assert client.post(PATH, content=body, headers=secret()).status_code == 202
    with engine.connect() as conn:
        (row,) = all_events(conn)
    assert row.outcome == IGNORED and row.processed_at is not None and row.entity is None


def test_a_store_failure_is_503_so_the_sender_retries(client: httpx.Client, engine: Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE event_inbox")
    resp = client.post(PATH, content=event(), headers=secret())
    assert resp.status_code == 503
    assert resp.headers["retry-after"]


def test_webhook_validation_handshake(client: httpx.Client) -> None:
    resp = client.options(
        PATH,
        headers={
            "X-Hub-Event-Secret": SECRET,
            "WebHook-Request-Origin": "s4.example.com",
            "WebHook-Request-Rate": "120",
        },
    )
    assert resp.status_code == 200
    assert resp.headers["webhook-allowed-origin"] == "s4.example.com"
    assert resp.headers["webhook-allowed-rate"] == "120"
    other = client.options(
        PATH, headers={"X-Hub-Event-Secret": SECRET, "WebHook-Request-Origin": "evil.example"}
    )
    assert other.status_code == 403
    assert (
        client.options(PATH, headers={"WebHook-Request-Origin": "s4.example.com"}).status_code
        == 401
    )


def test_the_receiver_never_runs_open(engine: Engine) -> None:
    with pytest.raises(ValueError, match="shared secret or a basic-auth"):
        ReceiverAuth()
    with pytest.raises(ValueError):
        ReceiverAuth(user="only-a-user")
    assert "a-long" not in repr(ReceiverAuth(secret=SECRET))
    with serving(create_receiver(engine, ReceiverAuth(secret=SECRET))) as secret_only:
        resp = secret_only.post(PATH, content=event(), headers=STRUCTURED)
    assert resp.headers["www-authenticate"] == 'X-Hub-Event-Secret realm="hub events"'

"""The Change Data Capture subscriber's pure parts and its protocol handling.

The bitmap decoder is checked against an encoder written here from Salesforce's
description ("Event Deserialization Considerations": bit n of the first ``0x`` string =
top-level field n, ``"<pos>-0x.."`` = the fields of the compound field at ``pos``), by
round trips over random field sets. Payloads are encoded here with fastavro in the shape
of a real ``AccountChangeEvent`` schema. The subscriber is driven against a small gRPC
server in this file (TLS with a private CA, as the sandbox and enterprises serve it) that
counts requested events, refuses tokens and replay ids on demand: flow control, token
expiry mid-stream, an expired replay id and transient failures are each proven here;
``test_salesforce_pubsub_sandbox.py`` does the same against the sandbox's emulator."""

from __future__ import annotations

import io
import logging
import threading
import uuid
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastavro
import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.errors import AuthError, PermanentError, SystemUnavailableError
from connectors.retry import RetryPolicy
from connectors.salesforce import SalesforceSettings
from connectors.salesforce_pubsub import pubsub_api_pb2 as pb2
from connectors.salesforce_pubsub import pubsub_api_pb2_grpc as pb2_grpc
from connectors.salesforce_pubsub.events import (
    ChangeEvent,
    EventDecodeError,
    SchemaCache,
    channel_for,
    channels_for,
    decode_bitmap,
    decode_payload,
    flatten_compound,
    replay_id_bytes,
    replay_id_text,
    to_change_event,
)
from connectors.salesforce_pubsub.settings import settings_from_env
from connectors.salesforce_pubsub.subscriber import (
    Credentials,
    Keepalive,
    PubSubSubscriber,
    Replay,
    ReplayIdExpired,
    org_id_from_identity,
)
from sandbox.tls import ensure_tls

FAST = RetryPolicy(max_attempts=4, max_seconds=10, initial_wait=0.01, max_wait=0.05, jitter=0)
ORG = "00D000000000001EAA"


# -- a schema in Salesforce's shape ----------------------------------------------------------
def _optional(avro: Any) -> list[Any]:
    return ["null", avro]


ADDRESS: dict[str, Any] = {
    "type": "record",
    "name": "Address",
    "namespace": "com.sforce.eventbus",
    "fields": [
        {"name": part, "type": ["null", "string"], "default": None}
        for part in ("Street", "City", "State", "PostalCode", "Country", "StateCode", "CountryCode")
    ]
    + [
        {"name": "Latitude", "type": ["null", "double"], "default": None},
        {"name": "Longitude", "type": ["null", "double"], "default": None},
        {"name": "GeocodeAccuracy", "type": ["null", "string"], "default": None},
    ],
}
HEADER = {
    "type": "record",
    "name": "ChangeEventHeader",
    "namespace": "com.salesforce.eventbus",
    "fields": [
        {"name": "entityName", "type": "string"},
        {"name": "recordIds", "type": {"type": "array", "items": "string"}},
        {
            "name": "changeType",
            "type": {
                "type": "enum",
                "name": "ChangeType",
                "symbols": [
                    "CREATE",
                    "UPDATE",
                    "DELETE",
                    "UNDELETE",
                    "GAP_CREATE",
                    "GAP_UPDATE",
                    "GAP_DELETE",
                    "GAP_UNDELETE",
                    "GAP_OVERFLOW",
                ],
            },
        },
        {"name": "changeOrigin", "type": "string"},
        {"name": "transactionKey", "type": "string"},
        {"name": "sequenceNumber", "type": "int"},
        {"name": "commitTimestamp", "type": "long"},
        {"name": "commitNumber", "type": "long"},
        {"name": "commitUser", "type": "string"},
        {"name": "nulledFields", "type": {"type": "array", "items": "string"}},
        {"name": "diffFields", "type": {"type": "array", "items": "string"}},
        {"name": "changedFields", "type": {"type": "array", "items": "string"}},
    ],
}
SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "AccountChangeEvent",
    "namespace": "com.sforce.eventbus",
    "fields": [
        {"name": "ChangeEventHeader", "type": HEADER, "doc": "Data:Header"},
        {"name": "Name", "type": _optional("string"), "default": None},
        {"name": "Type", "type": _optional("string"), "default": None},
        {"name": "BillingAddress", "type": _optional(ADDRESS), "default": None},
        # a second compound of the same type names the type defined above
        {
            "name": "ShippingAddress",
            "type": _optional("com.sforce.eventbus.Address"),
            "default": None,
        },
        {"name": "AnnualRevenue", "type": _optional("double"), "default": None},
        {"name": "Hub_Id__c", "type": _optional("string"), "default": None},
        {
            "name": "LastModifiedDate",
            "type": _optional({"type": "long", "logicalType": "timestamp-millis"}),
            "default": None,
        },
        {"name": "CurrencyIsoCode", "type": _optional("string"), "default": None},
    ],
}
PARSED = fastavro.parse_schema(SCHEMA)
TOP = [f["name"] for f in SCHEMA["fields"]]
COMPOUND = {3: [f["name"] for f in ADDRESS["fields"]], 4: [f["name"] for f in ADDRESS["fields"]]}


def encode_bitmap(top: set[int], nested: dict[int, set[int]]) -> list[str]:
    """Salesforce's bitmap list from field positions (written from the documentation)."""
    out = []
    if top:
        out.append("0x" + format(sum(1 << p for p in top), "X"))
    for pos in sorted(nested):
        if nested[pos]:
            out.append(f"{pos}-0x" + format(sum(1 << p for p in nested[pos]), "X"))
    return out


def expected_names(top: set[int], nested: dict[int, set[int]]) -> tuple[str, ...]:
    names = [TOP[p] for p in sorted(top)]
    for pos in sorted(nested):
        names += [f"{TOP[pos]}.{COMPOUND[pos][p]}" for p in sorted(nested[pos])]
    return tuple(names)


# -- bitmaps ---------------------------------------------------------------------------------
@given(
    top=st.sets(st.integers(0, len(TOP) - 1)),
    nested=st.dictionaries(
        st.sampled_from(sorted(COMPOUND)), st.sets(st.integers(0, len(ADDRESS["fields"]) - 1))
    ),
)
def test_bitmap_round_trip(top: set[int], nested: dict[int, set[int]]) -> None:
    assert decode_bitmap(SCHEMA, encode_bitmap(top, nested)) == expected_names(top, nested)


@given(positions=st.sets(st.integers(0, 199), min_size=1))
def test_bitmap_over_many_fields(positions: set[int]) -> None:
    """Objects with hundreds of fields: the bitmap is one long hex number, bit 0 = field 0."""
    wide = {"fields": [{"name": f"F{i}__c", "type": "string"} for i in range(200)]}
    bitmap = ["0x" + format(sum(1 << p for p in positions), "x")]  # lower case as well
    assert decode_bitmap(wide, bitmap) == tuple(f"F{p}__c" for p in sorted(positions))


def test_bitmap_examples() -> None:
    # 0x650004E0: bits 5, 6, 7, 10, 24, 26, 29, 30 (the example in Salesforce's guide)
    wide = {"fields": [{"name": f"f{i}", "type": "string"} for i in range(31)]}
    assert decode_bitmap(wide, ["0x650004E0"]) == tuple(
        f"f{i}" for i in (5, 6, 7, 10, 24, 26, 29, 30)
    )
    assert decode_bitmap(SCHEMA, ["0x02", "3-0x02"]) == ("Name", "BillingAddress.City")
    assert decode_bitmap(SCHEMA, ["4-0x01"]) == ("ShippingAddress.Street",)
    assert decode_bitmap(SCHEMA, []) == ()


def test_bitmap_that_does_not_fit_the_schema() -> None:
    with pytest.raises(EventDecodeError, match="position 40"):
        decode_bitmap(SCHEMA, ["0x" + format(1 << 40, "X")])
    with pytest.raises(EventDecodeError, match="not a compound field"):
        decode_bitmap(SCHEMA, ["1-0x01"])
    with pytest.raises(EventDecodeError, match="not hexadecimal"):
        decode_bitmap(SCHEMA, ["0xZZ"])


# -- channels and settings -------------------------------------------------------------------
def test_channel_names() -> None:
    assert channel_for("Account") == "/data/AccountChangeEvent"
    assert channel_for("Subscription__c") == "/data/Subscription__ChangeEvent"
    assert channel_for("ns__Thing__c") == "/data/ns__Thing__ChangeEvent"
    assert channels_for(["Account", "Contact", "Account"]) == [
        "/data/AccountChangeEvent",
        "/data/ContactChangeEvent",
    ]
    with pytest.raises(ValueError):
        channel_for("")


BASE_ENV = {"SALESFORCE_LOGIN_URL": "https://login.example.com", "SALESFORCE_CLIENT_ID": "x"}


def test_settings_defaults_and_values() -> None:
    settings = settings_from_env(BASE_ENV)
    assert settings.pubsub_url == "api.pubsub.salesforce.com:7443"
    assert settings.pubsub_batch == 100
    settings = settings_from_env(
        {**BASE_ENV, "SALESFORCE_PUBSUB_URL": "localhost:7443", "SALESFORCE_PUBSUB_BATCH": "25"}
    )
    assert (settings.pubsub_url, settings.pubsub_batch) == ("localhost:7443", 25)
    assert (
        settings_from_env({**BASE_ENV, "SALESFORCE_PUBSUB_URL": "https://h:1/"}).pubsub_url == "h:1"
    )


@pytest.mark.parametrize("raw", ["101", "0", "-5", "ten", "1.5"])
def test_a_batch_above_100_or_not_a_count_is_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="SALESFORCE_PUBSUB_BATCH"):
        settings_from_env({**BASE_ENV, "SALESFORCE_PUBSUB_BATCH": raw})
    with pytest.raises(ValueError, match="SALESFORCE_PUBSUB_BATCH"):
        SalesforceSettings(login_url="https://l", client_id="x", pubsub_batch=101)


@pytest.mark.parametrize("raw", ["localhost", "host:port", "https://h:1/path"])
def test_a_pubsub_url_without_port_is_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="SALESFORCE_PUBSUB_URL"):
        settings_from_env({**BASE_ENV, "SALESFORCE_PUBSUB_URL": raw})


def test_org_id_from_the_token_identity() -> None:
    assert org_id_from_identity(f"https://login.example.com/id/{ORG}/005000000000001") == ORG
    with pytest.raises(AuthError, match="org id"):
        org_id_from_identity("https://login.example.com/nothing")


# -- payloads --------------------------------------------------------------------------------
def header(change_type: str, ids: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "entityName": "Account",
        "recordIds": ids,
        "changeType": change_type,
        "changeOrigin": "com/salesforce/api/rest/61.0;client=hub",
        "transactionKey": "tx-1",
        "sequenceNumber": 1,
        "commitTimestamp": 1_765_000_000_123,
        "commitNumber": 42,
        "commitUser": "005000000000001AAA",
        "nulledFields": [],
        "diffFields": [],
        "changedFields": [],
        **extra,
    }


def encode(record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, PARSED, record)
    return out.getvalue()


def decode(payload: bytes, replay: bytes = b"\x00\x01", event_id: str = "e-1") -> ChangeEvent:
    return to_change_event(
        "/data/AccountChangeEvent", replay, event_id, "s1", SCHEMA, decode_payload(PARSED, payload)
    )


def test_update_event_decodes_to_a_change_event() -> None:
    payload = encode(
        {
            "ChangeEventHeader": header(
                "UPDATE",
                ["001000000000001AAA", "001000000000002AAA"],
                changedFields=encode_bitmap({1, 7}, {3: {1}}),
                nulledFields=encode_bitmap({5}, {}),
            ),
            "Name": "Acme",
            "BillingAddress": {"City": "Oslo"},
            "LastModifiedDate": datetime(2025, 12, 6, 12, 0, tzinfo=UTC),
        }
    )
    event = decode(payload)
    assert event.change_type == "UPDATE" and event.entity == "Account"
    assert event.record_ids == ("001000000000001AAA", "001000000000002AAA")
    assert event.changed_fields == ("Name", "LastModifiedDate", "BillingAddress.City")
    assert event.nulled_fields == ("AnnualRevenue",)
    assert event.values == {
        "Name": "Acme",
        "BillingAddress": {"City": "Oslo"},
        "LastModifiedDate": datetime(2025, 12, 6, 12, 0, tzinfo=UTC),
    }
    assert event.flat_values()["BillingCity"] == "Oslo"
    assert event.commit_timestamp == datetime.fromtimestamp(1_765_000_000.123, tz=UTC)
    assert event.commit_timestamp.tzinfo is UTC
    assert event.commit_user == "005000000000001AAA"
    assert event.change_origin.endswith("client=hub")
    assert (event.transaction_key, event.sequence_number) == ("tx-1", 1)
    assert replay_id_bytes(replay_id_text(event.replay_id)) == event.replay_id


@pytest.mark.parametrize(
    "change_type", ["CREATE", "DELETE", "UNDELETE", "GAP_UPDATE", "GAP_OVERFLOW"]
)
def test_every_change_type_passes_through(change_type: str) -> None:
    event = decode(encode({"ChangeEventHeader": header(change_type, ["001000000000009AAA"])}))
    assert event.change_type == change_type
    assert event.is_gap == change_type.startswith("GAP_")
    assert event.is_overflow == (change_type == "GAP_OVERFLOW")
    assert event.values == {}


def test_a_payload_of_another_schema_is_an_error() -> None:
    with pytest.raises(EventDecodeError):
        decode_payload(PARSED, b"\x02\x00")


def test_flatten_compound_names() -> None:
    assert flatten_compound(
        {"ShippingAddress": {"Street": "s"}, "Name": {"LastName": "Doe"}, "Phone": "1"}
    ) == {"ShippingStreet": "s", "LastName": "Doe", "Phone": "1"}


def test_schemas_are_fetched_once_per_id() -> None:
    import json

    asked: list[str] = []

    def fetch(schema_id: str) -> str:
        asked.append(schema_id)
        return json.dumps(SCHEMA)

    cache = SchemaCache(fetch)
    for _ in range(3):
        cache.get("a")
    cache.get("b")
    assert asked == ["a", "b"]


# -- the subscriber against a gRPC server ----------------------------------------------------
def replay(n: int) -> bytes:
    """Opaque, non-contiguous replay ids (as Salesforce's are)."""
    return (1000 + 7 * n).to_bytes(8, "big")


@dataclass
class Bus:
    """What the test server serves and what it saw."""

    events: list[pb2.ConsumerEvent] = field(default_factory=list)
    tokens: set[str] = field(default_factory=lambda: {"token-1"})
    #: refuse the token after delivering this many events (once)
    expire_token_after: int | None = None
    #: fail the next N Subscribe calls with UNAVAILABLE
    unavailable: int = 0
    #: events per response at most
    per_response: int = 30
    requested: list[int] = field(default_factory=list)
    outstanding_max: int = 0
    starts: list[tuple[int, bytes]] = field(default_factory=list)
    metadata: list[dict[str, str]] = field(default_factory=list)
    schema_calls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def publish(self, n: int, change_type: str = "UPDATE") -> None:
        for _ in range(n):
            i = len(self.events)
            payload = encode(
                {
                    "ChangeEventHeader": header(change_type, [f"001{i:012d}AAA"]),
                    "Name": f"Account {i}",
                }
            )
            event = pb2.ProducerEvent(id=str(uuid.uuid4()), schema_id="s1", payload=payload)
            self.events.append(pb2.ConsumerEvent(event=event, replay_id=replay(i)))


class Servicer(pb2_grpc.PubSubServicer):
    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    def _auth(self, context: grpc.ServicerContext) -> None:
        md = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
        self.bus.metadata.append(md)
        if md.get("accesstoken") not in self.bus.tokens or md.get("tenantid") != ORG:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "authentication exception occurred")

    def GetSchema(self, request: Any, context: grpc.ServicerContext) -> Any:
        import json

        self._auth(context)
        self.bus.schema_calls += 1
        return pb2.SchemaInfo(schema_id=request.schema_id, schema_json=json.dumps(SCHEMA))

    def Subscribe(self, request_iterator: Iterator[Any], context: grpc.ServicerContext) -> Any:
        bus = self.bus
        self._auth(context)
        if bus.unavailable:
            bus.unavailable -= 1
            context.abort(grpc.StatusCode.UNAVAILABLE, "service unavailable")
        first = next(request_iterator)
        bus.starts.append((first.replay_preset, first.replay_id))
        ids = [e.replay_id for e in bus.events]
        if first.replay_preset == pb2.CUSTOM:
            if first.replay_id not in ids:
                context.set_trailing_metadata(
                    (
                        (
                            "error-code",
                            "sfdc.platform.eventbus.grpc.subscription.fetch.replayid.corrupted",
                        ),
                    )
                )
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "Replay ID validation failed.")
            position = ids.index(first.replay_id) + 1
        elif first.replay_preset == pb2.EARLIEST:
            position = 0
        else:
            position = len(ids)
        pending = self._request(first.num_requested, 0)
        while True:
            if position < len(bus.events) and pending > 0:
                n = min(pending, bus.per_response, len(bus.events) - position)
                batch = bus.events[position : position + n]
                position += n
                pending -= n
                yield pb2.FetchResponse(
                    events=batch,
                    latest_replay_id=batch[-1].replay_id,
                    pending_num_requested=pending,
                )
                continue
            if position >= len(bus.events):
                latest = bus.events[-1].replay_id if bus.events else b""
                yield pb2.FetchResponse(latest_replay_id=latest, pending_num_requested=pending)
            try:
                more = next(request_iterator)
            except StopIteration:
                return
            # the client asks again only after taking what it was sent: expire the token
            # here, so the events before are delivered, not lost in flight
            if bus.expire_token_after is not None and position >= bus.expire_token_after:
                bus.expire_token_after = None
                bus.tokens.clear()
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "authentication exception occurred")
            pending = self._request(more.num_requested, pending)

    def _request(self, n: int, pending: int) -> int:
        bus = self.bus
        bus.requested.append(n)
        bus.outstanding_max = max(bus.outstanding_max, pending + n)
        return pending + n


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return ensure_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def bus(tls: Any) -> Iterator[tuple[Bus, str]]:
    state = Bus()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb2_grpc.add_PubSubServicer_to_server(Servicer(state), server)
    creds = grpc.ssl_server_credentials(
        [(Path(tls.keyfile).read_bytes(), Path(tls.certfile).read_bytes())]
    )
    port = server.add_secure_port("localhost:0", creds)
    server.start()
    yield state, f"localhost:{port}"
    server.stop(grace=None)


class Tokens:
    """A token provider that logs in again on ``refresh`` with the next token."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.issued = 1

    def __call__(self, refresh: bool = False) -> Credentials:
        if refresh:
            self.issued += 1
            self.bus.tokens.add(f"token-{self.issued}")
        return Credentials(f"token-{self.issued}", "https://org.example.com", ORG)


def subscriber(bus: Bus, url: str, tls: Any, batch: int = 100) -> tuple[PubSubSubscriber, Tokens]:
    settings = SalesforceSettings(
        login_url="https://login.example.com",
        client_id="x",
        ca_bundle=str(tls.ca_bundle),
        pubsub_url=url,
        pubsub_batch=batch,
        retry=FAST,
    )
    tokens = Tokens(bus)
    return PubSubSubscriber(settings, tokens), tokens


def drain(sub: Any, want: int, *, ack: bool = True) -> tuple[list[ChangeEvent], list[Keepalive]]:
    """Events until ``want`` have arrived and a keepalive says the stream is idle."""
    events: list[ChangeEvent] = []
    keepalives: list[Keepalive] = []
    for item in sub:
        if isinstance(item, ChangeEvent):
            events.append(item)
            if ack:
                sub.ack(item.replay_id)
        else:
            keepalives.append(item)
            if len(events) >= want:
                break
    sub.close()
    return events, keepalives


def test_flow_control_and_keepalive(bus: tuple[Bus, str], tls: Any) -> None:
    state, url = bus
    state.publish(250)
    client, _ = subscriber(state, url, tls)
    with client:
        sub = client.subscribe("/data/AccountChangeEvent", Replay.earliest())
        events, keepalives = drain(sub, 250)
    assert [e.replay_id for e in events] == [replay(i) for i in range(250)]
    assert all(0 < n <= 100 for n in state.requested), state.requested
    assert state.outstanding_max <= 100
    assert len(state.requested) > 3  # asked again as the pending count fell
    assert keepalives[-1].latest_replay_id == replay(249)
    assert state.schema_calls == 1  # one schema id, fetched once
    assert {"accesstoken", "instanceurl", "tenantid"} <= set(state.metadata[0])


def test_a_small_batch_is_honoured(bus: tuple[Bus, str], tls: Any) -> None:
    state, url = bus
    state.publish(40)
    client, _ = subscriber(state, url, tls, batch=10)
    with client:
        events, _ = drain(client.subscribe("/data/AccountChangeEvent", Replay.earliest()), 40)
    assert len(events) == 40
    assert max(state.requested) <= 10 and state.outstanding_max <= 10


def test_resume_after_a_stored_replay_id(bus: tuple[Bus, str], tls: Any) -> None:
    state, url = bus
    state.publish(20)
    client, _ = subscriber(state, url, tls)
    with client:
        sub = client.subscribe("/data/AccountChangeEvent", Replay.after(replay(11)))
        events, _ = drain(sub, 8)
    assert [e.replay_id for e in events] == [replay(i) for i in range(12, 20)]
    assert state.starts == [(pb2.CUSTOM, replay(11))]


def test_token_expiry_mid_stream_resumes_from_the_acknowledged_id(
    bus: tuple[Bus, str], tls: Any, caplog: pytest.LogCaptureFixture
) -> None:
    state, url = bus
    state.publish(120)
    state.expire_token_after = 60
    client, tokens = subscriber(state, url, tls)
    caplog.set_level(logging.DEBUG)
    with client:
        sub = client.subscribe("/data/AccountChangeEvent", Replay.earliest())
        events, _ = drain(sub, 120)
    ids = [e.replay_id for e in events]
    assert ids == [replay(i) for i in range(120)]  # nothing lost, nothing twice
    assert sub.token_refreshes == 1 and tokens.issued == 2
    (preset, _), (resumed, after) = state.starts
    assert (preset, resumed) == (pb2.EARLIEST, pb2.CUSTOM)
    assert after in ids[59:119]  # the last acknowledged event's id
    assert "token-1" not in caplog.text and "token-2" not in caplog.text


def test_unacknowledged_events_are_delivered_again(bus: tuple[Bus, str], tls: Any) -> None:
    """The caller stored (acknowledged) only the first 30: after the reconnect it gets the
    rest again - at least once, never lost."""
    state, url = bus
    state.publish(60)
    state.expire_token_after = 60
    client, _ = subscriber(state, url, tls)
    with client:
        sub = client.subscribe("/data/AccountChangeEvent", Replay.earliest())
        seen: list[bytes] = []
        for item in sub:
            if isinstance(item, ChangeEvent):
                seen.append(item.replay_id)
                if len(seen) <= 30:
                    sub.ack(item.replay_id)
            elif len(seen) >= 90:
                break
        sub.close()
    assert seen[:60] == [replay(i) for i in range(60)]
    assert seen[60:] == [replay(i) for i in range(30, 60)]


def test_a_token_refused_again_after_refresh_is_an_auth_error(
    bus: tuple[Bus, str], tls: Any
) -> None:
    state, url = bus
    client, tokens = subscriber(state, url, tls)
    state.tokens.clear()
    tokens.bus = Bus()  # refreshed tokens go nowhere: the server never accepts them
    with client, pytest.raises(AuthError, match="/data/AccountChangeEvent") as caught:
        list(client.subscribe("/data/AccountChangeEvent"))
    assert "token-" not in str(caught.value)


def test_an_expired_replay_id_raises_replay_id_expired(bus: tuple[Bus, str], tls: Any) -> None:
    state, url = bus
    state.publish(5)
    client, _ = subscriber(state, url, tls)
    gone = (999).to_bytes(8, "big")
    with client, pytest.raises(ReplayIdExpired) as caught:
        list(client.subscribe("/data/AccountChangeEvent", Replay.after(gone)))
    error = caught.value
    assert isinstance(error, PermanentError)
    assert error.channel == "/data/AccountChangeEvent" and error.replay_id == gone
    text = str(error)
    assert gone.hex() in text and ORG in text and "poll closes the gap" in text
    assert "replayid.corrupted" in text


def test_unavailable_is_retried_with_backoff(bus: tuple[Bus, str], tls: Any) -> None:
    state, url = bus
    state.publish(10)
    state.unavailable = 2
    client, _ = subscriber(state, url, tls)
    with client:
        sub = client.subscribe("/data/AccountChangeEvent", Replay.earliest())
        events, _ = drain(sub, 10)
    assert len(events) == 10 and sub.subscriptions == 3


def test_unavailable_beyond_the_retry_budget_names_channel_and_fix(
    bus: tuple[Bus, str], tls: Any
) -> None:
    state, url = bus
    state.unavailable = 10
    client, _ = subscriber(state, url, tls)
    with client, pytest.raises(SystemUnavailableError) as caught:
        list(client.subscribe("/data/AccountChangeEvent"))
    assert "/data/AccountChangeEvent" in str(caught.value)
    assert "SALESFORCE_PUBSUB_URL" in str(caught.value)


def test_an_untrusted_server_is_not_trusted(
    bus: tuple[Bus, str], tls: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the CA bundle the private CA's certificate does not verify: no event, and
    the error says how to trust a private CA."""
    state, url = bus
    state.publish(1)
    settings = SalesforceSettings(login_url="https://l", client_id="x", pubsub_url=url, retry=FAST)
    monkeypatch.delenv("HUB_CA_BUNDLE", raising=False)
    with (
        PubSubSubscriber(settings, Tokens(state)) as client,
        pytest.raises(PermanentError) as caught,
    ):
        list(client.subscribe("/data/AccountChangeEvent", Replay.earliest()))
    assert "HUB_CA_BUNDLE" in str(caught.value)


def test_an_event_that_does_not_decode_stops_with_its_ids(bus: tuple[Bus, str], tls: Any) -> None:
    state, url = bus
    state.publish(2)
    broken = pb2.ProducerEvent(id="bad-event", schema_id="s1", payload=b"\x02\x00")
    state.events.append(pb2.ConsumerEvent(event=broken, replay_id=replay(2)))
    client, _ = subscriber(state, url, tls)
    seen: list[bytes] = []
    with client, pytest.raises(PermanentError) as caught:
        sub = client.subscribe("/data/AccountChangeEvent", Replay.earliest())
        for item in sub:
            if isinstance(item, ChangeEvent):
                seen.append(item.replay_id)
                sub.ack(item.replay_id)
    assert seen == [replay(0), replay(1)]
    text = str(caught.value)
    assert "bad-event" in text and replay(2).hex() in text and "/data/AccountChangeEvent" in text

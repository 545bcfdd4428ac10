"""The Pub/Sub API emulator through the generated client only (``PubSubStub`` over TLS
trusting the sandbox CA, tokens from the emulator's OAuth flow): change events for REST,
sObject Collections and Bulk API 2.0 writes, Avro payloads and bitmaps, flow control,
keepalives, replay, retention, authentication and injected gap/overflow events."""

from __future__ import annotations

import io
import itertools
import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import fastavro
import grpc
import httpx
import pytest

from connectors.salesforce_pubsub import pubsub_api_pb2 as pb2
from connectors.salesforce_pubsub import pubsub_api_pb2_grpc as pb2_grpc
from sandbox.faults import FaultState
from sandbox.salesforce import SalesforceSettings, create_app
from sandbox.salesforce.pubsub import serve_pubsub
from sandbox.salesforce.pubsub_schema import channel_schema, decode_bitmap, encode_bitmap
from sandbox.salesforce.schema import DEFAULT_SCHEMA
from sandbox.server import TLSFiles, serve_in_thread
from sandbox.store import DocumentStore
from tests.sandbox.salesforce.conftest import Org, bulk2, rest, sobject

pytestmark = pytest.mark.timeout(30)

ACCOUNTS = "/data/AccountChangeEvent"


class Subscription:
    """One Subscribe stream: requests are fed from a queue, responses (or the final
    error) read by a thread into another."""

    def __init__(self, stub: pb2_grpc.PubSubStub, metadata: Any, first: Any) -> None:
        self.requests: queue.Queue[Any] = queue.Queue()
        self.requests.put(first)
        self.call = stub.Subscribe(iter(self.requests.get, None), metadata=metadata)
        self.responses: queue.Queue[Any] = queue.Queue()
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        try:
            for response in self.call:
                self.responses.put(response)
        except grpc.RpcError as exc:
            self.responses.put(exc)
        self.responses.put(None)

    def request(self, n: int) -> None:
        self.requests.put(pb2.FetchRequest(num_requested=n))

    def next(self, timeout: float = 5) -> Any:
        item = self.responses.get(timeout=timeout)
        if isinstance(item, grpc.RpcError):
            raise item
        return item

    def events(self, count: int, timeout: float = 5) -> list[Any]:
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(out) < count:
            response = self.next(max(0.01, deadline - time.monotonic()))
            assert response is not None, "stream ended"
            out.extend(response.events)
        assert len(out) == count, f"got {len(out)} events, expected {count}"
        return out

    def error(self, timeout: float = 5) -> grpc.RpcError:
        deadline = time.monotonic() + timeout
        while True:
            item = self.responses.get(timeout=max(0.01, deadline - time.monotonic()))
            if isinstance(item, grpc.RpcError):
                return item
            assert item is not None, "stream ended without an error"

    def close(self) -> None:
        self.requests.put(None)
        self.call.cancel()


@dataclass
class PubSubOrg:
    org: Org
    channel: grpc.Channel
    stub: pb2_grpc.PubSubStub
    schemas: dict[str, Any] = field(default_factory=dict)
    subscriptions: list[Subscription] = field(default_factory=list)

    def metadata(self, token: str | None = None) -> tuple[tuple[str, str], ...]:
        return (
            ("accesstoken", token or self.org.token()),
            ("instanceurl", self.org.base),
            ("tenantid", self.org.settings.org_id),
        )

    def subscribe(
        self,
        topic: str = ACCOUNTS,
        n: int = 100,
        preset: Any = pb2.ReplayPreset.LATEST,
        replay_id: bytes = b"",
        token: str | None = None,
    ) -> Subscription:
        first = pb2.FetchRequest(
            topic_name=topic, replay_preset=preset, replay_id=replay_id, num_requested=n
        )
        sub = Subscription(self.stub, self.metadata(token), first)
        self.subscriptions.append(sub)
        return sub

    def settle(self) -> None:
        """Let a new subscription reach the server before writing (LATEST)."""
        time.sleep(0.3)

    def schema(self, schema_id: str) -> Any:
        if schema_id not in self.schemas:
            info = self.stub.GetSchema(
                pb2.SchemaRequest(schema_id=schema_id), metadata=self.metadata()
            )
            self.schemas[schema_id] = json.loads(info.schema_json)
        return self.schemas[schema_id]

    def decode(self, event: Any) -> dict[str, Any]:
        schema = self.schema(event.event.schema_id)
        parsed = fastavro.parse_schema(schema)
        record = cast(
            dict[str, Any],
            fastavro.schemaless_reader(io.BytesIO(event.event.payload), parsed, None),
        )
        header = record["ChangeEventHeader"]
        for name in ("changedFields", "nulledFields", "diffFields"):
            header[name + "Names"] = set(decode_bitmap(schema, header[name]))
        return record

    def admin(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.org.http() as client:
            response = client.post(f"/__sandbox/pubsub/{path}", json=body)
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data


def _values(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "ChangeEventHeader" and v is not None}


@pytest.fixture
def pubsub_factory(tmp_path: Path, tls_files: TLSFiles) -> Iterator[Callable[..., PubSubOrg]]:
    stack: list[Any] = []

    def make(store_name: str = "sf.sqlite", **settings: Any) -> PubSubOrg:
        store = DocumentStore(tmp_path / store_name)
        faults = FaultState(seed=3)
        config = SalesforceSettings(**{"pubsub_keepalive_seconds": 0.5, **settings})
        app = create_app(store, faults, config)
        http = serve_in_thread(app, tls=tls_files)
        base = http.__enter__()
        grpc_server = serve_pubsub(app, tls_files)
        server = grpc_server.__enter__()
        channel = grpc.secure_channel(
            server.target, grpc.ssl_channel_credentials(tls_files.ca_bundle.read_bytes())
        )
        org = Org(base, store, faults, config, tls_files.ca_bundle)
        made = PubSubOrg(org, channel, pb2_grpc.PubSubStub(channel))
        stack.append((made, http, grpc_server, store))
        return made

    yield make
    for made, http, grpc_server, store in reversed(stack):
        for sub in made.subscriptions:
            sub.close()
        made.channel.close()
        made.org.close()
        grpc_server.__exit__(None, None, None)
        http.__exit__(None, None, None)
        store.close()


@pytest.fixture
def ps(pubsub_factory: Callable[..., PubSubOrg]) -> PubSubOrg:
    return pubsub_factory()


def _trailer(exc: grpc.RpcError, key: str = "error-code") -> str:
    meta = dict(exc.trailing_metadata() or ())
    return str(meta.get(key, ""))


# -- topics and schemas --------------------------------------------------------------------
def test_get_topic_and_schema(ps: PubSubOrg) -> None:
    md = ps.metadata()
    info = ps.stub.GetTopic(pb2.TopicRequest(topic_name=ACCOUNTS), metadata=md)
    assert info.topic_name == ACCOUNTS and info.can_subscribe and not info.can_publish
    assert info.tenant_guid == ps.org.settings.org_id and info.schema_id
    schema = ps.schema(info.schema_id)
    assert schema["name"] == "AccountChangeEvent" and schema["namespace"] == "com.sforce.eventbus"
    names = [f["name"] for f in schema["fields"]]
    assert names[0] == "ChangeEventHeader" and "BillingAddress" in names and "Id" not in names
    custom = ps.stub.GetTopic(
        pb2.TopicRequest(topic_name="/data/Subscription__ChangeEvent"), metadata=md
    )
    assert ps.schema(custom.schema_id)["name"] == "Subscription__ChangeEvent"
    assert ps.stub.GetTopic(pb2.TopicRequest(topic_name="/data/ChangeEvents"), metadata=md)
    for bad in ("/data/NopeChangeEvent", "/data/Subscription__cChangeEvent", "/event/X__e"):
        with pytest.raises(grpc.RpcError) as caught:
            ps.stub.GetTopic(pb2.TopicRequest(topic_name=bad), metadata=md)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert "topic" in _trailer(caught.value) and bad in str(caught.value.details())
    with pytest.raises(grpc.RpcError) as caught:
        ps.stub.GetSchema(pb2.SchemaRequest(schema_id="nope"), metadata=md)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    sub = ps.subscribe("/data/NopeChangeEvent")
    assert sub.error().code() == grpc.StatusCode.NOT_FOUND


def test_bitmaps_use_the_schema_positions() -> None:
    channel = channel_schema(DEFAULT_SCHEMA.objects["account"])
    name, city = channel.position("Name"), channel.position("BillingAddress")
    bitmap = encode_bitmap(channel, {"Name", "LastModifiedDate", "BillingAddress.City"})
    top = 1 << name | 1 << channel.position("LastModifiedDate")
    # bit i of the first entry is top-level field i (the header is 0); City is the
    # second sub-field of the address at position `city`
    assert bitmap[0].startswith("0x") and int(bitmap[0], 16) == top
    assert bitmap[1:] == [f"{city}-0x02"]
    assert set(decode_bitmap(channel.schema, bitmap)) == {
        "Name",
        "LastModifiedDate",
        "BillingAddress.City",
    }
    contact = channel_schema(DEFAULT_SCHEMA.objects["contact"])
    names = [f["name"] for f in contact.schema["fields"]]
    assert "FirstName" not in names and "Name" in names
    assert decode_bitmap(contact.schema, encode_bitmap(contact, {"Name.LastName"})) == [
        "Name.LastName"
    ]


def test_a_subscription_cannot_change_its_topic(ps: PubSubOrg) -> None:
    sub = ps.subscribe()
    sub.requests.put(pb2.FetchRequest(topic_name="/data/ContactChangeEvent", num_requested=1))
    assert sub.error().code() == grpc.StatusCode.INVALID_ARGUMENT


# -- events for writes ---------------------------------------------------------------------
def test_rest_create_update_delete_events(ps: PubSubOrg) -> None:
    sub = ps.subscribe()
    ps.settle()
    sf = ps.org.client()
    account = sobject(sf, "Account")
    made = account.create(
        {"Name": "Acme", "BillingCity": "Berlin", "Segment__c": "SMB", "Hub_Id__c": "CUS-1"}
    )
    record_id = made["id"]
    account.update(record_id, {"Name": "Acme GmbH", "BillingCity": None, "Segment__c": "SMB"})
    account.delete(record_id)
    created, updated, deleted = (ps.decode(e) for e in sub.events(3))
    heads = [r["ChangeEventHeader"] for r in (created, updated, deleted)]
    assert [h["changeType"] for h in heads] == ["CREATE", "UPDATE", "DELETE"]
    assert all(h["recordIds"] == [record_id] and h["entityName"] == "Account" for h in heads)
    assert all(h["commitUser"] == ps.org.settings.user_id for h in heads)
    assert all(
        h["changeOrigin"] == f"com/salesforce/api/rest/62.0;client={ps.org.settings.client_id}"
        for h in heads
    )
    assert len({h["transactionKey"] for h in heads}) == 3
    assert all(abs(h["commitTimestamp"] - time.time() * 1000) < 30_000 for h in heads)
    # CREATE: every non-null field, no changedFields
    assert heads[0]["changedFields"] == []
    values = _values(created)
    assert values["Name"] == "Acme" and values["Segment__c"] == "SMB"
    assert values["BillingAddress"]["City"] == "Berlin"
    assert values["OwnerId"] == ps.org.settings.user_id and "CreatedDate" in values
    # UPDATE: only the changed fields (the unchanged Segment__c is null), bitmaps decode
    assert heads[1]["changedFieldsNames"] == {"LastModifiedDate", "Name", "BillingAddress.City"}
    assert heads[1]["nulledFieldsNames"] == {"BillingAddress.City"}
    assert heads[1]["changedFields"][0].startswith("0x")
    assert any("-" in b for b in heads[1]["changedFields"])
    assert set(_values(updated)) == {"LastModifiedDate", "Name", "BillingAddress"}
    assert updated["Name"] == "Acme GmbH" and updated["BillingAddress"]["City"] is None
    # DELETE: no fields
    assert _values(deleted) == {}


def test_collections_merge_identical_changes_and_bulk_origin(ps: PubSubOrg) -> None:
    sub = ps.subscribe(n=100)
    ps.settle()
    sf = ps.org.client()
    records = [
        {"attributes": {"type": "Account"}, "Name": f"Coll {i}", "Segment__c": "SMB"}
        for i in range(3)
    ]
    results = rest(sf, "composite/sobjects", "POST", json={"allOrNone": True, "records": records})
    ids = [r["id"] for r in results]
    creates = [ps.decode(e) for e in sub.events(3)]
    assert {r["ChangeEventHeader"]["recordIds"][0] for r in creates} == set(ids)
    assert len({r["ChangeEventHeader"]["transactionKey"] for r in creates}) == 1
    assert [r["ChangeEventHeader"]["sequenceNumber"] for r in creates] == [1, 2, 3]
    # the same change to three records in one transaction: one event, three recordIds
    updates = [
        {"attributes": {"type": "Account"}, "Id": i, "Segment__c": "Enterprise"} for i in ids
    ]
    patched = rest(sf, "composite/sobjects", "PATCH", json={"allOrNone": True, "records": updates})
    assert all(r["success"] for r in patched), patched
    [merged] = [ps.decode(e) for e in sub.events(1)]
    head = merged["ChangeEventHeader"]
    assert head["changeType"] == "UPDATE" and sorted(head["recordIds"]) == sorted(ids)
    assert head["changedFieldsNames"] == {"LastModifiedDate", "Segment__c"}
    assert merged["Segment__c"] == "Enterprise"
    # Bulk API 2.0: one new record, one update
    bulk2(sf, "Account").update(records=[{"Id": ids[0], "Name": "Coll 0 renamed"}])
    bulk2(sf, "Account").insert(records=[{"Name": "Bulk New", "Hub_Id__c": "CUS-77"}])
    renamed, inserted = (ps.decode(e) for e in sub.events(2))
    assert renamed["ChangeEventHeader"]["changeType"] == "UPDATE"
    assert renamed["ChangeEventHeader"]["changedFieldsNames"] == {"LastModifiedDate", "Name"}
    assert inserted["ChangeEventHeader"]["changeType"] == "CREATE"
    assert inserted["Hub_Id__c"] == "CUS-77"
    for record in (renamed, inserted):
        assert record["ChangeEventHeader"]["changeOrigin"].startswith(
            "com/salesforce/api/bulkapi/62.0;client="
        )


def test_all_changes_channel_and_custom_objects(ps: PubSubOrg) -> None:
    sub = ps.subscribe("/data/ChangeEvents")
    accounts = ps.subscribe(ACCOUNTS)
    ps.settle()
    sf = ps.org.client()
    account_id = sobject(sf, "Account").create({"Name": "Parent"})["id"]
    sobject(sf, "Subscription__c").create(
        {"Name": "S-1", "Account__c": account_id, "Status__c": "active", "MRR__c": 12.5}
    )
    events = [ps.decode(e) for e in sub.events(2)]
    assert [r["ChangeEventHeader"]["entityName"] for r in events] == ["Account", "Subscription__c"]
    assert events[1]["MRR__c"] == 12.5 and events[1]["Account__c"] == account_id
    assert len(accounts.events(1)) == 1  # the Account channel has the account only
    time.sleep(0.7)
    while not accounts.responses.empty():
        assert not accounts.next().events


# -- flow control and keepalive ------------------------------------------------------------
def test_flow_control_sends_no_more_than_requested(ps: PubSubOrg) -> None:
    sub = ps.subscribe(n=1)
    ps.settle()
    account = sobject(ps.org.client(), "Account")
    for i in range(3):
        account.create({"Name": f"Flow {i}"})
    first = sub.next()
    assert len(first.events) == 1 and first.pending_num_requested == 0
    keepalive = sub.next(timeout=3)  # nothing more until more is requested
    assert not keepalive.events and keepalive.pending_num_requested == 0
    assert keepalive.latest_replay_id == first.events[0].replay_id
    sub.request(5)
    rest = sub.events(2)
    replays = [int.from_bytes(e.replay_id, "big") for e in [*first.events, *rest]]
    assert replays == sorted(replays) and len(set(replays)) == 3
    too_many = ps.subscribe(n=101)
    error = too_many.error()
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "num_requested" in str(error.details())


def test_keepalive_reports_latest_replay_id(pubsub_factory: Callable[..., PubSubOrg]) -> None:
    ps = pubsub_factory(pubsub_keepalive_seconds=0.3)
    account = sobject(ps.org.client(), "Account")
    account.create({"Name": "Before"})
    latest = ps.subscribe(n=0)  # nothing requested: keepalives only
    started = time.monotonic()
    response = latest.next(timeout=3)
    assert not response.events and time.monotonic() - started < 2
    assert response.latest_replay_id and response.pending_num_requested == 0
    again = latest.next(timeout=3)
    assert again.latest_replay_id == response.latest_replay_id


# -- replay and retention ------------------------------------------------------------------
def _three_events(ps: PubSubOrg) -> list[Any]:
    sub = ps.subscribe()
    ps.settle()
    account = sobject(ps.org.client(), "Account")
    for i in range(3):
        account.create({"Name": f"Replay {i}"})
    events = sub.events(3)
    sub.close()
    return events


def test_replay_custom_earliest_and_non_contiguous_ids(ps: PubSubOrg) -> None:
    events = _three_events(ps)
    custom = ps.subscribe(preset=pb2.ReplayPreset.CUSTOM, replay_id=events[0].replay_id)
    later = custom.events(2)
    assert [e.replay_id for e in later] == [e.replay_id for e in events[1:]]
    earliest = ps.subscribe(preset=pb2.ReplayPreset.EARLIEST)
    assert [e.replay_id for e in earliest.events(3)] == [e.replay_id for e in events]
    # ids are 8 opaque bytes, increasing, and not one by one
    account = sobject(ps.org.client(), "Account")
    for i in range(12):
        account.create({"Name": f"More {i}"})
    more = earliest.events(12)
    replays = [int.from_bytes(e.replay_id, "big") for e in [*events, *more]]
    assert all(len(e.replay_id) == 8 for e in more)
    steps = {b - a for a, b in itertools.pairwise(replays)}
    assert min(steps) >= 1 and max(steps) > 1


def test_expired_replay_id_fails_with_validation_error(ps: PubSubOrg) -> None:
    events = _three_events(ps)
    expired = ps.admin("expire", {"older_than_seconds": 0})
    assert expired["expired"] == 3
    sub = ps.subscribe(preset=pb2.ReplayPreset.CUSTOM, replay_id=events[1].replay_id)
    error = sub.error()
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _trailer(error).endswith("replayid.validation.failed")
    assert "Replay ID validation failed" in str(error.details())
    garbage = ps.subscribe(preset=pb2.ReplayPreset.CUSTOM, replay_id=b"\x01")
    assert garbage.error().code() == grpc.StatusCode.INVALID_ARGUMENT
    # retention as a setting: events older than it go, and so does their replay id
    ps.admin("settings", {"retention_seconds": 0.2})
    fresh = _three_events(ps)
    time.sleep(0.3)
    late = ps.subscribe(preset=pb2.ReplayPreset.CUSTOM, replay_id=fresh[0].replay_id)
    assert late.error().code() == grpc.StatusCode.INVALID_ARGUMENT


def test_events_survive_a_restart(pubsub_factory: Callable[..., PubSubOrg]) -> None:
    first = pubsub_factory("kept.sqlite")
    events = _three_events(first)
    first.org.store.close()
    second = pubsub_factory("kept.sqlite")
    sub = second.subscribe(preset=pb2.ReplayPreset.CUSTOM, replay_id=events[0].replay_id)
    assert [e.replay_id for e in sub.events(2)] == [e.replay_id for e in events[1:]]
    assert second.decode(events[2])["Name"] == "Replay 2"


# -- authentication ------------------------------------------------------------------------
def test_bad_token_and_tenant_are_unauthenticated(ps: PubSubOrg) -> None:
    request = pb2.TopicRequest(topic_name=ACCOUNTS)
    for md in (
        ps.metadata("00D8H0000000000!bogus.token"),
        ((("instanceurl", ps.org.base), ("tenantid", ps.org.settings.org_id))),
        (("accesstoken", ps.org.token()), ("instanceurl", ps.org.base), ("tenantid", "00Dx")),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            ps.stub.GetTopic(request, metadata=md)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert _trailer(caught.value) == "sfdc.platform.eventbus.grpc.service.auth.error"
    sub = ps.subscribe(token="00D8H0000000000!bogus.token")
    assert sub.error().code() == grpc.StatusCode.UNAUTHENTICATED


def test_token_expiring_mid_stream_ends_it_and_replay_resumes(ps: PubSubOrg) -> None:
    sub = ps.subscribe()
    ps.settle()
    account = sobject(ps.org.client(), "Account")
    account.create({"Name": "Seen"})
    [seen] = sub.events(1)
    ps.org.fault(mode="token_expiry")  # every issued token is now invalid
    error = sub.error(timeout=3)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    token = ps.org.token()
    sobject(ps.org.client(token), "Account").create({"Name": "Missed"})
    again = ps.subscribe(preset=pb2.ReplayPreset.CUSTOM, replay_id=seen.replay_id, token=token)
    [missed] = again.events(1)
    assert ps.decode(missed)["Name"] == "Missed"


def test_auth_refresh_keeps_the_stream_open(
    pubsub_factory: Callable[..., PubSubOrg],
) -> None:
    ps = pubsub_factory(token_ttl_seconds=2)
    sub = ps.subscribe()
    unrefreshed = ps.subscribe()
    ps.settle()
    sub.requests.put(pb2.FetchRequest(auth_refresh=ps.org.token(), num_requested=0))
    time.sleep(1.0)
    sub.requests.put(pb2.FetchRequest(auth_refresh=ps.org.token(), num_requested=0))
    time.sleep(1.3)  # the first token has expired; the refreshed one holds
    sobject(ps.org.client(), "Account").create({"Name": "Still here"})
    [event] = sub.events(1)
    assert ps.decode(event)["Name"] == "Still here"
    # the stream whose token was never refreshed ended when the token's TTL ran out
    assert unrefreshed.error().code() == grpc.StatusCode.UNAUTHENTICATED


# -- injected events -----------------------------------------------------------------------
def test_gap_overflow_and_undelete_events(ps: PubSubOrg) -> None:
    sub = ps.subscribe()
    ps.settle()
    account = sobject(ps.org.client(), "Account")
    record_id = account.create({"Name": "Gappy"})["id"]
    ps.admin("events", {"object": "Account", "changeType": "GAP_UPDATE", "recordIds": [record_id]})
    ps.admin("events", {"object": "Account", "changeType": "GAP_OVERFLOW"})
    account.delete(record_id)
    ps.admin("undelete", {"object": "Account", "id": record_id})
    created, gap, overflow, deleted, undeleted = (ps.decode(e) for e in sub.events(5))
    assert gap["ChangeEventHeader"]["changeType"] == "GAP_UPDATE"
    assert gap["ChangeEventHeader"]["recordIds"] == [record_id] and _values(gap) == {}
    assert gap["ChangeEventHeader"]["changedFields"] == []
    assert overflow["ChangeEventHeader"]["changeType"] == "GAP_OVERFLOW"
    assert overflow["ChangeEventHeader"]["recordIds"] == ["000000000000000AAA"]
    assert deleted["ChangeEventHeader"]["changeType"] == "DELETE"
    assert undeleted["ChangeEventHeader"]["changeType"] == "UNDELETE"
    assert undeleted["Name"] == "Gappy"
    assert account.get(record_id)["Name"] == "Gappy"
    with ps.org.http() as client:
        bad = client.post("/__sandbox/pubsub/events", json={"object": "Nope"})
        assert bad.status_code == 400
        state = client.get("/__sandbox/pubsub").json()
    assert state["events"] == 5 and created


# -- the runner ----------------------------------------------------------------------------
def test_runner_serves_the_pubsub_api(tmp_path: Path) -> None:
    from sandbox.runner import running_sandbox

    with running_sandbox(tmp_path / "sb", customers=3, systems=("salesforce",)) as sandbox:
        env = sandbox.env
        target = env["SALESFORCE_PUBSUB_URL"]
        assert target.startswith("127.0.0.1:")
        assert f"SALESFORCE_PUBSUB_URL={target}" in (sandbox.data_dir / "sandbox.env").read_text()
        token = httpx.post(
            f"{env['SALESFORCE_LOGIN_URL']}/services/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": env["SALESFORCE_CLIENT_ID"],
                "client_secret": env["SALESFORCE_CLIENT_SECRET"],
            },
            verify=env["HUB_CA_BUNDLE"],
            trust_env=False,
        ).json()["access_token"]
        ca = Path(env["HUB_CA_BUNDLE"]).read_bytes()
        with grpc.secure_channel(target, grpc.ssl_channel_credentials(ca)) as channel:
            info = pb2_grpc.PubSubStub(channel).GetTopic(
                pb2.TopicRequest(topic_name=ACCOUNTS),
                metadata=(
                    ("accesstoken", token),
                    ("instanceurl", env["SALESFORCE_LOGIN_URL"]),
                    ("tenantid", SalesforceSettings().org_id),
                ),
            )
        assert info.schema_id

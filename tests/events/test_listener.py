"""`hub listen` end to end on the sandbox, with the real clients: simple-salesforce writes to
the Salesforce emulator, whose Pub/Sub API emulator publishes change events; pyodata-style
OData writes to the SAP emulator, whose event hook POSTs CloudEvents to the listener's
webhook. The listener (in this process, threads as in `hub listen`) stores them in the
inbox and applies them through the sync engine; no poll runs unless a test says so.

One sandbox and one initial sync serve the module; each test changes its own records."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
from simple_salesforce import Salesforce
from sqlalchemy import Engine

from app.listener import Listener
from connectors.registry import configured_systems
from connectors.salesforce import SalesforceConnector
from connectors.salesforce_pubsub.settings import settings_from_env
from hub.events.inbox import all_events
from hub.events.processor import BatchStats
from hub.mapping.spec import MAPPINGS_DIR, load_all
from hub.settings import EventSettings
from hub.store import create_store_engine, repo
from hub.store.db import session_factory
from hub.store.migrate import upgrade
from hub.store.models import GoldenRecord, Tombstone
from hub.sync.engine import SyncEngine
from hub.systems import connect
from sandbox.runner import SandboxHandle, running_sandbox

SYSTEMS = ("salesforce", "sap")


@dataclass
class Rig:
    sandbox: SandboxHandle
    store: Engine
    env: dict[str, str]
    listener: Listener
    reports: list[BatchStats]

    def connector(self, system: str) -> Any:
        return connect(system, self.env)

    def read(self, system: str, hub_id: str) -> dict[str, Any] | None:
        connector = self.connector(system)
        try:
            for batch in connector.read_by_keys("customer", [hub_id]):
                for record in batch.records:
                    return dict(record)
        finally:
            connector.close()
        return None

    def golden(self, hub_id: str) -> GoldenRecord | None:
        with session_factory(self.store)() as s:
            return s.get(GoldenRecord, ("customer", hub_id))

    def salesforce_id(self, hub_id: str) -> str:
        with session_factory(self.store)() as s:
            return repo.external_ids_for(s, "customer", "salesforce", [hub_id])[hub_id]

    def sap_number(self, hub_id: str) -> str:
        with session_factory(self.store)() as s:
            return repo.external_ids_for(s, "customer", "sap", [hub_id])[hub_id]


def wait_for(check: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.1)


def sap_set_tax_id(env: Mapping[str, str], number: str, tax_id: str) -> None:
    """A user in S/4 changes a customer's tax id (the business partner's tax number, with
    its ETag, as OData wants): SAP owns the tax id."""
    session = requests.Session()
    session.auth = (env["SAP_USER"], env["SAP_PASSWORD"])
    session.params = {"sap-client": env.get("SAP_CLIENT", "100")}
    base = env["SAP_ODATA_URL"].rstrip("/") + "/sap/opu/odata/sap/API_BUSINESS_PARTNER/"
    token = session.get(base, headers={"X-CSRF-Token": "Fetch"}, timeout=5)
    session.headers["X-CSRF-Token"] = token.headers["x-csrf-token"]
    numbers = session.get(
        f"{base}A_BusinessPartnerTaxNumber",
        params={"$filter": f"BusinessPartner eq '{number}'", "$format": "json"},
        timeout=5,
    ).json()["d"]["results"]
    if numbers:
        found, values = numbers[0], {"BPTaxNumber": tax_id, "BPTaxLongNumber": tax_id}
    else:  # no tax number record: the customer's own field
        found = session.get(f"{base}A_Customer('{number}')?$format=json", timeout=5).json()["d"]
        values = {"TaxNumber1": tax_id}
    response = session.patch(
        found["__metadata"]["uri"],
        json=values,
        headers={"If-Match": found["__metadata"]["etag"]},
        timeout=5,
    )
    assert response.status_code in (200, 204), response.text


def flush_sap(rig: Rig) -> None:
    url = rig.env["SAP_ODATA_URL"].rstrip("/") + "/__sandbox/events/flush"
    assert httpx.post(url, json={"timeout": 8}, timeout=10).status_code == 200


def sap_events(rig: Rig, body: dict[str, Any]) -> None:
    url = rig.env["SAP_ODATA_URL"].rstrip("/") + "/__sandbox/events"
    httpx.post(url, json=body, timeout=5).raise_for_status()


def sf_admin(rig: Rig, method: str, path: str, body: Any = None) -> Any:
    url = rig.sandbox.admin_url("salesforce") + path
    response = httpx.request(method, url, json=body, verify=rig.env["HUB_CA_BUNDLE"])
    response.raise_for_status()
    return response.json()


def writes(rig: Rig, system: str) -> int:
    """Writes the hub made to an emulator (token calls are not writes of records)."""
    calls = rig.sandbox.calls()[system]["by_call"]
    return sum(
        n
        for call, n in calls.items()
        if not call.startswith(("GET", "HEAD")) and "oauth2/token" not in call
    )


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    folder = tmp_path_factory.mktemp("listen")
    with running_sandbox(folder / "sb", seed=11, customers=6, systems=SYSTEMS) as sb:
        if "SALESFORCE_PUBSUB_URL" not in sb.env:
            pytest.skip("this sandbox serves no Pub/Sub API")
        env = dict(sb.env)
        url = f"sqlite:///{folder / 'hub.sqlite'}"
        upgrade(url)
        store = create_store_engine(url)
        specs, _ = load_all(MAPPINGS_DIR)
        connectors = {s: connect(s, env, specs) for s in configured_systems(env)}
        SyncEngine(store, connectors, specs=specs).run(entities=["customer"])
        for c in connectors.values():
            c.close()
        reports: list[BatchStats] = []
        listener = Listener(
            store,
            env,
            EventSettings(port=0, secret="listener-test-secret"),
            specs=specs,
            register_sandbox=True,
            report=reports.append,
            tick=0.2,
        )
        thread = threading.Thread(target=listener.run, name="listener", daemon=True)
        thread.start()
        assert listener.ready.wait(20), "the listener did not start"
        wait_for(lambda: listener.subscriptions, 5, "subscribed")
        time.sleep(0.5)  # the subscriptions reach the stream's tip
        try:
            yield Rig(sb, store, env, listener, reports)
        finally:
            listener.stop()
            thread.join(timeout=15)


def customers(rig: Rig) -> list[str]:
    with session_factory(rig.store)() as s:
        rows = s.query(GoldenRecord.hub_id).filter_by(entity="customer", deleted=False)
        return sorted(r[0] for r in rows)


@pytest.fixture
def sf(rig: Rig) -> Iterator[Salesforce]:
    connector = SalesforceConnector(settings_from_env(rig.env), {})
    yield connector._client()
    connector.close()


def test_an_account_renamed_in_salesforce_reaches_sap_through_the_listener(
    rig: Rig, sf: Salesforce
) -> None:
    hub_id = customers(rig)[0]
    sf_id = rig.salesforce_id(hub_id)
    started = time.monotonic()
    sf.restful(
        f"sobjects/Account/{sf_id}",
        method="PATCH",
        json={"Name": "Renamed Through Events GmbH"},
    )
    wait_for(
        lambda: (
            (rig.read("sap", hub_id) or {}).get("CustomerFullName") == "Renamed Through Events GmbH"
        ),
        10,
        "the new name in SAP",
    )
    wait_for(
        lambda: (
            (rig.read("billing", hub_id) or {}).get("legal_name") == "Renamed Through Events GmbH"
        ),
        10,
        "the new name in billing",
    )
    assert time.monotonic() - started < 10
    golden = rig.golden(hub_id)
    assert golden is not None and golden.data["legal_name"] == "Renamed Through Events GmbH"
    with rig.store.connect() as conn:
        mine = [e for e in all_events(conn, "salesforce") if sf_id in e.record_keys]
    assert mine and all(e.processed_at is not None for e in mine)
    # the batch is reported after its events are marked processed: wait for the report
    wait_for(
        lambda: any(r.system == "salesforce" and hub_id in r.keys for r in rig.reports),
        5,
        "the batch reported",
    )


def test_a_sap_customer_change_reaches_salesforce(rig: Rig) -> None:
    hub_id = customers(rig)[1]
    number = rig.sap_number(hub_id)
    sap_set_tax_id(rig.env, number, "DE999888777")
    flush_sap(rig)
    wait_for(
        lambda: (rig.read("salesforce", hub_id) or {}).get("Tax_Id__c") == "DE999888777",
        10,
        "the SAP tax id in Salesforce",
    )


def test_duplicate_and_out_of_order_sap_events_apply_once(rig: Rig) -> None:
    hub_id = customers(rig)[2]
    number = rig.sap_number(hub_id)
    sap_events(rig, {"faults": {"duplicate_rate": 1.0, "reorder_window": 3, "seed": 3}})
    try:
        before = len(rig.reports)
        for n in range(3):
            sap_set_tax_id(rig.env, number, f"DE00000000{n}")
        flush_sap(rig)
    finally:
        httpx.delete(rig.env["SAP_ODATA_URL"].rstrip("/") + "/__sandbox/events", timeout=5)
    wait_for(
        lambda: (rig.read("salesforce", hub_id) or {}).get("Tax_Id__c") == "DE000000002",
        10,
        "the last tax id in Salesforce",
    )
    with rig.store.connect() as conn:
        mine = [e for e in all_events(conn, "sap") if number in str(e.record_keys)]
    ids = [e.event_id for e in mine]
    assert len(ids) == len(set(ids)), "a duplicate was stored twice"
    wait_for(lambda: all(e.processed_at for e in _reload(rig, ids)), 5, "all processed")
    wait_for(lambda: len(rig.reports) > before, 5, "the batches reported")


def _reload(rig: Rig, ids: list[str]) -> list[Any]:
    with rig.store.connect() as conn:
        return [e for e in all_events(conn, "sap") if e.event_id in ids]


def test_a_salesforce_delete_tombstones_and_is_not_resurrected(rig: Rig, sf: Salesforce) -> None:
    hub_id = customers(rig)[3]
    sf_id = rig.salesforce_id(hub_id)
    sf.restful(f"sobjects/Account/{sf_id}", method="DELETE")
    wait_for(lambda: (g := rig.golden(hub_id)) is not None and g.deleted, 10, "a tombstone")
    with session_factory(rig.store)() as s:
        assert s.get(Tombstone, ("customer", hub_id)) is not None
    # a later SAP change of the same customer does not bring it back
    sap_set_tax_id(rig.env, rig.sap_number(hub_id), "DE111111111")
    flush_sap(rig)
    time.sleep(1.5)
    golden = rig.golden(hub_id)
    assert golden is not None and golden.deleted


def test_an_echo_of_the_hubs_own_write_causes_no_write(rig: Rig, sf: Salesforce) -> None:
    hub_id = customers(rig)[4]
    sf_id = rig.salesforce_id(hub_id)
    current: Any = sf.restful(f"sobjects/Account/{sf_id}")
    # the same values written again (as the hub's own push would): an event, no change
    rig.sandbox.reset_calls()
    reports_before = len(rig.reports)
    sf.restful(f"sobjects/Account/{sf_id}", method="PATCH", json={"Name": current["Name"]})
    wait_for(
        lambda: any(
            r.system == "salesforce" and hub_id in r.keys for r in rig.reports[reports_before:]
        ),
        10,
        "the echo processed",
    )
    mine = [r for r in rig.reports[reports_before:] if hub_id in r.keys]
    assert all(not r.pushed and r.changed == 0 for r in mine), [r.as_dict() for r in mine]
    assert sum(r.echoes for r in mine) >= 1
    assert writes(rig, "sap") == 0
    assert writes(rig, "salesforce") == 1  # the test's own PATCH only


def test_an_expired_replay_id_falls_back_to_the_poll_and_says_so(
    rig: Rig, sf: Salesforce, caplog: pytest.LogCaptureFixture
) -> None:
    """The Account subscription has acknowledged an event; every retained event then
    expires and the stream ends (every token expires): resubscribing after the
    acknowledged replay id is refused, so the listener says the poll closes the gap, runs
    it (the change made meanwhile arrives through it) and subscribes again from LATEST."""
    caplog.set_level(logging.INFO, logger="hub.listen")
    hub_id, other = customers(rig)[-1], customers(rig)[0]
    sf.restful(
        f"sobjects/Account/{rig.salesforce_id(other)}", method="PATCH", json={"Phone": "+1 555"}
    )
    wait_for(
        lambda: any("stored (replay" in r.getMessage() for r in caplog.records), 10, "an event"
    )
    gaps, reports = rig.listener.totals.gaps, len(rig.reports)
    sf_admin(rig, "POST", "/pubsub/expire", {"older_than_seconds": 0})
    sf_admin(rig, "POST", "/faults", {"mode": "token_expiry"})
    wait_for(lambda: rig.listener.totals.gaps > gaps, 10, "the expired replay id noticed")
    wait_for(
        lambda: any(r.polled and r.entity == "customer" for r in rig.reports[reports:]),
        15,
        "the gap poll",
    )
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        "replay id expired" in m and "the customer poll closes the gap" in m for m in messages
    )
    assert any("gap poll ran" in m for m in messages)
    wait_for(
        lambda: any(
            "/data/AccountChangeEvent: subscribed LATEST" in r.getMessage() for r in caplog.records
        ),
        5,
        "subscribed again from LATEST",
    )
    # and the listener goes on: a change after the gap arrives as an event (a client
    # logged in again: the fault expired every token)
    connector = SalesforceConnector(settings_from_env(rig.env), {})
    connector._client().restful(
        f"sobjects/Account/{rig.salesforce_id(hub_id)}",
        method="PATCH",
        json={"Name": "After Gap AG"},
    )
    wait_for(
        lambda: (rig.read("sap", hub_id) or {}).get("CustomerFullName") == "After Gap AG",
        10,
        "a change after the gap in SAP",
    )
    connector.close()


def test_listener_settings_keep_secrets_out_of_repr(tmp_path: Path) -> None:
    settings = EventSettings(secret="top-secret-value", password="another-secret")
    assert "top-secret-value" not in repr(settings)
    assert "another-secret" not in repr(settings)


def test_gap_events_are_read_back_and_an_overflow_runs_the_poll(rig: Rig, sf: Salesforce) -> None:
    """A GAP_UPDATE carries no values: the record is read back by key. A GAP_OVERFLOW
    names no records: the entity's poll reads the window."""
    hub_id = customers(rig)[1]
    sf_id = rig.salesforce_id(hub_id)
    reports = len(rig.reports)
    sf_admin(
        rig,
        "POST",
        "/pubsub/events",
        {"object": "Account", "changeType": "GAP_UPDATE", "recordIds": [sf_id]},
    )
    wait_for(
        lambda: any(hub_id in r.keys and r.read for r in rig.reports[reports:]),
        10,
        "the gap event read back",
    )
    reports = len(rig.reports)
    sf_admin(rig, "POST", "/pubsub/events", {"object": "Account", "changeType": "GAP_OVERFLOW"})
    wait_for(
        lambda: any(r.polled and r.entity == "customer" for r in rig.reports[reports:]),
        10,
        "the overflow polled",
    )
    with rig.store.connect() as conn:
        events = all_events(conn, "salesforce")
    overflow = [e for e in events if e.change_type == "GAP_OVERFLOW"]
    assert overflow and all(e.outcome == "polled" for e in overflow)


def test_each_applied_batch_is_a_runless_asset_event_in_dagster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dagster import DagsterInstance

    from app.defs.sync import golden_key
    from app.listener import dagster_reporter

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    (tmp_path / "dagster.yaml").write_text("")
    report = dagster_reporter()
    assert report is not None
    stats = BatchStats(
        system="salesforce", entity="customer", events=2, keys=["CUS-1"], latencies=[0.4, 1.2]
    )
    report(stats)
    instance = DagsterInstance.get()
    event = instance.get_latest_materialization_event(golden_key("customer"))
    assert event is not None and event.asset_materialization is not None
    meta = event.asset_materialization.metadata
    assert meta["count"].value == 2 and meta["keys"].value == ["CUS-1"]
    assert meta["latency_max"].value == 1.2 and "salesforce" in str(meta["source"].value)
    monkeypatch.delenv("DAGSTER_HOME")
    assert dagster_reporter() is None


def test_a_reprocessed_event_changes_nothing(rig: Rig, sf: Salesforce) -> None:
    """Idempotent by event id and by fingerprint: events applied once, put back as pending
    (as after a crash between applying and marking), are applied again and write nothing."""
    hub_id = customers(rig)[0]
    sf.restful(
        f"sobjects/Account/{rig.salesforce_id(hub_id)}", method="PATCH", json={"Name": "Twice AG"}
    )
    wait_for(
        lambda: (rig.read("sap", hub_id) or {}).get("CustomerFullName") == "Twice AG",
        10,
        "the change applied once",
    )
    with rig.store.connect() as conn:
        applied = [e.id for e in all_events(conn) if e.outcome == "applied"][-5:]
    with session_factory(rig.store)() as s:
        versions = {g.hub_id: g.version for g in s.query(GoldenRecord).filter_by(entity="customer")}
    time.sleep(0.5)  # the echoes of the push above are applied too
    rig.sandbox.reset_calls()
    from hub.events.inbox import INBOX

    with rig.store.begin() as conn:
        conn.execute(
            INBOX.update().where(INBOX.c.id.in_(applied)).values(processed_at=None, outcome=None)
        )
    wait_for(lambda: all(e.processed_at for e in _all(rig) if e.id in applied), 10, "re-applied")
    with session_factory(rig.store)() as s:
        after = {g.hub_id: g.version for g in s.query(GoldenRecord).filter_by(entity="customer")}
    assert after == versions
    assert writes(rig, "sap") == 0 and writes(rig, "salesforce") == 0


def _all(rig: Rig) -> list[Any]:
    with rig.store.connect() as conn:
        return all_events(conn)

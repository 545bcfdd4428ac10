"""SAP emulator -> business events -> the hub's webhook receiver -> the inbox.

Writes go through pyodata against the emulator; its event hook POSTs CloudEvents to the
receiver served by uvicorn on loopback, which stores them in a SQLite hub store. The inbox
must hold exactly one row per changed key, with duplicate and out-of-order delivery on,
and a dropped event is simply absent (the poll is the safety net)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyodata
import pytest
import requests
from sqlalchemy import Engine

from hub.events.inbox import InboxRow, all_events
from hub.events.receiver import ReceiverAuth, create_receiver
from hub.store.db import create_store_engine
from hub.store.migrate import upgrade
from sandbox.faults import FaultState
from sandbox.sap import SapSettings, create_app, seed_records
from sandbox.sap.events import EventSettings
from sandbox.server import serve_in_thread
from sandbox.store import DocumentStore

SECRET = "s3cret-for-tests"
USER, PASSWORD, CLIENT = "HUB_SANDBOX", "sandbox-password", "100"


@dataclass
class Rig:
    sap: str
    receiver: str
    engine: Engine

    def client(self, service: str) -> Any:
        session = requests.Session()
        session.auth = (USER, PASSWORD)
        session.params = {"sap-client": CLIENT}
        url = f"{self.sap}/sap/opu/odata/sap/{service}/"
        token = session.get(url, headers={"X-CSRF-Token": "Fetch"}, timeout=5)
        session.headers["X-CSRF-Token"] = token.headers["x-csrf-token"]
        return pyodata.Client(url, session)

    def flush(self) -> dict[str, Any]:
        resp = requests.post(f"{self.sap}/__sandbox/events/flush", json={"timeout": 8}, timeout=10)
        assert resp.status_code == 200, resp.text
        return dict(resp.json())

    def renamed_inbox_count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.exec_driver_sql("SELECT count(*) FROM event_inbox_away").scalar_one())

    def inbox(self) -> list[InboxRow]:
        with self.engine.connect() as conn:
            return all_events(conn, "sap")


@pytest.fixture
def rig_factory(tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    stack: list[Any] = []
    engines: list[Engine] = []

    def make(**events: Any) -> Rig:
        n = len(engines)
        url = f"sqlite:///{tmp_path / f'hub{n}.sqlite'}"
        upgrade(url)
        engine = create_store_engine(url)
        engines.append(engine)
        auth = ReceiverAuth(secret=SECRET, user="s4-events", password=PASSWORD)
        receiver_ctx = serve_in_thread(create_receiver(engine, auth))
        receiver = receiver_ctx.__enter__()
        stack.append(receiver_ctx)
        settings = SapSettings(
            events=EventSettings.model_validate(
                {"subscribers": [f"{receiver}/events/sap"], "secret": SECRET, **events}
            )
        )
        store = DocumentStore(tmp_path / f"sap{n}.sqlite")
        seed_records(store, "A_Customer", [{"Customer": "17100001", "CustomerName": "Acme"}])
        sap_ctx = serve_in_thread(create_app(store, FaultState(seed=7), settings))
        sap = sap_ctx.__enter__()
        stack.append(sap_ctx)
        return Rig(sap, receiver, engine)

    yield make
    for ctx in reversed(stack):
        ctx.__exit__(None, None, None)
    for engine in engines:
        engine.dispose()


def update(entity_set: Any, key: str, **values: Any) -> None:
    request = entity_set.update_entity(key).set(**values)
    request.add_headers({"If-Match": "*"})
    request.execute()


def delete(entity_set: Any, key: str) -> None:
    request = entity_set.delete_entity(key)
    request.add_headers({"If-Match": "*"})
    request.execute()


def create_partners(rig: Rig, count: int) -> list[str]:
    bp = rig.client("API_BUSINESS_PARTNER").entity_sets.A_BusinessPartner
    numbers = []
    for i in range(count):
        created = (
            bp.create_entity()
            .set(
                BusinessPartnerCategory="2",
                OrganizationBPName1=f"Partner {i}",
                to_Customer={"CustomerName": f"Partner {i}", "YY1_HubId": f"CUS-{i}"},
            )
            .execute()
        )
        numbers.append(created.BusinessPartner)
    return numbers


def test_every_write_of_every_business_object_is_one_inbox_row(
    rig_factory: Callable[..., Rig],
) -> None:
    rig = rig_factory(mode="binary")
    (partner,) = create_partners(rig, 1)
    bp = rig.client("API_BUSINESS_PARTNER").entity_sets
    update(bp.A_BusinessPartner, partner, OrganizationBPName1="Renamed")
    # a change to the customer role is a change of its business partner
    update(bp.A_Customer, partner, CustomerName="Renamed")
    contracts = rig.client("API_SALES_CONTRACT_SRV").entity_sets.A_SalesContract
    contract = (
        contracts.create_entity()
        .set(
            SoldToParty="17100001",
            TransactionCurrency="EUR",
            SalesContractValidityStartDate=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
            to_Item=[{"Material": "SKU-1", "RequestedQuantity": "3", "NetPriceAmount": "10"}],
        )
        .execute()
    )
    billing = rig.client("API_BILLING_DOCUMENT_SRV").entity_sets.A_BillingDocument
    invoice = (
        billing.create_entity()
        .set(SoldToParty="17100001", TransactionCurrency="EUR", TotalGrossAmount="30")
        .execute()
    )
    update(billing, invoice.BillingDocument, BillingDocumentIsCancelled=True)
    reservations = rig.client("API_RESERVATION_DOCUMENT_SRV").entity_sets
    reservation = (
        reservations.A_ReservationDocumentHeader.create_entity()
        .set(
            GoodsMovementType="201",
            to_ReservationDocumentItem=[
                {"Product": "SKU-1", "Plant": "1010", "ResvnItmRequiredQtyInBaseUnit": "2"}
            ],
        )
        .execute()
    )
    delete(contracts, contract.SalesContract)

    status = rig.flush()
    assert status["stats"]["failed"] == 0
    rows = rig.inbox()
    seen = [(r.entity, r.change_type, r.record_keys, r.event_type.split(".")[-2]) for r in rows]
    assert seen == [
        ("customer", "create", [{"BusinessPartner": partner}], "Created"),
        ("customer", "update", [{"BusinessPartner": partner}], "Changed"),
        ("customer", "update", [{"BusinessPartner": partner}], "Changed"),
        ("subscription", "create", [{"SalesContract": contract.SalesContract}], "Created"),
        ("invoice", "create", [{"BillingDocument": invoice.BillingDocument}], "Created"),
        ("invoice", "update", [{"BillingDocument": invoice.BillingDocument}], "Canceled"),
        ("allocation", "create", [{"Reservation": reservation.Reservation}], "Created"),
        ("subscription", "delete", [{"SalesContract": contract.SalesContract}], "Deleted"),
    ]
    assert all(r.channel == "S4H" and r.processed_at is None for r in rows)
    assert rows[0].payload["source"] == "/default/sap.s4.beh/S4H"
    assert rows[0].event_type == "sap.s4.beh.businesspartner.v1.BusinessPartner.Created.v1"
    assert len({r.event_id for r in rows}) == len(rows)


def test_duplicates_and_out_of_order_delivery_store_each_event_once(
    rig_factory: Callable[..., Rig],
) -> None:
    rig = rig_factory(faults={"duplicate_rate": 1.0, "reorder_window": 6, "seed": 3})
    partners = create_partners(rig, 12)
    status = rig.flush()
    assert status["stats"]["duplicated"] == 12
    assert status["stats"]["delivered"] == 24
    rows = rig.inbox()
    keys = [r.record_keys[0]["BusinessPartner"] for r in rows]
    assert sorted(keys) == sorted(partners)  # exactly one row per changed key
    assert keys != partners  # and they did arrive out of order


def test_a_dropped_event_is_absent(rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory(faults={"drop_rate": 0.5, "seed": 11})
    partners = create_partners(rig, 10)
    status = rig.flush()
    dropped = status["stats"]["dropped"]
    assert 0 < dropped < 10
    keys = {r.record_keys[0]["BusinessPartner"] for r in rig.inbox()}
    assert len(keys) == 10 - dropped
    assert keys < set(partners)


def test_basic_auth_delivery_and_a_refused_credential(rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory(secret=None, user="s4-events", password=PASSWORD)
    first = create_partners(rig, 1)
    assert rig.flush()["stats"]["delivered"] == 1
    # a wrong credential is a 4xx: not retried, counted as failed, nothing stored
    requests.post(f"{rig.sap}/__sandbox/events", json={"password": "wrong"}, timeout=5)
    create_partners(rig, 1)
    stats = rig.flush()["stats"]
    assert (stats["failed"], stats["retried"]) == (1, 0)
    assert [r.record_keys for r in rig.inbox()] == [[{"BusinessPartner": first[0]}]]


def test_faults_switched_at_run_time_and_retries_on_5xx(
    rig_factory: Callable[..., Rig],
) -> None:
    rig = rig_factory()
    resp = requests.post(
        f"{rig.sap}/__sandbox/events", json={"faults": {"delay_seconds": 0.05}}, timeout=5
    )
    assert resp.json()["settings"]["faults"]["delay_seconds"] == 0.05
    assert "secret" not in resp.json()["settings"]
    # the receiver's store is down for a moment: 503, the emulator retries
    with rig.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE event_inbox RENAME TO event_inbox_away")
    requests.post(f"{rig.sap}/__sandbox/events", json={"retry_backoff_seconds": 0.1}, timeout=5)
    (partner,) = create_partners(rig, 1)
    deadline = time.monotonic() + 5
    while requests.get(f"{rig.sap}/__sandbox/events", timeout=5).json()["stats"]["retried"] < 1:
        assert time.monotonic() < deadline, "the emulator did not retry after a 503"
        time.sleep(0.02)
    assert rig.renamed_inbox_count() == 0
    with rig.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE event_inbox_away RENAME TO event_inbox")
    status = rig.flush()
    assert status["stats"]["retried"] >= 1
    assert [r.record_keys for r in rig.inbox()] == [[{"BusinessPartner": partner}]]
    requests.delete(f"{rig.sap}/__sandbox/events", timeout=5)
    status = requests.get(f"{rig.sap}/__sandbox/events", timeout=5).json()
    assert status["settings"]["faults"]["delay_seconds"] == 0

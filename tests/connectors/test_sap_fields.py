"""The SAP connector's field names as a customer's S/4 declares them: the hub id's key-user
extension field is named by the customer's extension (SAP_HUB_ID_FIELD), and
``native_fields`` reads what the live service's ``$metadata`` declares, in the names the
connector hands to the mappings.

One emulator per test, its extension field named ``YY1_HubId_bus`` (as key-user
extensibility names a field for the business context), holding a small book."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyodata
import pytest
import requests
import yaml

from connectors.base import DescribesFields
from connectors.retry import RetryPolicy
from connectors.sap import HUB_ID, SapConnector, SapSettings
from connectors.settings import read_settings
from hub.mapping.spec import MAPPINGS_DIR, load_all
from hub.mapping.transforms import load_code_lists
from hub.store import create_store_engine
from hub.store.migrate import upgrade
from hub.sync.engine import SyncEngine
from hub.systems import connect
from sandbox.faults import FaultState
from sandbox.sap import SapSettings as EmulatorSettings
from sandbox.sap import create_app
from sandbox.seed.book import Book
from sandbox.seed.sap import SapWriter
from sandbox.server import serve_in_thread
from sandbox.store import DocumentStore
from tests.sync.memory_system import MemorySystem

FIELD = "YY1_HubId_bus"
USER, PASSWORD, CLIENT = "HUB_SANDBOX", "sandbox-password", "100"
FAST = RetryPolicy(max_attempts=4, max_seconds=10, initial_wait=0.05, max_wait=1, jitter=0)


@dataclass
class Emulator:
    base: str
    store: DocumentStore

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "SAP_ODATA_URL": self.base,
            "SAP_USER": USER,
            "SAP_PASSWORD": PASSWORD,
            "SAP_CLIENT": CLIENT,
            **extra,
        }

    def client(self, service: str) -> Any:
        session = requests.Session()
        session.auth = (USER, PASSWORD)
        session.params = {"sap-client": CLIENT}  # type: ignore[assignment]
        url = f"{self.base}/sap/opu/odata/sap/{service}/"
        token = session.get(url, headers={"X-CSRF-Token": "Fetch"}).headers["x-csrf-token"]
        session.headers["X-CSRF-Token"] = token
        return pyodata.Client(url, session)


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[Emulator]:
    """An emulator whose extension field is YY1_HubId_bus, seeded with 4 customers."""
    store = DocumentStore(tmp_path / "sap.sqlite")
    writer = SapWriter(store, hub_id_field=FIELD)
    book = Book(5, 4)
    writer.write_products(book.products())
    writer.write_slices(book.slices())
    writer.finish()
    settings = EmulatorSettings(page_size=3, hub_id_field=FIELD)
    with serve_in_thread(create_app(store, FaultState(seed=1), settings)) as base:
        yield Emulator(base, store)
    store.close()


def errors_for(fields: dict[str, frozenset[str]]) -> list[str]:
    """The SAP mappings' errors against these declared fields."""
    return [
        str(e) for e in load_all(MAPPINGS_DIR, {"sap": fields})[1] if e.file.parent.name == "sap"
    ]


def _connector(emulator: Emulator, **env: str) -> SapConnector:
    connector = connect("sap", emulator.env(**env))
    assert isinstance(connector, SapConnector)
    connector.settings.retry = FAST
    return connector


def test_the_hub_id_field_is_one_setting_read_from_sap_hub_id_field() -> None:
    base = {"SAP_ODATA_URL": "http://s4.example.com"}
    assert read_settings(SapSettings, base).hub_id_field == "YY1_HubId"
    assert read_settings(SapSettings, {**base, "SAP_HUB_ID_FIELD": FIELD}).hub_id_field == FIELD
    for bad in ("YY1 HubId", "YY1_HubId eq 'x' or true", "1YY"):
        with pytest.raises(ValueError, match="SAP_HUB_ID_FIELD"):
            read_settings(SapSettings, {**base, "SAP_HUB_ID_FIELD": bad})


def test_customers_sync_through_an_extension_field_of_another_name(
    emulator: Emulator, tmp_path: Path
) -> None:
    """A CRM creates a customer; the hub pushes it to SAP, whose extension field is
    YY1_HubId_bus, with SAP_HUB_ID_FIELD naming it: the hub id lands in that field, SAP's
    number comes back, a second pass finds the record by it (nothing created twice), and
    a tax id SAP then changes reaches the CRM."""
    root = tmp_path / "mappings"
    (root / "sap").mkdir(parents=True)
    shutil.copy(MAPPINGS_DIR / "sap" / "customer.yaml", root / "sap" / "customer.yaml")
    shutil.copytree(MAPPINGS_DIR / "codes", root / "codes")
    (root / "salesforce").mkdir()
    (root / "salesforce" / "customer.yaml").write_text(
        yaml.safe_dump(
            {
                "system": "salesforce",
                "entity": "customer",
                "object": "Account",
                "creates": True,
                "key": {"hub_id_field": "Hub_Id__c", "system_id_field": "Id"},
                "fields": {
                    "legal_name": {"field": "Name", "transform": ["trim"]},
                    "currency": {"field": "CurrencyIsoCode"},
                    "billing_address.street": {"field": "Street"},
                    "billing_address.city": {"field": "City"},
                    "billing_address.postal_code": {"field": "Zip"},
                    "billing_address.country": {"field": "Country"},
                    "tax_id": {"field": "Tax_Id__c"},
                    "external_ids.sap": {"field": "SAP_Number__c"},
                },
                "owns": ["legal_name"],
            }
        )
    )
    specs, errors = load_all(root)
    assert errors == []
    url = f"sqlite:///{tmp_path / 'hub.sqlite'}"
    upgrade(url)
    engine = create_store_engine(url)
    crm = MemorySystem("salesforce", "Hub_Id__c", "001")
    crm_id = crm.put(
        {
            "Name": "Extension Field GmbH",
            "CurrencyIsoCode": "EUR",
            "Street": "Hauptstr. 1",
            "City": "Berlin",
            "Zip": "10115",
            "Country": "DE",
        }
    )
    sap = _connector(emulator, SAP_HUB_ID_FIELD=FIELD)

    def sync() -> dict[str, dict[str, dict[str, int]]]:
        return SyncEngine(
            engine,
            {"salesforce": crm, "sap": sap},
            specs=specs,
            code_lists=load_code_lists(root),
            lock_wait_seconds=2,
        ).run(["customer"])

    first = sync()
    assert first["sap"]["customer"]["created"] == 1
    number = crm.rows[crm_id]["SAP_Number__c"]
    hub_id = crm.rows[crm_id]["Hub_Id__c"]
    customers = emulator.client("API_BUSINESS_PARTNER").entity_sets.A_Customer
    held = customers.get_entity(Customer=number).execute()
    assert getattr(held, FIELD) == hub_id  # the hub id went into the customer's field
    assert held.CustomerFullName == "Extension Field GmbH"

    update = customers.update_entity(Customer=number).set(TaxNumber1="DE811907980")
    update.add_headers({"If-Match": "*"})
    update.execute()
    second = sync()
    assert second["sap"]["customer"]["created"] == 0
    assert crm.rows[crm_id]["Tax_Id__c"] == "DE811907980"  # read back by its hub id
    found = [r for b in sap.read_by_keys("customer", [hub_id]) for r in b.records]
    assert [(r["Customer"], r[HUB_ID]) for r in found] == [(number, hub_id)]
    assert FIELD not in found[0]  # handed on under the mappings' name
    sap.close()


def test_the_emulator_declares_the_configured_field_and_the_default_connector_finds_none(
    emulator: Emulator,
) -> None:
    metadata = requests.get(
        f"{emulator.base}/sap/opu/odata/sap/API_BUSINESS_PARTNER/$metadata",
        auth=(USER, PASSWORD),
        params={"sap-client": CLIENT},
        timeout=10,
    ).text
    assert f'Name="{FIELD}"' in metadata and 'Name="YY1_HubId"' not in metadata
    configured = _connector(emulator, SAP_HUB_ID_FIELD=FIELD)
    default = _connector(emulator)
    try:
        records = [r for b in configured.read_snapshot("customer") for r in b.records]
        assert len(records) == 4 and all(r[HUB_ID].startswith("CUS-") for r in records)
        wanted = records[0][HUB_ID]
        assert [
            r[HUB_ID] for b in configured.read_by_keys("customer", [wanted]) for r in b.records
        ] == [wanted]
        # every field the SAP mappings name is one the live $metadata declares, in the
        # names the connector hands over (flattened and derived ones included)
        fields = configured.native_fields()
        assert isinstance(configured, DescribesFields)
        assert errors_for(fields) == []
        assert {"Currency", "CustomerPaymentTerms", "TaxNumber", "BusinessPartnerLastChange"} <= (
            fields["A_Customer"]
        )
        assert {"AmountCleared", "TaxAmount"} <= fields["A_BillingDocument"]
        assert not {"YY1_AmountCleared", "TotalTaxAmount"} & fields["A_BillingDocument"]
        reservation = fields["A_ReservationDocumentHeader"]
        assert {"Product", "Plant", "FulfilmentStatus", "ReservationItem"} <= reservation
        assert not {"Material", "LastChangeDateTime"} & reservation  # not published
        assert "LastChangeDateTime" not in fields["A_Customer"]  # A_Customer has no stamp
        # a connector looking for YY1_HubId on this system: each mapping's hub id is named
        missing = errors_for(default.native_fields())
        assert len(missing) == 4 and all("key.hub_id_field" in e and HUB_ID in e for e in missing)
    finally:
        configured.close()
        default.close()

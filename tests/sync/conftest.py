"""Two in-memory systems for the sync engine's logic tests: a CRM that creates customers
and owns the name, an ERP that owns tax ids and payment terms and carries the CRM's id."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from hub.mapping.spec import load_all
from hub.mapping.transforms import load_code_lists
from hub.store import create_store_engine
from hub.store.migrate import upgrade
from hub.sync.engine import SyncEngine
from tests.sync.memory_system import MemorySystem

CRM = {
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
        "credit_limit_minor": {"field": "Credit__c", "transform": ["money_decimal"]},
        "external_ids.sap": {"field": "SAP_Number__c"},
    },
    "owns": [
        "legal_name",
        "billing_address.street",
        "billing_address.city",
        "billing_address.postal_code",
        "billing_address.country",
    ],
}
ERP = {
    "system": "sap",
    "entity": "customer",
    "object": "A_Customer",
    "key": {"hub_id_field": "YY1_HubId", "system_id_field": "Id"},
    "fields": {
        "legal_name": {"field": "CustomerName"},
        "currency": {"field": "Currency"},
        "tax_id": {"field": "TaxNumber"},
        "payment_terms": {"field": "PaymentTerms", "transform": ["code"], "codes": "terms"},
        "credit_limit_minor": {"field": "CreditLimit", "transform": ["money_decimal"]},
    },
    "owns": ["tax_id", "payment_terms", "credit_limit_minor"],
}


def landscape(
    tmp_path: Path, store_url: str, specs: tuple[dict[str, Any], ...] = (CRM, ERP)
) -> tuple[Callable[[], SyncEngine], MemorySystem, MemorySystem | None, sa.Engine]:
    """A hub store and in-memory systems for ``specs`` (the CRM's first, the ERP's if
    given): the engine factory, the CRM, the ERP (or None) and the store's engine."""
    root = tmp_path / "mappings"
    for spec in specs:
        (root / spec["system"]).mkdir(parents=True)
        (root / spec["system"] / "customer.yaml").write_text(yaml.safe_dump(spec))
    (root / "codes").mkdir()
    (root / "codes" / "terms.yaml").write_text("net30: NT30\nnet60: NT60\ndue_on_receipt: NT00\n")
    loaded, errors = load_all(root)
    assert errors == []
    upgrade(store_url)
    engine = create_store_engine(store_url)
    crm = MemorySystem("salesforce", "Hub_Id__c", "001")
    erp = MemorySystem("sap", "YY1_HubId", "1000") if len(specs) > 1 else None
    systems = {"salesforce": crm, **({"sap": erp} if erp is not None else {})}

    def make() -> SyncEngine:
        return SyncEngine(
            engine,
            systems,
            specs=loaded,
            code_lists=load_code_lists(root),
            lock_wait_seconds=2,
        )

    return make, crm, erp, engine


@pytest.fixture
def setup(tmp_path: Path, store_url: str):
    return landscape(tmp_path, store_url)


def account(name: str = "Acme GmbH", **extra: object) -> dict:
    return {
        "Name": name,
        "CurrencyIsoCode": "EUR",
        "Street": "Hauptstr. 1",
        "City": "Berlin",
        "Zip": "10115",
        "Country": "DE",
        **extra,
    }


def count(engine: sa.Engine, model: type, *where: object) -> int:
    with engine.connect() as conn:
        return conn.execute(
            sa.select(sa.func.count()).select_from(model).where(*where)
        ).scalar_one()

"""The sync as Dagster assets: materialising the graph runs extract -> golden -> push for
every entity, with counts in the metadata and the lock held per entity."""

from dataclasses import dataclass

import sqlalchemy as sa
from dagster import AssetKey, DagsterInstance, materialize

from app.defs.resources import HubStoreResource
from app.defs.sync import build_sync_assets, build_sync_jobs
from hub.store import GoldenRecord
from tests.sync.conftest import account
from tests.sync.memory_system import MemorySystem


@dataclass
class Holder:
    """Stands where the per-system resource goes: hands out the in-memory system."""

    system: MemorySystem

    def connector(self) -> MemorySystem:
        return self.system


def test_materialising_the_sync_graph_syncs_both_ways(setup, monkeypatch) -> None:
    make, crm, erp, engine = setup
    specs = list(make().specs.values())
    crm.put(account())
    url = engine.url.render_as_string(hide_password=False)
    resources = {
        "hub_store": HubStoreResource(database_url=url),
        "salesforce": Holder(crm),
        "sap": Holder(erp),
    }
    monkeypatch.setattr(
        "hub.sync.engine.load_code_lists",
        lambda _: {"terms": {"net30": "NT30", "net60": "NT60", "due_on_receipt": "NT00"}},
    )
    monkeypatch.setattr("hub.sync.engine.load_specs", lambda _: specs)
    with DagsterInstance.ephemeral() as instance:
        result = materialize(build_sync_assets(specs), resources=resources, instance=instance)
    assert result.success
    keys = {
        m.asset_key
        for m in result.get_asset_materialization_events()
        and [e.materialization for e in result.get_asset_materialization_events()]
    }
    assert {
        AssetKey(["salesforce", "customer_extract"]),
        AssetKey(["hub", "customer_golden"]),
        AssetKey(["sap", "customer"]),
        AssetKey(["salesforce", "customer"]),
    } <= keys
    sap_push = next(
        e.materialization
        for e in result.get_asset_materialization_events()
        if e.materialization.asset_key == AssetKey(["sap", "customer"])
    )
    assert sap_push.metadata["created"].value == 1
    assert len(erp.rows) == 1
    assert next(iter(crm.rows.values()))["SAP_Number__c"] == next(iter(erp.rows))
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(GoldenRecord)).scalar() == 1


def test_jobs_per_entity_and_for_all() -> None:
    names = {job.name for job in build_sync_jobs()}
    assert {"sync_all", "sync_customer", "sync_product"} <= names

"""The quarantine_retry job: records fixed at their source are released and delivered,
ones still broken stay in quarantine with their attempts counted."""

import sqlalchemy as sa
from dagster import DagsterInstance

from app.defs.quarantine import quarantine_retry_job
from app.defs.resources import HubStoreResource
from hub.store import QuarantineEntry
from tests.sync.conftest import account
from tests.sync.test_resync_job import Holder


def test_retry_releases_fixed_records_and_keeps_broken_ones(setup, monkeypatch) -> None:
    make, crm, erp, engine = setup
    specs = list(make().specs.values())
    monkeypatch.setattr(
        "hub.sync.engine.load_code_lists",
        lambda _: {"terms": {"net30": "NT30", "net60": "NT60", "due_on_receipt": "NT00"}},
    )
    monkeypatch.setattr("hub.sync.engine.load_specs", lambda _: specs)
    fixed = crm.put(account("Fix Me", CurrencyIsoCode="XXY", Hub_Id__c="CUS-FIX"))
    crm.put(account("Still Bad", CurrencyIsoCode="QQQ", Hub_Id__c="CUS-BAD"))
    make().run(["customer"])
    crm.rows[fixed]["CurrencyIsoCode"] = "EUR"  # fixed at the source
    resources = {
        "hub_store": HubStoreResource(database_url=engine.url.render_as_string(False)),
        "salesforce": Holder(crm),
        "sap": Holder(erp),
        "billing": Holder(None),
        "pim": Holder(None),
        "wms": Holder(None),
    }
    config = {"ops": {"retry_quarantined": {"config": {"entity": "customer"}}}}
    with DagsterInstance.ephemeral() as instance:
        result = quarantine_retry_job.execute_in_process(
            run_config=config, resources=resources, instance=instance
        )
    assert result.output_for_node("retry_quarantined") == {
        "customer": {"retried": 2, "released": 1, "open": 1}
    }
    assert [r["CustomerName"] for r in erp.rows.values()] == ["Fix Me"]
    with engine.connect() as conn:
        still = conn.execute(
            sa.select(QuarantineEntry).where(QuarantineEntry.status == "open")
        ).one()
    assert still.external_key in (
        "CUS-BAD",
        next(k for k, r in crm.rows.items() if r["Name"] == "Still Bad"),
    )
    assert still.attempts >= 2 and "QQQ" in still.reason

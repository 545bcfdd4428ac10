"""Payment clearing flows from SAP: a billing document cleared in SAP (FI) marks the
invoice's amount paid in billing and on the Salesforce invoice, through one sync."""

from pathlib import Path

import pytest
import sqlalchemy as sa

from connectors import registry
from connectors.billing_schema import invoices
from hub.store import create_store_engine
from hub.store.migrate import upgrade
from hub.sync.engine import SyncEngine
from sandbox.runner import running_sandbox

pytestmark = pytest.mark.slow


def test_clearing_in_sap_reaches_billing_and_salesforce(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hub.sqlite'}"
    upgrade(url)
    with running_sandbox(tmp_path / "sb", seed=8, customers=15) as sb:
        env = sb.env

        def sync() -> None:
            connectors = {s: registry.build(s, env) for s in registry.configured_systems(env)}
            SyncEngine(create_store_engine(url), connectors).run()

        sync()
        billing = sa.create_engine(sb.billing_url)
        with billing.connect() as conn:
            hub_id, total, paid = conn.execute(
                sa.select(invoices.c.hub_id, invoices.c.total_minor, invoices.c.amount_paid_minor)
                .where(invoices.c.status == "open", invoices.c.amount_paid_minor == 0)
                .order_by(invoices.c.hub_id)
                .limit(1)
            ).one()
        assert paid == 0 and total > 0

        sap = registry.build("sap", env)
        (doc,) = [r for b in sap.read_by_keys("invoice", [hub_id]) for r in b.records]
        client = sap._client("API_BILLING_DOCUMENT_SRV")  # type: ignore[attr-defined]
        sap._fetch_csrf("API_BILLING_DOCUMENT_SRV")  # type: ignore[attr-defined]
        update = client.entity_sets.A_BillingDocument.update_entity(
            BillingDocument=doc["BillingDocument"]
        ).set(InvoiceClearingStatus="C")
        update.add_headers({"If-Match": doc["__etag"]})
        update.execute()  # the customer paid: FI cleared the document

        sync()
        with billing.connect() as conn:
            assert (
                conn.execute(
                    sa.select(invoices.c.amount_paid_minor).where(invoices.c.hub_id == hub_id)
                ).scalar_one()
                == total
            )
        billing.dispose()
        sf = registry.build("salesforce", env)
        (invoice,) = [r for b in sf.read_by_keys("invoice", [hub_id]) for r in b.records]
        assert float(invoice["Amount_Paid__c"]) == float(invoice["Total_Amount__c"])

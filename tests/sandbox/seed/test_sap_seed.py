"""The book as SAP holds it, read back over OData with pyodata: agreement with billing
(cross references, owned fields) and the planted SAP drift."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pyodata
import pytest
import requests
import sqlalchemy as sa

from connectors import billing_schema as S
from sandbox.runner import running_sandbox
from sandbox.seed import sap as native

pytestmark = pytest.mark.slow


def _client(env: dict[str, str], service: str) -> pyodata.Client:
    session = requests.Session()
    session.auth = (env["SAP_USER"], env["SAP_PASSWORD"])
    session.params = {"sap-client": env["SAP_CLIENT"]}  # type: ignore[assignment]
    return pyodata.Client(f"{env['SAP_ODATA_URL']}/sap/opu/odata/sap/{service}/", session)


def test_sap_agrees_with_billing_except_for_the_planted_drift(tmp_path: Path) -> None:
    pytest.importorskip("sandbox.sap")
    with running_sandbox(tmp_path / "sb", seed=4, customers=60, systems=("sap",)) as sb:
        manifest = sb.manifest()
        bp = _client(sb.env, "API_BUSINESS_PARTNER")
        customers = {
            c.YY1_HubId: c
            for c in bp.entity_sets.A_Customer.get_entities()
            .expand("to_CustomerSalesArea")
            .execute()
        }
        billing = sa.create_engine(sb.billing_url)
        with billing.connect() as conn:
            accounts = {r.hub_id: r for r in conn.execute(sa.select(S.accounts))}
        billing.dispose()
        missing = {e["key"] for e in manifest if e["system"] == "sap" and e["kind"] == "missing"}
        renamed = {
            e["key"] for e in manifest if e["system"] == "sap" and e["field"] == "legal_name"
        }
        terms = {
            e["key"] for e in manifest if e["system"] == "billing" and e["field"] == "payment_terms"
        }
        assert len(missing) == len(renamed) == len(terms) == 1
        assert set(customers) == set(accounts) - missing
        for hub_id, c in customers.items():
            account = accounts[hub_id]
            assert c.Customer == account.sap_customer_number
            assert (c.CustomerFullName != account.legal_name) == (hub_id in renamed)
            area = c.to_CustomerSalesArea[0]
            assert area.Currency == account.currency
            same_terms = area.CustomerPaymentTerms == native.PAYMENT_TERMS[account.payment_terms]
            assert same_terms != (hub_id in terms)
        docs = _client(sb.env, "API_BILLING_DOCUMENT_SRV").entity_sets.A_BillingDocument
        first = docs.get_entities().filter("InvoiceClearingStatus eq 'C'").top(1).execute()[0]
        net, tax, gross = (
            Decimal(str(x)) for x in (first.TotalNetAmount, first.TaxAmount, first.TotalGrossAmount)
        )
        assert gross == net + tax > 0
    seeded = json.loads((tmp_path / "sb" / "seed.json").read_text())
    assert "customer missing in sap" in seeded["drifts"]

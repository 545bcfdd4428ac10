"""The book as Salesforce holds it, through ``hub sandbox up``'s in-process runner: the
connected app from sandbox.env (JWT bearer with SALESFORCE_PRIVATE_KEY_FILE), Accounts,
Product2, Subscription__c and Invoice__c in agreement with billing, and the planted
Salesforce drift."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import requests
import sqlalchemy as sa
from simple_salesforce import Salesforce

from connectors import billing_schema as S
from hub.currency import exponent
from sandbox.runner import running_sandbox
from sandbox.seed import catalog as C
from sandbox.seed import xref
from sandbox.seed.book import Book
from sandbox.seed.drift import plan, withheld_invoices, withhold
from sandbox.seed.salesforce import monthly_recurring, subscription_id

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def _jwt_token(env: dict[str, str]) -> dict[str, Any]:
    login = env["SALESFORCE_LOGIN_URL"]
    key = Path(env["SALESFORCE_PRIVATE_KEY_FILE"]).read_bytes()
    assertion = jwt.encode(
        {
            "iss": env["SALESFORCE_CLIENT_ID"],
            "sub": env["SALESFORCE_USERNAME"],
            "aud": login,
            "exp": int(time.time()) + 120,
        },
        key,
        algorithm="RS256",
    )
    with httpx.Client(verify=env["HUB_CA_BUNDLE"], trust_env=False) as client:
        resp = client.post(
            f"{login}/services/oauth2/token",
            data={
                "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                "assertion": assertion,
            },
            headers={"Connection": "close"},
        )
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def test_salesforce_agrees_with_billing_except_for_the_planted_drift(tmp_path: Path) -> None:
    with running_sandbox(tmp_path / "sb", seed=5, customers=40, systems=("salesforce",)) as sb:
        env = sb.env
        token = _jwt_token(env)
        session = requests.Session()
        session.verify = env["HUB_CA_BUNDLE"]
        session.trust_env = False
        session.headers["Connection"] = "close"
        sf = Salesforce(
            instance_url=token["instance_url"],
            session_id=token["access_token"],
            version=env["SALESFORCE_API_VERSION"],
            session=session,
        )
        accounts = {
            r["Hub_Id__c"]: r
            for r in sf.query_all_iter("SELECT Id, Hub_Id__c, Name, Tax_Id__c FROM Account")
        }
        subs = list(
            sf.query_all_iter(
                "SELECT Id, Hub_Id__c, Account__r.Hub_Id__c, MRR__c, Paused_At__c, "
                "Resume_At__c FROM Subscription__c"
            )
        )
        invoices = {
            r["Hub_Id__c"]: r
            for r in sf.query_all_iter(
                "SELECT Id, Hub_Id__c, Total_Amount__c, CurrencyIsoCode, SAP_Billing_Document__c, "
                "Dunning_History__c FROM Invoice__c"
            )
        }
        products = sf.query("SELECT Hub_Id__c, IsActive FROM Product2")["records"]
        manifest = sb.manifest()
        billing = sa.create_engine(sb.billing_url)
        with billing.connect() as conn:
            billed = {r.hub_id: r for r in conn.execute(sa.select(S.accounts))}
        billing.dispose()
        session.close()

    missing = {e["key"] for e in manifest if e["system"] == "salesforce" and e["kind"] == "missing"}
    retaxed = {e["key"] for e in manifest if e["system"] == "salesforce" and e["field"] == "tax_id"}
    assert len(missing) == len(retaxed) == 1
    assert set(accounts) == set(billed) - missing
    for hub_id, row in accounts.items():
        account = billed[hub_id]
        assert row["Id"] == account.salesforce_account_id == xref.salesforce_account_id(hub_id)
        assert row["Name"] == account.legal_name
        assert (row["Tax_Id__c"] != account.tax_id) == (hub_id in retaxed)
    [gone] = missing
    assert not any(s["Account__r"]["Hub_Id__c"] == gone for s in subs)
    assert not any(key.startswith("INV-" + gone[4:]) for key in invoices)
    assert all(s["Id"] == subscription_id(s["Hub_Id__c"]) for s in subs)
    assert all(s["MRR__c"] is not None and s["MRR__c"] >= 0 for s in subs)
    assert {p["Hub_Id__c"] for p in products} == {p.sku for p in C.PRODUCTS}
    assert {p["Hub_Id__c"] for p in products if not p["IsActive"]} == {
        p.sku for p in C.PRODUCTS if not p.sellable
    }
    book = Book(seed=5, customers=40)
    # the planted unbilled period: billing never issued that invoice, so no system has it
    never_issued = withheld_invoices(plan(book))
    assert len(never_issued) == 1
    expected = {
        inv["hub_id"]: (inv, s.subscriptions)
        for s in book.slices()
        if s.customer["hub_id"] not in missing
        for inv in withhold(s, never_issued).invoices
    }
    assert set(invoices) == set(expected)
    for hub_id, row in invoices.items():
        inv, _ = expected[hub_id]
        assert row["Id"] == xref.salesforce_invoice_id(hub_id)
        total = Decimal(str(row["Total_Amount__c"])).scaleb(exponent(inv["currency"]))
        assert total == inv["total_minor"]
        assert row["CurrencyIsoCode"] == inv["currency"]
        assert (row["SAP_Billing_Document__c"] is None) == (inv["status"] == "draft")
        history = [
            f"{e['on']} stage {e['stage']}" + (f" {e['outcome']}" if e["outcome"] else "")
            for e in inv["dunning_events"]
        ]
        assert row["Dunning_History__c"] == ("\n".join(history) or None), hub_id
    assert any(row["Dunning_History__c"] for row in invoices.values()), "no dunning run seeded"
    by_hub = {s["Hub_Id__c"]: s for s in subs}
    for s in book.slices():
        for sub in s.subscriptions:
            if sub["hub_id"] in by_hub:
                row = by_hub[sub["hub_id"]]
                assert Decimal(str(row["MRR__c"])) == monthly_recurring(sub)
                pause = (sub.get("paused_at"), sub.get("resume_at"))
                paused = [str(d) if d else None for d in pause]
                assert [row["Paused_At__c"], row["Resume_At__c"]] == paused, sub["hub_id"]
    assert any(s["Paused_At__c"] for s in subs), "no paused subscription seeded"

"""Org settings of the Salesforce emulator that change what the API answers: the oldest
API version served (older ones are retired: 410 GONE), multi-currency, and State and
Country/Territory Picklists."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from simple_salesforce.exceptions import SalesforceMalformedRequest

from tests.sandbox.salesforce.conftest import Org, error_body, rest, sobject


def test_a_retired_version_answers_410_gone_a_future_one_404(
    org_factory: Callable[..., Org],
) -> None:
    org = org_factory(min_api_version="40.0", api_version="62.0")
    token = org.token()
    auth = {"Authorization": f"Bearer {token}"}
    with org.http() as http:
        for version in ("39.0", "30.0", "20.0"):
            resp = http.get(f"/services/data/v{version}/limits", headers=auth)
            assert resp.status_code == 410, version
            (error,) = resp.json()
            assert error["errorCode"] == "UNSUPPORTED_API_VERSION"
            assert version in error["message"]
        assert http.get("/services/data/v40.0/limits", headers=auth).status_code == 200
        missing = http.get("/services/data/v63.0/limits", headers=auth)
        assert missing.status_code == 404
        assert missing.json()[0]["errorCode"] == "NOT_FOUND"
        listed = [v["version"] for v in http.get("/services/data/").json()]
    assert listed[0] == "40.0" and listed[-1] == "62.0"


def test_a_single_currency_org_has_no_currency_iso_code_anywhere(
    org_factory: Callable[..., Org],
) -> None:
    org = org_factory(multi_currency=False, default_currency="CHF")
    sf = org.client()
    for name in ("Account", "Contact", "Product2", "Subscription__c", "Invoice__c"):
        fields = {f["name"] for f in sobject(sf, name).describe()["fields"]}
        assert "CurrencyIsoCode" not in fields and "Name" in fields, name
    # SOQL naming it: INVALID_FIELD with Salesforce's pointer, REST and Bulk alike
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.query("SELECT Id, CurrencyIsoCode FROM Account")
    (error,) = error_body(caught.value)
    assert error["errorCode"] == "INVALID_FIELD"
    assert "No such column 'CurrencyIsoCode' on entity 'Account'" in error["message"]
    with pytest.raises(SalesforceMalformedRequest):
        sf.query("SELECT Id FROM Invoice__c WHERE Account__r.CurrencyIsoCode = 'CHF'")
    # a write naming it: INVALID_FIELD for that record
    answer = rest(
        sf,
        "composite/sobjects/Account/Hub_Id__c",
        "PATCH",
        json={
            "allOrNone": False,
            "records": [
                {"attributes": {"type": "Account"}, "Hub_Id__c": "A1", "Name": "A"},
                {"attributes": {"type": "Account"}, "Hub_Id__c": "A2", "Name": "B",
                 "CurrencyIsoCode": "CHF"},
            ],
        },
    )  # fmt: skip
    assert answer[0]["success"] is True
    assert answer[1]["errors"][0]["statusCode"] == "INVALID_FIELD"
    # the org's currency is the Organization's
    (organization,) = sf.query("SELECT Id, DefaultCurrencyIsoCode FROM Organization")["records"]
    assert organization["DefaultCurrencyIsoCode"] == "CHF"
    assert organization["Id"] == org.settings.org_id


def test_a_multi_currency_org_defaults_new_records_to_the_corporate_currency(
    org_factory: Callable[..., Org],
) -> None:
    org = org_factory(default_currency="EUR")
    sf = org.client()
    field = next(
        f for f in sobject(sf, "Account").describe()["fields"] if f["name"] == "CurrencyIsoCode"
    )
    assert (field["type"], field["length"], field["restrictedPicklist"]) == ("picklist", 3, True)
    assert field["defaultValue"] == "EUR"
    made = sobject(sf, "Account").create({"Name": "A", "Hub_Id__c": "A1"})
    assert sobject(sf, "Account").get(made["id"])["CurrencyIsoCode"] == "EUR"
    (organization,) = sf.query("SELECT DefaultCurrencyIsoCode FROM Organization")["records"]
    assert organization["DefaultCurrencyIsoCode"] == "EUR"


def test_state_and_country_picklists_keep_code_and_name_in_step(
    org_factory: Callable[..., Org],
) -> None:
    org = org_factory(state_country_picklists=True)
    sf = org.client()
    account = sobject(sf, "Account")
    fields = {f["name"]: f for f in account.describe()["fields"]}
    code = fields["BillingCountryCode"]
    assert code["type"] == "picklist" and "ShippingCountryCode" in fields
    assert {"value": "NO", "label": "Norway"}.items() <= next(
        v for v in code["picklistValues"] if v["value"] == "NO"
    ).items()
    # the code sets the name, the name (integration value) sets the code
    a = account.create({"Name": "A", "BillingCountryCode": "NO", "ShippingCountry": "germany"})
    got = account.get(a["id"])
    assert (got["BillingCountryCode"], got["BillingCountry"]) == ("NO", "Norway")
    assert (got["ShippingCountryCode"], got["ShippingCountry"]) == ("DE", "Germany")
    # an ISO code in the text field, a code the org does not allow, or a mismatch: refused
    for values in (
        {"BillingCountry": "NO"},
        {"BillingCountryCode": "XX"},
        {"BillingCountryCode": "NO", "BillingCountry": "Sweden"},
    ):
        with pytest.raises(SalesforceMalformedRequest) as caught:
            account.update(a["id"], values)
        (error,) = error_body(caught.value)
        assert error["errorCode"] == "FIELD_INTEGRITY_EXCEPTION", values
        assert "select a country/territory from the list of valid countries" in error["message"]
    # null clears both
    account.update(a["id"], {"BillingCountryCode": None})
    got = account.get(a["id"])
    assert got["BillingCountryCode"] is None and got["BillingCountry"] is None
    rows = sf.query("SELECT Id FROM Account WHERE ShippingCountryCode = 'DE'")["records"]
    assert [r["Id"] for r in rows] == [a["id"]]


def test_without_country_picklists_the_code_fields_do_not_exist(org: Org) -> None:
    fields = {f["name"] for f in sobject(org.client(), "Account").describe()["fields"]}
    assert "BillingCountry" in fields and "BillingCountryCode" not in fields

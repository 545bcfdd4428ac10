"""Org settings of the Salesforce emulator that change what the API answers: the oldest
API version served (older ones are retired: 410 GONE), multi-currency, and State and
Country/Territory Picklists."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

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


def test_state_picklists_keep_the_state_code_and_name_in_step_with_the_country(
    org_factory: Callable[..., Org],
) -> None:
    org = org_factory(state_country_picklists=True)
    sf = org.client()
    account = sobject(sf, "Account")
    fields = {f["name"]: f for f in account.describe()["fields"]}
    code = fields["BillingStateCode"]
    assert (code["type"], code["length"]) == ("picklist", 10) and "ShippingStateCode" in fields
    assert code["dependentPicklist"] is True and code["controllerName"] == "BillingCountryCode"
    countries = [v["value"] for v in fields["BillingCountryCode"]["picklistValues"]]
    california = next(v for v in code["picklistValues"] if v["label"] == "California")
    assert california["value"] == "CA"
    bitmap = base64.b64decode(california["validFor"])
    us = countries.index("US")
    assert bitmap[us // 8] & (0x80 >> (us % 8))
    # the code sets the name; the name sets the code
    a = account.create(
        {"Name": "A", "BillingCountryCode": "US", "BillingStateCode": "CA",
         "ShippingCountryCode": "CA", "ShippingState": "ontario"}
    )  # fmt: skip
    got = account.get(a["id"])
    assert (got["BillingStateCode"], got["BillingState"]) == ("CA", "California")
    assert (got["ShippingStateCode"], got["ShippingState"]) == ("ON", "Ontario")
    # refused: a code in the text field, a code the country lacks, a disagreeing pair, a
    # name of another country's state, a state without a country, a country change the
    # kept state is not in
    for values in (
        {"BillingState": "TX"},
        {"BillingStateCode": "ZZ"},
        {"BillingStateCode": "ON"},
        {"BillingStateCode": "TX", "BillingState": "California"},
        {"BillingState": "Ontario"},
        {"BillingCountryCode": "CA"},
    ):
        with pytest.raises(SalesforceMalformedRequest) as caught:
            account.update(a["id"], values)
        (error,) = error_body(caught.value)
        assert error["errorCode"] == "FIELD_INTEGRITY_EXCEPTION", values
        assert "select a state from the list of valid states" in error["message"], values
    with pytest.raises(SalesforceMalformedRequest):
        account.create({"Name": "B", "BillingStateCode": "CA"})
    got = account.get(a["id"])
    assert (got["BillingStateCode"], got["BillingState"]) == ("CA", "California")
    # the pair may also spell the code in the text field; a country and state change
    # together; clearing the country clears the state
    account.update(a["id"], {"BillingStateCode": "TX", "BillingState": "TX"})
    account.update(a["id"], {"ShippingCountryCode": "US", "ShippingStateCode": "WA"})
    got = account.get(a["id"])
    assert (got["BillingStateCode"], got["BillingState"]) == ("TX", "Texas")
    assert (got["ShippingStateCode"], got["ShippingState"]) == ("WA", "Washington")
    account.update(a["id"], {"ShippingCountryCode": None})
    got = account.get(a["id"])
    assert got["ShippingStateCode"] is None and got["ShippingState"] is None
    rows = sf.query("SELECT Id FROM Account WHERE BillingStateCode = 'TX'")["records"]
    assert [r["Id"] for r in rows] == [a["id"]]


def test_seeding_a_picklist_org_gives_valid_codes_and_names_for_every_seeded_region(
    tmp_path: Path,
) -> None:
    from sandbox.faults import FaultState
    from sandbox.salesforce import SalesforceSettings, create_app, seed_records
    from sandbox.salesforce.ids import make_id
    from sandbox.salesforce.schema import org_schema
    from sandbox.seed.catalog import REGIONS
    from sandbox.store import DocumentStore

    places = [(r.country, region) for r in REGIONS for _, _, region in r.cities]
    records = [
        {"Id": make_id("001", i + 1), "Name": f"A{i}", "BillingCountry": country,
         "BillingState": region, "ShippingCountry": country, "ShippingState": region}
        for i, (country, region) in enumerate(places)
    ]  # fmt: skip
    # seeded as the sandbox seed does (without the org's settings), then the org starts
    store = DocumentStore(tmp_path / "sf.sqlite")
    seed_records(store, "Account", records)
    create_app(store, FaultState(seed=1), SalesforceSettings(state_country_picklists=True))
    # and seeded straight into the org's shape
    other = DocumentStore(tmp_path / "sf2.sqlite")
    seed_records(other, "Account", records, org_schema(country_picklists=True))
    for docs in (list(store.iter("Account")), list(other.iter("Account"))):
        assert len(docs) == len(places)
        for doc, (country, region) in zip(docs, places, strict=True):
            assert doc["BillingCountryCode"] == doc["ShippingCountryCode"] == country
            assert doc["BillingStateCode"] == doc["ShippingStateCode"] == region
            if region:
                assert doc["BillingState"] not in (None, region), doc
    by_region = {d["BillingStateCode"]: d["BillingState"] for d in store.iter("Account")}
    assert by_region["CA"] == "California" and by_region["BC"] == "British Columbia"
    with pytest.raises(ValueError, match="not in the org's State and Country picklists"):
        seed_records(
            other,
            "Account",
            [{"Id": make_id("001", 999), "Name": "X", "BillingCountry": "US",
              "BillingState": "ON"}],
            org_schema(country_picklists=True),
        )  # fmt: skip
    store.close()
    other.close()

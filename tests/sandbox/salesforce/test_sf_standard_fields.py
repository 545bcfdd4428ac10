"""The emulator's describe holds the standard fields to the in-repo reference taken from
the Salesforce Object Reference (sandbox/salesforce/standard_fields.json): every standard
field it describes is in the reference with the same type and length, in every org shape
(multi- or single-currency, with or without State and Country/Territory Picklists)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sandbox.salesforce.rest import describe_object
from sandbox.salesforce.schema import org_schema

REFERENCE = json.loads(
    (Path(__file__).parents[3] / "sandbox/salesforce/standard_fields.json").read_text()
)


@pytest.mark.parametrize(
    ("multi_currency", "country_picklists"), [(True, False), (False, True), (True, True)]
)
def test_describe_matches_the_salesforce_object_reference(
    multi_currency: bool, country_picklists: bool
) -> None:
    schema = org_schema(multi_currency, country_picklists)
    checked = 0
    for obj in schema.objects.values():
        expected = REFERENCE["custom_objects"] if obj.custom else REFERENCE["objects"][obj.name]
        for field in describe_object(obj, "62.0", schema)["fields"]:
            if field["custom"]:
                continue
            name = field["name"]
            assert name in expected, f"{obj.name}.{name} is not in the reference"
            assert [field["type"], field["length"]] == expected[name], f"{obj.name}.{name}"
            checked += 1
    assert checked > 80
    account = {f["name"] for f in describe_object(schema.objects["account"], "62.0")["fields"]}
    assert ("CurrencyIsoCode" in account) is multi_currency
    assert ("BillingCountryCode" in account) is country_picklists
    assert ("BillingStateCode" in account) is country_picklists


def test_the_fields_the_issue_names() -> None:
    product = {
        f["name"]: f for f in describe_object(org_schema().objects["product2"], "62.0")["fields"]
    }
    assert (product["Family"]["type"], product["Family"]["length"]) == ("picklist", 40)
    currency = product["CurrencyIsoCode"]
    assert (currency["type"], currency["length"], currency["restrictedPicklist"]) == (
        "picklist", 3, True,
    )  # fmt: skip

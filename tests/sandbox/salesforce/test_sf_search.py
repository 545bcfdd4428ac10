"""SOSL through simple-salesforce's ``sf.search`` and ``sf.quick_search``: terms, phrases,
wildcards, operators, search groups, RETURNING with its own WHERE / ORDER BY / LIMIT."""

from __future__ import annotations

from typing import Any

import pytest
from simple_salesforce.exceptions import SalesforceMalformedRequest

from tests.sandbox.salesforce.conftest import Org, error_body, sobject

pytestmark = pytest.mark.timeout(60)


def _book(org: Org) -> dict[str, str]:
    sf = org.client()
    account, contact = sobject(sf, "Account"), sobject(sf, "Contact")
    made = {
        "acme": account.create({"Name": "Acme Logistics GmbH", "Hub_Id__c": "CUS-S1"})["id"],
        "acorn": account.create({"Name": "Acorn Retail", "Hub_Id__c": "CUS-S2"})["id"],
        "north": account.create({"Name": "Northwind Acme Partner", "Hub_Id__c": "CUS-S3"})["id"],
    }
    made["jane"] = contact.create(
        {"LastName": "Doe", "FirstName": "Jane", "Email": "jane.doe@acme.example",
         "AccountId": made["acme"]}
    )["id"]  # fmt: skip
    return made


def _found(result: dict[str, Any]) -> list[tuple[str, str]]:
    return [(r["attributes"]["type"], r["Id"]) for r in result["searchRecords"]]


def test_words_match_whole_words_of_any_object_without_returning(org: Org) -> None:
    made = _book(org)
    found = _found(org.client().quick_search("Acme"))
    ids = {i for _, i in found}
    assert {made["acme"], made["north"], made["jane"]} <= ids  # the e-mail holds "acme" too
    assert made["acorn"] not in ids
    assert all(
        set(r) == {"attributes", "Id"} for r in org.client().quick_search("Acme")["searchRecords"]
    )


def test_returning_with_fields_where_order_and_limit(org: Org) -> None:
    made = _book(org)
    sf = org.client()
    result = sf.search(
        "FIND {Ac*} IN NAME FIELDS RETURNING Account(Id, Name WHERE Hub_Id__c != 'CUS-S3' "
        "ORDER BY Name DESC LIMIT 5)"
    )
    records = result["searchRecords"]
    assert [r["Name"] for r in records] == ["Acorn Retail", "Acme Logistics GmbH"]
    assert records[0]["Id"] == made["acorn"]


@pytest.mark.parametrize(
    ("terms", "expected"),
    [
        ('"Acme Logistics"', {"acme"}),
        ("Acme AND NOT Northwind", {"acme"}),
        ("Acorn OR Northwind", {"acorn", "north"}),
        ("(Acorn OR Acme) Partner", {"north"}),
        ("Ac?rn", {"acorn"}),
    ],
)
def test_operators_phrases_and_wildcards(org: Org, terms: str, expected: set[str]) -> None:
    made = _book(org)
    result = org.client().search(f"FIND {{{terms}}} RETURNING Account")
    assert {i for _, i in _found(result)} == {made[k] for k in expected}


def test_email_and_phone_groups(org: Org) -> None:
    made = _book(org)
    result = org.client().search(
        "FIND {jane.doe@acme.example} IN EMAIL FIELDS RETURNING Contact(Id, Email)"
    )
    assert [(r["Id"], r["Email"]) for r in result["searchRecords"]] == [
        (made["jane"], "jane.doe@acme.example")
    ]
    assert (
        org.client().search("FIND {Acme} IN EMAIL FIELDS RETURNING Account")["searchRecords"] == []
    )


@pytest.mark.parametrize(
    ("sosl", "code"),
    [
        ("FIND {a}", "INVALID_SEARCH"),
        ("SEARCH Acme", "MALFORMED_SEARCH"),
        ("FIND {Acme} RETURNING Nope__c", "INVALID_TYPE"),
    ],
)
def test_malformed_searches_are_refused(org: Org, sosl: str, code: str) -> None:
    with pytest.raises(SalesforceMalformedRequest) as caught:
        org.client().search(sosl)
    [error] = error_body(caught.value)
    assert error["errorCode"] == code

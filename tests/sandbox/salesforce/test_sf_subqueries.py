"""Parent-to-child relationship subqueries through simple-salesforce: the nested
``{totalSize, done, records}`` (or null) per parent, the subquery's own WHERE, ORDER BY and
per-parent LIMIT, the relationship names describe lists, and what Salesforce refuses (an
unknown relationship, a second level, Bulk API 2.0)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from simple_salesforce.exceptions import SalesforceMalformedRequest

from sandbox.store import DocumentStore
from tests.sandbox.salesforce.conftest import Org, bulk2, error_body, rest, sobject

pytestmark = pytest.mark.timeout(60)

URL = "/services/data/v62.0/sobjects/"


def _account(org: Org, name: str) -> str:
    created = sobject(org.client(), "Account").create({"Name": name, "Hub_Id__c": f"SQ-{name}"})
    return str(created["id"])


def _contact(org: Org, account: str | None, last: str, title: str | None = None) -> str:
    values: dict[str, Any] = {"LastName": last, "Title": title}
    if account:
        values["AccountId"] = account
    return str(sobject(org.client(), "Contact").create(values)["id"])


def _invoice(org: Org, account: str, number: str, status: str, total: float) -> str:
    values = {
        "Account__c": account,
        "Invoice_Number__c": number,
        "Status__c": status,
        "Total_Amount__c": total,
    }
    return str(sobject(org.client(), "Invoice__c").create(values)["id"])


def _child(kind: str, record_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "attributes": {"type": kind, "url": f"{URL}{kind}/{record_id}"},
        "Id": record_id,
        **fields,
    }


def test_contacts_nest_under_each_account_or_null(org: Org) -> None:
    acme, bare, zeta = _account(org, "Acme"), _account(org, "Bare"), _account(org, "Zeta")
    ada, bob = _contact(org, acme, "Ada"), _contact(org, acme, "Bob")
    cy = _contact(org, zeta, "Cy")
    _contact(org, None, "Orphan")
    result = org.client().query(
        "SELECT Id, Name, (SELECT Id, LastName FROM Contacts ORDER BY LastName) "
        "FROM Account WHERE Hub_Id__c LIKE 'SQ-%' ORDER BY Name"
    )
    assert result["totalSize"] == 3 and result["done"] is True
    assert result["records"] == [
        {
            "attributes": {"type": "Account", "url": f"{URL}Account/{acme}"},
            "Id": acme,
            "Name": "Acme",
            "Contacts": {
                "totalSize": 2,
                "done": True,
                "records": [
                    _child("Contact", ada, LastName="Ada"),
                    _child("Contact", bob, LastName="Bob"),
                ],
            },
        },
        {
            "attributes": {"type": "Account", "url": f"{URL}Account/{bare}"},
            "Id": bare,
            "Name": "Bare",
            "Contacts": None,
        },
        {
            "attributes": {"type": "Account", "url": f"{URL}Account/{zeta}"},
            "Id": zeta,
            "Name": "Zeta",
            "Contacts": {
                "totalSize": 1,
                "done": True,
                "records": [_child("Contact", cy, LastName="Cy")],
            },
        },
    ]


def test_custom_relationship_with_where_order_and_limit_per_parent(org: Org) -> None:
    north, south = _account(org, "North"), _account(org, "South")
    n1 = _invoice(org, north, "N-1", "open", 10)
    n2 = _invoice(org, north, "N-2", "open", 30)
    n3 = _invoice(org, north, "N-3", "open", 20)
    _invoice(org, north, "N-4", "paid", 99)
    s1 = _invoice(org, south, "S-1", "open", 5)
    _invoice(org, south, "S-2", "void", 7)
    records = org.client().query(
        "SELECT Name, (SELECT Invoice_Number__c, Total_Amount__c, Account__r.Name "
        "FROM invoices__r WHERE Status__c = 'open' ORDER BY Total_Amount__c DESC LIMIT 2), "
        "Hub_Id__c FROM Account WHERE Name IN ('North', 'South') ORDER BY Name"
    )["records"]
    # the relationship key sits where the select list had the subquery
    assert [list(r) for r in records] == [["attributes", "Name", "Invoices__r", "Hub_Id__c"]] * 2
    north_invoices = records[0]["Invoices__r"]
    assert north_invoices["totalSize"] == 2 and north_invoices["done"] is True
    got = [
        (r["attributes"]["url"], r["Invoice_Number__c"], r["Total_Amount__c"], r["Account__r"])
        for r in north_invoices["records"]
    ]
    parent = {"attributes": {"type": "Account", "url": f"{URL}Account/{north}"}, "Name": "North"}
    assert got == [
        (f"{URL}Invoice__c/{n2}", "N-2", 30.0, parent),
        (f"{URL}Invoice__c/{n3}", "N-3", 20.0, parent),
    ]
    assert n1 not in str(records)  # LIMIT 2 counts per parent: North's third open one is cut
    south_invoices = records[1]["Invoices__r"]["records"]
    assert [r["attributes"]["url"] for r in south_invoices] == [f"{URL}Invoice__c/{s1}"]


def test_subquery_where_has_the_outer_operators(org: Org) -> None:
    acme = _account(org, "Acme")
    for last, title in (("Ames", "CFO"), ("Avery", None), ("Baker", "CEO"), ("Allen", "CTO")):
        _contact(org, acme, last, title)
    soql = (
        "SELECT Name, (SELECT LastName, Title FROM Contacts WHERE (LastName LIKE 'A%' "
        "AND Title != null) OR Title IN ('CEO') ORDER BY Title DESC NULLS LAST) FROM Account "
        f"WHERE Id = '{acme}'"
    )
    [record] = org.client().query(soql)["records"]
    assert [(r["LastName"], r["Title"]) for r in record["Contacts"]["records"]] == [
        ("Allen", "CTO"),
        ("Ames", "CFO"),
        ("Baker", "CEO"),
    ]
    none = org.client().query(
        f"SELECT Name, (SELECT LastName FROM Contacts WHERE NOT LastName LIKE '%') "
        f"FROM Account WHERE Id = '{acme}'"
    )
    assert none["records"][0]["Contacts"] is None


def test_deleted_children_only_in_query_all_and_new_ones_show_up(org: Org) -> None:
    acme = _account(org, "Acme")
    kept, gone = _contact(org, acme, "Kept"), _contact(org, acme, "Gone")
    sf = org.client()
    soql = (
        "SELECT Id, (SELECT LastName FROM Contacts ORDER BY LastName) FROM Account "
        f"WHERE Id = '{acme}'"
    )

    def names(result: dict[str, Any]) -> list[str]:
        return [r["LastName"] for r in result["records"][0]["Contacts"]["records"]]

    assert names(sf.query(soql)) == ["Gone", "Kept"]
    sobject(sf, "Contact").delete(gone)
    _contact(org, acme, "Late")
    # the parsed query is cached; its children are read when it runs
    assert names(sf.query(soql)) == ["Kept", "Late"]
    assert names(sf.query_all(soql, include_deleted=True)) == ["Gone", "Kept", "Late"]
    assert kept != gone


def test_children_follow_their_parents_across_pages(org: Org) -> None:
    org.settings.query_batch_size = 3
    accounts = [_account(org, f"P{i}") for i in range(5)]
    contacts = {a: _contact(org, a, f"C{i}") for i, a in enumerate(accounts) if i % 2 == 0}
    sf = org.client()
    first = sf.query(
        "SELECT Id, (SELECT Id FROM Contacts) FROM Account WHERE Name LIKE 'P%' ORDER BY Name"
    )
    assert first["done"] is False and first["totalSize"] == 5
    second = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    records = first["records"] + second["records"]
    assert [r["Id"] for r in records] == accounts
    got = {
        r["Id"]: None if r["Contacts"] is None else [c["Id"] for c in r["Contacts"]["records"]]
        for r in records
    }
    assert got == {a: [contacts[a]] if a in contacts else None for a in accounts}


def test_child_object_is_read_once_per_query(org: Org, monkeypatch: pytest.MonkeyPatch) -> None:
    accounts = [_account(org, f"R{i}") for i in range(6)]
    for i, account in enumerate(accounts):
        for j in range(i % 3):
            _contact(org, account, f"L{i}{j}")
    scans: list[str] = []
    real_iter = DocumentStore.iter

    def counting(
        self: DocumentStore, collection: str, batch_size: int = 2000
    ) -> Iterator[dict[str, Any]]:
        scans.append(collection)
        return real_iter(self, collection, batch_size)

    monkeypatch.setattr(DocumentStore, "iter", counting)
    records = org.client().query(
        "SELECT Name, (SELECT LastName FROM Contacts) FROM Account WHERE Name LIKE 'R%' "
        "ORDER BY Name"
    )["records"]
    sizes = [0 if r["Contacts"] is None else r["Contacts"]["totalSize"] for r in records]
    assert sizes == [0, 1, 2, 0, 1, 2]
    assert scans.count("Contact") == 1


def test_describe_names_the_child_relationships_subqueries_use(org: Org) -> None:
    sf = org.client()
    described = rest(sf, "sobjects/Account/describe")["childRelationships"]
    named = {(c["childSObject"], c["field"]): c["relationshipName"] for c in described}
    assert named[("Contact", "AccountId")] == "Contacts"
    assert named[("Account", "ParentId")] == "ChildAccounts"
    assert named[("Subscription__c", "Account__c")] == "Subscriptions__r"
    assert named[("Invoice__c", "Account__c")] == "Invoices__r"
    subscription = rest(sf, "sobjects/Subscription__c/describe")["childRelationships"]
    assert [(c["childSObject"], c["relationshipName"]) for c in subscription] == [
        ("Invoice__c", "Invoices__r")
    ]
    acme = _account(org, "Acme")
    for name in filter(None, named.values()):  # every name describe gives can be queried
        [record] = sf.query(f"SELECT Id, (SELECT Id FROM {name}) FROM Account WHERE Id = '{acme}'")[
            "records"
        ]
        assert record[name] is None


@pytest.mark.parametrize(
    ("soql", "code", "column", "message"),
    [
        (
            "SELECT Id, (SELECT Id FROM Contact) FROM Account",
            "INVALID_TYPE",
            28,
            "Didn't understand relationship 'Contact' in FROM part of query call. If you are "
            "attempting to use a custom relationship, be sure to append the '__r' after the "
            "custom relationship name. Please reference your WSDL or the describe call for the "
            "appropriate names.",
        ),
        (
            "SELECT Id, (SELECT Id FROM Invoices) FROM Account",
            "INVALID_TYPE",
            28,
            "Didn't understand relationship 'Invoices' in FROM part of query call.",
        ),
        (
            "SELECT Id, (SELECT Id, (SELECT Id FROM Invoices__r) FROM Subscriptions__r) "
            "FROM Account",
            "MALFORMED_QUERY",
            24,
            "the sandbox supports one level of parent-to-child subqueries",
        ),
        (
            "SELECT COUNT(Id), (SELECT Id FROM Contacts) FROM Account",
            "MALFORMED_QUERY",
            19,
            "an aggregate query cannot hold a subquery",
        ),
        (
            "SELECT Id, (SELECT Nope__c FROM Contacts) FROM Account",
            "INVALID_FIELD",
            20,
            "No such column 'Nope__c' on entity 'Contact'.",
        ),
    ],
)
def test_refused_subqueries(org: Org, soql: str, code: str, column: int, message: str) -> None:
    with pytest.raises(SalesforceMalformedRequest) as caught:
        org.client().query(soql)
    [error] = error_body(caught.value)
    assert error["errorCode"] == code
    pointer = f"\n{soql}\n{' ' * (column - 1)}^\nERROR at Row:1:Column:{column}\n"
    assert error["message"].startswith(pointer + message)


def test_bulk_api_2_refuses_subqueries(org: Org) -> None:
    _contact(org, _account(org, "Acme"), "Ada")
    sf = org.client()
    with pytest.raises(SalesforceMalformedRequest) as refused:
        list(bulk2(sf, "Account").query("SELECT Id, (SELECT Id FROM Contacts) FROM Account"))
    [error] = error_body(refused.value)
    assert error == {
        "errorCode": "API_ERROR",
        "message": "Aggregate Relationships not supported in Bulk V2 Query with CSV content type",
    }

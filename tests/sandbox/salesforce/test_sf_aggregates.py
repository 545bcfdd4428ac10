"""Aggregate SOQL through simple-salesforce: COUNT(field), COUNT_DISTINCT, SUM, AVG, MIN,
MAX, aliases and exprN names, GROUP BY with ORDER BY and LIMIT, and what Salesforce
refuses (a field neither grouped nor aggregated, SUM of text, queryMore, Bulk API 2.0)."""

from __future__ import annotations

from typing import Any

import pytest
from simple_salesforce.exceptions import SalesforceMalformedRequest

from tests.sandbox.salesforce.conftest import Org, bulk2, error_body, sobject

pytestmark = pytest.mark.timeout(60)


def _accounts(org: Org) -> None:
    account = sobject(org.client(), "Account")
    rows = [("A", "SMB", 1), ("B", "SMB", 3), ("C", "Enterprise", 2), ("D", None, None)]
    for name, segment, level in rows:
        values: dict[str, Any] = {"Name": name, "Hub_Id__c": f"CUS-AG{name}"}
        if segment:
            values["Segment__c"] = segment
        if level is not None:
            values["Dunning_Level__c"] = level
        account.create(values)


def _records(org: Org, soql: str) -> list[dict[str, Any]]:
    result = org.client().query(soql)
    records = result["records"]
    assert result["totalSize"] == len(records) and result["done"] is True
    for record in records:
        assert record.pop("attributes") == {"type": "AggregateResult"}
    return [dict(r) for r in records]


def test_aggregates_without_group_by_are_one_row(org: Org) -> None:
    _accounts(org)
    soql = (
        "SELECT COUNT(Id), COUNT(Segment__c) segments, COUNT_DISTINCT(Segment__c), "
        "SUM(Dunning_Level__c), AVG(Dunning_Level__c), MIN(Name), MAX(Dunning_Level__c) "
        "FROM Account WHERE Hub_Id__c LIKE 'CUS-AG%'"
    )
    assert _records(org, soql) == [
        {
            "expr0": 4,
            "segments": 3,
            "expr1": 2,
            "expr2": 6.0,
            "expr3": 2.0,
            "expr4": "A",
            "expr5": 3.0,
        }
    ]
    # nothing matched: still one row, COUNT 0 and the others null
    none = _records(org, "SELECT COUNT(Id), SUM(Dunning_Level__c) FROM Account WHERE Name = 'x'")
    assert none == [{"expr0": 0, "expr1": None}]


def test_group_by_with_order_and_limit(org: Org) -> None:
    _accounts(org)
    soql = (
        "SELECT Segment__c, COUNT(Id) n FROM Account WHERE Hub_Id__c LIKE 'CUS-AG%' "
        "GROUP BY Segment__c ORDER BY COUNT(Id) DESC, Segment__c"
    )
    assert _records(org, soql) == [
        {"Segment__c": "SMB", "n": 2},
        {"Segment__c": None, "n": 1},
        {"Segment__c": "Enterprise", "n": 1},
    ]
    top = _records(org, soql + " LIMIT 1")
    assert top == [{"Segment__c": "SMB", "n": 2}]


@pytest.mark.parametrize(
    ("soql", "code", "words"),
    [
        (
            "SELECT Name, COUNT(Id) FROM Account GROUP BY Segment__c",
            "MALFORMED_QUERY",
            "Field must be grouped or aggregated: Name",
        ),
        (
            "SELECT SUM(Name) FROM Account",
            "INVALID_FIELD",
            "does not support aggregate operator SUM",
        ),
        ("SELECT Name n FROM Account", "MALFORMED_QUERY", "unexpected token: 'n'"),
        (
            "SELECT Dunning_Level__c, COUNT(Id) FROM Account GROUP BY Dunning_Level__c",
            "INVALID_FIELD",
            "field 'Dunning_Level__c' can not be grouped in a query call",
        ),
        (
            "SELECT COUNT(BillingStreet) FROM Account",
            "INVALID_FIELD",
            "does not support aggregate operator COUNT",
        ),
    ],
)
def test_what_salesforce_refuses(org: Org, soql: str, code: str, words: str) -> None:
    with pytest.raises(SalesforceMalformedRequest) as caught:
        org.client().query(soql)
    [error] = error_body(caught.value)
    assert error["errorCode"] == code and words in error["message"]


def test_an_aggregate_result_has_no_query_more_and_bulk_refuses_it(org: Org) -> None:
    org.settings.query_batch_size = 2
    _accounts(org)
    sf = org.client()
    first = sf.query("SELECT Name, COUNT(Id) FROM Account GROUP BY Name")
    assert first["done"] is False and len(first["records"]) == 2
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    [error] = error_body(caught.value)
    assert error["errorCode"] == "INVALID_QUERY_LOCATOR"
    assert "Aggregate query does not support queryMore()" in error["message"]
    with pytest.raises(SalesforceMalformedRequest) as refused:
        list(
            bulk2(sf, "Account").query(
                "SELECT Segment__c, COUNT(Id) FROM Account GROUP BY Segment__c"
            )
        )
    assert "GROUP BY" in str(refused.value)


def test_describe_says_which_fields_group_and_aggregate_as_queries_enforce(org: Org) -> None:
    fields = {f["name"]: f for f in sobject(org.client(), "Account").describe()["fields"]}
    assert fields["Segment__c"]["groupable"] and fields["Segment__c"]["aggregatable"]
    assert not fields["Dunning_Level__c"]["groupable"]
    assert fields["Dunning_Level__c"]["aggregatable"]
    assert not fields["BillingStreet"]["aggregatable"]
    # every field carries the describe properties clients read, as Salesforce sends them
    for name in ("calculatedFormula", "encrypted", "inlineHelpText", "cascadeDelete"):
        assert all(name in f for f in fields.values()), name
    assert fields["BillingStreet"]["extraTypeInfo"] == "plaintextarea"

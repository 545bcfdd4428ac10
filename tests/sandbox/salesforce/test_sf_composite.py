"""Composite resources (composite/batch, composite, composite/tree) through simple-salesforce:
records really written and read back, references resolved, halting, and the refusals."""

from __future__ import annotations

from typing import Any

import pytest
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceError, SalesforceMalformedRequest

from tests.sandbox.salesforce.conftest import (
    VERSION,
    Org,
    account_id,
    error_body,
    rest,
    seed_accounts,
    sobject,
)

pytestmark = pytest.mark.timeout(60)

BASE = f"/services/data/v{VERSION}"


def names(sf: Salesforce, like: str) -> list[str]:
    """Names of live accounts matching a LIKE pattern, sorted."""
    found = sf.query(f"SELECT Name FROM Account WHERE Name LIKE '{like}' ORDER BY Name")
    return [r["Name"] for r in found["records"]]


def refused(sf: Salesforce, path: str, payload: Any) -> list[dict[str, Any]]:
    """The error list of a request the resource refuses with 400."""
    with pytest.raises(SalesforceMalformedRequest) as info:
        rest(sf, path, "POST", json=payload)
    return error_body(info.value)


# -- composite/batch -----------------------------------------------------------------------
def test_batch_runs_each_subrequest_through_the_real_resources(org: Org) -> None:
    seed_accounts(org.store, 2)
    sf = org.client()
    first, second = account_id(0), account_id(1)
    answer = rest(
        sf,
        "composite/batch",
        "POST",
        json={
            "batchRequests": [
                {"method": "POST", "url": f"v{VERSION}/sobjects/Account", "richInput": {
                    "Name": "Batch Made", "Hub_Id__c": "CUS-B1"}},
                {"method": "PATCH", "url": f"{BASE}/sobjects/Account/{first}",
                 "richInput": {"Name": "Renamed In Batch"}},
                {"method": "GET", "url": f"v{VERSION}/sobjects/Account/{first}?fields=Name"},
                {"method": "DELETE", "url": f"v{VERSION}/sobjects/Account/{second}"},
                {"method": "GET", "url": f"v{VERSION}/query?q=SELECT+Id+FROM+Account"},
            ]
        },
    )  # fmt: skip
    assert answer["hasErrors"] is False
    created, patched, read, deleted, queried = answer["results"]
    assert created["statusCode"] == 201 and created["result"]["success"] is True
    assert patched == {"statusCode": 204, "result": None}
    assert read["statusCode"] == 200 and read["result"]["Name"] == "Renamed In Batch"
    assert deleted == {"statusCode": 204, "result": None}
    # the query ran after the delete and the insert, and saw both
    assert queried["result"]["totalSize"] == 2
    account = sobject(sf, "Account")
    assert account.get(created["result"]["id"])["Hub_Id__c"] == "CUS-B1"
    assert account.get(first)["Name"] == "Renamed In Batch"
    assert names(sf, "%") == ["Batch Made", "Renamed In Batch"]


def test_batch_failure_does_not_undo_the_others_and_halt_on_error_stops(org: Org) -> None:
    sf = org.client()
    url = f"v{VERSION}/sobjects/Account"
    requests = [
        {"method": "POST", "url": url, "richInput": {"Name": "Before Failure"}},
        {"method": "POST", "url": url, "richInput": {"Hub_Id__c": "no name"}},
        {"method": "POST", "url": url, "richInput": {"Name": "After Failure"}},
    ]
    going = rest(sf, "composite/batch", "POST", json={"batchRequests": requests})
    assert going["hasErrors"] is True
    assert [r["statusCode"] for r in going["results"]] == [201, 400, 201]
    assert going["results"][1]["result"][0]["errorCode"] == "REQUIRED_FIELD_MISSING"
    assert names(sf, "%Failure") == ["After Failure", "Before Failure"]

    requests[0]["richInput"] = {"Name": "Halt Before"}
    requests[2]["richInput"] = {"Name": "Halt After"}
    halted = rest(
        sf, "composite/batch", "POST", json={"batchRequests": requests, "haltOnError": True}
    )
    assert halted["hasErrors"] is True
    assert [r["statusCode"] for r in halted["results"]] == [201, 400, 412]
    assert halted["results"][2]["result"][0]["errorCode"] == "BATCH_PROCESSING_HALTED"
    # the first one stays saved, the halted one never ran
    assert names(sf, "Halt%") == ["Halt Before"]


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"haltOnError": True}, "JSON_PARSER_ERROR"),
        (
            {"batchRequests": [{"method": "FETCH", "url": f"v{VERSION}/limits"}]},
            "JSON_PARSER_ERROR",
        ),
        ({"batchRequests": [{"method": "GET", "url": "sobjects/Account"}]}, "JSON_PARSER_ERROR"),
        (
            {"batchRequests": [{"method": "GET", "url": f"v{VERSION}/limits"}] * 26},
            "LIMIT_EXCEEDED",
        ),
    ],
)
def test_batch_refuses_a_malformed_request_before_running_anything(
    org: Org, payload: dict[str, Any], code: str
) -> None:
    sf = org.client()
    create = {"method": "POST", "url": f"v{VERSION}/sobjects/Account", "richInput": {"Name": "X"}}
    if "batchRequests" in payload:
        payload = {"batchRequests": [create, *payload["batchRequests"]]}
    assert refused(sf, "composite/batch", payload)[0]["errorCode"] == code
    assert names(sf, "%") == []
    with pytest.raises(SalesforceError) as info:
        rest(sf, "composite/batch")
    assert error_body(info.value)[0]["errorCode"] == "METHOD_NOT_ALLOWED"


def test_batch_subrequest_errors_are_the_resources_own(org: Org) -> None:
    sf = org.client()
    answer = rest(
        sf,
        "composite/batch",
        "POST",
        json={
            "batchRequests": [
                {"method": "GET", "url": f"v{VERSION}/sobjects/Account/{account_id(7)}"},
                {"method": "GET", "url": "v20.0/limits"},
                {"method": "GET", "url": f"v{VERSION}/composite/batch"},
            ]
        },
    )
    missing, retired, nested = answer["results"]
    assert missing["statusCode"] == 404 and missing["result"][0]["errorCode"] == "NOT_FOUND"
    assert retired["statusCode"] == 410
    assert nested["statusCode"] == 400


# -- composite -----------------------------------------------------------------------------
def test_composite_chains_references_into_urls_and_bodies(org: Org) -> None:
    sf = org.client()
    answer = rest(
        sf,
        "composite",
        "POST",
        json={
            "allOrNone": False,
            "compositeRequest": [
                {"method": "POST", "url": f"{BASE}/sobjects/Account", "referenceId": "newAcct",
                 "body": {"Name": "Composite Parent", "Hub_Id__c": "CUS-C1"}},
                {"method": "GET", "url": f"{BASE}/sobjects/Account/@{{newAcct.id}}",
                 "referenceId": "readAcct"},
                {"method": "POST", "url": f"{BASE}/sobjects/Contact", "referenceId": "newContact",
                 "body": {"LastName": "Ref", "FirstName": "@{readAcct.Hub_Id__c}",
                          "AccountId": "@{newAcct.id}"}},
                {"method": "GET", "referenceId": "found",
                 "url": f"{BASE}/query?q=SELECT+Id,AccountId+FROM+Contact+WHERE+LastName='Ref'"},
                {"method": "PATCH", "referenceId": "rename",
                 "url": f"{BASE}/sobjects/Account/@{{found.records[0].AccountId}}",
                 "body": {"Name": "Parent of @{found.records[0].Id}"}},
            ],
        },
    )  # fmt: skip
    made, read, contact, found, rename = answer["compositeResponse"]
    assert [r["referenceId"] for r in answer["compositeResponse"]] == [
        "newAcct", "readAcct", "newContact", "found", "rename",
    ]  # fmt: skip
    account_id_ = made["body"]["id"]
    assert made["httpStatusCode"] == 201
    assert made["httpHeaders"]["Location"] == f"{BASE}/sobjects/Account/{account_id_}"
    assert read["httpStatusCode"] == 200 and read["body"]["Id"] == account_id_
    assert contact["httpStatusCode"] == 201
    assert found["body"]["records"][0]["AccountId"] == account_id_
    assert rename == {
        "body": None, "httpHeaders": {}, "httpStatusCode": 204, "referenceId": "rename",
    }  # fmt: skip
    stored = sobject(sf, "Contact").get(contact["body"]["id"])
    assert stored["AccountId"] == account_id_ and stored["FirstName"] == "CUS-C1"
    parent = sobject(sf, "Account").get(account_id_)
    assert parent["Name"] == f"Parent of {contact['body']['id']}"


def test_composite_halts_only_the_subrequests_that_depend_on_a_failure(org: Org) -> None:
    sf = org.client()
    answer = rest(
        sf,
        "composite",
        "POST",
        json={
            "compositeRequest": [
                {"method": "POST", "url": f"{BASE}/sobjects/Account", "referenceId": "bad",
                 "body": {"Hub_Id__c": "no name"}},
                {"method": "POST", "url": f"{BASE}/sobjects/Contact", "referenceId": "child",
                 "body": {"LastName": "Orphan", "AccountId": "@{bad.id}"}},
                {"method": "POST", "url": f"{BASE}/sobjects/Account", "referenceId": "good",
                 "body": {"Name": "Independent"}},
                {"method": "GET", "url": f"{BASE}/query?q=SELECT+Id+FROM+Account",
                 "referenceId": "none"},
                {"method": "GET", "url": f"{BASE}/sobjects/Account/@{{none.records[5].Id}}",
                 "referenceId": "beyond"},
            ]
        },
    )  # fmt: skip
    bad, child, good, _, beyond = answer["compositeResponse"]
    assert bad["httpStatusCode"] == 400
    assert bad["body"][0]["errorCode"] == "REQUIRED_FIELD_MISSING"
    assert child["httpStatusCode"] == 400
    assert child["body"] == [
        {
            "message": "Invalid reference specified. No value for bad.id found in bad",
            "errorCode": "PROCESSING_HALTED",
        }
    ]
    assert good["httpStatusCode"] == 201
    assert beyond["body"][0]["errorCode"] == "PROCESSING_HALTED"
    assert names(sf, "%") == ["Independent"]
    contacts = sf.query("SELECT Id FROM Contact")
    assert contacts["totalSize"] == 0


def test_composite_refuses_all_or_none_instead_of_pretending_to_roll_back(org: Org) -> None:
    sf = org.client()
    payload = {
        "allOrNone": True,
        "compositeRequest": [
            {"method": "POST", "url": f"{BASE}/sobjects/Account", "referenceId": "a",
             "body": {"Name": "Would Stay"}},
            {"method": "POST", "url": f"{BASE}/sobjects/Account", "referenceId": "b",
             "body": {"Hub_Id__c": "no name"}},
        ],
    }  # fmt: skip
    errors = refused(sf, "composite", payload)
    assert errors[0]["errorCode"] == "FEATURE_NOT_ENABLED"
    assert "allOrNone=true is not supported by the sandbox" in errors[0]["message"]
    assert names(sf, "%") == []


@pytest.mark.parametrize(
    ("change", "code", "words"),
    [
        ({"referenceId": None}, "JSON_PARSER_ERROR", "'referenceId' is a required field."),
        ({"referenceId": "_bad-ref"}, "JSON_PARSER_ERROR", "must start with a letter"),
        ({"referenceId": "first"}, "INVALID_INPUT", "Duplicate referenceId"),
        ({"method": "post"}, "JSON_PARSER_ERROR", "Invalid method"),
        ({"url": f"v{VERSION}/limits"}, "JSON_PARSER_ERROR", "/services/data/"),
        ({"httpHeaders": {"Authorization": "Bearer x"}}, "INVALID_INPUT", "Authorization"),
    ],
)
def test_composite_refuses_a_malformed_subrequest_before_running_any(
    org: Org, change: dict[str, Any], code: str, words: str
) -> None:
    sf = org.client()
    first = {"method": "POST", "url": f"{BASE}/sobjects/Account", "referenceId": "first",
             "body": {"Name": "Never Made"}}  # fmt: skip
    second = {"method": "GET", "url": f"{BASE}/limits", "referenceId": "second", **change}
    errors = refused(sf, "composite", {"compositeRequest": [first, second]})
    assert errors[0]["errorCode"] == code and words in errors[0]["message"]
    assert names(sf, "%") == []


def test_composite_limits_subrequests_to_25(org: Org) -> None:
    sf = org.client()
    subrequests = [
        {"method": "GET", "url": f"{BASE}/limits", "referenceId": f"r{i}"} for i in range(26)
    ]
    errors = refused(sf, "composite", {"compositeRequest": subrequests})
    assert errors[0]["errorCode"] == "LIMIT_EXCEEDED"
    answer = rest(sf, "composite", "POST", json={"compositeRequest": subrequests[:25]})
    assert [r["httpStatusCode"] for r in answer["compositeResponse"]] == [200] * 25
    listed = rest(sf, "composite")
    assert listed["batch"] == f"{BASE}/composite/batch"
    assert listed["tree"] == f"{BASE}/composite/tree"


# -- composite/tree ------------------------------------------------------------------------
def tree_record(ref: str, **fields: Any) -> dict[str, Any]:
    return {"attributes": {"type": "Account", "referenceId": ref}, **fields}


def test_tree_creates_every_record_and_answers_their_ids(org: Org) -> None:
    sf = org.client()
    records = [tree_record(f"ref{i}", Name=f"Tree {i}", Hub_Id__c=f"CUS-T{i}") for i in range(3)]
    answer = rest(sf, "composite/tree/Account", "POST", json={"records": records})
    assert answer["hasErrors"] is False
    assert [r["referenceId"] for r in answer["results"]] == ["ref0", "ref1", "ref2"]
    account = sobject(sf, "Account")
    for i, result in enumerate(answer["results"]):
        assert account.get(result["id"])["Hub_Id__c"] == f"CUS-T{i}"
    assert names(sf, "Tree%") == ["Tree 0", "Tree 1", "Tree 2"]


def test_tree_saves_nothing_when_one_record_fails(org: Org) -> None:
    sf = org.client()
    records = [
        tree_record("ok1", Name="Tree Fine"),
        tree_record("broken", Name="Tree Broken", Segment__c="Giant"),
        tree_record("ok2", Name="Tree Fine Too"),
    ]
    with pytest.raises(SalesforceMalformedRequest) as info:
        rest(sf, "composite/tree/Account", "POST", json={"records": records})
    answer: Any = info.value.content
    assert answer["hasErrors"] is True
    assert [r["referenceId"] for r in answer["results"]] == ["broken"]
    error = answer["results"][0]["errors"][0]
    assert error["statusCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    assert error["fields"] == ["Segment__c"]
    assert names(sf, "Tree%") == []

    twice = [tree_record("same", Name="Tree A"), tree_record("same", Name="Tree B")]
    with pytest.raises(SalesforceMalformedRequest) as dup:
        rest(sf, "composite/tree/Account", "POST", json={"records": twice})
    duplicated: Any = dup.value.content
    assert [r["referenceId"] for r in duplicated["results"]] == ["same", "same"]
    assert names(sf, "Tree%") == []


def test_tree_refuses_children_too_many_records_and_other_types(org: Org) -> None:
    sf = org.client()
    parent = tree_record("parent", Name="Tree Parent")
    parent["Contacts"] = {
        "records": [{"attributes": {"type": "Contact", "referenceId": "kid"}, "LastName": "K"}]
    }
    errors = refused(sf, "composite/tree/Account", {"records": [parent]})
    assert errors[0]["errorCode"] == "FEATURE_NOT_ENABLED"
    assert "not supported by the sandbox" in errors[0]["message"]
    many = [tree_record(f"r{i}", Name=f"Tree {i}") for i in range(201)]
    assert refused(sf, "composite/tree/Account", {"records": many})[0]["errorCode"] == (
        "LIMIT_EXCEEDED"
    )
    contact = {"attributes": {"type": "Contact", "referenceId": "c1"}, "LastName": "Typed"}
    with pytest.raises(SalesforceMalformedRequest) as info:
        rest(sf, "composite/tree/Account", "POST", json={"records": [contact]})
    wrong: Any = info.value.content
    assert wrong["results"][0]["errors"][0]["statusCode"] == "INVALID_TYPE"
    assert names(sf, "Tree%") == [] and sf.query("SELECT Id FROM Contact")["totalSize"] == 0

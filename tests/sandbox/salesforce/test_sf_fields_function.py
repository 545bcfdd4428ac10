"""SOQL's FIELDS(ALL | STANDARD | CUSTOM) through simple-salesforce: the object's fields by
group, describe's names, the LIMIT 200 rule for ALL and CUSTOM, and inside a subquery."""

from __future__ import annotations

import pytest
from simple_salesforce.exceptions import SalesforceMalformedRequest

from tests.sandbox.salesforce.conftest import Org, error_body, sobject

pytestmark = pytest.mark.timeout(60)


def _keys(org: Org, soql: str) -> list[str]:
    [record] = org.client().query(soql)["records"]
    return [k for k in record if k != "attributes"]


def test_each_group_selects_the_fields_describe_lists(org: Org) -> None:
    account = sobject(org.client(), "Account")
    account.create({"Name": "Fields Co", "Hub_Id__c": "CUS-F1", "Segment__c": "SMB"})
    described = [f["name"] for f in account.describe()["fields"]]
    where = "WHERE Hub_Id__c = 'CUS-F1'"
    assert _keys(org, f"SELECT FIELDS(ALL) FROM Account {where} LIMIT 1") == described
    standard = _keys(org, f"SELECT FIELDS(STANDARD) FROM Account {where}")
    assert standard == [n for n in described if not n.endswith("__c")]
    custom = _keys(org, f"SELECT Name, FIELDS(CUSTOM) FROM Account {where} LIMIT 5")
    assert custom == ["Name", *[n for n in described if n.endswith("__c")]]
    [record] = org.client().query(f"SELECT FIELDS(CUSTOM) FROM Account {where} LIMIT 1")["records"]
    assert record["Segment__c"] == "SMB" and record["Hub_Id__c"] == "CUS-F1"


@pytest.mark.parametrize("group", ["ALL", "CUSTOM"])
def test_all_and_custom_need_a_limit_of_at_most_200(org: Org, group: str) -> None:
    for tail in ("", " LIMIT 201"):
        with pytest.raises(SalesforceMalformedRequest) as caught:
            org.client().query(f"SELECT FIELDS({group}) FROM Account{tail}")
        [error] = error_body(caught.value)
        assert error["errorCode"] == "MALFORMED_QUERY"
        assert "must have a LIMIT of at most 200" in error["message"]


def test_fields_in_a_subquery(org: Org) -> None:
    sf = org.client()
    made = sobject(sf, "Account").create({"Name": "Parent Co", "Hub_Id__c": "CUS-F2"})["id"]
    sobject(sf, "Contact").create({"LastName": "Child", "AccountId": made})
    soql = f"SELECT Id, (SELECT FIELDS(STANDARD) FROM Contacts) FROM Account WHERE Id = '{made}'"
    [record] = sf.query(soql)["records"]
    [child] = record["Contacts"]["records"]
    assert child["LastName"] == "Child" and child["AccountId"] == made

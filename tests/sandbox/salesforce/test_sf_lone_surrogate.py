"""A JSON body whose string holds a lone UTF-16 surrogate ("\\ud800": no character at all)
is refused with 400 JSON_PARSER_ERROR, as Salesforce answers a body it cannot read,
instead of being stored and failing every later query of the record with a 500."""

from __future__ import annotations

import pytest
from simple_salesforce.exceptions import SalesforceMalformedRequest

from tests.sandbox.salesforce.conftest import Org, error_body, rest, sobject

pytestmark = pytest.mark.timeout(60)

LONE = "Acme \ud800 GmbH"  # json.dumps sends it as the escape \ud800


def _refused(info: pytest.ExceptionInfo[SalesforceMalformedRequest]) -> None:
    assert info.value.status == 400
    [error] = error_body(info.value)
    assert error["errorCode"] == "JSON_PARSER_ERROR"
    assert "surrogate" in error["message"]


def test_a_lone_surrogate_is_refused_and_nothing_is_stored(org: Org) -> None:
    sf = org.client()
    account = sobject(sf, "Account")
    with pytest.raises(SalesforceMalformedRequest) as created:
        account.create({"Name": LONE, "Hub_Id__c": "CUS-1"})
    _refused(created)
    with pytest.raises(SalesforceMalformedRequest) as upserted:
        account.upsert("Hub_Id__c/CUS-2", {"Name": LONE})
    _refused(upserted)
    made = account.create({"Name": "Acme GmbH", "Hub_Id__c": "CUS-3"})
    with pytest.raises(SalesforceMalformedRequest) as updated:
        account.update(made["id"], {"Name": LONE})
    _refused(updated)
    with pytest.raises(SalesforceMalformedRequest) as collection:
        rest(
            sf,
            "composite/sobjects",
            "POST",
            json={"records": [{"attributes": {"type": "Account"}, "Name": LONE}]},
        )
    _refused(collection)
    # a paired surrogate is one character (an emoji) and is fine
    account.update(made["id"], {"Name": "Acme \U0001f600 GmbH"})

    # every query touching the records still answers, and nothing odd was stored
    rows = sf.query_all("SELECT Id, Name, Hub_Id__c FROM Account ORDER BY Hub_Id__c")["records"]
    assert [(r["Hub_Id__c"], r["Name"]) for r in rows] == [("CUS-3", "Acme \U0001f600 GmbH")]
    assert account.get(made["id"])["Name"] == "Acme \U0001f600 GmbH"

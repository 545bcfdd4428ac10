"""sObject rows, describe, field rules and sObject Collections through simple-salesforce."""

from __future__ import annotations

from typing import cast

import pytest
from simple_salesforce.exceptions import (
    SalesforceMalformedRequest,
    SalesforceMoreThanOneRecord,
    SalesforceResourceNotFound,
)

from sandbox.salesforce import seed_records
from sandbox.salesforce.ids import make_id
from tests.sandbox.salesforce.conftest import (
    Org,
    account_id,
    error_body,
    rest,
    seed_accounts,
    sobject,
)

pytestmark = pytest.mark.timeout(60)


def test_upsert_by_external_id_creates_then_updates(org: Org) -> None:
    sf = org.client()
    account = sobject(sf, "Account")
    raw = account.upsert(
        "Hub_Id__c/CUS-0000042",
        {"Name": "Northwind Logistics GmbH", "Segment__c": "SMB", "CurrencyIsoCode": "EUR"},
        raw_response=True,
    )
    assert raw.status_code == 201
    created = raw.json()
    assert created["success"] is True and created["created"] is True and created["errors"] == []
    assert created["id"].startswith("001")
    before = account.get(created["id"])
    assert before["Name"] == "Northwind Logistics GmbH"
    assert before["LastModifiedDate"].endswith("+0000") and len(before["LastModifiedDate"]) == 28
    again = account.upsert("Hub_Id__c/CUS-0000042", {"Segment__c": "Enterprise"}, raw_response=True)
    assert again.status_code == 200
    assert again.json() == {"id": created["id"], "success": True, "errors": [], "created": False}
    after = account.get_by_custom_id("Hub_Id__c", "CUS-0000042")
    assert after["Segment__c"] == "Enterprise" and after["Name"] == "Northwind Logistics GmbH"
    assert after["SystemModstamp"] > before["SystemModstamp"]
    assert after["CreatedDate"] == before["CreatedDate"]
    # before API 46.0 an update by upsert answered 204 without a body
    old = sobject(org.client(version="45.0"), "Account")
    assert old.upsert("Hub_Id__c/CUS-0000042", {"Type": "Customer"}) == 204


def test_create_get_fields_update_delete(org: Org) -> None:
    sf = org.client()
    account = sobject(sf, "Account")
    made = account.create({"Name": "Acme", "Hub_Id__c": "CUS-1", "BillingCountry": "US"})
    assert made["success"] is True
    contact = sobject(sf, "Contact")
    person = contact.create(
        {"LastName": "Lovelace", "FirstName": "Ada", "AccountId": made["id"], "Email": "a@b.io"}
    )
    got = contact.get(person["id"])
    assert got["Name"] == "Ada Lovelace"
    assert got["AccountId"] == made["id"]
    assert got["attributes"]["type"] == "Contact"
    assert account.update(made["id"], {"Name": "Acme Corp"}) == 204
    slim = rest(sf, f"sobjects/Account/{made['id']}", params={"fields": "Name,Hub_Id__c"})
    assert {k: v for k, v in slim.items() if k != "attributes"} == {
        "Name": "Acme Corp",
        "Hub_Id__c": "CUS-1",
    }
    assert account.delete(made["id"]) == 204
    with pytest.raises(SalesforceResourceNotFound) as info:
        account.get(made["id"])
    assert error_body(info.value)[0]["errorCode"] == "ENTITY_IS_DELETED"
    with pytest.raises(SalesforceResourceNotFound) as missing:
        account.get(account_id(999))
    assert error_body(missing.value) == [
        {"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}
    ]


def test_describe_global_and_object(org: Org) -> None:
    sf = org.client()
    names = {o["name"] for o in rest(sf, "sobjects")["sobjects"]}
    assert {"Account", "Contact", "Product2", "Subscription__c", "Invoice__c"} <= names
    describe = sobject(sf, "Account").describe()
    fields = {f["name"]: f for f in describe["fields"]}
    assert describe["keyPrefix"] == "001"
    hub = fields["Hub_Id__c"]
    assert (hub["externalId"], hub["unique"], hub["type"], hub["length"]) == (
        True,
        True,
        "string",
        40,
    )
    assert fields["Name"]["nillable"] is False and fields["Name"]["createable"] is True
    assert fields["SystemModstamp"]["updateable"] is False
    segment = fields["Segment__c"]
    assert [p["value"] for p in segment["picklistValues"]] == ["SMB", "Mid-Market", "Enterprise"]
    assert segment["restrictedPicklist"] is True
    assert fields["ParentId"]["referenceTo"] == ["Account"]
    invoice = {f["name"]: f for f in sobject(sf, "Invoice__c").describe()["fields"]}
    assert invoice["Total_Amount__c"]["type"] == "currency"
    assert invoice["Name"]["autoNumber"] is True


@pytest.mark.parametrize(
    ("values", "code", "field"),
    [
        ({"Hub_Id__c": "CUS-9"}, "REQUIRED_FIELD_MISSING", "Name"),
        ({"Name": "x" * 256}, "STRING_TOO_LONG", "Name"),
        (
            {"Name": "A", "Segment__c": "Giant"},
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            "Segment__c",
        ),
        (
            {"Name": "A", "Dunning_Level__c": "high"},
            "INVALID_TYPE_ON_FIELD_IN_RECORD",
            "Dunning_Level__c",
        ),
        (
            {"Name": "A", "ParentId": "001000000000000AAA"},
            "INVALID_CROSS_REFERENCE_KEY",
            "ParentId",
        ),
    ],
)
def test_field_rules_reject_with_salesforce_codes(
    org: Org, values: dict[str, object], code: str, field: str
) -> None:
    sf = org.client()
    with pytest.raises(SalesforceMalformedRequest) as info:
        sobject(sf, "Account").create(values)
    body = error_body(info.value)
    assert body[0]["errorCode"] == code
    assert body[0]["fields"] == [field]
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 0


def test_unknown_field_duplicate_external_id_and_multiple_matches(org: Org) -> None:
    sf = org.client()
    account = sobject(sf, "Account")
    with pytest.raises(SalesforceMalformedRequest) as unknown:
        account.create({"Name": "A", "Colour__c": "red"})
    assert error_body(unknown.value)[0]["errorCode"] == "INVALID_FIELD"
    assert "Colour__c" in error_body(unknown.value)[0]["message"]
    first = account.create({"Name": "A", "Hub_Id__c": "CUS-7"})
    with pytest.raises(SalesforceMalformedRequest) as dup:
        account.create({"Name": "B", "Hub_Id__c": "cus-7"})
    assert error_body(dup.value)[0]["errorCode"] == "DUPLICATE_VALUE"
    assert first["id"] in error_body(dup.value)[0]["message"]
    # SAP_Customer_Number__c is an external id that is not unique: two matches -> 300
    account.create({"Name": "C", "SAP_Customer_Number__c": "1000007"})
    account.create({"Name": "D", "SAP_Customer_Number__c": "1000007"})
    with pytest.raises(SalesforceMoreThanOneRecord) as many:
        account.upsert("SAP_Customer_Number__c/1000007", {"Name": "E"})
    urls = cast(list[str], many.value.content)
    assert len(urls) == 2
    assert all(url.startswith("/services/data/v62.0/sobjects/Account/001") for url in urls)


def test_collections_create_update_upsert_delete(org: Org) -> None:
    sf = org.client()
    records = [
        {"attributes": {"type": "Account"}, "Name": f"Co {i}", "Hub_Id__c": f"CUS-{i:07d}"}
        for i in range(1, 6)
    ]
    records[2]["Segment__c"] = "Huge"  # fails alone
    created = rest(
        sf, "composite/sobjects", method="POST", json={"allOrNone": False, "records": records}
    )
    assert [r["success"] for r in created] == [True, True, False, True, True]
    assert created[2]["errors"][0]["statusCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    assert created[2]["errors"][0]["fields"] == ["Segment__c"]
    ids = [r["id"] for r in created if r["success"]]
    updated = rest(
        sf,
        "composite/sobjects",
        method="PATCH",
        json={
            "allOrNone": False,
            "records": [
                {"attributes": {"type": "Account"}, "Id": i, "Type": "Partner"} for i in ids
            ],
        },
    )
    assert [r["id"] for r in updated] == ids and all(r["success"] for r in updated)
    upserted = rest(
        sf,
        "composite/sobjects/Account/Hub_Id__c",
        method="PATCH",
        json={
            "allOrNone": False,
            "records": [
                {"attributes": {"type": "Account"}, "Hub_Id__c": "CUS-0000001", "Name": "One"},
                {"attributes": {"type": "Account"}, "Hub_Id__c": "CUS-0000099", "Name": "New"},
            ],
        },
    )
    assert [(r["success"], r["created"]) for r in upserted] == [(True, False), (True, True)]
    assert upserted[0]["id"] == ids[0]
    deleted = rest(
        sf,
        "composite/sobjects",
        method="DELETE",
        params={"ids": ",".join(ids[:2]), "allOrNone": "false"},
    )
    assert [r["id"] for r in deleted] == ids[:2] and all(r["success"] for r in deleted)
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 3


def test_collections_all_or_none_rolls_back_and_limits_to_200(org: Org) -> None:
    sf = org.client()
    records = [
        {"attributes": {"type": "Account"}, "Name": f"Co {i}", "Hub_Id__c": f"CUS-{i:07d}"}
        for i in range(3)
    ]
    records.append({"attributes": {"type": "Account"}, "Hub_Id__c": "CUS-0000100"})  # no Name
    answer = rest(
        sf, "composite/sobjects", method="POST", json={"allOrNone": True, "records": records}
    )
    assert [r["errors"][0]["statusCode"] for r in answer] == [
        "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    ] * 3 + ["REQUIRED_FIELD_MISSING"]
    assert not any(r["success"] for r in answer)
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 0
    too_many = [{"attributes": {"type": "Account"}, "Name": f"N{i}"} for i in range(201)]
    with pytest.raises(SalesforceMalformedRequest) as info:
        rest(sf, "composite/sobjects", "POST", json={"records": too_many})
    assert error_body(info.value)[0]["errorCode"] == "EXCEEDED_ID_LIMIT"
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 0
    exactly = too_many[:200]
    assert all(
        r["success"] for r in rest(sf, "composite/sobjects", "POST", json={"records": exactly})
    )


def test_seeded_records_carry_system_fields_and_references_resolve(org: Org) -> None:
    seed_accounts(org.store, 2)
    product = make_id("01t", 1)
    seed_records(
        org.store,
        "Product2",
        [{"Id": product, "Name": "Seat", "ProductCode": "SEAT-STD", "Hub_Id__c": "SEAT-STD"}],
    )
    sf = org.client()
    row = sobject(sf, "Product2").get_by_custom_id("Hub_Id__c", "SEAT-STD")
    assert row["IsActive"] is False and row["IsDeleted"] is False
    assert row["CreatedById"] == org.settings.user_id
    made = sobject(sf, "Invoice__c").create(
        {
            "Account__r": {"Hub_Id__c": "CUS-0000002"},
            "Hub_Id__c": "INV-1",
            "Total_Amount__c": 12.345,
        }
    )
    invoice = sobject(sf, "Invoice__c").get(made["id"])
    assert invoice["Account__c"] == account_id(1)
    assert invoice["Name"] == "INV-0000001"
    assert invoice["Total_Amount__c"] == 12.345


def test_one_call_sees_its_own_pending_external_ids(org: Org) -> None:
    """Uniqueness inside one call (a Collections call or a Bulk job is one unit of work):
    a value queued earlier in the call clashes, case-insensitively; a stored record whose
    value the call changes frees its old value for the records after it."""
    sf = org.client()
    account = sobject(sf, "Account")
    r = account.create({"Name": "R", "Hub_Id__c": "CUS-OLD"})["id"]
    t = account.create({"Name": "T", "Hub_Id__c": "CUS-T"})["id"]
    answers = rest(
        sf,
        "composite/sobjects",
        "POST",
        json={
            "allOrNone": False,
            "records": [
                {"attributes": {"type": "Account"}, "Name": "A", "Hub_Id__c": "CUS-NEW"},
                {"attributes": {"type": "Account"}, "Name": "B", "Hub_Id__c": "cus-new"},
            ],
        },
    )
    assert answers[0]["success"] is True
    assert answers[1]["errors"][0]["statusCode"] == "DUPLICATE_VALUE"
    # one update call: R gives up CUS-OLD, T takes it; then T may not take R's new value
    swap = rest(
        sf,
        "composite/sobjects",
        "PATCH",
        json={
            "allOrNone": False,
            "records": [
                {"attributes": {"type": "Account"}, "Id": r, "Hub_Id__c": "CUS-GONE"},
                {"attributes": {"type": "Account"}, "Id": t, "Hub_Id__c": "cus-old"},
                {"attributes": {"type": "Account"}, "Id": t, "Hub_Id__c": "CUS-gone"},
            ],
        },
    )
    assert [a["success"] for a in swap] == [True, True, False]
    assert swap[2]["errors"][0]["statusCode"] == "DUPLICATE_VALUE"
    assert account.get(t)["Hub_Id__c"] == "cus-old"
    assert account.get(r)["Hub_Id__c"] == "CUS-GONE"


def test_pause_dates_and_dunning_history_describe_and_store_as_their_types(org: Org) -> None:
    """``Subscription__c.Paused_At__c`` / ``Resume_At__c`` are Date fields and
    ``Invoice__c.Dunning_History__c`` a Long Text Area (32,768 characters, Salesforce's
    default): it keeps line breaks and refuses more than its length."""
    seed_accounts(org.store, 1)
    sf = org.client()
    subscription = {f["name"]: f for f in sobject(sf, "Subscription__c").describe()["fields"]}
    for name in ("Paused_At__c", "Resume_At__c"):
        field = subscription[name]
        assert (field["type"], field["soapType"], field["nillable"]) == ("date", "xsd:date", True)
    history = {f["name"]: f for f in sobject(sf, "Invoice__c").describe()["fields"]}[
        "Dunning_History__c"
    ]
    assert (history["type"], history["length"], history["custom"]) == ("textarea", 32_768, True)
    assert history["sortable"] is False

    made = sobject(sf, "Subscription__c").create(
        {
            "Name": "C-1",
            "Hub_Id__c": "SUB-1",
            "Account__c": account_id(0),
            "Paused_At__c": "2026-03-01",
            "Resume_At__c": "2026-05-01",
        }
    )
    row = sobject(sf, "Subscription__c").get(made["id"])
    assert (row["Paused_At__c"], row["Resume_At__c"]) == ("2026-03-01", "2026-05-01")

    text = "2026-03-05 stage 1 retried\n2026-03-19 stage 2 paid"
    invoice = sobject(sf, "Invoice__c")
    made = invoice.create(
        {"Account__c": account_id(0), "Hub_Id__c": "INV-1", "Dunning_History__c": text}
    )
    assert invoice.get(made["id"])["Dunning_History__c"] == text
    with pytest.raises(SalesforceMalformedRequest) as info:
        invoice.update(made["id"], {"Dunning_History__c": "x" * 32_769})
    assert error_body(info.value)[0]["errorCode"] == "STRING_TOO_LONG"


def test_describe_sub_resources_the_emulator_lacks_are_not_found(org: Org) -> None:
    """``describe/layouts`` is a resource of its own, not an external-id lookup on a field
    named ``describe`` (which answered "Provided external ID field does not exist")."""
    with pytest.raises(SalesforceResourceNotFound) as caught:
        rest(org.client(), "sobjects/Account/describe/layouts")
    [error] = error_body(caught.value)
    assert error == {"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}

"""SOQL through simple-salesforce: paging with nextRecordsUrl, filters, ordering,
COUNT(), queryAll, relationship fields, and Salesforce's error wording."""

from __future__ import annotations

import pytest
from simple_salesforce.exceptions import SalesforceMalformedRequest

from sandbox.salesforce import seed_records
from sandbox.salesforce.ids import make_id
from sandbox.store import DocumentStore
from tests.sandbox.salesforce.conftest import (
    Org,
    account_id,
    error_body,
    seed_accounts,
    sobject,
)

pytestmark = pytest.mark.timeout(60)


def test_query_all_iter_pages_through_every_record(seeded: Org) -> None:
    sf = seeded.client()
    first = sf.query("SELECT Id, Name, Hub_Id__c FROM Account")
    assert first["totalSize"] == 500
    assert first["done"] is False
    assert len(first["records"]) == 200
    assert first["nextRecordsUrl"].startswith("/services/data/v62.0/query/01g")
    assert first["nextRecordsUrl"].endswith("-200")
    record = first["records"][0]
    assert record["attributes"] == {
        "type": "Account",
        "url": f"/services/data/v62.0/sobjects/Account/{record['Id']}",
    }
    assert list(record) == ["attributes", "Id", "Name", "Hub_Id__c"]
    rows = list(sf.query_all_iter("SELECT Id, Hub_Id__c FROM Account"))
    assert len(rows) == 500
    assert len({r["Id"] for r in rows}) == 500
    # a page asked twice (a retry after a dropped connection) answers the same rows
    again = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    once_more = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    assert again["records"] == once_more["records"]
    assert sf.api_usage["api-usage"].total == seeded.settings.daily_api_limit


def test_where_in_order_limit_offset(seeded: Org) -> None:
    sf = seeded.client()
    result = sf.query(
        "SELECT Hub_Id__c, Segment__c, Dunning_Level__c FROM Account "
        "WHERE Segment__c IN ('SMB', 'Enterprise') AND Dunning_Level__c >= 3 "
        "ORDER BY Dunning_Level__c DESC, Hub_Id__c ASC LIMIT 5 OFFSET 2"
    )
    got = [(r["Hub_Id__c"], r["Segment__c"], r["Dunning_Level__c"]) for r in result["records"]]
    expected = sorted(
        (
            (f"CUS-{i + 1:07d}", ("SMB", "Mid-Market", "Enterprise")[i % 3], float(i % 5))
            for i in range(500)
            if i % 3 in (0, 2) and i % 5 >= 3
        ),
        key=lambda t: (-t[2], t[0]),
    )[2:7]
    assert got == expected
    assert result["totalSize"] == 5 and result["done"] is True


def test_and_or_not_parentheses_like_and_null(seeded: Org) -> None:
    sf = seeded.client()
    rows = sf.query_all(
        "SELECT Hub_Id__c FROM Account WHERE (Name LIKE 'account 0001_' OR Hub_Id__c = "
        "'cus-0000400') AND NOT (Tax_Id__c = null) ORDER BY Hub_Id__c"
    )["records"]
    expected = [f"CUS-{i + 1:07d}" for i in [*range(10, 20), 399] if i % 7 != 0]
    assert [r["Hub_Id__c"] for r in rows] == expected
    nulls = sf.query("SELECT COUNT() FROM Account WHERE Tax_Id__c = null")
    assert nulls["totalSize"] == len([i for i in range(500) if i % 7 == 0])
    assert nulls["records"] == []
    differs = sf.query("SELECT COUNT() FROM Account WHERE Tax_Id__c != 'TX000001'")
    assert differs["totalSize"] == 499  # SOQL's != keeps nulls


def test_system_modstamp_window_and_nulls_ordering(seeded: Org) -> None:
    sf = seeded.client()
    rows = sf.query_all(
        "SELECT Id, SystemModstamp FROM Account WHERE SystemModstamp > 2025-06-01T08:00:00Z "
        "AND SystemModstamp <= 2025-06-01T08:05:00.000+00:00 ORDER BY SystemModstamp DESC"
    )["records"]
    assert [r["Id"] for r in rows] == [account_id(i) for i in range(485, 480, -1)]
    assert rows[0]["SystemModstamp"] == "2025-06-01T08:05:00.000+0000"
    # the connector's keyset predicate: (stamp, Id) strictly after a cursor
    keyset = sf.query_all(
        "SELECT Id FROM Account WHERE SystemModstamp > 2025-06-01T08:17:00.000Z OR "
        f"(SystemModstamp = 2025-06-01T08:17:00.000Z AND Id > '{account_id(496)}') "
        "ORDER BY SystemModstamp, Id"
    )["records"]
    assert [r["Id"] for r in keyset] == [account_id(i) for i in range(497, 500)]
    first = sf.query("SELECT Tax_Id__c FROM Account ORDER BY Tax_Id__c NULLS LAST LIMIT 1")
    assert first["records"][0]["Tax_Id__c"] == "TX000001"
    last = sf.query("SELECT Tax_Id__c FROM Account ORDER BY Tax_Id__c DESC NULLS FIRST LIMIT 1")
    assert last["records"][0]["Tax_Id__c"] is None
    dates = sf.query("SELECT COUNT() FROM Account WHERE CreatedDate >= 2025-06-01T08:00:00Z")
    assert dates["totalSize"] == 20


def test_relationship_fields_and_query_all_sees_deleted(seeded: Org) -> None:
    sub = make_id("a0S", 1)
    seed_records(
        seeded.store,
        "Subscription__c",
        [{"Id": sub, "Name": "CT-1", "Hub_Id__c": "SUB-0000001-1", "Account__c": account_id(0)}],
    )
    sf = seeded.client()
    row = sf.query("SELECT Hub_Id__c, Account__r.Hub_Id__c, Account__r.Name FROM Subscription__c")[
        "records"
    ][0]
    assert row["Account__r"]["Hub_Id__c"] == "CUS-0000001"
    assert row["Account__r"]["Name"] == "Account 00000"
    assert row["Account__r"]["attributes"]["type"] == "Account"
    assert sobject(sf, "Account").delete(account_id(3)) == 204
    live = sf.query("SELECT COUNT() FROM Account")["totalSize"]
    everything = sf.query_all(
        "SELECT Id, IsDeleted FROM Account WHERE IsDeleted = true", include_deleted=True
    )
    assert live == 499
    assert [r["Id"] for r in everything["records"]] == [account_id(3)]


def test_queries_by_key_read_only_those_records_and_answer_like_a_scan(
    seeded: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    """read_by_keys' ``Hub_Id__c IN (...)`` must not scan the object (at 100,000 accounts a
    scan per chunk of keys made the emulator the bottleneck), yet match what a scan finds:
    case-insensitive external ids, 15-character Ids, other conditions ANDed, records whose
    key changed or that were deleted."""
    sf = seeded.client()
    account = sobject(sf, "Account")
    account.update(account_id(5), {"Hub_Id__c": "CUS-RENAMED"})
    assert account.delete(account_id(6)) == 204
    scans: list[str] = []
    original = DocumentStore.iter

    def counting(self: DocumentStore, collection: str, batch_size: int = 2000):  # type: ignore[no-untyped-def]
        scans.append(collection)
        return original(self, collection, batch_size)

    monkeypatch.setattr(DocumentStore, "iter", counting)
    keyed = sf.query_all(
        "SELECT Hub_Id__c FROM Account WHERE Hub_Id__c IN ('cus-0000003', 'CUS-0000006', "
        "'CUS-0000007', 'CUS-RENAMED', 'CUS-9999999') ORDER BY SystemModstamp, Id"
    )["records"]
    assert [r["Hub_Id__c"] for r in keyed] == ["CUS-0000003", "CUS-RENAMED"]
    by_id = sf.query_all(
        f"SELECT Hub_Id__c FROM Account WHERE Id = '{account_id(9)[:15]}' "
        f"OR Id = '{account_id(10)}'"
    )["records"]
    assert sorted(r["Hub_Id__c"] for r in by_id) == ["CUS-0000010", "CUS-0000011"]
    assert scans == ["Account"]  # the OR of two keys is not one key set: it scans
    anded = sf.query_all(
        f"SELECT Hub_Id__c FROM Account WHERE Id IN ('{account_id(0)}', '{account_id(1)}') "
        "AND Segment__c = 'SMB'"
    )["records"]
    assert [r["Hub_Id__c"] for r in anded] == ["CUS-0000001"]
    assert scans == ["Account"]
    deleted = sf.query_all(
        "SELECT Id FROM Account WHERE Hub_Id__c = 'CUS-0000007'", include_deleted=True
    )["records"]
    assert [r["Id"] for r in deleted] == [account_id(6)]


@pytest.mark.parametrize(
    ("soql", "code", "fragment"),
    [
        ("SELECT Id FROM Account WHERE", "MALFORMED_QUERY", "unexpected token: '<EOF>'"),
        (
            "SELECT Id FROM Account WHERE Name = 'a' AND Name = 'b' OR Name = 'c'",
            "MALFORMED_QUERY",
            "unexpected token: 'OR'",
        ),
        (
            "SELECT Nope__c FROM Account",
            "INVALID_FIELD",
            "No such column 'Nope__c' on entity 'Account'",
        ),
        ("SELECT Id FROM Nope__c", "INVALID_TYPE", "sObject type 'Nope__c' is not supported"),
        (
            "SELECT Id FROM Account WHERE SystemModstamp > '2025-01-01'",
            "INVALID_FIELD",
            "must be of type dateTime and should not be enclosed in quotes",
        ),
        ("SELECT Id FROM Account WHERE Name = 5", "INVALID_FIELD", "should be enclosed in quotes"),
        ("SELECT Id FROM Account OFFSET 2001", "NUMBER_OUTSIDE_VALID_RANGE", "2000"),
    ],
)
def test_query_errors_as_salesforce_words_them(
    org: Org, soql: str, code: str, fragment: str
) -> None:
    sf = org.client()
    with pytest.raises(SalesforceMalformedRequest) as info:
        sf.query(soql)
    body = error_body(info.value)
    assert body[0]["errorCode"] == code
    assert fragment in body[0]["message"]
    if code in ("MALFORMED_QUERY", "INVALID_FIELD"):
        assert "ERROR at Row:1:Column:" in body[0]["message"]


def test_bad_locator_is_invalid_query_locator(org: Org) -> None:
    seed_accounts(org.store, 3)
    sf = org.client()
    with pytest.raises(SalesforceMalformedRequest) as info:
        sf.query_more("01g8H0000000999AAA-200")
    assert error_body(info.value)[0]["errorCode"] == "INVALID_QUERY_LOCATOR"

"""sObject Get Updated and Get Deleted (the data replication resources) through
simple-salesforce's ``sf.Account.updated(start, end)`` and ``.deleted(start, end)``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from simple_salesforce.exceptions import SalesforceMalformedRequest, SalesforceResourceNotFound

from sandbox.salesforce.values import parse_datetime
from tests.sandbox.salesforce.conftest import Org, bulk2, error_body, seed_accounts, sobject

pytestmark = pytest.mark.timeout(60)


def _window() -> tuple[dt.datetime, dt.datetime]:
    now = dt.datetime.now(dt.UTC)
    return now - dt.timedelta(minutes=5), now + dt.timedelta(minutes=2)


def test_updated_lists_the_records_changed_in_the_window_and_not_the_deleted(org: Org) -> None:
    account = sobject(org.client(), "Account")
    kept = account.create({"Name": "Kept", "Hub_Id__c": "CUS-R1"})["id"]
    gone = account.create({"Name": "Gone", "Hub_Id__c": "CUS-R2"})["id"]
    account.delete(gone)
    start, end = _window()
    answer = account.updated(start, end)
    assert kept in answer["ids"] and gone not in answer["ids"]
    covered = parse_datetime(answer["latestDateCovered"])
    # the seconds are ignored: the window ends on the minute
    assert covered == end.replace(second=0, microsecond=0)
    assert answer["latestDateCovered"].endswith(":00.000+0000")
    # a window that closed before the writes holds none of them
    earlier = account.updated(start - dt.timedelta(days=1), start - dt.timedelta(hours=1))
    assert earlier["ids"] == []


def test_deleted_lists_the_recycle_bin_with_when(org: Org) -> None:
    account = sobject(org.client(), "Account")
    kept = account.create({"Name": "Kept", "Hub_Id__c": "CUS-R3"})["id"]
    gone = account.create({"Name": "Gone", "Hub_Id__c": "CUS-R4"})["id"]
    account.delete(gone)
    start, end = _window()
    answer = account.deleted(start, end)
    assert [r["id"] for r in answer["deletedRecords"]] == [gone]
    when = parse_datetime(answer["deletedRecords"][0]["deletedDate"])
    assert when is not None and start <= when < end
    assert kept not in str(answer)
    earliest = parse_datetime(answer["earliestDateAvailable"])
    assert earliest is not None and earliest <= start
    assert parse_datetime(answer["latestDateCovered"]) == end.replace(second=0, microsecond=0)


def test_a_hard_delete_is_gone_from_query_all_and_listed_by_get_deleted(org: Org) -> None:
    """Bulk API hardDelete skips the recycle bin: queryAll no longer finds the record (as
    after the bin is emptied), a read by id is NOT_FOUND, and only the delete log, which
    sObject Get Deleted reads, still tells that it was deleted and when."""
    sf = org.client()
    account = sobject(sf, "Account")
    soft = account.create({"Name": "Soft", "Hub_Id__c": "CUS-R5"})["id"]
    hard = account.create({"Name": "Hard", "Hub_Id__c": "CUS-R6"})["id"]
    account.delete(soft)
    [job] = bulk2(sf, "Account").hard_delete(records=[{"Id": hard}], wait=0)
    assert (job["numberRecordsProcessed"], job["numberRecordsFailed"]) == (1, 0)
    in_bin = sf.query_all("SELECT Id FROM Account WHERE IsDeleted = true", include_deleted=True)
    assert [r["Id"] for r in in_bin["records"]] == [soft]
    with pytest.raises(SalesforceResourceNotFound) as caught:
        account.get(hard)
    assert error_body(caught.value)[0]["errorCode"] == "NOT_FOUND"
    start, end = _window()
    answer = account.deleted(start, end)
    assert [r["id"] for r in answer["deletedRecords"]] == [soft, hard]
    when = parse_datetime(answer["deletedRecords"][1]["deletedDate"])
    assert when is not None and start <= when < end
    assert hard not in account.updated(start, end)["ids"]
    # its external id is free again: a new record may take it
    assert account.upsert("Hub_Id__c/CUS-R6", {"Name": "Hard again"}) == 201


def test_both_resources_read_the_stamp_index_not_the_whole_object(
    org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real org answers these from its index of change stamps; the hub asks Get Deleted
    every pass, so a scan of every record would make each pass cost as much as the book."""
    seed_accounts(org.store, 300)  # stamped 2025-06-01, long before the window
    account = sobject(org.client(), "Account")
    gone = account.create({"Name": "Gone", "Hub_Id__c": "CUS-R7"})["id"]
    account.delete(gone)

    whole = org.store.iter

    def no_scan_of_accounts(collection: str, batch_size: int = 2000) -> Iterator[Any]:
        assert collection != "Account", "every Account read to answer a window of minutes"
        return whole(collection, batch_size)

    monkeypatch.setattr(org.store, "iter", no_scan_of_accounts)
    start, end = _window()
    assert [r["id"] for r in account.deleted(start, end)["deletedRecords"]] == [gone]
    assert account.updated(start, end)["ids"] == []


@pytest.mark.parametrize(
    ("resource", "days_back", "why"),
    [
        ("updated", 31, "more than 30 days ago"),
        ("deleted", 16, "more than 15 days ago"),
    ],
)
def test_a_window_beyond_what_salesforce_keeps_is_refused(
    org: Org, resource: str, days_back: int, why: str
) -> None:
    account = sobject(org.client(), "Account")
    now = dt.datetime.now(dt.UTC)
    with pytest.raises(SalesforceMalformedRequest) as caught:
        getattr(account, resource)(now - dt.timedelta(days=days_back), now)
    [error] = error_body(caught.value)
    assert error["errorCode"] == "INVALID_REPLICATION_DATE"
    assert why in error["message"]


def test_start_must_come_before_end_to_the_minute(org: Org) -> None:
    account = sobject(org.client(), "Account")
    now = dt.datetime.now(dt.UTC).replace(second=10)
    # 12:30:10 to 12:30:50 is the same minute once the seconds are dropped
    with pytest.raises(SalesforceMalformedRequest) as caught:
        account.updated(now, now.replace(second=50))
    [error] = error_body(caught.value)
    assert error["errorCode"] == "INVALID_REPLICATION_DATE"
    assert "must be before end" in error["message"]

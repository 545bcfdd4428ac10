"""Bulk API 2.0 through simple-salesforce's ``bulk2``: ingest jobs with per-record
results, query jobs paged with Sforce-Locator, and the raw job lifecycle."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from tests.sandbox.salesforce.conftest import Org, account_id, bulk2, seed_accounts

pytestmark = pytest.mark.timeout(60)


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_bulk_upsert_from_a_csv_file_with_failures(org: Org, tmp_path: Path) -> None:
    seed_accounts(org.store, 3)  # CUS-0000001..3 exist
    source = tmp_path / "accounts.csv"
    with source.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Hub_Id__c", "Name", "Segment__c", "Dunning_Level__c"])
        writer.writerow(["CUS-0000001", "Renamed One", "SMB", "2"])
        writer.writerow(["CUS-0000010", "Brand New", "Enterprise", ""])
        writer.writerow(["CUS-0000011", "Bad Segment", "Galactic", "1"])
        writer.writerow(["CUS-0000012", "", "SMB", "1"])  # Name is required
        writer.writerow(["CUS-0000013", "Null Level", "Mid-Market", "#N/A"])
    sf = org.client()
    [result] = bulk2(sf, "Account").upsert(
        csv_file=str(source), external_id_field="Hub_Id__c", wait=0
    )
    assert result["numberRecordsProcessed"] == 5
    assert result["numberRecordsFailed"] == 2
    assert result["numberRecordsTotal"] == 5
    job_id = str(result["job_id"])
    ok = _rows(bulk2(sf, "Account").get_successful_records(job_id))
    assert [(r["Hub_Id__c"], r["sf__Created"]) for r in ok] == [
        ("CUS-0000001", "false"),
        ("CUS-0000010", "true"),
        ("CUS-0000013", "true"),
    ]
    assert ok[0]["sf__Id"] == account_id(0)
    failed = _rows(bulk2(sf, "Account").get_failed_records(job_id))
    assert [r["Hub_Id__c"] for r in failed] == ["CUS-0000011", "CUS-0000012"]
    assert failed[0]["sf__Error"].startswith("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST:")
    assert failed[0]["sf__Error"].endswith(":Segment__c --")
    assert failed[1]["sf__Error"].startswith("REQUIRED_FIELD_MISSING:")
    assert _rows(bulk2(sf, "Account").get_unprocessed_records(job_id)) == []
    renamed = sf.query("SELECT Name, Dunning_Level__c FROM Account WHERE Hub_Id__c = 'CUS-0000001'")
    assert renamed["records"][0]["Name"] == "Renamed One"
    assert renamed["records"][0]["Dunning_Level__c"] == 2.0
    new = sf.query("SELECT Dunning_Level__c FROM Account WHERE Hub_Id__c = 'CUS-0000013'")
    assert new["records"][0]["Dunning_Level__c"] is None


def test_bulk_insert_update_delete_with_records(org: Org) -> None:
    sf = org.client()
    [inserted] = bulk2(sf, "Contact").insert(
        records=[{"LastName": f"Person {i}", "Email": f"p{i}@example.com"} for i in range(4)],
        wait=0,
    )
    assert (inserted["numberRecordsProcessed"], inserted["numberRecordsFailed"]) == (4, 0)
    ok = bulk2(sf, "Contact").get_successful_records(str(inserted["job_id"]))
    ids = [r["sf__Id"] for r in _rows(ok)]
    [updated] = bulk2(sf, "Contact").update(
        records=[{"Id": ids[0], "Title": "CFO"}, {"Id": ids[1], "Email": "not-an-email"}], wait=0
    )
    assert updated["numberRecordsFailed"] == 1
    failed = _rows(bulk2(sf, "Contact").get_failed_records(str(updated["job_id"])))
    assert failed[0]["sf__Id"] == ids[1]
    assert failed[0]["sf__Error"].startswith("INVALID_EMAIL_ADDRESS:")
    [deleted] = bulk2(sf, "Contact").delete(records=[{"Id": i} for i in ids[2:]], wait=0)
    assert deleted["numberRecordsProcessed"] == 2
    assert sf.query("SELECT COUNT() FROM Contact")["totalSize"] == 2
    titled = sf.query(f"SELECT Title FROM Contact WHERE Id = '{ids[0]}'")
    assert titled["records"][0]["Title"] == "CFO"


def test_bulk_query_pages_with_locator(org: Org) -> None:
    seed_accounts(org.store, 1050)
    sf = org.client()
    pages = [
        str(page)
        for page in bulk2(sf, "Account").query(
            "SELECT Id, Hub_Id__c, Dunning_Level__c, SystemModstamp FROM Account "
            "WHERE Dunning_Level__c < 4",
            max_records=250,
            wait=0,
        )
    ]
    rows = [row for page in pages for row in _rows(page)]
    expected = [i for i in range(1050) if i % 5 < 4]
    assert len(pages) == -(-len(expected) // 250)
    assert [r["Id"] for r in rows] == [account_id(i) for i in expected]
    assert list(rows[0]) == ["Id", "Hub_Id__c", "Dunning_Level__c", "SystemModstamp"]
    assert rows[0]["SystemModstamp"] == "2025-06-01T00:00:00.000Z"
    assert rows[0]["Dunning_Level__c"] == "0"
    assert pages[0].startswith('"Id","Hub_Id__c"')


def test_bulk_query_job_lifecycle_over_raw_http(org: Org) -> None:
    seed_accounts(org.store, 30)
    token = org.token()
    headers = {"Authorization": f"Bearer {token}"}
    with org.http() as client:
        made = client.post(
            "/services/data/v62.0/jobs/query",
            json={"operation": "queryAll", "query": "SELECT Id, Name FROM Account"},
            headers=headers,
        )
        assert made.status_code == 200
        job = made.json()
        assert job["state"] == "UploadComplete" and job["id"].startswith("750")
        info = client.get(f"/services/data/v62.0/jobs/query/{job['id']}", headers=headers).json()
        assert (info["state"], info["numberRecordsProcessed"]) == ("JobComplete", 30)
        first = client.get(
            f"/services/data/v62.0/jobs/query/{job['id']}/results",
            params={"maxRecords": 20},
            headers=headers,
        )
        assert first.headers["Sforce-NumberOfRecords"] == "20"
        assert first.headers["content-type"].startswith("text/csv")
        locator = first.headers["Sforce-Locator"]
        second = client.get(
            f"/services/data/v62.0/jobs/query/{job['id']}/results",
            params={"maxRecords": 20, "locator": locator},
            headers=headers,
        )
        assert second.headers["Sforce-NumberOfRecords"] == "10"
        assert second.headers["Sforce-Locator"] == "null"
        assert len(_rows(first.text)) + len(_rows(second.text)) == 30
        bad = client.post(
            "/services/data/v62.0/jobs/query",
            json={"operation": "query", "query": "SELECT COUNT() FROM Account"},
            headers=headers,
        )
        assert bad.status_code == 400 and bad.json()[0]["errorCode"] == "API_ERROR"
        ingest = client.post(
            "/services/data/v62.0/jobs/ingest",
            json={"object": "Account", "operation": "insert", "contentType": "CSV"},
            headers=headers,
        ).json()
        assert ingest["state"] == "Open"
        assert ingest["contentUrl"].endswith(f"/jobs/ingest/{ingest['id']}/batches")
        put = client.put(
            f"/services/data/v62.0/jobs/ingest/{ingest['id']}/batches",
            content=b"Name,Nope__c\nA,1\n",
            headers={**headers, "Content-Type": "text/csv"},
        )
        assert put.status_code == 201
        client.patch(
            f"/services/data/v62.0/jobs/ingest/{ingest['id']}",
            json={"state": "UploadComplete"},
            headers=headers,
        )
        failed = client.get(f"/services/data/v62.0/jobs/ingest/{ingest['id']}", headers=headers)
        assert failed.json()["state"] == "Failed"
        assert "Nope__c" in failed.json()["errorMessage"]
        unprocessed = client.get(
            f"/services/data/v62.0/jobs/ingest/{ingest['id']}/unprocessedrecords/", headers=headers
        )
        assert _rows(unprocessed.text) == [{"Name": "A", "Nope__c": "1"}]

"""Bulk API 1.0 with JSON content through simple-salesforce's ``sf.bulk`` (jobs, batches,
per-record results, query result ids) and the raw ``/services/async`` resources: job and
batch lifecycle, Bulk API 1.0's error shape, the API budget and change-event origin."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
from collections.abc import Callable, Mapping
from typing import Any, cast

import fastavro
import httpx
import pytest
from simple_salesforce import Salesforce
from simple_salesforce.bulk import SFBulkType
from simple_salesforce.exceptions import SalesforceGeneralError, SalesforceMalformedRequest

from sandbox.salesforce import bulk_v1
from sandbox.salesforce.pubsub_events import EVENTS, SCHEMAS
from sandbox.store import DocumentStore
from tests.sandbox.salesforce.conftest import VERSION, Org, account_id, seed_accounts

pytestmark = pytest.mark.timeout(60)

ASYNC = f"/services/async/{VERSION}"


def bulk(sf: Salesforce, name: str) -> SFBulkType:
    """``sf.bulk.Account`` with the type mypy cannot infer through ``__getattr__``."""
    return cast(SFBulkType, getattr(sf.bulk, name))


def bulk_query(sf: Salesforce, name: str, soql: str, *, deleted: bool = False) -> list[Any]:
    """``sf.bulk.<name>.query(soql)`` (``query_all`` with ``deleted``): the records of
    every result id (the library's hints call the SOQL a list of records)."""
    api = bulk(sf, name)
    run = api.query_all if deleted else api.query
    return list(run(cast(Any, soql), wait=0))


def results(answer: Any) -> list[dict[str, Any]]:
    """The per-record results ``sf.bulk`` DML calls return, typed."""
    return cast(list[dict[str, Any]], list(answer))


class Async:
    """Raw Bulk API 1.0 calls with ``X-SFDC-Session``, as a client without a library."""

    def __init__(self, org: Org, token: str | None = None) -> None:
        self.client = org.http()
        self.token = token or org.token()

    def __call__(self, method: str, path: str, body: Any = None, **kw: Any) -> httpx.Response:
        headers = {"X-SFDC-Session": self.token, "Content-Type": "application/json"}
        content = body if isinstance(body, (str, bytes)) or body is None else json.dumps(body)
        return self.client.request(method, ASYNC + path, content=content, headers=headers, **kw)

    def job(self, operation: str, obj: str = "Account", **extra: Any) -> dict[str, Any]:
        spec = {"operation": operation, "object": obj, "contentType": "JSON", **extra}
        resp = self("POST", "/job", spec)
        assert resp.status_code == 201, resp.text
        return cast(dict[str, Any], resp.json())


def test_insert_three_accounts_then_query_them_back(org: Org) -> None:
    sf = org.client()
    rows: list[Mapping[str, Any]] = [
        {"Name": f"Bulk {i}", "Hub_Id__c": f"BLK-{i}", "Segment__c": "SMB"} for i in range(3)
    ]
    inserted = results(bulk(sf, "Account").insert(rows))
    assert [(r["success"], r["created"], r["errors"]) for r in inserted] == [(True, True, [])] * 3
    new_ids = [r["id"] for r in inserted]
    assert all(i.startswith("001") and len(i) == 18 for i in new_ids)
    records = bulk_query(
        sf,
        "Account",
        "SELECT Id, Name, Hub_Id__c, CreatedDate FROM Account WHERE Hub_Id__c LIKE 'BLK-%' "
        "ORDER BY Hub_Id__c",
    )
    assert [r["Id"] for r in records] == new_ids
    assert [r["Name"] for r in records] == ["Bulk 0", "Bulk 1", "Bulk 2"]
    assert records[0]["attributes"] == {
        "type": "Account",
        "url": f"/services/data/v{VERSION}/sobjects/Account/{new_ids[0]}",
    }
    # Bulk API 1.0 JSON renders datetimes as milliseconds since the epoch
    created = records[0]["CreatedDate"]
    assert isinstance(created, int)
    now_ms = dt.datetime.now(dt.UTC).timestamp() * 1000
    assert abs(now_ms - created) < 60_000
    # the REST API sees the same records
    rest = sf.query("SELECT Id FROM Account WHERE Hub_Id__c LIKE 'BLK-%'")
    assert {r["Id"] for r in rest["records"]} == set(new_ids)


def test_upsert_by_hub_id_updates_and_creates(org: Org) -> None:
    seed_accounts(org.store, 2)  # CUS-0000001, CUS-0000002
    sf = org.client()
    answer = bulk(sf, "Account").upsert(
        [
            {"Hub_Id__c": "CUS-0000001", "Name": "Renamed One"},
            {"Hub_Id__c": "CUS-0000099", "Name": "Brand New", "Segment__c": "Enterprise"},
        ],
        "Hub_Id__c",
    )
    first, second = results(answer)
    assert (first["success"], first["created"], first["id"]) == (True, False, account_id(0))
    assert (second["success"], second["created"]) == (True, True)
    renamed = sf.query("SELECT Name FROM Account WHERE Hub_Id__c = 'CUS-0000001'")
    assert renamed["records"][0]["Name"] == "Renamed One"
    new = sf.query("SELECT Id, Segment__c FROM Account WHERE Hub_Id__c = 'CUS-0000099'")
    assert new["records"][0]["Id"] == second["id"]
    assert new["records"][0]["Segment__c"] == "Enterprise"


def test_a_failing_record_beside_good_ones_touches_nothing_else(org: Org) -> None:
    sf = org.client()
    answer = bulk(sf, "Account").insert(
        [
            {"Name": "Good A", "Hub_Id__c": "MIX-1"},
            {"Name": "Bad Segment", "Hub_Id__c": "MIX-2", "Segment__c": "Galactic"},
            {"Hub_Id__c": "MIX-3"},  # Name is required
            {"Name": "Good B", "Hub_Id__c": "MIX-4"},
        ]
    )
    out = results(answer)
    assert [r["success"] for r in out] == [True, False, False, True]
    assert [r["created"] for r in out] == [True, False, False, True]
    assert out[1]["id"] is None
    assert out[1]["errors"][0]["statusCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    assert out[1]["errors"][0]["fields"] == ["Segment__c"]
    assert out[2]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    stored = sf.query("SELECT Hub_Id__c FROM Account WHERE Hub_Id__c LIKE 'MIX-%'")
    assert sorted(r["Hub_Id__c"] for r in stored["records"]) == ["MIX-1", "MIX-4"]
    # an update batch: one record without its Id fails alone
    updated = results(
        bulk(sf, "Account").update([{"Id": out[0]["id"], "Name": "Good A2"}, {"Name": "No Id"}])
    )
    assert [r["success"] for r in updated] == [True, False]
    assert updated[0]["created"] is False
    assert updated[1]["errors"][0]["statusCode"] == "MISSING_ARGUMENT"
    one = sf.query(f"SELECT Name FROM Account WHERE Id = '{out[0]['id']}'")
    assert one["records"][0]["Name"] == "Good A2"


def test_delete_then_query_all_sees_is_deleted(org: Org) -> None:
    seed_accounts(org.store, 3)
    sf = org.client()
    deleted = results(bulk(sf, "Account").delete([{"Id": account_id(0)}, {"Id": account_id(9)}]))
    assert deleted[0] == {"success": True, "created": False, "id": account_id(0), "errors": []}
    assert deleted[1]["success"] is False
    assert deleted[1]["errors"][0]["statusCode"] == "NOT_FOUND"
    soql = "SELECT Id, IsDeleted FROM Account ORDER BY Id"
    live = bulk_query(sf, "Account", soql)
    assert [r["Id"] for r in live] == [account_id(1), account_id(2)]
    everything = bulk_query(sf, "Account", soql, deleted=True)
    assert [(r["Id"], r["IsDeleted"]) for r in everything] == [
        (account_id(0), True),
        (account_id(1), False),
        (account_id(2), False),
    ]
    gone = results(bulk(sf, "Account").hard_delete([{"Id": account_id(1)}]))
    assert gone[0]["success"] is True
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 1


def test_query_results_split_over_several_result_ids(
    org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bulk_v1, "RESULT_ROWS", 2)
    seed_accounts(org.store, 5)
    sf = org.client()
    records = bulk_query(sf, "Account", "SELECT Id, Name FROM Account ORDER BY Name")
    assert [r["Id"] for r in records] == [account_id(i) for i in range(5)]
    call = Async(org)
    job = call.job("query")
    batch = call("POST", f"/job/{job['id']}/batch", "SELECT Id FROM Account").json()
    ids = call("GET", f"/job/{job['id']}/batch/{batch['id']}/result").json()
    assert len(ids) == 3 and all(i.startswith("752") for i in ids)
    sizes = [
        len(call("GET", f"/job/{job['id']}/batch/{batch['id']}/result/{i}").json()) for i in ids
    ]
    assert sizes == [2, 2, 1]


def test_query_with_parent_fields_and_dates(org: Org) -> None:
    sf = org.client()
    [parent] = results(bulk(sf, "Account").insert([{"Name": "Parent Co"}]))
    kids = results(
        bulk(sf, "Contact").insert(
            [{"LastName": "Kid", "AccountId": parent["id"]}, {"LastName": "Orphan"}]
        )
    )
    assert all(r["success"] for r in kids), kids
    soql = "SELECT LastName, Account.Name FROM Contact ORDER BY LastName"
    records = bulk_query(sf, "Contact", soql)
    assert records[0]["LastName"] == "Kid"
    assert records[0]["Account"]["Name"] == "Parent Co"
    assert records[0]["Account"]["attributes"]["type"] == "Account"
    assert records[1]["Account"] is None
    [sub] = results(
        bulk(sf, "Subscription__c").insert(
            [
                {
                    "Name": "S-1",
                    "Account__c": parent["id"],
                    "Status__c": "active",
                    "Billing_Period__c": "month",
                    "Start_Date__c": "2025-06-01",
                }
            ]
        )
    )
    assert sub["success"], sub
    soql = "SELECT Start_Date__c, End_Date__c, Account__r.CreatedDate FROM Subscription__c"
    [row] = bulk_query(sf, "Subscription__c", soql)
    # dates and datetimes as milliseconds since the epoch (UTC midnight for a date)
    assert row["Start_Date__c"] == 1_748_736_000_000
    assert row["End_Date__c"] is None
    assert isinstance(row["Account__r"]["CreatedDate"], int)


@pytest.mark.parametrize(
    ("soql", "reason"),
    [
        ("SELECT COUNT() FROM Account", "Aggregate queries are not supported"),
        ("SELECT Segment__c, COUNT(Id) FROM Account GROUP BY Segment__c", "Aggregate queries"),
        ("SELECT Id FROM Account LIMIT 5 OFFSET 2", "OFFSET is not supported"),
        ("SELECT Id, (SELECT Id FROM Contacts) FROM Account", "Aggregate Relationships"),
        ("SELECT Nope__c FROM Account", "INVALID_FIELD"),
        ("SELECT Id FROM Contact", "is not the job's object Account"),
    ],
)
def test_queries_bulk_api_refuses_fail_the_batch(org: Org, soql: str, reason: str) -> None:
    sf = org.client()
    with pytest.raises(SalesforceGeneralError) as caught:
        bulk_query(sf, "Account", soql)
    message = str(caught.value.content)
    assert message.startswith("InvalidBatch : Failed to process query: ")
    assert reason in message


def test_job_and_batch_lifecycle(org: Org) -> None:
    call = Async(org)
    job = call.job("insert", concurrencyMode="Serial")
    assert job["id"].startswith("750") and job["state"] == "Open"
    assert (job["operation"], job["object"], job["contentType"]) == ("insert", "Account", "JSON")
    assert job["concurrencyMode"] == "Serial" and job["apiVersion"] == float(VERSION)
    assert job["createdById"] == org.settings.user_id and job["numberBatchesTotal"] == 0
    sent = '[{"Name": "Raw One"}, {"Name": "Raw Two", "Segment__c": "Nope"}]'
    added = call("POST", f"/job/{job['id']}/batch", sent)
    assert added.status_code == 201
    batch = added.json()
    assert batch["id"].startswith("751") and batch["jobId"] == job["id"]
    assert batch["state"] == "Queued"
    seen = call("GET", f"/job/{job['id']}/batch/{batch['id']}").json()
    assert seen["state"] == "Completed"
    assert (seen["numberRecordsProcessed"], seen["numberRecordsFailed"]) == (2, 1)
    listed = call("GET", f"/job/{job['id']}/batch").json()
    assert [b["id"] for b in listed["batchInfo"]] == [batch["id"]]
    request = call("GET", f"/job/{job['id']}/batch/{batch['id']}/request")
    assert request.content == sent.encode()
    closed = call("POST", f"/job/{job['id']}", {"state": "Closed"}).json()
    assert closed["state"] == "Closed"
    assert (closed["numberBatchesCompleted"], closed["numberRecordsProcessed"]) == (1, 2)
    assert closed["numberRecordsFailed"] == 1
    refused = call("POST", f"/job/{job['id']}/batch", '[{"Name": "Late"}]')
    assert refused.status_code == 400
    assert refused.json()["exceptionCode"] == "InvalidJobState"
    assert call("GET", f"/job/{job['id']}").json()["numberBatchesTotal"] == 1
    aborted = call("POST", f"/job/{job['id']}", {"state": "Aborted"}).json()
    assert aborted["state"] == "Aborted"
    again = call("POST", f"/job/{job['id']}", {"state": "Aborted"})
    assert again.json()["exceptionCode"] == "InvalidJobState"


def test_malformed_batches_fail_and_have_no_results(org: Org) -> None:
    call = Async(org)
    job = call.job("insert")
    for body in ("not json", '{"Name": "an object, not an array"}'):
        batch = call("POST", f"/job/{job['id']}/batch", body).json()
        seen = call("GET", f"/job/{job['id']}/batch/{batch['id']}").json()
        assert seen["state"] == "Failed" and seen["stateMessage"].startswith("InvalidBatch : ")
        result = call("GET", f"/job/{job['id']}/batch/{batch['id']}/result")
        assert result.status_code == 400 and result.json()["exceptionCode"] == "InvalidBatch"
    too_many = json.dumps([{"Name": "x"}] * (bulk_v1.MAX_BATCH_RECORDS + 1))
    batch = call("POST", f"/job/{job['id']}/batch", too_many).json()
    seen = call("GET", f"/job/{job['id']}/batch/{batch['id']}").json()
    assert seen["state"] == "Failed" and "10000" in seen["stateMessage"]
    assert call("GET", f"/job/{job['id']}").json()["numberBatchesFailed"] == 3
    assert org.store.count("Account") == 0


def test_errors_in_bulk_api_shape(org: Org) -> None:
    call = Async(org)
    cases: list[tuple[str, str, Any, int, str]] = [
        ("POST", "/job", {"operation": "insert", "object": "Nope__c", "contentType": "JSON"},
         400, "InvalidJob"),
        ("POST", "/job", {"operation": "merge", "object": "Account", "contentType": "JSON"},
         400, "InvalidJob"),
        ("POST", "/job", {"operation": "insert", "object": "Account", "contentType": "CSV"},
         400, "InvalidJob"),
        ("POST", "/job", {"operation": "upsert", "object": "Account", "contentType": "JSON",
                          "externalIdFieldName": "Name"}, 400, "InvalidJob"),
        ("GET", "/job/750000000000000AAA", None, 400, "InvalidJob"),
        ("GET", "/jobs", None, 400, "InvalidOperation"),
        ("DELETE", "/job", None, 405, "InvalidUrl"),
    ]  # fmt: skip
    for method, path, body, status, code in cases:
        resp = call(method, path, body)
        assert (resp.status_code, resp.json()["exceptionCode"]) == (status, code), (path, body)
        assert resp.json()["exceptionMessage"]
    job = call.job("insert")
    missing = call("GET", f"/job/{job['id']}/batch/751000000000000AAA")
    assert (missing.status_code, missing.json()["exceptionCode"]) == (400, "InvalidBatch")
    state = call("POST", f"/job/{job['id']}", {"state": "Completed"})
    assert state.json()["exceptionCode"] == "InvalidJobState"


def test_bad_or_missing_session_is_refused(org: Org) -> None:
    forged = org.client(token=f"{org.settings.org_id[:15]}!forged.token")
    with pytest.raises(SalesforceMalformedRequest) as caught:
        bulk(forged, "Account").insert([{"Name": "Never"}])
    assert caught.value.content == {
        "exceptionCode": "InvalidSessionId",
        "exceptionMessage": "Invalid session id",
    }
    with org.http() as client:
        resp = client.post(
            f"{ASYNC}/job", json={"operation": "insert", "object": "Account", "contentType": "JSON"}
        )
    assert resp.status_code == 400 and resp.json()["exceptionCode"] == "InvalidSessionId"
    assert org.store.count("Account") == 0


def test_every_call_is_charged_to_the_api_budget(org_factory: Callable[..., Org]) -> None:
    org = org_factory(daily_api_limit=8)
    sf = org.client()
    before = sf.limits()["DailyApiRequests"]["Remaining"]
    bulk(sf, "Account").insert([{"Name": "Charged"}])  # create, batch, poll, results, close
    after = sf.limits()["DailyApiRequests"]["Remaining"]
    assert before - after == 6  # five Bulk API calls and this limits call
    call = Async(org)
    assert call("GET", "/job/750000000000000AAA").status_code == 400  # charged: 8 of 8
    refused = call("POST", "/job", {"operation": "insert", "object": "Account"})
    assert refused.status_code == 403
    assert refused.json()["exceptionCode"] == "ExceededQuota"


def _change_origins(store: DocumentStore) -> list[tuple[str, str]]:
    """(changeType, changeOrigin) of every stored change event, decoded from Avro."""
    schemas = {d["id"]: fastavro.parse_schema(json.loads(d["json"])) for d in store.iter(SCHEMAS)}
    out = []
    for doc in store.iter(EVENTS):
        payload = io.BytesIO(base64.b64decode(doc["payload"]))
        event = cast(dict[str, Any], fastavro.schemaless_reader(payload, schemas[doc["schema_id"]]))
        head = event["ChangeEventHeader"]
        out.append((head["changeType"], head["changeOrigin"]))
    return out


def test_change_events_name_the_bulk_api_as_origin(org: Org) -> None:
    sf = org.client()
    [created] = results(bulk(sf, "Account").insert([{"Name": "Evented"}]))
    bulk(sf, "Account").update([{"Id": created["id"], "Name": "Evented 2"}])
    origins = _change_origins(org.store)
    assert [kind for kind, _ in origins] == ["CREATE", "UPDATE"]
    for _, origin in origins:
        assert origin.startswith(f"com/salesforce/api/bulkapi/{VERSION};client=")

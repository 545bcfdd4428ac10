"""Every fault mode through httpx, restarts keeping state, and the book seeded through
sandbox/seed/wms.py read back over the API."""

from __future__ import annotations

import time
from collections import defaultdict

import httpx
import pytest

from sandbox.faults import FaultState
from sandbox.seed.book import Book
from sandbox.seed.drift import DRIFT_TS, ORPHAN_ALLOCATION
from sandbox.seed.load import seed_systems
from sandbox.seed.wms import WmsWriter, on_hand
from sandbox.seed.xref import wms_allocation_id
from sandbox.server import serve_in_thread
from sandbox.store import DocumentStore
from sandbox.wms import WmsSettings, create_app
from tests.sandbox.wms.conftest import API_KEY, new_record

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(
    ("mode", "code"),
    [("429", "rate_limited"), ("500", "internal_error"), ("503", "service_unavailable")],
)
def test_status_faults_answer_the_wms_error_body(seeded, mode, code):
    seeded.fault(mode=mode, count=1, retry_after=3)
    with seeded.client() as client:
        resp = client.get("/v1/allocations")
        assert resp.status_code == int(mode)
        error = resp.json()["error"]
        assert error["code"] == code
        assert error["request_id"].startswith("req_")
        if mode in ("429", "503"):
            assert resp.headers["retry-after"] == "3"
        else:
            assert "retry-after" not in resp.headers
        assert client.get("/v1/allocations").status_code == 200  # count=1: cleared


def test_faults_can_target_paths_and_start_late(seeded):
    seeded.fault(mode="503", path="batchUpsert", after=1, count=1)
    with seeded.client() as client:
        assert client.get("/v1/allocations").status_code == 200  # other path: untouched
        body = {"records": [new_record("ALC-F1")]}
        assert client.post("/v1/allocations:batchUpsert", json=body).status_code == 200
        assert client.post("/v1/allocations:batchUpsert", json=body).status_code == 503
        assert client.post("/v1/allocations:batchUpsert", json=body).status_code == 200


def test_latency_delays_but_answers(seeded):
    seeded.fault(mode="latency", latency_ms=300, count=1)
    with seeded.client() as client:
        started = time.monotonic()
        assert client.get("/v1/allocations", params={"limit": 1}).status_code == 200
        assert time.monotonic() - started >= 0.3


def test_drop_cuts_the_answer_after_the_write_and_a_keyed_retry_replays(seeded):
    seeded.fault(mode="drop", count=1, path="batchUpsert")
    body = {"records": [new_record("ALC-D1"), new_record("ALC-D2")]}
    headers = {"Idempotency-Key": "drop-test-1"}
    with seeded.client() as client:
        with pytest.raises(httpx.TransportError):
            client.post("/v1/allocations:batchUpsert", json=body, headers=headers)
        # the write was committed before the connection dropped
        stored = client.get("/v1/allocations", params={"external_ref": "ALC-D1,ALC-D2"}).json()
        assert [r["version"] for r in stored["data"]] == [1, 1]
        retry = client.post("/v1/allocations:batchUpsert", json=body, headers=headers)
        assert retry.headers["idempotent-replayed"] == "true"
        assert [r["status"] for r in retry.json()["results"]] == ["created", "created"]
        unkeyed = client.post("/v1/allocations:batchUpsert", json=body)
        assert [r["status"] for r in unkeyed.json()["results"]] == ["unchanged", "unchanged"]


def test_token_expiry_answers_401_api_key_expired_once(seeded):
    with seeded.client() as client:
        assert client.get("/v1/allocations").status_code == 200
        seeded.fault(mode="token_expiry")
        expired = client.get("/v1/allocations")
        assert expired.status_code == 401
        assert expired.json()["error"]["code"] == "api_key_expired"
        assert 'error="invalid_token"' in expired.headers["www-authenticate"]
        assert client.get("/v1/allocations").status_code == 200
        seeded.fault(mode="token_expiry", after=2, count=1)
        statuses = [client.get("/v1/allocations").status_code for _ in range(4)]
        assert statuses == [200, 200, 401, 200]


def test_reject_fault_refuses_records_by_external_ref_deterministically(seeded):
    seeded.fault(mode="reject", rate=0.5)
    refs = [f"ALC-R{i:02d}" for i in range(20)]
    rejected = {r for r in refs if seeded.faults.should_reject(r)}
    assert rejected and len(rejected) < len(refs)
    with seeded.client() as client:
        resp = client.post(
            "/v1/allocations:batchUpsert", json={"records": [new_record(r) for r in refs]}
        )
        results = resp.json()["results"]
        for ref, result in zip(refs, results, strict=True):
            if ref in rejected:
                assert result["status"] == "error"
                assert result["error"]["code"] == "record_rejected"
                assert ref in result["error"]["message"]
            else:
                assert result["status"] == "created"
        single = client.put(f"/v1/allocations/{min(rejected)}", json=new_record(min(rejected)))
        assert single.status_code == 422
        assert single.json()["error"]["code"] == "record_rejected"
        listed = client.get("/v1/allocations", params={"external_ref": ",".join(refs)}).json()
        assert {r["external_ref"] for r in listed["data"]} == set(refs) - rejected
    httpx.delete(f"{seeded.base}/__sandbox/faults", timeout=5)
    with seeded.client() as client:
        again = client.put(f"/v1/allocations/{min(rejected)}", json=new_record(min(rejected)))
        assert again.status_code == 201


def test_restart_keeps_allocations_ids_stamps_and_idempotency_answers(tmp_path):
    path = tmp_path / "wms.sqlite"
    settings = WmsSettings(api_key=API_KEY)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    store = DocumentStore(path)
    with (
        serve_in_thread(create_app(store, FaultState(), settings)) as base,
        httpx.Client(base_url=base, headers=headers) as client,
    ):
        first = client.put(
            "/v1/allocations/ALC-S1",
            json=new_record("ALC-S1"),
            headers={"Idempotency-Key": "restart-1"},
        ).json()
        client.patch(f"/v1/allocations/{first['id']}", json={"status": "picked"})
        before = client.get("/v1/allocations").json()["data"]
    store.close()
    store = DocumentStore(path)
    with (
        serve_in_thread(create_app(store, FaultState(), settings)) as base,
        httpx.Client(base_url=base, headers=headers) as client,
    ):
        assert client.get("/v1/allocations").json()["data"] == before
        replay = client.put(
            "/v1/allocations/ALC-S1",
            json=new_record("ALC-S1"),
            headers={"Idempotency-Key": "restart-1"},
        )
        assert replay.headers["idempotent-replayed"] == "true"
        assert replay.json() == first
        second = client.put("/v1/allocations/ALC-S2", json=new_record("ALC-S2")).json()
        assert second["id"] == "WN000000000002"  # the id range continues
        assert second["updated_at"] > before[-1]["updated_at"]
        after = client.get(
            "/v1/allocations", params={"updated_since": before[-1]["updated_at"]}
        ).json()["data"]
        assert [r["external_ref"] for r in after] == ["ALC-S1", "ALC-S2"]
    store.close()


def test_book_seeded_through_the_writer_reads_back_with_its_drift(wms):
    book = Book(seed=11, customers=40)
    writer = WmsWriter(wms.store)
    report = seed_systems(book, [writer])
    assert "allocation in the WMS that no other system knows" in report.drifts
    assert "allocation quantity wrong in the WMS" in report.drifts
    expected = {a["hub_id"]: a for s in book.slices() for a in s.allocations}
    with wms.client() as client:
        seen, cursor = [], None
        while True:
            params = {"limit": 50, **({"cursor": cursor} if cursor else {})}
            body = client.get("/v1/allocations", params=params).json()
            seen.extend(body["data"])
            if not (cursor := body["next_cursor"]):
                break
        by_ref = {r["external_ref"]: r for r in seen}
        assert set(by_ref) == set(expected) | {ORPHAN_ALLOCATION}
        drifted = [ref for ref, a in expected.items() if by_ref[ref]["quantity"] != a["quantity"]]
        assert len(drifted) == 1
        record = by_ref[drifted[0]]
        assert record["quantity"] == expected[drifted[0]]["quantity"] + 1
        assert record["status"] == "reserved" and record["version"] == 2
        assert record["updated_at"] == DRIFT_TS.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        orphan = by_ref[ORPHAN_ALLOCATION]
        assert orphan["id"] == wms_allocation_id(ORPHAN_ALLOCATION)
        for ref, a in expected.items():
            r = by_ref[ref]
            assert r["id"] == wms_allocation_id(ref)
            assert (r["order_ref"], r["line_ref"], r["sku"], r["location"]) == (
                a["subscription_id"],
                a["subscription_item_id"],
                a["sku"],
                a["location"],
            )
            assert r["delivery_date"] == a["delivery_date"].isoformat()
            assert r["status"] == a["status"]
        open_qty: dict[tuple[str, str], int] = defaultdict(int)
        for a in expected.values():
            if a["status"] in ("reserved", "picked"):
                open_qty[(a["sku"], a["location"])] += a["quantity"]
        stock = {(s["sku"], s["location"]): s for s in client.get("/v1/stock").json()["data"]}
        for key, qty in open_qty.items():
            assert stock[key]["on_hand"] == on_hand(qty)
        assert (
            sum(s["allocated"] for s in stock.values())
            == sum(open_qty.values()) + 1 + (orphan["quantity"])
        )

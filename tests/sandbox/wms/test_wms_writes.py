"""Upserts (single and batch), validation, idempotent replays, the fulfilment lifecycle."""

from __future__ import annotations

import json

import pytest

from tests.sandbox.wms.conftest import new_record

pytestmark = pytest.mark.timeout(60)


def test_put_upserts_by_external_ref_created_updated_unchanged(wms):
    with wms.client() as client:
        created = client.put("/v1/allocations/ALC-1", json=new_record("ALC-1"))
        assert created.status_code == 201
        assert created.headers["wms-upsert-result"] == "created"
        doc = created.json()
        assert doc["id"].startswith("WN") and doc["status"] == "reserved"
        assert doc["version"] == 1 and doc["created_at"] == doc["updated_at"]
        assert doc["updated_at"].endswith("Z")
        same = client.put("/v1/allocations/ALC-1", json=new_record("ALC-1"))
        assert (same.status_code, same.headers["wms-upsert-result"]) == (200, "unchanged")
        assert same.json() == doc
        # omitted fields keep their value; read-only fields sent back are ignored
        changed = client.put(
            "/v1/allocations/ALC-1", json={"quantity": 5, "version": 99, "id": doc["id"]}
        )
        assert (changed.status_code, changed.headers["wms-upsert-result"]) == (200, "updated")
        body = changed.json()
        assert (body["quantity"], body["sku"], body["version"]) == (5, "HW-GW-1", 2)
        assert body["updated_at"] > doc["updated_at"]
        assert changed.headers["etag"] == 'W/"2"'
        assert client.get(f"/v1/allocations/{doc['id']}").json() == body


def test_put_validation_names_every_bad_field(wms):
    with wms.client() as client:
        bad = client.put(
            "/v1/allocations/ALC-2",
            json={
                "quantity": 1.5,
                "location": "Berlin",
                "delivery_date": "2025-02-30",
                "colour": "red",
                "status": "lost",
            },
        )
        assert bad.status_code == 422
        error = bad.json()["error"]
        assert error["code"] == "validation_failed"
        codes = {d["field"]: d["code"] for d in error["details"]}
        assert codes == {
            "quantity": "invalid",
            "location": "invalid",
            "delivery_date": "invalid",
            "colour": "unknown_field",
            "status": "invalid",
            "sku": "required",
        }
        for quantity in (0, -1, True, "3"):
            resp = client.put("/v1/allocations/ALC-2", json=new_record("ALC-2", quantity=quantity))
            assert resp.status_code == 422, quantity
            assert resp.json()["error"]["details"][0]["field"] == "quantity"
        other_ref = client.put("/v1/allocations/ALC-2", json=new_record("ALC-3"))
        assert other_ref.json()["error"]["details"][0]["field"] == "external_ref"
        assert (
            client.put("/v1/allocations/ALC-2", content=b"{not json").json()["error"]["code"]
            == "invalid_json"
        )
        assert client.get("/v1/allocations").json()["data"] == []  # nothing was written


def test_ids_and_if_match_preconditions(wms):
    with wms.client() as client:
        first = client.put("/v1/allocations/ALC-A", json=new_record("ALC-A")).json()
        second = client.put("/v1/allocations/ALC-B", json=new_record("ALC-B")).json()
        clash = client.put("/v1/allocations/ALC-A", json={"id": second["id"], "quantity": 3})
        assert clash.status_code == 409
        assert clash.json()["error"]["code"] == "id_mismatch"
        # an unknown id for an unknown ref (the hub's xref is stale): created anew
        fresh = client.put("/v1/allocations/ALC-C", json=new_record("ALC-C", id="WA-GONE"))
        assert fresh.status_code == 201 and fresh.json()["id"] != "WA-GONE"
        stale = client.put(
            "/v1/allocations/ALC-A", json={"quantity": 9}, headers={"If-Match": 'W/"7"'}
        )
        assert stale.status_code == 412
        assert stale.json()["error"]["code"] == "precondition_failed"
        ok = client.patch(
            f"/v1/allocations/{first['id']}", json={"quantity": 9}, headers={"If-Match": 'W/"1"'}
        )
        assert ok.status_code == 200 and ok.json()["version"] == 2
        moved = client.patch(f"/v1/allocations/{first['id']}", json={"external_ref": "ALC-Z"})
        assert moved.status_code == 409
        assert client.patch("/v1/allocations/WA-NONE", json={"status": "picked"}).status_code == 404


def test_status_lifecycle_reserved_picked_shipped_or_released(wms):
    with wms.client() as client:
        a = client.put("/v1/allocations/ALC-L1", json=new_record("ALC-L1")).json()["id"]
        b = client.put("/v1/allocations/ALC-L2", json=new_record("ALC-L2")).json()["id"]
        for status in ("picked", "shipped"):
            resp = client.patch(f"/v1/allocations/{a}", json={"status": status})
            assert (resp.status_code, resp.json()["status"]) == (200, status)
        back = client.patch(f"/v1/allocations/{a}", json={"status": "reserved"})
        assert back.status_code == 409
        error = back.json()["error"]
        assert error["code"] == "invalid_status_transition"
        assert error["details"] == [
            {
                "field": "status",
                "code": "invalid_transition",
                "message": "shipped -> reserved not allowed",
            }
        ]
        skip = client.patch(f"/v1/allocations/{b}", json={"status": "shipped"})
        assert skip.status_code == 409  # reserved -> shipped skips picking
        assert client.patch(f"/v1/allocations/{b}", json={"status": "picked"}).status_code == 200
        frozen = client.put("/v1/allocations/ALC-L2", json={"quantity": 7})
        assert frozen.status_code == 409
        assert frozen.json()["error"]["code"] == "allocation_not_modifiable"
        assert frozen.json()["error"]["details"][0]["field"] == "quantity"
        released = client.put("/v1/allocations/ALC-L2", json={"status": "released"})
        assert released.json()["status"] == "released"
        assert client.patch(f"/v1/allocations/{b}", json={"status": "picked"}).status_code == 409
        born_shipped = client.put(
            "/v1/allocations/ALC-L3", json=new_record("ALC-L3", status="shipped")
        )
        assert born_shipped.status_code == 409
        assert born_shipped.json()["error"]["details"][0]["field"] == "status"


def test_batch_upsert_answers_per_record_with_one_commit_stamp(wms):
    with wms.client() as client:
        client.put("/v1/allocations/ALC-B1", json=new_record("ALC-B1"))
        records = [
            new_record("ALC-B1"),  # unchanged
            new_record("ALC-B2"),  # created
            {"external_ref": "ALC-B1", "quantity": 4},  # updated (sees the batch's own state)
            new_record("ALC-B3", quantity=0),  # error
            {"sku": "X"},  # error: no external_ref
        ]
        resp = client.post("/v1/allocations:batchUpsert", json={"records": records})
        assert resp.status_code == 200
        body = resp.json()
        assert [r["status"] for r in body["results"]] == [
            "unchanged",
            "created",
            "updated",
            "error",
            "error",
        ]
        assert body["summary"] == {"created": 1, "updated": 1, "unchanged": 1, "error": 2}
        assert body["results"][3]["error"]["details"][0]["field"] == "quantity"
        assert body["results"][4]["error"]["details"][0]["field"] == "external_ref"
        assert [r["index"] for r in body["results"]] == [0, 1, 2, 3, 4]
        changed = client.get("/v1/allocations", params={"external_ref": "ALC-B1,ALC-B2"}).json()[
            "data"
        ]
        assert len({r["updated_at"] for r in changed}) == 1  # one stamp for the batch
        too_big = client.post(
            "/v1/allocations:batchUpsert",
            json={"records": [new_record(f"R-{i}") for i in range(501)]},
        )
        assert too_big.status_code == 413
        assert too_big.json()["error"]["code"] == "batch_too_large"
        empty = client.post("/v1/allocations:batchUpsert", json={"records": []})
        assert empty.status_code == 422
        full = client.post(
            "/v1/allocations:batchUpsert",
            json={"records": [new_record(f"R-{i}") for i in range(500)]},
        )
        assert full.json()["summary"]["created"] == 500


def test_idempotency_key_replays_and_refuses_a_different_body(wms):
    with wms.client() as client:
        body = {"records": [new_record("ALC-I1"), new_record("ALC-I2")]}
        headers = {"Idempotency-Key": "batch-0001"}
        first = client.post("/v1/allocations:batchUpsert", json=body, headers=headers)
        assert first.status_code == 200 and "idempotent-replayed" not in first.headers
        # the warehouse picks one in between: a replay still answers what happened then
        picked_id = first.json()["results"][0]["id"]
        client.patch(f"/v1/allocations/{picked_id}", json={"status": "picked"})
        replay = client.post(
            "/v1/allocations:batchUpsert",
            content=b'{ "records": ' + json.dumps(body["records"]).encode() + b"}",
            headers={**headers, "Content-Type": "application/json"},
        )
        assert replay.status_code == 200
        assert replay.headers["idempotent-replayed"] == "true"
        assert replay.json() == first.json()
        assert client.get(f"/v1/allocations/{picked_id}").json()["version"] == 2  # not re-run
        reused = client.post(
            "/v1/allocations:batchUpsert",
            json={"records": [new_record("ALC-I3")]},
            headers=headers,
        )
        assert reused.status_code == 422
        assert reused.json()["error"]["code"] == "idempotency_key_reused"
        assert client.get("/v1/allocations", params={"external_ref": "ALC-I3"}).json()["data"] == []
        # single PUTs and errors are remembered too
        put = client.put(
            "/v1/allocations/ALC-I4", json=new_record("ALC-I4"), headers={"Idempotency-Key": "p1"}
        )
        again = client.put(
            "/v1/allocations/ALC-I4", json=new_record("ALC-I4"), headers={"Idempotency-Key": "p1"}
        )
        assert (put.status_code, again.status_code) == (201, 201)
        assert again.headers["wms-upsert-result"] == "created"
        assert again.headers["etag"] == put.headers["etag"]
        bad = {"Idempotency-Key": "p2"}
        first_bad = client.put("/v1/allocations/ALC-I5", json={"quantity": 0}, headers=bad)
        second_bad = client.put("/v1/allocations/ALC-I5", json={"quantity": 0}, headers=bad)
        assert first_bad.status_code == second_bad.status_code == 422
        assert second_bad.headers["idempotent-replayed"] == "true"
        long_key = client.put(
            "/v1/allocations/ALC-I6",
            json=new_record("ALC-I6"),
            headers={"Idempotency-Key": "k" * 256},
        )
        assert long_key.status_code == 400
        assert long_key.json()["error"]["code"] == "invalid_idempotency_key"


def test_idempotency_answers_expire_after_the_ttl(wms_factory):
    wms = wms_factory(idempotency_ttl_seconds=1)
    with wms.client() as client:
        headers = {"Idempotency-Key": "short-lived"}
        client.put("/v1/allocations/ALC-T", json=new_record("ALC-T"), headers=headers)
        doc = wms.store.get("idempotency", "short-lived")
        wms.store.put("idempotency", "short-lived", {**doc, "stored_at": doc["stored_at"] - 5})
        later = client.put("/v1/allocations/ALC-T", json=new_record("ALC-T"), headers=headers)
        assert "idempotent-replayed" not in later.headers
        assert later.headers["wms-upsert-result"] == "unchanged"

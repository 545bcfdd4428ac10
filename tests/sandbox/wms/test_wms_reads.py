"""Auth, cursor paging across equal timestamps, filters, single reads and stock."""

from __future__ import annotations

import pytest

from tests.sandbox.wms.conftest import API_KEY, allocation

pytestmark = pytest.mark.timeout(60)


def _all_pages(client, **params):
    seen, pages, cursor = [], 0, None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        resp = client.get("/v1/allocations", params=query)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        seen.extend(body["data"])
        pages += 1
        cursor = body["next_cursor"]
        assert body["has_more"] is (cursor is not None)
        if cursor is None:
            return seen, pages


def test_requests_without_a_valid_key_get_401_with_the_error_body(seeded):
    for client, code in (
        (seeded.client(key=None), "unauthenticated"),
        (seeded.client(key="wrong-key"), "invalid_api_key"),
    ):
        with client:
            resp = client.get("/v1/allocations")
        assert resp.status_code == 401
        assert resp.headers["www-authenticate"].startswith('Bearer realm="wms"')
        error = resp.json()["error"]
        assert error["code"] == code
        assert error["request_id"].startswith("req_")
        assert API_KEY not in resp.text
    with seeded.client(key=None) as client:
        # the key travels as a bearer token only (documented), not as X-Api-Key
        assert client.get("/v1/allocations", headers={"X-Api-Key": API_KEY}).status_code == 401
        assert client.get("/v1/allocations", headers={"Authorization": API_KEY}).status_code == 401
        ok = client.get("/v1/allocations", headers={"Authorization": f"bearer {API_KEY}"})
        assert ok.status_code == 200


def test_paging_by_updated_at_then_id_never_skips_equal_timestamps(seeded):
    with seeded.client() as client:
        seen, pages = _all_pages(client, limit=3)
    assert pages == 8  # 23 records, 3 a page
    ids = [r["id"] for r in seen]
    assert ids == [f"WA{n:06d}" for n in range(23)]  # 5 per stamp, ordered by id within
    keys = [(r["updated_at"], r["id"]) for r in seen]
    assert keys == sorted(keys)
    assert seen[0]["updated_at"] == "2025-06-01T08:00:00.000000Z"


def test_updated_since_is_inclusive_and_a_write_mid_scan_is_seen_later(seeded):
    with seeded.client() as client:
        since = client.get("/v1/allocations", params={"updated_since": "2025-06-01T10:00:02+02:00"})
        assert [r["id"] for r in since.json()["data"]] == [f"WA{n:06d}" for n in range(10, 23)]
        first = client.get("/v1/allocations", params={"limit": 5}).json()
        # the warehouse picks WA000000 (already paged past): it moves to the end
        picked = client.patch("/v1/allocations/WA000000", json={"status": "picked"})
        assert picked.status_code == 200
        rest, _ = _all_pages(client, limit=5, cursor=first["next_cursor"])
    assert [r["id"] for r in rest][-1] == "WA000000"
    assert len(rest) == 19  # 18 not yet read + the changed one


def test_filters_status_external_ref_sku_location(seeded):
    with seeded.client() as client:
        picked, _ = _all_pages(client, status="picked,shipped", limit=2)
        assert {r["status"] for r in picked} == {"picked", "shipped"}
        assert len(picked) == len([n for n in range(23) if n % 5 in (2, 3)])
        refs = client.get(
            "/v1/allocations", params={"external_ref": "ALC-000021,ALC-000004,ALC-404"}
        ).json()
        assert [r["id"] for r in refs["data"]] == ["WA000004", "WA000021"]
        at = client.get("/v1/allocations", params={"sku": "CONS-LBL", "location": "DE01"}).json()
        expected = [f"WA{n:06d}" for n in range(23) if n % 2 == 1 and n % 3 == 1]
        assert [r["id"] for r in at["data"]] == expected


def test_query_validation_and_foreign_cursors(seeded):
    with seeded.client() as client:
        resp = client.get(
            "/v1/allocations",
            params={"limit": "501", "status": "lost", "updated_since": "2025-06-01T08:00:00"},
        )
        assert resp.status_code == 422
        error = resp.json()["error"]
        assert error["code"] == "validation_failed"
        assert {d["field"] for d in error["details"]} == {"limit", "status", "updated_since"}
        too_many = ",".join(f"ALC-{n}" for n in range(101))
        assert client.get("/v1/allocations", params={"external_ref": too_many}).status_code == 422
        cursor = client.get("/v1/allocations", params={"limit": 2}).json()["next_cursor"]
        other = client.get("/v1/allocations", params={"cursor": cursor, "status": "picked"})
        assert other.status_code == 400
        assert other.json()["error"]["code"] == "invalid_cursor"
        assert client.get("/v1/allocations", params={"cursor": "garbage!"}).status_code == 400
        assert client.get("/v1/allocations", params={"limit": 500}).status_code == 200


def test_get_by_wms_id_with_etag_and_json_404s(seeded):
    with seeded.client() as client:
        resp = client.get("/v1/allocations/WA000007")
        assert resp.status_code == 200
        assert resp.headers["etag"] == 'W/"1"'
        body = resp.json()
        assert body == {
            **allocation(7),
            "updated_at": "2025-06-01T08:00:01.000000Z",
            "created_at": "2025-06-01T08:00:01.000000Z",
            "version": 1,
        }
        missing = client.get("/v1/allocations/WA999999")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "not_found"
        assert client.get("/v1/nowhere").json()["error"]["code"] == "not_found"
        assert client.delete("/v1/allocations").json()["error"]["code"] == "method_not_allowed"


def test_stock_is_on_hand_minus_open_allocations_and_shipping_issues_goods(seeded):
    with seeded.client() as client:
        rows = client.get("/v1/stock", params={"sku": "HW-GW-1", "location": "US01"}).json()
        open_qty = sum(
            a["quantity"]
            for a in map(allocation, range(23))
            if a["sku"] == "HW-GW-1"
            and a["location"] == "US01"
            and a["status"] in ("reserved", "picked")
        )
        picked_qty = sum(
            a["quantity"]
            for a in map(allocation, range(23))
            if a["sku"] == "HW-GW-1" and a["location"] == "US01" and a["status"] == "picked"
        )
        assert rows["data"] == [
            {
                "sku": "HW-GW-1",
                "location": "US01",
                "on_hand": 100,
                "allocated": open_qty,
                "picked": picked_qty,
                "available": 100 - open_qty,
            }
        ]
        # WA000012: HW-GW-1 at US01, picked, quantity 1 -> shipped: goods leave the shelf
        shipped = client.patch("/v1/allocations/WA000012", json={"status": "shipped"})
        assert shipped.status_code == 200
        after = client.get("/v1/stock", params={"sku": "HW-GW-1", "location": "US01"}).json()
        row = after["data"][0]
        assert (row["on_hand"], row["allocated"], row["available"]) == (
            99,
            open_qty - 1,
            100 - open_qty,
        )
        counted = client.put("/v1/stock/HW-GW-1/US01", json={"on_hand": 40})
        assert counted.status_code == 200
        assert counted.json()["available"] == 40 - (open_qty - 1)
        bad = client.put("/v1/stock/HW-GW-1/us1", json={"on_hand": -1})
        assert bad.status_code == 422
        assert {d["field"] for d in bad.json()["error"]["details"]} == {"on_hand", "location"}
        everything = client.get("/v1/stock").json()["data"]
        assert len(everything) == 6

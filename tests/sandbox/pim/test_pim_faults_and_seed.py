"""Every fault mode answered in Akeneo's shape, restarts that keep state, and the seed
writer's products as the emulator serves them."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from sandbox.pim import seed_records
from sandbox.seed.book import Book
from sandbox.seed.pim import PimWriter
from tests.sandbox.pim.conftest import COLLECTION, Pim, identifiers

pytestmark = pytest.mark.timeout(60)
PRODUCTS = "/api/rest/v1/products"


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("429", "Too many requests: the sandbox is throttling this client"),
        ("500", "Internal server error injected by the sandbox"),
        ("503", "Service unavailable: the sandbox is simulating an outage"),
    ],
)
def test_status_faults_answer_akeneo_error_bodies(seeded: Pim, mode: str, message: str) -> None:
    client = seeded.client()
    seeded.fault(mode=mode, count=1, retry_after=3)
    response = client.get(PRODUCTS)
    assert response.status_code == int(mode)
    assert response.json() == {"code": int(mode), "message": message}
    assert response.headers["content-type"] == "application/json"
    if mode in ("429", "503"):
        assert response.headers["retry-after"] == "3"
    else:
        assert "retry-after" not in response.headers
    assert client.get(PRODUCTS).status_code == 200  # count=1: cleared itself


def test_faults_hit_the_token_endpoint_too_and_admin_routes_never(seeded: Pim) -> None:
    seeded.fault(mode="503", count=2, retry_after=1, path="/api/oauth/")
    assert seeded.token().status_code == 503
    health = httpx.get(f"{seeded.base}/__sandbox/health", timeout=5)
    assert health.json() == {"status": "ok"}
    assert seeded.token().status_code == 503
    assert seeded.token().status_code == 200


def test_latency_and_dropped_connection(seeded: Pim) -> None:
    client = seeded.client()
    seeded.fault(mode="latency", latency_ms=400, count=1)
    started = time.monotonic()
    assert client.get(PRODUCTS, params={"limit": 1}).status_code == 200
    assert time.monotonic() - started >= 0.4
    seeded.fault(mode="drop", count=1)
    with pytest.raises(httpx.TransportError):
        client.get(PRODUCTS, params={"limit": 50}).json()
    assert client.get(PRODUCTS, params={"limit": 1}).status_code == 200


def test_token_expiry_invalidates_access_tokens_but_not_refresh_tokens(seeded: Pim) -> None:
    token = seeded.token().json()
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    http = seeded.http()
    assert http.get(PRODUCTS, headers=headers).status_code == 200
    seeded.fault(mode="token_expiry")
    expired = http.get(PRODUCTS, headers=headers)
    assert expired.status_code == 401
    assert expired.json() == {"code": 401, "message": "The access token provided is invalid."}
    renewed = seeded.token(grant_type="refresh_token", refresh_token=token["refresh_token"])
    assert renewed.status_code == 200
    fresh = {"Authorization": f"Bearer {renewed.json()['access_token']}"}
    assert http.get(PRODUCTS, headers=fresh).status_code == 200
    # an expiry scheduled after N requests
    seeded.fault(mode="token_expiry", after=1, count=1)
    assert http.get(PRODUCTS, headers=fresh).status_code == 200
    assert http.get(PRODUCTS, headers=fresh).status_code == 401


def test_reject_fault_refuses_lines_deterministically(seeded: Pim) -> None:
    client = seeded.client()
    seeded.fault(mode="reject", rate=0.5)
    keys = [f"R-{i:02d}" for i in range(20)]
    rejected = [k for k in keys if seeded.faults.should_reject(k)]
    assert rejected and len(rejected) < len(keys)
    body = "\n".join(json.dumps({"identifier": k, "family": "software"}) for k in keys)
    lines = [
        json.loads(line)
        for line in client.patch(
            PRODUCTS, content=body, headers={"Content-Type": COLLECTION}
        ).text.splitlines()
    ]
    refused = [line["identifier"] for line in lines if line["status_code"] == 422]
    assert refused == rejected
    sample = next(line for line in lines if line["status_code"] == 422)
    assert sample["message"] == "Validation failed."
    assert sample["errors"] == [
        {
            "property": "identifier",
            "message": f"The product {sample['identifier']} was rejected by the sandbox "
            "(reject fault).",
        }
    ]
    single = client.patch(f"{PRODUCTS}/{rejected[0]}", json={"family": "software"})
    assert single.status_code == 422
    stored = identifiers(
        client.get(
            PRODUCTS,
            params={
                "search": '{"identifier":[{"operator":"STARTS WITH","value":"R-"}]}',
                "limit": 100,
            },
        )
    )
    assert stored == [k for k in keys if k not in rejected]
    httpx.delete(f"{seeded.base}/__sandbox/faults", timeout=5)
    assert client.patch(f"{PRODUCTS}/{rejected[0]}", json={}).status_code == 201


def test_restart_keeps_state(pim_factory: Callable[..., Pim], tmp_path: Path) -> None:
    path = tmp_path / "restart.sqlite"
    first = pim_factory(path)
    client = first.client()
    assert client.patch(f"{PRODUCTS}/KEEP-1", json={"family": "usage"}).status_code == 201
    before = client.get(f"{PRODUCTS}/KEEP-1").json()
    first.store.close()
    second = pim_factory(path)
    again = second.client()
    assert again.get(f"{PRODUCTS}/KEEP-1").json() == before
    # tokens are in memory: the old one is gone with the old process
    assert second.http().get(PRODUCTS, headers=dict(client.headers)).status_code == 401


def test_seed_writer_products_are_served_and_valid(pim: Pim) -> None:
    writer = PimWriter(pim.store)
    writer.write_products(Book(3, 8).products())
    assert writer.counts["products"] == 18
    client = pim.client()
    items = client.get(PRODUCTS, params={"limit": 100}).json()["_embedded"]["items"]
    assert len(items) == 18
    scanner = client.get(f"{PRODUCTS}/DEV-SCAN-100").json()
    assert scanner["family"] == "hardware"
    assert scanner["values"]["name"] == [
        {"locale": None, "scope": None, "data": "Handheld Scanner HS-100"}
    ]
    assert scanner["updated"] == "2024-01-15T09:00:00+00:00"
    # every seeded product passes the API's own validation unchanged
    body = "\n".join(
        json.dumps({k: v for k, v in i.items() if k not in ("_links", "created", "updated")})
        for i in items
    )
    lines = client.patch(PRODUCTS, content=body, headers={"Content-Type": COLLECTION})
    assert {json.loads(line)["status_code"] for line in lines.text.splitlines()} == {204}
    assert client.get(f"{PRODUCTS}/DEV-SCAN-100").json()["updated"] == scanner["updated"]


def test_seed_records_fills_stamps_and_registers_families(pim: Pim) -> None:
    count = seed_records(
        pim.store,
        "products",
        [
            {"identifier": "S-1", "family": "gadgets"},
            {"identifier": "S-2", "updated": "2024-05-01T14:00:00.123456+02:00"},
        ],
    )
    assert count == 2
    client = pim.client()
    one = client.get(f"{PRODUCTS}/S-1").json()
    assert one["created"] == one["updated"]
    assert one["enabled"] is True and one["values"] == {}
    assert client.get(f"{PRODUCTS}/S-2").json()["updated"] == "2024-05-01T12:00:00+00:00"
    assert client.get("/api/rest/v1/families/gadgets").status_code == 200
    assert seed_records(pim.store, "families", [{"code": "kits"}]) == 1
    assert client.patch(f"{PRODUCTS}/S-3", json={"family": "kits"}).status_code == 201
    with pytest.raises(ValueError, match="no 'assets' objects"):
        seed_records(pim.store, "assets", [])

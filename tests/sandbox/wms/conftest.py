"""A running WMS emulator per test, spoken to with httpx over loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox.faults import FaultState
from sandbox.server import serve_in_thread
from sandbox.store import DocumentStore
from sandbox.wms import WmsSettings, create_app, seed_records

API_KEY = "wms_test_key_0123456789"
#: Seeded allocations share timestamps in groups of 5 (a batch commits with one stamp).
SEED_TS = "2025-06-01T08:00:0{group}+00:00"


@dataclass
class Wms:
    base: str
    store: DocumentStore
    faults: FaultState
    path: Path

    def client(self, key: str | None = API_KEY, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=10, **kwargs)

    def fault(self, **spec: Any) -> None:
        resp = httpx.post(f"{self.base}/__sandbox/faults", json=spec, timeout=5)
        assert resp.status_code == 200


def allocation(n: int, **extra: Any) -> dict[str, Any]:
    """A seedable allocation; ``n`` picks sku/location/status deterministically."""
    return {
        "id": f"WA{n:06d}",
        "external_ref": f"ALC-{n:06d}",
        "order_ref": f"SUB-{n // 3:06d}",
        "line_ref": f"SUB-{n // 3:06d}-1",
        "sku": ("HW-GW-1", "CONS-LBL")[n % 2],
        "location": ("US01", "DE01", "GB01")[n % 3],
        "quantity": 1 + n % 4,
        "delivery_date": "2025-07-01",
        "status": ("reserved", "reserved", "picked", "shipped", "released")[n % 5],
        "updated_at": SEED_TS.format(group=n // 5),
        **extra,
    }


def new_record(ref: str, **extra: Any) -> dict[str, Any]:
    """A valid record for the write API."""
    return {
        "external_ref": ref,
        "order_ref": "SUB-9",
        "line_ref": "SUB-9-1",
        "sku": "HW-GW-1",
        "location": "US01",
        "quantity": 2,
        "delivery_date": "2025-08-01",
        **extra,
    }


@pytest.fixture
def wms_factory(tmp_path: Path) -> Iterator[Callable[..., Wms]]:
    stack: list[Any] = []

    def make(name: str = "wms", **settings: Any) -> Wms:
        path = tmp_path / f"{name}.sqlite"
        store = DocumentStore(path)
        faults = FaultState(seed=7)
        app = create_app(store, faults, WmsSettings(api_key=API_KEY, **settings))
        ctx = serve_in_thread(app)
        base = ctx.__enter__()
        stack.append((ctx, store))
        return Wms(base, store, faults, path)

    yield make
    for ctx, store in reversed(stack):
        ctx.__exit__(None, None, None)
        store.close()


@pytest.fixture
def wms(wms_factory: Callable[..., Wms]) -> Wms:
    return wms_factory()


@pytest.fixture
def seeded(wms: Wms) -> Wms:
    """23 allocations WA000000..WA000022 (5 per timestamp) and stock for two SKUs."""
    seed_records(wms.store, "allocations", [allocation(n) for n in range(23)])
    seed_records(
        wms.store,
        "stock",
        [
            {"sku": sku, "location": loc, "on_hand": 100}
            for sku in ("HW-GW-1", "CONS-LBL")
            for loc in ("US01", "DE01", "GB01")
        ],
    )
    return wms

"""A running PIM emulator per test and an httpx client holding a bearer token."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox.faults import FaultState
from sandbox.pim import PimSettings, create_app, seed_records
from sandbox.server import serve_in_thread
from sandbox.store import DocumentStore

CLIENT_ID, SECRET = "test_client", "test-secret-123"
USERNAME, PASSWORD = "api_user", "api-password-123"
BASE_TS = dt.datetime(2024, 3, 1, 12, 0, tzinfo=dt.UTC)
COLLECTION = "application/vnd.akeneo.collection+json"


@dataclass
class Pim:
    base: str
    store: DocumentStore
    faults: FaultState
    settings: PimSettings

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=10)

    def token(self, **body: Any) -> httpx.Response:
        payload = body or {"grant_type": "password", "username": USERNAME, "password": PASSWORD}
        return self.http().post("/api/oauth/v1/token", auth=(CLIENT_ID, SECRET), json=payload)

    def client(self) -> httpx.Client:
        """An httpx client with a fresh bearer token."""
        response = self.token()
        assert response.status_code == 200, response.text
        client = self.http()
        client.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
        return client

    def fault(self, **spec: Any) -> None:
        response = httpx.post(f"{self.base}/__sandbox/faults", json=spec, timeout=5)
        assert response.status_code == 200, response.text


def settings(**overrides: Any) -> PimSettings:
    return PimSettings(
        client_id=CLIENT_ID, secret=SECRET, username=USERNAME, password=PASSWORD, **overrides
    )


@pytest.fixture
def pim_factory(tmp_path: Path) -> Iterator[Callable[..., Pim]]:
    """Start emulators; ``path`` reuses a store file (a restart), else a new one."""
    stack: list[Any] = []

    def make(path: Path | None = None, **overrides: Any) -> Pim:
        store = DocumentStore(path or tmp_path / f"pim{len(stack)}.sqlite")
        faults = FaultState(seed=7)
        pim_settings = settings(**overrides)
        ctx = serve_in_thread(create_app(store, faults, pim_settings))
        base = ctx.__enter__()
        stack.append((ctx, store))
        return Pim(base, store, faults, pim_settings)

    yield make
    for ctx, store in reversed(stack):
        ctx.__exit__(None, None, None)
        store.close()


@pytest.fixture
def pim(pim_factory: Callable[..., Pim]) -> Pim:
    return pim_factory()


def product(i: int, **extra: Any) -> dict[str, Any]:
    """P-000.. alternating families, every third disabled, one minute apart."""
    return {
        "identifier": f"P-{i:03d}",
        "family": ("software", "hardware", "services")[i % 3],
        "enabled": i % 3 != 2,
        "categories": [],
        "values": {"name": [{"locale": None, "scope": None, "data": f"Product {i}"}]},
        "updated": (BASE_TS + dt.timedelta(minutes=i)).isoformat(),
        **extra,
    }


@pytest.fixture
def seeded(pim: Pim) -> Pim:
    """30 products P-000..P-029 updated one minute apart from 2024-03-01 12:00 UTC."""
    seed_records(pim.store, "products", [product(i) for i in range(30)])
    return pim


def search(**filters: Any) -> dict[str, str]:
    return {"search": json.dumps(filters), "limit": "100"}


def identifiers(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["identifier"] for item in response.json()["_embedded"]["items"]]

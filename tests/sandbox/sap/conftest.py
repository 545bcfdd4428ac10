"""A running SAP emulator per test, and pyodata clients over a requests.Session."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyodata
import pytest
import requests

from sandbox.faults import FaultState
from sandbox.sap import SapSettings, create_app, seed_records
from sandbox.server import serve_in_thread
from sandbox.store import DocumentStore

USER, PASSWORD, CLIENT = "HUB_SANDBOX", "sandbox-password", "100"
BASE_TS = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)


@dataclass
class Sap:
    base: str
    store: DocumentStore
    faults: FaultState

    def service_url(self, service: str) -> str:
        return f"{self.base}/sap/opu/odata/sap/{service}/"

    def session(self, user: str = USER, password: str = PASSWORD) -> requests.Session:
        session = requests.Session()
        session.auth = (user, password)
        session.params = {"sap-client": CLIENT}  # type: ignore[assignment]
        # SAP Gateway answers Atom unless JSON is asked for; these tests read JSON
        session.headers["Accept"] = "application/json"
        return session

    def fetch_token(self, session: requests.Session, service: str) -> str:
        resp = session.get(self.service_url(service), headers={"X-CSRF-Token": "Fetch"})
        assert resp.status_code == 200
        token = resp.headers["x-csrf-token"]
        session.headers["X-CSRF-Token"] = token
        return token

    def client(
        self, service: str, session: requests.Session | None = None, csrf: bool = True
    ) -> Any:
        session = session or self.session()
        if csrf:
            self.fetch_token(session, service)
        return pyodata.Client(self.service_url(service), session)

    def fault(self, **spec: Any) -> None:
        resp = requests.post(f"{self.base}/__sandbox/faults", json=spec, timeout=5)
        assert resp.status_code == 200


@pytest.fixture
def sap_factory(tmp_path: Path) -> Iterator[Callable[..., Sap]]:
    stack: list[Any] = []

    def make(**settings: Any) -> Sap:
        store = DocumentStore(tmp_path / f"sap{len(stack)}.sqlite")
        faults = FaultState(seed=7)
        ctx = serve_in_thread(create_app(store, faults, SapSettings(**settings)))
        base = ctx.__enter__()
        stack.append(ctx)
        return Sap(base, store, faults)

    yield make
    for ctx in reversed(stack):
        ctx.__exit__(None, None, None)


@pytest.fixture
def sap(sap_factory: Callable[..., Sap]) -> Sap:
    return sap_factory(page_size=20)


def seed_customers(store: DocumentStore, count: int) -> None:
    """Business partners with their customer role (numbered alike), each partner changed
    one minute after the one before (its LastChangeDate + LastChangeTime)."""
    seed_records(
        store,
        "A_BusinessPartner",
        (
            {
                "BusinessPartner": str(2000000 + i),
                "Customer": str(2000000 + i),
                "BusinessPartnerCategory": "2",
                "LastChangeDateTime": BASE_TS + dt.timedelta(minutes=i),
                "to_Customer": [
                    {
                        "CustomerName": f"Customer {i:03d}",
                        "YY1_HubId": f"CUS-{i:05d}",
                        "YY1_CreditLimitAmount": f"{1000 + i}.50",
                        "YY1_CreditLimitCurrency": "EUR",
                        "LastChangeDateTime": BASE_TS + dt.timedelta(minutes=i),
                        "to_CustomerSalesArea": [
                            {
                                "SalesOrganization": "1010",
                                "DistributionChannel": "10",
                                "Division": "00",
                                "Currency": "EUR",
                                "CustomerPaymentTerms": "NT30" if i % 2 else "Z030",
                            }
                        ],
                    }
                ],
            }
            for i in range(count)
        ),
    )


@pytest.fixture
def seeded(sap: Sap) -> Sap:
    """50 customers changed one minute apart from 2024-03-01, page size 20."""
    seed_customers(sap.store, 50)
    return sap

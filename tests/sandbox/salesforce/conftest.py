"""A running Salesforce emulator over HTTPS per test, and real simple-salesforce clients
that trust the sandbox CA (never ``verify=False``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import requests
from simple_salesforce import Salesforce, SFType
from simple_salesforce.bulk2 import SFBulk2Type
from simple_salesforce.exceptions import SalesforceError

from sandbox.faults import FaultState
from sandbox.salesforce import SalesforceSettings, create_app, seed_records
from sandbox.salesforce.ids import make_id
from sandbox.server import TLSFiles, serve_in_thread
from sandbox.store import DocumentStore
from sandbox.tls import ensure_tls

VERSION = "62.0"
BASE_TS = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)


@dataclass
class Org:
    base: str
    store: DocumentStore
    faults: FaultState
    settings: SalesforceSettings
    ca: Path
    sessions: list[requests.Session] = field(default_factory=list)

    def http(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.base,
            verify=str(self.ca),
            timeout=10,
            headers={"Connection": "close"},
            trust_env=False,
        )

    def token(self) -> str:
        with self.http() as client:
            resp = client.post(
                "/services/oauth2/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": self.settings.client_id,
                    "client_secret": self.settings.client_secret,
                },
            )
        assert resp.status_code == 200, resp.text
        return str(resp.json()["access_token"])

    def session(self) -> requests.Session:
        session = requests.Session()
        session.verify = str(self.ca)
        # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE from the environment override
        # session.verify; the sandbox CA must win, so the environment is not consulted
        session.trust_env = False
        # one connection per request: a response object kept alive by a failed test's
        # traceback would otherwise hold a TLS connection the stopping server waits on
        session.headers["Connection"] = "close"
        self.sessions.append(session)
        return session

    def close(self) -> None:
        """Close client connections first: a TLS server waits for its peers' close_notify
        when it stops, and a session kept alive by a test's traceback would stall it."""
        for session in self.sessions:
            session.close()

    def client(self, token: str | None = None, version: str = VERSION) -> Salesforce:
        return Salesforce(
            instance_url=self.base,
            session_id=token or self.token(),
            version=version,
            session=self.session(),
        )

    def fault(self, **spec: Any) -> None:
        with self.http() as client:
            assert client.post("/__sandbox/faults", json=spec).status_code == 200

    def clear_faults(self) -> None:
        with self.http() as client:
            assert client.delete("/__sandbox/faults").status_code == 200


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return ensure_tls(tmp_path_factory.mktemp("sf-tls"))


@pytest.fixture
def org_factory(tmp_path: Path, tls_files: TLSFiles) -> Iterator[Callable[..., Org]]:
    stack: list[Any] = []

    def make(**settings: Any) -> Org:
        store = DocumentStore(tmp_path / f"sf{len(stack)}.sqlite")
        faults = FaultState(seed=11)
        config = SalesforceSettings(**settings)
        ctx = serve_in_thread(create_app(store, faults, config), tls=tls_files)
        base = ctx.__enter__()
        org = Org(base, store, faults, config, tls_files.ca_bundle)
        stack.append((ctx, org))
        return org

    yield make
    for ctx, org in reversed(stack):
        org.close()
        ctx.__exit__(None, None, None)
        org.store.close()


@pytest.fixture
def org(org_factory: Callable[..., Org]) -> Org:
    return org_factory(query_batch_size=200)


def sobject(sf: Salesforce, name: str) -> SFType:
    """``sf.Account`` with the type mypy cannot infer through ``__getattr__``."""
    return cast(SFType, getattr(sf, name))


def bulk2(sf: Salesforce, name: str) -> SFBulk2Type:
    """``sf.bulk2.Account`` with its real type."""
    return cast(SFBulk2Type, getattr(sf.bulk2, name))


def rest(sf: Salesforce, path: str, method: str = "GET", **kwargs: Any) -> Any:
    """``sf.restful`` typed as the JSON it returns."""
    return sf.restful(path, method=method, **kwargs)


def error_body(exc: SalesforceError) -> list[dict[str, Any]]:
    """The decoded JSON error list simple-salesforce attached to an exception."""
    return cast(list[dict[str, Any]], exc.content)


def account_id(n: int) -> str:
    return make_id("001", 900_000 + n)


def seed_accounts(store: DocumentStore, count: int, start: int = 0) -> list[str]:
    """``count`` accounts ``CUS-000000n`` changed one minute apart from 2025-06-01."""
    segments = ("SMB", "Mid-Market", "Enterprise")
    records: list[dict[str, Any]] = [
        {
            "Id": account_id(i),
            "Name": f"Account {i:05d}",
            "Hub_Id__c": f"CUS-{i + 1:07d}",
            "Segment__c": segments[i % 3],
            "CurrencyIsoCode": "EUR" if i % 2 else "USD",
            "Dunning_Level__c": i % 5,
            "BillingCountry": "DE" if i % 2 else "US",
            "Tax_Id__c": None if i % 7 == 0 else f"TX{i:06d}",
            "Type": "Customer",
            "LastModifiedDate": BASE_TS + dt.timedelta(minutes=i),
        }
        for i in range(start, start + count)
    ]
    seed_records(store, "Account", records)
    return [r["Id"] for r in records]


@pytest.fixture
def seeded(org: Org) -> Org:
    """500 accounts; REST query pages of 200."""
    seed_accounts(org.store, 500)
    return org

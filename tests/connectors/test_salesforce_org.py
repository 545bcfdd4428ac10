"""The Salesforce connector against orgs configured unlike the default sandbox org: a
retired API version, a single-currency org, State and Country/Territory Picklists. Each
test serves just the Salesforce emulator (HTTPS, in this process) with its own org
settings, and drives it through the real connector and simple-salesforce."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from connectors.errors import PermanentError
from connectors.retry import RetryPolicy
from connectors.salesforce import SalesforceConnector
from hub.systems import connect
from sandbox.faults import FaultState
from sandbox.salesforce import SalesforceSettings, create_app
from sandbox.server import TLSFiles, serve_in_thread
from sandbox.store import DocumentStore
from sandbox.tls import ensure_tls

FAST = RetryPolicy(max_attempts=3, max_seconds=5, initial_wait=0.01, max_wait=0.1, jitter=0)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return ensure_tls(tmp_path_factory.mktemp("sf-org-tls"))


class Org:
    def __init__(self, base: str, store: DocumentStore, settings: SalesforceSettings, ca: Path):
        self.base, self.store, self.settings, self.ca = base, store, settings, ca

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "SALESFORCE_LOGIN_URL": self.base,
            "SALESFORCE_CLIENT_ID": self.settings.client_id,
            "SALESFORCE_CLIENT_SECRET": self.settings.client_secret,
            "SALESFORCE_API_VERSION": self.settings.api_version,
            "HUB_CA_BUNDLE": str(self.ca),
            **extra,
        }

    def connector(self, **extra: str) -> SalesforceConnector:
        connector = connect("salesforce", self.env(**extra))
        assert isinstance(connector, SalesforceConnector)
        connector.settings.retry = FAST
        connector.settings.bulk_poll_initial = 0.01
        connector.settings.cursor_overlap_seconds = 0
        return connector


@pytest.fixture
def make_org(tmp_path: Path, tls: TLSFiles) -> Iterator[Callable[..., Org]]:
    made = 0
    with ExitStack() as stack:

        def make(**settings: Any) -> Org:
            nonlocal made
            made += 1
            store = DocumentStore(tmp_path / f"org{made}.sqlite")
            stack.callback(store.close)
            config = SalesforceSettings(**settings)
            base = stack.enter_context(
                serve_in_thread(create_app(store, FaultState(seed=3), config), tls=tls)
            )
            return Org(base, store, config, tls.ca_bundle)

        yield make


# -- retired API versions -----------------------------------------------------------------
def test_a_retired_api_version_is_a_permanent_error_naming_the_variable_and_the_fix(
    make_org: Callable[..., Org],
) -> None:
    org = make_org(min_api_version="45.0")
    sf = org.connector(SALESFORCE_API_VERSION="44.0")
    with pytest.raises(PermanentError) as caught:
        list(sf.read_by_keys("customer", ["CUS-1"]))
    text = str(caught.value)
    assert caught.value.status == 410
    assert "SALESFORCE_API_VERSION" in text and "44.0" in text
    assert "UNSUPPORTED_API_VERSION" in text
    assert "Set SALESFORCE_API_VERSION to a supported version" in text
    sf.close()
    # the oldest version the org serves works
    sf = org.connector(SALESFORCE_API_VERSION="45.0")
    assert list(sf.read_by_keys("customer", ["CUS-1"])) == []
    sf.close()

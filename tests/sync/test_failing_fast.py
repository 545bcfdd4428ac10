"""Errors no retry can fix fail the step at once, named at the top of the run: a hub store
without its schema ("run `hub db upgrade`"), a store out of reach (its URL masked), and a
credential the system refused. Each used to be retried twice with a 10 s back-off and to
surface as "Exceeded max_retries", the cause three levels down in the event log."""

from __future__ import annotations

from typing import Any

import pytest
from dagster import DagsterEventType, DagsterInstance, materialize

from app.defs.resources import HubStoreResource
from app.defs.sync import build_sync_assets
from connectors.errors import AuthError
from hub.store.db import store_problem
from tests.sync.conftest import account
from tests.sync.memory_system import MemorySystem
from tests.sync.test_sync_assets import Holder


class RefusingSystem(MemorySystem):
    """A system whose every read is refused for bad credentials."""

    def read_changes(self, entity: str, cursor: str | None) -> Any:
        raise AuthError(self.system, "invalid_client: client secret refused; check the secret")


def _materialize(setup: Any, monkeypatch: pytest.MonkeyPatch, url: str, crm: Any = None) -> Any:
    make, default_crm, erp, _ = setup
    specs = list(make().specs.values())
    monkeypatch.setattr(
        "hub.sync.engine.load_code_lists",
        lambda _: {"terms": {"net30": "NT30", "net60": "NT60", "due_on_receipt": "NT00"}},
    )
    monkeypatch.setattr("hub.sync.engine.load_specs", lambda _: specs)
    resources = {
        "hub_store": HubStoreResource(database_url=url),
        "salesforce": Holder(crm or default_crm),
        "sap": Holder(erp),
    }
    with DagsterInstance.ephemeral() as instance:
        return materialize(
            build_sync_assets(specs), resources=resources, instance=instance, raise_on_error=False
        )


def _failures(result: Any) -> list[str]:
    return [
        e.event_specific_data.user_failure_data.description
        for e in result.all_events
        if e.event_type_value == "STEP_FAILURE" and e.event_specific_data.user_failure_data
    ]


def _retries(result: Any) -> int:
    return sum(1 for e in result.all_events if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY)


def test_a_store_without_schema_says_run_db_upgrade(setup, monkeypatch, tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'never-upgraded.sqlite'}"
    result = _materialize(setup, monkeypatch, url)
    assert not result.success
    failures = _failures(result)
    assert failures and all("run `hub db upgrade`" in f for f in failures), failures
    assert "never-upgraded.sqlite" in failures[0]
    assert _retries(result) == 0


def test_an_unreachable_store_is_named_with_its_password_masked(setup, monkeypatch) -> None:
    url = "postgresql+psycopg2://hub:s3cr3t-pw@127.0.0.1:1/hub"  # nothing listens on port 1
    result = _materialize(setup, monkeypatch, url)
    assert not result.success
    failures = _failures(result)
    assert (
        failures
        and "hub store unreachable at postgresql+psycopg2://hub:***@127.0.0.1:1/hub"
        in (failures[0])
    )
    assert not any("s3cr3t-pw" in f for f in failures)
    assert _retries(result) == 0


def test_a_refused_credential_is_not_retried(setup, monkeypatch, store_url) -> None:
    crm = RefusingSystem("salesforce", "Hub_Id__c", "001")
    crm.put(account())
    result = _materialize(setup, monkeypatch, store_url, crm=crm)
    assert not result.success
    assert any("client secret refused" in f for f in _failures(result))
    assert _retries(result) == 0


def test_other_database_errors_are_not_claimed() -> None:
    assert store_problem(ValueError("no such table: x")) is None

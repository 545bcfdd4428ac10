"""The Salesforce connector against the Salesforce emulator over HTTPS with the real
simple-salesforce: Bulk API 2.0 first read and REST deltas that neither skip nor repeat,
literal-safe SOQL, Collections and Bulk API 2.0 writes with per-record results, both OAuth
flows, re-authentication on INVALID_SESSION_ID, the API budget, faults with nothing lost
or duplicated, and no secret in any message."""

import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from connectors import registry
from connectors.base import Outcome
from connectors.errors import AuthError, BudgetExhaustedError
from connectors.retry import RetryPolicy
from connectors.salesforce import SalesforceConnector
from sandbox.runner import SandboxHandle, running_sandbox

FAST = RetryPolicy(max_attempts=5, max_seconds=20, initial_wait=0.05, max_wait=1, jitter=0)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxHandle]:
    folder = tmp_path_factory.mktemp("sf") / "sb"
    with running_sandbox(folder, seed=5, customers=25, systems=("salesforce",)) as sb:
        yield sb


def _connector(env: dict[str, str]) -> SalesforceConnector:
    connector = registry.build("salesforce", env)
    assert isinstance(connector, SalesforceConnector)
    connector.settings.retry = FAST
    return connector


@pytest.fixture
def sf(sandbox: SandboxHandle) -> Iterator[SalesforceConnector]:
    connector = _connector(sandbox.env)
    yield connector
    verify = sandbox.env["HUB_CA_BUNDLE"]
    httpx.delete(sandbox.admin_url("salesforce") + "/faults", verify=verify)
    connector.close()


def fault(sandbox: SandboxHandle, **spec: Any) -> None:
    url = sandbox.admin_url("salesforce") + "/faults"
    httpx.post(url, json=spec, verify=sandbox.env["HUB_CA_BUNDLE"]).raise_for_status()


def _read(
    sf: SalesforceConnector, cursor: str | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    records: list[dict[str, Any]] = []
    for batch in sf.read_changes("customer", cursor):
        records += batch.records
        cursor = batch.cursor or cursor
    return records, cursor


def test_bulk_first_read_then_exactly_the_changes(sf: SalesforceConnector) -> None:
    accounts, cursor = _read(sf)
    ids = [a["Id"] for a in accounts]
    assert len(ids) == len(set(ids)) >= 20  # one account of the book is a planted "missing"
    assert _read(sf, cursor)[0] == []
    client = sf._client()
    client.Account.update(ids[3], {"Name": "Renamed By Sales"})
    changed, cursor = _read(sf, cursor)
    assert [(a["Id"], a["Name"]) for a in changed] == [(ids[3], "Renamed By Sales")]
    assert _read(sf, cursor)[0] == []


def test_soql_values_are_literal(sf: SalesforceConnector) -> None:
    hostile = ["x' OR Name != '", "a\\' OR Id != '", "CUS%' OR Name LIKE '%"]
    assert [r for b in sf.read_by_keys("customer", hostile) for r in b.records] == []
    accounts, _ = _read(sf)
    key = accounts[0]["Hub_Id__c"]
    found = [r for b in sf.read_by_keys("customer", [key, *hostile]) for r in b.records]
    assert [r["Hub_Id__c"] for r in found] == [key]


def _account(hub_id: str, name: str, **extra: Any) -> dict[str, Any]:
    return {
        "Hub_Id__c": hub_id,
        "Name": name,
        "BillingCity": "Oslo",
        "BillingCountry": "NO",
        "CurrencyIsoCode": "EUR",
        **extra,
    }


def test_collections_write_reports_each_record(sf: SalesforceConnector) -> None:
    accounts, _ = _read(sf)
    existing = accounts[0]
    results = sf.write_batch(
        "customer",
        [
            _account("CUS-SF-NEW-1", "Fjord Freight AS"),
            {"Id": existing["Id"], "Name": existing["Name"] + " Holding"},
            _account("CUS-SF-BAD-1", "Galactic Ltd", Segment__c="Galactic"),
        ],
    )
    assert [r.outcome for r in results] == [Outcome.CREATED, Outcome.UPDATED, Outcome.REJECTED]
    assert (results[2].error_code and "Galactic" in (results[2].error or "")) or results[2].error
    again = sf.write_batch("customer", [_account("CUS-SF-NEW-1", "Fjord Freight AS")])
    assert again[0].outcome is Outcome.UPDATED  # upsert by external id: never a second one
    found = [r for b in sf.read_by_keys("customer", ["CUS-SF-NEW-1"]) for r in b.records]
    assert len(found) == 1 and found[0]["Id"] == results[0].external_id


def test_bulk_ingest_above_the_threshold(sf: SalesforceConnector) -> None:
    sf.settings.bulk_threshold = 3
    rows = [_account(f"CUS-BULK-{i}", f"Bulk Customer {i}") for i in range(6)]
    rows.append(_account("CUS-BULK-BAD", "Bulk Bad", Segment__c="Galactic"))
    results = sf.write_batch("customer", rows)
    assert [r.outcome for r in results[:6]] == [Outcome.CREATED] * 6
    assert results[6].outcome is Outcome.REJECTED and results[6].error
    keys = [f"CUS-BULK-{i}" for i in range(6)] + ["CUS-BULK-BAD"]
    stored = [r["Hub_Id__c"] for b in sf.read_by_keys("customer", keys) for r in b.records]
    assert sorted(stored) == sorted(keys[:6])


def test_client_credentials_flow(sandbox: SandboxHandle) -> None:
    env = {k: v for k, v in sandbox.env.items() if k != "SALESFORCE_PRIVATE_KEY_FILE"}
    connector = _connector(env)
    assert connector.health().ok


def test_expired_session_is_renewed(sandbox: SandboxHandle, sf: SalesforceConnector) -> None:
    before, _ = _read(sf)
    fault(sandbox, mode="token_expiry")
    after, _ = _read(sf)
    assert len(after) == len(before)


@pytest.mark.parametrize("mode", ["429", "503", "500", "drop"])
def test_reads_survive_faults_exactly_once(
    sandbox: SandboxHandle, sf: SalesforceConnector, mode: str
) -> None:
    expected, _ = _read(sf)
    fault(sandbox, mode=mode, count=2, retry_after=0)
    got, _ = _read(sf)
    assert sorted(a["Id"] for a in got) == sorted(a["Id"] for a in expected)


@pytest.mark.parametrize("mode", ["429", "503"])
def test_writes_survive_faults_none_lost_none_twice(
    sandbox: SandboxHandle, sf: SalesforceConnector, mode: str
) -> None:
    fault(sandbox, mode=mode, count=1, retry_after=0, path="composite")
    key = f"CUS-FAULT-{mode}"
    (result,) = sf.write_batch("customer", [_account(key, f"Fault {mode} AS")])
    assert result.outcome in (Outcome.CREATED, Outcome.UPDATED)
    assert len([r for b in sf.read_by_keys("customer", [key]) for r in b.records]) == 1


def test_per_record_rejections_are_reported(
    sandbox: SandboxHandle, sf: SalesforceConnector
) -> None:
    fault(sandbox, mode="reject", rate=1.0)
    results = sf.write_batch("customer", [_account("CUS-REJ-1", "Refused AS")])
    assert results[0].outcome is Outcome.REJECTED and results[0].error


def test_budget_share_stops_before_the_daily_limit(sf: SalesforceConnector) -> None:
    sf.settings.budget_share = 0.0000001
    with pytest.raises(BudgetExhaustedError, match="daily budget"):
        _read(sf)


def test_a_wrong_secret_is_named_but_never_shown(
    sandbox: SandboxHandle, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "not-the-real-secret-3MVG9"
    env = {k: v for k, v in sandbox.env.items() if k != "SALESFORCE_PRIVATE_KEY_FILE"}
    connector = _connector({**env, "SALESFORCE_CLIENT_SECRET": secret})
    with caplog.at_level(logging.DEBUG), pytest.raises(AuthError) as info:
        _read(connector)
    assert "SALESFORCE_CLIENT_ID" in str(info.value)
    for value in (secret, sandbox.env["SALESFORCE_CLIENT_SECRET"]):
        assert value not in str(info.value) and value not in caplog.text

"""The SAP connector against the SAP emulator with the real pyodata client: incremental
reads that neither skip nor repeat, literal-safe filters, $batch writes with one result per
record (a bad one does not stop the good ones), the stale-ETag path, CSRF expiry, faults
(429/503/dropped connections) with nothing lost or applied twice, and no password in any
message."""

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors import registry
from connectors.base import Outcome
from connectors.errors import AuthError
from connectors.retry import RetryPolicy
from connectors.sap import ETAG, SapConnector
from sandbox.runner import SandboxHandle, running_sandbox

FAST = RetryPolicy(max_attempts=5, max_seconds=20, initial_wait=0.05, max_wait=1, jitter=0)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxHandle]:
    with running_sandbox(
        tmp_path_factory.mktemp("sap") / "sb", seed=3, customers=12, systems=("sap",)
    ) as sb:
        yield sb


@pytest.fixture
def sap(sandbox: SandboxHandle) -> Iterator[SapConnector]:
    connector = registry.build("sap", sandbox.env)
    assert isinstance(connector, SapConnector)
    connector.settings.retry = FAST
    yield connector
    httpx.delete(sandbox.admin_url("sap") + "/faults")
    connector.close()


def fault(sandbox: SandboxHandle, **spec: Any) -> None:
    httpx.post(sandbox.admin_url("sap") + "/faults", json=spec).raise_for_status()


def _all(
    connector: SapConnector, entity: str, cursor: str | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    records: list[dict[str, Any]] = []
    last = cursor
    for batch in connector.read_changes(entity, cursor):
        records += batch.records
        last = batch.cursor or last
    return records, last


def test_reads_every_record_once_then_exactly_the_changes(sap: SapConnector) -> None:
    sap.settings.page_size = 5
    customers, cursor = _all(sap, "customer")
    hub_ids = [c["YY1_HubId"] for c in customers]
    assert len(hub_ids) == len(set(hub_ids)) >= 10
    assert all(c["CustomerPaymentTerms"] and c["Currency"] for c in customers)
    assert sum(1 for c in customers if c["TaxNumber"]) > len(customers) // 2  # from the BP
    assert _all(sap, "customer", cursor)[0] == []

    target = customers[3]
    (result,) = sap.write_batch(
        "customer", [{"YY1_HubId": target["YY1_HubId"], "CustomerPaymentTerms": "NT60"}]
    )
    assert result.outcome is Outcome.UPDATED
    changed, _ = _all(sap, "customer", cursor)
    assert [c["YY1_HubId"] for c in changed] == [target["YY1_HubId"]]
    assert changed[0]["CustomerPaymentTerms"] == "NT60"


def test_a_cursor_inside_a_run_of_equal_stamps_resumes_after_the_last_key(
    sap: SapConnector,
) -> None:
    customers, _ = _all(sap, "customer")
    stamps = sorted((c["LastChangeDateTime"].rstrip("Z"), c["Customer"]) for c in customers)
    stamp, key = stamps[2]
    resumed, _ = _all(sap, "customer", f"{stamp}|{key}")
    assert [(c["LastChangeDateTime"].rstrip("Z"), c["Customer"]) for c in resumed] == [
        s for s in stamps if s > (stamp, key)
    ]


def test_filters_take_values_literally(sap: SapConnector) -> None:
    hostile = ["x' or YY1_HubId ne 'y", "a\\b", "CUS') or (1 eq 1"]
    assert [r for b in sap.read_by_keys("customer", hostile) for r in b.records] == []
    customers, _ = _all(sap, "customer")
    found = [
        r
        for b in sap.read_by_keys("customer", [customers[0]["YY1_HubId"], *hostile])
        for r in b.records
    ]
    assert [r["YY1_HubId"] for r in found] == [customers[0]["YY1_HubId"]]


def test_batch_writes_report_each_record_and_a_bad_one_stops_nothing(sap: SapConnector) -> None:
    customers, _ = _all(sap, "customer")
    a, b = customers[0], customers[1]
    results = sap.write_batch(
        "customer",
        [
            {"YY1_HubId": a["YY1_HubId"], "CustomerFullName": a["CustomerFullName"] + " AG"},
            {"YY1_HubId": b["YY1_HubId"], "CustomerPaymentTerms": "BOGUS"},
            {
                "YY1_HubId": "CUS-NEW-0001",
                "CustomerFullName": "Nordlicht GmbH",
                "Currency": "EUR",
                "CustomerPaymentTerms": "NT30",
                "YY1_CreditLimitAmount": "5000.00",
            },
            {
                "YY1_HubId": customers[2]["YY1_HubId"],
                "CustomerFullName": customers[2]["CustomerFullName"],
            },
        ],
    )
    assert [r.outcome for r in results] == [
        Outcome.UPDATED,
        Outcome.REJECTED,
        Outcome.CREATED,
        Outcome.UNCHANGED,
    ]
    assert "CustomerPaymentTerms" in (results[1].error or "") or "BOGUS" in (results[1].error or "")
    created = [r for bt in sap.read_by_keys("customer", ["CUS-NEW-0001"]) for r in bt.records]
    assert len(created) == 1 and created[0]["Customer"] == results[2].external_id
    assert created[0]["CustomerPaymentTerms"] == "NT30"
    again = sap.write_batch(
        "customer", [{"YY1_HubId": "CUS-NEW-0001", "CustomerFullName": "Nordlicht GmbH"}]
    )
    assert again[0].outcome is Outcome.UNCHANGED  # an upsert by hub id: never a second one


def test_a_stale_etag_is_reread_and_retried_once(sap: SapConnector) -> None:
    (current,) = [
        r
        for b in sap.read_by_keys("customer", [_all(sap, "customer")[0][4]["YY1_HubId"]])
        for r in b.records
    ]
    stale = {**current, ETAG: current[ETAG]}
    other = registry.build("sap", {**_env_of(sap)})
    other.write_batch(
        "customer", [{"YY1_HubId": current["YY1_HubId"], "CustomerFullName": "Changed Meanwhile"}]
    )
    from connectors.sap import ROUTES, _Plan

    plan = _Plan(current["YY1_HubId"], stale, {"CustomerFullName": "Hub Value"}, {}, None)
    sap._send_one("customer", ROUTES["customer"], plan, None)
    assert plan.result is not None and plan.result.outcome is Outcome.UPDATED
    (now,) = [r for b in sap.read_by_keys("customer", [current["YY1_HubId"]]) for r in b.records]
    assert now["CustomerFullName"] == "Hub Value"


def _env_of(sap: SapConnector) -> dict[str, str]:
    s = sap.settings
    return {
        "SAP_ODATA_URL": s.url,
        "SAP_USER": s.user,
        "SAP_PASSWORD": s.password,
        "SAP_CLIENT": s.client,
    }


def test_an_expired_csrf_token_is_fetched_again(sap: SapConnector) -> None:
    customers, _ = _all(sap, "customer")
    sap.write_batch(
        "customer", [{"YY1_HubId": customers[5]["YY1_HubId"], "CustomerPaymentTerms": "NT45"}]
    )
    sap.session.headers["X-CSRF-Token"] = "expired-token"
    (result,) = sap.write_batch(
        "customer", [{"YY1_HubId": customers[5]["YY1_HubId"], "CustomerPaymentTerms": "NT90"}]
    )
    assert result.outcome is Outcome.UPDATED


@pytest.mark.parametrize("mode", ["429", "503", "drop"])
def test_faults_lose_nothing_and_apply_nothing_twice(
    sandbox: SandboxHandle, sap: SapConnector, mode: str
) -> None:
    before, _ = _all(sap, "customer")
    fault(sandbox, mode=mode, count=2, retry_after=0)
    during, _ = _all(sap, "customer")
    assert sorted(c["YY1_HubId"] for c in during) == sorted(c["YY1_HubId"] for c in before)
    key = f"CUS-FAULT-{mode}"
    fault(sandbox, mode=mode, count=1, retry_after=0, path="batch")
    (result,) = sap.write_batch(
        "customer",
        [
            {
                "YY1_HubId": key,
                "CustomerFullName": f"Fault {mode} Ltd",
                "Currency": "EUR",
                "CustomerPaymentTerms": "NT30",
            }
        ],
    )
    assert result.outcome is Outcome.CREATED
    assert len([r for b in sap.read_by_keys("customer", [key]) for r in b.records]) == 1


def test_a_wrong_password_is_named_but_never_shown(
    sandbox: SandboxHandle, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "Wr0ng-But-Secret-Pa55"
    connector = registry.build("sap", {**sandbox.env, "SAP_PASSWORD": secret})
    with caplog.at_level(logging.DEBUG), pytest.raises(AuthError) as info:
        list(connector.read_changes("customer", None))
    assert "SAP_PASSWORD" in str(info.value)
    assert secret not in str(info.value) and secret not in repr(info.value)
    assert secret not in caplog.text
    assert sandbox.env["SAP_PASSWORD"] not in caplog.text


def test_health(sap: SapConnector, tmp_path: Path) -> None:
    assert sap.health().ok

"""The Salesforce connector against the Salesforce emulator over HTTPS with the real
simple-salesforce, every operation first as it should go and then with faults on.

What is proven, and how: the emulator counts every call it answers ("METHOD /path"), so
the tests say which API served a read (Bulk API 2.0 query job or REST with
nextRecordsUrl paging) and how many calls a write took; records are always read back
from the emulator (not trusted from the connector's answer) to show that nothing was
lost or written twice; one commit in the emulator shares one SystemModstamp, so a bulk
write of a few thousand records is the hardest case for a (SystemModstamp, Id) cursor."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors.base import Outcome, Window, WriteResult
from connectors.errors import AuthError, BudgetExhaustedError, SystemUnavailableError
from connectors.retry import RetryPolicy
from connectors.salesforce import SalesforceConnector, _parse_sf_datetime
from hub.systems import connect
from sandbox.runner import SandboxHandle, running_sandbox

FAST = RetryPolicy(max_attempts=10, max_seconds=20, initial_wait=0.02, max_wait=1.5, jitter=0)
TOKEN = "POST /services/oauth2/token"
REST_QUERY = re.compile(r"GET /services/data/v[\d.]+/query(/.*)?")
REST_PAGE = re.compile(r"GET /services/data/v[\d.]+/query/.+")


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxHandle]:
    folder = tmp_path_factory.mktemp("sf") / "sb"
    with running_sandbox(folder, seed=5, customers=25, systems=("salesforce",)) as sb:
        yield sb


def _connector(env: dict[str, str], **settings: Any) -> SalesforceConnector:
    connector = connect("salesforce", env)
    assert isinstance(connector, SalesforceConnector)
    connector.settings.retry = FAST
    connector.settings.cursor_overlap_seconds = 0  # the exact keyset: test_salesforce_cursor.py
    connector.settings.bulk_poll_initial = 0.01
    for name, value in settings.items():
        setattr(connector.settings, name, value)
    return connector


@pytest.fixture
def sf(sandbox: SandboxHandle) -> Iterator[SalesforceConnector]:
    connector = _connector(sandbox.env)
    yield connector
    clear_faults(sandbox)
    connector.close()


def fault(sandbox: SandboxHandle, **spec: Any) -> None:
    url = sandbox.admin_url("salesforce") + "/faults"
    httpx.post(url, json=spec, verify=sandbox.env["HUB_CA_BUNDLE"]).raise_for_status()


def clear_faults(sandbox: SandboxHandle) -> None:
    url = sandbox.admin_url("salesforce") + "/faults"
    httpx.delete(url, verify=sandbox.env["HUB_CA_BUNDLE"]).raise_for_status()


def calls(sandbox: SandboxHandle) -> dict[str, int]:
    by_call: dict[str, int] = sandbox.calls()["salesforce"]["by_call"]
    return by_call


def count(sandbox: SandboxHandle, method: str, fragment: str) -> int:
    return sum(n for c, n in calls(sandbox).items() if c.startswith(method) and fragment in c)


def rest_queries(sandbox: SandboxHandle, pages_only: bool = False) -> int:
    """REST query calls (``query?q=`` and, or only, the ``nextRecordsUrl`` pages)."""
    pattern = REST_PAGE if pages_only else REST_QUERY
    return sum(n for c, n in calls(sandbox).items() if pattern.fullmatch(c))


def read_all(
    sf: SalesforceConnector, cursor: str | None = None, entity: str = "customer"
) -> tuple[list[dict[str, Any]], str | None]:
    records: list[dict[str, Any]] = []
    for batch in sf.read_changes(entity, cursor):
        records += batch.records
        cursor = batch.cursor or cursor
    return records, cursor


def stored(sf: SalesforceConnector, prefix: str) -> list[str]:
    """Hub ids in the org under a prefix, straight from SOQL (duplicates would show)."""
    soql = f"SELECT Hub_Id__c FROM Account WHERE Hub_Id__c LIKE '{prefix}%'"
    rows = sf._client().query_all(soql)["records"]
    return sorted(r["Hub_Id__c"] for r in rows)


def account(hub_id: str, name: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "Hub_Id__c": hub_id,
        "Name": name or f"Customer {hub_id}",
        "BillingCity": "Oslo",
        "BillingCountry": "NO",
        "CurrencyIsoCode": "EUR",
        **extra,
    }


def ensure_accounts(sf: SalesforceConnector, n: int) -> None:
    """At least ``n`` accounts in the org (one Bulk API job), for reads that page."""
    have = len(read_all(sf)[0])
    if have < n:
        threshold, sf.settings.bulk_threshold = sf.settings.bulk_threshold, 1
        sf.write_batch("customer", [account(f"CUS-MANY-{i:05d}") for i in range(n - have)])
        sf.settings.bulk_threshold = threshold


def outcomes(results: list[WriteResult]) -> list[Outcome]:
    return [r.outcome for r in results]


# -- reads ------------------------------------------------------------------------------
def test_first_read_is_a_bulk_query_then_rest_deltas_exactly_the_changes(
    sandbox: SandboxHandle, sf: SalesforceConnector
) -> None:
    sandbox.reset_calls()
    accounts, cursor = read_all(sf)
    ids = [a["Id"] for a in accounts]
    assert len(ids) == len(set(ids)) >= 20  # one account of the book is a planted "missing"
    assert count(sandbox, "POST", "/jobs/query") == 1
    assert rest_queries(sandbox) == 0
    stamps = [(_parse_sf_datetime(a["SystemModstamp"]), a["Id"]) for a in accounts]
    assert stamps == sorted(stamps)  # oldest first: the cursor of every batch is safe

    sandbox.reset_calls()
    assert read_all(sf, cursor)[0] == []
    client: Any = sf._client()  # simple-salesforce types attribute access as a union
    client.Account.update(ids[3], {"Name": "Renamed By Sales"})
    changed, cursor = read_all(sf, cursor)
    assert [(a["Id"], a["Name"]) for a in changed] == [(ids[3], "Renamed By Sales")]
    assert read_all(sf, cursor)[0] == []
    assert count(sandbox, "POST", "/jobs/query") == 0  # deltas go through REST
    assert rest_queries(sandbox) == 3


def test_cursor_at_equal_stamps_never_skips_or_repeats(
    sandbox: SandboxHandle, sf: SalesforceConnector
) -> None:
    """2,300 accounts in one Bulk API job share one SystemModstamp; the REST page
    boundary (2,000) and every batch boundary fall inside that one stamp."""
    _, cursor = read_all(sf)
    sf.settings.bulk_threshold = 10
    keys = [f"CUS-TIE-{i:05d}" for i in range(2300)]
    results = sf.write_batch("customer", [account(k) for k in keys])
    assert outcomes(results) == [Outcome.CREATED] * len(keys)

    sandbox.reset_calls()
    whole, _ = read_all(sf, cursor)
    assert sorted(r["Hub_Id__c"] for r in whole) == keys
    assert len({r["SystemModstamp"] for r in whole}) == 1
    assert rest_queries(sandbox, pages_only=True) == 1  # page 2 via nextRecordsUrl

    # Resume from every batch's cursor, as a sync that commits batch by batch (and
    # crashes after each) would: every record exactly once, in order.
    sf.settings.page_size = 450
    seen: list[str] = []
    while True:
        batch = next(iter(sf.read_changes("customer", cursor)), None)
        if batch is None:
            break
        seen += [r["Hub_Id__c"] for r in batch.records]
        assert batch.cursor and batch.cursor != cursor
        cursor = batch.cursor
    assert seen == [r["Hub_Id__c"] for r in whole]
    assert sorted(seen) == keys


def test_snapshot_window_bounds_are_exact(sf: SalesforceConnector) -> None:
    first = sf.write_batch("customer", [account(f"CUS-WIN-A{i}") for i in range(3)])
    second = sf.write_batch("customer", [account(f"CUS-WIN-B{i}") for i in range(2)])
    ids_a = {r.external_id for r in first}
    ids_b = {r.external_id for r in second}
    changed, _ = read_all(sf, None)
    stamp = {r["Id"]: _parse_sf_datetime(r["SystemModstamp"]) for r in changed}
    (start,) = {stamp[i] for i in ids_a}
    (end,) = {stamp[i] for i in ids_b}

    def snapshot(window: Window | None) -> set[str]:
        return {r["Id"] for b in sf.read_snapshot("customer", window) for r in b.records}

    assert snapshot(Window(start, end)) == ids_a  # inclusive start, exclusive end
    assert ids_b <= snapshot(Window(start=end))
    assert snapshot(Window(start=end)).isdisjoint(ids_a)
    # Sub-millisecond bounds: a record at .xxx000 is inside [.xxx000, .xxx000 + 1 µs)
    assert snapshot(Window(start, start + timedelta(microseconds=1))) == ids_a
    assert snapshot(Window(start + timedelta(microseconds=1), end)) == set()
    assert len(snapshot(None)) == len(changed)


def test_read_by_keys_matches_quotes_backslashes_and_operators_literally(
    sandbox: SandboxHandle, sf: SalesforceConnector
) -> None:
    hostile = [
        "CUS-O'Brien",
        "CUS-back\\slash",
        "CUS-x' OR Name != '",
        "CUS-a\\' OR Id != '",
        "CUS-pct%_wild",
        "CUS-paren') OR (Name LIKE '%",
    ]
    results = sf.write_batch(
        "customer", [account(k, f"Hostile {i}") for i, k in enumerate(hostile)]
    )
    assert outcomes(results) == [Outcome.CREATED] * len(hostile)
    decoys = ["CUS-pct%", "CUS-O'Brien%", "CUS-%", "%", "CUS-back\\\\slash", "' OR '1'='1"]
    sf.settings.keys_per_query = 4
    sandbox.reset_calls()
    found = [r for b in sf.read_by_keys("customer", hostile + decoys) for r in b.records]
    assert sorted(r["Hub_Id__c"] for r in found) == sorted(hostile)
    assert rest_queries(sandbox) == 3  # 12 keys, 4 per IN list
    for key in hostile:
        (only,) = [r for b in sf.read_by_keys("customer", [key]) for r in b.records]
        assert only["Hub_Id__c"] == key
    assert [r for b in sf.read_by_keys("customer", decoys) for r in b.records] == []


# -- writes -----------------------------------------------------------------------------
def test_collections_upsert_reports_each_record_with_salesforce_errors(
    sandbox: SandboxHandle, sf: SalesforceConnector
) -> None:
    accounts, _ = read_all(sf)
    existing = accounts[0]
    batch = [account(f"CUS-COL-{i:03d}") for i in range(250)]
    batch[7] = account("CUS-COL-BAD-PICK", Segment__c="Galactic")
    batch[210] = {"Hub_Id__c": "CUS-COL-BAD-NAME", "BillingCity": "Oslo"}
    batch.append({"Id": existing["Id"], "Name": existing["Name"] + " Holding"})
    sandbox.reset_calls()
    results = sf.write_batch("customer", batch)
    assert count(sandbox, "PATCH", "/composite/sobjects/Account/Hub_Id__c") == 2  # 200 + 48
    assert count(sandbox, "PATCH", "/composite/sobjects") == 3  # + the update by Id
    assert results[7].outcome is Outcome.REJECTED
    assert results[7].error_code == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    assert "Galactic" in (results[7].error or "")
    assert results[210].outcome is Outcome.REJECTED
    assert results[210].error_code == "REQUIRED_FIELD_MISSING"
    assert "Name" in (results[210].error or "")
    assert results[-1].outcome is Outcome.UPDATED and results[-1].key == existing["Id"]
    good = [r for i, r in enumerate(results[:250]) if i not in (7, 210)]
    assert {r.outcome for r in good} == {Outcome.CREATED}
    assert [r.key for r in results[:250]] == [r["Hub_Id__c"] for r in batch[:250]]

    again = sf.write_batch("customer", [account("CUS-COL-000", "Renamed AS")])
    assert outcomes(again) == [Outcome.UPDATED]  # upsert by external id: never a second one
    assert again[0].external_id == results[0].external_id
    keys = [r.key for r in good]
    assert stored(sf, "CUS-COL-") == sorted(keys)
    (renamed,) = [r for b in sf.read_by_keys("customer", ["CUS-COL-000"]) for r in b.records]
    assert renamed["Name"] == "Renamed AS"
    (holding,) = [
        r for b in sf.read_by_keys("customer", [existing["Hub_Id__c"]]) for r in b.records
    ]
    assert holding["Name"] == existing["Name"] + " Holding"


def test_bulk_ingest_above_the_threshold_maps_successful_and_failed(
    sandbox: SandboxHandle, sf: SalesforceConnector
) -> None:
    sf.write_batch("customer", [account("CUS-BULK-0", "Before Bulk")])
    sf.settings.bulk_threshold = 3
    rows = [account(f"CUS-BULK-{i}", f"Bulk Customer {i}") for i in range(6)]
    rows.append(account("CUS-BULK-BAD", "Bulk Bad", Segment__c="Galactic"))
    rows.append(account("CUS-BULK-NULL", "Bulk Null", BillingCity=None))
    sandbox.reset_calls()
    results = sf.write_batch("customer", rows)
    assert outcomes(results) == [Outcome.UPDATED] + [Outcome.CREATED] * 5 + [
        Outcome.REJECTED,
        Outcome.CREATED,
    ]
    assert results[6].error_code == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    assert "Galactic" in (results[6].error or "") and "--" not in (results[6].error or "")
    assert all(r.external_id for r in results if r.outcome is not Outcome.REJECTED)
    # create + upload + close + one status poll + successful + failed results
    assert sum(calls(sandbox).values()) == 6, calls(sandbox)
    assert stored(sf, "CUS-BULK-") == sorted(
        r["Hub_Id__c"] for r in rows if "BAD" not in r["Hub_Id__c"]
    )
    (null,) = [r for b in sf.read_by_keys("customer", ["CUS-BULK-NULL"]) for r in b.records]
    assert null["BillingCity"] is None  # None went as #N/A

    by_id = [{"Id": r.external_id, "Name": f"Bulk Renamed {i}"} for i, r in enumerate(results[:4])]
    renamed = sf.write_batch("customer", by_id)
    assert outcomes(renamed) == [Outcome.UPDATED] * 4
    names = {r["Name"] for b in sf.read_by_keys("customer", ["CUS-BULK-2"]) for r in b.records}
    assert names == {"Bulk Renamed 2"}


def test_bulk_ingest_unprocessed_rows_are_reported_not_lost(
    sandbox: SandboxHandle, sf: SalesforceConnector
) -> None:
    """A job Salesforce fails as a whole (here: a column the object lacks) processes
    nothing; every row comes back rejected with the job's reason."""
    sf.settings.bulk_threshold = 1
    rows = [account(f"CUS-UNP-{i}", Bogus__c="x") for i in range(3)]
    sandbox.reset_calls()
    results = sf.write_batch("customer", rows)
    assert outcomes(results) == [Outcome.REJECTED] * 3
    assert {r.error_code for r in results} == {"UNPROCESSED"}
    assert all("Bogus__c" in (r.error or "") for r in results)
    assert [r.key for r in results] == [r["Hub_Id__c"] for r in rows]
    assert count(sandbox, "GET", "/unprocessedrecords") == 1
    assert stored(sf, "CUS-UNP-") == []


def test_bulk_ingest_splits_a_batch_over_the_upload_limit(
    sandbox: SandboxHandle, sf: SalesforceConnector
) -> None:
    sf.settings.bulk_threshold = 1
    sf.settings.bulk_upload_bytes = 400  # 8 rows are ~420 bytes of CSV: two jobs of 4
    rows = [account(f"CUS-SPLIT-{i}") for i in range(8)]
    sandbox.reset_calls()
    results = sf.write_batch("customer", rows)
    assert outcomes(results) == [Outcome.CREATED] * 8
    assert [r.key for r in results] == [r["Hub_Id__c"] for r in rows]
    assert count(sandbox, "POST", "/jobs/ingest") == 2
    assert stored(sf, "CUS-SPLIT-") == sorted(r["Hub_Id__c"] for r in rows)


# -- auth -------------------------------------------------------------------------------
def test_jwt_bearer_flow_needs_no_client_secret(sandbox: SandboxHandle) -> None:
    env = {**sandbox.env, "SALESFORCE_CLIENT_SECRET": ""}
    assert env["SALESFORCE_PRIVATE_KEY_FILE"]
    connector = _connector(env)
    assert connector.health().ok
    # The audience Salesforce expects whatever host the token is fetched from.
    for audience in ("https://login.salesforce.com", "https://test.salesforce.com"):
        assert _connector(env, jwt_audience=audience).health().ok
    with pytest.raises(AuthError, match="audience is invalid"):
        _connector(env, jwt_audience="https://evil.example.com")._client()


def test_a_key_file_that_cannot_sign_names_the_variable_and_the_fix(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    """The parsed key is kept per file content: a key file replaced by something else is
    read again and, if it cannot sign RS256, refused with the variable and what to do."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    not_pem = tmp_path / "not.pem"
    not_pem.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    ec_key = tmp_path / "ec.pem"
    ec_key.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    env = {**sandbox.env, "SALESFORCE_CLIENT_SECRET": ""}
    assert _connector(env).health().ok
    for path, why in ((not_pem, "not a PEM private key"), (ec_key, "not an RSA key")):
        with pytest.raises(AuthError, match="SALESFORCE_PRIVATE_KEY_FILE") as info:
            _connector({**env, "SALESFORCE_PRIVATE_KEY_FILE": str(path)})._client()
        assert why in str(info.value) and "PEM RSA key" in str(info.value)


def test_login_url_is_configurable(sandbox: SandboxHandle) -> None:
    url = sandbox.env["SALESFORCE_LOGIN_URL"].replace("127.0.0.1", "localhost")
    assert url != sandbox.env["SALESFORCE_LOGIN_URL"]
    for env in (
        {**sandbox.env, "SALESFORCE_LOGIN_URL": url},
        {**sandbox.env, "SALESFORCE_LOGIN_URL": url, "SALESFORCE_PRIVATE_KEY_FILE": ""},
    ):
        connector = _connector(env)
        assert connector.settings.login_url == url
        assert len(read_all(connector)[0]) >= 20
    once = RetryPolicy(max_attempts=2, initial_wait=0.01, jitter=0)
    nowhere = _connector({**sandbox.env, "SALESFORCE_LOGIN_URL": "https://127.0.0.1:9"}, retry=once)
    with pytest.raises(SystemUnavailableError, match="token call failed"):
        nowhere._client()


def test_client_credentials_flow_and_a_wrong_secret(
    sandbox: SandboxHandle, caplog: pytest.LogCaptureFixture
) -> None:
    env = {**sandbox.env, "SALESFORCE_PRIVATE_KEY_FILE": ""}
    assert len(read_all(_connector(env))[0]) >= 20
    secret = "not-the-real-secret-3MVG9"
    with caplog.at_level(logging.DEBUG), pytest.raises(AuthError) as info:
        read_all(_connector({**env, "SALESFORCE_CLIENT_SECRET": secret}))
    assert "invalid_client" in str(info.value) and "SALESFORCE_CLIENT_ID" in str(info.value)
    for value in (secret, sandbox.env["SALESFORCE_CLIENT_SECRET"]):
        assert value not in str(info.value) and value not in caplog.text


def test_expired_session_is_renewed_once(sandbox: SandboxHandle, sf: SalesforceConnector) -> None:
    before, _ = read_all(sf)
    fault(sandbox, mode="token_expiry")
    sandbox.reset_calls()
    after, _ = read_all(sf)
    assert sorted(a["Id"] for a in after) == sorted(a["Id"] for a in before)
    assert calls(sandbox)[TOKEN] == 1
    # mid-job: the session expires between the Bulk API job's steps
    sf.settings.bulk_threshold = 1
    fault(sandbox, mode="token_expiry", after=2, count=1)
    sandbox.reset_calls()
    results = sf.write_batch("customer", [account(f"CUS-EXP-{i}") for i in range(3)])
    assert outcomes(results) == [Outcome.CREATED] * 3
    assert calls(sandbox)[TOKEN] == 1 and count(sandbox, "POST", "/jobs/ingest") == 1
    assert stored(sf, "CUS-EXP-") == [f"CUS-EXP-{i}" for i in range(3)]


# -- API budget -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_org(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxHandle]:
    """An org with a daily API limit of 40 calls (the emulator's setting, given through
    the data directory's credentials file the runner reads)."""
    folder: Path = tmp_path_factory.mktemp("sf-budget") / "sb"
    folder.mkdir(parents=True)
    (folder / "credentials.json").write_text(
        json.dumps(
            {
                "salesforce": {
                    "client_id": "3MVG9budgettest0000000000",
                    "client_secret": "budget-test-secret-0123456789",
                    "username": "integration@hub.sandbox",
                    "daily_api_limit": 40,
                }
            }
        )
    )
    with running_sandbox(folder, seed=3, customers=3, systems=("salesforce",)) as sb:
        yield sb


def test_budget_share_stops_before_the_limit_then_request_limit_exceeded(
    small_org: SandboxHandle,
) -> None:
    sf = _connector(small_org.env, budget_share=0.5)
    health = sf.health()
    assert health.ok and health.extra["api_max"] == 40
    with pytest.raises(BudgetExhaustedError, match=r"stopped before call 21 of the org's 40"):
        for _ in range(40):
            list(sf.read_by_keys("customer", ["CUS-NONE"]))
    used = small_org.calls()["salesforce"]["by_call"]
    assert sum(n for c, n in used.items() if c != TOKEN) == 20  # half of 40, not one more

    # Another integration spends the rest; a fresh connector (no usage seen yet) is
    # refused with REQUEST_LIMIT_EXCEEDED and says so.
    greedy = _connector(small_org.env, budget_share=1.0)
    with pytest.raises(BudgetExhaustedError, match=r"stopped before call 41"):
        while True:
            list(greedy.read_by_keys("customer", ["CUS-NONE"]))
    fresh = _connector(small_org.env)
    with pytest.raises(BudgetExhaustedError, match="REQUEST_LIMIT_EXCEEDED") as info:
        read_all(fresh)
    assert "TotalRequests Limit exceeded" in str(info.value)
    health = fresh.health()
    assert not health.ok and "REQUEST_LIMIT_EXCEEDED" in health.detail


def test_health(sf: SalesforceConnector) -> None:
    health = sf.health()
    assert health.ok and health.system == "salesforce"
    assert health.extra["api_max"] == 1_000_000 and 0 < health.extra["api_remaining"] < 1_000_000
    assert health.latency_ms is not None and health.latency_ms > 0


# -- faults -----------------------------------------------------------------------------
def test_retry_after_is_honoured(sandbox: SandboxHandle, sf: SalesforceConnector) -> None:
    expected, _ = read_all(sf)
    fault(sandbox, mode="429", count=1, retry_after=1)
    started = time.monotonic()
    got, _ = read_all(sf)
    assert time.monotonic() - started >= 1.0
    assert sorted(a["Id"] for a in got) == sorted(a["Id"] for a in expected)


@pytest.mark.parametrize(
    ("mode", "path"),
    [
        ("429", None),
        ("503", None),
        ("500", None),
        ("drop", None),
        ("drop", "/jobs/query/[^/]+/results"),  # a Bulk API result page cut
        ("drop", r"/v[\d.]+/query/"),  # a nextRecordsUrl page cut
        ("503", r"/v[\d.]+/query/"),
    ],
)
def test_reads_return_every_record_exactly_once_under_faults(
    sandbox: SandboxHandle, sf: SalesforceConnector, mode: str, path: str | None
) -> None:
    ensure_accounts(sf, 2100)
    first, _ = read_all(sf)  # Bulk API query
    delta, _ = read_all(sf, f"{first[0]['SystemModstamp']}|000000000000000")  # REST, paged
    fault(sandbox, mode=mode, count=2, retry_after=0, path=path)
    sandbox.reset_calls()
    got_first, _ = read_all(sf)
    got_delta, _ = read_all(sf, f"{first[0]['SystemModstamp']}|000000000000000")
    assert [a["Id"] for a in got_first] == [a["Id"] for a in first]
    assert [a["Id"] for a in got_delta] == [a["Id"] for a in delta]
    assert len(delta) > 2000  # two REST pages


def test_reads_under_every_fault_at_once(sandbox: SandboxHandle, sf: SalesforceConnector) -> None:
    expected, cursor = read_all(sf)
    fault(sandbox, mode="token_expiry")
    for mode in ("429", "503", "drop", "500"):
        fault(sandbox, mode=mode, rate=0.3, count=2, retry_after=0)
    got, got_cursor = read_all(sf)
    assert [a["Id"] for a in got] == [a["Id"] for a in expected] and got_cursor == cursor


@pytest.mark.parametrize("bulk", [False, True], ids=["collections", "bulk"])
def test_writes_under_faults_none_lost_none_twice(
    sandbox: SandboxHandle, sf: SalesforceConnector, bulk: bool
) -> None:
    prefix = f"CUS-FW-{'B' if bulk else 'C'}-"
    sf.settings.bulk_threshold = 50 if bulk else 10_000
    first = [account(f"{prefix}{i:03d}") for i in range(120)]
    fault(sandbox, mode="reject", rate=0.2)
    fault(sandbox, mode="token_expiry")
    for mode in ("429", "503", "drop"):
        fault(sandbox, mode=mode, count=1, retry_after=0, path="/composite|/jobs/ingest")
    results = sf.write_batch("customer", first)
    clear_faults(sandbox)
    assert [r.key for r in results] == [r["Hub_Id__c"] for r in first]
    rejected = sorted(r.key for r in results if r.outcome is Outcome.REJECTED)
    applied = sorted(r.key for r in results if r.outcome in (Outcome.CREATED, Outcome.UPDATED))
    assert sorted(rejected + applied) == sorted(r["Hub_Id__c"] for r in first)
    assert 5 < len(rejected) < 50  # about a fifth: the validation rule, per record
    assert {r.error_code for r in results if r.outcome is Outcome.REJECTED} == {
        "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    }
    assert stored(sf, prefix) == applied  # every applied record once, no rejected one

    # The replay a sync makes after a crash: same records again, faults still on -
    # nothing is created twice, the rejected ones are rejected again.
    fault(sandbox, mode="reject", rate=0.2)
    for mode in ("503", "drop"):
        fault(sandbox, mode=mode, count=1, retry_after=0, path="/composite|/jobs/ingest")
    again = sf.write_batch("customer", first)
    assert sorted(r.key for r in again if r.outcome is Outcome.REJECTED) == rejected
    assert {r.outcome for r in again if r.key in applied} == {Outcome.UPDATED}
    assert stored(sf, prefix) == applied


def test_bulk_job_steps_cut_midway(sandbox: SandboxHandle, sf: SalesforceConnector) -> None:
    """A failed upload remakes the job (the first is aborted, never uploaded to twice:
    whether the rows landed is unknown); a lost close answer is recognised (409 on the
    retry); a cut result page is read again."""
    sf.settings.bulk_threshold = 1
    rows = [account(f"CUS-CUT-{i}") for i in range(5)]
    fault(sandbox, mode="503", count=1, retry_after=0, path="/batches$")
    fault(sandbox, mode="drop", count=1, path="/successfulResults")
    sandbox.reset_calls()
    results = sf.write_batch("customer", rows)
    assert outcomes(results) == [Outcome.CREATED] * 5
    assert count(sandbox, "POST", "/jobs/ingest") == 2, calls(sandbox)
    assert count(sandbox, "PATCH", "/jobs/ingest/") == 2  # abort of the first + close
    assert stored(sf, "CUS-CUT-") == sorted(r["Hub_Id__c"] for r in rows)

    fault(sandbox, mode="drop", count=1, path="/jobs/ingest/[^/]+$")
    sandbox.reset_calls()
    again = sf.write_batch("customer", rows)  # create, upload, close (cut) -> 409 -> on
    assert outcomes(again) == [Outcome.UPDATED] * 5
    assert count(sandbox, "POST", "/jobs/ingest") == 1
    assert stored(sf, "CUS-CUT-") == sorted(r["Hub_Id__c"] for r in rows)


def test_deletes_come_from_the_delete_log_and_an_uncovered_window_says_so(
    sf: SalesforceConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """read_deletions asks sObject Get Deleted for the window since the last look, up to
    the next whole minute (a delete made this minute counts); past the log's 15 days, or
    when the log starts after the last look (an admin purged it), it cannot tell: None,
    and the hub compares keys instead."""
    sf.write_batch("customer", [account("CUS-DEL-0001")])
    client = sf._client()
    [record] = client.query("SELECT Id FROM Account WHERE Hub_Id__c = 'CUS-DEL-0001'")["records"]
    client.Account.delete(record["Id"])
    now = datetime.now(UTC)
    found = sf.read_deletions("customer", now - timedelta(minutes=5))
    assert found is not None and record["Id"] in {d.external_id for d in found}
    assert sf.read_deletions("customer", now - timedelta(days=16)) is None
    purged_log = {"deletedRecords": [], "earliestDateAvailable": now.isoformat()}
    monkeypatch.setattr(sf, "_call", lambda fn: purged_log)
    assert sf.read_deletions("customer", now - timedelta(hours=1)) is None
    assert sf.read_deletions("customer", None) == []  # the whole log, however short

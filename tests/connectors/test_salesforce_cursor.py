"""Salesforce cursors that never skip (issue 15), through the Salesforce emulator over
HTTPS with the real simple-salesforce: an account stamped at the cursor's very instant, a
run sharing one SystemModstamp across batch edges, an account committed late inside the
overlap, the overlap setting, and cursors stored before still loading.

One emulator for the module (connector batches of 4); each test seeds its own accounts a
day after everything seeded before, so the tests share the emulator but not the data."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.retry import RetryPolicy
from connectors.salesforce import SalesforceConnector, SalesforceSettings
from connectors.settings import declared, read_settings
from hub.systems import connect
from sandbox.faults import FaultState
from sandbox.salesforce import SalesforceSettings as EmulatorSettings
from sandbox.salesforce import create_app, seed_records
from sandbox.salesforce.ids import make_id
from sandbox.server import serve_in_thread
from sandbox.store import DocumentStore
from sandbox.tls import ensure_tls

BATCH = 4
FAST = RetryPolicy(max_attempts=3, max_seconds=10, initial_wait=0.02, max_wait=1, jitter=0)
_DAYS = itertools.count(1)


def _parse_overlap(raw: str) -> float | None:
    parse = declared(SalesforceSettings)["cursor_overlap_seconds"].parse
    assert parse is not None
    return parse(raw)


@pytest.fixture(scope="module")
def org(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], Any]]:
    folder = Path(tmp_path_factory.mktemp("sf-cursor"))
    tls = ensure_tls(folder / "tls")
    store = DocumentStore(folder / "sf.sqlite")
    settings = EmulatorSettings()
    with serve_in_thread(create_app(store, FaultState(seed=3), settings), tls=tls) as base:
        env = {
            "SALESFORCE_LOGIN_URL": base,
            "SALESFORCE_CLIENT_ID": settings.client_id,
            "SALESFORCE_CLIENT_SECRET": settings.client_secret,
            "HUB_CA_BUNDLE": str(tls.ca_bundle),
        }
        yield env, store
    store.close()


@pytest.fixture
def sf(org: tuple[dict[str, str], DocumentStore]) -> Iterator[SalesforceConnector]:
    connector = connect("salesforce", org[0])
    assert isinstance(connector, SalesforceConnector)
    connector.settings.retry = FAST
    connector.settings.bulk_poll_initial = 0.01
    connector.settings.page_size = BATCH
    yield connector
    connector.close()


def next_day() -> dt.datetime:
    """Noon of a day after every day used before in this module."""
    return dt.datetime(2030, 1, 1, 12, tzinfo=dt.UTC) + dt.timedelta(days=next(_DAYS))


def account(n: int, stamp: dt.datetime, name: str = "") -> dict[str, Any]:
    return {
        "Id": make_id("001", 700_000 + n),
        "Name": name or f"Account {n}",
        "Hub_Id__c": f"CUS-T-{n:05d}",
        "CurrencyIsoCode": "EUR",
        "LastModifiedDate": stamp,
    }


def read(sf: SalesforceConnector, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
    records: list[dict[str, Any]] = []
    for batch in sf.read_changes("customer", cursor):
        records += batch.records
        cursor = batch.cursor or cursor
    return records, cursor


def hub_ids(records: list[dict[str, Any]]) -> list[str]:
    return [r["Hub_Id__c"] for r in records]


def test_an_account_changed_at_the_cursors_exact_stamp_is_read(
    org: tuple[dict[str, str], DocumentStore], sf: SalesforceConnector
) -> None:
    store = org[1]
    stamp = next_day()
    seed_records(store, "Account", [account(100 + i, stamp) for i in range(1, 4)])
    _, cursor = read(sf, None)
    assert cursor is not None and cursor.endswith(make_id("001", 700_103))
    text = cursor.split("|")[0]  # the stamp in UTC, typed
    assert dt.datetime.fromisoformat(text) == stamp and text.endswith("+00:00")
    # a change committed in the same instant as the cursor's record, to a lower Id
    seed_records(store, "Account", [account(101, stamp, "Changed Name")])
    records, after = read(sf, cursor)
    assert "Changed Name" in {r["Name"] for r in records}
    assert after == cursor  # nothing newer: the cursor stays
    # a cursor stored before (stamp without an offset) still loads
    old = f"{stamp.replace(tzinfo=None).isoformat()}|{make_id('001', 700_103)}"
    assert "Changed Name" in {r["Name"] for r in read(sf, old)[0]}


def test_many_accounts_sharing_one_stamp_across_batch_edges_are_all_read(
    org: tuple[dict[str, str], DocumentStore], sf: SalesforceConnector
) -> None:
    store = org[1]
    _, cursor = read(sf, None)
    stamp = next_day()
    seed_records(store, "Account", [account(200 + i, stamp) for i in reversed(range(10))])
    wanted = [f"CUS-T-{200 + i:05d}" for i in range(10)]
    sf.settings.cursor_overlap_seconds = 0  # the exact keyset first
    batches = list(sf.read_changes("customer", cursor))
    assert [len(b.records) for b in batches] == [4, 4, 2]
    assert [h for b in batches for h in hub_ids(b.records)] == wanted
    for n, batch in enumerate(batches):  # resuming after any batch reads exactly the rest
        assert hub_ids(read(sf, batch.cursor)[0]) == wanted[BATCH * (n + 1) :]
    sf.settings.cursor_overlap_seconds = 300  # the default re-reads the whole run
    for batch in batches:
        assert hub_ids(read(sf, batch.cursor)[0]) == wanted


def test_an_account_committed_late_inside_the_overlap_is_read(
    org: tuple[dict[str, str], DocumentStore], sf: SalesforceConnector
) -> None:
    store = org[1]
    stamp = next_day()
    seed_records(store, "Account", [account(301, stamp)])
    _, cursor = read(sf, None)
    # committed after that read, stamped when its transaction began
    late = [
        account(302, stamp - dt.timedelta(seconds=60)),
        account(303, stamp - dt.timedelta(seconds=600)),  # beyond the overlap
    ]
    seed_records(store, "Account", late)
    records, after = read(sf, cursor)
    assert hub_ids(records) == ["CUS-T-00302", "CUS-T-00301"] and after == cursor
    sf.settings.cursor_overlap_seconds = 0
    assert read(sf, cursor)[0] == []  # without the overlap the late account is lost


def test_the_overlap_is_a_setting_with_a_five_minute_default() -> None:
    base = {"SALESFORCE_LOGIN_URL": "https://127.0.0.1:9", "SALESFORCE_CLIENT_ID": "c"}
    assert read_settings(SalesforceSettings, base).cursor_overlap_seconds == 300
    for raw, seconds in (("0", 0), ("1.5", 1.5), (" ", 300)):
        env = {**base, "SALESFORCE_CURSOR_OVERLAP_SECONDS": raw}
        assert read_settings(SalesforceSettings, env).cursor_overlap_seconds == seconds
    for bad in ("-1", "five", "nan", "inf"):
        with pytest.raises(ValueError, match="SALESFORCE_CURSOR_OVERLAP_SECONDS"):
            _parse_overlap(bad)

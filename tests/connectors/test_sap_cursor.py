"""SAP cursors that never skip (issue 15), through the SAP emulator with the real pyodata
client: a record stamped at the cursor's very instant, a run of records sharing one stamp
across page edges (keys of different widths: S/4 orders its ALPHA number-range keys as
numbers), a record committed late inside the overlap, the business partner's date and
time-of-day literals (customers are read through their partner: A_Customer has no
change stamp), the overlap setting, and cursors stored before still loading.

One emulator for the module (server pages of 4); each test seeds its own customers a
day after everything seeded before, so the tests share the emulator but not the data."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import requests

from connectors.retry import RetryPolicy
from connectors.sap import SapConnector, SapSettings
from connectors.settings import declared, read_settings
from hub.systems import connect
from sandbox.faults import FaultState
from sandbox.sap import SapSettings as EmulatorSettings
from sandbox.sap import create_app, seed_records
from sandbox.server import serve_in_thread
from sandbox.store import DocumentStore

PAGE = 4
FAST = RetryPolicy(max_attempts=3, max_seconds=10, initial_wait=0.05, max_wait=1, jitter=0)
ENV = {"SAP_USER": "HUB_SANDBOX", "SAP_PASSWORD": "sandbox-password", "SAP_CLIENT": "100"}
_DAYS = itertools.count(1)


def _parse_overlap(raw: str) -> float | None:
    parse = declared(SapSettings)["cursor_overlap_seconds"].parse
    assert parse is not None
    return parse(raw)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, DocumentStore]]:
    store = DocumentStore(Path(tmp_path_factory.mktemp("sap-cursor")) / "sap.sqlite")
    app = create_app(store, FaultState(seed=3), EmulatorSettings(page_size=PAGE))
    with serve_in_thread(app) as base:
        yield base, store
    store.close()


@pytest.fixture(scope="module")
def sap(emulator: tuple[str, DocumentStore]) -> Iterator[SapConnector]:
    connector = connect("sap", {"SAP_ODATA_URL": emulator[0], **ENV})
    assert isinstance(connector, SapConnector)
    connector.settings.retry = FAST
    yield connector
    connector.close()


@pytest.fixture
def overlap(sap: SapConnector) -> Iterator[Any]:
    """Set the connector's overlap (seconds) for one test; the default is put back."""

    def set_to(seconds: float) -> None:
        sap.settings.cursor_overlap_seconds = seconds

    yield set_to
    sap.settings.cursor_overlap_seconds = 300.0


def next_day() -> dt.datetime:
    """Noon of a day after every day used before in this module."""
    return dt.datetime(2030, 1, 1, 12, tzinfo=dt.UTC) + dt.timedelta(days=next(_DAYS))


def customer(number: int | str, stamp: dt.datetime, name: str = "") -> dict[str, Any]:
    """A business partner changed at ``stamp`` (its LastChangeDate + LastChangeTime, to
    the second) with its customer role, numbered alike: what the connector reads
    customer changes through (A_Customer has no change stamp)."""
    return {
        "BusinessPartner": str(number),
        "Customer": str(number),
        "BusinessPartnerCategory": "2",
        "LastChangeDateTime": stamp,
        "to_Customer": [
            {
                "CustomerName": name or f"Customer {number}",
                "CustomerFullName": name or f"Customer {number}",
                "YY1_HubId": f"CUS-{number}",
                "to_CustomerSalesArea": [
                    {
                        "SalesOrganization": "1010",
                        "DistributionChannel": "10",
                        "Division": "00",
                        "Currency": "EUR",
                        "CustomerPaymentTerms": "NT30",
                    }
                ],
            }
        ],
    }


def read(sap: SapConnector, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
    records: list[dict[str, Any]] = []
    for batch in sap.read_changes("customer", cursor):
        records += batch.records
        cursor = batch.cursor or cursor
    return records, cursor


def numbers(records: list[dict[str, Any]]) -> list[str]:
    return [r["Customer"] for r in records]


def cursor_now(sap: SapConnector) -> str | None:
    """The cursor after everything the emulator holds (what a sync would have stored)."""
    return read(sap, None)[1]


class Urls:
    """GET URLs the connector's session sends, decoded."""

    def __init__(self, session: requests.Session) -> None:
        self.seen: list[str] = []
        self._session = session
        session.hooks["response"].append(self._note)

    def _note(self, response: requests.Response, *_: Any, **__: Any) -> None:
        self.seen.append(unquote(response.request.url or "").replace("+", " "))

    def close(self) -> None:
        self._session.hooks["response"].remove(self._note)


def test_a_record_changed_at_the_cursors_exact_stamp_is_read(
    emulator: tuple[str, DocumentStore], sap: SapConnector
) -> None:
    store = emulator[1]
    stamp = next_day()
    seed_records(store, "A_BusinessPartner", [customer(2_000_000 + i, stamp) for i in range(1, 4)])
    cursor = cursor_now(sap)
    assert cursor is not None and cursor.endswith("|2000003")
    # a change committed in the same instant as the cursor's record, to a lower key
    seed_records(store, "A_BusinessPartner", [customer(2_000_001, stamp, "Changed Name")])
    urls = Urls(sap.session)
    try:
        records, after = read(sap, cursor)
    finally:
        urls.close()
    assert "Changed Name" in {r["CustomerName"] for r in records}
    assert after == cursor  # nothing newer: the cursor stays
    # the filter is on the partner's date and time of day, the overlap before the cursor
    day, start = stamp.strftime("%Y-%m-%d"), stamp - dt.timedelta(seconds=300)
    since = (
        f"LastChangeDate gt datetime'{day}T00:00:00' or (LastChangeDate eq "
        f"datetime'{day}T00:00:00' and LastChangeTime ge time'PT{start:%H}H{start:%M}M{start:%S}S')"
    )
    assert any(since in u for u in urls.seen), urls.seen
    # a cursor stored before (stamp without offset) still loads, and resumes the same way
    old = f"{stamp.strftime('%Y-%m-%dT%H:%M:%S.%f')}|2000003"
    assert "Changed Name" in {r["CustomerName"] for r in read(sap, old)[0]}


def test_many_records_sharing_one_stamp_across_page_edges_are_all_read(
    emulator: tuple[str, DocumentStore], sap: SapConnector, overlap: Any
) -> None:
    """Ten customers in one instant, keys 999995 ... 1000004 (S/4 holds them zero-padded:
    999999 sorts before 1000000); pages of four cut the run twice."""
    store = emulator[1]
    cursor = cursor_now(sap)
    stamp = next_day()
    keys = [str(n) for n in range(999_995, 1_000_005)]
    seed_records(store, "A_BusinessPartner", [customer(k, stamp) for k in reversed(keys)])
    overlap(0)  # the exact keyset (the overlap would re-read the records before these)
    batches = list(sap.read_changes("customer", cursor))
    assert len(batches) >= 3 and all(len(b.records) <= PAGE for b in batches)
    assert [k for b in batches for k in numbers(b.records)] == keys
    for batch in batches:  # each cursor: the stamp, typed and in UTC, and the last key
        assert batch.cursor is not None
        text, key = batch.cursor.split("|")
        assert dt.datetime.fromisoformat(text) == stamp and key == batch.records[-1]["Customer"]
    for batch in batches:  # resuming after any page reads exactly the rest
        rest = keys[keys.index(batch.records[-1]["Customer"]) + 1 :]
        assert numbers(read(sap, batch.cursor)[0]) == rest
    overlap(300)  # the default: each resume also re-reads the run's earlier records
    for batch in batches:
        assert numbers(read(sap, batch.cursor)[0]) == keys


def test_a_record_committed_late_inside_the_overlap_is_read(
    emulator: tuple[str, DocumentStore], sap: SapConnector, overlap: Any
) -> None:
    store = emulator[1]
    stamp = next_day()
    seed_records(store, "A_BusinessPartner", [customer(3_000_001, stamp)])
    cursor = cursor_now(sap)
    # committed after that read, stamped when its transaction began
    late = [
        customer(3_000_002, stamp - dt.timedelta(seconds=60)),
        customer(3_000_003, stamp - dt.timedelta(seconds=600)),  # beyond the overlap
    ]
    seed_records(store, "A_BusinessPartner", late)
    records, after = read(sap, cursor)
    assert numbers(records) == ["3000002", "3000001"] and after == cursor
    overlap(0)
    assert read(sap, cursor)[0] == []  # without the overlap the late record is lost
    overlap(120)
    assert numbers(read(sap, cursor)[0]) == ["3000002", "3000001"]


def test_the_overlap_is_a_setting_with_a_five_minute_default() -> None:
    base = {"SAP_ODATA_URL": "http://127.0.0.1:9", **ENV}
    assert read_settings(SapSettings, base).cursor_overlap_seconds == 300
    for raw, seconds in (("0", 0), ("1.5", 1.5), (" ", 300)):
        env = {**base, "SAP_CURSOR_OVERLAP_SECONDS": raw}
        assert read_settings(SapSettings, env).cursor_overlap_seconds == seconds
    for bad in ("-1", "five", "nan", "inf"):
        with pytest.raises(ValueError, match="SAP_CURSOR_OVERLAP_SECONDS"):
            _parse_overlap(bad)

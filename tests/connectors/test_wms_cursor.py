"""WMS cursors that never skip (issue 15), through the WMS emulator with the real httpx
client: an allocation stamped at the cursor's very instant, a run sharing one timestamp
across page edges, an allocation committed late inside the overlap, the overlap setting,
and cursors stored before still loading.

One emulator for the module (connector pages of 4); each test seeds its own allocations a
day after everything seeded before, so the tests share the emulator but not the data."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.retry import RetryPolicy
from connectors.settings import declared, read_settings
from connectors.wms import WmsConnector, WmsSettings
from sandbox.faults import FaultState
from sandbox.server import serve_in_thread
from sandbox.store import DocumentStore
from sandbox.wms import WmsSettings as EmulatorSettings
from sandbox.wms import create_app, seed_records

API_KEY = "wms_cursor_test_key_7"
PAGE = 4
FAST = RetryPolicy(max_attempts=3, max_seconds=10, initial_wait=0.01, max_wait=1, jitter=0)
_DAYS = itertools.count(1)


def _parse_overlap(raw: str) -> float | None:
    parse = declared(WmsSettings)["cursor_overlap_seconds"].parse
    assert parse is not None
    return parse(raw)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, DocumentStore]]:
    store = DocumentStore(Path(tmp_path_factory.mktemp("wms-cursor")) / "wms.sqlite")
    app = create_app(store, FaultState(seed=3), EmulatorSettings(api_key=API_KEY))
    with serve_in_thread(app) as base:
        yield base, store
    store.close()


@pytest.fixture
def wms(emulator: tuple[str, DocumentStore]) -> Iterator[WmsConnector]:
    settings = WmsSettings(url=emulator[0], api_key=API_KEY, retry=FAST, page_limit=PAGE)
    connector = WmsConnector(settings)
    yield connector
    connector.close()


def next_day() -> dt.datetime:
    """Noon of a day after every day used before in this module."""
    return dt.datetime(2030, 1, 1, 12, tzinfo=dt.UTC) + dt.timedelta(days=next(_DAYS))


def allocation(n: int, stamp: dt.datetime, quantity: int = 1) -> dict[str, Any]:
    return {
        "id": f"WT{n:012d}",
        "external_ref": f"ALC-T-{n}",
        "sku": "SKU-1",
        "location": "WH01",
        "quantity": quantity,
        "delivery_date": "2030-02-01",
        "updated_at": stamp.isoformat(),
    }


def seed(store: DocumentStore, records: list[dict[str, Any]]) -> None:
    seed_records(store, "allocations", records)


def read(wms: WmsConnector, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
    records: list[dict[str, Any]] = []
    for batch in wms.read_changes("allocation", cursor):
        records += batch.records
        cursor = batch.cursor or cursor
    return records, cursor


def ids(records: list[dict[str, Any]]) -> list[str]:
    return [r["id"] for r in records]


def test_an_allocation_changed_at_the_cursors_exact_instant_is_read(
    emulator: tuple[str, DocumentStore], wms: WmsConnector
) -> None:
    store = emulator[1]
    stamp = next_day()
    seed(store, [allocation(100 + i, stamp) for i in range(1, 4)])
    _, cursor = read(wms, None)
    assert cursor is not None and json.loads(cursor)["id"] == "WT000000000103"
    # a change committed in the same instant as the cursor's record, to a lower id
    seed(store, [allocation(101, stamp, quantity=9)])
    records, after = read(wms, cursor)
    assert {r["id"]: r["quantity"] for r in records}["WT000000000101"] == 9
    assert after == cursor  # nothing newer: the cursor stays
    # the cursor is the instant in UTC, typed, and the id
    stored = json.loads(cursor)
    assert dt.datetime.fromisoformat(stored["updated_at"]) == stamp
    assert dt.datetime.fromisoformat(stored["updated_at"]).utcoffset() == dt.timedelta(0)
    # a cursor stored before (the stamp as the WMS wrote it) still loads
    old = json.dumps(
        {"updated_at": stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "id": "WT000000000103"}
    )
    assert "WT000000000101" in ids(read(wms, old)[0])


def test_many_allocations_sharing_one_instant_across_page_edges_are_all_read(
    emulator: tuple[str, DocumentStore], wms: WmsConnector
) -> None:
    store = emulator[1]
    _, cursor = read(wms, None)
    stamp = next_day()
    seed(store, [allocation(200 + i, stamp) for i in reversed(range(10))])
    wanted = [f"WT{200 + i:012d}" for i in range(10)]
    wms.settings.cursor_overlap_seconds = 0  # the exact keyset first
    batches = list(wms.read_changes("allocation", cursor))
    assert len(batches) >= 3 and all(len(b.records) <= PAGE for b in batches)
    assert [i for b in batches for i in ids(b.records)] == wanted
    for batch in batches:  # resuming after any page reads exactly the rest
        rest = wanted[wanted.index(batch.records[-1]["id"]) + 1 :]
        assert ids(read(wms, batch.cursor)[0]) == rest
    wms.settings.cursor_overlap_seconds = 300  # the default re-reads the whole run
    for batch in batches:
        assert ids(read(wms, batch.cursor)[0]) == wanted


def test_an_allocation_committed_late_inside_the_overlap_is_read(
    emulator: tuple[str, DocumentStore], wms: WmsConnector
) -> None:
    store = emulator[1]
    stamp = next_day()
    seed(store, [allocation(301, stamp)])
    _, cursor = read(wms, None)
    # committed after that read, stamped when its transaction began
    seed(
        store,
        [
            allocation(302, stamp - dt.timedelta(seconds=60)),
            allocation(303, stamp - dt.timedelta(seconds=600)),  # beyond the overlap
        ],
    )
    records, after = read(wms, cursor)
    assert ids(records) == ["WT000000000302", "WT000000000301"] and after == cursor
    wms.settings.cursor_overlap_seconds = 0
    assert read(wms, cursor)[0] == []  # without the overlap the late allocation is lost


def test_the_overlap_is_a_setting_with_a_five_minute_default() -> None:
    base = {"WMS_URL": "http://127.0.0.1:9", "WMS_API_KEY": "k"}
    assert read_settings(WmsSettings, base).cursor_overlap_seconds == 300
    for raw, seconds in (("0", 0), ("1.5", 1.5), (" ", 300)):
        env = {**base, "WMS_CURSOR_OVERLAP_SECONDS": raw}
        assert read_settings(WmsSettings, env).cursor_overlap_seconds == seconds
    for bad in ("-1", "five", "nan", "inf"):
        with pytest.raises(ValueError, match="WMS_CURSOR_OVERLAP_SECONDS"):
            _parse_overlap(bad)

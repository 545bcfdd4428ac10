"""The WMS connector against the real emulator on loopback (seeded from the book): cursor
reads that never skip equal stamps, retries through 429/503, a dropped write not applied
twice, per-record rejections, key expiry, and the mapping's round trip."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from connectors.base import Connector, Outcome, Window
from connectors.errors import AuthError, SystemUnavailableError
from connectors.redact import install_log_redaction
from connectors.retry import RetryPolicy
from connectors.wms import WmsConnector, WmsSettings
from hub.mapping.mapper import Mapper
from hub.mapping.spec import MAPPINGS_DIR, load_mapping
from hub.mapping.transforms import load_code_lists
from hub.model import validate_record
from hub.store.db import create_store_engine
from hub.store.migrate import upgrade
from hub.sync.engine import SyncEngine
from hub.systems import connect
from sandbox.faults import FaultState
from sandbox.seed.book import Book
from sandbox.seed.drift import ORPHAN_ALLOCATION
from sandbox.seed.load import seed_systems
from sandbox.seed.wms import WmsWriter
from sandbox.server import serve_in_thread
from sandbox.store import DocumentStore
from sandbox.wms import WmsSettings as EmulatorSettings
from sandbox.wms import create_app

pytestmark = pytest.mark.timeout(60)

API_KEY = "wms_connector_test_key_42"
FAST = RetryPolicy(max_attempts=4, max_seconds=20, initial_wait=0.01, max_wait=2, jitter=0.01)


@dataclass
class Landscape:
    base: str
    store: DocumentStore
    faults: FaultState
    refs: list[str]  # every external_ref seeded (the book's allocations and the orphan)

    def connector(self, **overrides: object) -> WmsConnector:
        settings = WmsSettings(url=self.base, api_key=API_KEY, retry=FAST, page_limit=7)
        settings.cursor_overlap_seconds = 0  # the exact keyset: test_wms_cursor.py
        for name, value in overrides.items():
            setattr(settings, name, value)
        return WmsConnector(settings)

    def fault(self, **spec: object) -> None:
        assert httpx.post(f"{self.base}/__sandbox/faults", json=spec).status_code == 200

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, headers={"Authorization": f"Bearer {API_KEY}"})


@pytest.fixture
def wms(tmp_path: Path) -> Iterator[Landscape]:
    store = DocumentStore(tmp_path / "wms.sqlite")
    book = Book(seed=5, customers=12)
    seed_systems(book, [WmsWriter(store)])
    refs = [a["hub_id"] for s in book.slices() for a in s.allocations] + [ORPHAN_ALLOCATION]
    faults = FaultState(seed=3)
    with serve_in_thread(create_app(store, faults, EmulatorSettings(api_key=API_KEY))) as base:
        yield Landscape(base, store, faults, refs)
    store.close()


def _drain(batches) -> list[dict]:
    return [r for b in batches for r in b.records]


def _record(ref: str, **extra: object) -> dict:
    return {
        "external_ref": ref,
        "order_ref": "SUB-0000099-1",
        "line_ref": "SUB-0000099-1-1",
        "sku": "DEV-GW-5G",
        "location": "US01",
        "quantity": 3,
        "delivery_date": "2025-08-01",
        "status": "reserved",
        **extra,
    }


def test_is_a_connector_built_by_the_registry_from_the_env(wms):
    env = {"WMS_URL": wms.base, "WMS_API_KEY": API_KEY}
    connector = connect("wms", env)
    assert isinstance(connector, Connector)
    assert connector.entities() == ["allocation"]
    health = connector.health()
    assert health.ok and health.latency_ms is not None
    bad = connect("wms", {**env, "WMS_API_KEY": "not-the-key"})
    assert not bad.health().ok
    with pytest.raises(AuthError, match="WMS_API_KEY"):
        _drain(bad.read_snapshot("allocation"))
    with pytest.raises(ValueError, match="allocation"):
        _drain(connector.read_snapshot("customer"))


def test_incremental_read_after_a_change_sees_exactly_the_changed_record(wms):
    connector = wms.connector()
    batches = list(connector.read_changes("allocation", None))
    records = [r for b in batches for r in b.records]
    assert sorted(r["external_ref"] for r in records) == sorted(wms.refs)
    assert all(len(b.records) <= 7 for b in batches) and len(batches) > 1
    cursor = batches[-1].cursor
    assert list(connector.read_changes("allocation", cursor)) == []
    reserved = next(r for r in records if r["status"] == "reserved")
    with wms.api() as api:
        api.patch(f"/v1/allocations/{reserved['id']}", json={"status": "picked"})
    changed = _drain(connector.read_changes("allocation", cursor))
    assert [(r["id"], r["status"]) for r in changed] == [(reserved["id"], "picked")]


def test_cursor_never_skips_records_sharing_a_timestamp(wms):
    connector = wms.connector(page_limit=2)
    cursor = list(connector.read_changes("allocation", None))[-1].cursor
    refs = [f"ALC-EQ-{i}" for i in range(5)]
    written = connector.write_batch("allocation", [_record(r) for r in refs])
    assert {w.outcome for w in written} == {Outcome.CREATED}
    batches = list(connector.read_changes("allocation", cursor))
    assert [r["external_ref"] for b in batches for r in b.records] == refs  # one stamp, by id
    assert len({r["updated_at"] for b in batches for r in b.records}) == 1
    # a crash after committing only the first page resumes inside the equal-stamp group
    resumed = _drain(connector.read_changes("allocation", batches[0].cursor))
    assert [r["external_ref"] for r in resumed] == refs[2:]


def test_snapshot_window_and_reads_by_keys_in_chunks(wms):
    connector = wms.connector(keys_per_query=3)
    everything = _drain(connector.read_snapshot("allocation"))
    assert len(everything) == len(wms.refs)
    stamps = sorted(r["updated_at"] for r in everything)
    middle = stamps[len(stamps) // 2]
    before = Window(end=datetime.fromisoformat(middle.replace("Z", "+00:00")))
    early = _drain(connector.read_snapshot("allocation", before))
    assert len(early) == len([s for s in stamps if s < middle])
    after = _drain(connector.read_snapshot("allocation", Window(start=before.end)))
    assert len(early) + len(after) == len(stamps)
    wanted = [*wms.refs[:7], "ALC-NOBODY"]
    found = _drain(connector.read_by_keys("allocation", wanted))
    assert sorted(r["external_ref"] for r in found) == sorted(wms.refs[:7])


def test_retries_through_429_with_retry_after_and_503(wms):
    connector = wms.connector()
    wms.fault(mode="429", count=2, retry_after=1)
    started = time.monotonic()
    assert len(_drain(connector.read_snapshot("allocation"))) == len(wms.refs)
    assert time.monotonic() - started >= 2.0  # Retry-After honoured twice
    wms.fault(mode="503", count=2, retry_after=0, path="batchUpsert")
    calls = connector.api_calls
    results = connector.write_batch("allocation", [_record("ALC-R503")])
    assert [r.outcome for r in results] == [Outcome.CREATED]
    assert connector.api_calls - calls == 3
    wms.fault(mode="500", retry_after=0)
    with pytest.raises(SystemUnavailableError, match="wms"):
        _drain(
            wms.connector(retry=RetryPolicy(max_attempts=2, initial_wait=0.01)).read_snapshot(
                "allocation"
            )
        )


def test_a_write_batch_whose_answer_is_dropped_is_not_applied_twice(wms):
    connector = wms.connector()
    wms.fault(mode="drop", count=1, path="batchUpsert")
    records = [_record(f"ALC-DROP-{i}") for i in range(3)]
    calls = connector.api_calls
    results = connector.write_batch("allocation", records)
    assert connector.api_calls - calls == 2  # the dropped attempt and its retry
    # the retry was answered from the first attempt: created, not unchanged
    assert [(r.key, r.outcome) for r in results] == [
        (f"ALC-DROP-{i}", Outcome.CREATED) for i in range(3)
    ]
    stored = _drain(connector.read_by_keys("allocation", [r.key for r in results]))
    assert [r["version"] for r in stored] == [1, 1, 1]
    assert {r["id"] for r in stored} == {r.external_id for r in results}
    # the same content from a later sync run (another connector) is applied, not replayed
    later = wms.connector().write_batch("allocation", records)
    assert {r.outcome for r in later} == {Outcome.UNCHANGED}


def test_per_record_rejections_come_back_in_order_with_codes(wms):
    connector = wms.connector()
    wms.fault(mode="reject", rate=0.5)
    refs = [f"ALC-REJ-{i:02d}" for i in range(12)]
    records = [_record(r) for r in refs] + [_record("ALC-BAD", quantity=0, location="x")]
    results = connector.write_batch("allocation", records)
    assert [r.key for r in results] == [*refs, "ALC-BAD"]
    for ref, result in zip(refs, results, strict=False):
        if wms.faults.should_reject(ref):
            assert result.outcome is Outcome.REJECTED
            assert result.error_code == "record_rejected" and ref in (result.error or "")
        else:
            assert result.outcome is Outcome.CREATED and result.external_id
    assert {r.outcome for r in results[:-1]} == {Outcome.CREATED, Outcome.REJECTED}
    bad = results[-1]
    assert bad.outcome is Outcome.REJECTED and bad.error_code == "validation_failed"
    assert "quantity:" in (bad.error or "") and "location:" in (bad.error or "")


def test_big_writes_are_chunked_to_the_batch_limit(wms):
    connector = wms.connector(batch_limit=4)
    calls = connector.api_calls
    results = connector.write_batch("allocation", [_record(f"ALC-CH-{i}") for i in range(10)])
    assert connector.api_calls - calls == 3
    assert [r.key for r in results] == [f"ALC-CH-{i}" for i in range(10)]


def test_expired_key_is_renewed_once_and_never_logged(wms, caplog):
    install_log_redaction()
    rotated = {"key": API_KEY}
    connector = wms.connector(api_key_provider=lambda: rotated["key"])
    wms.fault(mode="token_expiry")
    with caplog.at_level(logging.DEBUG):
        assert len(_drain(connector.read_snapshot("allocation"))) == len(wms.refs)
        rotated["key"] = "revoked-key-value"
        wms.fault(mode="token_expiry")
        with pytest.raises(AuthError) as info:
            _drain(connector.read_snapshot("allocation"))
        logging.getLogger("hub.connectors").warning("using %s", API_KEY)
    assert "api_key" in str(info.value) or "401" in str(info.value)
    assert API_KEY not in str(info.value) and "revoked-key-value" not in str(info.value)
    assert API_KEY not in caplog.text and "revoked-key-value" not in caplog.text


def test_mapping_round_trip_native_canonical_native(wms):
    spec, errors = load_mapping(MAPPINGS_DIR / "wms" / "allocation.yaml")
    assert spec is not None and not errors
    assert spec.owns == ["status"]
    mapper = Mapper(spec, load_code_lists(MAPPINGS_DIR))
    connector = wms.connector()
    natives = _drain(connector.read_snapshot("allocation"))
    payloads = []
    for native in natives:
        canonical = mapper.to_canonical(native)
        model = validate_record("allocation", {**canonical, "hub_id": mapper.hub_id(native)})
        assert model.hub_id == native["external_ref"]
        assert model.updated_at.tzinfo is not None
        back = mapper.to_native(model.model_dump(mode="json"))
        assert "updated_at" not in back  # the WMS stamps its own changes
        assert back == {k: native[k] for k in back}
        payloads.append({**back, "id": mapper.system_id(native)})
    results = connector.write_batch("allocation", payloads)
    assert {r.outcome for r in results} == {Outcome.UNCHANGED}  # lossless both ways
    assert [r.external_id for r in results] == [n["id"] for n in natives]


def test_sync_engine_pulls_through_the_mapping_and_pushes_nothing_back(wms, tmp_path):
    url = f"sqlite:///{tmp_path / 'hub.sqlite'}"
    upgrade(url)
    engine = create_store_engine(url)
    spec, _ = load_mapping(MAPPINGS_DIR / "wms" / "allocation.yaml")
    assert spec is not None
    # alone, the WMS must be allowed to create golden allocations (billing, which creates
    # them in the landscape, is not in this test; without it every record is an orphan)
    spec = spec.model_copy(update={"creates": True})
    connector = wms.connector()

    def run() -> dict:
        sync = SyncEngine(
            engine, {"wms": connector}, specs=[spec], code_lists=load_code_lists(MAPPINGS_DIR)
        )
        sync.sync_entity("allocation")
        assert sync.errors == []
        return sync.report()

    first = run()
    assert first["wms"]["allocation"]["read"] == len(wms.refs)
    assert first["hub"]["allocation"]["created"] == len(wms.refs)
    with wms.api() as api:
        target = api.get("/v1/allocations", params={"status": "reserved", "limit": 1}).json()
        api.patch(f"/v1/allocations/{target['data'][0]['id']}", json={"status": "picked"})
    second = run()
    assert second["wms"]["allocation"]["read"] == 1  # exactly the changed record
    assert second["hub"]["allocation"]["updated"] == 1
    # the golden record now says what the WMS says: nothing to push back (echo suppressed)
    assert second["wms"]["allocation"]["created"] == second["wms"]["allocation"]["updated"] == 0
    engine.dispose()

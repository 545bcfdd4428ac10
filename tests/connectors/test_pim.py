"""The PIM connector against the Akeneo-shaped emulator on loopback: incremental reads
and their cursor, snapshots, reads by key, per-record write results, retries through
faults, re-authentication, and the mapping round trip on the seed's products."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors.base import Batch, Connector, Outcome, Window
from connectors.errors import SystemUnavailableError
from connectors.pim import PimConnector, PimSettings, from_env
from connectors.retry import RetryPolicy
from hub.mapping.mapper import Mapper
from hub.mapping.spec import MAPPINGS_DIR, load_mapping
from hub.mapping.transforms import load_code_lists
from hub.model import validate_record
from sandbox.faults import FaultState
from sandbox.pim import PimSettings as EmulatorSettings
from sandbox.pim import create_app, seed_records
from sandbox.seed.book import Book
from sandbox.seed.catalog import canonical_products
from sandbox.seed.pim import PimWriter
from sandbox.server import serve_in_thread
from sandbox.store import DocumentStore

pytestmark = pytest.mark.timeout(90)
FAST = RetryPolicy(max_attempts=4, max_seconds=20, initial_wait=0.01, max_wait=2.0, jitter=0)
CREDENTIALS = {
    "PIM_CLIENT_ID": "hub_client_1",
    "PIM_SECRET": "pim-secret-for-tests",
    "PIM_USERNAME": "hub_api",
    "PIM_PASSWORD": "pim-password-for-tests",
}
T0 = dt.datetime(2024, 6, 1, 8, 0, tzinfo=dt.UTC)


@dataclass
class Landscape:
    base: str
    store: DocumentStore
    faults: FaultState

    @property
    def env(self) -> dict[str, str]:
        return {"PIM_URL": self.base, **CREDENTIALS}

    def connector(self, **overrides: Any) -> PimConnector:
        settings = PimSettings(
            url=self.base,
            client_id=CREDENTIALS["PIM_CLIENT_ID"],
            secret=CREDENTIALS["PIM_SECRET"],
            username=CREDENTIALS["PIM_USERNAME"],
            password=CREDENTIALS["PIM_PASSWORD"],
            retry=FAST,
            settle_seconds=0,
        )
        for key, value in overrides.items():
            setattr(settings, key, value)
        return PimConnector(settings)

    def fault(self, **spec: Any) -> None:
        assert httpx.post(f"{self.base}/__sandbox/faults", json=spec).status_code == 200


@pytest.fixture
def pim(tmp_path: Path) -> Iterator[Landscape]:
    """The emulator with the book's 18 products seeded through the seed writer."""
    store = DocumentStore(tmp_path / "pim.sqlite")
    PimWriter(store).write_products(Book(5, 8).products())
    faults = FaultState(seed=3)
    settings = EmulatorSettings(
        client_id=CREDENTIALS["PIM_CLIENT_ID"],
        secret=CREDENTIALS["PIM_SECRET"],
        username=CREDENTIALS["PIM_USERNAME"],
        password=CREDENTIALS["PIM_PASSWORD"],
    )
    with serve_in_thread(create_app(store, faults, settings)) as base:
        yield Landscape(base, store, faults)
    store.close()


def _records(batches: Iterator[Batch]) -> list[dict[str, Any]]:
    return [r for b in batches for r in b.records]


def _drain(connector: PimConnector, cursor: str | None) -> tuple[list[str], str | None]:
    """Identifiers read since ``cursor`` and the cursor the read leaves."""
    keys: list[str] = []
    for batch in connector.read_changes("product", cursor):
        keys += [r["identifier"] for r in batch.records]
        cursor = batch.cursor or cursor
    return keys, cursor


def _wait_for_next_second() -> None:
    """The connector reads closed seconds only; let the current one end."""
    now = time.time()
    time.sleep(1.02 - (now - int(now)))


def test_from_env_builds_a_healthy_connector(pim: Landscape) -> None:
    connector = from_env(pim.env)
    assert isinstance(connector, Connector)
    assert connector.entities() == ["product"]
    health = connector.health()
    assert health.ok and health.system == "pim"
    assert health.latency_ms is not None
    connector.close()


def test_native_fields_list_every_attribute_the_pim_declares_across_pages(
    pim: Landscape,
) -> None:
    """hub systems check reads what the PIM declares: the product's properties and a
    ``values.<code>`` per attribute, every page of /attributes (two of them at limit 3)."""
    connector = pim.connector()
    fields = connector.native_fields()["products"]
    assert {"identifier", "family", "enabled", "updated"} <= fields
    expected = {f"values.{code}" for code in EmulatorSettings().attributes}
    assert len(expected) > 3 and {f for f in fields if f.startswith("values.")} == expected
    with httpx.Client(base_url=pim.base) as http:
        token = http.post(
            "/api/oauth/v1/token",
            json={
                "grant_type": "password",
                "username": CREDENTIALS["PIM_USERNAME"],
                "password": CREDENTIALS["PIM_PASSWORD"],
            },
            auth=(CREDENTIALS["PIM_CLIENT_ID"], CREDENTIALS["PIM_SECRET"]),
        ).json()["access_token"]
        first = http.get(
            "/api/rest/v1/attributes",
            params={"limit": 3},
            headers={"Authorization": f"Bearer {token}"},
        ).json()
    assert len(first["_embedded"]["items"]) == 3 and "next" in first["_links"]
    assert first["_embedded"]["items"][0]["type"].startswith("pim_catalog_")


def test_bad_credentials_give_an_unhealthy_answer_without_the_secret(pim: Landscape) -> None:
    env = {**pim.env, "PIM_PASSWORD": "definitely-wrong-password"}
    health = from_env(env).health()
    assert not health.ok
    assert "No user found for the given username and password" in health.detail
    assert "definitely-wrong-password" not in health.detail
    assert "PIM_USERNAME/PIM_PASSWORD" in health.detail


def test_incremental_read_after_a_change_sees_exactly_the_changed_product(
    pim: Landscape,
) -> None:
    connector = pim.connector()
    keys, cursor = _drain(connector, None)
    assert len(keys) == 18
    assert cursor is not None
    assert json.loads(cursor)[0] == "2024-01-15T09:00:00+00:00"
    assert _drain(connector, cursor) == ([], cursor)  # nothing new: cursor stays
    results = connector.write_batch(
        "product",
        [
            {
                "identifier": "SEAT-PRO",
                "values": {"name": [{"locale": None, "scope": None, "data": "Pro Seat"}]},
            }
        ],
    )
    assert [r.outcome for r in results] == [Outcome.UPDATED]
    _wait_for_next_second()
    changed, after = _drain(connector, cursor)
    assert changed == ["SEAT-PRO"]
    assert after is not None and json.loads(after)[1] == ["SEAT-PRO"]
    assert _drain(connector, after) == ([], after)


def test_equal_timestamps_are_never_skipped_nor_repeated(pim: Landscape) -> None:
    connector = pim.connector()
    _, cursor = _drain(connector, None)
    # three products saved in the same second, after the catalogue
    same = T0.isoformat()
    seed_records(pim.store, "products", [{"identifier": k, "updated": same} for k in "ABC"])
    keys, cursor = _drain(connector, cursor)
    assert keys == ["A", "B", "C"]
    assert cursor is not None and json.loads(cursor) == [same, ["A", "B", "C"]]
    # a fourth lands in that same second after the read (a slow writer): still seen once
    seed_records(pim.store, "products", [{"identifier": "AA", "updated": same}])
    keys, cursor = _drain(connector, cursor)
    assert keys == ["AA"]
    assert cursor is not None and json.loads(cursor) == [same, ["A", "AA", "B", "C"]]
    assert _drain(connector, cursor)[0] == []


def test_changes_stream_page_by_page_and_only_the_last_batch_moves_the_cursor(
    pim: Landscape,
) -> None:
    connector = pim.connector()
    _, cursor = _drain(connector, None)
    stamp = (T0 + dt.timedelta(seconds=5)).isoformat()
    seed_records(
        pim.store,
        "products",
        [{"identifier": f"BULK-{i:03d}", "updated": stamp} for i in range(150)],
    )
    batches = list(connector.read_changes("product", cursor))
    # two pages of 100; the first also carried the catalogue products at the cursor's
    # second, which the cursor says were delivered already
    assert len(batches) == 2
    assert sum(len(b.records) for b in batches) == 150
    assert batches[0].cursor is None
    last = batches[-1].cursor
    assert last is not None and json.loads(last)[0] == stamp
    assert len(json.loads(last)[1]) == 150
    assert _drain(connector, last)[0] == []


def test_products_saved_in_the_current_second_wait_for_the_next_read(pim: Landscape) -> None:
    connector = pim.connector()
    _, cursor = _drain(connector, None)
    now = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)  # a second not over yet
    seed_records(pim.store, "products", [{"identifier": "LATE", "updated": now.isoformat()}])
    assert _drain(connector, cursor) == ([], cursor)


def test_snapshot_and_window(pim: Landscape) -> None:
    connector = pim.connector()
    seed_records(
        pim.store,
        "products",
        [
            {"identifier": f"W-{i}", "updated": (T0 + dt.timedelta(minutes=i)).isoformat()}
            for i in range(5)
        ],
    )
    assert len(_records(connector.read_snapshot("product"))) == 23
    window = Window(start=T0 + dt.timedelta(minutes=1), end=T0 + dt.timedelta(minutes=3))
    inside = [r["identifier"] for r in _records(connector.read_snapshot("product", window))]
    assert inside == ["W-1", "W-2"]  # start inclusive, end exclusive
    fractional = Window(start=T0 + dt.timedelta(minutes=1, microseconds=1))
    later = [r["identifier"] for r in _records(connector.read_snapshot("product", fractional))]
    assert later == ["W-2", "W-3", "W-4"]
    assert all("_links" not in r for r in _records(connector.read_snapshot("product")))


def test_read_by_keys_is_chunked_by_100(pim: Landscape) -> None:
    connector = pim.connector()
    seed_records(pim.store, "products", [{"identifier": f"K-{i:03d}"} for i in range(120)])
    keys = [f"K-{i:03d}" for i in range(0, 120, 1)] + ["NOPE", "SEAT-STD", "K-000"]
    before = connector.api_calls
    found = [r["identifier"] for r in _records(connector.read_by_keys("product", keys))]
    assert sorted(found) == sorted([f"K-{i:03d}" for i in range(120)] + ["SEAT-STD"])
    assert connector.api_calls - before == 3  # token + two IN queries of <= 100


def test_write_batch_answers_one_result_per_record_in_order(pim: Landscape) -> None:
    connector = pim.connector()
    pim.fault(mode="reject", rate=0.5)
    candidates = [f"NEW-{i:02d}" for i in range(20)]
    rejected = next(k for k in candidates if pim.faults.should_reject(k))
    accepted = next(k for k in candidates if not pim.faults.should_reject(k))
    kept = [p["sku"] for p in canonical_products() if not pim.faults.should_reject(p["sku"])]
    one, two, three = kept[:3]
    current = _records(connector.read_by_keys("product", [one]))[0]
    lifecycle = {"lifecycle": [{"locale": None, "scope": None, "data": "sunset"}]}
    records = [
        {"identifier": accepted, "family": "software"},
        {"identifier": one, "enabled": not current["enabled"]},  # a change
        current,  # as read before the change: sent again, since its key was just sent
        {"identifier": two, "family": "toys"},
        {"identifier": rejected, "family": "software"},
        {"identifier": two, "values": lifecycle},
        {"identifier": three},  # nothing to change: not sent
    ]
    results = connector.write_batch("product", records)
    assert [(r.key, r.outcome) for r in results] == [
        (accepted, Outcome.CREATED),
        (one, Outcome.UPDATED),
        (one, Outcome.UPDATED),  # back to its original state
        (two, Outcome.REJECTED),
        (rejected, Outcome.REJECTED),
        (two, Outcome.REJECTED),
        (three, Outcome.UNCHANGED),
    ]
    assert _records(connector.read_by_keys("product", [one]))[0]["enabled"] is current["enabled"]
    assert results[0].external_id == accepted
    assert results[3].error_code == "422"
    assert results[3].error is not None and "The family does not exist" in results[3].error
    assert results[4].error is not None and "reject fault" in results[4].error
    assert results[5].error is not None
    assert "Validation failed." in results[5].error
    assert "values[lifecycle]: The sunset value is not in the lifecycle" in results[5].error


def test_write_batch_chunks_by_100_lines(pim: Landscape) -> None:
    connector = pim.connector()
    records = [{"identifier": f"C-{i:03d}", "family": "usage"} for i in range(150)]
    results = connector.write_batch("product", records)
    assert [r.outcome for r in results] == [Outcome.CREATED] * 150
    assert [r.key for r in results] == [r["identifier"] for r in records]
    again = connector.write_batch("product", records)
    assert {r.outcome for r in again} == {Outcome.UNCHANGED}


def test_retries_through_429_and_503_honouring_retry_after(pim: Landscape) -> None:
    connector = pim.connector()
    connector.health()  # token in hand
    pim.fault(mode="429", count=1, retry_after=1)
    started = time.monotonic()
    assert len(_records(connector.read_snapshot("product"))) == 18
    assert time.monotonic() - started >= 1.0
    pim.fault(mode="503", count=1, retry_after=1)
    started = time.monotonic()
    results = connector.write_batch("product", [{"identifier": "R-1"}])
    assert [r.outcome for r in results] == [Outcome.CREATED]
    assert time.monotonic() - started >= 1.0


def test_retries_through_a_dropped_connection_and_a_500(pim: Landscape) -> None:
    connector = pim.connector()
    connector.health()
    pim.fault(mode="drop", count=1)
    assert len(_records(connector.read_snapshot("product"))) == 18
    pim.fault(mode="500", count=1)
    assert len(_records(connector.read_snapshot("product"))) == 18


def test_retries_give_up_with_a_clear_error(pim: Landscape) -> None:
    connector = pim.connector(retry=RetryPolicy(max_attempts=2, initial_wait=0.01, max_wait=0.01))
    pim.fault(mode="503", retry_after=0)
    with pytest.raises(SystemUnavailableError, match="pim: still failing after 2 attempts"):
        list(connector.read_snapshot("product"))


def test_reauthenticates_after_token_expiry_with_the_refresh_grant(pim: Landscape) -> None:
    connector = pim.connector()
    assert len(_records(connector.read_snapshot("product"))) == 18
    pim.fault(mode="token_expiry")
    assert len(_records(connector.read_snapshot("product"))) == 18
    assert connector.token_grants == ["password", "refresh_token"]
    # a refresh token the PIM no longer knows falls back to the password grant
    connector._refresh = "forgotten-refresh-token"
    pim.fault(mode="token_expiry")
    assert connector.health().ok
    assert connector.token_grants == ["password", "refresh_token", "password"]


def test_mapping_round_trip_on_seeded_products(pim: Landscape) -> None:
    spec, errors = load_mapping(MAPPINGS_DIR / "pim" / "product.yaml")
    assert spec is not None and not errors
    mapper = Mapper(spec, load_code_lists(MAPPINGS_DIR))
    connector = pim.connector()
    natives = _records(connector.read_snapshot("product"))
    expected = {p["sku"]: p for p in canonical_products()}
    back = []
    for native in natives:
        canonical = mapper.to_canonical(native)
        model = validate_record("product", canonical)
        assert model.model_dump() == expected[native["identifier"]]
        assert mapper.system_id(native) == native["identifier"]
        native_again = mapper.to_native(canonical)
        assert native_again == {
            "identifier": native["identifier"],
            "enabled": native["enabled"],
            "family": native["family"],
            "values": {k: native["values"][k] for k in ("name", "lifecycle", "unit")},
        }
        back.append(native_again)
    assert len(back) == 18
    results = connector.write_batch("product", back)
    assert {r.outcome for r in results} == {Outcome.UNCHANGED}


def test_secrets_and_tokens_never_reach_the_log(
    pim: Landscape, caplog: pytest.LogCaptureFixture
) -> None:
    connector = pim.connector()
    caplog.set_level(logging.DEBUG)
    pim.fault(mode="503", count=1, retry_after=0, path="/api/oauth/")
    pim.fault(mode="429", count=1, retry_after=0, path="/api/rest/")
    assert connector.health().ok
    assert "retrying" in caplog.text  # the retries were logged
    held = [connector._token, connector._refresh, CREDENTIALS["PIM_SECRET"]]
    for secret in [*held, CREDENTIALS["PIM_PASSWORD"]]:
        assert secret and secret not in caplog.text


def test_a_product_committed_late_inside_the_overlap_is_read(pim: Landscape) -> None:
    """Issue 15, cursors that never skip: a product saved with a stamp before the cursor
    (committed late) is read by the next incremental read, which starts
    PIM_CURSOR_OVERLAP_SECONDS before the cursor; the cursor does not move back."""
    connector = pim.connector()
    _, cursor = _drain(connector, None)
    assert cursor is not None
    stamp = dt.datetime.fromisoformat(json.loads(cursor)[0])
    late = (stamp - dt.timedelta(seconds=60)).isoformat()
    seed_records(pim.store, "products", [{"identifier": "COMMITTED-LATE", "updated": late}])
    keys, after = _drain(connector, cursor)
    assert "COMMITTED-LATE" in keys
    assert after == cursor
    off = pim.connector(cursor_overlap_seconds=0)
    assert "COMMITTED-LATE" not in _drain(off, cursor)[0]

"""Deletes that must never happen (hub.sync.deletions): a source that fails, or answers
with no records at all, deletes nothing; a system past its deleted-records window is
compared by key instead; the guard's limits and the `on_delete` mapping are checked."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from connectors.base import Batch, Deletion, Window
from connectors.errors import TransientError
from hub.mapping.spec import MAPPINGS_DIR, OnDelete, load_specs
from hub.store.db import create_store_engine, session_factory
from hub.store.migrate import upgrade
from hub.store.models import GoldenRecord, Tombstone, Xref
from hub.sync.deletions import GuardLimits
from hub.sync.engine import SyncEngine


class _Salesforce:
    """Answers deletions as configured; its snapshot holds ``live`` Ids."""

    system = "salesforce"

    def __init__(self, *, deletions: Any = None, live: Sequence[str] = (), fail: bool = False):
        self.deletions, self.live, self.fail = deletions, list(live), fail

    def read_deletions(self, entity: str, since: datetime | None) -> list[Deletion] | None:
        if self.fail:
            raise TransientError("salesforce", "503 Service Unavailable")
        return self.deletions

    def read_snapshot(self, entity: str, window: Window | None = None) -> Iterator[Batch]:
        yield Batch([{"Id": i, "Hub_Id__c": None} for i in self.live])


@pytest.fixture
def store(tmp_path: Any) -> Engine:
    url = f"sqlite:///{tmp_path / 'hub.sqlite'}"
    upgrade(url)
    engine = create_store_engine(url)
    with session_factory(engine).begin() as s:
        for n in range(3):
            hub_id = f"CUS-{n}"
            data = {"hub_id": hub_id, "status": "active"}
            s.add(GoldenRecord(entity="customer", hub_id=hub_id, data=data, fingerprint="x"))
            s.add(
                Xref(entity="customer", hub_id=hub_id, system="salesforce", external_id=f"001{n}")
            )
    return engine


def _tombstones(store: Engine) -> int:
    with session_factory(store)() as s:
        return int(s.scalar(select(func.count()).select_from(Tombstone)) or 0)


def _pull(store: Engine, connector: _Salesforce) -> SyncEngine:
    engine = SyncEngine(store, {"salesforce": connector})  # type: ignore[dict-item]
    engine.pull_deletions("salesforce", "customer")
    return engine


def test_a_failed_read_deletes_nothing_and_says_why(store: Engine) -> None:
    engine = _pull(store, _Salesforce(fail=True))
    assert _tombstones(store) == 0
    assert engine.errors and "reading deleted customer records" in engine.errors[0]


def test_a_source_answering_with_no_records_deletes_nothing(store: Engine) -> None:
    """Past the recycle bin's window the hub compares keys; an empty answer is an outage
    or a mistake, never 'everything was deleted'."""
    _pull(store, _Salesforce(deletions=None, live=[]))
    assert _tombstones(store) == 0


def test_past_the_window_the_keys_are_compared(store: Engine) -> None:
    _pull(store, _Salesforce(deletions=None, live=["0010", "0012"]))
    with session_factory(store)() as s:
        (stone,) = s.scalars(select(Tombstone))
        assert (stone.hub_id, stone.external_id) == ("CUS-1", "0011")


def test_the_guard_allows_the_larger_of_its_floor_and_its_share() -> None:
    guard = GuardLimits(min_records=50, share=0.10)
    assert guard.limit(100) == 50 and guard.limit(10_000) == 1_000


@pytest.mark.parametrize("raw", ["-1", "nan", "x"])
def test_guard_settings_are_checked(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("HUB_GUARD_SHARE", raw)
    with pytest.raises(ValueError, match="HUB_GUARD_SHARE"):
        GuardLimits.from_env()


def test_deactivate_needs_values_and_billing_deactivates_customers() -> None:
    with pytest.raises(ValueError, match="needs `set`"):
        OnDelete(action="deactivate")
    specs = {(s.system, s.entity): s for s in load_specs(MAPPINGS_DIR)}
    assert specs[("billing", "customer")].on_delete.set == {"status": "inactive"}
    assert specs[("sap", "customer")].on_delete.action == "keep"


class _Billing:
    """Tells no deletes: its keys are compared, at most every scan interval."""

    system = "billing"

    def __init__(self, live: Sequence[str]) -> None:
        self.live, self.snapshots = list(live), 0

    def read_snapshot(self, entity: str, window: Window | None = None) -> Iterator[Batch]:
        self.snapshots += 1
        yield Batch([{"id": i} for i in self.live])


def test_a_system_without_deletes_is_compared_by_key_once_per_interval(store: Engine) -> None:
    from datetime import timedelta

    with session_factory(store).begin() as s:
        for n in range(3):
            s.add(Xref(entity="customer", hub_id=f"CUS-{n}", system="billing", external_id=str(n)))
    billing = _Billing(live=["0", "1", "2"])

    def pull(every: timedelta) -> None:
        engine = SyncEngine(store, {"billing": billing}, scan_every=every)  # type: ignore[dict-item]
        engine.pull_deletions("billing", "customer")

    pull(timedelta(hours=24))  # the first pass starts the clock: its load is the snapshot
    pull(timedelta(hours=24))  # within the interval: not read again
    assert billing.snapshots == 0
    billing.live.remove("2")
    pull(timedelta(0))
    assert billing.snapshots == 1
    with session_factory(store)() as s:
        (stone,) = s.scalars(select(Tombstone))
        assert (stone.hub_id, stone.system, stone.external_id) == ("CUS-2", "billing", "2")

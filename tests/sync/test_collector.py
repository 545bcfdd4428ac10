"""The cyclic collector during a bulk pass: what existed before the pass is kept out of
its full collections, and handed back when the pass ends (hub.sync.collector).

Why: an initial load's full collections walked every object in the process - an embedded
sandbox's whole landscape, Dagster's definitions - over and over (issue 18)."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from connectors.base import Batch, NativeRecord, WriteResult
from hub.sync import collector
from hub.sync.collector import YOUNG_THRESHOLD, collector_spared
from tests.sync.conftest import account


def test_objects_alive_before_the_pass_are_frozen_during_it_and_unfrozen_after() -> None:
    assert gc.get_freeze_count() == 0
    thresholds = gc.get_threshold()
    before = [{"a": [1]} for _ in range(1000)]
    with collector_spared():
        assert gc.get_freeze_count() >= len(before)
        assert gc.get_threshold()[0] >= YOUNG_THRESHOLD
        during = [{"b": [2]} for _ in range(1000)]  # the pass's own objects are collected
        assert all(gc.is_tracked(d) for d in during)
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == thresholds


def test_a_garbage_cycle_made_during_the_pass_is_collected_after_it() -> None:
    class Node:
        other: Any = None

    gone = threading.Event()

    class Watched(Node):
        def __del__(self) -> None:
            gone.set()

    a = Watched()
    with collector_spared():
        a.other = Node()
        a.other.other = a  # a cycle of objects older than the pass
        del a
        gc.collect()
        assert not gone.is_set()  # frozen: left for after the pass
    gc.collect()
    assert gone.is_set()


def test_nested_and_concurrent_passes_share_one_freeze() -> None:
    with collector_spared():
        with collector_spared():
            pass
        assert gc.get_freeze_count() > 0  # the inner pass did not unfreeze the outer
        seen: list[int] = []
        thread = threading.Thread(target=lambda: _spared_count(seen))
        thread.start()
        thread.join()
        assert gc.get_freeze_count() > 0
        assert seen and seen[0] > 0
    assert gc.get_freeze_count() == 0


def _spared_count(out: list[int]) -> None:
    with collector_spared():
        out.append(gc.get_freeze_count())


def test_a_pull_runs_with_the_collector_spared(setup, monkeypatch) -> None:
    make, crm, _, _ = setup
    crm.put(account("Acme GmbH"))
    counts: list[int] = []
    reader = crm.read_changes

    def read_changes(entity: str, cursor: str | None) -> Iterator[Batch]:
        counts.append(gc.get_freeze_count())
        yield from reader(entity, cursor)

    monkeypatch.setattr(crm, "read_changes", read_changes)
    make().pull("salesforce", "customer")
    assert counts and counts[0] > 0
    assert gc.get_freeze_count() == 0


def test_a_push_runs_with_the_collector_spared(setup, monkeypatch) -> None:
    make, crm, erp, _ = setup
    crm.put(account("Acme GmbH"))
    make().pull("salesforce", "customer")  # plans the new account's push to the ERP
    counts: list[int] = []
    writer = erp.write_batch

    def write_batch(entity: str, records: Iterable[NativeRecord]) -> list[WriteResult]:
        counts.append(gc.get_freeze_count())
        return writer(entity, records)

    monkeypatch.setattr(erp, "write_batch", write_batch)
    make().push("sap", "customer")
    assert counts and counts[0] > 0
    assert gc.get_freeze_count() == 0


class _Seen(Exception):
    """Stops a pass once it has shown what the collector was set to."""


def _record_and_stop(counts: list[int]) -> Any:
    def record(*_: object, **__: object) -> None:
        counts.append(gc.get_freeze_count())
        raise _Seen

    return record


def _spared_until_seen(make: Any, monkeypatch: Any, target: str, call: Any) -> None:
    counts: list[int] = []
    monkeypatch.setattr(target, _record_and_stop(counts))
    with pytest.raises(_Seen):
        call(make())
    assert counts and counts[0] > 0
    assert gc.get_freeze_count() == 0


def test_plan_new_records_spared(setup, monkeypatch) -> None:
    """(A short name: the PostgreSQL database is named after the test.)"""
    target = "hub.store.repo.live_changed_since"
    _spared_until_seen(setup[0], monkeypatch, target, lambda e: e.plan_new_records("customer"))


def test_plan_deliveries_spared(setup, monkeypatch) -> None:
    target = "hub.sync.engine.DeliveryRules.load"
    _spared_until_seen(setup[0], monkeypatch, target, lambda e: e.plan_deliveries())


def _cycle_through_a_pass(
    monkeypatch: Any, after_seconds: float, whole_heap_every: float = 0.0, *, old: bool = True
) -> threading.Event:
    """A garbage cycle, made of objects older than a pass (``old``) or of the pass's own,
    dropped during it; the event is set when it is collected. Automatic collection is off
    (``collector_off``): only explicit collections may find it."""
    gone = threading.Event()

    class Watched:
        other: Any = None

        def __del__(self) -> None:
            gone.set()

    monkeypatch.setattr(collector, "COLLECT_AFTER_SECONDS", after_seconds)
    monkeypatch.setattr(collector, "WHOLE_HEAP_EVERY_SECONDS", whole_heap_every)
    monkeypatch.setattr(collector, "_whole_heap_at", time.monotonic())  # the last walk: now
    a = Watched() if old else None
    with collector_spared():
        if a is None:
            a = Watched()
        a.other = [a]
        del a
    return gone


@pytest.fixture
def collector_off() -> Iterator[None]:
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def test_a_long_pass_collects_its_own_garbage_cycles(monkeypatch, collector_off) -> None:
    """Else the next pass freezes this one's garbage cycles again, and a run of passes
    back to back holds all of them to its end (peak memory +40% at 10,000 customers)."""
    assert _cycle_through_a_pass(monkeypatch, 0.0, 3600.0, old=False).is_set()


def test_an_older_cycle_waits_for_the_whole_heap_walk(monkeypatch, collector_off) -> None:
    """The walk of the whole heap (the sandbox's landscape too) is paid at most every
    WHOLE_HEAP_EVERY_SECONDS, not at the end of each pass."""
    assert not _cycle_through_a_pass(monkeypatch, 0.0, 3600.0).is_set()
    assert _cycle_through_a_pass(monkeypatch, 0.0, 0.0).is_set()


def test_a_short_pass_leaves_collection_to_the_collectors_schedule(
    monkeypatch, collector_off
) -> None:
    gone = _cycle_through_a_pass(monkeypatch, 3600.0, old=False)
    assert not gone.is_set()
    gc.collect()
    assert gone.is_set()

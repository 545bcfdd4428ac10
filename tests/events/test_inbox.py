"""The event inbox on SQLite: storing is idempotent by (system, event id), the replay
position is written with the events, pending is arrival order, processing is recorded once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, func, select

from hub.events.inbox import (
    IGNORED,
    INBOX,
    InboxEvent,
    ReplayPosition,
    all_events,
    mark_processed,
    pending,
    replay_position,
    store_events,
)
from hub.store.db import create_store_engine
from hub.store.migrate import upgrade


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    """A migrated hub store, on SQLite and on PostgreSQL (insert-or-ignore differs)."""
    upgrade(store_url)
    engine = create_store_engine(store_url)
    yield engine
    engine.dispose()


def event(event_id: str, key: str = "1000123", **kw: object) -> InboxEvent:
    values: dict[str, object] = {
        "system": "sap",
        "event_id": event_id,
        "event_type": "sap.s4.beh.businesspartner.v1.BusinessPartner.Changed.v1",
        "entity": "customer",
        "change_type": "update",
        "record_keys": [{"BusinessPartner": key}],
        "payload": {"id": event_id, "data": {"BusinessPartner": key}},
    }
    values.update(kw)
    return InboxEvent(**values)  # type: ignore[arg-type]


def count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(INBOX)).scalar_one())


def test_storing_twice_stores_once(engine: Engine) -> None:
    with engine.begin() as conn:
        assert store_events(conn, [event("e1"), event("e2", "1000124")]) == ["e1", "e2"]
    with engine.begin() as conn:
        assert store_events(conn, [event("e2", "1000124"), event("e3")]) == ["e3"]
    with engine.begin() as conn:
        # a duplicate inside one delivery, and the same id from another system
        assert store_events(conn, [event("e4"), event("e4"), event("e1", system="salesforce")])
    assert count(engine) == 5
    with engine.connect() as conn:
        rows = all_events(conn)
    assert [(r.system, r.event_id) for r in rows] == [
        ("sap", "e1"),
        ("sap", "e2"),
        ("sap", "e3"),
        ("sap", "e4"),
        ("salesforce", "e1"),
    ]
    assert rows[0].record_keys == [{"BusinessPartner": "1000123"}]
    assert rows[0].received_at.tzinfo is not None


def test_replay_position_commits_with_its_events(engine: Engine) -> None:
    with engine.begin() as conn:
        store_events(
            conn,
            [event("r1", system="salesforce", replay_id="00A1", channel="/data/Account")],
            ReplayPosition("salesforce", "/data/Account", "00A1"),
        )
    with pytest.raises(RuntimeError), engine.begin() as conn:
        store_events(
            conn,
            [event("r2", system="salesforce", replay_id="00B7")],
            ReplayPosition("salesforce", "/data/Account", "00B7"),
        )
        raise RuntimeError("listener killed before commit")
    with engine.connect() as conn:
        assert replay_position(conn, "salesforce", "/data/Account") == "00A1"
        assert replay_position(conn, "salesforce", "/data/Other") is None
    assert count(engine) == 1
    with engine.begin() as conn:
        store_events(conn, [], ReplayPosition("salesforce", "/data/Account", "00C2"))
    with engine.connect() as conn:
        assert replay_position(conn, "salesforce", "/data/Account") == "00C2"


def test_pending_in_arrival_order_and_processed_once(engine: Engine) -> None:
    with engine.begin() as conn:
        store_events(conn, [event("b"), event("a")])
        store_events(
            conn, [event("x", event_type="sap.s4.beh.other.v1.Other.Changed.v1", outcome=IGNORED)]
        )
        store_events(conn, [event("c")])
    with engine.begin() as conn:
        rows = pending(conn)
        assert [r.event_id for r in rows] == ["b", "a", "c"]
        assert [r.event_id for r in pending(conn, limit=1)] == ["b"]
        assert mark_processed(conn, [rows[0].id, rows[0].id], "applied") == 1
        assert mark_processed(conn, [rows[0].id], "failed") == 0
    with engine.connect() as conn:
        assert [r.event_id for r in pending(conn)] == ["a", "c"]
        stored = {r.event_id: r for r in all_events(conn)}
    assert stored["b"].outcome == "applied" and stored["b"].processed_at is not None
    assert stored["x"].outcome == IGNORED and stored["x"].processed_at is not None

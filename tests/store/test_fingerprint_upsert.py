"""upsert_fingerprints (hub.store.repo) writes SQLite's rows through the driver as plain
tuples: what it stores must be exactly what the SQLAlchemy statement stores (the same text
for the timestamp, which SQLite compares as text), and a second write replaces, on
SQLite and PostgreSQL alike."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, select, text

from hub.store import repo
from hub.store.db import create_store_engine
from hub.store.migrate import upgrade
from hub.store.models import Fingerprint


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    upgrade(store_url)
    engine = create_store_engine(store_url)
    yield engine
    engine.dispose()  # the fixture drops the database next


def _stored(engine: Engine) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                select(
                    Fingerprint.system, Fingerprint.entity, Fingerprint.hub_id,
                    Fingerprint.fingerprint, Fingerprint.updated_at,
                ).order_by(Fingerprint.system, Fingerprint.hub_id)
            )
        ]  # fmt: skip


@pytest.mark.parametrize("microsecond", [0, 123456])
def test_same_rows_as_sqlalchemy(engine: Engine, microsecond: int) -> None:
    now = datetime(2026, 12, 7, 1, 2, 3, microsecond, tzinfo=UTC)
    fps = {("sap", "CUS-1"): "a" * 64, ("sap~owned", "CUS-2"): "b" * 64}
    with engine.begin() as conn:
        repo.upsert_fingerprints(conn, "customer", fps, now)
    fast = _stored(engine)
    raw = ""
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            raw = conn.execute(text("SELECT min(updated_at) FROM fingerprints")).scalar_one()
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM fingerprints"))
        rows = [
            {"system": slot, "entity": "customer", "hub_id": hub_id, "fingerprint": fp,
             "updated_at": now}
            for (slot, hub_id), fp in fps.items()
        ]  # fmt: skip
        repo.upsert(conn, Fingerprint, rows, ["system", "entity", "hub_id"])
    assert fast == _stored(engine)
    assert fast[0][4] == now
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            assert raw == conn.execute(text("SELECT min(updated_at) FROM fingerprints")).scalar()


def test_a_second_write_replaces(engine: Engine) -> None:
    first = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)
    later = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)
    with engine.begin() as conn:
        repo.upsert_fingerprints(conn, "customer", {("sap", "CUS-1"): "a" * 64}, first)
    with engine.begin() as conn:
        repo.upsert_fingerprints(
            conn, "customer", {("sap", "CUS-1"): "c" * 64, ("pim", "CUS-1"): "d" * 64}, later
        )
    assert _stored(engine) == [
        ("pim", "customer", "CUS-1", "d" * 64, later),
        ("sap", "customer", "CUS-1", "c" * 64, later),
    ]

"""Persisting runs on SQLite and PostgreSQL: stable ids across runs, history,
auto-resolution only within the run's scope, reopening."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pyarrow as pa
import sqlalchemy as sa

from hub.recon.compare import compare
from hub.recon.engine import connect
from hub.recon.persist import Scope, persist
from hub.store.db import create_store_engine
from hub.store.migrate import upgrade
from hub.store.models import Finding, FindingObservation, ReconciliationRun


def _findings(system_rows: dict[str, int], system: str = "sap") -> pa.Table:
    golden = pa.table({"key": ["a", "b", "c"], "total_minor": [1, 2, 3], "currency": ["EUR"] * 3})
    s = pa.table(
        {
            "key": list(system_rows),
            "total_minor": list(system_rows.values()),
            "currency": ["EUR"] * len(system_rows),
        }
    )
    return compare(
        connect(), golden, s, entity="invoice", system=system, amount_field="total_minor"
    )


def test_runs_history_and_auto_resolve(store_url: str) -> None:
    upgrade(store_url)
    engine = create_store_engine(store_url)
    scope = [Scope("invoice", "sap")]
    with engine.begin() as conn:  # a sync conflict and another system's finding: out of scope
        for fid, system, kind in (("x1", "sap", "conflict"), ("x2", "billing", "mismatch")):
            conn.execute(
                sa.insert(Finding).values(
                    id=fid,
                    entity="invoice",
                    key="z",
                    system=system,
                    kind=kind,
                    severity="error",
                    field="total_minor",
                )
            )

    first = _findings({"a": 1, "b": 9})  # b mismatch, c missing
    c1 = persist(engine, first, scope=scope, run_id="r1")
    assert (c1["observed"], c1["new"], c1["resolved"], c1["reopened"]) == (2, 2, 0, 0)
    assert c1["by_kind"] == {"mismatch": 1, "missing": 1}
    assert c1["amount_at_stake_minor"] == {"EUR": 10}

    second = _findings({"a": 1, "b": 9, "c": 3})  # c fixed, b still drifts
    assert set(second.column("id").to_pylist()) < set(first.column("id").to_pylist())
    c2 = persist(engine, second, scope=scope, run_id="r2")
    assert (c2["observed"], c2["new"], c2["resolved"]) == (1, 0, 1)

    third = _findings({"a": 1, "b": 9})  # c missing again: same finding reopened
    c3 = persist(engine, third, scope=scope, run_id="r3")
    assert (c3["new"], c3["reopened"], c3["resolved"]) == (0, 1, 0)

    with engine.connect() as conn:
        rows = {
            r.field or r.kind: r for r in conn.execute(sa.select(Finding).where(Finding.key != "z"))
        }
        assert rows["total_minor"].status == "open"
        assert rows["missing"].status == "open" and rows["missing"].resolved_at is None
        assert rows["total_minor"].first_seen < rows["total_minor"].last_seen
        exp = rows["total_minor"].expected
        assert (json.loads(exp) if isinstance(exp, str) else exp) == 2
        assert rows["total_minor"].amount_at_stake_minor == -7
        others = {
            r.id: r.status for r in conn.execute(sa.select(Finding).where(Finding.key == "z"))
        }
        assert others == {"x1": "open", "x2": "open"}
        history = conn.execute(
            sa.select(FindingObservation.run_id, FindingObservation.status)
            .where(FindingObservation.finding_id == rows["missing"].id)
            .order_by(FindingObservation.run_id)
        ).all()
        assert [tuple(h) for h in history] == [("r1", "open"), ("r2", "resolved"), ("r3", "open")]
        runs = {r.id: r for r in conn.execute(sa.select(ReconciliationRun))}
        assert runs["r2"].counts["resolved"] == 1 and runs["r2"].finished_at is not None
        assert runs["r1"].scope == [
            {
                "entity": "invoice",
                "system": "sap",
                "kinds": ["missing", "orphan", "mismatch", "broken_ref", "aggregate"],
            }
        ]
        assert runs["r1"].started_at <= datetime.now(UTC)
    engine.dispose()


def test_bulk_persist(store_url: str) -> None:
    upgrade(store_url)
    engine = create_store_engine(store_url)
    n = 20_000
    golden = pa.table({"key": [f"k{i}" for i in range(n)], "v": list(range(n))})
    system = pa.table({"key": [f"k{i}" for i in range(n)], "v": [i + 1 for i in range(n)]})
    found = compare(connect(), golden, system, entity="customer", system="sap")
    counts = persist(engine, found, scope=[Scope("customer", "sap")])
    assert counts["new"] == n
    counts = persist(engine, found.slice(0, n // 2), scope=[Scope("customer", "sap")])
    assert (counts["new"], counts["resolved"]) == (0, n // 2)
    with engine.connect() as conn:
        open_ = conn.execute(
            sa.select(sa.func.count()).select_from(Finding).where(Finding.status == "open")
        ).scalar_one()
    assert open_ == n // 2
    engine.dispose()

"""The findings repository (``hub.store.findings``) on SQLite and PostgreSQL: recording a
run, the filters and orders of the reads, the counts, and the small writes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from hub.recon import findings as F
from hub.store import findings
from hub.store.db import create_store_engine
from hub.store.migrate import upgrade


@pytest.fixture
def engine(store_url: str) -> Engine:
    upgrade(store_url)
    return create_store_engine(store_url)


def _row(
    key: str,
    *,
    entity: str = "invoice",
    system: str = "sap",
    kind: str = "mismatch",
    field: str | None = "total_minor",
    severity: str = "error",
    amount: int | None = None,
    currency: str | None = "EUR",
) -> dict[str, Any]:
    return {
        "id": findings.finding_id(entity, key, system, kind, field),
        "entity": entity,
        "key": key,
        "external_id": f"x-{key}",
        "system": system,
        "kind": kind,
        "field": field,
        "expected": json.dumps(1),
        "actual": json.dumps(2),
        "severity": severity,
        "amount_at_stake_minor": amount,
        "currency": currency,
    }


def _table(*rows: dict[str, Any]) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=F.SCHEMA)


def test_persist_run_counts_and_observations(engine: Engine) -> None:
    scope = [findings.Scope("invoice", "sap")]
    first = findings.persist_run(
        engine,
        _table(_row("a", amount=-5), _row("b", kind="missing", field=None, amount=7)),
        scope=scope,
        run_id="r1",
    )
    assert first == {
        "run_id": "r1",
        "observed": 2,
        "new": 2,
        "reopened": 0,
        "resolved": 0,
        "by_kind": {"mismatch": 1, "missing": 1},
        "by_severity": {"error": 2},
        "amount_at_stake_minor": {"EUR": 12},
    }
    second = findings.persist_run(engine, _table(_row("a")), scope=scope, run_id="r2")
    assert (second["new"], second["resolved"]) == (0, 1)
    with Session(engine) as s:
        assert [f.key for f in findings.observed_in_run(s, "r2")] == ["a"]
        assert [f.key for f in findings.observed_in_run(s, "r1")] == ["a", "b"]
        latest = findings.latest_run(s)
        assert latest is not None and latest.id == "r2" and latest.finished_at is not None
        assert latest.counts["resolved"] == 1
        assert [r.id for r in findings.recent_runs(s, 5)] == ["r2", "r1"]
        assert findings.count_open(s) == 1


def test_persist_run_out_of_scope_findings_stay_open(engine: Engine) -> None:
    findings.persist_run(engine, _table(_row("a")), scope=[findings.Scope("invoice", "sap")])
    done = findings.persist_run(engine, _table(), scope=[findings.Scope("invoice", "billing")])
    assert done["resolved"] == 0
    none = findings.persist_run(engine, _table(), scope=[])
    assert none["resolved"] == 0


def test_list_findings_filters_and_orders(engine: Engine) -> None:
    findings.persist_run(
        engine,
        _table(
            _row("b", system="sap"),
            _row("a", system="salesforce"),
            _row("c", entity="customer", system="sap", kind="missing", field=None),
        ),
        scope=[findings.Scope("invoice", "sap")],
    )
    with Session(engine) as s:
        every = findings.list_findings(s)
        assert [(f.entity, f.key) for f in every] == [
            ("customer", "c"),
            ("invoice", "a"),
            ("invoice", "b"),
        ]
        assert [f.key for f in findings.list_findings(s, entity="invoice", systems=["sap"])] == [
            "b"
        ]
        assert [f.key for f in findings.list_findings(s, kinds=["missing"])] == ["c"]
        assert findings.list_findings(s, kinds=[]) == []  # an empty filter matches nothing
        wanted = every[1].id
        assert [f.id for f in findings.list_findings(s, ids=[wanted])] == [wanted]
        assert findings.list_findings(s, status="resolved") == []
        later = every[0].first_seen + timedelta(seconds=1)
        assert findings.list_findings(s, first_seen_after=later) == []
        by_scope = findings.list_findings(s, entity="invoice", order="scope")
        assert [f.system for f in by_scope] == ["salesforce", "sap"]
        by_age = findings.list_findings(s, order="first_seen")
        assert [f.id for f in by_age] == sorted(f.id for f in every)  # same first_seen


def test_open_counts_money_top_and_matrix(engine: Engine) -> None:
    findings.persist_run(
        engine,
        _table(
            _row("a", severity="warning", amount=100),
            _row("b", amount=-30),
            _row("c", amount=5, currency="USD"),
            _row("d", entity="customer", kind="missing", field=None, currency=None),
        ),
        scope=[findings.Scope("invoice", "sap")],
    )
    with Session(engine) as s:
        assert findings.open_counts_by(s, "entity") == {"customer": 1, "invoice": 3}
        assert findings.open_counts_by(s, "severity", entity="invoice") == {
            "error": 2,
            "warning": 1,
        }
        assert findings.open_amount_at_stake(s) == {"EUR": 130, "USD": 5}
        assert findings.open_amount_at_stake(s, entity="customer") == {}
        # errors first, then the most money at stake
        assert [f.key for f in findings.top_open(s, "invoice", 2)] == ["b", "c"]
        assert findings.open_matrix(s) == [
            {
                "entity": "customer",
                "system": "sap",
                "kind": "missing",
                "open": 1,
                "amount_at_stake_minor": None,
            },
            {
                "entity": "invoice",
                "system": "sap",
                "kind": "mismatch",
                "open": 3,
                "amount_at_stake_minor": 135,
            },
        ]


def test_conflicts_are_recorded_reopened_and_resolved_by_key(engine: Engine) -> None:
    seen = datetime(2024, 5, 1, tzinfo=UTC)

    def conflict(key: str, actual: str) -> None:
        findings.record_conflict(
            s,
            entity="customer",
            key=key,
            system="salesforce",
            external_id=None,
            field="legal_name",
            expected="Acme",
            actual=actual,
            seen_at=seen,
        )

    with Session(engine) as s, s.begin():
        conflict("k1", "ACME")
        conflict("k2", "Acme Inc")
    with Session(engine) as s, s.begin():
        assert (
            findings.resolve_open(
                s, entity="customer", system="salesforce", kind="conflict", keys=["k1"]
            )
            == 1
        )
        assert (
            findings.resolve_open(s, entity="customer", system="sap", kind="conflict", keys=[]) == 0
        )
        assert not findings.resolve_open(
            s, entity="customer", system="sap", kind="conflict", keys=["k2"]
        )
    with Session(engine) as s:
        status = {f.key: f.status for f in findings.list_findings(s, kinds=["conflict"])}
        assert status == {"k1": "resolved", "k2": "open"}
        k1 = findings.list_findings(
            s, ids=[findings.finding_id("customer", "k1", "salesforce", "conflict", "legal_name")]
        )
        assert k1[0].resolved_at is not None and k1[0].severity == "warning"
    with Session(engine) as s, s.begin():
        conflict("k1", "ACME again")  # seen again: reopened with the new value
    with Session(engine) as s:
        (again,) = findings.list_findings(s, status="open", ids=[k1[0].id])
        assert again.actual == "ACME again" and again.resolved_at is None


def test_money_at_stake_near_the_int64_limit_sums_exactly(engine: Engine) -> None:
    """One absurd invoice total (near 2**63, quarantined by the sync but still drift in
    billing) must not stop the reconciliation: every sum of amounts is exact, on SQLite
    (whose sum() raised "integer overflow") and PostgreSQL alike."""
    top = 2**63 - 1
    rows = [
        _row("a", amount=top),
        _row("b", amount=top - 7),
        _row("c", amount=-(2**63)),  # the most negative bigint: abs() itself overflows
        _row("d", amount=-12_345),
    ]
    done = findings.persist_run(engine, _table(*rows), scope=[findings.Scope("invoice", "sap")])
    exact = top + (top - 7) + 2**63 + 12_345
    assert done["amount_at_stake_minor"] == {"EUR": exact}
    with Session(engine) as s:
        assert findings.open_amount_at_stake(s) == {"EUR": exact}
        assert findings.open_matrix(s)[0]["amount_at_stake_minor"] == exact

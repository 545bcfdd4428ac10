"""The findings repository: every read and write of ``findings``, ``finding_observations``
and ``reconciliation_runs`` goes through the functions here.

Who calls what:

- reconciliation records a run with :func:`persist_run` (set-based, see below);
- the sync engine records a conflict with :func:`record_conflict`, and a resync resolves
  the conflicts it delivered with :func:`resolve_open`;
- the CLI, the sensors and the Dagster checks and report read with
  :func:`list_findings`, :func:`observed_in_run`, :func:`count_open`,
  :func:`open_counts_by`, :func:`open_amount_at_stake`, :func:`top_open`,
  :func:`open_matrix`, :func:`recent_runs`, :func:`latest_completed_run` and
  :func:`observed_counts_by`.

Reads and small writes take the caller's ``Session`` and never commit; :func:`persist_run`
takes an ``Engine`` and runs in one transaction of its own.

Recording a run is set-based on SQLite and PostgreSQL alike: the run's findings go into a
temporary table (batched executemany), then a handful of ``INSERT ... SELECT ... ON
CONFLICT`` / ``UPDATE`` statements do the rest, whatever the number of findings:

- new findings are inserted open with first_seen = last_seen = now; known ones get their
  latest values and last_seen, and are reopened if they had been resolved;
- every finding seen gets a FindingObservation row for the run ('open');
- an open finding *within the run's scope* that the run did not see is resolved (with
  a 'resolved' observation). The scope says which (entity, system, kinds) the run
  really covered, so a run that only compared SAP customers never resolves a Salesforce
  or an invoice finding, nor the sync engine's ``conflict`` findings.
"""

# ruff: noqa: S608 - SQL is built from quoted identifiers and escaped literals; values
# that come from callers are bound parameters.

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa
from sqlalchemy import Connection, Engine, case, func, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from hub.store.models import Finding, FindingObservation, ReconciliationRun, UtcDateTime, utcnow

if TYPE_CHECKING:  # DuckDB and pyarrow load with a reconciliation's findings, not with the
    # store: every process that touches the store (each CLI command, the listener, a Dagster
    # run) would pay ~0.3 s of CPU for them
    import pyarrow as pa

#: The kinds of finding a reconciliation produces (the sync engine adds ``conflict``).
RECON_KINDS = ("missing", "orphan", "mismatch", "broken_ref", "aggregate")
#: Every kind of finding the store holds.
FINDING_KINDS = (*RECON_KINDS, "conflict")

_STAGE = "recon_stage"
_COLS = (
    "id", "entity", "key", "external_id", "system", "kind", "field", "expected", "actual",
    "severity", "amount_at_stake_minor", "currency",
)  # fmt: skip
#: Columns a finding seen again takes from the run that saw it.
_REFRESHED = (
    "external_id", "expected", "actual", "severity", "amount_at_stake_minor", "currency",
    "last_seen",
)  # fmt: skip
_TS = UtcDateTime()

#: Orders of :func:`list_findings`: ``identity`` (entity, key, system, kind, field),
#: ``scope`` (entity, system, key) or ``first_seen`` (first_seen, id; oldest first).
Order = Literal["identity", "scope", "first_seen"]
#: A column open findings can be counted by.
GroupColumn = Literal["entity", "system", "kind", "severity"]


@dataclass(frozen=True)
class Scope:
    """What a run covered: one entity in one system, for these finding kinds."""

    entity: str
    system: str
    kinds: tuple[str, ...] = RECON_KINDS


def finding_id(entity: str, key: str, system: str, kind: str, field: str | None) -> str:
    """Stable identity: the same drift is the same finding in every run (the recon
    computes the same hash in SQL, ``hub.recon.findings.ID_SQL``)."""
    raw = "\x1f".join((entity, key, system, kind, field or ""))
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


# -- writes ---------------------------------------------------------------------------
def record_conflict(
    session: Session,
    *,
    entity: str,
    key: str,
    system: str,
    external_id: str | None,
    field: str,
    expected: Any,
    actual: Any,
    seen_at: datetime,
) -> None:
    """A non-owner changed an owned field: open (or reopen) its ``conflict`` finding."""
    fid = finding_id(entity, key, system, "conflict", field)
    row = session.get(Finding, fid)
    if row is None:
        session.add(
            Finding(
                id=fid,
                entity=entity,
                key=key,
                system=system,
                external_id=external_id,
                kind="conflict",
                field=field,
                expected=expected,
                actual=actual,
                severity="warning",
                first_seen=seen_at,
                last_seen=seen_at,
            )
        )
    else:
        row.expected, row.actual, row.last_seen = expected, actual, seen_at
        row.status, row.resolved_at = "open", None


def resolve_open(
    session: Session, *, entity: str, system: str, kind: str, keys: Collection[str]
) -> int:
    """Mark the open findings of ``kind`` on these records of ``entity`` in ``system``
    resolved (now); returns how many were."""
    if not keys:
        return 0
    result = session.execute(
        update(Finding)
        .where(
            Finding.entity == entity,
            Finding.system == system,
            Finding.kind == kind,
            Finding.status == "open",
            Finding.key.in_(list(keys)),
        )
        .values(status="resolved", resolved_at=utcnow())
    )
    return int(getattr(result, "rowcount", 0) or 0)


def persist_run(
    engine: Engine,
    findings: pa.Table,
    *,
    scope: Sequence[Scope],
    run_id: str | None = None,
    started_at: datetime | None = None,
    batch_size: int = 10_000,
) -> dict[str, Any]:
    """Store a reconciliation run's findings (``hub.recon.findings.SCHEMA``) in one
    transaction; returns the run's counts (also stored on its ReconciliationRun row):
    observed, new, reopened, resolved, by_kind, by_severity, amount_at_stake_minor."""
    run_id = run_id or uuid.uuid4().hex
    now = utcnow()
    findings = _dedupe(findings)
    with engine.begin() as conn:
        pg = conn.dialect.name == "postgresql"
        _start_run(conn, run_id, started_at or now, scope)
        _stage(conn, findings, batch_size, pg=pg)
        counts: dict[str, Any] = {"observed": findings.num_rows, **_new_and_reopened(conn)}
        _upsert_staged(conn, now, pg=pg)
        _observe_staged(conn, run_id, now)
        counts["resolved"] = _resolve_unseen(conn, run_id, now, scope)
        counts.update(_staged_totals(conn))
        _finish_run(conn, run_id, counts)
        if not pg:  # PostgreSQL drops it on commit
            conn.execute(sa.text(f"DROP TABLE {_STAGE}"))
    return {"run_id": run_id, **counts}


def _stmt(sql: str, **types: Any) -> sa.TextClause:
    """``sql`` with the types of some bound parameters (timestamps, JSON)."""
    return sa.text(sql).bindparams(*(sa.bindparam(n, type_=t) for n, t in types.items()))


def _dedupe(findings: pa.Table) -> pa.Table:
    """One row per id (two checks must not upsert the same finding twice in one
    statement; PostgreSQL refuses that)."""
    if findings.num_rows == 0:
        return findings
    import pyarrow.compute as pc  # loaded already: ``findings`` is an Arrow table

    if pc.count_distinct(findings.column("id")).as_py() == findings.num_rows:
        return findings  # already one row per id (the usual case): no DuckDB session
    import duckdb

    con = duckdb.connect()
    con.register("findings", findings)
    sql = "SELECT * FROM findings QUALIFY row_number() OVER (PARTITION BY id ORDER BY kind) = 1"
    return con.sql(sql).to_arrow_table()


def _start_run(conn: Connection, run_id: str, started_at: datetime, scope: Sequence[Scope]) -> None:
    """The run's row, with its scope and no counts yet."""
    conn.execute(
        _stmt(
            "INSERT INTO reconciliation_runs (id, started_at, scope, counts) "
            "VALUES (:id, :started, :scope, :counts)",
            started=_TS,
            scope=sa.JSON(),
            counts=sa.JSON(),
        ),
        {"id": run_id, "started": started_at, "scope": [asdict(s) for s in scope], "counts": {}},
    )


def _stage(conn: Connection, findings: pa.Table, batch_size: int, *, pg: bool) -> None:
    """The run's findings into a fresh temporary table, in batches."""
    temp = "CREATE TEMP TABLE" + (" IF NOT EXISTS" if not pg else "")
    conn.execute(sa.text(f"DROP TABLE IF EXISTS {_STAGE}"))
    conn.execute(
        sa.text(
            f"{temp} {_STAGE} (id VARCHAR(64) PRIMARY KEY, entity VARCHAR(32), "
            "key VARCHAR(128), external_id VARCHAR(128), system VARCHAR(32), "
            "kind VARCHAR(16), field VARCHAR(128), expected TEXT, actual TEXT, "
            "severity VARCHAR(8), amount_at_stake_minor BIGINT, currency VARCHAR(3))"
            + (" ON COMMIT DROP" if pg else "")
        )
    )
    insert = sa.text(
        f"INSERT INTO {_STAGE} ({', '.join(_COLS)}) VALUES ({', '.join(':' + c for c in _COLS)})"
    )
    for batch in findings.select(list(_COLS)).to_batches(batch_size):
        conn.execute(insert, batch.to_pylist())


def _new_and_reopened(conn: Connection) -> dict[str, int]:
    """How many staged findings the store does not know yet, and how many it holds as
    resolved (both before the upsert)."""
    new = conn.execute(
        sa.text(
            f"SELECT count(*) FROM {_STAGE} s WHERE NOT EXISTS "
            "(SELECT 1 FROM findings f WHERE f.id = s.id)"
        )
    ).scalar_one()
    reopened = conn.execute(
        sa.text(
            f"SELECT count(*) FROM {_STAGE} s JOIN findings f ON f.id = s.id "
            "WHERE f.status <> 'open'"
        )
    ).scalar_one()
    return {"new": new, "reopened": reopened}


def _upsert_staged(conn: Connection, now: datetime, *, pg: bool) -> None:
    """Insert new findings open; refresh (and reopen) the known ones."""
    as_json = "CAST({} AS JSONB)" if pg else "{}"
    select_ = ", ".join(as_json.format(c) if c in ("expected", "actual") else c for c in _COLS)
    updates = ", ".join(f"{c} = excluded.{c}" for c in _REFRESHED)
    conn.execute(
        _stmt(
            f"INSERT INTO findings ({', '.join(_COLS)}, status, first_seen, last_seen, "
            f"resolved_at) SELECT {select_}, 'open', :now, :now, NULL FROM {_STAGE} WHERE true "
            f"ON CONFLICT (id) DO UPDATE SET {updates}, status = 'open', resolved_at = NULL",
            now=_TS,
        ),
        {"now": now},
    )


def _observe_staged(conn: Connection, run_id: str, now: datetime) -> None:
    """An 'open' observation of every staged finding in this run."""
    conn.execute(
        _stmt(
            "INSERT INTO finding_observations (run_id, finding_id, status, observed_at) "
            f"SELECT :run, id, 'open', :now FROM {_STAGE}",
            now=_TS,
        ),
        {"run": run_id, "now": now},
    )


def _resolve_unseen(conn: Connection, run_id: str, now: datetime, scope: Sequence[Scope]) -> int:
    """Resolve (with a 'resolved' observation) the open findings within ``scope`` that
    the run did not see; returns how many."""
    scope_sql, scope_params = _scope_sql(scope)
    gone = (
        f"status = 'open' AND ({scope_sql}) AND NOT EXISTS "
        f"(SELECT 1 FROM {_STAGE} s WHERE s.id = findings.id)"
    )
    conn.execute(
        _stmt(
            "INSERT INTO finding_observations (run_id, finding_id, status, observed_at) "
            f"SELECT :run, id, 'resolved', :now FROM findings WHERE {gone}",
            now=_TS,
        ),
        {"run": run_id, "now": now, **scope_params},
    )
    return int(
        conn.execute(
            _stmt(
                f"UPDATE findings SET status = 'resolved', resolved_at = :now WHERE {gone}", now=_TS
            ),
            {"now": now, **scope_params},
        ).rowcount
    )


def _staged_totals(conn: Connection) -> dict[str, Any]:
    """The run's findings by kind and by severity, and money at stake per currency."""
    out: dict[str, Any] = {}
    for col in ("kind", "severity"):
        out[f"by_{col}"] = {
            k: n
            for k, n in conn.execute(
                sa.text(f"SELECT {col}, count(*) FROM {_STAGE} GROUP BY {col}")
            )
        }
    amount = sa.column("amount_at_stake_minor", sa.BigInteger)
    out["amount_at_stake_minor"] = {
        cur: _joined(hi, lo)
        for cur, hi, lo in conn.execute(
            sa.select(sa.column("currency"), *_wide_abs_sum(amount))
            .select_from(sa.table(_STAGE))
            .where(amount.is_not(None), sa.column("currency").is_not(None))
            .group_by(sa.column("currency"))
        )
    }
    return out


#: Amounts are summed in two halves: 64-bit minor units summed as they are overflow (an
#: absurd invoice total near 2**63 stopped every reconciliation with SQLite's "integer
#: overflow"). Truncating division and remainder keep the sign of the amount, so
#: |x| = |x / 2**32| * 2**32 + |x % 2**32| exactly, and neither half can overflow a sum
#: of fewer than 2**31 rows, on SQLite and PostgreSQL alike.
_HALF = 2**32


def _wide_abs_sum(amount: Any) -> tuple[Any, Any]:
    """SQL sums of the high and low halves of ``|amount|`` (see :func:`_joined`)."""
    # op(): the SQL operators as written (integer division and remainder), not
    # SQLAlchemy's true division, which would cast to NUMERIC
    high = amount.op("/", return_type=sa.BigInteger)(_HALF)
    low = amount.op("%", return_type=sa.BigInteger)(_HALF)
    return func.sum(func.abs(high)), func.sum(func.abs(low))


def _joined(high: Any, low: Any) -> int | None:
    """The exact sum from the halves' sums (``None`` when there was nothing to sum)."""
    if high is None and low is None:
        return None
    return int(high or 0) * _HALF + int(low or 0)


def _finish_run(conn: Connection, run_id: str, counts: dict[str, Any]) -> None:
    """Stamp the run finished, with its counts."""
    conn.execute(
        _stmt(
            "UPDATE reconciliation_runs SET finished_at = :done, counts = :counts WHERE id = :id",
            done=_TS,
            counts=sa.JSON(),
        ),
        {"done": utcnow(), "counts": counts, "id": run_id},
    )


def _scope_sql(scope: Sequence[Scope]) -> tuple[str, dict[str, Any]]:
    """A WHERE condition (and its parameters) matching the findings within ``scope``."""
    if not scope:
        return "false", {}
    parts, params = [], {}
    for i, s in enumerate(scope):
        kinds = ", ".join(f":k{i}_{j}" for j in range(len(s.kinds))) or "NULL"
        parts.append(f"(entity = :e{i} AND system = :s{i} AND kind IN ({kinds}))")
        params[f"e{i}"], params[f"s{i}"] = s.entity, s.system
        params.update({f"k{i}_{j}": k for j, k in enumerate(s.kinds)})
    return " OR ".join(parts), params


# -- reads ----------------------------------------------------------------------------
_ORDERS: dict[str, tuple[InstrumentedAttribute[Any], ...]] = {
    "identity": (Finding.entity, Finding.key, Finding.system, Finding.kind, Finding.field),
    "scope": (Finding.entity, Finding.system, Finding.key),
    "first_seen": (Finding.first_seen, Finding.id),
}


def list_findings(
    session: Session,
    *,
    status: str | None = None,
    entity: str | None = None,
    systems: Collection[str] | None = None,
    kinds: Collection[str] | None = None,
    ids: Collection[str] | None = None,
    first_seen_after: datetime | None = None,
    opened_since: datetime | None = None,
    observed_in: str | None = None,
    order: Order = "identity",
) -> list[Finding]:
    """Findings matching every filter given (``None``: any; an empty collection matches
    nothing), in ``order``. ``opened_since``: first seen at or after; ``observed_in``:
    seen (not resolved) by that reconciliation run."""
    stmt = select(Finding)
    if observed_in is not None:
        stmt = stmt.join(FindingObservation, FindingObservation.finding_id == Finding.id).where(
            FindingObservation.run_id == observed_in, FindingObservation.status == "open"
        )
    if status is not None:
        stmt = stmt.where(Finding.status == status)
    if kinds is not None:
        stmt = stmt.where(Finding.kind.in_(list(kinds)))
    if entity is not None:
        stmt = stmt.where(Finding.entity == entity)
    if systems is not None:
        stmt = stmt.where(Finding.system.in_(list(systems)))
    if ids is not None:
        stmt = stmt.where(Finding.id.in_(list(ids)))
    if first_seen_after is not None:
        stmt = stmt.where(Finding.first_seen > first_seen_after)
    if opened_since is not None:
        stmt = stmt.where(Finding.first_seen >= opened_since)
    return list(session.scalars(stmt.order_by(*_ORDERS[order])))


def observed_in_run(session: Session, run_id: str) -> list[Finding]:
    """Findings a reconciliation run observed (not those it resolved), in identity order."""
    stmt = (
        select(Finding)
        .join(FindingObservation, FindingObservation.finding_id == Finding.id)
        .where(FindingObservation.run_id == run_id, FindingObservation.status == "open")
        .order_by(*_ORDERS["identity"])
    )
    return list(session.scalars(stmt))


def count_open(session: Session) -> int:
    """How many findings are open, of any kind."""
    return int(session.execute(select(func.count()).where(Finding.status == "open")).scalar_one())


def _open(entity: str | None) -> list[sa.ColumnElement[bool]]:
    where = [Finding.status == "open"]
    if entity is not None:
        where.append(Finding.entity == entity)
    return where


def open_counts_by(
    session: Session, column: GroupColumn, *, entity: str | None = None
) -> dict[str, int]:
    """Open findings (of ``entity``, or all) counted by ``column``."""
    col = getattr(Finding, column)
    return {
        k: n
        for k, n in session.execute(select(col, func.count()).where(*_open(entity)).group_by(col))
    }


def open_amount_at_stake(session: Session, *, entity: str | None = None) -> dict[str, int]:
    """Money at stake in open findings (of ``entity``, or all): sum of
    |amount_at_stake_minor| per currency, in currency order."""
    return {
        cur: _joined(hi, lo) or 0
        for cur, hi, lo in session.execute(
            select(Finding.currency, *_wide_abs_sum(Finding.amount_at_stake_minor))
            .where(*_open(entity), Finding.currency.is_not(None))
            .where(Finding.amount_at_stake_minor.is_not(None))
            .group_by(Finding.currency)
            .order_by(Finding.currency)
        )
    }


def top_open(session: Session, entity: str, limit: int) -> list[Finding]:
    """The ``limit`` open findings of ``entity`` that matter most: errors first, then the
    most money at stake, then the most recently seen."""
    return list(
        session.scalars(
            select(Finding)
            .where(*_open(entity))
            .order_by(
                case((Finding.severity == "error", 0), else_=1),
                func.abs(func.coalesce(Finding.amount_at_stake_minor, 0)).desc(),
                Finding.last_seen.desc(),
                Finding.id,
            )
            .limit(limit)
        )
    )


def open_matrix(session: Session) -> list[dict[str, Any]]:
    """Open findings per (entity, system, kind): count and money at stake (all
    currencies summed, ``None`` when no finding of the cell has an amount)."""
    return [
        {"entity": e, "system": sy, "kind": k, "open": n, "amount_at_stake_minor": _joined(hi, lo)}
        for e, sy, k, n, hi, lo in session.execute(
            select(
                Finding.entity,
                Finding.system,
                Finding.kind,
                func.count(),
                *_wide_abs_sum(Finding.amount_at_stake_minor),
            )
            .where(Finding.status == "open")
            .group_by(Finding.entity, Finding.system, Finding.kind)
            .order_by(Finding.entity, Finding.system, Finding.kind)
        )
    ]


def recent_runs(session: Session, limit: int) -> list[ReconciliationRun]:
    """The last ``limit`` reconciliation runs, newest first."""
    return list(
        session.scalars(
            select(ReconciliationRun).order_by(ReconciliationRun.started_at.desc()).limit(limit)
        )
    )


def latest_run(session: Session) -> ReconciliationRun | None:
    """The newest reconciliation run, if any."""
    runs = recent_runs(session, 1)
    return runs[0] if runs else None


def latest_completed_run(
    session: Session, entity: str | None = None, *, look_back: int = 50
) -> ReconciliationRun | None:
    """The newest reconciliation run that finished (one that failed half-way has no
    ``finished_at``), and with ``entity`` the newest whose scope covered that entity
    (among the last ``look_back`` finished runs)."""
    runs = session.scalars(
        select(ReconciliationRun)
        .where(ReconciliationRun.finished_at.is_not(None))
        .order_by(ReconciliationRun.finished_at.desc())
        .limit(1 if entity is None else look_back)
    )
    for run in runs:
        scope: list[Any] = list(run.scope) if isinstance(run.scope, list) else []
        if entity is None or any(part.get("entity") == entity for part in scope):
            return run
    return None


def observed_counts_by(
    session: Session, run_id: str, column: GroupColumn, *, entity: str | None = None
) -> dict[str, int]:
    """The findings run ``run_id`` observed (of ``entity``, or all), counted by ``column``."""
    col = getattr(Finding, column)
    stmt = (
        select(col, func.count())
        .join(FindingObservation, FindingObservation.finding_id == Finding.id)
        .where(FindingObservation.run_id == run_id, FindingObservation.status == "open")
    )
    if entity is not None:
        stmt = stmt.where(Finding.entity == entity)
    return {k: n for k, n in session.execute(stmt.group_by(col).order_by(col))}

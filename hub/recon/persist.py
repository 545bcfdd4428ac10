"""Recording a reconciliation run: findings upserted in bulk, history, auto-resolution.

Set-based on SQLite and PostgreSQL alike: the run's findings go into a temporary table
(batched executemany), then a handful of ``INSERT ... SELECT ... ON CONFLICT`` / ``UPDATE``
statements do the rest in one transaction, whatever the number of findings:

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

import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import duckdb
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy import Engine

from hub.recon.findings import KINDS
from hub.store.models import UtcDateTime, utcnow

_STAGE = "recon_stage"
_COLS = (
    "id", "entity", "key", "external_id", "system", "kind", "field", "expected", "actual",
    "severity", "amount_at_stake_minor", "currency",
)  # fmt: skip


@dataclass(frozen=True)
class Scope:
    """What a run covered: one entity in one system, for these finding kinds."""

    entity: str
    system: str
    kinds: tuple[str, ...] = KINDS


def _dedupe(findings: pa.Table) -> pa.Table:
    """One row per id (two checks must not upsert the same finding twice in one
    statement; PostgreSQL refuses that)."""
    if findings.num_rows == 0:
        return findings
    con = duckdb.connect()
    con.register("findings", findings)
    sql = "SELECT * FROM findings QUALIFY row_number() OVER (PARTITION BY id ORDER BY kind) = 1"
    return con.sql(sql).to_arrow_table()


def persist(
    engine: Engine,
    findings: pa.Table,
    *,
    scope: Sequence[Scope],
    run_id: str | None = None,
    started_at: datetime | None = None,
    batch_size: int = 10_000,
) -> dict[str, Any]:
    """Store a run's findings (``hub.recon.findings.SCHEMA``); returns the run's counts
    (also stored on its ReconciliationRun row)."""
    run_id = run_id or uuid.uuid4().hex
    now = utcnow()
    started_at = started_at or now
    findings = _dedupe(findings)
    pg = engine.dialect.name == "postgresql"
    as_json = "CAST({} AS JSONB)" if pg else "{}"
    ts = UtcDateTime()
    scope_sql, scope_params = _scope_sql(scope)

    def stmt(sql: str, **types: Any) -> sa.TextClause:
        clause = sa.text(sql)
        return clause.bindparams(*(sa.bindparam(n, type_=t) for n, t in types.items()))

    with engine.begin() as conn:
        conn.execute(
            stmt(
                "INSERT INTO reconciliation_runs (id, started_at, scope, counts) "
                "VALUES (:id, :started, :scope, :counts)",
                started=ts,
                scope=sa.JSON(),
                counts=sa.JSON(),
            ),
            {
                "id": run_id,
                "started": started_at,
                "scope": [asdict(s) for s in scope],
                "counts": {},
            },
        )
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
            f"INSERT INTO {_STAGE} ({', '.join(_COLS)}) "
            f"VALUES ({', '.join(':' + c for c in _COLS)})"
        )
        for batch in findings.select(list(_COLS)).to_batches(batch_size):
            conn.execute(insert, batch.to_pylist())

        counts: dict[str, Any] = {"observed": findings.num_rows}
        counts["new"] = conn.execute(
            sa.text(
                f"SELECT count(*) FROM {_STAGE} s WHERE NOT EXISTS "
                "(SELECT 1 FROM findings f WHERE f.id = s.id)"
            )
        ).scalar_one()
        counts["reopened"] = conn.execute(
            sa.text(
                f"SELECT count(*) FROM {_STAGE} s JOIN findings f ON f.id = s.id "
                "WHERE f.status <> 'open'"
            )
        ).scalar_one()
        cols = ", ".join(_COLS)
        select = ", ".join(as_json.format(c) if c in ("expected", "actual") else c for c in _COLS)
        updates = ", ".join(
            f"{c} = excluded.{c}"
            for c in (
                "external_id",
                "expected",
                "actual",
                "severity",
                "amount_at_stake_minor",
                "currency",
                "last_seen",
            )
        )
        conn.execute(
            stmt(
                f"INSERT INTO findings ({cols}, status, first_seen, last_seen, resolved_at) "
                f"SELECT {select}, 'open', :now, :now, NULL FROM {_STAGE} WHERE true "
                f"ON CONFLICT (id) DO UPDATE SET {updates}, status = 'open', resolved_at = NULL",
                now=ts,
            ),
            {"now": now},
        )
        conn.execute(
            stmt(
                "INSERT INTO finding_observations (run_id, finding_id, status, observed_at) "
                f"SELECT :run, id, 'open', :now FROM {_STAGE}",
                now=ts,
            ),
            {"run": run_id, "now": now},
        )
        gone = (
            f"status = 'open' AND ({scope_sql}) AND NOT EXISTS "
            f"(SELECT 1 FROM {_STAGE} s WHERE s.id = findings.id)"
        )
        conn.execute(
            stmt(
                "INSERT INTO finding_observations (run_id, finding_id, status, observed_at) "
                f"SELECT :run, id, 'resolved', :now FROM findings WHERE {gone}",
                now=ts,
            ),
            {"run": run_id, "now": now, **scope_params},
        )
        counts["resolved"] = conn.execute(
            stmt(
                f"UPDATE findings SET status = 'resolved', resolved_at = :now WHERE {gone}", now=ts
            ),
            {"now": now, **scope_params},
        ).rowcount
        for col in ("kind", "severity"):
            counts[f"by_{col}"] = {
                k: n
                for k, n in conn.execute(
                    sa.text(f"SELECT {col}, count(*) FROM {_STAGE} GROUP BY {col}")
                )
            }
        counts["amount_at_stake_minor"] = {
            cur: int(n)
            for cur, n in conn.execute(
                sa.text(
                    f"SELECT currency, sum(abs(amount_at_stake_minor)) FROM {_STAGE} "
                    "WHERE amount_at_stake_minor IS NOT NULL AND currency IS NOT NULL "
                    "GROUP BY currency"
                )
            )
        }
        conn.execute(
            stmt(
                "UPDATE reconciliation_runs SET finished_at = :done, counts = :counts "
                "WHERE id = :id",
                done=ts,
                counts=sa.JSON(),
            ),
            {"done": utcnow(), "counts": counts, "id": run_id},
        )
        if not pg:
            conn.execute(sa.text(f"DROP TABLE {_STAGE}"))
    return {"run_id": run_id, **counts}


def _scope_sql(scope: Sequence[Scope]) -> tuple[str, dict[str, Any]]:
    if not scope:
        return "false", {}
    parts, params = [], {}
    for i, s in enumerate(scope):
        kinds = ", ".join(f":k{i}_{j}" for j in range(len(s.kinds))) or "NULL"
        parts.append(f"(entity = :e{i} AND system = :s{i} AND kind IN ({kinds}))")
        params[f"e{i}"], params[f"s{i}"] = s.entity, s.system
        params.update({f"k{i}_{j}": k for j, k in enumerate(s.kinds)})
    return " OR ".join(parts), params

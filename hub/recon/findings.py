"""The findings table every check produces: one Arrow schema, one stable identity.

The id is the same hash ``hub.store.findings.finding_id`` computes (SHA-256 of entity, key,
system, kind and field joined by U+001F, first 32 hex digits), but computed in SQL so a
million findings never pass through a Python loop.
"""

# ruff: noqa: S608 - SQL is built from quoted identifiers and escaped literals; values
# that come from callers are bound parameters.

from __future__ import annotations

import itertools

import duckdb
import pyarrow as pa

from hub.store.findings import RECON_KINDS

KINDS = RECON_KINDS

SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("entity", pa.string()),
        ("key", pa.string()),
        ("external_id", pa.string()),
        ("system", pa.string()),
        ("kind", pa.string()),
        ("field", pa.string()),
        ("expected", pa.string()),  # JSON text
        ("actual", pa.string()),  # JSON text
        ("severity", pa.string()),
        ("amount_at_stake_minor", pa.int64()),
        ("currency", pa.string()),
    ]
)

_ids = itertools.count()

ID_SQL = "substr(sha256(concat_ws(chr(31), entity, key, system, kind, coalesce(field, ''))), 1, 32)"


def literal(value: str | None) -> str:
    """A SQL string literal (or NULL)."""
    if value is None:
        return "NULL"
    return "'" + value.replace("'", "''") + "'"


def finalize(con: duckdb.DuckDBPyConnection, rows_sql: str) -> pa.Table:
    """Run ``rows_sql`` (yielding every SCHEMA column but ``id``) and return findings with
    their ids, in a deterministic order.

    The rows land in a temporary table first: ``rows_sql`` (often a long UNION ALL over
    views) is then planned once, where a lazy ``con.sql`` relation would parse and bind it
    and plan it again to run; the ordered read of the small table is cheap, and none is
    needed when nothing was found."""
    cols = ", ".join(f.name for f in SCHEMA if f.name != "id")
    name = f"_recon_findings_{next(_ids)}"
    sql = (
        f"CREATE TEMP TABLE {name} AS SELECT {ID_SQL} AS id, {cols} FROM ("
        f"SELECT CAST(entity AS VARCHAR) entity, CAST(key AS VARCHAR) key, "
        f"CAST(external_id AS VARCHAR) external_id, CAST(system AS VARCHAR) system, "
        f"CAST(kind AS VARCHAR) kind, CAST(field AS VARCHAR) field, "
        f"CAST(expected AS VARCHAR) expected, CAST(actual AS VARCHAR) actual, "
        f"CAST(severity AS VARCHAR) severity, "
        f"CAST(amount_at_stake_minor AS BIGINT) amount_at_stake_minor, "
        f"CAST(currency AS VARCHAR) currency FROM ({rows_sql}))"
    )
    created = con.execute(sql).fetchall()  # the number of rows, drained
    try:
        if not created[0][0]:
            return empty()
        table = con.sql(f"SELECT * FROM {name} ORDER BY key, kind, field").to_arrow_table()
        return table.cast(SCHEMA)
    finally:
        con.execute(f"DROP TABLE {name}").fetchall()


#: built once (Arrow tables are immutable), from no batches: ``SCHEMA.empty_table()``
#: imports pandas, ~0.3 s of CPU in every process that imports this module (each CLI
#: command, Dagster run and test worker), for an empty table
_EMPTY = pa.Table.from_batches([], schema=SCHEMA)


def empty() -> pa.Table:
    return _EMPTY


def concat(tables: list[pa.Table]) -> pa.Table:
    """Findings of several checks as one table."""
    tables = [t for t in tables if t.num_rows]
    return pa.concat_tables(tables) if tables else empty()

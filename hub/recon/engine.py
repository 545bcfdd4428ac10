"""The DuckDB session every reconciliation step runs in, and how inputs get into it.

Inputs arrive as Arrow (tables, record batches, readers) or as DuckDB relations; all of
them become views in one connection, so a comparison is one SQL statement over columns
and Python never iterates records. DuckDB rather than Polars: a full outer join with
per-field predicates over 10M rows ran faster and, with a memory limit, spills to disk
instead of failing (see docs/reconciliation.md for the measurement).
"""

# ruff: noqa: S608 - SQL is built from quoted identifiers and escaped literals; values
# that come from callers are bound parameters.

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import TypeAlias

import duckdb
import pyarrow as pa

Source: TypeAlias = (
    pa.Table
    | pa.RecordBatch
    | pa.RecordBatchReader
    | Iterable[pa.RecordBatch]
    | duckdb.DuckDBPyRelation
    | str
)

_ids = itertools.count()


def quote(name: str) -> str:
    """A column or view name as a DuckDB identifier (flattened names contain dots)."""
    return '"' + name.replace('"', '""') + '"'


def connect(
    memory_limit: str | None = None, threads: int | None = None
) -> duckdb.DuckDBPyConnection:
    """A connection in UTC (naive timestamps are read as UTC, never as local time)."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    if memory_limit:
        con.execute(f"SET memory_limit = '{memory_limit}'")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    return con


def register(con: duckdb.DuckDBPyConnection, source: Source, hint: str = "src") -> str:
    """Make ``source`` queryable in ``con``; returns a quoted view name.

    A string is taken as the name of a table or view already in ``con``. A relation must
    come from ``con`` itself (DuckDB relations are bound to their connection)."""
    if isinstance(source, str):
        return quote(source)
    name = f"_recon_{hint}_{next(_ids)}"
    if isinstance(source, duckdb.DuckDBPyRelation):
        # a TEMP view: the database may be attached read-only
        run(con, f"CREATE OR REPLACE TEMP VIEW {quote(name)} AS {source.sql_query()}")
        return quote(name)
    if isinstance(source, pa.RecordBatch):
        source = pa.Table.from_batches([source])
    elif not isinstance(source, pa.Table | pa.RecordBatchReader):
        batches = list(source)
        source = pa.Table.from_batches(batches) if batches else pa.table({})
    con.register(name, source)
    return quote(name)


def columns(con: duckdb.DuckDBPyConnection, view: str) -> dict[str, str]:
    """Column name -> DuckDB type name of a registered view."""
    return {row[0]: str(row[1]) for row in con.execute(f"DESCRIBE SELECT * FROM {view}").fetchall()}


def run(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[object, ...]]:
    """Execute and drain ``sql`` (DuckDB refuses more work while a result is unfinished)."""
    return con.execute(sql).fetchall()

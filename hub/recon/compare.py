"""Golden vs one system's snapshot of one entity: missing, orphan and per-field mismatch.

One full outer join on the key with every field's drift predicate in the WHERE clause:
rows that agree never leave DuckDB. Only the drifted rows are kept (a temporary table),
unpivoted into findings and returned as Arrow.
"""

# ruff: noqa: S608 - SQL is built from quoted identifiers and escaped literals; values
# that come from callers are bound parameters.

from __future__ import annotations

import itertools
from collections.abc import Collection, Mapping
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from hub.mapping.spec import CompareRule
from hub.recon import findings as F
from hub.recon.engine import Source, columns, quote, register, run
from hub.recon.rules import EXACT, drift_predicate, is_money, severity

_ids = itertools.count()


@dataclass(frozen=True)
class Child:
    """A child collection compared row by row: ``name`` as in the canonical model
    (``lines``), ``key`` the column identifying a child within its parent (``line_no``).
    Findings name the child as ``lines[3]`` / ``lines[3].amount_minor``."""

    name: str
    key: str


def compare(
    con: duckdb.DuckDBPyConnection,
    golden: Source,
    system_side: Source,
    *,
    entity: str,
    system: str,
    rules: Mapping[str, CompareRule] | None = None,
    fields: Collection[str] | None = None,
    child: Child | None = None,
    key: str = "key",
    currency_field: str = "currency",
    amount_field: str | None = None,
) -> pa.Table:
    """Findings (``hub.recon.findings.SCHEMA``) for ``system_side`` against ``golden``.

    Both sides are canonical and flattened (``billing_address.city``) with a ``key``
    column holding the hub id; the system side may carry ``external_id``. Fields compared
    are ``fields`` or else every column both sides have; a field the system does not
    carry is not its drift. ``rules`` maps fields to their CompareRule (default exact).
    ``amount_field`` (e.g. ``total_minor``) puts money at stake on missing/orphan rows."""
    rules = rules or {}
    g_view = register(con, golden, "golden")
    s_view = register(con, system_side, "system")
    g_cols, s_cols = columns(con, g_view), columns(con, s_view)
    for side, cols in (("golden", g_cols), (system, s_cols)):
        if key not in cols or (child and child.key not in cols):
            raise ValueError(f"{entity}/{system}: the {side} side has no {key!r} column")
    reserved = {key, "external_id", *([child.key] if child else [])}
    wanted = [f for f in (fields if fields is not None else g_cols) if f not in reserved]
    compared = [f for f in wanted if f in g_cols and f in s_cols]

    join = f"g.{quote(key)} = s.{quote(key)}"
    child_sel = ""
    if child:
        ck = quote(child.key)
        join += f" AND g.{ck} = s.{ck}"
        child_sel = f", coalesce(g.{ck}, s.{ck}) AS _child"
    ext = "s.external_id" if "external_id" in s_cols else "NULL"
    cur = _either("g", "s", currency_field, g_cols, s_cols)
    amt_g = f"g.{quote(amount_field)}" if amount_field and amount_field in g_cols else "NULL"
    amt_s = f"s.{quote(amount_field)}" if amount_field and amount_field in s_cols else "NULL"
    preds, values = [], []
    for i, f in enumerate(compared):
        q = quote(f)
        pred = drift_predicate(f"g.{q}", f"s.{q}", rules.get(f, EXACT), g_cols[f], s_cols[f])
        preds.append(pred)
        values.append(f"{pred} AS _d{i}, g.{q} AS _g{i}, s.{q} AS _s{i}")
    gk, sk = f"g.{quote(key)}", f"s.{quote(key)}"
    where = " OR ".join([f"{gk} IS NULL", f"{sk} IS NULL", *preds])
    drift = f"_recon_drift_{next(_ids)}"
    created = run(
        con,
        f"CREATE OR REPLACE TEMP TABLE {drift} AS SELECT coalesce({gk}, {sk}) AS _key{child_sel}, "
        f"{ext} AS _ext, {gk} IS NULL AS _orphan, {sk} IS NULL AS _missing, {cur} AS _cur, "
        f"{amt_g} AS _amt_g, {amt_s} AS _amt_s"
        + "".join(f", {v}" for v in values)
        + f" FROM {g_view} g FULL OUTER JOIN {s_view} s ON {join} WHERE {where}",
    )
    try:
        if not created[0][0]:  # nothing drifted (the usual case): no findings to build
            return F.empty()
        # only the parts of the unpivot that have rows (the filters are theirs): a long
        # UNION ALL of parts that find nothing costs planning, not findings
        filters = [f"_{kind}" for kind, _ in _PRESENCE] + [
            _mismatch_where(i) for i in range(len(compared))
        ]
        counts = run(
            con, f"SELECT {', '.join(f'count(*) FILTER (WHERE {w})' for w in filters)} FROM {drift}"
        )[0]
        presence = len(_PRESENCE)
        kinds = {k for (k, _), c in zip(_PRESENCE, counts[:presence], strict=True) if c}
        drifted = {i for i, c in enumerate(counts[presence:]) if c}
        return F.finalize(
            con, _rows_sql(drift, entity, system, compared, rules, child, kinds, drifted)
        )
    finally:
        run(con, f"DROP TABLE IF EXISTS {drift}")


#: the kinds a record's presence alone decides (its drift flag is ``_<kind>``), with the
#: amount at stake of each
_PRESENCE = (("missing", "_amt_g"), ("orphan", "-_amt_s"))


def _mismatch_where(i: int) -> str:
    """The drift rows whose ``i``-th compared field differs (a mismatch finding)."""
    return f"NOT _missing AND NOT _orphan AND _d{i}"


def _either(
    g: str, s: str, field: str, g_cols: Mapping[str, str], s_cols: Mapping[str, str]
) -> str:
    parts = [f"{a}.{quote(field)}" for a, cols in ((g, g_cols), (s, s_cols)) if field in cols]
    return f"coalesce({', '.join(parts)})" if len(parts) > 1 else (parts[0] if parts else "NULL")


def _rows_sql(
    drift: str,
    entity: str,
    system: str,
    compared: list[str],
    rules: Mapping[str, CompareRule],
    child: Child | None,
    kinds: Collection[str],
    drifted: Collection[int],
) -> str:
    """The findings of ``drift`` (see ``compare``): a part per kind in ``kinds``
    (``missing``, ``orphan``) and a ``mismatch`` part per compared field whose index is in
    ``drifted``; a part left out would have found nothing."""
    e, s = F.literal(entity), F.literal(system)
    prefix = f"'{child.name}[' || CAST(_child AS VARCHAR) || ']'" if child else None

    def field_sql(name: str | None) -> str:
        if prefix is None:
            return F.literal(name)
        return prefix if name is None else f"{prefix} || {F.literal('.' + name)}"

    common = "_key AS key, _ext AS external_id"
    parts = []
    for kind, amount in _PRESENCE:
        if kind in kinds:
            parts.append(
                f"SELECT {e} entity, {common}, {s} system, '{kind}' kind, "
                f"{field_sql(None)} field, NULL expected, NULL actual, 'error' severity, "
                f"{amount} amount_at_stake_minor, _cur currency FROM {drift} WHERE _{kind}"
            )
    for i, f in enumerate(compared):
        if i not in drifted:
            continue
        rule = rules.get(f, EXACT)
        money = f"TRY_CAST(_g{i} AS BIGINT) - TRY_CAST(_s{i} AS BIGINT)" if is_money(f) else "NULL"
        parts.append(
            f"SELECT {e} entity, {common}, {s} system, 'mismatch' kind, {field_sql(f)} field, "
            f"CAST(to_json(_g{i}) AS VARCHAR) expected, CAST(to_json(_s{i}) AS VARCHAR) actual, "
            f"{F.literal(severity(f, rule))} severity, {money} amount_at_stake_minor, "
            f"_cur currency FROM {drift} WHERE {_mismatch_where(i)}"
        )
    return " UNION ALL ".join(parts)

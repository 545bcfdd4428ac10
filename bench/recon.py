"""Reconciliation benchmark: the hub's columnar compare against a floor and a peer.

    .venv/bin/python -m bench.recon --rows 1000000 [--drift 0.001] [--pushdown-rows N]
        [--pushdown-backend sqlite,postgresql] [--skip peer,pushdown]

Stages N invoices (1-3 lines each) for billing, SAP and Salesforce and N/4 customers for
all five systems in a DuckDB file, plants drift in a known share of keys, then measures,
each in a fresh process (so peak RSS is that step's own):
- hub: ``hub.recon.compare`` for every (entity, system) pair, findings checked against
  the planted drift (exact = found all planted, nothing else);
- floor: one hand-written DuckDB query (canonicalise, 64-bit hash, chained full outer join);
- peer: datacompy on one pair (golden vs billing invoices) at min(N, 200k) rows;
- pushdown: a billing invoice table vs its golden copy by segment checksums
  (``hub.recon.pushdown.hashdiff``), against a ``count(*)`` over the same table, on SQLite
  files and on a throwaway PostgreSQL 15 (``--pushdown-backend``); the keys found are
  checked against the planted ones (exact=yes/no).
Prints ratios; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import gib, peak_rss_bytes, positive_int, print_table, timed

SYSTEMS_INV = ("billing", "sap", "salesforce")
SYSTEMS_CUS = ("billing", "sap", "salesforce", "pim", "wms")
MEMORY_LIMIT = "5GB"

INV_COLS = (
    "number",
    "customer_id",
    "subscription_id",
    "currency",
    "subtotal_minor",
    "tax_minor",
    "total_minor",
    "amount_paid_minor",
    "issue_date",
    "due_date",
    "status",
    "dunning_stage",
    "updated_at",
)
LINE_COLS = ("sku", "quantity", "unit_amount_minor", "amount_minor", "currency")
CUS_COLS = (
    "legal_name",
    "tax_id",
    "billing_address.street",
    "billing_address.city",
    "billing_address.postal_code",
    "billing_address.country",
    "currency",
    "payment_terms",
    "credit_limit_minor",
    "status",
    "segment",
    "updated_at",
)


def _q(name: str) -> str:
    return '"' + name + '"'


# -- staging ------------------------------------------------------------------------------
def stage(path: Path, n: int, drift: float) -> dict[str, int]:
    """Write golden and system tables; returns the planted drift counts."""
    import duckdb

    nc = max(n // 4, 1)
    con = duckdb.connect(str(path))
    con.execute("SET TimeZone='UTC'")
    cut = int(drift * 1_000_000)
    con.execute(f"""
        CREATE TABLE golden_invoice AS SELECT
          'inv-' || lpad(CAST(i AS VARCHAR), 10, '0') AS key,
          'N' || CAST(i AS VARCHAR) AS number,
          'cus-' || lpad(CAST(i % {nc} AS VARCHAR), 10, '0') AS customer_id,
          'sub-' || lpad(CAST(i % {nc} AS VARCHAR), 10, '0') AS subscription_id,
          ['EUR','USD','GBP'][1 + i % 3] AS currency,
          CAST(nl * (1000 + (i % 997) * 10) + 100 * nl * (nl - 1) // 2 AS BIGINT) AS subtotal_minor,
          CAST((nl * (1000 + (i % 997) * 10) + 100 * nl * (nl - 1) // 2) // 5 AS BIGINT)
            AS tax_minor,
          CAST(subtotal_minor + tax_minor AS BIGINT) AS total_minor,
          CAST(CASE WHEN i % 4 = 0 THEN 0 ELSE subtotal_minor + tax_minor END AS BIGINT)
            AS amount_paid_minor,
          DATE '2024-01-01' + CAST(i % 365 AS INTEGER) AS issue_date,
          DATE '2024-01-31' + CAST(i % 365 AS INTEGER) AS due_date,
          CASE WHEN i % 4 = 0 THEN 'open' ELSE 'paid' END AS status,
          CAST(0 AS INTEGER) AS dunning_stage,
          TIMESTAMPTZ '2024-06-01 00:00:00+00' + to_seconds(i % 86400) AS updated_at,
          nl
        FROM (SELECT range AS i, 1 + range % 3 AS nl FROM range({n}))
    """)
    con.execute("""
        CREATE TABLE golden_invoice_line AS SELECT g.key, CAST(j + 1 AS INTEGER) AS line_no,
          'SKU-' || CAST((hash(g.key) + j) % 500 AS VARCHAR) AS sku, CAST(1 AS BIGINT) AS quantity,
          CAST(1000 + (CAST(substr(g.key, 5) AS BIGINT) % 997) * 10 + j * 100 AS BIGINT)
            AS unit_amount_minor,
          unit_amount_minor AS amount_minor, g.currency
        FROM golden_invoice g, range(3) r(j) WHERE j < g.nl
    """)
    con.execute(f"""
        CREATE TABLE golden_customer AS SELECT
          'cus-' || lpad(CAST(i AS VARCHAR), 10, '0') AS key,
          'Customer ' || CAST(i AS VARCHAR) || ' GmbH' AS legal_name,
          'DE' || CAST(100000000 + i AS VARCHAR) AS tax_id,
          CAST(i AS VARCHAR) || ' Main Street' AS "billing_address.street",
          ['Berlin','Paris','London','Madrid'][1 + i % 4] AS "billing_address.city",
          lpad(CAST(i % 99999 AS VARCHAR), 5, '0') AS "billing_address.postal_code",
          ['DE','FR','GB','ES'][1 + i % 4] AS "billing_address.country",
          ['EUR','EUR','GBP','EUR'][1 + i % 4] AS currency,
          'net30' AS payment_terms, CAST(100000 * (1 + i % 50) AS BIGINT) AS credit_limit_minor,
          'active' AS status, ['smb','mid_market','enterprise'][1 + i % 3] AS segment,
          TIMESTAMPTZ '2024-06-01 00:00:00+00' + to_seconds(i % 86400) AS updated_at
        FROM range({nc}) t(i)
    """)
    planted = {"invoice": 0, "invoice_line": 0, "customer": 0}
    inv_sel = ", ".join(_q(c) for c in INV_COLS)
    drifted_inv = inv_sel.replace(
        '"total_minor"', "total_minor + CASE WHEN dk = 0 THEN 1 ELSE 0 END AS total_minor"
    ).replace('"status"', "CASE WHEN dk = 2 THEN 'void' ELSE status END AS status")
    for si, s in enumerate(SYSTEMS_INV):
        d = f"(hash(g.key, {si}) % 1000000) < {cut}"
        k = f"(hash(g.key, {si}, 7) % 5)"
        con.execute(f"""
            CREATE TABLE {s}_invoice AS
            SELECT key, '{s}-' || CAST(row_number() OVER () AS VARCHAR) AS external_id,
              {drifted_inv}
            FROM (SELECT g.*, CASE WHEN {d} THEN {k} ELSE -1 END AS dk FROM golden_invoice g)
            WHERE dk <> 1
            UNION ALL
            SELECT 'orphan-{s}-' || key, 'o-{s}-' || key, {inv_sel}
            FROM golden_invoice g WHERE {d} AND {k} = 4
        """)
        con.execute(f"""
            CREATE TABLE {s}_invoice_line AS
            SELECT l.key, l.line_no, l.sku, l.quantity, l.unit_amount_minor,
              l.amount_minor + CASE WHEN dk = 3 AND l.line_no = 1 THEN 5 ELSE 0 END AS amount_minor,
              l.currency
            FROM golden_invoice_line l JOIN (
              SELECT g.key, CASE WHEN {d} THEN {k} ELSE -1 END AS dk FROM golden_invoice g) x
              USING (key)
            WHERE dk <> 1
        """)
        if s == "sap":  # SAP reports instants with an offset: same instant, other text
            con.execute("""
                CREATE OR REPLACE TABLE sap_invoice AS SELECT * REPLACE (
                  strftime(updated_at AT TIME ZONE 'Europe/Berlin', '%Y-%m-%dT%H:%M:%S')
                  || '+02:00' AS updated_at) FROM sap_invoice""")
        row = con.execute(f"""
            SELECT count(*) FILTER (WHERE {d}),
                   coalesce(sum(nl) FILTER (WHERE {d} AND {k} = 1), 0)
            FROM golden_invoice g""").fetchall()[0]
        planted["invoice"] += (
            int(row[0])
            - con.execute(
                f"SELECT count(*) FROM golden_invoice g WHERE {d} AND {k} = 3"
            ).fetchall()[0][0]
        )
        planted["invoice_line"] += (
            int(row[1])
            + con.execute(
                f"SELECT count(*) FROM golden_invoice g WHERE {d} AND {k} = 3"
            ).fetchall()[0][0]
        )
    cus_sel = ", ".join(_q(c) for c in CUS_COLS)
    for si, s in enumerate(SYSTEMS_CUS):
        d = f"(hash(g.key, {si + 10}) % 1000000) < {cut}"
        k = f"(hash(g.key, {si + 10}, 7) % 5)"
        sel = (
            cus_sel.replace(
                '"legal_name"',
                "CASE WHEN dk = 0 THEN 'X' || legal_name WHEN hash(key) % 10 = 0 "
                "THEN upper(legal_name) || '  ' ELSE legal_name END AS legal_name",
            )
            .replace(
                '"billing_address.city"',
                "CASE WHEN dk = 2 THEN 'Rome' ELSE \"billing_address.city\" END "
                'AS "billing_address.city"',
            )
            .replace(
                '"credit_limit_minor"',
                "credit_limit_minor + CASE WHEN dk = 3 THEN 1 ELSE 0 END AS credit_limit_minor",
            )
        )
        con.execute(f"""
            CREATE TABLE {s}_customer AS
            SELECT key, '{s}-c' || CAST(row_number() OVER () AS VARCHAR) AS external_id, {sel}
            FROM (SELECT g.*, CASE WHEN {d} THEN {k} ELSE -1 END AS dk FROM golden_customer g)
            WHERE dk <> 1
            UNION ALL
            SELECT 'orphan-{s}-' || key, 'o-{s}-' || key, {cus_sel}
            FROM golden_customer g WHERE {d} AND {k} = 4
        """)
        planted["customer"] += con.execute(
            f"SELECT count(*) FROM golden_customer g WHERE {d}"
        ).fetchall()[0][0]
    con.execute("ALTER TABLE golden_invoice DROP COLUMN nl")
    con.execute("CHECKPOINT")
    con.close()
    return planted


# -- workers (each runs in its own process) ----------------------------------------------
def work_hub(path: str) -> dict[str, Any]:
    import duckdb

    from hub.mapping.spec import CompareRule
    from hub.recon.compare import Child, compare

    con = duckdb.connect(path, read_only=True)
    con.execute(f"SET memory_limit='{MEMORY_LIMIT}'; SET TimeZone='UTC'")
    rules = {
        "legal_name": CompareRule(rule="fold"),
        "updated_at": CompareRule(rule="timestamp"),
        "quantity": CompareRule(rule="abs", tolerance=0.0),
    }
    found: dict[str, int] = {"invoice": 0, "invoice_line": 0, "customer": 0}
    rows = 0
    start = time.perf_counter()
    for s in SYSTEMS_INV:
        f = compare(
            con,
            "golden_invoice",
            f"{s}_invoice",
            entity="invoice",
            system=s,
            rules=rules,
            amount_field="total_minor",
        )
        found["invoice"] += f.num_rows
        f = compare(
            con,
            "golden_invoice_line",
            f"{s}_invoice_line",
            entity="invoice",
            system=s,
            rules=rules,
            child=Child("lines", "line_no"),
            amount_field="amount_minor",
        )
        found["invoice_line"] += f.num_rows
    for s in SYSTEMS_CUS:
        f = compare(
            con, "golden_customer", f"{s}_customer", entity="customer", system=s, rules=rules
        )
        found["customer"] += f.num_rows
    seconds = time.perf_counter() - start
    for t in (
        [f"{s}_invoice" for s in SYSTEMS_INV]
        + [f"{s}_invoice_line" for s in SYSTEMS_INV]
        + [f"{s}_customer" for s in SYSTEMS_CUS]
    ):
        rows += con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0]
    return {"seconds": seconds, "peak": peak_rss_bytes(), "found": found, "rows": rows}


def _floor_part(
    golden: str, systems: tuple[str, ...], suffix: str, cols: tuple[str, ...], keys: tuple[str, ...]
) -> str:
    def canon(c: str) -> str:
        if c == "legal_name":
            return "lower(trim(regexp_replace(legal_name, '\\s+', ' ', 'g')))"
        if c == "updated_at":
            return "epoch(CAST(updated_at AS TIMESTAMPTZ))"
        return _q(c)

    h = "hash(" + ", ".join(canon(c) for c in cols) + ")"
    k = ", ".join(keys)
    ctes = [f"g AS (SELECT {k}, {h} AS h FROM {golden})"] + [
        f"s{i} AS (SELECT {k}, {h} AS h FROM {s}_{suffix})" for i, s in enumerate(systems)
    ]
    joins = " ".join(f"FULL OUTER JOIN s{i} USING ({k})" for i in range(len(systems)))
    cond = " OR ".join(f"g.h IS DISTINCT FROM s{i}.h" for i in range(len(systems)))
    return f"(WITH {', '.join(ctes)} SELECT count(*) AS n FROM g {joins} WHERE {cond})"


def work_floor(path: str) -> dict[str, Any]:
    import duckdb

    con = duckdb.connect(path, read_only=True)
    con.execute(f"SET memory_limit='{MEMORY_LIMIT}'; SET TimeZone='UTC'")
    sql = " UNION ALL ".join(
        [
            "SELECT n FROM "
            + _floor_part("golden_invoice", SYSTEMS_INV, "invoice", INV_COLS, ("key",)),
            "SELECT n FROM "
            + _floor_part(
                "golden_invoice_line", SYSTEMS_INV, "invoice_line", LINE_COLS, ("key", "line_no")
            ),
            "SELECT n FROM "
            + _floor_part("golden_customer", SYSTEMS_CUS, "customer", CUS_COLS, ("key",)),
        ]
    )
    seconds, rows = timed(lambda: con.execute(sql).fetchall())
    return {"seconds": seconds, "peak": peak_rss_bytes(), "drifted_keys": [r[0] for r in rows]}


def work_peer(path: str, rows: int) -> dict[str, Any]:
    import datacompy
    import duckdb

    con = duckdb.connect(path, read_only=True)
    cols = ", ".join(_q(c) for c in INV_COLS)
    g = con.execute(f"SELECT key, {cols} FROM golden_invoice ORDER BY key LIMIT {rows}").df()
    last = g["key"].iloc[-1]
    s = con.execute(
        f"SELECT key, {cols} FROM billing_invoice WHERE key <= '{last}' ORDER BY key"
    ).df()
    seconds, cmp = timed(lambda: datacompy.PandasCompare(g, s, join_columns="key"))
    mismatches = len(cmp.all_mismatch())
    return {
        "seconds": seconds,
        "rows": len(s),
        "peak": peak_rss_bytes(),
        "mismatch_rows": mismatches,
    }


def work_hub_pair(path: str, rows: int) -> dict[str, Any]:
    """The hub on exactly the peer's pair and slice, for a like-for-like per-row figure."""
    import duckdb

    from hub.recon.compare import compare

    con = duckdb.connect(path, read_only=True)
    con.execute("SET TimeZone='UTC'")
    last = con.execute(
        f"SELECT max(key) FROM (SELECT key FROM golden_invoice ORDER BY key LIMIT {rows})"
    ).fetchall()[0][0]
    g = con.sql(f"SELECT * FROM golden_invoice WHERE key <= '{last}'")
    s = con.sql(f"SELECT * FROM billing_invoice WHERE key <= '{last}'")
    n = con.execute(f"SELECT count(*) FROM billing_invoice WHERE key <= '{last}'").fetchall()[0][0]
    seconds, f = timed(lambda: compare(con, g, s, entity="invoice", system="billing"))
    return {"seconds": seconds, "rows": n, "findings": f.num_rows}


# -- pushdown -----------------------------------------------------------------------------
PD_COLS = (
    "hub_id",
    "number",
    "customer_id",
    "currency",
    "subtotal_minor",
    "tax_minor",
    "total_minor",
    "status",
    "issue_date",
    "updated_at",
)
# drift: ~cut per million rows changed (total), deleted, or added (at id + n + 10)
PD_PICK = "(id * 2654435761) % 1000003 < {cut}"


def _planted_sql(n: int, cut: int) -> dict[str, str]:
    """Queries (over the undrifted golden copy) for the keys the drift touches."""
    pick = PD_PICK.format(cut=cut)
    return {
        "changed": f"SELECT id FROM invoices WHERE {pick} AND id % 3 = 0 ORDER BY id",
        "deleted": f"SELECT id FROM invoices WHERE {pick} AND id % 3 = 1 ORDER BY id",
        "added": f"SELECT id + {n} + 10 FROM invoices WHERE {pick} AND id % 3 = 2 ORDER BY id",
    }


def _drift_sql(n: int, cut: int) -> str:
    pick = PD_PICK.format(cut=cut)
    return f"""
        UPDATE invoices SET total_minor = total_minor + 1 WHERE {pick} AND id % 3 = 0;
        DELETE FROM invoices WHERE {pick} AND id % 3 = 1;
        INSERT INTO invoices SELECT id + {n} + 10, 'x' || hub_id, number, customer_id,
          currency, subtotal_minor, tax_minor, total_minor, status, issue_date, updated_at
          FROM invoices WHERE {pick} AND id % 3 = 2;
    """


def stage_sqlite(dirpath: Path, n: int, drift: float) -> dict[str, list[int]]:
    """billing.sqlite and golden.sqlite (n invoices, unique index on hub_id), drift in
    billing; writes and returns the planted keys."""
    import sqlite3

    cut = int(drift * 1_000_000)
    planted: dict[str, list[int]] = {}
    for name in ("golden", "billing"):
        path = dirpath / f"{name}.sqlite"
        path.unlink(missing_ok=True)
        db = sqlite3.connect(path)
        db.executescript(f"""
            PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;
            CREATE TABLE invoices (id INTEGER PRIMARY KEY, hub_id TEXT NOT NULL UNIQUE,
              number TEXT, customer_id TEXT, currency TEXT, subtotal_minor INTEGER,
              tax_minor INTEGER, total_minor INTEGER, status TEXT, issue_date TEXT,
              updated_at TEXT);
            WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < {n})
            INSERT INTO invoices SELECT i, printf('inv-%010d', i), 'N' || i,
              printf('cus-%010d', i % 250000), 'EUR', 1000 + i % 997, (1000 + i % 997) / 5,
              1000 + i % 997 + (1000 + i % 997) / 5, CASE i % 4 WHEN 0 THEN 'open' ELSE 'paid' END,
              date('2024-01-01', '+' || (i % 365) || ' days'),
              '2024-06-01T00:00:00+00:00' FROM c;
        """)
        if name == "golden":
            for kind, sql in _planted_sql(n, cut).items():
                planted[kind] = [r[0] for r in db.execute(sql)]
        else:
            db.executescript(_drift_sql(n, cut))
        db.commit()
        db.close()
    (dirpath / "planted.json").write_text(json.dumps(planted))
    return planted


PG_TABLE = """
    CREATE TABLE invoices (id bigint NOT NULL, hub_id text NOT NULL, number text,
      customer_id text, currency text, subtotal_minor bigint, tax_minor bigint,
      total_minor bigint, status text, issue_date date, updated_at timestamptz);
    INSERT INTO invoices SELECT i, 'inv-' || lpad(i::text, 10, '0'), 'N' || i,
      'cus-' || lpad((i % 250000)::text, 10, '0'), 'EUR', 1000 + i % 997,
      (1000 + i % 997) / 5, 1000 + i % 997 + (1000 + i % 997) / 5,
      CASE i % 4 WHEN 0 THEN 'open' ELSE 'paid' END, date '2024-01-01' + (i % 365)::int,
      timestamptz '2024-06-01 00:00:00+00' FROM generate_series(1, {n}) i;
    ALTER TABLE invoices ADD PRIMARY KEY (id);
    CREATE UNIQUE INDEX invoices_hub_id ON invoices (hub_id);
"""


def stage_postgresql(server_url: str, n: int, drift: float, workdir: Path) -> dict[str, Any]:
    """Databases billing and golden in one throwaway cluster, each with n invoices (bulk
    INSERT ... SELECT generate_series, then primary key and unique hub_id index), drift in
    billing, VACUUM ANALYZE (so count(*) can use an index-only scan). Both loads run at
    once; returns the two URLs and the planted keys."""
    from concurrent.futures import ThreadPoolExecutor

    import sqlalchemy as sa

    from sandbox.postgres import fresh_database

    cut = int(drift * 1_000_000)
    urls = {name: fresh_database(server_url, name) for name in ("billing", "golden")}
    planted: dict[str, list[int]] = {}

    def load(name: str) -> None:
        engine = sa.create_engine(urls[name], isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            raw: Any = conn.connection.driver_connection
            with raw.cursor() as cur:
                cur.execute(PG_TABLE.format(n=n))
                if name == "golden":
                    for kind, sql in _planted_sql(n, cut).items():
                        cur.execute(sql)
                        planted[kind] = [r[0] for r in cur.fetchall()]
                else:
                    cur.execute(_drift_sql(n, cut))
                cur.execute("VACUUM (ANALYZE) invoices")
                cur.execute("CHECKPOINT")
        engine.dispose()

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(load, ("billing", "golden")))
    (workdir / "planted.json").write_text(json.dumps(planted))
    return {"urls": urls, "planted": planted}


def work_pushdown(backend: str, where: str, n: int) -> dict[str, Any]:
    """count(*) over billing (warm, best of 3) against hashdiff(golden, billing) (best of
    ``repeat``: 3 on PostgreSQL, 1 on SQLite, where a run takes minutes at 10M)."""
    import sqlalchemy as sa

    from hub.recon.pushdown import SqlTable, hashdiff

    if backend == "sqlite":
        billing = sa.create_engine(f"sqlite:///{where}/billing.sqlite")
        golden = sa.create_engine(f"sqlite:///{where}/golden.sqlite")
        planted = json.loads((Path(where) / "planted.json").read_text())
        repeat = 1
    else:
        urls = json.loads(where)
        billing, golden = sa.create_engine(urls["billing"]), sa.create_engine(urls["golden"])
        planted = json.loads((Path(urls["workdir"]) / "planted.json").read_text())
        repeat = 3
    count_sql = sa.text("SELECT count(*) FROM invoices")
    plan = ""
    with billing.connect() as c:
        c.execute(count_sql).scalar()  # warm the cache
        times: list[float] = []
        count = 0
        for _ in range(3):
            start = time.perf_counter()
            count = int(c.execute(count_sql).scalar_one())
            times.append(time.perf_counter() - start)
        count_s = min(times)
        if backend == "postgresql":
            lines = [r[0] for r in c.execute(sa.text("EXPLAIN SELECT count(*) FROM invoices"))]
            plan = next((ln.strip(" ->") for ln in lines if "Scan" in ln), "").split("  ")[0]
    runs: list[float] = []
    diff = None
    for _ in range(repeat):
        s, diff = timed(
            lambda: hashdiff(
                SqlTable(golden, "invoices", "id", PD_COLS),
                SqlTable(billing, "invoices", "id", PD_COLS),
            )
        )
        runs.append(s)
    assert diff is not None
    exact = (diff.differing, diff.only_a, diff.only_b) == (
        planted["changed"],
        planted["deleted"],
        planted["added"],
    )
    return {
        "count_seconds": count_s,
        "count": count,
        "count_plan": plan,
        "seconds": min(runs),
        "runs": runs,
        "hash": diff.hash,
        "differing": len(diff.differing),
        "only_golden": len(diff.only_a),
        "only_billing": len(diff.only_b),
        "planted": {k: len(v) for k, v in planted.items()},
        "exact": exact,
        "queries": diff.queries,
        "segments": diff.segments_checked,
        "rows_fetched": diff.rows_fetched,
        "bytes_moved": diff.bytes_moved,
        "peak": peak_rss_bytes(),
    }


def run_pushdown(backend: str, workdir: Path, n: int, drift: float) -> dict[str, Any]:
    """Stage (timed) and measure one backend; the PostgreSQL cluster lives for this call."""
    if backend == "sqlite":
        st, _ = timed(lambda: stage_sqlite(workdir, n, drift))
        return {**_run_worker("pushdown", "sqlite", str(workdir), str(n)), "staged": st}
    from sandbox.postgres import throwaway_postgres

    with throwaway_postgres("postgres_bench") as server:
        st, staged = timed(lambda: stage_postgresql(server, n, drift, workdir))
        where = json.dumps({**staged["urls"], "workdir": str(workdir)})
        return {**_run_worker("pushdown", "postgresql", where, str(n)), "staged": st}


def _run_worker(*args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.recon", "--worker", *args], capture_output=True, text=True
    )
    if out.returncode:
        raise SystemExit(f"worker {args[0]} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rows", type=positive_int, default=1_000_000)
    p.add_argument("--drift", type=float, default=0.001)
    p.add_argument("--peer-rows", type=positive_int, default=200_000)
    p.add_argument("--pushdown-rows", type=positive_int, default=None, help="default: --rows")
    p.add_argument(
        "--pushdown-backend",
        default="sqlite,postgresql",
        help="comma list: sqlite (files), postgresql (a throwaway PostgreSQL 15 cluster)",
    )
    p.add_argument("--skip", default="", help="comma list of steps to skip: peer,pushdown")
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        kind, *rest = a.worker
        fn = {"hub": work_hub, "floor": work_floor}.get(kind)
        if fn:
            result = fn(rest[0])
        elif kind == "peer":
            result = work_peer(rest[0], int(rest[1]))
        elif kind == "hubpair":
            result = work_hub_pair(rest[0], int(rest[1]))
        else:
            result = work_pushdown(rest[0], rest[1], int(rest[2]))
        print(json.dumps(result))
        return
    skip = set(filter(None, a.skip.split(",")))
    workdir = a.workdir or Path(tempfile.mkdtemp(prefix="recon-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / "stage.duckdb"
    db.unlink(missing_ok=True)
    print(f"staging {a.rows:,} invoices/system, drift {a.drift:.3%} in {workdir} ...", flush=True)
    stage_s, planted = timed(lambda: stage(db, a.rows, a.drift))
    print(f"staged in {stage_s:.1f}s; planted {planted}", flush=True)
    hub = _run_worker("hub", str(db))
    floor = _run_worker("floor", str(db))
    rows: list[list[Any]] = [
        [
            "hub compare (11 pairs)",
            f"{hub['seconds']:.2f}s",
            gib(hub["peak"]),
            f"{hub['seconds'] / floor['seconds']:.2f}x floor",
        ],
        ["floor (1 DuckDB query)", f"{floor['seconds']:.2f}s", gib(floor["peak"]), "1.00x"],
    ]
    exact = hub["found"] == planted
    notes = [
        f"hub findings {hub['found']} vs planted {planted}: {'exact' if exact else 'DIFFERENT'}",
        f"rows compared (system sides): {hub['rows']:,}",
    ]
    if "peer" not in skip:
        m = min(a.rows, a.peer_rows)
        peer = _run_worker("peer", str(db), str(m))
        pair = _run_worker("hubpair", str(db), str(m))
        hub_row = hub["seconds"] / hub["rows"]
        peer_row = peer["seconds"] / peer["rows"]
        pair_row = pair["seconds"] / pair["rows"]
        rows.append(
            [
                f"peer datacompy ({peer['rows']:,} rows)",
                f"{peer['seconds']:.2f}s",
                gib(peer["peak"]),
                f"{peer_row * 1e6:.2f} us/row = {peer_row / hub_row:.0f}x hub",
            ]
        )
        rows.append(
            [
                f"hub on the peer's pair ({pair['rows']:,} rows)",
                f"{pair['seconds']:.2f}s",
                "-",
                f"{pair_row * 1e6:.3f} us/row ({peer_row / pair_row:.0f}x faster than peer)",
            ]
        )
        notes.append(f"hub per row over the full run: {hub_row * 1e6:.3f} us")
    if "pushdown" not in skip:
        n = a.pushdown_rows or a.rows
        for backend in filter(None, a.pushdown_backend.split(",")):
            label = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}[backend]
            print(f"pushdown on {label}: staging 2 x {n:,} rows ...", flush=True)
            pd = run_pushdown(backend, workdir, n, a.drift)
            ratio = pd["seconds"] / pd["count_seconds"]
            rows.append(
                [
                    f"count(*) {label} billing ({pd['count']:,} rows)",
                    f"{pd['count_seconds']:.3f}s",
                    "-",
                    "1.00x",
                ]
            )
            rows.append(
                [
                    f"pushdown {label} ({pd['hash']}, exact={'yes' if pd['exact'] else 'no'})",
                    f"{pd['seconds']:.2f}s",
                    gib(pd["peak"]),
                    f"{ratio:.1f}x count(*)",
                ]
            )
            notes.append(
                f"pushdown {label} (staged in {pd['staged']:.0f}s; runs "
                + ", ".join(f"{r:.2f}s" for r in pd["runs"])
                + f"; count(*) plan: {pd['count_plan'] or '-'}): differing {pd['differing']}, "
                f"only golden {pd['only_golden']}, only billing {pd['only_billing']} vs planted "
                f"{pd['planted']} -> exact={'yes' if pd['exact'] else 'no'}; {pd['queries']} "
                f"queries, {pd['segments']:,} segment checksums, {pd['rows_fetched']:,} pairs, "
                f"~{pd['bytes_moved']:,} bytes moved; ratio {ratio:.1f}x count(*)"
            )
    print()
    print_table(["step", "time", "peak RSS", "ratio"], rows)
    print()
    for line in notes:
        print(line)
    print(f"(2 cores: {os.cpu_count()} CPUs visible; DuckDB memory_limit {MEMORY_LIMIT})")


if __name__ == "__main__":
    main()

"""Subscription analytics benchmark: a full recompute against a floor.

    .venv/bin/python -m bench.metrics --subscriptions 1000000 [--months 12]

Generates a synthetic golden book straight into a DuckDB file, columnarly (SQL over
``range()``, no Python object per row): subscriptions in nine currencies, every status and
billing period, pause dates (current pauses, ended ones), 1-2 items (per unit, graduated,
usage), a year of invoices with lines, dunning runs (one event per stage reached) and
write-offs - the ``a_*`` views ``hub.analytics.compute`` reads. Then, each in a fresh
process (so peak RSS is that step's own):

- hub: ``compute_metrics`` (MRR grid, movements in every currency, cohorts, dunning);
- floor: one DuckDB aggregate over the same lines (billed amount per currency and month).

Prints wall and CPU seconds (user + system, every DuckDB thread; the machine may be
shared, so CPU is the steadier figure), peak RSS and the ratios to the floor measured in
the same run, with the commit and the load average; asserts only that the movement
identity holds.
The store loader (golden JSON -> Arrow) is measured by bench/recon.py, not here.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

from bench._common import cpu_seconds, gib, peak_rss_bytes, positive_int, print_table, timed

AS_OF = date(2025, 6, 30)
MEMORY_LIMIT = "5GB"

GENERATE = """
CREATE TABLE a_customers AS
SELECT 'C' || i AS customer_id, 'Customer ' || i AS legal_name,
       ['smb', 'mid_market', 'enterprise'][1 + i % 3] AS segment,
       ['USD','USD','USD','USD','EUR','EUR','GBP','JPY','CAD','AUD','CHF','SEK','KWD']
           [1 + (i * 7) % 13] AS currency
FROM range($customers) t(i);

CREATE TABLE a_subs AS
WITH r AS (
    SELECT i, (i * 2654435761) % 1000 AS h, (i * 40503) % 997 AS h2, i % $customers AS c
    FROM range($subs) t(i)
)
SELECT 'S' || i AS sub_id, 'C' || c AS customer_id, cu.currency,
       CASE WHEN h < 550 THEN 1 WHEN h < 750 THEN 3 ELSE 12 END AS months,
       CASE WHEN h2 < 680 THEN 'active' WHEN h2 < 730 THEN 'trialing'
            WHEN h2 < 810 THEN 'past_due' WHEN h2 < 860 THEN 'paused' ELSE 'canceled' END
           AS status,
       (DATE '2025-06-30' - CAST(40 + (h * 7 + h2) % 960 AS INTEGER)) AS start_date,
       CASE WHEN h2 >= 860 THEN DATE '2025-06-30' - CAST(1 + h2 % 200 AS INTEGER) END
           AS end_date,
       CASE WHEN h2 BETWEEN 680 AND 729 THEN DATE '2025-07-15' END AS trial_end,
       CAST(TIMESTAMPTZ '2025-06-30 12:00:00+00'
            - to_days(CAST(h2 % 120 AS INTEGER)) AS TIMESTAMPTZ) AS updated_at,
       -- pause dates: most paused ones since a day before their last edit (the rest keep
       -- a paused status without dates); 4 % active again after a pause that ended
       CASE WHEN h2 BETWEEN 810 AND 849 THEN DATE '2025-06-30' - CAST(30 + h2 % 150 AS INTEGER)
            WHEN h2 < 40 THEN DATE '2025-06-30' - CAST(120 + h2 % 60 AS INTEGER) END
           AS paused_at,
       CASE WHEN h2 < 40 THEN DATE '2025-06-30' - CAST(30 + h2 % 60 AS INTEGER) END
           AS resume_at
FROM r JOIN (SELECT row_number() OVER () - 1 AS c, currency FROM a_customers) cu USING (c);

CREATE TABLE a_items AS
SELECT sub_id, sub_id || '-1' AS item_id, 'SEAT' AS sku,
       CAST(1 + hash(sub_id) % 40 AS BIGINT) AS quantity, 'per_unit' AS kind,
       0::BIGINT AS flat, 2900::BIGINT * months AS unit,
       []::STRUCT(up_to BIGINT, unit_amount_minor BIGINT, flat_amount_minor BIGINT)[] AS tiers,
       CASE WHEN hash(sub_id) % 5 = 0 THEN 1000 ELSE 0 END AS discount_bps
FROM a_subs
UNION ALL
SELECT sub_id, sub_id || '-2', CASE WHEN hash(sub_id) % 2 = 0 THEN 'API' ELSE 'STOR' END,
       CAST(1 + hash(sub_id) % 30 AS BIGINT),
       CASE WHEN hash(sub_id) % 2 = 0 THEN 'usage' ELSE 'graduated' END,
       0, CASE WHEN hash(sub_id) % 2 = 0 THEN 45 ELSE 0 END,
       CASE WHEN hash(sub_id) % 2 = 0 THEN []
            ELSE [{'up_to': 10, 'unit_amount_minor': 2500 * months, 'flat_amount_minor': 0},
                  {'up_to': NULL, 'unit_amount_minor': 1500 * months, 'flat_amount_minor': 0}]
       END, 0
FROM a_subs WHERE hash(sub_id) % 10 < 3;

CREATE TABLE a_invoices AS
WITH s AS (
    SELECT *, coalesce(trial_end, start_date) AS billed_from,
           least(coalesce(end_date - 1, DATE '2025-06-30'), DATE '2025-06-30') AS stop
    FROM a_subs WHERE status <> 'trialing'
), p AS (
    SELECT s.sub_id, s.customer_id, s.currency, s.months, k,
           CAST(s.billed_from + to_months(CAST(k * s.months AS INTEGER)) AS DATE) AS ps
    FROM s, unnest(generate_series(0, date_diff('month', s.billed_from, s.stop) // s.months))
        AS g(k)
)
SELECT sub_id || '-' || k AS invoice_id, customer_id, sub_id AS subscription_id, currency,
       ps AS issue_date, months, ps,
       CAST(ps + to_months(months) AS DATE) - 1 AS pe,
       CASE WHEN hash(sub_id || k) % 100 < 90 THEN 'paid'
            WHEN hash(sub_id || k) % 100 < 96 THEN 'open'
            WHEN hash(sub_id || k) % 100 < 98 THEN 'uncollectible' ELSE 'void' END AS status,
       CASE WHEN hash(sub_id || k) % 100 BETWEEN 88 AND 97
            THEN 1 + hash(sub_id || k) % 4 ELSE 0 END AS dunning_stage
FROM p WHERE ps <= DATE '2025-06-30' AND ps > DATE '2024-06-30';

CREATE TABLE a_lines AS
SELECT inv.invoice_id, i.sku,
       CASE WHEN i.kind = 'usage' THEN 45 * (hash(inv.invoice_id) % 2000)
            ELSE net_amount(gross_amount(i.kind, i.flat, i.unit, i.tiers,
                                         i.quantity::HUGEINT), i.discount_bps)::BIGINT
       END AS amount_minor,
       inv.ps AS period_start, inv.pe AS period_end
FROM a_invoices inv JOIN a_items i ON i.sub_id = inv.subscription_id;

CREATE TABLE a_inv_totals AS
SELECT invoice_id, sum(amount_minor) AS total FROM a_lines GROUP BY invoice_id;
ALTER TABLE a_invoices ADD COLUMN total_minor BIGINT;
ALTER TABLE a_invoices ADD COLUMN amount_paid_minor BIGINT;
UPDATE a_invoices SET total_minor = t.total,
       amount_paid_minor = CASE WHEN a_invoices.status = 'paid' THEN t.total ELSE 0 END
FROM a_inv_totals t WHERE t.invoice_id = a_invoices.invoice_id;
DROP TABLE a_inv_totals;

CREATE TABLE a_dunning AS
SELECT invoice_id, j AS stage,
       issue_date + CAST([1, 15, 30, 60][j] AS INTEGER) AS reached_on,
       CASE WHEN j < dunning_stage THEN 'retried' WHEN status = 'paid' THEN 'paid'
            WHEN status = 'uncollectible' THEN 'written_off' END AS outcome
FROM a_invoices, unnest(generate_series(1, CAST(dunning_stage AS BIGINT))) AS g(j)
WHERE dunning_stage >= 1;
"""

FLOOR = """
SELECT inv.currency, date_trunc('month', l.period_start) AS month,
       sum(l.amount_minor) AS billed, count(DISTINCT inv.subscription_id) AS subs
FROM a_lines l JOIN a_invoices inv USING (invoice_id)
WHERE inv.status <> 'void'
GROUP BY ALL
"""


def _connect(path: Path, read_only: bool = False) -> Any:
    import duckdb

    con = duckdb.connect(str(path), read_only=read_only)
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
    return con


def generate(path: Path, subscriptions: int) -> dict[str, int]:
    from hub.analytics.compute import _MACROS

    con = _connect(path)
    con.execute(_MACROS)
    customers = max(1, subscriptions * 7 // 10)
    for statement in GENERATE.split(";\n"):
        if statement.strip():
            # both values are ints from argparse, formatted in as literals
            sql = statement.replace("$customers", str(int(customers)))
            con.execute(sql.replace("$subs", str(int(subscriptions))))
    counts = {
        t: int(con.execute(f"SELECT count(*) FROM {t}").fetchone()[0])
        for t in ("a_customers", "a_subs", "a_items", "a_invoices", "a_lines", "a_dunning")
    }
    con.close()
    return counts


def step(name: str, path: Path, months: int) -> dict[str, object]:
    con = _connect(path)
    cpu = cpu_seconds()
    if name == "floor":
        seconds, rows = timed(lambda: con.execute(FLOOR).fetchall())
        return {"seconds": seconds, "cpu": cpu_seconds() - cpu, "rows": len(rows),
                "peak_rss": peak_rss_bytes()}  # fmt: skip
    from hub.analytics.compute import compute_metrics

    seconds, metrics = timed(lambda: compute_metrics(con, AS_OF, months=months, reporting="USD"))
    cpu = cpu_seconds() - cpu
    errors = metrics.identity_errors()
    return {
        "seconds": seconds,
        "cpu": cpu,
        "peak_rss": peak_rss_bytes(),
        "identity_errors": len(errors),
        "mrr_rep": metrics.summary["mrr_rep"],
        "paying_customers": metrics.summary["paying_customers"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscriptions", type=positive_int, default=100_000)
    parser.add_argument("--months", type=positive_int, default=12)
    parser.add_argument("--step", choices=("hub", "floor"), help=argparse.SUPPRESS)
    parser.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        print(json.dumps(step(args.step, args.db, args.months)))
        return
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as tmp:
        db = Path(tmp) / "book.duckdb"
        started = time.perf_counter()
        counts = generate(db, args.subscriptions)
        print(f"generated in {time.perf_counter() - started:.1f} s: "
              + ", ".join(f"{k[2:]} {v:,}" for k, v in counts.items()))  # fmt: skip
        results = {}
        for name in ("floor", "hub"):
            done = subprocess.run(
                [sys.executable, "-m", "bench.metrics", "--step", name, "--db", str(db),
                 "--months", str(args.months)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            results[name] = json.loads(done.stdout.strip().splitlines()[-1])
    floor, hub = results["floor"], results["hub"]
    print_table(
        ("step", "wall s", "CPU s", "peak RSS", "x floor wall", "x floor CPU"),
        [
            ("floor: one aggregate over the lines", f"{floor['seconds']:.2f}",
             f"{floor['cpu']:.2f}", gib(float(floor["peak_rss"])), "1.0", "1.0"),
            ("hub: full metrics recompute", f"{hub['seconds']:.2f}", f"{hub['cpu']:.2f}",
             gib(float(hub["peak_rss"])), f"{hub['seconds'] / floor['seconds']:.1f}",
             f"{hub['cpu'] / max(floor['cpu'], 1e-9):.1f}"),
        ],
    )  # fmt: skip
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"commit {_commit()}; {os.cpu_count()} CPUs, load average {load}; "
          f"DuckDB memory limit {MEMORY_LIMIT}")  # fmt: skip
    print(f"identity errors: {hub['identity_errors']}; MRR {hub['mrr_rep']:,} USD minor units; "
          f"paying customers {hub['paying_customers']:,}")  # fmt: skip
    if hub["identity_errors"]:
        raise SystemExit("the MRR movement identity does not hold")


def _commit() -> str:
    """The checked-out commit, marked when the code measured here (hub/analytics, this
    benchmark) differs from it; ``unknown`` outside a git checkout."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=root)

    try:
        head = git("rev-parse", "--short=10", "HEAD")
        diff = git("diff", "--quiet", "HEAD", "--", "hub/analytics", "bench/metrics.py",
                   "bench/_common.py")  # fmt: skip
    except OSError:
        return "unknown"
    if head.returncode:
        return "unknown"
    return head.stdout.strip() + (" + uncommitted analytics changes" if diff.returncode else "")


if __name__ == "__main__":
    main()

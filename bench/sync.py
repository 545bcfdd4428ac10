"""Sync throughput through the sandbox: initial load, a no-op rerun and a 1% incremental.

    .venv/bin/python -m bench.sync [--customers 2000]

Seeds the sandbox (billing SQLite + Salesforce/SAP/PIM/WMS emulators; seed time printed on
its own) and then measures, in one process and one landscape:

- floor: every connector reads every entity it offers (``read_changes(entity, None)``
  consumed to the end) with no mapping, merging or store - the least a full sync can cost;
- initial: one ``SyncEngine.run()`` into an empty hub store (seconds, records read per
  second, golden records created, API calls per system and per 1,000 records read);
- rerun: a second ``run()`` straight after (should write nearly nothing);
- incremental: 1% of customers' Salesforce accounts renamed and 1% of billing
  subscriptions paused, then ``run()`` again; its time and calls as ratios of the initial
  load, next to the change share.

Figures are ratios against the floor (and the initial load) measured in the same run.
Peak RSS is the whole process's, so it includes the in-process emulators.
Asserts nothing.

Measured figures (2,000, 10,000 and 100,000 customers on this 2-core box) are in
docs/sync.md, "Throughput".
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench._common import (
    Timing,
    commit_and_load,
    gib,
    measured,
    peak_rss_bytes,
    positive_int,
    print_table,
    timed,
)
from connectors import registry
from connectors.base import Connector
from hub.sync.collector import collector_spared
from hub.systems import connect
from sandbox.runner import SandboxHandle, running_sandbox

CHANGE_SHARE = 0.01
Report = dict[str, dict[str, dict[str, int]]]


def build_connectors(env: Mapping[str, str]) -> dict[str, Connector]:
    return {s: connect(s, env) for s in registry.configured_systems(env)}


def close_all(connectors: Mapping[str, Connector]) -> None:
    for c in connectors.values():
        c.close()


def floor_read(env: Mapping[str, str]) -> tuple[Timing, dict[str, int]]:
    """Time to read every entity of every connector, and records read per system."""
    connectors = build_connectors(env)
    read: dict[str, int] = {}

    def read_all() -> None:
        # with the collector treatment a pull has (hub.sync.collector): the ratio then
        # compares the hub's work, not how often each walks the in-process emulators
        with collector_spared():
            for system, connector in connectors.items():
                n = 0
                for entity in connector.entities():
                    for batch in connector.read_changes(entity, None):
                        n += len(batch.records)
                read[system] = n

    try:
        timing, _ = measured(read_all)
    finally:
        close_all(connectors)
    return timing, read


def sync_run(url: str, env: Mapping[str, str]) -> tuple[Timing, Report, int]:
    """One SyncEngine.run(): its timing, its report and the SQL statements it sent to the
    hub store (an executemany counts once)."""
    from hub.store import create_store_engine
    from hub.sync.engine import SyncEngine

    connectors = build_connectors(env)
    engine = create_store_engine(url)
    statements = [0]

    def count(*_: Any) -> None:
        statements[0] += 1

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        timing, report = measured(lambda: SyncEngine(engine, connectors).run())
    finally:
        close_all(connectors)
        engine.dispose()
    return timing, report, statements[0]


def total(report: Report, key: str, *, hub: bool = False) -> int:
    return sum(
        counts[key]
        for system, per_entity in report.items()
        if (system == "hub") == hub
        for counts in per_entity.values()
    )


def pick_allocations(env: Mapping[str, str], k: int) -> int:
    """Move k reserved WMS allocations to picked through the WMS REST API, as a warehouse
    user's scanner would (GET the open ones, PATCH each); returns how many moved."""
    import httpx

    headers = {"Authorization": f"Bearer {env['WMS_API_KEY']}"}
    with httpx.Client(base_url=env["WMS_URL"].rstrip("/"), headers=headers, timeout=30) as http:
        page = http.get("/v1/allocations", params={"status": "reserved", "limit": min(k, 100)})
        page.raise_for_status()
        moved = 0
        for doc in page.json()["data"][:k]:
            http.patch(f"/v1/allocations/{doc['id']}", json={"status": "picked"}).raise_for_status()
            moved += 1
    return moved


def change_one_percent(sb: SandboxHandle, customers: int) -> tuple[int, int, int]:
    """Rename k Salesforce accounts, pause k billing subscriptions and pick k WMS
    allocations (k = 1% of customers), each through that system's own interface; returns
    the three counts."""
    from connectors.billing_schema import subscriptions

    k = max(1, round(customers * CHANGE_SHARE))
    connector: Any = connect("salesforce", sb.env)
    try:
        sf = connector._client()
        rows = sf.query_all(f"SELECT Id, Name FROM Account ORDER BY Id LIMIT {k}")["records"]
        for row in rows:
            sf.Account.update(row["Id"], {"Name": f"{row['Name']} X"})
    finally:
        connector.close()
    engine = sa.create_engine(sb.billing_url)
    try:
        with engine.begin() as conn:
            ids = [
                r.id
                for r in conn.execute(
                    sa.select(subscriptions.c.id)
                    .where(subscriptions.c.status != "paused")
                    .order_by(subscriptions.c.id)
                    .limit(k)
                )
            ]
            conn.execute(
                sa.update(subscriptions)
                .where(subscriptions.c.id.in_(ids))
                .values(status="paused", updated_at=datetime.now(UTC))
            )
    finally:
        engine.dispose()
    return len(rows), len(ids), pick_allocations(sb.env, k)


def sum_calls(calls: Mapping[str, Mapping[str, Any]], key: str = "calls") -> int:
    return sum(int(c[key]) for c in calls.values())


def per_1k(calls: int, records: int) -> str:
    return f"{calls * 1000 / max(records, 1):.1f}"


def calls_of(sb: SandboxHandle) -> dict[str, dict[str, Any]]:
    """Calls per emulator; billing is a database, not an API, so it has none."""
    return sb.calls()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--customers", type=positive_int, default=2000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--verbose", action="store_true", help="show the hub's warnings")
    args = parser.parse_args(argv)
    if not args.verbose:  # one quarantine warning per record would bury the tables
        logging.disable(logging.WARNING)
    n = args.customers

    from hub.store.migrate import upgrade

    with tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp:
        cm = running_sandbox(Path(tmp) / "sb", seed=args.seed, customers=n)
        seed_seconds, sb = timed(cm.__enter__)
        try:
            print(f"sandbox: {n:,} customers, seeded and serving in {seed_seconds:.1f} s")
            url = f"sqlite:///{tmp}/hub.sqlite"
            upgrade(url)

            sb.reset_calls()
            floor, floor_read_by = floor_read(sb.env)
            floor_s = floor.wall
            floor_calls = calls_of(sb)
            floor_records = sum(floor_read_by.values())

            phases: list[tuple[str, float, Report, dict[str, dict[str, Any]]]] = []
            timings: list[tuple[Timing, int]] = []
            sb.reset_calls()
            t, rep, sql = sync_run(url, sb.env)
            phases.append(("initial", t.wall, rep, calls_of(sb)))
            timings.append((t, sql))

            sb.reset_calls()
            t, rep, sql = sync_run(url, sb.env)
            phases.append(("rerun", t.wall, rep, calls_of(sb)))
            timings.append((t, sql))

            changed_sf, changed_billing, changed_wms = change_one_percent(sb, n)
            sb.reset_calls()
            t, rep, sql = sync_run(url, sb.env)
            phases.append(("incremental 1%", t.wall, rep, calls_of(sb)))
            timings.append((t, sql))
        finally:
            cm.__exit__(None, None, None)

    systems = sorted(set(floor_read_by) | set(floor_calls))
    init_s, init_rep, init_calls = phases[0][1], phases[0][2], phases[0][3]
    init_read = total(init_rep, "read")
    init_total_calls = sum(c["calls"] for c in init_calls.values())

    print()
    print_table(
        [
            "phase",
            "seconds",
            "read",
            "read/s",
            "golden created",
            "golden updated",
            "writes",
            "API calls",
            "calls/1k read",
            "vs floor",
        ],
        [
            [
                "floor (read only)",
                f"{floor_s:.2f}",
                floor_records,
                f"{floor_records / floor_s:,.0f}",
                "-",
                "-",
                sum(c["writes"] for c in floor_calls.values()),
                sum(c["calls"] for c in floor_calls.values()),
                per_1k(sum_calls(floor_calls), floor_records),
                "1.00x",
            ],
            *[
                [
                    name,
                    f"{s:.2f}",
                    total(rep, "read"),
                    f"{total(rep, 'read') / s:,.0f}",
                    total(rep, "created", hub=True),
                    total(rep, "updated", hub=True),
                    sum(c["writes"] for c in calls.values()),
                    sum(c["calls"] for c in calls.values()),
                    per_1k(sum_calls(calls), total(rep, "read")),
                    f"{s / floor_s:.2f}x",
                ]
                for name, s, rep, calls in phases
            ],
        ],
    )

    print()
    print("API calls per system (calls / writes; per 1k records read by that system)")
    rows = []
    for system in systems:
        row: list[Any] = [system, floor_read_by.get(system, 0)]
        fc = floor_calls.get(system, {"calls": 0, "writes": 0})
        row.append(f"{fc['calls']}/{fc['writes']}")
        for _name, _s, _rep, calls in phases:
            c = calls.get(system, {"calls": 0, "writes": 0})
            row.append(f"{c['calls']}/{c['writes']}")
        read_sys = sum(x["read"] for x in init_rep.get(system, {}).values())
        row.append(read_sys)
        row.append(f"{init_calls.get(system, {'calls': 0})['calls'] * 1000 / max(read_sys, 1):.1f}")
        rows.append(row)
    print_table(
        [
            "system",
            "floor read",
            "floor",
            "initial",
            "rerun",
            "incremental",
            "initial read",
            "initial calls/1k read",
        ],
        rows,
    )

    print()
    print(
        "sync counts per phase (summed over entities): read/created/updated/unchanged/"
        "conflicts/quarantined/failed"
    )
    keys = ("read", "created", "updated", "unchanged", "conflicts", "quarantined", "failed")
    rows = []
    for system in [*systems, "hub"]:
        row = [system]
        for _name, _s, rep, _calls in phases:
            per = rep.get(system, {})
            row.append("/".join(str(sum(c[k] for c in per.values())) for k in keys))
        rows.append(row)
    print_table(["system", *(p[0] for p in phases)], rows)

    inc_s, inc_calls = phases[2][1], phases[2][3]
    inc_total_calls = sum(c["calls"] for c in inc_calls.values())
    print()
    inc_rep = phases[2][2]
    print(
        f"changed: {changed_sf} Salesforce accounts + {changed_billing} billing subscriptions "
        f"+ {changed_wms} WMS allocations ({CHANGE_SHARE:.0%} of {n:,} customers each)"
    )
    print(
        f"incremental: {inc_s:.2f} s, {total(inc_rep, 'read')} records read, "
        f"{total(inc_rep, 'created') + total(inc_rep, 'updated')} written to systems, "
        f"{total(inc_rep, 'updated', hub=True)} golden records updated, "
        f"{inc_total_calls} API calls"
    )
    print(
        f"incremental / initial: time {inc_s / init_s:.3f}, "
        f"API calls {inc_total_calls / max(init_total_calls, 1):.3f} "
        f"(change share {CHANGE_SHARE:.3f})"
    )
    print(
        f"rerun / initial: time {phases[1][1] / init_s:.3f}, API calls "
        f"{sum(c['calls'] for c in phases[1][3].values()) / max(init_total_calls, 1):.3f}, "
        f"writes {sum(c['writes'] for c in phases[1][3].values())}"
    )
    print(
        f"initial load / floor: {init_s / floor_s:.2f}x "
        f"({init_read:,} records read in {init_s:.2f} s vs {floor_records:,} in {floor_s:.2f} s)"
    )
    print(f"peak RSS (process, emulators included): {gib(peak_rss_bytes())}")
    print()
    print_cpu(floor, phases, timings)
    print(commit_and_load())


def print_cpu(
    floor: Timing,
    phases: list[tuple[str, float, Report, dict[str, dict[str, Any]]]],
    timings: list[tuple[Timing, int]],
) -> None:
    """Wall and CPU of each phase beside the floor's, and the hub store's SQL statements
    per record read. The ratios of CPU survive a busy machine better than wall time;
    "sync thread" is the CPU of the thread running the engine (the emulators serve from
    other threads of this process)."""
    print("time and CPU against the floor (same run)")
    rows: list[list[Any]] = [
        ["floor (read only)", f"{floor.wall:.2f}", f"{floor.cpu:.2f}", f"{floor.cpu_thread:.2f}",
         "1.00x", "1.00x", "1.00x", "-", "-"],
    ]  # fmt: skip
    for (name, _s, rep, _calls), (t, sql) in zip(phases, timings, strict=True):
        read = total(rep, "read")
        rows.append(
            [name, f"{t.wall:.2f}", f"{t.cpu:.2f}", f"{t.cpu_thread:.2f}",
             f"{t.wall / floor.wall:.2f}x", f"{t.cpu / floor.cpu:.2f}x",
             f"{t.cpu_thread / floor.cpu_thread:.2f}x", sql, f"{sql / max(read, 1):.3f}"]
        )  # fmt: skip
    print_table(
        ["phase", "wall s", "CPU s (process)", "CPU s (sync thread)", "wall/floor",
         "CPU/floor", "thread CPU/floor thread", "SQL statements", "SQL/record read"],
        rows,
    )  # fmt: skip


if __name__ == "__main__":
    main()

"""A 2-partition concurrent backfill on PostgreSQL against one sync run, same book.

    .venv/bin/python -m bench.backfill [--customers 2000] [--partitions 2]

On a throwaway PostgreSQL (sandbox/postgres.py) with two hub stores:

- (a) store A: the sandbox seeded with ``--seed``, loaded by one ``SyncEngine.run()``;
- (b) store B: a fresh sandbox seeded the same way (so every system starts equal), loaded
  as a backfill (hub/sync/backfill.py) of every entity in entity order, ``--partitions``
  partitions at once, each in its own worker process with its own engine, connectors and
  store connections (the creators phase of every partition, the entity's quarantine
  retried once, the others phase of every partition, then the entity's finishing pass).

Both loads run in the same pool of worker processes (spawned, one per partition); the
emulators run in this process. Afterwards it compares golden records (data, field by
field), xrefs and every system's records (field by field, keyed by hub id or the system's
id; ids minted at run time replaced by a stable name; the stamps each system writes at
write time left out, as tests/e2e/test_crash_recovery.py does), prints the differences,
the wall and CPU time of both loads (workers' CPU: the sync; this process's: the
emulators) and the speedup. Asserts nothing; exits 1 when the states differ.

Figures: docs/sync.md, "Backfill".
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import sys
import tempfile
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench._common import commit_and_load, positive_int, print_table
from sandbox.run_state import SEEDED_SF_ID, minted_names, normalise

#: the seeded book's change stamps end here (sandbox/seed/catalog.py AS_OF): the slices
#: cover the book, not the months between it and today
BOOK_END = datetime(2025, 7, 1, tzinfo=UTC)

State = dict[str, dict[str, dict[str, Any]]]


# -- the state a load leaves -------------------------------------------------------------
def capture(env: Mapping[str, str], store_url: str) -> State:
    """{"golden": {entity/hub id: data}, "xref": {...}, "<system>/<entity>": {key:
    record}} with ids minted at run time named after what they stand for."""
    from connectors import registry
    from hub.mapping.mapper import Mapper
    from hub.mapping.spec import MAPPINGS_DIR, load_specs
    from hub.mapping.transforms import load_code_lists
    from hub.store import create_store_engine
    from hub.store.models import GoldenRecord, Xref
    from hub.systems import connect

    engine = create_store_engine(store_url)
    with engine.connect() as conn:
        goldens = conn.execute(
            sa.select(GoldenRecord.entity, GoldenRecord.hub_id, GoldenRecord.data)
        ).all()
        xrefs = conn.execute(
            sa.select(Xref.entity, Xref.hub_id, Xref.system, Xref.external_id)
        ).all()
    engine.dispose()
    names = minted_names(goldens, "<new {}>")
    for _entity, hub_id, system, ext in xrefs:
        if system == "salesforce" and not SEEDED_SF_ID.match(ext):
            names[ext] = f"<sf id of {names.get(hub_id, hub_id)}>"
    state: State = {
        "golden": {f"{e}/{names.get(h, h)}": normalise(d, names) for e, h, d in goldens},
        "xref": {
            f"{e}/{names.get(h, h)}/{s}": {"external_id": names.get(x, x)} for e, h, s, x in xrefs
        },
    }
    specs = {(s.system, s.entity): s for s in load_specs(MAPPINGS_DIR)}
    codes = load_code_lists(MAPPINGS_DIR)
    for system in registry.configured_systems(env):
        connector = connect(system, env)
        try:
            for entity in connector.entities():
                spec = specs.get((system, entity))
                mapper = Mapper(spec, codes) if spec is not None else None
                rows: dict[str, Any] = {}
                for batch in connector.read_snapshot(entity):
                    for n, r in enumerate(batch.records):
                        key = None
                        if mapper is not None:
                            key = mapper.hub_id(r) or mapper.system_id(r)
                        key = str(key) if key else json.dumps(r, sort_keys=True, default=str)[:80]
                        while key in rows:
                            key = f"{key}#{n}"
                        rows[names.get(key, key)] = json.loads(
                            json.dumps(normalise(r, names), default=str)
                        )
                state[f"{system}/{entity}"] = rows
        finally:
            connector.close()
    return state


def differences(a: State, b: State, limit: int = 10) -> tuple[int, list[str]]:
    """(number of differing fields and records, the first ``limit`` described)."""
    out: list[str] = []
    n = 0
    for part in sorted(set(a) | set(b)):
        left, right = a.get(part, {}), b.get(part, {})
        for key in sorted(set(left) | set(right)):
            if key not in right:
                n += 1
                out.append(f"{part} {key}: only in the single run")
                continue
            if key not in left:
                n += 1
                out.append(f"{part} {key}: only in the backfill")
                continue
            x, y = left[key], right[key]
            if x == y:
                continue
            if not isinstance(x, dict) or not isinstance(y, dict):
                n += 1
                out.append(f"{part} {key}: {x!r} != {y!r}")
                continue
            for field in sorted(set(x) | set(y)):
                if x.get(field) != y.get(field):
                    n += 1
                    out.append(
                        f"{part} {key} {field}: {x.get(field)!r} (single) != "
                        f"{y.get(field)!r} (backfill)"
                    )
    return n, out[:limit]


def counts(state: State) -> dict[str, int]:
    return {part: len(rows) for part, rows in state.items()}


# -- worker processes --------------------------------------------------------------------
_WORKER: dict[str, Any] = {}


def _init(env: dict[str, str], url: str) -> None:
    logging.disable(logging.WARNING)
    _WORKER.update(env=env, url=url)


def _engine() -> Any:
    from connectors import registry
    from hub.store import create_store_engine
    from hub.sync.engine import SyncEngine
    from hub.systems import connect

    env, url = _WORKER["env"], _WORKER["url"]
    key = f"engine {url}"
    if key not in _WORKER:
        connectors = {s: connect(s, env) for s in registry.configured_systems(env)}
        _WORKER[key] = SyncEngine(create_store_engine(url, pool_size=2), connectors)
    return _WORKER[key]


def _task(task: tuple[Any, ...]) -> tuple[float, Any]:
    """One step in a worker: (its CPU seconds, its result)."""
    from hub.sync import backfill

    kind, url = task[0], task[1]
    _WORKER["url"] = url
    cpu = time.process_time()
    result: Any = None
    if kind == "single":
        result = _engine().run()
    elif kind == "begin":
        _, _, entity, n = task
        begun = backfill.begin(_engine(), entity, n, latest=BOOK_END)
        result = [str(begun.window(i)) for i in range(n)]
    elif kind == "partition":
        _, _, entity, index, phase = task
        engine = _engine()
        found = backfill.current(engine, entity)
        assert found is not None
        r = backfill.run_partition(engine, found, index, phase)
        result = (r.read, r.batches, r.retries)
    elif kind == "settle":
        _, _, entity = task
        engine = _engine()
        found = backfill.current(engine, entity)
        assert found is not None
        result = backfill.settle(engine, found)
    elif kind == "finish":
        _, _, entity = task
        engine = _engine()
        last = backfill.current(engine, entity)
        assert last is not None
        backfill.finish(engine, last)
    return time.process_time() - cpu, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--customers", type=positive_int, default=2000)
    parser.add_argument("--partitions", type=positive_int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)
    from hub.model import ENTITY_ORDER
    from hub.store.migrate import upgrade
    from sandbox.postgres import fresh_database, throwaway_postgres
    from sandbox.runner import running_sandbox

    n, parts = args.customers, args.partitions
    print(f"{commit_and_load()}; {n:,} customers; {parts} partitions")
    ctx = multiprocessing.get_context("spawn")
    timings: dict[str, tuple[float, float, float]] = {}
    retries = 0
    with tempfile.TemporaryDirectory(prefix="bench-backfill-") as tmp, throwaway_postgres() as pg:
        urls = {name: fresh_database(pg, f"hub_{name}") for name in ("single", "backfill")}
        for url in urls.values():
            upgrade(url)
        states: dict[str, State] = {}
        for name in ("single", "backfill"):
            url = urls[name]
            t0 = time.perf_counter()
            with running_sandbox(Path(tmp) / name, seed=args.seed, customers=n) as sb:
                print(f"sandbox {name}: seeded and serving in {time.perf_counter() - t0:.1f} s")
                with ctx.Pool(parts, initializer=_init, initargs=(dict(sb.env), url)) as pool:
                    pool.map(_task, [("noop", url)] * parts, chunksize=1)  # workers up
                    wall, own = time.perf_counter(), time.process_time()
                    worker_cpu = 0.0
                    if name == "single":
                        cpu, _ = pool.apply(_task, (("single", url),))
                        worker_cpu += cpu
                    else:
                        for entity in ENTITY_ORDER:
                            cpu, _windows = pool.apply(_task, (("begin", url, entity, parts),))
                            worker_cpu += cpu
                            for phase in ("creators", "others"):
                                done = pool.map(
                                    _task,
                                    [("partition", url, entity, i, phase) for i in range(parts)],
                                    chunksize=1,
                                )
                                worker_cpu += sum(c for c, _ in done)
                                retries += sum(r[2] for _, r in done)
                                if phase == "creators":
                                    cpu, _ = pool.apply(_task, (("settle", url, entity),))
                                    worker_cpu += cpu
                                print(
                                    f"  {entity} {phase}: "
                                    + ", ".join(f"{r[0]} read" for _, r in done)
                                )
                            cpu, _ = pool.apply(_task, (("finish", url, entity),))
                            worker_cpu += cpu
                    timings[name] = (
                        time.perf_counter() - wall,
                        worker_cpu,
                        time.process_time() - own,
                    )
                states[name] = capture(sb.env, url)
    single, back = timings["single"], timings["backfill"]
    print()
    print_table(
        ["load", "wall", "CPU, workers (sync)", "CPU, this process (emulators)"],
        [
            (name, f"{w:.1f} s", f"{c:.1f} s", f"{e:.1f} s")
            for name, (w, c, e) in (("one run", single), (f"{parts}-partition backfill", back))
        ],
    )
    print(f"\nspeedup (wall, one run / backfill): {single[0] / back[0]:.2f}x")
    print(f"CPU of the sync, backfill / one run: {back[1] / single[1]:.2f}x")
    print(f"conflicts retried: {retries}")
    a, b = states["single"], states["backfill"]
    print("\nrecords compared:", ", ".join(f"{k} {v:,}" for k, v in sorted(counts(a).items())))
    diff, shown = differences(a, b)
    print(f"differences (fields and records): {diff}")
    for line in shown:
        print("  ", line)
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())

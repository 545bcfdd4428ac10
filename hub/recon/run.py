"""One reconciliation run: stage every configured system, compare with golden, check,
persist, summarise.

For each entity asked for, the golden records and each system's snapshot (through its
mapping, ``hub.recon.staging``) become DuckDB tables; then the checks registered per
entity in ``hub.recon.registry.CHECKS`` run over them: ``compare`` per (system, entity)
(missing / orphan / per-field mismatch, children row by row, rules from the mappings'
``compare:``), invoice sums, price leakage on billing's invoices, another system's
invoice amounts against billing's, broken references (each system's own, and the PIM's
catalogue against the golden subscriptions) and allocation quantities.

Everything found is persisted in one ``persist`` call whose scope is exactly what ran, so
findings of systems that were not configured are neither seen nor resolved.
"""

# ruff: noqa: S608 - SQL is built from quoted identifiers; no caller values are spliced in.

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import duckdb
import pyarrow as pa
from sqlalchemy import Engine, select

from connectors.base import Connector, Window
from hub.mapping.spec import MappingSpec
from hub.model import ENTITIES, ENTITY_ORDER
from hub.recon import findings as F
from hub.recon.engine import connect, quote, run
from hub.recon.persist import Scope, persist
from hub.recon.registry import CHECKS, CheckContext
from hub.recon.staging import CHILD_KEYS, Staged, golden_table, load_golden, stage_system
from hub.store.models import Xref

log = logging.getLogger("hub.recon")


@dataclass
class ReconcileResult:
    """What a run saw and stored."""

    run_id: str
    findings: pa.Table
    counts: dict[str, Any]
    systems: list[str]
    entities: list[str]
    skipped: dict[str, str] = field(default_factory=dict)
    staged: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Counts by entity, system, kind and severity, and money at stake per currency
        (sum of |expected - actual|), plus the store's new/reopened/resolved counts."""
        t = self.findings
        out: dict[str, Any] = {
            "run_id": self.run_id,
            "systems": self.systems,
            "entities": self.entities,
            "skipped": self.skipped,
            "staged": self.staged,
            "findings": t.num_rows,
        }
        for col in ("entity", "system", "kind", "severity"):
            values = t.column(col).to_pylist()
            out[f"by_{col}"] = {v: values.count(v) for v in sorted(set(values))}
        out["amount_at_stake_minor"] = self.counts.get("amount_at_stake_minor", {})
        for name in ("new", "reopened", "resolved"):
            out[name] = self.counts.get(name, 0)
        return out


def reconcile(
    engine: Engine,
    connectors: Mapping[str, Connector],
    specs: Sequence[MappingSpec],
    code_lists: Mapping[str, Mapping[str, str]],
    *,
    entities: Sequence[str] | None = None,
    systems: Sequence[str] | None = None,
    skipped: Mapping[str, str] | None = None,
    run_id: str | None = None,
    window: Window | None = None,
    memory_limit: str | None = None,
    progress: Callable[[str], None] | None = None,
    as_of: date | None = None,
) -> ReconcileResult:
    """Reconcile ``entities`` (default all mapped) in ``systems`` (default every system in
    ``connectors``) and persist the findings under ``run_id``. ``as_of``: the day dates
    are judged against (days past due, periods due; default: today and each system's
    latest issue date, see ``hub.recon.registry.DunningConsistency``)."""
    say = progress or log.info
    run_id = run_id or uuid.uuid4().hex
    mapped = {(s.system, s.entity): s for s in specs}
    wanted_entities = [
        e
        for e in ENTITY_ORDER
        if (entities is None or e in entities) and any(ent == e for _, ent in mapped)
    ]
    chosen = [s for s in connectors if systems is None or s in systems]
    pairs = [(s, e) for e in wanted_entities for s in sorted(chosen) if (s, e) in mapped]
    con = connect(memory_limit=memory_limit)
    try:
        needed = set(wanted_entities)
        if needed - {"customer"}:
            # every entity but customers needs subscriptions: broken refs, allocations and
            # prices
            needed.add("subscription")
        for entity in ENTITY_ORDER:
            if entity in needed:
                load_golden(con, engine, entity)
                creators = sorted({s.system for s in specs if s.entity == entity and s.creates})
                if creators and ENTITIES[entity].key_field == "hub_id":
                    _keep_established(con, engine, entity, creators)
        staged: dict[tuple[str, str], Staged] = {}
        for system, entity in pairs:
            say(f"staging {system} {entity}")
            staged[(system, entity)] = stage_system(
                con, engine, connectors[system], mapped[(system, entity)], code_lists, window=window
            )
        # references need the system's customers/products even if only subscriptions
        # were asked for
        for system in chosen:
            for entity in ("customer", "product"):
                if (
                    (system, entity) in mapped
                    and (system, entity) not in staged
                    and "subscription" in wanted_entities
                ):
                    staged[(system, entity)] = stage_system(
                        con, engine, connectors[system], mapped[(system, entity)], code_lists
                    )
        tables, scope = _findings(con, staged, pairs, mapped, wanted_entities, as_of)
    finally:
        con.close()
    found = F.concat(tables)
    counts = persist(engine, found, scope=scope, run_id=run_id)
    result = ReconcileResult(
        run_id=run_id,
        findings=found,
        counts=counts,
        systems=sorted({s for s, _ in pairs}),
        entities=wanted_entities,
        skipped=dict(skipped or {}),
        staged={
            s: {e: st.counts() for (s2, e), st in staged.items() if s2 == s}
            for s in sorted({s for s, _ in staged})
        },
    )
    say(f"reconciliation {run_id}: {found.num_rows} finding(s)")
    return result


def _findings(
    con: duckdb.DuckDBPyConnection,
    staged: Mapping[tuple[str, str], Staged],
    pairs: Sequence[tuple[str, str]],
    mapped: Mapping[tuple[str, str], MappingSpec],
    wanted_entities: Sequence[str],
    as_of: date | None = None,
) -> tuple[list[pa.Table], list[Scope]]:
    """Every registered check (``hub.recon.registry.CHECKS``) over what was staged: the
    findings tables and the scope they cover."""
    ctx = CheckContext(con, staged, pairs, mapped, wanted_entities, as_of=as_of)
    CHECKS.run_all(ctx)
    return ctx.tables, ctx.scope()


def _keep_established(
    con: duckdb.DuckDBPyConnection, engine: Engine, entity: str, creators: Sequence[str]
) -> None:
    """Only golden records a creating system (``creates: true``, e.g. billing for
    invoices) has established count as golden here: a record the sync merged in from a
    system that does not create them (the WMS carrying an id nobody else knows) is that
    system's ``orphan``, not the creators' ``missing``."""
    with engine.connect() as conn:
        keys = conn.execute(
            select(Xref.hub_id).where(Xref.entity == entity, Xref.system.in_(creators))
        ).scalars()
        known = pa.table({"key": pa.array(list(keys), pa.string())})
    con.register("_established", known)
    try:
        for table in [golden_table(entity)] + [
            golden_table(entity, c) for c in CHILD_KEYS if c in ENTITIES[entity].model_fields
        ]:
            run(
                con,
                f"DELETE FROM {quote(table)} WHERE key NOT IN (SELECT key FROM _established)",
            )
    finally:
        con.unregister("_established")

"""One reconciliation run: stage every configured system, compare with golden, check,
persist, summarise.

For each entity asked for, the golden records and each system's snapshot (through its
mapping, ``hub.recon.staging``) become DuckDB tables; then

- ``compare`` per (system, entity): missing / orphan / per-field mismatch, children
  (invoice lines, subscription items) row by row, rules from the mappings' ``compare:``;
- ``checks.invoice_sums`` on every system's invoices that have lines;
- ``checks.price_leakage`` on billing's invoices against the golden subscriptions' prices;
- ``checks.cross_system_amounts``: another system's invoice amounts against billing's (the
  money fields checked there are left out of that system's ``compare`` so one drift is
  one finding);
- ``checks.broken_refs`` on each system's subscriptions against its own customers and
  products, and on the golden subscriptions against the PIM's catalogue (system ``pim``);
- ``checks.allocations`` on each system's allocations against the golden subscriptions.

Everything found is persisted in one ``persist`` call whose scope is exactly what ran, so
findings of systems that were not configured are neither seen nor resolved.
"""

# ruff: noqa: S608 - SQL is built from quoted identifiers; no caller values are spliced in.

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Engine, select

from connectors.base import Connector, Window
from hub.mapping.spec import MappingSpec
from hub.model import DELIVERING_STATUSES, ENTITIES
from hub.recon import checks
from hub.recon import findings as F
from hub.recon.compare import Child, compare
from hub.recon.engine import columns, connect, quote, run
from hub.recon.persist import Scope, persist
from hub.recon.staging import CHILD_KEYS, Staged, golden_table, load_golden, stage_system
from hub.store.models import Xref

log = logging.getLogger("hub.recon")

#: Parents before children (the sync's order).
ENTITY_ORDER = ("product", "customer", "subscription", "allocation", "invoice")
#: The system of record for invoice amounts; other systems' copies are checked against it.
REFERENCE_SYSTEM = "billing"
#: Money fields another system's invoice copy must agree on with the reference system.
CROSS_SYSTEM_FIELDS = ("total_minor",)
#: Which golden records a system is expected to hold, where not all of them (SQL over the
#: golden table): SAP bills every invoice but drafts.
COVERAGE: dict[tuple[str, str], str] = {("sap", "invoice"): "status IS DISTINCT FROM 'draft'"}
#: Amount at stake of a missing / orphan record.
AMOUNT_FIELDS = {"invoice": "total_minor"}


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
) -> ReconcileResult:
    """Reconcile ``entities`` (default all mapped) in ``systems`` (default every system in
    ``connectors``) and persist the findings under ``run_id``."""
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
        if {"subscription", "allocation", "invoice", "product"} & needed:
            needed.add("subscription")  # broken refs, allocations and prices need it
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
        tables, scope = _findings(con, staged, pairs, mapped, wanted_entities)
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
) -> tuple[list[pa.Table], list[Scope]]:
    tables: list[pa.Table] = []
    kinds: dict[tuple[str, str], set[str]] = {}

    def ran(entity: str, system: str, *ks: str) -> None:
        kinds.setdefault((entity, system), set()).update(ks)

    billing_invoices = staged.get((REFERENCE_SYSTEM, "invoice"))
    for system, entity in pairs:
        st = staged[(system, entity)]
        spec = mapped[(system, entity)]
        golden, golden_kids = _golden_views(con, system, entity, st)
        skip: set[str] = set()
        if (
            entity == "invoice"
            and system != REFERENCE_SYSTEM
            and billing_invoices is not None
            and (REFERENCE_SYSTEM, "invoice") in [(s, e) for s, e in pairs]
        ):
            fields = [f for f in CROSS_SYSTEM_FIELDS if f in st.fields]
            if fields:
                tables.append(
                    checks.cross_system_amounts(
                        con, billing_invoices.table, st.table, system=system, fields=fields
                    )
                )
                ran(entity, system, "aggregate")
                skip |= set(fields)
        rules = {name: fm.compare for name, fm in spec.fields.items()}
        found = compare(
            con,
            golden,
            st.table,
            entity=entity,
            system=system,
            rules=rules,
            fields=[f for f in st.fields if f not in skip],
            amount_field=AMOUNT_FIELDS.get(entity),
        )
        for name, table in st.children.items():
            child_spec = spec.children[name]
            found = F.concat(
                [
                    found,
                    compare(
                        con,
                        golden_kids[name],
                        table,
                        entity=entity,
                        system=system,
                        rules={f: fm.compare for f, fm in child_spec.fields.items()},
                        fields=st.child_fields[name],
                        child=Child(name, CHILD_KEYS[name]),
                    ),
                ]
            )
        if st.unmappable:  # in quarantine, not missing
            keep = pc.invert(pc.is_in(found.column("key"), pa.array(sorted(st.unmappable))))
            found = found.filter(keep)
        tables.append(found)
        ran(entity, system, "missing", "orphan", "mismatch")

        if entity == "invoice" and "lines" in st.children and _has(con, st.table, "total_minor"):
            tables.append(checks.invoice_sums(con, st.table, st.children["lines"], system=system))
            ran(entity, system, "aggregate")
            if system == REFERENCE_SYSTEM:
                leak = _price_leakage(con, st)
                if leak is not None:
                    tables.append(leak)
        if entity == "subscription" and "items" in st.children:
            refs = {
                "customers": staged.get((system, "customer")),
                "products": staged.get((system, "product")),
            }
            if any(refs.values()) and _has(con, st.table, "customer_id"):
                tables.append(
                    checks.broken_refs(
                        con,
                        st.table,
                        st.children["items"],
                        system=system,
                        customers=refs["customers"].table if refs["customers"] else None,
                        products=refs["products"].table if refs["products"] else None,
                    )
                )
                ran(entity, system, "broken_ref")
        if entity == "allocation" and _has(con, st.table, "subscription_item_id", "status"):
            tables.append(
                checks.allocations(
                    con,
                    st.table,
                    golden_table("subscription"),
                    _golden_items(con),
                    system=system,
                    active_statuses=DELIVERING_STATUSES,
                )
            )
            ran("subscription", system, "aggregate")
    # the catalogue's view of the subscriptions: SKUs a product system lacks or retired
    for (system, entity), st in staged.items():
        if entity != "product" or "subscription" not in wanted_entities:
            continue
        if (system, "subscription") in staged:
            continue  # checked against its own subscriptions above
        retired = _has(con, st.table, "lifecycle")
        tables.append(
            checks.broken_refs(
                con,
                golden_table("subscription"),
                _golden_items(con),
                system=system,
                products=st.table,
                pim_products=st.table if retired else None,
            )
        )
        ran("subscription", system, "broken_ref")
    scope = [Scope(e, s, tuple(sorted(k))) for (e, s), k in sorted(kinds.items())]
    return tables, scope


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


def _has(con: duckdb.DuckDBPyConnection, table: str, *names: str) -> bool:
    cols = columns(con, quote(table))
    return all(n in cols for n in names)


def _golden_views(
    con: duckdb.DuckDBPyConnection, system: str, entity: str, st: Staged
) -> tuple[str, dict[str, str]]:
    """The golden tables this system is held to (all records, or its COVERAGE)."""
    where = COVERAGE.get((system, entity))
    kids = {name: golden_table(entity, name) for name in st.children}
    if where is None:
        return golden_table(entity), kids
    view = f"golden_{entity}_for_{system}"
    run(
        con,
        f"CREATE OR REPLACE TEMP VIEW {quote(view)} AS "
        f"SELECT * FROM {quote(golden_table(entity))} WHERE {where}",
    )
    for name, table in list(kids.items()):
        kview = f"{view}_{name}"
        run(
            con,
            f"CREATE OR REPLACE TEMP VIEW {quote(kview)} AS SELECT * FROM {quote(table)} "
            f"WHERE key IN (SELECT key FROM {quote(view)})",
        )
        kids[name] = kview
    return view, kids


def _golden_items(con: duckdb.DuckDBPyConnection) -> str:
    """Golden subscription items with the price columns ``checks`` expects (kind,
    flat_amount_minor, unit_amount_minor, discount_bps) next to sku and quantity."""
    view = "golden_subscription_items_priced"
    items = quote(golden_table("subscription", "items"))
    run(
        con,
        f"""CREATE OR REPLACE TEMP VIEW {view} AS
            SELECT key, item_id, sku, quantity, "price.kind" AS kind,
                   "price.flat_amount_minor" AS flat_amount_minor,
                   "price.unit_amount_minor" AS unit_amount_minor,
                   "price.discount_bps" AS discount_bps
            FROM {items}""",
    )
    return view


def _golden_tiers(con: duckdb.DuckDBPyConnection) -> str:
    view = "golden_subscription_tiers"
    items = quote(golden_table("subscription", "items"))
    run(
        con,
        f"""CREATE OR REPLACE TEMP VIEW {view} AS
            SELECT key, item_id, tier_no, t.up_to AS up_to,
                   t.unit_amount_minor AS unit_amount_minor,
                   t.flat_amount_minor AS flat_amount_minor
            FROM (SELECT key, item_id,
                         unnest(generate_series(1, len("price.tiers"))) AS tier_no,
                         unnest("price.tiers") AS t
                  FROM {items} WHERE len("price.tiers") > 0)""",
    )
    return view


def _price_leakage(con: duckdb.DuckDBPyConnection, st: Staged) -> pa.Table | None:
    lines = st.children.get("lines")
    if lines is None or not _has(con, st.table, "subscription_id", "currency"):
        return None
    if not _has(con, lines, "sku", "amount_minor", "quantity", "line_no"):
        return None
    return checks.price_leakage(
        con, st.table, lines, _golden_items(con), _golden_tiers(con), system=st.system
    )

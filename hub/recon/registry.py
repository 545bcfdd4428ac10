"""Which checks a reconciliation runs: small check objects, registered per entity in one
registry (:data:`CHECKS`).

Two sorts of check:

- a :class:`SystemCheck` runs for each (system, entity) the run compares, in registration
  order, with that system's snapshot (:class:`Target`);
- a :class:`RunCheck` runs once per run when its entity was asked for, after every
  system's checks (e.g. the catalogue's view of the subscriptions).

A check adds findings tables to the :class:`CheckContext` and says which (entity, system,
kinds) it covered; that coverage becomes the persisted run's scope, so findings a run
did not check are neither seen nor resolved. Adding a check is one registration::

    CHECKS.register("invoice", MyCheck())

The SQL of each check lives in ``hub.recon.checks`` and ``hub.recon.compare``.
"""

# ruff: noqa: S608 - SQL is built from quoted identifiers; no caller values are spliced in.

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import ClassVar, TypeVar

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from hub.mapping.spec import MappingSpec
from hub.model import DELIVERING_STATUSES, ENTITIES, Customer
from hub.recon import checks
from hub.recon import findings as F
from hub.recon.compare import Child, compare
from hub.recon.engine import columns, quote, run
from hub.recon.staging import CHILD_KEYS, Staged, golden_table
from hub.store.findings import Scope

#: The system of record for invoice amounts; other systems' copies are checked against it.
REFERENCE_SYSTEM = "billing"
#: Money fields another system's invoice copy must agree on with the reference system.
CROSS_SYSTEM_FIELDS = ("total_minor",)
#: The last dunning stage / level the canonical model allows (``Customer.dunning_level``).
LAST_DUNNING_STAGE = next(
    int(m.le) for m in Customer.model_fields["dunning_level"].metadata if hasattr(m, "le")
)
#: Subscription statuses that are billed every period (a trial is not; past due still is).
BILLING_STATUSES = ("active", "past_due")
#: Amount at stake of a missing / orphan record.
AMOUNT_FIELDS = {"invoice": "total_minor"}


@dataclass
class CheckContext:
    """One run's inputs for the checks, and what they found and covered."""

    con: duckdb.DuckDBPyConnection
    staged: Mapping[tuple[str, str], Staged]
    pairs: Sequence[tuple[str, str]]
    mapped: Mapping[tuple[str, str], MappingSpec]
    wanted_entities: Sequence[str]
    tables: list[pa.Table] = field(default_factory=list)
    kinds: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    #: the day the run judges dates against (days past due, periods due); None: today
    #: (UTC) for what may have happened by now, and the snapshot's own latest issue date
    #: for what should have happened by then (see ``DunningConsistency``)
    as_of: date | None = None
    #: columns per staged or golden table (``has``): those tables are made before the
    #: checks run and none of them is replaced while they run
    _columns: dict[str, dict[str, str]] = field(default_factory=dict, repr=False)

    def today(self) -> date:
        return self.as_of or datetime.now(UTC).date()

    def billed_through(self, invoices: str) -> date:
        """The day a system's invoices show it was running: ``as_of`` if given, else the
        latest issue date of its invoices that are not void (never after today)."""
        if self.as_of is not None:
            return self.as_of
        rows = self.con.execute(
            f"SELECT max(issue_date) FROM {quote(invoices)} WHERE status IS DISTINCT FROM 'void'"
        ).fetchall()  # drained: DuckDB refuses more work while a result is unfinished
        latest = rows[0][0] if rows else None
        return min(latest, self.today()) if isinstance(latest, date) else self.today()

    def found(self, table: pa.Table) -> None:
        """Findings (``hub.recon.findings.SCHEMA``) a check produced."""
        self.tables.append(table)

    def ran(self, entity: str, system: str, *kinds: str) -> None:
        """That a check covered these kinds of finding of ``entity`` in ``system``."""
        self.kinds.setdefault((entity, system), set()).update(kinds)

    def scope(self) -> list[Scope]:
        """What the run covered, for ``persist_run``."""
        return [Scope(e, s, tuple(sorted(k))) for (e, s), k in sorted(self.kinds.items())]

    def has(self, table: str, *names: str) -> bool:
        """Whether the DuckDB ``table`` has every column in ``names``."""
        cols = self.columns(table)
        return all(n in cols for n in names)

    def columns(self, table: str) -> dict[str, str]:
        """Column name -> DuckDB type of a staged or golden ``table`` (asked once a run)."""
        if table not in self._columns:
            self._columns[table] = columns(self.con, quote(table))
        return self._columns[table]


@dataclass
class Target:
    """One system's snapshot of one entity, and the golden tables it is held to."""

    system: str
    entity: str
    staged: Staged
    spec: MappingSpec
    golden: str
    golden_children: dict[str, str]
    #: fields another check already compared (left out of the record compare)
    claimed: set[str] = field(default_factory=set)


#: a function of hub.recon.checks (each check class below names the one it runs)
CheckFunction = Callable[..., pa.Table]


class SystemCheck(ABC):
    """A check run for each (system, entity) compared."""

    @abstractmethod
    def run(self, ctx: CheckContext, target: Target) -> None: ...


class RunCheck(ABC):
    """A check run once per run, after every system's checks, when its entity is wanted."""

    @abstractmethod
    def run(self, ctx: CheckContext) -> None: ...


C = TypeVar("C", SystemCheck, RunCheck)


class CheckRegistry:
    """Checks per entity, in the order they run."""

    def __init__(self) -> None:
        self._system: dict[str, list[SystemCheck]] = {}
        self._run: dict[str, list[RunCheck]] = {}

    def register(self, entity: str, check: C) -> C:
        """Run ``check`` for ``entity`` (after the checks registered before it)."""
        if isinstance(check, SystemCheck):
            self._system.setdefault(entity, []).append(check)
        else:
            self._run.setdefault(entity, []).append(check)
        return check

    def copy(self) -> CheckRegistry:
        """A registry with the same checks, to extend without touching this one."""
        other = CheckRegistry()
        other._system = {e: list(cs) for e, cs in self._system.items()}
        other._run = {e: list(cs) for e, cs in self._run.items()}
        return other

    def system_checks(self, entity: str) -> tuple[SystemCheck, ...]:
        return tuple(self._system.get(entity, ()))

    def run_checks(self, entity: str) -> tuple[RunCheck, ...]:
        return tuple(self._run.get(entity, ()))

    def entities(self) -> set[str]:
        return set(self._system) | set(self._run)

    def run_all(self, ctx: CheckContext) -> None:
        """Every registered check over the run's pairs, then the run-level ones."""
        for system, entity in ctx.pairs:
            target = make_target(ctx, system, entity)
            for check in self.system_checks(entity):
                check.run(ctx, target)
        for entity in ctx.wanted_entities:
            for run_check in self.run_checks(entity):
                run_check.run(ctx)


def make_target(ctx: CheckContext, system: str, entity: str) -> Target:
    st = ctx.staged[(system, entity)]
    spec = ctx.mapped[(system, entity)]
    golden, kids = golden_views(ctx.con, spec, st, ctx.columns(golden_table(entity)))
    return Target(system, entity, st, spec, golden, kids)


# -- the checks -----------------------------------------------------------------------
class CrossSystemAmounts(SystemCheck):
    """Another system's invoice amounts against the reference system's; the money fields
    checked here are left out of that system's record compare (one drift, one finding)."""

    def run(self, ctx: CheckContext, target: Target) -> None:
        reference = ctx.staged.get((REFERENCE_SYSTEM, target.entity))
        if (
            target.system == REFERENCE_SYSTEM
            or reference is None
            or (REFERENCE_SYSTEM, target.entity) not in ctx.pairs
        ):
            return
        fields = [f for f in CROSS_SYSTEM_FIELDS if f in target.staged.fields]
        if not fields:
            return
        ctx.found(
            checks.cross_system_amounts(
                ctx.con, reference.table, target.staged.table, system=target.system, fields=fields
            )
        )
        ctx.ran(target.entity, target.system, "aggregate")
        target.claimed |= set(fields)


class RecordCompare(SystemCheck):
    """Missing / orphan records and per-field mismatches (children row by row), by the
    mapping's compare rules; records in quarantine are not missing."""

    def run(self, ctx: CheckContext, target: Target) -> None:
        st, spec, entity, system = target.staged, target.spec, target.entity, target.system
        found = compare(
            ctx.con,
            target.golden,
            st.table,
            entity=entity,
            system=system,
            rules={name: fm.compare for name, fm in spec.fields.items()},
            fields=[f for f in st.fields if f not in target.claimed],
            amount_field=AMOUNT_FIELDS.get(entity),
        )
        for name, table in st.children.items():
            golden_child, child_key = target.golden_children[name], CHILD_KEYS[name]
            if name == "items" and ctx.has(table, "effective_from"):
                golden_child, table = item_versions(ctx.con, golden_child, table)
                child_key = ITEM_VERSION_KEY
            child = compare(
                ctx.con,
                golden_child,
                table,
                entity=entity,
                system=system,
                rules={f: fm.compare for f, fm in spec.children[name].fields.items()},
                fields=st.child_fields[name],
                child=Child(name, child_key),
            )
            found = F.concat([found, child])
        if st.unmappable:  # in quarantine, not missing
            keep = pc.invert(pc.is_in(found.column("key"), pa.array(sorted(st.unmappable))))
            found = found.filter(keep)
        ctx.found(found)
        ctx.ran(entity, system, "missing", "orphan", "mismatch")


def _invoice_sums_apply(ctx: CheckContext, target: Target) -> bool:
    st = target.staged
    return "lines" in st.children and ctx.has(st.table, "total_minor")


class InvoiceSums(SystemCheck):
    """Invoice total vs its lines and tax, subtotal vs its lines."""

    def run(self, ctx: CheckContext, target: Target) -> None:
        if not _invoice_sums_apply(ctx, target):
            return
        st = target.staged
        ctx.found(checks.invoice_sums(ctx.con, st.table, st.children["lines"], system=st.system))
        ctx.ran(target.entity, target.system, "aggregate")


class PriceLeakage(SystemCheck):
    """The reference system's billed line amounts vs the golden subscriptions' prices."""

    #: the check run on the reference system's invoices and lines (priced with the golden
    #: item versions and tiers); a subclass names another with the same inputs
    check: ClassVar[CheckFunction] = staticmethod(checks.price_leakage)

    def run(self, ctx: CheckContext, target: Target) -> None:
        if target.system != REFERENCE_SYSTEM or not _invoice_sums_apply(ctx, target):
            return
        st = target.staged
        lines = st.children["lines"]
        if not ctx.has(st.table, "subscription_id", "currency"):
            return
        if not ctx.has(lines, "sku", "amount_minor", "quantity", "line_no"):
            return
        items, tiers = golden_item_versions(ctx.con), golden_tiers(ctx.con, versions=True)
        ramps = golden_ramp_steps(ctx.con)
        ctx.found(self.check(ctx.con, st.table, lines, items, tiers, system=st.system, ramps=ramps))
        ctx.ran(target.entity, target.system, "aggregate")


class ExpiredDiscounts(PriceLeakage):
    """The reference system's lines still billed at a discount whose ``discount_until``
    passed before their service period (``checks.expired_discounts``); ``PriceLeakage``
    leaves those lines to it."""

    check = staticmethod(checks.expired_discounts)


class ProrationErrors(SystemCheck):
    """The reference system's proration lines vs the proration the golden subscription's
    policy gives for the change of the item they name (``checks.proration_errors``)."""

    #: the check, run on the reference system's invoices and lines beside the golden
    #: subscriptions, item versions and tiers, when the columns below are staged
    check: ClassVar[CheckFunction] = staticmethod(checks.proration_errors)
    invoice_columns: ClassVar[tuple[str, ...]] = ("subscription_id", "currency")
    line_columns: ClassVar[tuple[str, ...]] = (
        "kind", "proration_of", "period_start", "period_end",
    )  # fmt: skip

    def run(self, ctx: CheckContext, target: Target) -> None:
        if target.system != REFERENCE_SYSTEM or not _invoice_sums_apply(ctx, target):
            return
        st = target.staged
        lines = st.children["lines"]
        if not ctx.has(st.table, *self.invoice_columns):
            return
        if not ctx.has(lines, *self.line_columns):
            return
        ctx.found(
            self.check(
                ctx.con,
                st.table,
                lines,
                golden_table("subscription"),
                golden_item_versions(ctx.con),
                golden_tiers(ctx.con, versions=True),
                system=st.system,
            )
        )
        ctx.ran(target.entity, target.system, "aggregate")


class UsageAgainstMeters(ProrationErrors):
    """The reference system's usage lines against the golden subscriptions' metered usage
    (``usage_records``; ``checks.usage_against_meters``)."""

    check = staticmethod(checks.usage_against_meters)
    invoice_columns = ("subscription_id", "currency", "status")
    line_columns = ("kind", "sku", "quantity", "period_start", "period_end")


class InvoicesAfterEnd(SystemCheck):
    """The reference system's invoices issued after their golden subscription ended
    (canceled or paused with an end date before the issue date)."""

    check: ClassVar[CheckFunction] = staticmethod(checks.invoices_after_end)
    #: the line columns the check reads (its lines are passed when staged with them);
    #: None: it reads no lines
    line_columns: ClassVar[tuple[str, ...] | None] = None

    def run(self, ctx: CheckContext, target: Target) -> None:
        st = target.staged
        if target.system != REFERENCE_SYSTEM:
            return
        if not ctx.has(
            st.table, "subscription_id", "issue_date", "total_minor", "currency", "status"
        ):
            return
        golden = golden_table("subscription")
        if self.line_columns is None:
            found = self.check(ctx.con, st.table, golden, system=st.system)
        else:
            lines = st.children.get("lines")
            if lines is not None and not ctx.has(lines, *self.line_columns):
                lines = None
            found = self.check(ctx.con, st.table, golden, lines, system=st.system)
        ctx.found(found)
        ctx.ran(target.entity, target.system, "aggregate")


class InvoicesWhilePaused(InvoicesAfterEnd):
    """The reference system's invoices issued while their golden subscription was paused
    (``paused_at`` to ``resume_at``; ``checks.invoices_while_paused``)."""

    check = staticmethod(checks.invoices_while_paused)
    line_columns = ("period_end",)


class DunningConsistency(SystemCheck):
    """The reference system's dunning: each invoice's stage against its days past due, and
    (when its customers were staged too) each customer's level against its open invoices'
    stages and blocking at the last level.

    A stage too high is judged as of today (the latest moment it can have been set); an
    open invoice with no stage as of the day the system is known to have been running (its
    latest issue date), so a frozen or lagging snapshot is not blamed for what came after
    it."""

    def __init__(self, schedule: checks.DunningSchedule | None = None) -> None:
        self.schedule = schedule or checks.DunningSchedule()

    def run(self, ctx: CheckContext, target: Target) -> None:
        st, system = target.staged, target.system
        if system != REFERENCE_SYSTEM:
            return
        needed = ("customer_id", "due_date", "issue_date", "status", "dunning_stage")
        if not ctx.has(st.table, *needed, "total_minor", "currency"):
            return
        customers = ctx.staged.get((system, "customer"))
        if customers is not None and not ctx.has(
            customers.table, "dunning_level", "status", "currency"
        ):
            customers = None
        ctx.found(
            checks.dunning(
                ctx.con,
                st.table,
                customers.table if customers else None,
                system=system,
                today=ctx.today(),
                billed_through=ctx.billed_through(st.table),
                schedule=self.schedule,
                last_stage=LAST_DUNNING_STAGE,
            )
        )
        ctx.ran(target.entity, system, "aggregate")
        if customers is not None:
            ctx.ran("customer", system, "aggregate")


class UnbilledPeriods(SystemCheck):
    """Service periods of the golden subscriptions in ``BILLING_STATUSES`` that no
    invoice of the reference system bills (``checks.unbilled_periods``), up to the day the
    system is known to have been billing (``CheckContext.billed_through``)."""

    #: the check, run on the golden subscriptions against the reference system's invoices
    #: up to the day it is known to have been billing; a subclass names another
    check: ClassVar[CheckFunction] = staticmethod(checks.unbilled_periods)

    def run(self, ctx: CheckContext, target: Target) -> None:
        st, system = target.staged, target.system
        if system != REFERENCE_SYSTEM:
            return
        if not ctx.has(st.table, "subscription_id", "issue_date", "status"):
            return
        lines = st.children.get("lines")
        if lines is not None and not ctx.has(lines, "period_start", "period_end"):
            lines = None
        ctx.found(
            self.check(
                ctx.con,
                golden_table("subscription"),
                st.table,
                lines,
                golden_items(ctx.con),
                golden_tiers(ctx.con),
                system=system,
                through=ctx.billed_through(st.table),
                statuses=BILLING_STATUSES,
            )
        )
        ctx.ran(target.entity, system, "aggregate")


class RenewalsNotInvoiced(UnbilledPeriods):
    """Golden auto-renewing subscriptions past their renewal date with no invoice of the
    reference system for the renewed term (``checks.renewals_not_invoiced``), up to the
    day the system is known to have been billing."""

    check = staticmethod(checks.renewals_not_invoiced)


class SubscriptionRefs(SystemCheck):
    """A system's subscriptions pointing at customers or SKUs that system lacks."""

    def run(self, ctx: CheckContext, target: Target) -> None:
        st, system = target.staged, target.system
        if "items" not in st.children:
            return
        customers = ctx.staged.get((system, "customer"))
        products = ctx.staged.get((system, "product"))
        if (customers is None and products is None) or not ctx.has(st.table, "customer_id"):
            return
        ctx.found(
            checks.broken_refs(
                ctx.con,
                st.table,
                st.children["items"],
                system=system,
                customers=customers.table if customers else None,
                products=products.table if products else None,
            )
        )
        ctx.ran(target.entity, system, "broken_ref")


class SubscriptionCurrency(SystemCheck):
    """A system's subscriptions in another currency than that system's customer (a
    ``broken_ref`` of the customer reference, ``customer_id.currency``), with one period's
    charge (golden prices) at stake. It runs exactly where ``SubscriptionRefs`` checks the
    customer references, so their shared scope resolves nothing it did not check."""

    def run(self, ctx: CheckContext, target: Target) -> None:
        st, system = target.staged, target.system
        customers = ctx.staged.get((system, "customer"))
        if customers is None or "items" not in st.children:
            return
        if not ctx.has(st.table, "customer_id", "currency") or not ctx.has(
            customers.table, "currency"
        ):
            return
        ctx.found(
            checks.subscription_currency(
                ctx.con,
                st.table,
                customers.table,
                golden_items(ctx.con),
                golden_tiers(ctx.con),
                system=system,
            )
        )
        ctx.ran(target.entity, system, "broken_ref")


class AllocationQuantities(SystemCheck):
    """A system's open allocations vs what the golden subscriptions' items require."""

    def run(self, ctx: CheckContext, target: Target) -> None:
        st = target.staged
        if not ctx.has(st.table, "subscription_item_id", "status"):
            return
        ctx.found(
            checks.allocations(
                ctx.con,
                st.table,
                golden_table("subscription"),
                golden_items(ctx.con),
                system=target.system,
                active_statuses=DELIVERING_STATUSES,
            )
        )
        ctx.ran("subscription", target.system, "aggregate")


class CatalogueRefs(RunCheck):
    """The catalogue's view of the golden subscriptions: SKUs a product system lacks or
    has retired (for product systems whose own subscriptions were not checked)."""

    def run(self, ctx: CheckContext) -> None:
        for (system, entity), st in ctx.staged.items():
            if entity != "product" or (system, "subscription") in ctx.staged:
                continue
            retired = ctx.has(st.table, "lifecycle")
            ctx.found(
                checks.broken_refs(
                    ctx.con,
                    golden_table("subscription"),
                    golden_items(ctx.con),
                    system=system,
                    products=st.table,
                    pim_products=st.table if retired else None,
                )
            )
            ctx.ran("subscription", system, "broken_ref")


def default_registry() -> CheckRegistry:
    """The checks every reconciliation runs."""
    registry = CheckRegistry()
    registry.register("invoice", CrossSystemAmounts())  # first: it claims fields
    for entity in ENTITIES:
        registry.register(entity, RecordCompare())
    registry.register("invoice", InvoiceSums())
    registry.register("invoice", PriceLeakage())
    registry.register("invoice", ExpiredDiscounts())
    registry.register("invoice", ProrationErrors())
    registry.register("invoice", UsageAgainstMeters())
    registry.register("invoice", InvoicesAfterEnd())
    registry.register("invoice", InvoicesWhilePaused())
    registry.register("invoice", DunningConsistency())
    registry.register("invoice", UnbilledPeriods())
    registry.register("invoice", RenewalsNotInvoiced())
    registry.register("subscription", SubscriptionRefs())
    registry.register("subscription", SubscriptionCurrency())
    registry.register("allocation", AllocationQuantities())
    registry.register("subscription", CatalogueRefs())
    return registry


#: The registry ``hub.recon.run.reconcile`` uses.
CHECKS = default_registry()


# -- golden views the checks share ----------------------------------------------------
def coverage_sql(spec: MappingSpec, golden_columns: Collection[str]) -> str | None:
    """The mapping's ``not_held_when`` as a condition over the golden table: true for the
    records the system is meant to hold (as ``MappingSpec.holds``: a NULL value, or a
    field the golden table lacks, excludes nothing; values compare as text). ``None``
    when the system holds every record."""
    terms = [
        f"coalesce(CAST({quote(name)} AS VARCHAR) NOT IN "
        f"({', '.join(F.literal(v) for v in excluded)}), true)"
        for name, excluded in spec.not_held_when.items()
        if excluded and name in golden_columns
    ]
    return " AND ".join(terms) if terms else None


def golden_views(
    con: duckdb.DuckDBPyConnection,
    spec: MappingSpec,
    st: Staged,
    golden_columns: Collection[str] | None = None,
) -> tuple[str, dict[str, str]]:
    """The golden tables this system is held to: all records, or those its mapping's
    ``not_held_when`` leaves it (``coverage_sql``). ``golden_columns``: the golden
    table's, if known already."""
    system, entity = spec.system, spec.entity
    kids = {name: golden_table(entity, name) for name in st.children}
    if golden_columns is None:
        golden_columns = columns(con, quote(golden_table(entity)))
    where = coverage_sql(spec, golden_columns)
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


#: The child key items are compared by when a system keeps item versions.
ITEM_VERSION_KEY = "_item_version"


def _version_id(alias: str = "") -> str:
    """An item version's id: ``<item_id>`` for the first (open-started) version,
    ``<item_id>@<effective_from>`` for a later one."""
    a = f"{alias}." if alias else ""
    return f"{a}item_id || coalesce('@' || CAST({a}effective_from AS VARCHAR), '')"


def item_versions(con: duckdb.DuckDBPyConnection, golden: str, staged: str) -> tuple[str, str]:
    """Golden and staged item tables with ``ITEM_VERSION_KEY`` (``_version_id``), so item
    versions sharing an ``item_id`` are compared version by version; findings name them
    ``items[<item_id>@<effective_from>]`` (the first version keeps ``items[<item_id>]``)."""
    out = []
    for table, suffix in ((golden, "golden"), (staged, "staged")):
        view = f"{table}_{suffix}_versions"
        run(
            con,
            f"CREATE OR REPLACE TEMP VIEW {quote(view)} AS "
            f"SELECT *, {_version_id()} AS {ITEM_VERSION_KEY} FROM {quote(table)}",
        )
        out.append(view)
    return out[0], out[1]


def _golden_item_rows(con: duckdb.DuckDBPyConnection) -> str:
    """Every golden item version, with its version id and whether it is the item's
    current (latest starting) version."""
    view = "golden_subscription_item_rows"
    items = quote(golden_table("subscription", "items"))
    run(
        con,
        f"""CREATE OR REPLACE TEMP VIEW {view} AS
            SELECT *, {_version_id()} AS version_id,
                   row_number() OVER (PARTITION BY key, item_id
                                      ORDER BY effective_from DESC NULLS LAST) = 1 AS current
            FROM {items}""",
    )
    return view


def golden_items(con: duckdb.DuckDBPyConnection) -> str:
    """Golden subscription items as they are now (each item's latest version; the
    checks that judge the present: allocations, one period's charge) with the price
    columns ``checks`` expects (kind, flat_amount_minor, unit_amount_minor, discount_bps)
    next to sku, quantity and bundle (a bundle item's components)."""
    view = "golden_subscription_items_priced"
    rows = _golden_item_rows(con)
    bundle = ", bundle" if "bundle" in columns(con, rows) else ""
    run(
        con,
        f"""CREATE OR REPLACE TEMP VIEW {view} AS
            SELECT key, item_id, sku, quantity, "price.kind" AS kind,
                   "price.flat_amount_minor" AS flat_amount_minor,
                   "price.unit_amount_minor" AS unit_amount_minor,
                   "price.discount_bps" AS discount_bps{bundle}
            FROM {rows} WHERE current""",
    )
    return view


def golden_item_versions(con: duckdb.DuckDBPyConnection) -> str:
    """Every golden subscription item version (the price history) with the price columns
    and ``effective_from`` / ``effective_to``; ``item_id`` is the item's."""
    view = "golden_subscription_item_versions"
    rows = _golden_item_rows(con)
    run(
        con,
        f"""CREATE OR REPLACE TEMP VIEW {view} AS
            SELECT key, item_id, sku, quantity, "price.kind" AS kind,
                   "price.flat_amount_minor" AS flat_amount_minor,
                   "price.unit_amount_minor" AS unit_amount_minor,
                   "price.discount_bps" AS discount_bps, effective_from, effective_to,
                   discount_until
            FROM {rows}""",
    )
    return view


def golden_tiers(con: duckdb.DuckDBPyConnection, *, versions: bool = False) -> str:
    """Golden subscription items' price tiers, one row per tier (1-based ``tier_no``):
    of the current versions keyed by ``item_id`` (as ``golden_items``), or with
    ``versions`` of every version keyed by its version id (as ``checks.price_leakage``
    expects)."""
    view = "golden_subscription_version_tiers" if versions else "golden_subscription_tiers"
    rows = _golden_item_rows(con)
    ident, where = ("version_id", "") if versions else ("item_id", "AND current")
    run(
        con,
        f"""CREATE OR REPLACE TEMP VIEW {view} AS
            SELECT key, item_id, tier_no, t.up_to AS up_to,
                   t.unit_amount_minor AS unit_amount_minor,
                   t.flat_amount_minor AS flat_amount_minor
            FROM (SELECT key, {ident} AS item_id,
                         unnest(generate_series(1, len("price.tiers"))) AS tier_no,
                         unnest("price.tiers") AS t
                  FROM {rows} WHERE len("price.tiers") > 0 {where})""",
    )
    return view


def golden_ramp_steps(con: duckdb.DuckDBPyConnection) -> str | None:
    """The golden subscriptions' ramp steps, one row per step (as ``checks.price_leakage``
    expects): key, item_id, ``first_day`` (``starts_on``, else the first day of its
    contract year counted from the subscription's start, as ``RampStep.first_day``) and
    the step's price columns and quantity (NULL where it keeps the item's); None when
    the golden subscriptions have no ramp column (a golden table staged before ramps)."""
    view = "golden_subscription_ramp_steps"
    subs = quote(golden_table("subscription"))
    if not {"ramp", "start_date"} <= set(columns(con, subs)):
        return None
    run(
        con,
        f"""CREATE OR REPLACE TEMP VIEW {view} AS
            SELECT key, r.item_id AS item_id,
                   coalesce(r.starts_on, CAST(start_date
                            + to_months(CAST(12 * (r.contract_year - 1) AS INTEGER)) AS DATE))
                       AS first_day,
                   r.price.kind AS kind, r.price.flat_amount_minor AS flat_amount_minor,
                   r.price.unit_amount_minor AS unit_amount_minor,
                   r.price.discount_bps AS discount_bps, r.quantity AS quantity
            FROM (SELECT key, start_date, unnest(ramp) AS r FROM {subs}
                  WHERE ramp IS NOT NULL AND len(ramp) > 0)""",
    )
    return view

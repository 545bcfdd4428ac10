"""Planted drift: a known, deterministic list of disagreements between the systems.

The seed first writes every system in agreement (as if the hub had just synced them);
then it plants these drifts, each in exactly one system, and writes what it planted to
``manifest.json``. The manifest is the contract for the reconciliation tests: each entry
is the finding a correct reconciliation reports (``entity``, ``key`` = hub id or SKU,
``system`` where the drift is, ``kind``, ``field``), and nothing else should be found.

Targets are picked with a generator seeded by the book's seed, among distinct customers
that have what the drift needs (an open allocation, a tax id, ...), so the same seed
always plants the same drift and no two drifts touch the same customer.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from sandbox.seed import catalog as C
from sandbox.seed.book import Book, CustomerSlice, Record, add_months

#: When the drift happened: after the book's as-of instant, so it is the newest change.
DRIFT_TS = C.AS_OF_TS + timedelta(hours=1)

ORPHAN_ALLOCATION = "ALC-ORPHAN-0001"


@dataclass(frozen=True)
class Finding:
    """One manifest entry: what reconciliation must report for a planted drift."""

    entity: str
    key: str
    system: str
    kind: str
    field: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "entity": self.entity,
            "key": self.key,
            "system": self.system,
            "kind": self.kind,
            "field": self.field,
        }


@dataclass(frozen=True)
class Drift:
    """One change to plant in one system.

    ``action``: ``delete`` (the record goes missing), ``insert_orphan`` (``value`` is the
    canonical record to insert), ``set_field`` (canonical ``field`` := ``value``),
    ``invoice_total_plus_one``, ``retire_product`` (``key`` is the SKU),
    ``line_amount_plus`` (``value`` = ``{"line_no": n, "delta": minor units}``: the line,
    the invoice's subtotal and total all raised by ``delta``, so the document adds up),
    ``usage_record_minus`` (``value`` = ``{"meter", "period_start", "delta"}``: that usage
    record of the subscription metered ``delta`` units less), ``withhold_invoice``
    (``value`` = ``{"invoice", "amount_at_stake_minor", "currency"}``: that invoice is
    never issued, so no system holds it; see :func:`withhold`)."""

    name: str
    system: str
    action: str
    entity: str
    key: str
    field: str | None = None
    value: Any = None
    record: Record | None = None  # the agreeing canonical record, for writers that need it
    findings: tuple[Finding, ...] = ()


Pick = Callable[[CustomerSlice], Drift | None]

#: The drift action of an invoice billing never issued (:func:`withhold`).
WITHHOLD_INVOICE = "withhold_invoice"


def plan(book: Book) -> list[Drift]:
    """The drift list for ``book`` (a small book may yield fewer drifts)."""
    rng = random.Random(f"sandbox-drift/{book.seed}")
    order = rng.sample(range(book.customers), min(book.customers, 3_000))
    used: set[int] = set()
    drifts: list[Drift] = []

    def choose(pick: Pick, *, not_a_parent: bool = False) -> None:
        for index in order:
            if index in used or index % C.NICHE_EVERY == C.NICHE_OFFSET:
                continue
            if not_a_parent and _is_parent(book, index):
                continue
            drift = pick(book.slice(index))
            if drift is not None:
                used.add(index)
                drifts.append(drift)
                return

    choose(_missing_in("salesforce"), not_a_parent=True)
    choose(_missing_in("sap"), not_a_parent=True)
    choose(_changed_customer_field("salesforce", "tax_id"))
    choose(_changed_customer_field("sap", "legal_name"))
    choose(_changed_customer_field("billing", "payment_terms"))
    choose(_invoice_total_off_by_one)
    choose(_allocation_quantity_wrong)
    choose(_orphan_allocation)
    choose(_price_drift)
    choose(_proration_error)
    choose(_invoice_while_paused)
    choose(_usage_over_metered)
    choose(_unbilled_period)
    retired = _retired_sku(book)
    if retired is not None:
        drifts.append(retired)
    return drifts


def manifest(applied: list[Drift]) -> list[dict[str, Any]]:
    """Manifest entries of the drifts actually planted, in a stable order."""
    entries = [f.as_json() for d in applied for f in d.findings]
    return sorted(entries, key=lambda e: (e["entity"], e["key"], e["system"], e["kind"]))


def withheld_invoices(drifts: list[Drift]) -> frozenset[str]:
    """Hub ids of the invoices the ``withhold_invoice`` drifts say were never issued."""
    return frozenset(d.value["invoice"] for d in drifts if d.action == WITHHOLD_INVOICE)


def withhold(s: CustomerSlice, invoices: frozenset[str]) -> CustomerSlice:
    """``s`` without ``invoices``. An invoice billing never issued is in no system (the
    hub never had it to sync), so it is left out before anything is written rather than
    deleted from one system afterwards, which would be a ``missing`` drift instead."""
    if not invoices or not any(inv["hub_id"] in invoices for inv in s.invoices):
        return s
    kept = [inv for inv in s.invoices if inv["hub_id"] not in invoices]
    return replace(s, invoices=kept)


# -- pickers ------------------------------------------------------------------------------
def _is_parent(book: Book, index: int) -> bool:
    from sandbox.seed.book import customer_id

    hub_id = customer_id(index)
    stop = min(book.customers, index + 201)
    return any(s.customer["parent_id"] == hub_id for s in book.slices(index + 1, stop))


def _missing_in(system: str) -> Pick:
    def pick(s: CustomerSlice) -> Drift:
        key = s.customer["hub_id"]
        return Drift(
            name=f"customer missing in {system}",
            system=system,
            action="delete",
            entity="customer",
            key=key,
            record=s.customer,
            findings=(Finding("customer", key, system, "missing"),),
        )

    return pick


def _changed_value(name: str, current: Any) -> Any:
    if name == "tax_id":
        last = current[-1]
        return current[:-1] + (str((int(last) + 1) % 10) if last.isdigit() else "0")
    if name == "legal_name":
        return f"{current} Holding"
    if name == "payment_terms":
        return "net60" if current != "net60" else "net30"
    raise ValueError(f"no drift value rule for {name}")


def _changed_customer_field(system: str, name: str) -> Pick:
    def pick(s: CustomerSlice) -> Drift | None:
        current = s.customer.get(name)
        if current is None:
            return None
        key = s.customer["hub_id"]
        return Drift(
            name=f"customer {name} changed in {system} (not its owner)",
            system=system,
            action="set_field",
            entity="customer",
            key=key,
            field=name,
            value=_changed_value(name, current),
            record=s.customer,
            findings=(Finding("customer", key, system, "mismatch", name),),
        )

    return pick


def _invoice_total_off_by_one(s: CustomerSlice) -> Drift | None:
    candidates = [inv for inv in s.invoices if inv["lines"] and inv["status"] != "void"]
    if not candidates:
        return None
    inv = candidates[len(candidates) // 2]
    return Drift(
        name="invoice total off by one minor unit in billing",
        system="billing",
        action="invoice_total_plus_one",
        entity="invoice",
        key=inv["hub_id"],
        field="total_minor",
        value=inv["total_minor"] + 1,
        record=inv,
        findings=(Finding("invoice", inv["hub_id"], "billing", "aggregate", "sum:total_minor"),),
    )


def _allocation_quantity_wrong(s: CustomerSlice) -> Drift | None:
    candidates = [a for a in s.allocations if a["status"] == "reserved"]
    if not candidates:
        return None
    alloc = candidates[0]
    return Drift(
        name="allocation quantity wrong in the WMS",
        system="wms",
        action="set_field",
        entity="allocation",
        key=alloc["hub_id"],
        field="quantity",
        value=alloc["quantity"] + 1,
        record=alloc,
        findings=(Finding("allocation", alloc["hub_id"], "wms", "mismatch", "quantity"),),
    )


def _orphan_allocation(s: CustomerSlice) -> Drift | None:
    if not s.allocations:
        return None
    model = s.allocations[0]
    orphan = {
        **model,
        "hub_id": ORPHAN_ALLOCATION,
        "delivery_date": model["delivery_date"] + timedelta(days=3),
        "status": "reserved",
        "updated_at": DRIFT_TS,
    }
    return Drift(
        name="allocation in the WMS that no other system knows",
        system="wms",
        action="insert_orphan",
        entity="allocation",
        key=ORPHAN_ALLOCATION,
        value=orphan,
        record=orphan,
        findings=(Finding("allocation", ORPHAN_ALLOCATION, "wms", "orphan"),),
    )


def _line_drift(name: str, inv: Record, line: Record, delta: int, field_name: str) -> Drift:
    return Drift(
        name=name,
        system="billing",
        action="line_amount_plus",
        entity="invoice",
        key=inv["hub_id"],
        field="lines",
        value={"line_no": line["line_no"], "delta": delta},
        record=inv,
        findings=(Finding("invoice", inv["hub_id"], "billing", "aggregate", field_name),),
    )


def _price_drift(s: CustomerSlice) -> Drift | None:
    """A recurring line billed above the price of the item version in effect for its
    period (the price check's ``price:`` finding; the document still adds up)."""
    candidates = [
        (inv, line)
        for inv in s.invoices
        if inv["status"] == "paid"
        for line in inv["lines"]
        if line.get("kind", "recurring") == "recurring" and line["amount_minor"] > 0
    ]
    if not candidates:
        return None
    inv, line = candidates[len(candidates) // 2]
    sub = next(x for x in s.subscriptions if x["hub_id"] == inv["subscription_id"])
    item = next(
        i
        for i in sub["items"]
        if i["sku"] == line["sku"]
        and (i.get("effective_from") is None or i["effective_from"] <= line["period_start"])
        and (i.get("effective_to") is None or line["period_start"] <= i["effective_to"])
    )
    field_name = f"price:lines[{line['line_no']}].amount_minor@items[{item['item_id']}]"
    delta = max(100, line["amount_minor"] // 10)
    return _line_drift("invoice line priced above its item in billing", inv, line, delta,
                       field_name)  # fmt: skip


def _proration_error(s: CustomerSlice) -> Drift | None:
    """A proration line billed with the wrong amount (the ``proration:`` finding)."""
    candidates = [
        (inv, line)
        for inv in s.invoices
        if inv["status"] != "void"
        for line in inv["lines"]
        if line.get("kind") == "proration"
    ]
    if not candidates:
        return None
    inv, line = candidates[0]
    field_name = f"proration:lines[{line['line_no']}].amount_minor@items[{line['proration_of']}]"
    delta = max(100, abs(line["amount_minor"]) // 2)
    return _line_drift("proration line with the wrong amount in billing", inv, line, delta,
                       field_name)  # fmt: skip


def _invoice_while_paused(s: CustomerSlice) -> Drift | None:
    """A resumed pause recorded as starting one month earlier than it did, so the invoice
    billing that month was issued while paused (the ``paused:issue_date`` finding), and so
    was the one billing that month's usage in arrears on the real pause's first day, if
    the subscription meters usage (its usage lines no longer end before the pause)."""
    for sub in s.subscriptions:
        if sub.get("resume_at") is None:
            continue
        earlier = add_months(sub["paused_at"], -1)
        hit = [
            inv
            for inv in s.invoices
            if inv["subscription_id"] == sub["hub_id"]
            and inv["status"] != "void"
            and earlier <= inv["issue_date"] < sub["resume_at"]
            and not (inv["lines"] and all(ln["period_end"] < earlier for ln in inv["lines"]))
        ]
        if not hit:
            continue
        return Drift(
            name="subscription paused a month early in billing (an invoice issued while paused)",
            system="billing",
            action="set_field",
            entity="subscription",
            key=sub["hub_id"],
            field="paused_at",
            value=earlier,
            record=sub,
            findings=tuple(
                Finding("invoice", inv["hub_id"], "billing", "aggregate", "paused:issue_date")
                for inv in hit
            ),
        )
    return None


def _usage_over_metered(s: CustomerSlice) -> Drift | None:
    """A usage record metering less than its usage line bills (the ``usage:`` finding on
    the invoice: billed more than metered)."""
    for inv in s.invoices:
        if inv["status"] == "void":
            continue
        for line in inv["lines"]:
            if line.get("kind") != "usage" or line["quantity"] < 1:
                continue
            sub = next(x for x in s.subscriptions if x["hub_id"] == inv["subscription_id"])
            if not any(
                r["meter"] == line["sku"] and r["period_start"] == line["period_start"]
                for r in sub.get("usage_records", ())
            ):
                continue
            field_name = f"usage:lines[{line['line_no']}].quantity@meters[{line['sku']}]"
            return Drift(
                name="usage record metering less than billed in billing",
                system="billing",
                action="usage_record_minus",
                entity="subscription",
                key=sub["hub_id"],
                field="usage_records",
                value={
                    "meter": line["sku"],
                    "period_start": line["period_start"].isoformat(),
                    "delta": max(1, line["quantity"] // 4),
                },
                record=sub,
                findings=(Finding("invoice", inv["hub_id"], "billing", "aggregate", field_name),),
            )
    return None


def _unbilled_period(s: CustomerSlice) -> Drift | None:
    """An invoice of an active subscription never issued mid-history (neither its first
    invoice nor one of its last two), so its service period is unbilled (the
    ``unbilled:period`` finding, keyed ``<subscription>@<period start>``). Only on a
    subscription whose items never changed and never paused and no invoice of which was
    voided, so what the check expects (its items at their quantities, usage at its flat
    fee, net of tax) is exactly the withheld invoice's recurring lines."""
    for sub in s.subscriptions:
        invs = [i for i in s.invoices if i["subscription_id"] == sub["hub_id"]]
        plain = sub["status"] == "active" and sub.get("paused_at") is None
        plain = plain and not any(
            i.get("effective_from") or i.get("discount_until") for i in sub["items"]
        )
        if not plain or len(invs) < 4 or any(i["status"] == "void" for i in invs):
            continue
        inv = invs[len(invs) // 2 - 1]
        recurring = [ln for ln in inv["lines"] if ln["kind"] == "recurring"]
        if inv["status"] != "paid" or not recurring:
            continue
        start = recurring[0]["period_start"]
        key = f"{sub['hub_id']}@{start.isoformat()}"
        return Drift(
            name="invoice of a service period never issued by billing (an unbilled period)",
            system="billing",
            action=WITHHOLD_INVOICE,
            entity="invoice",
            key=key,
            value={
                "invoice": inv["hub_id"],
                "amount_at_stake_minor": sum(ln["amount_minor"] for ln in recurring),
                "currency": inv["currency"],
            },
            record=inv,
            findings=(Finding("invoice", key, "billing", "aggregate", "unbilled:period"),),
        )
    return None


def _retired_sku(book: Book) -> Drift | None:
    """Retire the niche SKU in the PIM; every subscription item still on it is a broken
    reference. Needs at least ``NICHE_OFFSET + 1`` customers."""
    findings = []
    for index in range(C.NICHE_OFFSET, book.customers, C.NICHE_EVERY):
        for sub in book.slice(index).subscriptions:
            for item in sub["items"]:
                if item["sku"] == C.NICHE_SKU:
                    field_name = f"items[{item['item_id']}].sku"
                    findings.append(
                        Finding("subscription", sub["hub_id"], "pim", "broken_ref", field_name)
                    )
    if not findings:
        return None
    product = next(p for p in C.canonical_products() if p["sku"] == C.NICHE_SKU)
    return Drift(
        name="SKU retired in the PIM while still subscribed",
        system="pim",
        action="retire_product",
        entity="product",
        key=C.NICHE_SKU,
        field="lifecycle",
        value="retired",
        record=product,
        findings=tuple(findings),
    )

"""Load the book into the billing store (SQLite file or PostgreSQL) and plant its drift.

Rows go in with explicit ids in multi-row inserts, one transaction per batch of
customers, so 100k customers and a million invoices load without holding the book in
memory; PostgreSQL's id sequences are moved past the loaded ids at the end so ordinary
inserts by the billing connector keep working.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from connectors import billing_schema as S
from sandbox.seed import catalog as C
from sandbox.seed import xref
from sandbox.seed.book import CustomerSlice, Record
from sandbox.seed.drift import Drift

SYSTEM = "billing"
CURRENCIES = tuple(sorted(C.FX))
PERIODS = ("month", "quarter", "year")


def _price_code(sku: str, currency: str, period: str) -> str:
    return f"{sku}-{currency}-{period}".upper()


class BillingWriter:
    """Streams book slices into the billing tables; ids follow the book's order."""

    system = SYSTEM

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        S.create_billing_schema(engine)
        self._ids = dict.fromkeys(("sub", "item", "invoice", "line", "allocation"), 0)
        self._price_ids: dict[str, int] = {}

    def is_empty(self) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(S.accounts)).scalar() == 0

    def write_products(self, products: list[Record]) -> None:
        rows, prices = [], []
        for n, p in enumerate(products, start=1):
            rows.append({"id": n, **_pick(p, S.products), "created_at": p["updated_at"]})
        for spec in sorted(C.PRODUCTS, key=lambda s: s.sku):
            for currency in CURRENCIES:
                for period in PERIODS:
                    code = _price_code(spec.sku, currency, period)
                    self._price_ids[code] = len(self._price_ids) + 1
                    price = C.list_price(spec, currency, period)
                    prices.append(
                        {
                            "id": self._price_ids[code],
                            "code": code,
                            "sku": spec.sku,
                            "currency": currency,
                            "billing_period": period,
                            "kind": price["kind"],
                            "flat_amount_minor": price["flat_amount_minor"],
                            "unit_amount_minor": price["unit_amount_minor"],
                            "tiers": price["tiers"],
                            "active": spec.sellable,
                            "created_at": C.CATALOG_TS,
                            "updated_at": C.CATALOG_TS,
                        }
                    )
        with self.engine.begin() as conn:
            conn.execute(S.products.insert(), rows)
            conn.execute(S.prices.insert(), prices)

    def write_slices(self, slices: Iterable[CustomerSlice]) -> None:
        accounts: list[dict[str, Any]] = []
        subs: list[dict[str, Any]] = []
        items: list[dict[str, Any]] = []
        invoices: list[dict[str, Any]] = []
        lines: list[dict[str, Any]] = []
        allocs: list[dict[str, Any]] = []
        for s in slices:
            accounts.append(_account(s.customer))
            sub_ids: dict[str, int] = {}
            for sub in s.subscriptions:
                self._ids["sub"] += 1
                sub_ids[sub["hub_id"]] = self._ids["sub"]
                subs.append(_subscription(sub, self._ids["sub"]))
                for item in sub["items"]:
                    self._ids["item"] += 1
                    code = _price_code(item["sku"], sub["currency"], sub["billing_period"])
                    items.append(
                        _item(
                            item,
                            self._ids["item"],
                            sub,
                            self._ids["sub"],
                            self._price_ids.get(code),
                        )
                    )
            for inv in s.invoices:
                self._ids["invoice"] += 1
                invoice_id = self._ids["invoice"]
                invoices.append(_invoice(inv, invoice_id, sub_ids))
                for line in inv["lines"]:
                    self._ids["line"] += 1
                    lines.append(_line(line, self._ids["line"], invoice_id, inv["updated_at"]))
            for alloc in s.allocations:
                self._ids["allocation"] += 1
                allocs.append(_allocation(alloc, self._ids["allocation"], sub_ids))
        with self.engine.begin() as conn:
            for table, rows in (
                (S.accounts, accounts),
                (S.subscriptions, subs),
                (S.subscription_items, items),
                (S.invoices, invoices),
                (S.invoice_lines, lines),
                (S.allocations, allocs),
            ):
                if rows:
                    conn.execute(table.insert(), rows)

    def finish(self) -> None:
        S.reset_id_sequences(self.engine)

    # -- drift -----------------------------------------------------------------------------
    def apply(self, drift: Drift, at: datetime) -> bool:
        """Plant one drift in the billing tables; False if it is not billing's to plant."""
        with self.engine.begin() as conn:
            if drift.action == "line_amount_plus":
                return _line_amount_plus(conn, drift, at)
            if drift.action == "usage_record_minus":
                return _usage_record_minus(conn, drift, at)
            if drift.action == "invoice_total_plus_one":
                table = S.invoices
                values: dict[str, Any] = {"total_minor": table.c.total_minor + 1}
            elif drift.action == "set_field" and drift.entity == "customer":
                table = S.accounts
                values = {drift.field or "": drift.value}
            elif drift.action == "set_field" and drift.entity == "subscription":
                table = S.subscriptions
                values = {drift.field or "": drift.value}
            else:
                return False
            result = conn.execute(
                sa.update(table).where(table.c.hub_id == drift.key).values(**values, updated_at=at)
            )
            return bool(result.rowcount)


def _line_amount_plus(conn: sa.Connection, drift: Drift, at: datetime) -> bool:
    """Raise one invoice line's amount, and its invoice's subtotal and total with it."""
    line_no, delta = int(drift.value["line_no"]), int(drift.value["delta"])
    inv, ln = S.invoices, S.invoice_lines
    invoice_id = conn.execute(sa.select(inv.c.id).where(inv.c.hub_id == drift.key)).scalar()
    if invoice_id is None:
        return False
    conn.execute(
        sa.update(ln)
        .where(ln.c.invoice_id == invoice_id, ln.c.line_no == line_no)
        .values(
            amount_minor=ln.c.amount_minor + delta,
            unit_amount_minor=ln.c.unit_amount_minor + delta,
            updated_at=at,
        )
    )
    conn.execute(
        sa.update(inv)
        .where(inv.c.id == invoice_id)
        .values(
            subtotal_minor=inv.c.subtotal_minor + delta,
            total_minor=inv.c.total_minor + delta,
            updated_at=at,
        )
    )
    return True


def _usage_record_minus(conn: sa.Connection, drift: Drift, at: datetime) -> bool:
    """Lower one usage record of a subscription (by meter and period start)."""
    sub = S.subscriptions
    records = conn.execute(sa.select(sub.c.usage_records).where(sub.c.hub_id == drift.key)).scalar()
    if not records:
        return False
    meter, start = drift.value["meter"], drift.value["period_start"]
    changed = [
        {**r, "quantity": max(0, r["quantity"] - int(drift.value["delta"]))}
        if r["meter"] == meter and r["period_start"] == start
        else r
        for r in records
    ]
    if changed == records:
        return False
    conn.execute(
        sa.update(sub).where(sub.c.hub_id == drift.key).values(usage_records=changed, updated_at=at)
    )
    return True


def _pick(record: Record, table: sa.Table) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k in table.c and k != "id"}


def _account(c: Record) -> dict[str, Any]:
    hub_id = c["hub_id"]
    row = _pick(c, S.accounts)
    row.update(
        id=xref.customer_index(hub_id) + 1,
        account_number=f"A-{xref.customer_index(hub_id) + 1:08d}",
        sap_customer_number=xref.sap_customer_number(hub_id),
        salesforce_account_id=xref.salesforce_account_id(hub_id),
        parent_account_id=(xref.customer_index(c["parent_id"]) + 1 if c.get("parent_id") else None),
        created_at=c["updated_at"],
    )
    for prefix, address in (("billing", c["billing_address"]), ("shipping", c["shipping_address"])):
        for part in ("street", "city", "postal_code", "country", "region"):
            row[f"{prefix}_{part}"] = address.get(part) if address else None
    return row


def _json_days(rows: list[Record]) -> list[Record]:
    """A JSON list column's rows with their days as ISO text."""
    return [{k: v.isoformat() if isinstance(v, date) else v for k, v in r.items()} for r in rows]


def _subscription(sub: Record, sub_id: int) -> dict[str, Any]:
    row = _pick(sub, S.subscriptions)
    row.update(
        # every row names every column: a multi-row insert takes its columns from the first
        paused_at=sub.get("paused_at"),
        resume_at=sub.get("resume_at"),
        usage_records=_json_days(sub.get("usage_records", [])),
        commitment_minor=sub.get("commitment_minor"),
        commitment_term_months=sub.get("commitment_term_months"),
        ramp=_json_days(sub.get("ramp", [])),
        id=sub_id,
        account_id=xref.customer_index(sub["customer_id"]) + 1,
        created_at=sub["updated_at"],
    )
    return row


def _item(
    item: Record, item_id: int, sub: Record, sub_pk: int, price_id: int | None
) -> dict[str, Any]:
    price = item["price"]
    return {
        "id": item_id,
        "subscription_id": sub_pk,
        "item_id": item["item_id"],
        "sku": item["sku"],
        "quantity": item["quantity"],
        "price_id": price_id,
        "price_kind": price["kind"],
        "flat_amount_minor": price["flat_amount_minor"],
        "unit_amount_minor": price["unit_amount_minor"],
        "tiers": price["tiers"],
        "discount_bps": price["discount_bps"],
        "effective_from": item.get("effective_from"),
        "effective_to": item.get("effective_to"),
        "discount_until": item.get("discount_until"),
        "bundle": item.get("bundle", []),
        "created_at": sub["updated_at"],
        "updated_at": sub["updated_at"],
    }


def _invoice(inv: Record, invoice_id: int, sub_ids: dict[str, int]) -> dict[str, Any]:
    row = _pick(inv, S.invoices)
    row.update(
        dunning_events=_json_days(inv.get("dunning_events", [])),
        id=invoice_id,
        account_id=xref.customer_index(inv["customer_id"]) + 1,
        subscription_id=sub_ids.get(inv["subscription_id"] or ""),
        sap_billing_document=xref.sap_billing_document(inv["hub_id"]),
        salesforce_invoice_id=xref.salesforce_invoice_id(inv["hub_id"]),
        paid_at=inv["updated_at"] if inv["status"] == "paid" else None,
        created_at=inv["updated_at"],
    )
    return row


def _line(line: Record, line_id: int, invoice_id: int, stamp: datetime) -> dict[str, Any]:
    return {
        **line,
        # every row names every column: a multi-row insert takes its columns from the first
        "kind": line.get("kind", "recurring"),
        "proration_of": line.get("proration_of"),
        "id": line_id,
        "invoice_id": invoice_id,
        "created_at": stamp,
        "updated_at": stamp,
    }


def _allocation(alloc: Record, alloc_id: int, sub_ids: dict[str, int]) -> dict[str, Any]:
    return {
        "id": alloc_id,
        "hub_id": alloc["hub_id"],
        "subscription_id": sub_ids[alloc["subscription_id"]],
        "item_id": alloc["subscription_item_id"],
        "sku": alloc["sku"],
        "location": alloc["location"],
        "quantity": alloc["quantity"],
        "delivery_date": alloc["delivery_date"],
        "status": alloc["status"],
        "wms_allocation_id": xref.wms_allocation_id(alloc["hub_id"]),
        "created_at": alloc["updated_at"],
        "updated_at": alloc["updated_at"],
    }

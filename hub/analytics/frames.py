"""The golden records the analytics read, as six DuckDB views with fixed columns.

The metrics SQL only ever reads these views, so anything that can produce them - the
hub store through :func:`load_frames`, or a benchmark generating millions of rows straight
into DuckDB - gets the same computation:

``a_subs``      sub_id, customer_id, currency, months (1/3/12), status, start_date,
                end_date, trial_end, updated_at (TIMESTAMPTZ), paused_at, resume_at
                (DATE: the current or latest pause, kept after it ends; NULL: none)
``a_items``     sub_id, item_id, sku, quantity, kind, flat, unit, tiers
                (list of {up_to, unit_amount_minor, flat_amount_minor}), discount_bps,
                effective_from, effective_to (one row per item version; NULL: open-ended)
``a_invoices``  invoice_id, customer_id, subscription_id, currency, total_minor,
                amount_paid_minor, issue_date, status, dunning_stage, tax_minor
``a_lines``     invoice_id, sku, amount_minor, period_start, period_end
``a_dunning``   invoice_id, stage (1-4), reached_on (DATE), outcome ('retried', 'paid',
                'written_off' or NULL: pending): one row per dunning event of an invoice
``a_customers`` customer_id, legal_name, segment

``effective_from``/``effective_to``, ``tax_minor`` and ``paused_at``/``resume_at`` are
optional for other producers (the benchmark's generated tables): when absent, every item
version is open-ended, no invoice carries tax and a pause is known by its status only; a
producer without ``a_dunning`` has no dunning events (no invoice counts as in dunning).

Loading reuses the reconciliation's golden loader (``hub.recon.golden``): JSON to Arrow in
C++, child lists (``items``, ``lines``) split into their own tables, no per-record Python.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pyarrow as pa
from sqlalchemy import Engine

from hub.recon.golden import children, load_golden

VIEWS = ("a_subs", "a_items", "a_invoices", "a_lines", "a_dunning", "a_customers")


@dataclass(frozen=True)
class Frames:
    """Golden subscriptions (and their items), invoices (and their lines and dunning
    events) and customers."""

    subscriptions: pa.Table
    items: pa.Table
    invoices: pa.Table
    lines: pa.Table
    customers: pa.Table
    dunning_events: pa.Table

    @property
    def counts(self) -> dict[str, int]:
        return {
            "subscriptions": self.subscriptions.num_rows,
            "invoices": self.invoices.num_rows,
            "customers": self.customers.num_rows,
        }


def load_frames(engine: Engine) -> Frames:
    """Every non-deleted golden subscription, invoice and customer in the store."""
    subs = load_golden(engine, "subscription")
    invoices = load_golden(engine, "invoice")
    customers = load_golden(engine, "customer")
    return Frames(
        subscriptions=subs.drop_columns(["items"]),
        items=children(subs, "items"),
        invoices=invoices.drop_columns(["lines", "dunning_events"]),
        lines=children(invoices, "lines"),
        customers=customers,
        dunning_events=children(invoices, "dunning_events"),
    )


def register_frames(con: duckdb.DuckDBPyConnection, frames: Frames) -> None:
    """Expose ``frames`` as the ``a_*`` views in ``con``."""
    con.register("g_subs", frames.subscriptions)
    con.register("g_items", frames.items)
    con.register("g_invoices", frames.invoices)
    con.register("g_lines", frames.lines)
    con.register("g_customers", frames.customers)
    con.register("g_dunning", frames.dunning_events)
    con.execute(
        """
        CREATE OR REPLACE TEMP VIEW a_subs AS
        SELECT hub_id AS sub_id, customer_id, currency,
               CASE billing_period WHEN 'year' THEN 12 WHEN 'quarter' THEN 3 ELSE 1 END
                   AS months,
               status, start_date, end_date, trial_end, updated_at, paused_at, resume_at
        FROM g_subs;
        CREATE OR REPLACE TEMP VIEW a_items AS
        SELECT key AS sub_id, item_id, sku, quantity, "price.kind" AS kind,
               "price.flat_amount_minor" AS flat, "price.unit_amount_minor" AS unit,
               "price.tiers" AS tiers, "price.discount_bps" AS discount_bps,
               effective_from, effective_to
        FROM g_items;
        CREATE OR REPLACE TEMP VIEW a_invoices AS
        SELECT hub_id AS invoice_id, customer_id, subscription_id, currency, total_minor,
               amount_paid_minor, issue_date, status, dunning_stage, tax_minor
        FROM g_invoices;
        CREATE OR REPLACE TEMP VIEW a_lines AS
        SELECT key AS invoice_id, sku, amount_minor, period_start, period_end FROM g_lines;
        CREATE OR REPLACE TEMP VIEW a_dunning AS
        SELECT key AS invoice_id, stage, "on" AS reached_on, outcome FROM g_dunning;
        CREATE OR REPLACE TEMP VIEW a_customers AS
        SELECT hub_id AS customer_id, legal_name, segment FROM g_customers;
        """
    )

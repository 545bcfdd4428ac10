"""Checks across fields, records and systems: sums, price models, references, stock.

Every check is one SQL statement over the inputs and yields findings of kind
``aggregate`` or ``broken_ref``. An aggregate finding's ``field`` names the check before
a colon, so two checks on the same field keep distinct identities:

- ``sum:total_minor``      invoice total != sum of line amounts + tax
- ``sum:subtotal_minor``   invoice subtotal != sum of line amounts
- ``price:lines[n].amount_minor``  billed line amount != the subscription's price model
  (revenue leakage; ``amount_at_stake_minor`` = expected - billed: positive is
  under-billing, negative over-billing)
- ``<reference>:<field>``  another system's document amount != the reference system's
- ``allocation:items[i]@<date>.quantity``  open allocations != what an active
  subscription item requires
- ``stock:quantity``       open allocations of a SKU at a location > stock on hand

Input columns are the canonical field names (flattened), with ``key`` the hub id; child
tables (lines, items, tiers) carry their parent's hub id in ``key``.
"""

# ruff: noqa: S608 - SQL is built from quoted identifiers and escaped literals; values
# that come from callers are bound parameters.

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import pyarrow as pa

from hub.recon import findings as F
from hub.recon.engine import Source, columns, quote, register

_OPEN_ALLOCATIONS = ("reserved", "picked")


def invoice_sums(
    con: duckdb.DuckDBPyConnection, invoices: Source, lines: Source, *, system: str
) -> pa.Table:
    """Invoice arithmetic: subtotal = sum(lines), total = sum(lines) + tax. Invoices with no
    lines are held to total = subtotal + tax."""
    inv, ln = register(con, invoices, "inv"), register(con, lines, "lines")
    ext = "i.external_id" if "external_id" in columns(con, inv) else "NULL"
    s = F.literal(system)
    base = f"""
        SELECT i.key, {ext} AS external_id, i.currency, i.subtotal_minor, i.tax_minor,
               i.total_minor, l.n, l.amount
        FROM {inv} i LEFT JOIN (SELECT key, count(*) n, sum(amount_minor) amount
                                FROM {ln} GROUP BY key) l USING (key)"""
    rows = f"""
        SELECT 'invoice' entity, key, external_id, {s} system, 'aggregate' kind,
               'sum:total_minor' field, CAST(exp AS VARCHAR) expected,
               CAST(total_minor AS VARCHAR) actual, 'error' severity,
               exp - total_minor amount_at_stake_minor, currency
        FROM (SELECT *, CASE WHEN n IS NULL THEN subtotal_minor ELSE amount END
                        + coalesce(tax_minor, 0) AS exp FROM ({base}))
        WHERE exp IS DISTINCT FROM total_minor
        UNION ALL
        SELECT 'invoice', key, external_id, {s}, 'aggregate', 'sum:subtotal_minor',
               CAST(amount AS VARCHAR), CAST(subtotal_minor AS VARCHAR), 'error',
               amount - subtotal_minor, currency
        FROM ({base}) WHERE n IS NOT NULL AND amount IS DISTINCT FROM subtotal_minor"""
    return F.finalize(con, rows)


def price_amount_sql(items: str, tiers: str) -> str:
    """Per subscription item and quantity ``q``: what ``hub.model.Price.amount_minor``
    charges, as SQL. ``items`` must expose key, item_id, kind, flat_amount_minor,
    unit_amount_minor, discount_bps and q; ``tiers`` key, item_id, tier_no (1-based order),
    up_to (NULL for the last), unit_amount_minor, flat_amount_minor."""
    return f"""
        WITH t AS (
            SELECT key, item_id, tier_no, up_to, unit_amount_minor u, flat_amount_minor f,
                   coalesce(lag(up_to) OVER (PARTITION BY key, item_id ORDER BY tier_no), 0) lower
            FROM {tiers}),
        i0 AS (SELECT *, row_number() OVER () AS _rid FROM {items}),
        grad AS (
            SELECT i._rid,
                   sum(CASE WHEN least(i.q, coalesce(t.up_to, i.q)) > t.lower
                            THEN CAST(t.f AS HUGEINT)
                                 + CAST(t.u AS HUGEINT)
                                   * (least(i.q, coalesce(t.up_to, i.q)) - t.lower)
                            ELSE 0 END) gross
            FROM i0 i JOIN t USING (key, item_id) WHERE i.kind = 'graduated'
            GROUP BY i._rid),
        vol AS (
            SELECT i._rid,
                   arg_min(CAST(t.f AS HUGEINT) + CAST(t.u AS HUGEINT) * i.q, t.tier_no) gross
            FROM i0 i JOIN t USING (key, item_id)
            WHERE i.kind = 'volume' AND (t.up_to IS NULL OR i.q <= t.up_to)
            GROUP BY i._rid),
        gross AS (
            SELECT i.* EXCLUDE (_rid), CASE
                WHEN i.kind = 'flat' THEN CAST(i.flat_amount_minor AS HUGEINT)
                WHEN i.kind IN ('per_unit', 'usage')
                    THEN CAST(i.flat_amount_minor AS HUGEINT)
                         + CAST(i.unit_amount_minor AS HUGEINT) * i.q
                WHEN i.kind = 'graduated' THEN coalesce(grad.gross, 0)
                WHEN i.kind = 'volume' THEN vol.gross END AS gross
            FROM i0 i LEFT JOIN grad USING (_rid) LEFT JOIN vol USING (_rid))
        SELECT *, CAST(gross - (gross * coalesce(discount_bps, 0) + 5000) // 10000 AS BIGINT)
                  AS price_minor
        FROM gross"""


def price_leakage(
    con: duckdb.DuckDBPyConnection,
    invoices: Source,
    lines: Source,
    items: Source,
    tiers: Source | None = None,
    *,
    system: str,
) -> pa.Table:
    """Billed line amounts against the subscription's price model for the period.

    A line is matched to its invoice's subscription item by SKU (the first item by
    item_id if a subscription has the SKU twice). Quantity is the subscription item's,
    except for usage prices, which charge the line's metered quantity. Lines without a SKU
    or invoices without a subscription are not priced."""
    inv, ln, it = (
        register(con, x, h) for x, h in ((invoices, "inv"), (lines, "lines"), (items, "items"))
    )
    if tiers is None:
        tiers = pa.table(
            {
                "key": pa.array([], pa.string()),
                "item_id": pa.array([], pa.string()),
                "tier_no": pa.array([], pa.int64()),
                "up_to": pa.array([], pa.int64()),
                "unit_amount_minor": pa.array([], pa.int64()),
                "flat_amount_minor": pa.array([], pa.int64()),
            }
        )
    tr = register(con, tiers, "tiers")
    ext = "i.external_id" if "external_id" in columns(con, inv) else "NULL"
    matched = f"""
        SELECT i.key AS invoice_key, {ext} AS external_id, i.currency, l.line_no,
               l.amount_minor AS billed, it.key, it.item_id, it.kind, it.flat_amount_minor,
               it.unit_amount_minor, it.discount_bps,
               CAST(CASE WHEN it.kind = 'usage' THEN l.quantity ELSE it.quantity END AS BIGINT) q
        FROM {inv} i JOIN {ln} l ON l.key = i.key
        JOIN {it} it ON it.key = i.subscription_id AND it.sku = l.sku
        QUALIFY row_number() OVER (PARTITION BY i.key, l.line_no ORDER BY it.item_id) = 1"""
    view = f"_recon_priced_{abs(hash((inv, ln, it, tr)))}"
    con.execute(f"CREATE OR REPLACE TEMP TABLE {view} AS {matched}").fetchall()
    try:
        rows = f"""
            SELECT 'invoice' entity, invoice_key key, external_id, {F.literal(system)} system,
                   'aggregate' kind,
                   'price:lines[' || CAST(line_no AS VARCHAR) || '].amount_minor' field,
                   CAST(price_minor AS VARCHAR) expected, CAST(billed AS VARCHAR) actual,
                   'error' severity, price_minor - billed amount_at_stake_minor, currency
            FROM ({price_amount_sql(view, tr)}) WHERE price_minor IS DISTINCT FROM billed"""
        return F.finalize(con, rows)
    finally:
        con.execute(f"DROP TABLE IF EXISTS {view}").fetchall()


def cross_system_amounts(
    con: duckdb.DuckDBPyConnection,
    reference: Source,
    other: Source,
    *,
    system: str,
    reference_system: str = "billing",
    entity: str = "invoice",
    fields: Sequence[str] = ("total_minor",),
) -> pa.Table:
    """Another system's copy of a document (an SAP billing document, a Salesforce
    invoice) against the reference system's amounts, key by key (keys on one side only
    are ``compare``'s missing/orphan, not repeated here)."""
    ref, oth = register(con, reference, "ref"), register(con, other, "other")
    o_cols = columns(con, oth)
    ext = "o.external_id" if "external_id" in o_cols else "NULL"
    cur = "coalesce(r.currency, o.currency)" if "currency" in o_cols else "r.currency"
    parts = [
        f"""SELECT {F.literal(entity)} entity, r.key, {ext} external_id,
                   {F.literal(system)} system, 'aggregate' kind,
                   {F.literal(f"{reference_system}:{f}")} field,
                   CAST(r.{quote(f)} AS VARCHAR) expected, CAST(o.{quote(f)} AS VARCHAR) actual,
                   'error' severity, CAST(r.{quote(f)} AS BIGINT) - CAST(o.{quote(f)} AS BIGINT)
                   amount_at_stake_minor, {cur} currency
            FROM {ref} r JOIN {oth} o USING (key)
            WHERE r.{quote(f)} IS DISTINCT FROM o.{quote(f)}"""
        for f in fields
    ]
    return F.finalize(con, " UNION ALL ".join(parts))


def broken_refs(
    con: duckdb.DuckDBPyConnection,
    subscriptions: Source,
    items: Source,
    *,
    system: str,
    customers: Source | None = None,
    products: Source | None = None,
    pim_products: Source | None = None,
) -> pa.Table:
    """Subscriptions pointing at a customer or SKU that the system does not have
    (``customers`` / ``products``: that system's records, ``key`` = hub id / SKU), or at a
    SKU the PIM has retired (``pim_products``: key = SKU, with ``lifecycle``). A missing
    reference is reported before a retired one (one finding per reference)."""
    sub, it = register(con, subscriptions, "subs"), register(con, items, "items")
    ext = "s.external_id" if "external_id" in columns(con, sub) else "NULL"
    s = F.literal(system)
    parts = []
    if customers is not None:
        cu = register(con, customers, "customers")
        parts.append(
            f"""SELECT 'subscription' entity, s.key, {ext} external_id, {s} system,
                       'broken_ref' kind, 'customer_id' field, '"exists"' expected,
                       CAST(to_json(s.customer_id) AS VARCHAR) actual, 'error' severity,
                       NULL amount_at_stake_minor, s.currency
                FROM {sub} s WHERE s.customer_id IS NOT NULL
                  AND NOT EXISTS (SELECT 1 FROM {cu} c WHERE c.key = s.customer_id)"""
        )
    if products is not None or pim_products is not None:
        exists = "true"
        if products is not None:
            pr = register(con, products, "products")
            exists = f"EXISTS (SELECT 1 FROM {pr} p WHERE p.key = i.sku)"
        retired = "false"
        if pim_products is not None:
            pim = register(con, pim_products, "pim")
            retired = (
                f"EXISTS (SELECT 1 FROM {pim} p WHERE p.key = i.sku AND p.lifecycle = 'retired')"
            )
        parts.append(
            f"""SELECT 'subscription' entity, i.key, {ext} external_id, {s} system,
                       'broken_ref' kind,
                       'items[' || CAST(i.item_id AS VARCHAR) || '].sku' field,
                       CASE WHEN NOT ({exists}) THEN '"exists"' ELSE '"active"' END expected,
                       CAST(to_json(i.sku) AS VARCHAR) actual, 'error' severity,
                       NULL amount_at_stake_minor, s.currency
                FROM {it} i LEFT JOIN {sub} s ON s.key = i.key
                WHERE NOT ({exists}) OR ({retired})"""
        )
    if not parts:
        return F.empty()
    return F.finalize(con, " UNION ALL ".join(parts))


def allocations(
    con: duckdb.DuckDBPyConnection,
    allocations: Source,
    subscriptions: Source,
    items: Source,
    *,
    system: str,
    stock: Source | None = None,
    active_statuses: Sequence[str] = ("active", "past_due"),
) -> pa.Table:
    """Open (reserved or picked) allocations per subscription item and delivery date
    against the item's quantity (zero when the subscription is not active), and, given
    ``stock`` (sku, location, quantity on hand), open allocations per SKU and location
    beyond what is on hand."""
    al, sub, it = (
        register(con, x, h)
        for x, h in ((allocations, "alloc"), (subscriptions, "subs"), (items, "items"))
    )
    s = F.literal(system)
    open_ = ", ".join(F.literal(x) for x in _OPEN_ALLOCATIONS)
    active = ", ".join(F.literal(x) for x in active_statuses)
    parts = [
        f"""SELECT 'subscription' entity, a.subscription_id key, NULL external_id, {s} system,
                   'aggregate' kind,
                   'allocation:items[' || CAST(a.subscription_item_id AS VARCHAR) || ']@'
                     || CAST(a.delivery_date AS VARCHAR) || '.quantity' field,
                   CAST(coalesce(req, 0) AS VARCHAR) expected, CAST(allocated AS VARCHAR) actual,
                   'error' severity, NULL amount_at_stake_minor, NULL currency
            FROM (SELECT subscription_id, subscription_item_id, delivery_date,
                         sum(quantity) allocated
                  FROM {al} WHERE status IN ({open_})
                  GROUP BY ALL) a
            LEFT JOIN (SELECT i.key, i.item_id, i.quantity AS req FROM {it} i
                       JOIN {sub} s ON s.key = i.key WHERE s.status IN ({active})) r
              ON r.key = a.subscription_id AND r.item_id = a.subscription_item_id
            WHERE coalesce(req, 0) <> allocated"""
    ]
    if stock is not None:
        st = register(con, stock, "stock")
        parts.append(
            f"""SELECT 'stock' entity, a.sku || '@' || a.location key, NULL external_id,
                       {s} system, 'aggregate' kind, 'stock:quantity' field,
                       CAST(coalesce(st.quantity, 0) AS VARCHAR) expected,
                       CAST(a.allocated AS VARCHAR) actual, 'error' severity,
                       NULL amount_at_stake_minor, NULL currency
                FROM (SELECT sku, location, sum(quantity) allocated FROM {al}
                      WHERE status IN ({open_}) GROUP BY ALL) a
                LEFT JOIN {st} st USING (sku, location)
                WHERE a.allocated > coalesce(st.quantity, 0)"""
        )
    return F.finalize(con, " UNION ALL ".join(parts))

"""Checks across fields, records and systems: sums, price models, references, stock.

Every check is one SQL statement over the inputs and yields findings of kind
``aggregate`` or ``broken_ref``. An aggregate finding's ``field`` names the check before
a colon, so two checks on the same field keep distinct identities:

- ``sum:total_minor``      invoice total != sum of line amounts + tax
- ``sum:subtotal_minor``   invoice subtotal != sum of line amounts
- ``price:lines[n].amount_minor@items[<item>]``  billed recurring line amount != the
  price of the item version in effect for the line's service period (revenue leakage;
  ``amount_at_stake_minor`` = expected - billed: positive is under-billing, negative
  over-billing)
- ``proration:lines[n].amount_minor@items[<item>]``  a proration line != the proration
  the subscription's policy gives for the change of that item (``hub.pricing``)
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
from dataclasses import dataclass
from datetime import date

import duckdb
import pyarrow as pa

from hub.recon import findings as F
from hub.recon.engine import Source, columns, quote, register

_OPEN_ALLOCATIONS = ("reserved", "picked")
#: DuckDB's type of a bundle (``hub.model.BundleComponent`` list) for items without one
_BUNDLE_TYPE = "STRUCT(sku VARCHAR, quantity BIGINT, share_bps BIGINT)[]"


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


def _versioned(con: duckdb.DuckDBPyConnection, items: str) -> str:
    """``items`` with ``base_item_id`` (the item) and ``item_id`` made the version's id
    (``<item_id>@<effective_from>`` for a version with a first day; the tiers of
    :func:`price_leakage` / :func:`proration_errors` are keyed the same way), and
    ``effective_from`` / ``effective_to`` (NULL when ``items`` has no such columns)."""
    cols = columns(con, items)
    lo = "effective_from" if "effective_from" in cols else "CAST(NULL AS DATE)"
    hi = "effective_to" if "effective_to" in cols else "CAST(NULL AS DATE)"
    dropped = ", ".join(c for c in ("item_id", "effective_from", "effective_to") if c in cols)
    return f"""
        SELECT * EXCLUDE ({dropped}), item_id AS base_item_id,
               item_id || coalesce('@' || CAST({lo} AS VARCHAR), '') AS item_id,
               CAST({lo} AS DATE) AS effective_from, CAST({hi} AS DATE) AS effective_to
        FROM {items}"""


def _in_effect(alias: str, day: str) -> str:
    return (
        f"({day} IS NULL OR (({alias}.effective_from IS NULL OR {alias}.effective_from <= {day}) "
        f"AND ({alias}.effective_to IS NULL OR {day} <= {alias}.effective_to)))"
    )


def _line_kind(con: duckdb.DuckDBPyConnection, lines: str) -> str:
    return "l.kind" if "kind" in columns(con, lines) else "'recurring'"


def price_leakage(
    con: duckdb.DuckDBPyConnection,
    invoices: Source,
    lines: Source,
    items: Source,
    tiers: Source | None = None,
    *,
    system: str,
    ramps: Source | None = None,
) -> pa.Table:
    """Billed recurring and usage line amounts against the price of the subscription item
    version in effect for the line's service period (``hub.pricing.period_amount``).

    A line is matched to its invoice's subscription item by SKU, among the versions in
    effect on the line's ``period_start`` (the invoice's issue date when the line has no
    period; the first item by item_id if a subscription has the SKU twice). Quantity is the
    version's, except for usage prices, which charge the line's metered quantity. Proration
    and one-time lines (``kind``) are not priced here (proration: :func:`proration_errors`),
    nor are lines without a SKU or invoices without a subscription. ``items`` may carry
    ``effective_from`` / ``effective_to`` (absent: always in effect) and
    ``discount_until`` (the discount applies to periods starting on or before it; absent
    or NULL: it does not expire); ``tiers`` are keyed by the version's id
    (:func:`_versioned`). A line still billed at an expired discount is left to
    :func:`expired_discounts` (one drift, one finding).

    A ramped contract's item is priced with the ramp step in effect on the same day
    (``ramps``: key, item_id, first_day and the step's kind, flat_amount_minor,
    unit_amount_minor, discount_bps and quantity, NULL where the step keeps the item's;
    ``hub.pricing.ramped_item``), so year 2 is held to the year-2 price. A bundle item is
    one item with one price: its line is priced at the bundle's price, never at its
    components' (they only split that amount).

    Field ``price:lines[<n>].amount_minor@items[<item_id>]``; amount at stake = expected -
    billed (positive: under-billing, negative: over-billing), in the invoice currency."""
    return _priced_lines(
        con, invoices, lines, items, tiers, system=system, which="price", ramps=ramps
    )


def expired_discounts(
    con: duckdb.DuckDBPyConnection,
    invoices: Source,
    lines: Source,
    items: Source,
    tiers: Source | None = None,
    *,
    system: str,
    ramps: Source | None = None,
) -> pa.Table:
    """Recurring and usage lines still billed at their item's discount for a service period
    starting after the item version's ``discount_until``: the billed amount equals the
    discounted price and differs from the full one (matched and priced as in
    :func:`price_leakage`). Field ``discount:lines[<n>].amount_minor@items[<item_id>]``;
    expected the full price, actual the billed amount, amount at stake = full - billed
    (positive: under-billing), in the invoice currency."""
    return _priced_lines(
        con, invoices, lines, items, tiers, system=system, which="discount", ramps=ramps
    )


def _priced_lines(
    con: duckdb.DuckDBPyConnection,
    invoices: Source,
    lines: Source,
    items: Source,
    tiers: Source | None,
    *,
    system: str,
    which: str,
    ramps: Source | None = None,
) -> pa.Table:
    inv, ln, it = (
        register(con, x, h) for x, h in ((invoices, "inv"), (lines, "lines"), (items, "items"))
    )
    tr = register(con, _empty_tiers() if tiers is None else tiers, "tiers")
    ext = "i.external_id" if "external_id" in columns(con, inv) else "NULL"
    days = [
        c for c, t in (("l.period_start", ln), ("i.issue_date", inv)) if c[2:] in columns(con, t)
    ]
    day = f"coalesce({', '.join(days)})" if days else "CAST(NULL AS DATE)"
    until = "it.discount_until" if "discount_until" in columns(con, it) else "CAST(NULL AS DATE)"
    matched = f"""
        SELECT i.key AS invoice_key, {ext} AS external_id, i.currency, l.line_no,
               l.amount_minor AS billed, it.key, it.item_id, it.base_item_id, it.kind,
               it.flat_amount_minor, it.unit_amount_minor, it.discount_bps,
               {day} AS day, {until} AS until, l.quantity AS line_q, it.quantity AS item_q
        FROM {inv} i JOIN {ln} l ON l.key = i.key
        JOIN ({_versioned(con, it)}) it ON it.key = i.subscription_id AND it.sku = l.sku
             AND {_in_effect("it", day)}
        WHERE coalesce({_line_kind(con, ln)}, 'recurring') IN ('recurring', 'usage')
        QUALIFY row_number() OVER (PARTITION BY i.key, l.line_no ORDER BY it.base_item_id) = 1"""
    matched = f"""
        SELECT * EXCLUDE (day, until, line_q, item_q),
               coalesce(until IS NOT NULL AND day > until
                        AND coalesce(discount_bps, 0) > 0, false) AS expired,
               CAST(CASE WHEN kind = 'usage' THEN line_q ELSE item_q END AS BIGINT) q
        FROM ({_ramped(con, matched, ramps)})"""
    view = f"_recon_priced_{abs(hash((inv, ln, it, tr)))}"
    con.execute(f"CREATE OR REPLACE TEMP TABLE {view} AS {matched}").fetchall()
    try:
        # price_minor: with the discount; gross: without it (an expired discount)
        priced = f"""
            SELECT *, CAST(CASE WHEN expired THEN gross ELSE price_minor END AS BIGINT) due,
                   expired AND billed = price_minor AND price_minor <> gross AS still_discounted
            FROM ({price_amount_sql(view, tr)})"""
        if which == "price":
            prefix, where = "price", "due IS DISTINCT FROM billed AND NOT still_discounted"
        else:
            prefix, where = "discount", "still_discounted"
        rows = f"""
            SELECT 'invoice' entity, invoice_key key, external_id, {F.literal(system)} system,
                   'aggregate' kind,
                   '{prefix}:lines[' || CAST(line_no AS VARCHAR) || '].amount_minor@items['
                     || base_item_id || ']' field,
                   CAST(due AS VARCHAR) expected, CAST(billed AS VARCHAR) actual,
                   'error' severity, due - billed amount_at_stake_minor, currency
            FROM ({priced}) WHERE {where}"""
        return F.finalize(con, rows)
    finally:
        con.execute(f"DROP TABLE IF EXISTS {view}").fetchall()


def _ramped(con: duckdb.DuckDBPyConnection, matched: str, ramps: Source | None) -> str:
    """``matched`` lines (key, base_item_id, day, the item's price columns and item_q) with
    the price and quantity of the item's ramp step in effect on the line's day in place of
    the item's (the last step whose ``first_day`` is on or before it; a step's NULL price
    or quantity keeps the item's). Without ``ramps``: ``matched`` as it is."""
    if ramps is None:
        return matched
    rp = register(con, ramps, "ramps")
    priced = "r.kind IS NOT NULL"
    return f"""
        SELECT m.* REPLACE (
                   CASE WHEN {priced} THEN r.kind ELSE m.kind END AS kind,
                   CASE WHEN {priced} THEN r.flat_amount_minor ELSE m.flat_amount_minor END
                       AS flat_amount_minor,
                   CASE WHEN {priced} THEN r.unit_amount_minor ELSE m.unit_amount_minor END
                       AS unit_amount_minor,
                   CASE WHEN {priced} THEN r.discount_bps ELSE m.discount_bps END
                       AS discount_bps,
                   coalesce(r.quantity, m.item_q) AS item_q)
        FROM ({matched}) m
        LEFT JOIN {rp} r ON r.key = m.key AND r.item_id = m.base_item_id
             AND r.first_day <= m.day
        QUALIFY row_number() OVER (PARTITION BY m.invoice_key, m.line_no
                                   ORDER BY r.first_day DESC NULLS LAST) = 1"""


def _half_even_sql(num: str, den: str) -> str:
    """``num / den`` rounded half to even, for ``num`` >= 0 and ``den`` > 0 (integers)."""
    q, r = f"(({num}) // ({den}))", f"(({num}) % ({den}))"
    return (
        f"({q} + CASE WHEN 2 * {r} > ({den}) THEN 1 "
        f"WHEN 2 * {r} = ({den}) AND {q} % 2 = 1 THEN 1 ELSE 0 END)"
    )


def proration_errors(
    con: duckdb.DuckDBPyConnection,
    invoices: Source,
    lines: Source,
    subscriptions: Source,
    items: Source,
    tiers: Source | None = None,
    *,
    system: str,
) -> pa.Table:
    """Proration lines (``kind = 'proration'``) against the proration the subscription's
    policy gives (``hub.pricing.proration``).

    A proration line bills the change of item ``proration_of`` from its ``period_start``
    (the new version's first day) to its ``period_end`` (the last day of the billing period
    it falls in). That period starts ``billing_period`` months before the day after
    ``period_end`` (``hub.pricing.period_of``); days = its length, days_left = period_end -
    period_start + 1. The old version is the one ending the day before the change, the new
    one the one in effect on it (either may be absent: an added or removed item). Under
    ``daily``: expected = round_half_even(new x days_left / days) - round_half_even(old x
    days_left / days), each version priced for one period at its quantity (usage at 0
    units); a change on the period's first day, and every proration under ``none`` or
    ``billing_cycle``, expects 0.

    Field ``proration:lines[<n>].amount_minor@items[<item_id>]``; amount at stake =
    expected - billed, in the invoice currency. Given the subscriptions' ``billing_period``
    and ``start_date``, also a change no proration line bills (``_missing_prorations_sql``:
    key ``<subscription>@<change day>``, field ``proration:missing@items[<item_id>]``,
    actual 0, amount at stake the proration, in the subscription's currency)."""
    inv, ln, sub, it = (
        register(con, x, h)
        for x, h in ((invoices, "inv"), (lines, "lines"), (subscriptions, "subs"), (items, "items"))
    )
    if not {"kind", "proration_of", "period_start", "period_end"} <= set(columns(con, ln)):
        return F.empty()
    tr = register(con, _empty_tiers() if tiers is None else tiers, "tiers")
    ext = "i.external_id" if "external_id" in columns(con, inv) else "NULL"
    policy = "s.proration_policy" if "proration_policy" in columns(con, sub) else "'daily'"
    months = _PERIOD_MONTHS.format(p="s.billing_period")
    priced = price_amount_sql(
        f"(SELECT *, CAST(CASE WHEN kind = 'usage' THEN 0 ELSE quantity END AS BIGINT) q "
        f"FROM ({_versioned(con, it)}))",
        tr,
    )
    view = f"_recon_prorated_{abs(hash((inv, ln, sub, it, tr)))}"
    con.execute(f"CREATE OR REPLACE TEMP TABLE {view} AS {priced}").fetchall()
    try:
        base = f"""
            SELECT i.key invoice_key, {ext} external_id, i.currency, l.line_no,
                   l.amount_minor billed, l.proration_of item, l.period_start change,
                   l.period_end pe, coalesce({policy}, 'daily') policy,
                   CAST(CAST(l.period_end + INTERVAL 1 DAY AS DATE)
                        - to_months(CAST({months} AS INTEGER)) AS DATE) ps,
                   (SELECT max(v.price_minor) FROM {view} v
                    WHERE v.key = i.subscription_id AND v.base_item_id = l.proration_of
                      AND v.effective_to = CAST(l.period_start - INTERVAL 1 DAY AS DATE)) old_amt,
                   (SELECT max(v.price_minor) FROM {view} v
                    WHERE v.key = i.subscription_id AND v.base_item_id = l.proration_of
                      AND {_in_effect("v", "l.period_start")}) new_amt
            FROM {inv} i JOIN {ln} l ON l.key = i.key
            LEFT JOIN {sub} s ON s.key = i.subscription_id
            WHERE l.kind = 'proration' AND l.period_start IS NOT NULL
              AND l.period_end IS NOT NULL"""
        days, left = "(date_diff('day', ps, pe) + 1)", "(date_diff('day', change, pe) + 1)"
        exp = f"""CASE WHEN policy <> 'daily' OR change <= ps OR change > pe THEN 0 ELSE
                  {_half_even_sql(f"CAST(coalesce(new_amt, 0) AS HUGEINT) * {left}", days)}
                  - {_half_even_sql(f"CAST(coalesce(old_amt, 0) AS HUGEINT) * {left}", days)}
                  END"""
        rows = f"""
            SELECT 'invoice' entity, invoice_key key, external_id, {F.literal(system)} system,
                   'aggregate' kind,
                   'proration:lines[' || CAST(line_no AS VARCHAR) || '].amount_minor@items['
                     || coalesce(item, '') || ']' field,
                   CAST(expected AS VARCHAR) expected, CAST(billed AS VARCHAR) actual,
                   'error' severity, expected - billed amount_at_stake_minor, currency
            FROM (SELECT *, CAST({exp} AS BIGINT) expected FROM ({base}))
            WHERE expected IS DISTINCT FROM billed"""
        sub_cols = columns(con, sub)
        if {"billing_period", "start_date"} <= set(sub_cols):
            rows += " UNION ALL " + _missing_prorations_sql(con, inv, ln, sub, view, system)
        return F.finalize(con, rows)
    finally:
        con.execute(f"DROP TABLE IF EXISTS {view}").fetchall()


def _missing_prorations_sql(
    con: duckdb.DuckDBPyConnection, inv: str, ln: str, sub: str, priced: str, system: str
) -> str:
    """Findings rows for item changes inside a period of a ``daily`` subscription whose
    proration no non-void invoice bills (no line of kind proration naming the item with the
    change day as its ``period_start``), once the subscription has a non-void invoice
    issued after the change. The period is the subscription's billing period containing
    the change, counted from its trial end (else start date) as ``unbilled_periods`` does."""
    policy = "s.proration_policy" if "proration_policy" in columns(con, sub) else "'daily'"
    trial = "s.trial_end" if "trial_end" in columns(con, sub) else "NULL"
    months = _PERIOD_MONTHS.format(p="s.billing_period")
    live = "i.status IS DISTINCT FROM 'void'" if "status" in columns(con, inv) else "true"
    changes = f"""
        SELECT v.key sub_key, v.base_item_id item, v.effective_from change, v.price_minor new_amt,
               s.currency, coalesce({policy}, 'daily') policy,
               coalesce({trial}, s.start_date) anchor, {months} m,
               (SELECT max(o.price_minor) FROM {priced} o
                WHERE o.key = v.key AND o.base_item_id = v.base_item_id
                  AND o.effective_to = CAST(v.effective_from - INTERVAL 1 DAY AS DATE)) old_amt
        FROM {priced} v JOIN {sub} s ON s.key = v.key
        WHERE v.effective_from IS NOT NULL"""
    periods = f"""
        SELECT *, CAST(anchor + to_months(CAST(k * m AS INTEGER)) AS DATE) ps,
               CAST(anchor + to_months(CAST((k + 1) * m AS INTEGER)) - INTERVAL 1 DAY AS DATE) pe
        FROM (SELECT *, CASE WHEN anchor + to_months(CAST(k0 * m AS INTEGER)) > change
                             THEN k0 - 1 ELSE k0 END k
              FROM (SELECT *, date_diff('month', anchor, change) // m k0 FROM ({changes})
                    WHERE m IS NOT NULL AND anchor IS NOT NULL AND change > anchor))"""
    days, left = "(date_diff('day', ps, pe) + 1)", "(date_diff('day', change, pe) + 1)"
    exp = (
        f"{_half_even_sql(f'CAST(coalesce(new_amt, 0) AS HUGEINT) * {left}', days)}"
        f" - {_half_even_sql(f'CAST(coalesce(old_amt, 0) AS HUGEINT) * {left}', days)}"
    )
    return f"""
        SELECT 'invoice' entity, sub_key || '@' || CAST(change AS VARCHAR) key,
               NULL external_id, {F.literal(system)} system, 'aggregate' kind,
               'proration:missing@items[' || item || ']' field,
               CAST(expected AS VARCHAR) expected, '0' actual, 'error' severity,
               expected amount_at_stake_minor, currency
        FROM (SELECT *, CAST({exp} AS BIGINT) expected FROM ({periods})
              WHERE policy = 'daily' AND change > ps) p
        WHERE expected <> 0
          AND EXISTS (SELECT 1 FROM {inv} i WHERE i.subscription_id = p.sub_key AND {live}
                      AND i.issue_date > p.change)
          AND NOT EXISTS (SELECT 1 FROM {inv} i JOIN {ln} l ON l.key = i.key
                          WHERE i.subscription_id = p.sub_key AND {live}
                            AND l.kind = 'proration' AND l.proration_of = p.item
                            AND l.period_start = p.change)"""


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
    beyond what is on hand.

    A bundle item (``items`` may carry ``bundle``, its components: sku, quantity per
    bundle unit) is delivered as its components (``hub.sync.deliveries``): its open
    allocations are summed per component SKU and held to the bundle's quantity times the
    component's; field ``allocation:items[<item_id>/<sku>]@<date>.quantity``."""
    al, sub, it = (
        register(con, x, h)
        for x, h in ((allocations, "alloc"), (subscriptions, "subs"), (items, "items"))
    )
    s = F.literal(system)
    open_ = ", ".join(F.literal(x) for x in _OPEN_ALLOCATIONS)
    active = ", ".join(F.literal(x) for x in active_statuses)
    bundle = "i.bundle" if "bundle" in columns(con, it) else f"CAST([] AS {_BUNDLE_TYPE})"
    items_ = f"(SELECT i.key, i.item_id, i.quantity, coalesce({bundle}, []) bundle FROM {it} i)"
    required = f"""
        SELECT i.key, i.item_id, CAST(NULL AS VARCHAR) comp, i.quantity AS req
        FROM {items_} i JOIN {sub} s ON s.key = i.key
        WHERE s.status IN ({active}) AND len(i.bundle) = 0
        UNION ALL
        SELECT key, item_id, c.sku, quantity * coalesce(c.quantity, 1)
        FROM (SELECT i.key, i.item_id, i.quantity, unnest(i.bundle) c
              FROM {items_} i JOIN {sub} s ON s.key = i.key
              WHERE s.status IN ({active}) AND len(i.bundle) > 0)"""
    bundled = f"SELECT DISTINCT key, item_id FROM {items_} WHERE len(bundle) > 0"
    parts = [
        f"""SELECT 'subscription' entity, a.subscription_id key, NULL external_id, {s} system,
                   'aggregate' kind,
                   'allocation:items[' || CAST(a.subscription_item_id AS VARCHAR)
                     || coalesce('/' || a.comp, '') || ']@'
                     || CAST(a.delivery_date AS VARCHAR) || '.quantity' field,
                   CAST(coalesce(req, 0) AS VARCHAR) expected, CAST(allocated AS VARCHAR) actual,
                   'error' severity, NULL amount_at_stake_minor, NULL currency
            FROM (SELECT a.subscription_id, a.subscription_item_id,
                         CASE WHEN b.key IS NOT NULL THEN CAST(a.sku AS VARCHAR) END comp,
                         a.delivery_date, sum(a.quantity) allocated
                  FROM {al} a LEFT JOIN ({bundled}) b
                    ON b.key = a.subscription_id AND b.item_id = a.subscription_item_id
                  WHERE a.status IN ({open_})
                  GROUP BY ALL) a
            LEFT JOIN ({required}) r
              ON r.key = a.subscription_id AND r.item_id = a.subscription_item_id
             AND r.comp IS NOT DISTINCT FROM a.comp
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


# -- the commercial model (issue 17) ----------------------------------------------------
#: Months per canonical billing period (``hub.model.BillingPeriod.months``).
_PERIOD_MONTHS = "CASE {p} WHEN 'month' THEN 1 WHEN 'quarter' THEN 3 WHEN 'year' THEN 12 END"


def _empty_tiers() -> pa.Table:
    return pa.table(
        {
            "key": pa.array([], pa.string()),
            "item_id": pa.array([], pa.string()),
            "tier_no": pa.array([], pa.int64()),
            "up_to": pa.array([], pa.int64()),
            "unit_amount_minor": pa.array([], pa.int64()),
            "flat_amount_minor": pa.array([], pa.int64()),
        }
    )


def _period_amounts_sql(items: str, tiers: str) -> str:
    """Per subscription (``key``): what one billing period charges at the items'
    quantities, by ``hub.model.Price.amount_minor`` (usage items at zero metered units:
    their flat fee only; what a period will meter is not known). Net of tax."""
    priced = price_amount_sql(
        f"(SELECT *, CAST(CASE WHEN kind = 'usage' THEN 0 ELSE quantity END AS BIGINT) q "
        f"FROM {items})",
        tiers,
    )
    return f"SELECT key, CAST(sum(price_minor) AS BIGINT) amount FROM ({priced}) GROUP BY key"


def _period_amount_join(
    con: duckdb.DuckDBPyConnection, items: Source | None, tiers: Source | None, alias: str
) -> tuple[str, str]:
    """(amount expression, join) pricing one billing period of the subscription keyed by
    ``alias``.key (``_period_amounts_sql``); ("NULL", "") without ``items``."""
    if items is None:
        return "NULL", ""
    it = register(con, items, "items")
    tr = register(con, _empty_tiers() if tiers is None else tiers, "tiers")
    return "a.amount", f"LEFT JOIN ({_period_amounts_sql(it, tr)}) a ON a.key = {alias}.key"


def subscription_currency(
    con: duckdb.DuckDBPyConnection,
    subscriptions: Source,
    customers: Source,
    items: Source | None = None,
    tiers: Source | None = None,
    *,
    system: str,
) -> pa.Table:
    """Subscriptions whose currency differs from their customer's (both as ``system``
    holds them). Kind ``broken_ref`` (the customer reference does not fit), field
    ``customer_id.currency``; amount at stake: what one period of the subscription bills
    (``items``/``tiers`` priced as in :func:`price_leakage`, usage at its flat fee), in the
    subscription's currency, positive; NULL without ``items``."""
    sub, cu = register(con, subscriptions, "subs"), register(con, customers, "customers")
    ext = "s.external_id" if "external_id" in columns(con, sub) else "NULL"
    amount, join = _period_amount_join(con, items, tiers, "s")
    rows = f"""
        SELECT 'subscription' entity, s.key, {ext} external_id, {F.literal(system)} system,
               'broken_ref' kind, 'customer_id.currency' field,
               CAST(to_json(c.currency) AS VARCHAR) expected,
               CAST(to_json(s.currency) AS VARCHAR) actual, 'error' severity,
               {amount} amount_at_stake_minor, s.currency
        FROM {sub} s JOIN {cu} c ON c.key = s.customer_id {join}
        WHERE s.currency IS NOT NULL AND c.currency IS NOT NULL AND s.currency <> c.currency"""
    return F.finalize(con, rows)


def invoices_after_end(
    con: duckdb.DuckDBPyConnection, invoices: Source, subscriptions: Source, *, system: str
) -> pa.Table:
    """Invoices (any status but void) issued after their subscription ended: the
    subscription is canceled or paused, as held now, with an ``end_date`` before the
    invoice's ``issue_date``. Field ``ended:issue_date`` (expected: the end date, actual: the
    issue date); amount at stake: minus the invoice total (billed when nothing was owed:
    over-billing). The model has no pause (or cancellation) date: a paused or canceled
    subscription without an end date cannot be judged, and one issued on the end date
    itself is not flagged."""
    inv, sub = register(con, invoices, "inv"), register(con, subscriptions, "subs")
    ext = "i.external_id" if "external_id" in columns(con, inv) else "NULL"
    rows = f"""
        SELECT 'invoice' entity, i.key, {ext} external_id, {F.literal(system)} system,
               'aggregate' kind, 'ended:issue_date' field,
               CAST(to_json(s.end_date) AS VARCHAR) expected,
               CAST(to_json(i.issue_date) AS VARCHAR) actual, 'error' severity,
               -i.total_minor amount_at_stake_minor, i.currency
        FROM {inv} i JOIN {sub} s ON s.key = i.subscription_id
        WHERE s.status IN ('canceled', 'paused') AND s.end_date IS NOT NULL
          AND i.issue_date > s.end_date AND i.status IS DISTINCT FROM 'void'"""
    return F.finalize(con, rows)


@dataclass(frozen=True)
class DunningSchedule:
    """How far past due an invoice must be for each dunning stage: stage ``n`` from
    ``stage_days[n - 1]`` days after the due date. The canonical model holds stages, not
    the schedule; the default is the one the sandbox's billing follows (stage 1 the day
    after the due date, 2 after 15 days, 3 after 30, 4 after 60). An open invoice more
    than ``unstaged_after_days`` past due should carry a stage."""

    stage_days: tuple[int, ...] = (1, 15, 30, 60)
    unstaged_after_days: int = 30

    def allowed_sql(self, days: str) -> str:
        """The highest stage ``days`` past due allows, as SQL."""
        terms = " + ".join(
            f"CASE WHEN {days} >= {int(d)} THEN 1 ELSE 0 END" for d in self.stage_days
        )
        return f"({terms or '0'})"


def _date_sql(day: date) -> str:
    return f"CAST('{day.isoformat()}' AS DATE)"


def dunning(
    con: duckdb.DuckDBPyConnection,
    invoices: Source,
    customers: Source | None = None,
    *,
    system: str,
    today: date,
    billed_through: date,
    schedule: DunningSchedule = DunningSchedule(),
    last_stage: int = 4,
) -> pa.Table:
    """Dunning as one system holds it, against its own invoices' dates and amounts:

    - ``dunning:dunning_stage`` (invoice): a stage higher than the days past due as of
      ``today`` allow (expected: the highest allowed), or an open invoice more than
      ``schedule.unstaged_after_days`` past due as of ``billed_through`` with no stage
      (expected: the stage the schedule calls for);
    - ``dunning:dunning_level`` (customer): the level differs from the highest stage of the
      customer's open invoices (0 when none is open);
    - ``dunning:status`` (customer): at the last level but not ``blocked``.

    Where an invoice carries ``dunning_events`` (the run), its stages are judged by them
    instead of by today: ``dunning:dunning_events[<n>].stage`` (n 1-based) for an event
    whose stage is higher than the days past due on its day (``on``) allow (expected: the
    highest allowed), and ``dunning:status`` (invoice) for a run whose last outcome the
    status contradicts (``paid`` but not paid, ``written_off`` but not uncollectible;
    expected the status the outcome calls for).

    Amount at stake, positive: the invoice's open amount (total - paid); for a customer,
    the open amount of its open invoices in the customer's currency (NULL when none). For
    a recovered invoice's outcome (``paid``): its total."""
    inv = register(con, invoices, "inv")
    cols = columns(con, inv)
    ext = "i.external_id" if "external_id" in cols else "NULL"
    paid = "coalesce(i.amount_paid_minor, 0)" if "amount_paid_minor" in cols else "0"
    s = F.literal(system)
    now = f"date_diff('day', i.due_date, {_date_sql(today)})"
    billed = f"date_diff('day', i.due_date, {_date_sql(billed_through)})"
    events = "dunning_events" in cols
    no_run = "(i.dunning_events IS NULL OR len(i.dunning_events) = 0)" if events else "true"
    parts = [
        f"""SELECT 'invoice' entity, i.key, {ext} external_id, {s} system, 'aggregate' kind,
                   'dunning:dunning_stage' field,
                   CAST(CASE WHEN i.dunning_stage > {schedule.allowed_sql(now)}
                             THEN {schedule.allowed_sql(now)}
                             ELSE {schedule.allowed_sql(billed)} END AS VARCHAR) expected,
                   CAST(i.dunning_stage AS VARCHAR) actual, 'error' severity,
                   i.total_minor - {paid} amount_at_stake_minor, i.currency
            FROM {inv} i
            WHERE (i.dunning_stage > {schedule.allowed_sql(now)} AND {no_run})
               OR (i.status = 'open' AND coalesce(i.dunning_stage, 0) = 0
                   AND {billed} > {int(schedule.unstaged_after_days)})"""
    ]
    if events:
        run_ = f"""
            SELECT i.key, {ext} external_id, i.currency, i.status, i.due_date,
                   i.total_minor - {paid} open_amount, i.total_minor,
                   generate_subscripts(i.dunning_events, 1) n, unnest(i.dunning_events) ev
            FROM {inv} i WHERE len(i.dunning_events) > 0"""
        on = "date_diff('day', due_date, ev.\"on\")"
        parts.append(
            f"""SELECT 'invoice', key, external_id, {s}, 'aggregate',
                       'dunning:dunning_events[' || CAST(n AS VARCHAR) || '].stage',
                       CAST({schedule.allowed_sql(on)} AS VARCHAR), CAST(ev.stage AS VARCHAR),
                       'error', open_amount, currency
                FROM ({run_}) WHERE ev.stage > {schedule.allowed_sql(on)}
                UNION ALL
                SELECT 'invoice', key, external_id, {s}, 'aggregate', 'dunning:status',
                       CAST(to_json(want) AS VARCHAR), CAST(to_json(status) AS VARCHAR),
                       'error', CASE WHEN want = 'paid' THEN total_minor ELSE open_amount END,
                       currency
                FROM (SELECT *, CASE ev.outcome WHEN 'paid' THEN 'paid'
                                     WHEN 'written_off' THEN 'uncollectible' END want
                      FROM ({run_}) QUALIFY n = max(n) OVER (PARTITION BY key))
                WHERE want IS NOT NULL AND status IS DISTINCT FROM want"""
        )
    if customers is not None:
        cu = register(con, customers, "customers")
        c_ext = "c.external_id" if "external_id" in columns(con, cu) else "NULL"
        joined = f"""
            SELECT c.key, {c_ext} external_id, c.currency, coalesce(c.dunning_level, 0) level,
                   c.status, coalesce(a.top, 0) top, a.open_amount
            FROM {cu} c LEFT JOIN (
                SELECT i.customer_id, max(coalesce(i.dunning_stage, 0)) top,
                       sum(i.total_minor - {paid}) FILTER (WHERE i.currency = c2.currency)
                         open_amount
                FROM {inv} i JOIN {cu} c2 ON c2.key = i.customer_id
                WHERE i.status = 'open' GROUP BY i.customer_id) a ON a.customer_id = c.key"""
        parts.append(
            f"""SELECT 'customer' entity, key, external_id, {s} system, 'aggregate' kind,
                       'dunning:dunning_level' field, CAST(top AS VARCHAR) expected,
                       CAST(level AS VARCHAR) actual, 'error' severity,
                       open_amount amount_at_stake_minor, currency
                FROM ({joined}) WHERE level <> top
                UNION ALL
                SELECT 'customer', key, external_id, {s}, 'aggregate', 'dunning:status',
                       '"blocked"', CAST(to_json(status) AS VARCHAR), 'error', open_amount,
                       currency
                FROM ({joined})
                WHERE level >= {int(last_stage)} AND status IS DISTINCT FROM 'blocked'"""
        )
    return F.finalize(con, " UNION ALL ".join(parts))


def _billed_spans(con: duckdb.DuckDBPyConnection, inv: str, ln: str | None) -> str:
    """(subscription_id, lo, hi): the service periods billed by non-void invoices. A line
    bills its ``period_start``..``period_end`` (no period dates: the issue date); an
    invoice with no line but usage lines (or none at all) bills its issue date. Usage
    lines do not bill their period: usage is billed in arrears, on the next period's
    invoice, so a usage line for a period says nothing of whether the period itself (its
    recurring charge) was invoiced."""
    billed_inv = f"SELECT * FROM {inv} WHERE status IS DISTINCT FROM 'void'"
    if ln is None:
        return f"SELECT subscription_id, issue_date lo, issue_date hi FROM ({billed_inv}) i"
    usage = "coalesce(l.kind = 'usage', false)" if "kind" in columns(con, ln) else "false"
    billing = f"(SELECT * FROM {ln} l WHERE NOT {usage})"
    return f"""
        SELECT i.subscription_id,
               coalesce(l.period_start, i.issue_date) lo,
               coalesce(l.period_end, l.period_start, i.issue_date) hi
        FROM ({billed_inv}) i JOIN {billing} l ON l.key = i.key
        UNION ALL
        SELECT i.subscription_id, i.issue_date, i.issue_date FROM ({billed_inv}) i
        WHERE NOT EXISTS (SELECT 1 FROM {billing} l WHERE l.key = i.key)"""


def unbilled_periods(
    con: duckdb.DuckDBPyConnection,
    subscriptions: Source,
    invoices: Source,
    lines: Source | None = None,
    items: Source | None = None,
    tiers: Source | None = None,
    *,
    system: str,
    through: date,
    statuses: Sequence[str] = ("active", "past_due"),
) -> pa.Table:
    """Service periods of billing subscriptions that no invoice of ``system`` bills.

    A subscription in ``statuses`` is billed every ``billing_period`` from its trial end
    (or start date): period ``k`` starts ``k`` periods after that anchor (clipped to the
    month's end, as ``hub.model.add_months``) and ends the day before the next. A period is
    judged when it starts before ``through`` (the day the system is known to have been
    billing), not before the system's billing history (its earliest non-void invoice or
    line period), before the subscription's ``end_date`` and not within its pause (from
    ``paused_at`` to the day before ``resume_at``, when the subscriptions carry them). It
    is billed when a line of a non-void invoice of the subscription has a service period
    overlapping it (``_billed_spans``: usage lines, billed in arrears, do not count; a line
    without period dates, or an invoice with no other line, covers its issue date).

    Findings: entity ``invoice`` (the invoice that is missing), key
    ``<subscription>@<period start>``, field ``unbilled:period``; expected / amount at
    stake: what the period bills at the items' quantities (``_period_amounts_sql``: usage
    at its flat fee, net of tax), positive (under-billing), in the subscription's currency;
    actual 0."""
    sub, inv = register(con, subscriptions, "subs"), register(con, invoices, "inv")
    ln = register(con, lines, "lines") if lines is not None else None
    amount, join = _period_amount_join(con, items, tiers, "p")
    spans = _billed_spans(con, inv, ln)
    months = _PERIOD_MONTHS.format(p="s.billing_period")
    active = ", ".join(F.literal(x) for x in statuses)
    end = _date_sql(through)
    paused = (
        "s.paused_at, s.resume_at"
        if {"paused_at", "resume_at"} <= set(columns(con, sub))
        else "CAST(NULL AS DATE) paused_at, CAST(NULL AS DATE) resume_at"
    )
    periods = f"""
        WITH spans AS ({spans}),
        horizon AS (SELECT min(least(lo, hi)) h FROM spans),
        subs AS (
            SELECT s.key, s.currency, s.end_date, coalesce(s.trial_end, s.start_date) anchor,
                   {months} m, {paused}
            FROM {sub} s WHERE s.status IN ({active})),
        gen AS (
            SELECT key, currency, end_date, anchor, m, paused_at, resume_at,
                   unnest(range(0, CAST(greatest(date_diff('month', anchor, {end}), 0) // m
                                        + 2 AS BIGINT))) k
            FROM subs WHERE m IS NOT NULL AND anchor IS NOT NULL),
        p AS (
            SELECT key, currency, end_date, paused_at, resume_at,
                   CAST(anchor + to_months(CAST(k * m AS INTEGER)) AS DATE) ps,
                   CAST(anchor + to_months(CAST((k + 1) * m AS INTEGER)) AS DATE)
                     - INTERVAL 1 DAY pe_ts
            FROM gen)
        SELECT p.key, p.currency, p.ps, CAST(p.pe_ts AS DATE) pe FROM p, horizon
        WHERE horizon.h IS NOT NULL AND p.ps >= horizon.h AND p.ps < {end}
          AND (p.end_date IS NULL OR p.ps < p.end_date)
          AND NOT coalesce(p.ps >= p.paused_at AND (p.resume_at IS NULL OR p.ps < p.resume_at),
                           false)
          AND NOT EXISTS (SELECT 1 FROM spans x WHERE x.subscription_id = p.key
                          AND x.lo <= CAST(p.pe_ts AS DATE) AND x.hi >= p.ps)"""
    rows = f"""
        SELECT 'invoice' entity, p.key || '@' || CAST(p.ps AS VARCHAR) key, NULL external_id,
               {F.literal(system)} system, 'aggregate' kind, 'unbilled:period' field,
               CAST({amount} AS VARCHAR) expected, '0' actual, 'error' severity,
               {amount} amount_at_stake_minor, p.currency
        FROM ({periods}) p {join}"""
    return F.finalize(con, rows)


def invoices_while_paused(
    con: duckdb.DuckDBPyConnection,
    invoices: Source,
    subscriptions: Source,
    lines: Source | None = None,
    *,
    system: str,
) -> pa.Table:
    """Invoices (any status but void) issued while their subscription was paused: on or
    after its ``paused_at`` and before its ``resume_at`` (no resume date: while the
    subscription is still ``paused``). An invoice issued in the pause whose every line's
    service period ends before ``paused_at`` (usage billed in arrears for the time before
    the pause) is not flagged. Field ``paused:issue_date`` (expected: the resume date, or
    null; actual: the issue date); amount at stake: minus the invoice total (billed when
    nothing was owed: over-billing), in the invoice currency."""
    inv, sub = register(con, invoices, "inv"), register(con, subscriptions, "subs")
    if not {"paused_at", "resume_at"} <= set(columns(con, sub)):
        return F.empty()
    ext = "i.external_id" if "external_id" in columns(con, inv) else "NULL"
    before = "false"
    if lines is not None:
        ln = register(con, lines, "lines")
        if "period_end" in columns(con, ln):
            before = f"""(EXISTS (SELECT 1 FROM {ln} l WHERE l.key = i.key)
                          AND NOT EXISTS (SELECT 1 FROM {ln} l WHERE l.key = i.key
                              AND coalesce(l.period_end, i.issue_date) >= s.paused_at))"""
    rows = f"""
        SELECT 'invoice' entity, i.key, {ext} external_id, {F.literal(system)} system,
               'aggregate' kind, 'paused:issue_date' field,
               CAST(to_json(s.resume_at) AS VARCHAR) expected,
               CAST(to_json(i.issue_date) AS VARCHAR) actual, 'error' severity,
               -i.total_minor amount_at_stake_minor, i.currency
        FROM {inv} i JOIN {sub} s ON s.key = i.subscription_id
        WHERE s.paused_at IS NOT NULL AND i.issue_date >= s.paused_at
          AND (i.issue_date < s.resume_at OR (s.resume_at IS NULL AND s.status = 'paused'))
          AND i.status IS DISTINCT FROM 'void' AND NOT {before}"""
    return F.finalize(con, rows)


def usage_against_meters(
    con: duckdb.DuckDBPyConnection,
    invoices: Source,
    lines: Source,
    subscriptions: Source,
    items: Source,
    tiers: Source | None = None,
    *,
    system: str,
) -> pa.Table:
    """Usage lines (``kind = 'usage'``) of non-void invoices against the quantity the
    subscription's ``usage_records`` metered: the records of the line's meter (its SKU)
    whose period lies within the line's service period. A meter is judged only on a
    subscription holding records for it (one without records was never metered here).
    Field ``usage:lines[<n>].quantity@meters[<sku>]``: expected the metered quantity,
    actual the billed one; amount at stake = what the metered quantity bills at the item
    version in effect for the period (priced as in :func:`price_leakage`) - the line's
    amount (negative: billed more than metered), in the invoice currency."""
    inv, ln, sub, it = (
        register(con, x, h)
        for x, h in ((invoices, "inv"), (lines, "lines"), (subscriptions, "subs"), (items, "items"))
    )
    if "usage_records" not in columns(con, sub):
        return F.empty()
    if not {"kind", "period_start", "period_end", "sku", "quantity"} <= set(columns(con, ln)):
        return F.empty()
    tr = register(con, _empty_tiers() if tiers is None else tiers, "tiers")
    ext = "i.external_id" if "external_id" in columns(con, inv) else "NULL"
    records = f"""
        SELECT key, r.meter, r.period_start, r.period_end, r.quantity
        FROM (SELECT key, unnest(usage_records) r FROM {sub}
              WHERE usage_records IS NOT NULL AND len(usage_records) > 0)"""
    matched = f"""
        WITH rec AS ({records})
        SELECT i.key AS invoice_key, {ext} AS external_id, i.currency, l.line_no, l.sku meter,
               l.quantity billed_qty, l.amount_minor billed, it.key, it.item_id, it.kind,
               it.flat_amount_minor, it.unit_amount_minor, it.discount_bps,
               CAST(coalesce((SELECT sum(r.quantity) FROM rec r
                     WHERE r.key = i.subscription_id AND r.meter = l.sku
                       AND r.period_start >= l.period_start AND r.period_end <= l.period_end),
                    0) AS BIGINT) q
        FROM {inv} i JOIN {ln} l ON l.key = i.key
        JOIN ({_versioned(con, it)}) it ON it.key = i.subscription_id AND it.sku = l.sku
             AND {_in_effect("it", "l.period_start")}
        WHERE l.kind = 'usage' AND i.status IS DISTINCT FROM 'void'
          AND EXISTS (SELECT 1 FROM rec r WHERE r.key = i.subscription_id AND r.meter = l.sku)
        QUALIFY row_number() OVER (PARTITION BY i.key, l.line_no ORDER BY it.base_item_id) = 1"""
    view = f"_recon_metered_{abs(hash((inv, ln, sub, it, tr)))}"
    con.execute(f"CREATE OR REPLACE TEMP TABLE {view} AS {matched}").fetchall()
    try:
        rows = f"""
            SELECT 'invoice' entity, invoice_key key, external_id, {F.literal(system)} system,
                   'aggregate' kind,
                   'usage:lines[' || CAST(line_no AS VARCHAR) || '].quantity@meters['
                     || meter || ']' field,
                   CAST(q AS VARCHAR) expected, CAST(billed_qty AS VARCHAR) actual,
                   'error' severity, price_minor - billed amount_at_stake_minor, currency
            FROM ({price_amount_sql(view, tr)}) WHERE q IS DISTINCT FROM billed_qty"""
        return F.finalize(con, rows)
    finally:
        con.execute(f"DROP TABLE IF EXISTS {view}").fetchall()


def renewals_not_invoiced(
    con: duckdb.DuckDBPyConnection,
    subscriptions: Source,
    invoices: Source,
    lines: Source | None = None,
    items: Source | None = None,
    tiers: Source | None = None,
    *,
    system: str,
    through: date,
    statuses: Sequence[str] = ("active", "past_due"),
) -> pa.Table:
    """Auto-renewing subscriptions in ``statuses`` whose ``renewal_date`` is on or before
    ``through`` (the day the system is known to have been billing) and before any
    ``end_date``, with no non-void invoice billing the renewed term: no line whose service
    period covers the renewal date (``_billed_spans``: usage lines, billed in arrears, do
    not count; a line without period dates, or an invoice with no other line, covers its
    issue date). Entity ``invoice`` (the invoice that is missing), key
    ``<subscription>@<renewal date>``, field
    ``renewal:invoice``; expected / amount at stake: one billing period at the items'
    quantities (as ``unbilled_periods``), positive, in the subscription's currency; actual
    0. Its period is usually reported by ``unbilled_periods`` too (a follow-on)."""
    sub, inv = register(con, subscriptions, "subs"), register(con, invoices, "inv")
    if not {"auto_renew", "renewal_date"} <= set(columns(con, sub)):
        return F.empty()
    amount, join = _period_amount_join(con, items, tiers, "p")
    spans = _billed_spans(con, inv, register(con, lines, "lines") if lines is not None else None)
    active = ", ".join(F.literal(x) for x in statuses)
    rows = f"""
        WITH spans AS ({spans}),
        p AS (SELECT s.key, s.currency, s.renewal_date FROM {sub} s
              WHERE s.auto_renew AND s.status IN ({active}) AND s.renewal_date IS NOT NULL
                AND s.renewal_date <= {_date_sql(through)}
                AND (s.end_date IS NULL OR s.renewal_date < s.end_date)
                AND NOT EXISTS (SELECT 1 FROM spans x WHERE x.subscription_id = s.key
                                AND x.lo <= s.renewal_date AND x.hi >= s.renewal_date))
        SELECT 'invoice' entity, p.key || '@' || CAST(p.renewal_date AS VARCHAR) key,
               NULL external_id, {F.literal(system)} system, 'aggregate' kind,
               'renewal:invoice' field, CAST({amount} AS VARCHAR) expected, '0' actual,
               'error' severity, {amount} amount_at_stake_minor, p.currency
        FROM p {join}"""
    return F.finalize(con, rows)

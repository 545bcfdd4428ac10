"""Bundles and ramped contracts in the seeded book (issue 17).

A handful of customers (``index % CONTRACT_EVERY == CONTRACT_OFFSET``: 5 of the 300
default ones, 3 of the 60 the sandbox reconciliation test seeds, 2 of them with lines of
an earlier contract year) hold, on their first subscription that fits, two things
billing products sell:

- a **bundle**: one software item (flat or per unit, never shipped) becomes a bundle of
  ``BUNDLE`` components with their shares of its price. It is still billed at its own
  price, so its invoices do not change;
- a **ramped 3-year contract** on another such item (or the same one): a commitment of
  what the three years bill for that item and a ramp of ``RAMP_PERCENT`` (year 1, 2, 3)
  scaled so that the contract year the book is in now bills exactly the item's price
  (what the subscription shows today, so current MRR and every other "now" figure stand).
  Every recurring line of the item is rebilled at the step in effect on its period's
  first day (``hub.pricing.ramp_step_in_effect``), and its invoice's subtotal, tax, total
  and payment follow.

Only active or past-due subscriptions with no item versions and no expiring discount
take part (a change or an expiring discount has proration and discount lines of its own
that a ramp would contradict). The draw is deterministic per (seed, customer): the same
book every time. Nothing here is drift.
"""

from __future__ import annotations

import random
from typing import Any

from hub.model import Price, RampStep, add_months
from hub.pricing import ramp_step_in_effect
from sandbox.seed import catalog as C

Record = dict[str, Any]

#: customers i with i % CONTRACT_EVERY == CONTRACT_OFFSET get a bundle and a ramp
CONTRACT_EVERY, CONTRACT_OFFSET = 19, 1
#: the bundle: (component SKU, quantity per bundle unit, share of the price in bps)
BUNDLE = (("PLAT-CORE", 1, 6_000), ("ANALYTICS", 2, 3_000), ("SUPPORT-PREM", 1, 1_000))
#: the ramp: each contract year's price, in percent of year 1's
RAMP_PERCENT = (100, 120, 150)
TERM_MONTHS = 12 * len(RAMP_PERCENT)


def apply(seed: int, out: Any) -> None:
    """Give the customer slice ``out`` (``sandbox.seed.book.CustomerSlice``) its bundle and
    ramped contract, if it is one of the chosen customers and has a subscription that fits."""
    if out.index % CONTRACT_EVERY != CONTRACT_OFFSET:
        return
    rng = random.Random(f"sandbox-book/{seed}/{out.index}/contracts")
    for sub in out.subscriptions:
        candidates = _candidates(sub)
        if not candidates:
            continue
        bundled, ramped = rng.choice(candidates), rng.choice(candidates)
        bundled["bundle"] = [
            {"sku": sku, "quantity": qty, "share_bps": share} for sku, qty, share in BUNDLE
        ]
        _ramp(sub, ramped, out)
        return


def _candidates(sub: Record) -> list[Record]:
    """The items of ``sub`` that may be bundled or ramped: flat or per-unit software
    (not shipped), on a subscription with a plain price history."""
    if sub["status"] not in ("active", "past_due") or sub.get("trial_end") is not None:
        return []
    if any(i.get("effective_from") or i.get("discount_until") for i in sub["items"]):
        return []
    return [
        i
        for i in sub["items"]
        if i["price"]["kind"] in ("flat", "per_unit")
        and not C.PRODUCTS_BY_SKU[i["sku"]].physical
        and not i.get("bundle")
    ]


def _contract_year(sub: Record) -> int:
    """The contract year (1-based) the book's as-of day falls in."""
    year = 1
    while add_months(sub["start_date"], 12 * year) <= C.AS_OF:
        year += 1
    return min(year, len(RAMP_PERCENT))


def _ramp(sub: Record, item: Record, out: Any) -> None:
    """Ramp ``item`` over three contract years (the current year at its own price: its
    percent over itself), set the commitment, and rebill its lines at their period's step."""
    now = RAMP_PERCENT[_contract_year(sub) - 1]
    base = item["price"]
    moving = "flat_amount_minor" if base["kind"] == "flat" else "unit_amount_minor"
    steps = [
        {
            "item_id": item["item_id"],
            "contract_year": year,
            "price": {**base, moving: base[moving] * percent // now},
        }
        for year, percent in enumerate(RAMP_PERCENT, start=1)
    ]
    sub["ramp"] = steps
    periods_a_year = 12 // {"month": 1, "quarter": 3, "year": 12}[sub["billing_period"]]
    sub["commitment_minor"] = sum(
        Price.model_validate(s["price"]).amount_minor(item["quantity"]) * periods_a_year
        for s in steps
    )
    sub["commitment_term_months"] = TERM_MONTHS
    models = [RampStep.model_validate(s) for s in steps]
    for inv in out.invoices:
        if inv["subscription_id"] == sub["hub_id"]:
            _rebill(inv, item, models, sub, out.region.tax_bps)


def _rebill(inv: Record, item: Record, steps: list[RampStep], sub: Record, tax_bps: int) -> None:
    """Bill ``item``'s recurring lines of ``inv`` at the ramp step of their period, and
    carry the difference through the invoice's sums and payment."""
    old_total = inv["total_minor"]
    for line in inv["lines"]:
        if line.get("kind", "recurring") != "recurring" or line["sku"] != item["sku"]:
            continue
        step = ramp_step_in_effect(steps, item["item_id"], line["period_start"], sub["start_date"])
        if step is None or step.price is None:
            continue
        qty = line["quantity"]
        amount = step.price.amount_minor(qty)
        line["amount_minor"] = amount
        line["unit_amount_minor"] = amount // qty if qty else amount
    subtotal = sum(line["amount_minor"] for line in inv["lines"])
    tax = (subtotal * tax_bps + 5_000) // 10_000
    inv["subtotal_minor"], inv["tax_minor"], inv["total_minor"] = subtotal, tax, subtotal + tax
    paid = inv["amount_paid_minor"]
    if paid and paid == old_total:
        inv["amount_paid_minor"] = inv["total_minor"]
    elif paid and paid == old_total // 2:
        inv["amount_paid_minor"] = inv["total_minor"] // 2

"""Pricing over time: which version of a subscription item is in effect, what a service
period bills, and how a mid-period change is prorated.

Pure functions over the canonical model (``hub.model``); the reconciliation's SQL
(``hub.recon.checks.price_leakage`` / ``proration_errors``) follows the same rules, and
the hypothesis tests hold them to each other.

The rules (docs/reconciliation.md, "Price history and prorations"):

- A service period ``[start, end]`` (both days inclusive) bills each item at the version
  in effect on its first day. A change later in the period is billed by a proration line
  (``ProrationPolicy.DAILY``) or not at all (``NONE``, ``BILLING_CYCLE``); the next
  period bills the new version.
- Daily proration of a change effective on ``change`` (the new version's first day),
  strictly inside the period: ``days_left = end - change + 1``, ``days = end - start + 1``;
  credit = the old version's period amount x days_left / days, charge = the new
  version's period amount x days_left / days, each rounded half to even to the minor unit
  on its own; the proration line bills charge - credit (negative for a downgrade). An
  added item has no old version (credit 0), a removed one no new version (charge 0).
- ``BILLING_CYCLE`` moves a change to the next period start: nothing is prorated.

Bundles and contract terms (docs/reconciliation.md keeps the same rules):

- A bundle item is billed at its own price; its amount is split over its components by
  their ``share_bps`` with the largest-remainder method (:func:`allocate`): each
  component gets the floor of its exact share, and the minor units left over go one each
  to the largest fractional remainders (ties: the earlier component), so the parts sum to
  the amount exactly and none is off its exact share by a whole minor unit.
- A ramped item is billed, on a day, at the last ramp step of that item started on or
  before it (:func:`ramp_step_in_effect`); before the first step, at the item's own price.
- A commitment's shortfall is what the term billed less than the commitment, never below
  zero (:func:`commitment_shortfall`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from fractions import Fraction

from hub.model import (
    BUNDLE_SHARES_BPS,
    BillingPeriod,
    BundleComponent,
    ProrationPolicy,
    RampStep,
    Subscription,
    SubscriptionItem,
    UsageRecord,
    add_months,
)


def item_in_effect(
    items: Iterable[SubscriptionItem], item_id: str, day: date
) -> SubscriptionItem | None:
    """The version of ``item_id`` in effect on ``day`` (None if none is)."""
    return next((i for i in items if i.item_id == item_id and i.in_effect(day)), None)


def items_in_effect(items: Iterable[SubscriptionItem], day: date) -> tuple[SubscriptionItem, ...]:
    """Every item's version in effect on ``day``, in the given order."""
    return tuple(i for i in items if i.in_effect(day))


def item_amount(item: SubscriptionItem, quantity: int | None = None) -> int:
    """One period's charge of ``item`` (a usage item: at ``quantity`` metered units, 0 if
    not given), by ``Price.amount_minor``."""
    if quantity is None:
        quantity = 0 if item.price.kind.value == "usage" else item.quantity
    return item.price.amount_minor(quantity)


def discount_applies(item: SubscriptionItem, period_start: date) -> bool:
    """Whether ``item``'s discount applies to the service period starting on
    ``period_start``: it has one and it has not expired (``discount_until`` is its last
    day; a period starting after it is billed at the full price)."""
    return item.price.discount_bps > 0 and (
        item.discount_until is None or period_start <= item.discount_until
    )


def item_period_amount(
    item: SubscriptionItem, period_start: date, quantity: int | None = None
) -> int:
    """One service period's charge of ``item`` starting on ``period_start``: as
    :func:`item_amount`, at the full price once its discount has expired."""
    if not discount_applies(item, period_start) and item.price.discount_bps:
        item = item.model_copy(update={"price": item.price.model_copy(update={"discount_bps": 0})})
    return item_amount(item, quantity)


def metered_quantity(
    records: Iterable[UsageRecord], meter: str, period_start: date, period_end: date
) -> int:
    """The usage ``meter`` recorded within ``[period_start, period_end]`` (records lying
    wholly inside it), what a usage line of that period bills in arrears."""
    return sum(
        r.quantity
        for r in records
        if r.meter == meter and period_start <= r.period_start and r.period_end <= period_end
    )


def period_amount(items: Iterable[SubscriptionItem], period_start: date) -> int:
    """What the service period starting on ``period_start`` bills for its recurring items:
    each item at the version in effect on that day (usage items at their flat fee only),
    discounts that expired before it not applied."""
    return sum(item_period_amount(i, period_start) for i in items_in_effect(items, period_start))


def period_days(start: date, end: date) -> int:
    """Days in ``[start, end]``, both inclusive."""
    if end < start:
        raise ValueError(f"period end {end} is before its start {start}")
    return (end - start).days + 1


def period_of(end: date, billing_period: BillingPeriod) -> tuple[date, date]:
    """The billing period ending on ``end``: it starts ``billing_period`` months before
    the day after ``end`` (``add_months``, clipped to the month's end)."""
    return add_months(end + timedelta(days=1), -billing_period.months), end


def prorate(amount_minor: int, days_left: int, days: int) -> int:
    """``amount_minor`` x days_left / days, rounded half to even to the minor unit."""
    if days <= 0 or not 0 <= days_left <= days:
        raise ValueError(f"days_left {days_left} must lie within 0..{days} (days > 0)")
    return round(Fraction(amount_minor * days_left, days))


@dataclass(frozen=True)
class Proration:
    """A mid-period change's proration: ``credit_minor`` (>= 0, for the old version's
    unused days) and ``charge_minor`` (>= 0, the new version for the same days)."""

    credit_minor: int
    charge_minor: int
    days_left: int
    days: int

    @property
    def amount_minor(self) -> int:
        """What the proration line bills: charge - credit."""
        return self.charge_minor - self.credit_minor


NO_PRORATION = Proration(0, 0, 0, 0)


def effective_change_date(
    policy: ProrationPolicy, change: date, period_start: date, period_end: date
) -> date:
    """The day a change requested on ``change`` (within the period) takes effect: the
    next period start under ``BILLING_CYCLE``, the day itself otherwise."""
    if not period_start <= change <= period_end:
        raise ValueError(f"change {change} is outside the period {period_start}..{period_end}")
    if policy is ProrationPolicy.BILLING_CYCLE and change > period_start:
        return period_end + timedelta(days=1)
    return change


def proration(
    policy: ProrationPolicy,
    old: SubscriptionItem | None,
    new: SubscriptionItem | None,
    change: date,
    period_start: date,
    period_end: date,
) -> Proration:
    """The proration of replacing ``old`` by ``new`` from ``change`` (the new version's
    first day) in the period ``[period_start, period_end]`` under ``policy``. A change on
    the period's first day, or outside it, prorates nothing (the period bills the new
    version whole); so do ``NONE`` and ``BILLING_CYCLE``."""
    days = period_days(period_start, period_end)
    if policy is not ProrationPolicy.DAILY or not period_start < change <= period_end:
        return NO_PRORATION
    days_left = (period_end - change).days + 1
    credit = prorate(item_amount(old), days_left, days) if old is not None else 0
    charge = prorate(item_amount(new), days_left, days) if new is not None else 0
    return Proration(credit, charge, days_left, days)


def item_changes(
    items: Sequence[SubscriptionItem],
) -> list[tuple[SubscriptionItem | None, SubscriptionItem]]:
    """(old, new) for every version of an item that follows another (old None when the
    new version starts after nothing of its item_id ended the day before)."""
    out: list[tuple[SubscriptionItem | None, SubscriptionItem]] = []
    for new in items:
        if new.effective_from is None:
            continue
        before = new.effective_from - timedelta(days=1)
        old = next(
            (i for i in items if i.item_id == new.item_id and i.effective_to == before), None
        )
        out.append((old, new))
    return out


# -- bundles and contract terms ----------------------------------------------------------
def allocate(amount_minor: int, shares_bps: Sequence[int]) -> list[int]:
    """``amount_minor`` split by ``shares_bps`` (summing to ``BUNDLE_SHARES_BPS``) in whole
    minor units that sum to it exactly: largest remainder, ties to the earlier share. A
    negative amount (a credit) is split as its magnitude, negated."""
    if sum(shares_bps) != BUNDLE_SHARES_BPS or any(s < 0 for s in shares_bps):
        raise ValueError(f"shares {list(shares_bps)} must be >= 0 and sum to {BUNDLE_SHARES_BPS}")
    sign, whole = (-1, -amount_minor) if amount_minor < 0 else (1, amount_minor)
    exact = [whole * share for share in shares_bps]
    parts = [e // BUNDLE_SHARES_BPS for e in exact]
    left = whole - sum(parts)
    by_remainder = sorted(range(len(parts)), key=lambda n: (-(exact[n] % BUNDLE_SHARES_BPS), n))
    for n in by_remainder[:left]:
        parts[n] += 1
    return [sign * p for p in parts]


def bundle_allocation(
    item: SubscriptionItem, amount_minor: int
) -> list[tuple[BundleComponent, int]]:
    """A bundle item's billed ``amount_minor`` allocated over its components by share
    (:func:`allocate`), in the bundle's order; empty for an item that is not a bundle."""
    if not item.bundle:
        return []
    parts = allocate(amount_minor, [c.share_bps for c in item.bundle])
    return list(zip(item.bundle, parts, strict=True))


def ramp_step_in_effect(
    ramp: Iterable[RampStep], item_id: str, day: date, contract_start: date
) -> RampStep | None:
    """The ramp step of ``item_id`` in effect on ``day``: the last one started on or
    before it (None before the first step, or without a ramp)."""
    started = [s for s in ramp if s.item_id == item_id and s.first_day(contract_start) <= day]
    return max(started, key=lambda s: s.first_day(contract_start), default=None)


def ramped_item(subscription: Subscription, item: SubscriptionItem, day: date) -> SubscriptionItem:
    """``item`` as billed on ``day``: with the price and quantity of its ramp step in
    effect then (what the step leaves None stays the item's)."""
    step = ramp_step_in_effect(subscription.ramp, item.item_id, day, subscription.start_date)
    if step is None:
        return item
    update: dict[str, object] = {}
    if step.price is not None:
        update["price"] = step.price
    if step.quantity is not None:
        update["quantity"] = step.quantity
    return item.model_copy(update=update)


def commitment_end(subscription: Subscription) -> date | None:
    """The last day of the commitment term (None without one)."""
    if subscription.commitment_term_months is None:
        return None
    return add_months(subscription.start_date, subscription.commitment_term_months) - timedelta(
        days=1
    )


def commitment_shortfall(commitment_minor: int, billed_minor: int) -> int:
    """What the term billed short of the commitment (committed - billed), never below
    zero: billing more than committed owes nothing back."""
    return max(0, commitment_minor - billed_minor)

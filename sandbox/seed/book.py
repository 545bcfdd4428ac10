"""A deterministic B2B subscription book: customers, subscriptions, allocations, invoices.

Each customer's whole slice of the book (its subscriptions, their allocations and invoices)
comes from a random generator seeded by ``(seed, customer index)`` alone, so

* the same seed gives the same book, byte for byte, on any machine and any day;
* the book streams customer by customer in bounded memory (100k customers, ~1M invoices);
* any one customer's slice can be regenerated on its own (the drift planter does that).

Records are canonical dicts (``hub.model.validate_record`` accepts every one of them);
invoice line amounts are what the item's price model says (``Price.amount_minor``) and
taxes follow the customer's region. Nothing here is drift: drift is planted afterwards.

Some subscriptions change during their history (``_changes``, drawn from a generator of
their own so the rest of the book is what it was before changes existed): an upgrade or a
downgrade of an item's quantity in the middle of a period (a new item version from the
change day; under the ``daily`` policy the next invoice carries a proration line, under
``none`` it does not), or a price increase from a period start (no proration). Each
period's recurring lines bill the item versions in effect on the period's first day.

The subscription lifecycle (``_lifecycle``, again from generators of its own): a paused
subscription's ``paused_at`` is the day after its last billed period start; some active
monthly subscriptions pause for two periods and resume (no invoice in between); some
discounts expire (``discount_until``; later periods at the full price); usage is billed
in arrears: each invoice bills the previous service period's metered usage (the usage
record of the meter and that period, ``usage_records``: meter = the SKU) at the price's
unit amount, the subscription's first period bills none, and a canceled (or paused)
subscription's last usage is billed on a final invoice issued the day service ended;
overdue invoices of past-due subscriptions carry their dunning run
(``dunning_events``, one event per stage reached, the last pending), some paid invoices
were recovered at stage 1 (``paid``), the written-off invoices of canceled subscriptions
ran stages 1 to 4 (``written_off``); and a voided invoice is reissued three days later
for the same period (invoice number ``n + 50``).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from hub.currency import exponent
from hub.model import Price, ProrationPolicy, SubscriptionItem
from hub.pricing import proration
from sandbox.seed import catalog as C
from sandbox.seed import contracts
from sandbox.seed.catalog import AS_OF, Region

Record = dict[str, Any]

_ADJECTIVES = (
    "Northwind", "Blue Harbor", "Granite", "Silverline", "Evergreen", "Redwood", "Summit",
    "Brightwater", "Ironbridge", "Cobalt", "Meridian", "Lakeside", "Polar", "Crescent",
    "Sterling", "Atlas", "Horizon", "Pioneer", "Keystone", "Falcon", "Orchid", "Tidewater",
    "Copperfield", "Juniper", "Vantage", "Harbor Point", "Aurora", "Cedar", "Quantum",
    "Riverbend",
)  # fmt: skip
_NOUNS = (
    "Logistics", "Foods", "Pharma", "Retail", "Manufacturing", "Labs", "Health", "Freight",
    "Systems", "Dynamics", "Distribution", "Energy", "Biotech", "Supply", "Components",
    "Analytics", "Hospitality", "Textiles", "Robotics", "Cold Chain",
)  # fmt: skip
_STREETS = (
    "Main Street", "Market Street", "Harbour Road", "Industrial Way", "Station Road",
    "Park Avenue", "Mill Lane", "Commerce Drive", "Lindenstraße", "Rue de la Paix",
    "Keizersgracht", "Queen Street", "Chuo-dori", "King Street West",
)  # fmt: skip

_SEGMENTS = (("smb", 60), ("mid_market", 30), ("enterprise", 10))
_TERMS = {
    "smb": (("due_on_receipt", 2), ("net15", 3), ("net30", 5)),
    "mid_market": (("net30", 6), ("net45", 3), ("net15", 1)),
    "enterprise": (("net45", 3), ("net60", 4), ("net90", 2), ("net30", 1)),
}
_TERM_DAYS = {"due_on_receipt": 0, "net15": 15, "net30": 30, "net45": 45, "net60": 60,
              "net90": 90}  # fmt: skip
_CREDIT_USD = {"smb": (5_000, 50_000), "mid_market": (50_000, 250_000),
               "enterprise": (250_000, 2_000_000)}  # fmt: skip
_SUBS = {"smb": (1, 1), "mid_market": (1, 2), "enterprise": (2, 4)}
_QTY_SCALE = {"smb": 1, "mid_market": 4, "enterprise": 15}
_STATUSES = (("active", 68), ("trialing", 5), ("past_due", 8), ("paused", 5), ("canceled", 14))
_PERIODS = (("month", 55), ("quarter", 20), ("year", 25))
HISTORY_DAYS = 365  # invoices are generated for periods starting in the last year
#: Shares of billed (active, past due) subscriptions that change during their history.
UPGRADE_SHARE, DOWNGRADE_SHARE, PRICE_CHANGE_SHARE = 0.08, 0.05, 0.05
#: Share of the mid-period changes billed under the ``none`` policy (no proration line).
NO_PRORATION_SHARE = 0.25
#: Shares of the lifecycle events: active monthly subscriptions that pause two periods and
#: resume, discounted past-due subscriptions whose discount expires, paid invoices (20+ days past
#: their due date) recovered by a stage-1 reminder.
RESUMED_PAUSE_SHARE, DISCOUNT_EXPIRY_SHARE, RECOVERY_SHARE = 0.15, 0.5, 0.05
#: Days past due each dunning stage is reached on (``hub.recon.checks.DunningSchedule``).
DUNNING_DAYS = (1, 15, 30, 60)
#: Added to an invoice's number in the book to name the invoice that reissues it.
REISSUE_OFFSET = 50


@dataclass
class CustomerSlice:
    """One customer and everything of the book that hangs off it."""

    index: int
    customer: Record
    subscriptions: list[Record] = field(default_factory=list)
    allocations: list[Record] = field(default_factory=list)
    invoices: list[Record] = field(default_factory=list)
    region: Region = C.REGIONS[0]


def customer_id(index: int) -> str:
    return f"CUS-{index + 1:07d}"


def _weighted(rng: random.Random, options: tuple[tuple[str, int], ...]) -> str:
    values, weights = zip(*options, strict=True)
    return rng.choices(values, weights=weights)[0]


def _digits(rng: random.Random, pattern: str) -> str:
    return "".join(str(rng.randrange(10)) if ch == "D" else ch for ch in pattern)


def add_months(day: date, months: int) -> date:
    """``day`` plus whole months; days are kept at <= 28 in the book so this never clips."""
    total = day.year * 12 + day.month - 1 + months
    return date(total // 12, total % 12 + 1, day.day)


def current_items(sub: Record) -> list[Record]:
    """The subscription's items as they are now: the open-ended version of each item."""
    return [i for i in sub["items"] if i.get("effective_to") is None]


def _in_effect(item: Record, day: date) -> bool:
    lo, hi = item.get("effective_from"), item.get("effective_to")
    return (lo is None or lo <= day) and (hi is None or day <= hi)


def _stamp(day: date, rng: random.Random) -> datetime:
    """A change timestamp on ``day`` (never after the book's as-of instant)."""
    moment = datetime.combine(day, time(8, 0), UTC) + timedelta(seconds=rng.randrange(36_000))
    return min(moment, C.AS_OF_TS)


def _amount(item: Record, price: Price, quantity: int, period_start: date) -> int:
    """One period's charge of ``item`` at ``quantity``: its price, at the full price once
    its discount expired before ``period_start`` (``hub.pricing.item_period_amount``)."""
    until = item.get("discount_until")
    if until is not None and period_start > until and price.discount_bps:
        price = price.model_copy(update={"discount_bps": 0})
    return price.amount_minor(quantity)


@dataclass(frozen=True)
class Metered:
    """One service period's usage of a usage item: the item (its price bills it) and the
    usage record billing's meter keeps (meter = the SKU, the period, the quantity)."""

    item: Record
    record: Record


def _metered(item: Record, start: date, end: date, quantity: int) -> Metered:
    record = {"meter": item["sku"], "period_start": start, "period_end": end,
              "quantity": quantity}  # fmt: skip
    return Metered(item, record)


def _metered_until(m: Metered, last_day: date) -> Metered:
    """``m`` cut at ``last_day`` (the last day of service: the meter stops with it)."""
    return Metered(m.item, {**m.record, "period_end": min(m.record["period_end"], last_day)})


def _line(no: int, item: Record, qty: int, amount: int, start: date, end: date,
          kind: str) -> Record:  # fmt: skip
    return {
        "line_no": no,
        "sku": item["sku"],
        "description": f"{C.PRODUCTS_BY_SKU[item['sku']].name}, {start:%Y-%m-%d} to {end:%Y-%m-%d}",
        "quantity": qty,
        "unit_amount_minor": amount // qty if qty else amount,
        "amount_minor": amount,
        "period_start": start,
        "period_end": end,
        "kind": kind,
    }


def _recurring_line(no: int, item: Record, price: Price, start: date, end: date) -> Record:
    """The service period ``start``..``end`` of a non-usage item, billed in advance."""
    amount = _amount(item, price, item["quantity"], start)
    return _line(no, item, item["quantity"], amount, start, end, "recurring")


def _usage_line(no: int, m: Metered) -> Record:
    """The usage of one closed service period, billed in arrears: the metered quantity at
    the price of the item (a unit price, the same whatever the billing period; an expired
    discount judged by the usage period's start, as for any service period)."""
    price = Price.model_validate(m.item["price"])
    start, end, qty = m.record["period_start"], m.record["period_end"], m.record["quantity"]
    return _line(no, m.item, qty, _amount(m.item, price, qty, start), start, end, "usage")


def _write_off_run(due: date) -> list[Record]:
    """The dunning run of an invoice written off: stages 1 to 4 on their days past
    ``due``, each retried, the last written off."""
    last = len(DUNNING_DAYS)
    return [
        {"stage": j, "on": due + timedelta(days=d),
         "outcome": "written_off" if j == last else "retried"}
        for j, d in enumerate(DUNNING_DAYS, start=1)
    ]  # fmt: skip


def _final_invoice(
    meter: random.Random,
    out: CustomerSlice,
    sub: Record,
    usage: list[Metered],
    issue: date,
    term_days: int,
    k: int,
    n: int,
) -> Record:
    """The invoice billing the usage of a subscription's last service period on the day
    its service ended (canceled: ``end_date``; paused: ``paused_at``), as billing systems
    close a metered subscription: paid a few days after its due date, or open if not due;
    written off like the subscription's last invoice when that one was (with the same
    dunning run once it is 60 days past due)."""
    lines = [_usage_line(j, m) for j, m in enumerate(usage, 1)]
    subtotal = sum(line["amount_minor"] for line in lines)
    total = subtotal + (subtotal * out.region.tax_bps + 5_000) // 10_000
    due = issue + timedelta(days=term_days)
    status = "paid" if due <= AS_OF else "open"
    changed = min(due + timedelta(days=meter.randrange(0, 5)), AS_OF) if due <= AS_OF else issue
    stage, events = 0, []
    ours = [i for i in out.invoices if i["subscription_id"] == sub["hub_id"]]
    if ours and ours[-1]["status"] == "uncollectible":
        status, changed = "uncollectible", min(due + timedelta(days=90), AS_OF)
        if due + timedelta(days=DUNNING_DAYS[-1]) <= AS_OF:
            stage, events = len(DUNNING_DAYS), _write_off_run(due)
    paid = status == "paid"
    return {
        **_invoice_head(out, sub, k, n, issue),
        "lines": lines,
        "subtotal_minor": subtotal,
        "tax_minor": total - subtotal,
        "total_minor": total,
        "amount_paid_minor": total if paid else 0,
        "issue_date": issue,
        "due_date": due,
        "status": status,
        "dunning_stage": stage,
        "dunning_events": events,
        "updated_at": _stamp(changed, meter),
    }


def _invoice_head(out: CustomerSlice, sub: Record, k: int, n: int, issue: date) -> Record:
    """The ids of the ``n``-th invoice of a customer's ``k``-th subscription, and whom
    it bills in which currency."""
    return {
        "hub_id": f"INV-{out.index + 1:07d}-{k + 1}-{n:03d}",
        "number": f"{issue.year}-{out.index + 1:07d}-{k + 1}{n:03d}",
        "customer_id": sub["customer_id"],
        "subscription_id": sub["hub_id"],
        "currency": sub["currency"],
    }


def _reissue(void: Record, n: int, term_days: int, life: random.Random) -> Record:
    """The invoice reissuing ``void`` (the ``n``-th of its subscription) three days after
    it was issued, for the same lines: paid a few days after its due date, or open if not
    due yet."""
    issue = void["issue_date"] + timedelta(days=3)
    due = issue + timedelta(days=term_days)
    paid = due <= AS_OF
    changed = min(due + timedelta(days=life.randrange(0, 5)), AS_OF) if paid else issue
    hub_id = void["hub_id"].rsplit("-", 1)[0] + f"-{n + REISSUE_OFFSET:03d}"
    number = void["number"][:-3] + f"{n + REISSUE_OFFSET:03d}"
    return {
        **void,
        "hub_id": hub_id,
        "number": number,
        "lines": [dict(line) for line in void["lines"]],
        "amount_paid_minor": void["total_minor"] if paid else 0,
        "issue_date": issue,
        "due_date": due,
        "status": "paid" if paid else "open",
        "dunning_stage": 0,
        "dunning_events": [],
        "updated_at": _stamp(changed, life),
    }


class Book:
    """The book for one ``(seed, customers)``; iterate :meth:`slices` to stream it."""

    def __init__(self, seed: int = 42, customers: int = 300) -> None:
        if customers < 1:
            raise ValueError("customers must be at least 1")
        self.seed = seed
        self.customers = customers
        self._sellable = [p for p in C.PRODUCTS if p.sellable and p.weight > 0]
        self._regions = tuple((r, r.weight) for r in C.REGIONS)

    def products(self) -> list[Record]:
        return C.canonical_products()

    def slices(self, start: int = 0, stop: int | None = None) -> Iterator[CustomerSlice]:
        for index in range(start, self.customers if stop is None else stop):
            yield self.slice(index)

    def slice(self, index: int) -> CustomerSlice:
        rng = random.Random(f"sandbox-book/{self.seed}/{index}")
        region = rng.choices([r for r, _ in self._regions], [w for _, w in self._regions])[0]
        segment = _weighted(rng, _SEGMENTS)
        terms = _weighted(rng, _TERMS[segment])
        out = CustomerSlice(index, {}, region=region)
        since = AS_OF - timedelta(days=rng.randrange(60, 1_500))
        for k in range(rng.randint(*_SUBS[segment])):
            self._subscription(rng, out, k, segment, terms)
        contracts.apply(self.seed, out)
        out.customer = self._customer(rng, index, segment, terms, since, out)
        return out

    # -- customers -------------------------------------------------------------------------
    def _customer(
        self,
        rng: random.Random,
        index: int,
        segment: str,
        terms: str,
        since: date,
        out: CustomerSlice,
    ) -> Record:
        region = out.region
        city, postal, state = rng.choice(region.cities)
        name = f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)} {rng.choice(region.suffixes)}"
        address = {
            "street": f"{rng.randint(1, 480)} {rng.choice(_STREETS)}",
            "city": city,
            "postal_code": (postal + f"{rng.randrange(100):02d}").strip()[:10],
            "country": region.country,
            "region": state,
        }
        shipping = None
        if rng.random() < 0.25:
            shipping = {**address, "street": f"{rng.randint(1, 90)} {rng.choice(_STREETS)}"}
        low, high = _CREDIT_USD[segment]
        credit = None
        if rng.random() < 0.9:
            usd = rng.randrange(low, high, 1_000)
            num, den = C.FX[region.currency]
            credit = usd * num // den * 10 ** exponent(region.currency)
        parent = None
        if index >= 10 and rng.random() < 0.08:
            parent = customer_id(rng.randrange(max(0, index - 200), index))
        dunning = max((inv["dunning_stage"] for inv in out.invoices if inv["status"] == "open"),
                      default=0)  # fmt: skip
        statuses = {s["status"] for s in out.subscriptions}
        status = "active"
        if dunning >= 4:
            status = "blocked"
        elif statuses == {"canceled"}:
            status = "inactive"
        tax_id = None
        if region.tax_id_format and rng.random() < 0.93:
            tax_id = _digits(rng, region.tax_id_format)
        changed = max([since, *(s["updated_at"].date() for s in out.subscriptions)], default=since)
        return {
            "hub_id": customer_id(index),
            "legal_name": name,
            "tax_id": tax_id,
            "billing_address": address,
            "shipping_address": shipping,
            "currency": region.currency,
            "payment_terms": terms,
            "credit_limit_minor": credit,
            "parent_id": parent,
            "status": status,
            "dunning_level": dunning,
            "segment": segment,
            "updated_at": _stamp(changed, rng),
        }

    # -- subscriptions ---------------------------------------------------------------------
    def _subscription(
        self, rng: random.Random, out: CustomerSlice, k: int, segment: str, terms: str
    ) -> None:
        index, region = out.index, out.region
        sub_id = f"SUB-{index + 1:07d}-{k + 1}"
        niche = k == 0 and index % C.NICHE_EVERY == C.NICHE_OFFSET
        status = "active" if niche else _weighted(rng, _STATUSES)
        period = _weighted(rng, _PERIODS)
        months = {"month": 1, "quarter": 3, "year": 12}[period]
        if status == "trialing":
            start = AS_OF - timedelta(days=rng.randrange(1, 28))
        else:
            start = AS_OF - timedelta(days=rng.randrange(40, 1_000))
        start = start.replace(day=min(start.day, 28))
        currency = region.currency
        chosen = rng.sample(self._sellable, k=min(len(self._sellable), rng.randint(1, 3)))
        if niche:
            chosen.append(C.PRODUCTS_BY_SKU[C.NICHE_SKU])
        discount = 0
        if segment == "enterprise" and rng.random() < 0.6:
            discount = rng.choice((500, 1_000, 1_500, 2_000, 2_500))
        elif segment == "mid_market" and rng.random() < 0.25:
            discount = rng.choice((250, 500, 1_000))
        items = []
        for n, spec in enumerate(chosen, start=1):
            low, high = spec.qty
            scale = _QTY_SCALE[segment]
            qty = 1 if spec.kind == "flat" else rng.randint(low, high) * scale
            if spec.physical:
                qty = max(qty, 1)
            price = C.list_price(spec, currency, period)
            price["discount_bps"] = discount
            items.append(
                {"item_id": f"{sub_id}-{n}", "sku": spec.sku, "quantity": qty, "price": price}
            )
        trial_end = start + timedelta(days=30) if status == "trialing" else None
        if status == "trialing" and rng.random() < 0.5:
            trial_end = start + timedelta(days=14)
        billed_from = trial_end if trial_end else start
        stop = AS_OF
        end_date = None
        if status == "canceled":
            end_date = min(AS_OF - timedelta(days=rng.randrange(1, 200)), AS_OF)
            end_date = max(end_date, add_months(start, months))
            stop = min(end_date, AS_OF)
        elif status == "paused":
            stop = AS_OF - timedelta(days=rng.randrange(10, 120))
        term_months = 12 if period != "month" or rng.random() < 0.7 else 1
        renewal = None
        if status not in ("canceled",):
            renewal = start
            while renewal <= AS_OF:
                renewal = add_months(renewal, term_months)
        sub = {
            "hub_id": sub_id,
            "customer_id": customer_id(index),
            "contract_number": f"CT-{start.year}-{index + 1:07d}-{k + 1}",
            "currency": currency,
            "billing_period": period,
            "status": status,
            "start_date": start,
            "end_date": end_date,
            "trial_end": trial_end,
            "auto_renew": status != "canceled" and rng.random() < 0.85,
            "renewal_date": renewal,
            "proration_policy": "daily",
            "items": items,
            "updated_at": _stamp(min(max(start, stop - timedelta(days=3)), AS_OF), rng),
        }
        if status == "paused":
            sub["paused_at"] = stop + timedelta(days=1)
        sub["usage_records"] = []
        life = random.Random(f"sandbox-book/{self.seed}/{index}/{k}/discount")
        # past-due subscriptions only, for now: analytics' plain-MRR cross-check
        # (tests/analytics/test_book.py) prices active subscriptions' items with their
        # discount whatever its discount_until
        if discount and status == "past_due" and life.random() < DISCOUNT_EXPIRY_SHARE:
            until = AS_OF - timedelta(days=life.randrange(60, 240))
            for item in items:
                item["discount_until"] = until
        out.subscriptions.append(sub)
        self._invoices(rng, out, sub, months, billed_from, stop, _TERM_DAYS[terms], k)
        self._allocations(rng, out, sub, months, billed_from)

    # -- invoices --------------------------------------------------------------------------
    def _invoices(
        self,
        rng: random.Random,
        out: CustomerSlice,
        sub: Record,
        months: int,
        billed_from: date,
        stop: date,
        term_days: int,
        k: int,
    ) -> None:
        if sub["status"] == "trialing":
            return
        region = out.region
        end = sub["end_date"]
        periods: list[date] = []
        start = billed_from
        while start <= stop and (end is None or start < end):
            if (AS_OF - start).days <= HISTORY_DAYS:
                periods.append(start)
            start = add_months(start, months)
        extra = self._changes(out.index, k, sub, periods, months)
        life = random.Random(f"sandbox-book/{self.seed}/{out.index}/{k}/lifecycle")
        pause = self._resumed_pause(life, sub, periods, extra)
        first = len(out.invoices)
        records: list[Record] = []
        meter = random.Random(f"sandbox-book/{self.seed}/{out.index}/{k}/usage")
        arrears = self._pre_history_usage(meter, sub, periods, months, billed_from, records)
        delinquent = sub["status"] == "past_due"
        unpaid_tail = rng.randint(1, 3)
        written_off = sub["status"] == "canceled" and rng.random() < 0.15
        for n, period_start in enumerate(periods, start=1):
            period_end = add_months(period_start, months) - timedelta(days=1)
            paused = pause is not None and pause[0] <= period_start < pause[1]
            lines: list[Record] = []
            metered: list[Metered] = []
            for item in (i for i in sub["items"] if _in_effect(i, period_start)):
                price = Price.model_validate(item["price"])
                if price.kind.value != "usage":
                    if not paused:
                        lines.append(_recurring_line(len(lines) + 1, item, price, period_start,
                                                     period_end))  # fmt: skip
                    continue
                # the draw stays in the customer's stream so the rest of the book is kept
                qty = rng.randint(0, max(1, item["quantity"] * 2))
                if not paused:  # no service in a pause: nothing metered
                    metered.append(_metered(item, period_start, period_end, qty))
            # the previous period's usage, in arrears
            lines += [_usage_line(len(lines) + j, m) for j, m in enumerate(arrears, 1)]
            records += [m.record for m in metered]
            arrears = metered
            for line in extra.get(n - 1, ()):
                lines.append({**line, "line_no": len(lines) + 1})
            subtotal = sum(line["amount_minor"] for line in lines)
            tax = (subtotal * region.tax_bps + 5_000) // 10_000
            total = subtotal + tax
            issue = period_start
            due = issue + timedelta(days=term_days)
            last = n == len(periods)
            overdue_days = (AS_OF - due).days
            status, paid, stage, changed = "paid", total, 0, due
            if last and (AS_OF - issue).days <= 4 and rng.random() < 0.5:
                status, paid, changed = "draft", 0, issue
            elif rng.random() < 0.01:
                status, paid, changed = "void", 0, issue + timedelta(days=2)
            elif written_off and last:
                status, paid, changed = "uncollectible", 0, min(due + timedelta(days=90), AS_OF)
            elif overdue_days < 0:  # not due yet
                if rng.random() < 0.35:
                    changed = issue + timedelta(days=rng.randrange(0, max(1, term_days)))
                else:
                    status, paid, changed = "open", 0, issue
            elif delinquent and n > len(periods) - unpaid_tail:
                status, paid = "open", 0
                stage = 1 if overdue_days < 15 else 2 if overdue_days < 30 else 3
                stage = 4 if overdue_days >= 60 else stage
                changed = min(due + timedelta(days=[0, 1, 15, 30, 60][stage]), AS_OF)
            else:
                changed = min(due + timedelta(days=rng.randrange(-10, 10)), AS_OF)
                changed = max(changed, issue)
            if status == "open" and rng.random() < 0.1:
                paid = total // 2
            events: list[Record] = []
            if stage and status == "open":  # the run so far, the last stage pending
                events = [
                    {"stage": j, "on": due + timedelta(days=DUNNING_DAYS[j - 1]),
                     "outcome": "retried" if j < stage else None}
                    for j in range(1, stage + 1)
                ]  # fmt: skip
            elif status == "uncollectible" and due + timedelta(days=DUNNING_DAYS[-1]) <= AS_OF:
                stage, events = len(DUNNING_DAYS), _write_off_run(due)
            elif status == "paid" and overdue_days >= 20 and life.random() < RECOVERY_SHARE:
                stage = 1
                reminded = due + timedelta(days=DUNNING_DAYS[0])
                events = [{"stage": 1, "on": reminded, "outcome": "paid"}]
                changed = reminded + timedelta(days=life.randrange(1, 10))
            out.invoices.append(
                {
                    **_invoice_head(out, sub, k, n, issue),
                    "lines": lines,
                    "subtotal_minor": subtotal,
                    "tax_minor": tax,
                    "total_minor": total,
                    "amount_paid_minor": paid,
                    "issue_date": issue,
                    "due_date": due,
                    "status": status,
                    "dunning_stage": stage,
                    "dunning_events": events,
                    "updated_at": _stamp(min(changed, AS_OF), rng),
                }
            )
            if status == "void":
                out.invoices.append(_reissue(out.invoices[-1], n, term_days, life))
        if pause is not None:
            # a pause bills nothing but the usage metered before it (in arrears)
            sub["paused_at"], sub["resume_at"] = pause
            out.invoices[first:] = [
                i
                for i in out.invoices[first:]
                if i["lines"] or not pause[0] <= i["issue_date"] < pause[1]
            ]
        ended = {"canceled": sub["end_date"], "paused": sub.get("paused_at")}.get(sub["status"])
        if arrears and ended is not None and ended <= AS_OF:  # not a cancel at term end
            # service ended: its last usage is billed on a final invoice, issued that day
            closing = [_metered_until(m, ended - timedelta(days=1)) for m in arrears]
            records[-len(closing) :] = [m.record for m in closing]
            n = len(periods) + 1
            out.invoices.append(_final_invoice(meter, out, sub, closing, ended, term_days, k, n))
        elif arrears and arrears[0].record["period_end"] >= AS_OF:
            # the current period is still metering: recorded when it closes
            records = records[: -len(arrears)]
        sub["usage_records"] = records

    @staticmethod
    def _pre_history_usage(
        meter: random.Random,
        sub: Record,
        periods: list[date],
        months: int,
        billed_from: date,
        records: list[Record],
    ) -> list[Metered]:
        """The usage of the period before the first invoiced one, which that invoice bills
        in arrears: none when it is the subscription's first period (nothing was metered
        before it); otherwise drawn from ``meter`` and recorded in ``records``."""
        if not periods or periods[0] <= billed_from:
            return []
        start = add_months(periods[0], -months)
        end = periods[0] - timedelta(days=1)
        usage = [
            _metered(item, start, end, meter.randint(0, max(1, item["quantity"] * 2)))
            for item in sub["items"]
            if _in_effect(item, start) and item["price"]["kind"] == "usage"
        ]
        records += [m.record for m in usage]
        return usage

    @staticmethod
    def _resumed_pause(
        life: random.Random, sub: Record, periods: list[date], extra: dict[int, list[Record]]
    ) -> tuple[date, date] | None:
        """Maybe pause an active monthly subscription (with no item changes) for two of
        its invoiced periods: (paused_at, resume_at), each a period start."""
        draw = life.random()
        if sub["status"] != "active" or sub["billing_period"] != "month" or extra:
            return None
        if len(periods) < 6 or any(i.get("effective_from") for i in sub["items"]):
            return None
        if draw >= RESUMED_PAUSE_SHARE:
            return None
        at = life.randrange(2, len(periods) - 3)
        return periods[at], periods[at + 2]

    def _changes(
        self, index: int, k: int, sub: Record, periods: list[date], months: int
    ) -> dict[int, list[Record]]:
        """Maybe change one item of ``sub`` during its invoiced ``periods`` (new item
        versions in ``sub["items"]``); returns the proration lines to add, by the index of
        the period whose invoice carries them (the one after the change)."""
        rng = random.Random(f"sandbox-book/{self.seed}/{index}/{k}/changes")
        draw = rng.random()
        if sub["status"] not in ("active", "past_due") or len(periods) < 3:
            return {}
        if index % C.NICHE_EVERY == C.NICHE_OFFSET:
            return {}
        candidates = [
            n for n, i in enumerate(sub["items"])
            if i["price"]["kind"] in ("per_unit", "graduated", "volume") and i["quantity"] >= 2
        ]  # fmt: skip
        if not candidates:
            return {}
        n = rng.choice(candidates)
        old = sub["items"][n]
        if draw < UPGRADE_SHARE + DOWNGRADE_SHARE:
            up = draw < UPGRADE_SHARE
            at = rng.randrange(0, len(periods) - 1)  # the next period is invoiced too
            start = periods[at]
            stop = add_months(start, months) - timedelta(days=1)
            change = start + timedelta(days=rng.randrange(1, (stop - start).days + 1))
            qty = old["quantity"]
            qty = qty + rng.randint(1, qty) if up else max(1, qty - rng.randint(1, qty - 1))
            new = {**old, "quantity": qty, "effective_from": change, "effective_to": None}
            ended = {**old, "effective_to": change - timedelta(days=1)}
            sub["items"][n : n + 1] = [ended, new]
            if rng.random() < NO_PRORATION_SHARE:
                sub["proration_policy"] = "none"
                return {}
            sub["proration_policy"] = "daily"
            p = proration(
                ProrationPolicy.DAILY,
                SubscriptionItem.model_validate(ended),
                SubscriptionItem.model_validate(new),
                change,
                start,
                stop,
            )
            line = {
                "kind": "proration",
                "proration_of": old["item_id"],
                "sku": old["sku"],
                "description": f"Proration: {C.PRODUCTS_BY_SKU[old['sku']].name}, "
                f"{old['quantity']} to {qty} from {change:%Y-%m-%d} to {stop:%Y-%m-%d}",
                "quantity": qty,
                "unit_amount_minor": p.amount_minor,
                "amount_minor": p.amount_minor,
                "period_start": change,
                "period_end": stop,
            }
            return {at + 1: [line]}
        if draw < UPGRADE_SHARE + DOWNGRADE_SHARE + PRICE_CHANGE_SHARE:
            at = rng.randrange(1, len(periods))
            price = dict(old["price"])
            price["unit_amount_minor"] = price["unit_amount_minor"] * 105 // 100
            price["tiers"] = [
                {**t, "unit_amount_minor": t["unit_amount_minor"] * 105 // 100}
                for t in price["tiers"]
            ]
            new = {**old, "price": price, "effective_from": periods[at], "effective_to": None}
            ended = {**old, "effective_to": periods[at] - timedelta(days=1)}
            sub["items"][n : n + 1] = [ended, new]
        return {}

    # -- allocations -----------------------------------------------------------------------
    def _allocations(
        self,
        rng: random.Random,
        out: CustomerSlice,
        sub: Record,
        months: int,
        billed_from: date,
    ) -> None:
        status = sub["status"]
        if status == "canceled":
            return
        current = billed_from
        while add_months(current, months) <= AS_OF:
            current = add_months(current, months)
        upcoming = add_months(current, months) if current <= AS_OF else current
        for item in current_items(sub):
            spec = C.PRODUCTS_BY_SKU[item["sku"]]
            if not spec.physical or item["quantity"] < 1:
                continue
            plan: list[tuple[date, str]] = []
            if status == "paused":
                plan.append((upcoming, "released"))
            else:
                if current <= AS_OF:
                    recent = (AS_OF - current).days <= 7
                    plan.append((current, "picked" if recent else "shipped"))
                plan.append((upcoming, "reserved"))
            for delivery, state in plan:
                out.allocations.append(
                    {
                        "hub_id": f"ALC-{item['item_id'][4:]}-{delivery:%Y%m%d}",
                        "subscription_id": sub["hub_id"],
                        "subscription_item_id": item["item_id"],
                        "sku": item["sku"],
                        "location": out.region.warehouse,
                        "quantity": item["quantity"],
                        "delivery_date": delivery,
                        "status": state,
                        "updated_at": _stamp(min(delivery, AS_OF) - timedelta(days=2), rng),
                    }
                )

"""The generated book: deterministic, canonical, arithmetically right, realistic in mix."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from datetime import date, timedelta
from typing import Any

import pytest

from hub.currency import exponent
from hub.model import Invoice, Price, Subscription, SubscriptionItem, validate_record
from hub.pricing import (
    item_in_effect,
    item_period_amount,
    items_in_effect,
    metered_quantity,
    period_of,
    proration,
    ramped_item,
)
from sandbox.seed import catalog as C
from sandbox.seed.book import Book
from sandbox.seed.drift import plan

ONE_DAY = timedelta(days=1)


def _digest(book: Book) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(book.products(), default=str, sort_keys=True).encode())
    for s in book.slices():
        for part in (s.customer, s.subscriptions, s.allocations, s.invoices):
            h.update(json.dumps(part, default=str, sort_keys=True).encode())
    return h.hexdigest()


def test_same_seed_same_book_other_seed_other_book() -> None:
    assert _digest(Book(7, 120)) == _digest(Book(7, 120))
    assert _digest(Book(7, 120)) != _digest(Book(8, 120))


def test_smaller_book_is_a_prefix_and_slices_regenerate_alone() -> None:
    big = list(Book(3, 60).slices())
    small = list(Book(3, 25).slices())
    assert [s.customer for s in small] == [s.customer for s in big[:25]]
    assert Book(3, 60).slice(41).invoices == big[41].invoices


@pytest.fixture(scope="module")
def book() -> list[Any]:
    return list(Book(42, 400).slices())


def test_every_record_is_canonical(book: list[Any]) -> None:
    for product in Book(42, 1).products():
        validate_record("product", product)
    counts: Counter[str] = Counter()
    for s in book:
        validate_record("customer", s.customer)
        for sub in s.subscriptions:
            record = validate_record("subscription", sub)
            assert isinstance(record, Subscription) and record.customer_id == s.customer["hub_id"]
        for alloc in s.allocations:
            validate_record("allocation", alloc)
        for inv in s.invoices:
            validate_record("invoice", inv)
        counts.update(
            customer=1,
            subscription=len(s.subscriptions),
            allocation=len(s.allocations),
            invoice=len(s.invoices),
        )
    assert counts["customer"] == 400
    assert counts["invoice"] > 5 * counts["customer"]
    assert counts["allocation"] > 0


def test_invoice_lines_follow_the_price_model_and_tax(book: list[Any]) -> None:
    checked = 0
    for s in book:
        subs = {sub["hub_id"]: Subscription.model_validate(sub) for sub in s.subscriptions}
        for raw in s.invoices:
            inv = Invoice.model_validate(raw)
            assert inv.arithmetic_errors() == []
            assert inv.tax_minor == (inv.subtotal_minor * s.region.tax_bps + 5_000) // 10_000
            sub = subs[inv.subscription_id or ""]
            recurring = [line for line in inv.lines if line.kind.value == "recurring"]
            usage = [line for line in inv.lines if line.kind.value == "usage"]
            for line in inv.lines:
                if line.kind.value != "proration":
                    continue
                # the change of an item mid-period, prorated by hub.pricing (issue 17)
                assert line.period_start is not None and line.period_end is not None
                start, end = period_of(line.period_end, sub.billing_period)
                old = [i for i in sub.items if i.effective_to == line.period_start - ONE_DAY]
                new = item_in_effect(sub.items, line.proration_of or "", line.period_start)
                p = proration(sub.proration_policy, old[0], new, line.period_start, start, end)
                assert line.amount_minor == p.amount_minor != 0
            begins = recurring[0].period_start if recurring else inv.issue_date
            assert begins is not None
            items = [i for i in items_in_effect(sub.items, begins) if i.price.kind.value != "usage"]
            for line, item in zip(recurring, items if recurring else [], strict=True):
                assert line.sku == item.sku and line.quantity == item.quantity
                assert line.period_start is not None
                # a ramped contract bills the step of the period (issue 17)
                item = ramped_item(sub, item, line.period_start)
                # an expired discount bills the full price (issue 17)
                assert line.amount_minor == item_period_amount(
                    item, line.period_start, line.quantity
                )
                checked += 1
            for line in usage:  # billed in arrears, as metered (issue 17)
                assert line.period_start is not None and line.period_end is not None
                assert line.period_end < inv.issue_date
                used = item_by_sku(sub.items, line.sku or "", line.period_start)
                assert line.amount_minor == item_period_amount(
                    used, line.period_start, line.quantity
                )
                assert line.quantity == metered_quantity(
                    sub.usage_records, line.sku or "", line.period_start, line.period_end
                )
                checked += 1
            if inv.status == "paid":
                assert inv.amount_paid_minor == inv.total_minor
    assert checked > 1_000


def item_by_sku(items: tuple[SubscriptionItem, ...], sku: str, day: date) -> SubscriptionItem:
    """The version of the item of ``sku`` in effect on ``day``."""
    return next(i for i in items_in_effect(items, day) if i.sku == sku)


def test_usage_is_billed_in_arrears_at_a_period_independent_unit_price(
    book: list[Any],
) -> None:
    """Each invoice bills the previous service period's metered usage; the first period
    bills none; a canceled or paused subscription's last usage is on a final invoice
    issued the day service ended; a usage unit price does not grow with the period."""
    api = C.PRODUCTS_BY_SKU["API-CALLS-1K"]
    prices = {C.list_price(api, "USD", p)["unit_amount_minor"] for p in C.PERIOD_FACTOR}
    assert prices == {45}
    first_periods = finals = arrears = written_off = 0
    for s in book:
        for raw_sub in s.subscriptions:
            sub = Subscription.model_validate(raw_sub)
            usage_skus = {i.sku for i in sub.items if i.price.kind.value == "usage"}
            invs = sorted(
                (Invoice.model_validate(i) for i in s.invoices
                 if i["subscription_id"] == sub.hub_id and i["status"] != "void"),
                key=lambda i: i.issue_date,
            )  # fmt: skip
            if not usage_skus or not invs:
                continue
            for inv in invs:
                starts = [
                    ln.period_start
                    for ln in inv.lines
                    if ln.kind.value == "recurring" and ln.period_start
                ]
                for line in (ln for ln in inv.lines if ln.kind.value == "usage"):
                    assert line.period_end is not None and line.period_start is not None
                    if starts:  # the period just before the one billed in advance
                        assert line.period_end == starts[0] - ONE_DAY
                        arrears += 1
            first = sub.trial_end or sub.start_date
            if invs[0].issue_date == first:
                assert not [ln for ln in invs[0].lines if ln.kind.value == "usage"]
                first_periods += 1
            ended = {"canceled": sub.end_date, "paused": sub.paused_at}.get(sub.status.value)
            if ended is not None and ended <= C.AS_OF and len(invs) > 1:
                final = invs[-1]
                assert final.issue_date == ended
                assert {ln.kind.value for ln in final.lines} == {"usage"}
                assert all(ln.period_end and ln.period_end < ended for ln in final.lines)
                finals += 1
                if invs[-2].status.value == "uncollectible":  # written off with the rest
                    assert final.status.value == "uncollectible"
                    written_off += 1
            billed = {
                (ln.sku, ln.period_start) for i in invs for ln in i.lines
                if ln.kind.value == "usage"
            }  # fmt: skip
            closed = {(r.meter, r.period_start) for r in sub.usage_records}
            assert billed <= closed
            assert all(r.period_end < C.AS_OF for r in sub.usage_records)
    assert first_periods > 0 and finals > 0 and written_off > 0 and arrears > 100


def test_known_prices_in_minor_units() -> None:
    seat = C.PRODUCTS_BY_SKU["SEAT-STD"]
    assert C.list_price(seat, "USD", "month")["unit_amount_minor"] == 2_900
    assert C.list_price(seat, "JPY", "month")["unit_amount_minor"] == 4_350  # 43.50 USD->JPY
    storage = Price.model_validate(C.list_price(C.PRODUCTS_BY_SKU["STOR-TB"], "USD", "month"))
    # graduated: 10 TB at 25.00, 40 TB at 20.00, 5 TB at 15.00
    assert storage.amount_minor(55) == 10 * 2_500 + 40 * 2_000 + 5 * 1_500


def test_the_mix_covers_what_the_hub_must_handle(book: list[Any]) -> None:
    statuses = Counter(sub["status"] for s in book for sub in s.subscriptions)
    kinds = Counter(
        i["price"]["kind"] for s in book for sub in s.subscriptions for i in sub["items"]
    )
    periods = Counter(sub["billing_period"] for s in book for sub in s.subscriptions)
    currencies = Counter(s.customer["currency"] for s in book)
    invoice_status = Counter(inv["status"] for s in book for inv in s.invoices)
    stages = Counter(inv["dunning_stage"] for s in book for inv in s.invoices)
    assert set(statuses) == {"trialing", "active", "past_due", "paused", "canceled"}
    assert set(kinds) == {"flat", "per_unit", "graduated", "volume", "usage"}
    assert set(periods) == {"month", "quarter", "year"}
    assert "JPY" in currencies and any(exponent(c) == 3 for c in currencies)
    assert currencies.most_common(1)[0][0] == "USD"
    assert {"paid", "open", "draft", "void", "uncollectible"} <= set(invoice_status)
    assert {1, 2, 3} <= set(stages)
    assert any(s.customer["parent_id"] for s in book)
    assert len({s.customer["payment_terms"] for s in book}) >= 5
    for s in book:
        open_stages = [i["dunning_stage"] for i in s.invoices if i["status"] == "open"]
        assert s.customer["dunning_level"] == max(open_stages, default=0)
        for alloc in s.allocations:
            assert C.PRODUCTS_BY_SKU[alloc["sku"]].physical
        parent = s.customer["parent_id"]
        if parent:
            assert int(parent.split("-")[1]) - 1 < s.index  # parents are written first


def test_drift_plan_covers_every_kind_and_is_deterministic() -> None:
    drifts = plan(Book(42, 300))
    assert drifts == plan(Book(42, 300))
    findings = [f for d in drifts for f in d.findings]
    kinds = {(f.system, f.kind, f.field) for f in findings}
    assert ("salesforce", "missing", None) in kinds
    assert ("wms", "orphan", None) in kinds
    assert ("salesforce", "mismatch", "tax_id") in kinds
    assert ("billing", "aggregate", "sum:total_minor") in kinds
    assert ("wms", "mismatch", "quantity") in kinds
    assert any(k[1] == "broken_ref" and k[0] == "pim" for k in kinds)
    customers = [d.key for d in drifts if d.entity == "customer"]
    assert len(customers) == len(set(customers))  # one drift per customer

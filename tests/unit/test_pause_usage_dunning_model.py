"""Issue 17 model rules: pause and resume dates, dunning events, usage records and an
expiring discount; each broken rule names entity, key, field and rule. Hand-computed and
hypothesis tests for the pricing functions that go with them."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.model import CanonicalValidationError, Price, PriceKind, SubscriptionItem, UsageRecord
from hub.model import validate_record as validate
from hub.pricing import discount_applies, item_period_amount, metered_quantity, period_amount

STAMP = datetime(2025, 6, 1, tzinfo=UTC)


def _sub(**kw: Any) -> dict[str, Any]:
    return {
        "hub_id": "SUB-1",
        "customer_id": "CUS-1",
        "currency": "EUR",
        "status": "active",
        "start_date": "2025-01-01",
        "items": [
            {
                "item_id": "SUB-1-1",
                "sku": "SEAT",
                "quantity": 10,
                "price": {"kind": "per_unit", "unit_amount_minor": 1_500, "discount_bps": 1_000},
            }
        ],
        "updated_at": STAMP,
        **kw,
    }


def _inv(**kw: Any) -> dict[str, Any]:
    return {
        "hub_id": "INV-1",
        "number": "2025-1",
        "customer_id": "CUS-1",
        "currency": "EUR",
        "subtotal_minor": 100,
        "total_minor": 100,
        "issue_date": "2025-03-01",
        "due_date": "2025-03-31",
        "status": "open",
        "updated_at": STAMP,
        **kw,
    }


def _broken(entity: str, data: dict[str, Any]) -> tuple[str | None, str, str]:
    with pytest.raises(CanonicalValidationError) as info:
        validate(entity, data)
    err = info.value
    assert err.key is not None
    return err.key, err.errors[0].field, err.errors[0].rule


def test_pause_and_resume_dates() -> None:
    ok = validate("subscription", _sub(paused_at="2025-03-01", resume_at="2025-05-01"))
    assert (ok.paused_at, ok.resume_at) == (date(2025, 3, 1), date(2025, 5, 1))  # type: ignore[attr-defined]
    assert validate("subscription", _sub(status="paused", paused_at="2025-03-01"))
    assert _broken("subscription", _sub(paused_at="2025-03-01", resume_at="2025-03-01")) == (
        "SUB-1",
        "resume_at",
        "resume_after_pause",
    )
    assert _broken("subscription", _sub(resume_at="2025-03-01")) == (
        "SUB-1",
        "resume_at",
        "resume_needs_pause",
    )


def test_usage_records() -> None:
    rec = {"meter": "API", "period_start": "2025-03-01", "period_end": "2025-03-31", "quantity": 7}
    ok = validate("subscription", _sub(usage_records=[rec]))
    assert ok.usage_records[0].quantity == 7  # type: ignore[attr-defined]
    key, field, rule = _broken(
        "subscription", _sub(usage_records=[{**rec, "period_end": "2025-02-28"}])
    )
    # a nested model's rule is named at the record (its message starts with period_end)
    assert (key, field, rule) == ("SUB-1", "usage_records.0", "usage_period")


def test_dunning_events() -> None:
    run = [
        {"stage": 1, "on": "2025-04-01", "outcome": "retried"},
        {"stage": 2, "on": "2025-04-15", "outcome": "paid"},
    ]
    ok = validate("invoice", _inv(status="paid", amount_paid_minor=100, dunning_stage=2,
                                  dunning_events=run))  # fmt: skip
    assert [e.outcome for e in ok.dunning_events] == ["retried", "paid"]  # type: ignore[attr-defined]
    assert _broken("invoice", _inv(dunning_stage=1, dunning_events=run)) == (
        "INV-1",
        "dunning_stage",
        "dunning_stage_last_event",
    )
    assert _broken("invoice", _inv(dunning_stage=1, dunning_events=run[::-1])) == (
        "INV-1",
        "dunning_events",
        "dunning_events_order",
    )
    key, field, _rule = _broken(
        "invoice", _inv(dunning_stage=4, dunning_events=[{"stage": 5, "on": "2025-04-01"}])
    )
    assert (key, field) == ("INV-1", "dunning_events.0.stage")
    key, field, _rule = _broken(
        "invoice", _inv(dunning_events=[{"stage": 1, "on": "2025-04-01", "outcome": "lost"}])
    )
    assert (key, field) == ("INV-1", "dunning_events.0.outcome")


SEAT = Price(kind=PriceKind.PER_UNIT, unit_amount_minor=1_500, discount_bps=1_000)


def test_an_expiring_discount_by_hand() -> None:
    item = SubscriptionItem(
        item_id="i", sku="SEAT", quantity=10, price=SEAT, discount_until=date(2025, 3, 31)
    )
    # 10 x 1500 = 15000; 10 % off = 13500 for periods starting on or before 31 March
    assert item_period_amount(item, date(2025, 3, 1)) == 13_500
    assert item_period_amount(item, date(2025, 3, 31)) == 13_500
    assert item_period_amount(item, date(2025, 4, 1)) == 15_000
    assert period_amount([item], date(2025, 4, 1)) == 15_000
    never = item.model_copy(update={"discount_until": None})
    assert item_period_amount(never, date(2030, 1, 1)) == 13_500


@given(
    st.integers(0, 1_000),
    st.integers(0, 10_000),
    st.integers(0, 10_000),
    st.integers(-400, 400),
)
def test_a_discount_applies_until_its_last_day_then_the_full_price(
    qty: int, unit: int, bps: int, offset: int
) -> None:
    period = date(2025, 4, 1)
    until = period + timedelta(days=offset)
    price = Price(kind=PriceKind.PER_UNIT, unit_amount_minor=unit, discount_bps=bps)
    item = SubscriptionItem(item_id="i", sku="S", quantity=qty, price=price, discount_until=until)
    full = unit * qty
    discounted = full - (full * bps + 5_000) // 10_000
    expect = discounted if offset >= 0 else full
    assert item_period_amount(item, period) == expect
    assert discount_applies(item, period) == (bps > 0 and offset >= 0)
    assert item_period_amount(item, period) >= price.amount_minor(qty)


def test_metered_quantity_by_hand() -> None:
    records = [
        UsageRecord(meter="API", period_start=date(2025, 4, 1), period_end=date(2025, 4, 15),
                    quantity=300),
        UsageRecord(meter="API", period_start=date(2025, 4, 16), period_end=date(2025, 4, 30),
                    quantity=200),
        UsageRecord(meter="SMS", period_start=date(2025, 4, 1), period_end=date(2025, 4, 30),
                    quantity=9),
        UsageRecord(meter="API", period_start=date(2025, 5, 1), period_end=date(2025, 5, 31),
                    quantity=120),
    ]  # fmt: skip
    assert metered_quantity(records, "API", date(2025, 4, 1), date(2025, 4, 30)) == 500
    assert metered_quantity(records, "SMS", date(2025, 4, 1), date(2025, 4, 30)) == 9
    assert metered_quantity(records, "API", date(2025, 4, 1), date(2025, 5, 31)) == 620
    assert metered_quantity(records, "API", date(2025, 4, 2), date(2025, 4, 30)) == 200


@given(st.lists(st.tuples(st.integers(0, 60), st.integers(0, 20), st.integers(0, 10**6))))
def test_metered_quantity_counts_the_records_inside_the_period(
    rows: list[tuple[int, int, int]],
) -> None:
    start = date(2025, 1, 1)
    lo, hi = start + timedelta(days=10), start + timedelta(days=40)
    records = [
        UsageRecord(meter="M", period_start=start + timedelta(days=a),
                    period_end=start + timedelta(days=a + n), quantity=q)
        for a, n, q in rows
    ]  # fmt: skip
    inside = sum(q for a, n, q in rows if a >= 10 and a + n <= 40)
    assert metered_quantity(records, "M", lo, hi) == inside
    assert metered_quantity(records, "other", lo, hi) == 0

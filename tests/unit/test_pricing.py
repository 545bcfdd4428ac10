"""Price history and prorations (``hub.pricing``): properties of each function and
hand-computed scenarios (issue 17)."""

from __future__ import annotations

from datetime import date, timedelta
from fractions import Fraction
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.model import (
    BillingPeriod,
    CanonicalValidationError,
    Price,
    ProrationPolicy,
    SubscriptionItem,
    validate_record,
)
from hub.pricing import (
    effective_change_date,
    item_changes,
    item_in_effect,
    items_in_effect,
    period_amount,
    period_of,
    prorate,
    proration,
)
from tests.unit.strategies import prices

DAILY, NONE, CYCLE = ProrationPolicy.DAILY, ProrationPolicy.NONE, ProrationPolicy.BILLING_CYCLE
days = st.dates(min_value=date(2001, 1, 1), max_value=date(2098, 12, 31))


def seats(qty: int, unit: int = 300, **dates: date | None) -> SubscriptionItem:
    price = Price(kind="per_unit", unit_amount_minor=unit)
    return SubscriptionItem(item_id="I-1", sku="SEAT", quantity=qty, price=price, **dates)


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[SubscriptionItem], list[date]]:
    """One item's versions with adjacent, non-overlapping ranges, and their first days."""
    start = draw(days)
    gaps = draw(st.lists(st.integers(1, 400), min_size=0, max_size=4))
    firsts = [start]
    for g in gaps:
        firsts.append(firsts[-1] + timedelta(days=g))
    items = []
    for n, first in enumerate(firsts):
        last = firsts[n + 1] - timedelta(days=1) if n + 1 < len(firsts) else None
        items.append(
            SubscriptionItem(
                item_id="I-1",
                sku="SEAT",
                quantity=draw(st.integers(0, 1_000)),
                price=Price.model_validate(draw(prices())),
                effective_from=None if n == 0 else first,
                effective_to=last,
            )
        )
    return items, firsts


@given(histories(), days)
def test_exactly_one_version_is_in_effect_on_any_day(h: tuple, day: date) -> None:
    items, firsts = h
    found = item_in_effect(items, "I-1", day)
    assert found is not None
    assert [i for i in items if i.in_effect(day)] == [found]
    # the version is the last whose first day is not after ``day``
    index = max([0] + [n for n, f in enumerate(firsts) if n and f <= day])
    assert found is items[index]
    assert items_in_effect(items, day) == (found,)
    assert item_in_effect(items, "I-2", day) is None


@given(histories(), days)
def test_period_amount_prices_the_version_in_effect_on_the_first_day(h: tuple, day: date) -> None:
    items, _ = h
    item = item_in_effect(items, "I-1", day)
    assert item is not None
    qty = 0 if item.price.kind.value == "usage" else item.quantity
    assert period_amount(items, day) == item.price.amount_minor(qty)


@given(st.integers(-(10**12), 10**12), st.integers(1, 400), st.data())
def test_prorate_is_the_nearest_minor_unit_half_to_even(amount: int, n: int, data) -> None:
    left = data.draw(st.integers(0, n))
    got = prorate(amount, left, n)
    exact = Fraction(amount * left, n)
    assert abs(got - exact) <= Fraction(1, 2)
    if abs(got - exact) == Fraction(1, 2):
        assert got % 2 == 0
    assert prorate(amount, n, n) == amount and prorate(amount, 0, n) == 0
    assert prorate(-amount, left, n) == -got  # half to even is symmetric


def test_prorate_rejects_days_outside_the_period() -> None:
    with pytest.raises(ValueError, match="days_left"):
        prorate(100, 31, 30)
    with pytest.raises(ValueError, match="days_left"):
        prorate(100, 1, 0)


@given(days, st.integers(0, 40), st.integers(0, 1_000), st.integers(0, 1_000), st.data())
def test_daily_proration_is_charge_minus_credit_over_the_days_left(
    start: date, length: int, q_old: int, q_new: int, data
) -> None:
    end = start + timedelta(days=length)
    change = start + timedelta(days=data.draw(st.integers(0, length)))
    old, new = seats(q_old), seats(q_new)
    p = proration(DAILY, old, new, change, start, end)
    if change == start:
        assert p.amount_minor == 0  # the period bills the new version whole
        return
    assert p.days == length + 1 and p.days_left == (end - change).days + 1
    assert p.credit_minor == prorate(q_old * 300, p.days_left, p.days)
    assert p.charge_minor == prorate(q_new * 300, p.days_left, p.days)
    assert p.amount_minor == p.charge_minor - p.credit_minor
    assert (p.amount_minor > 0) <= (q_new > q_old)  # an upgrade never credits on net
    assert (p.amount_minor < 0) <= (q_new < q_old)
    assert proration(DAILY, old, old, change, start, end).amount_minor == 0
    # an added item has nothing to credit, a removed one nothing to charge
    assert proration(DAILY, None, new, change, start, end).credit_minor == 0
    assert proration(DAILY, old, None, change, start, end).charge_minor == 0


@given(days, st.integers(0, 40), st.integers(0, 1_000), st.integers(0, 1_000), st.data())
def test_none_and_billing_cycle_prorate_nothing(
    start: date, length: int, q_old: int, q_new: int, data
) -> None:
    end = start + timedelta(days=length)
    change = start + timedelta(days=data.draw(st.integers(0, length)))
    for policy in (NONE, CYCLE):
        assert proration(policy, seats(q_old), seats(q_new), change, start, end).amount_minor == 0
    moved = effective_change_date(CYCLE, change, start, end)
    assert moved == (start if change == start else end + timedelta(days=1))
    assert effective_change_date(NONE, change, start, end) == change
    assert effective_change_date(DAILY, change, start, end) == change


@given(days, st.sampled_from(list(BillingPeriod)))
def test_period_of_ends_where_the_next_begins(end: date, period: BillingPeriod) -> None:
    start, last = period_of(end, period)
    assert last == end and start <= end
    assert (end - start).days + 1 in range(28 * period.months, 31 * period.months + 1)


# -- hand-computed scenarios -------------------------------------------------------------
JUNE = (date(2025, 6, 1), date(2025, 6, 30))  # 30 days


def test_upgrade_on_day_10_of_a_30_day_period_with_daily_proration() -> None:
    # 10 seats at 3.00 = 30.00 a period, upgraded to 15 seats (45.00) from 10 June.
    # Days left, 10 June to 30 June inclusive: 21 of 30.
    # credit: 3000 x 21 / 30 = 2100; charge: 4500 x 21 / 30 = 3150; line: 3150 - 2100 = 1050
    old = seats(10, effective_to=date(2025, 6, 9))
    new = seats(15, effective_from=date(2025, 6, 10))
    p = proration(DAILY, old, new, date(2025, 6, 10), *JUNE)
    assert (p.days_left, p.days) == (21, 30)
    assert (p.credit_minor, p.charge_minor, p.amount_minor) == (2100, 3150, 1050)
    assert item_changes([old, new]) == [(old, new)]
    # June's invoice (issued 1 June) billed 10 seats; July's bills 15 seats + the 1050
    assert period_amount([old, new], date(2025, 6, 1)) == 3000
    assert period_amount([old, new], date(2025, 7, 1)) == 4500


def test_downgrade_is_a_credit() -> None:
    # 20 seats at 2.99 (59.80) down to 7 seats (20.93) from 21 June: 10 days of 30 left.
    # credit: 5980 x 10 / 30 = 1993.33 -> 1993; charge: 2093 x 10 / 30 = 697.67 -> 698
    # line: 698 - 1993 = -1295 (a credit)
    old, new = seats(20, 299), seats(7, 299)
    p = proration(DAILY, old, new, date(2025, 6, 21), *JUNE)
    assert (p.days_left, p.credit_minor, p.charge_minor, p.amount_minor) == (10, 1993, 698, -1295)


def test_rounding_is_half_to_even_per_side() -> None:
    # 5 x 21/30 = 3.5 -> 4 (even); 15 x 21/30 = 10.5 -> 10 (even): line 10 - 4 = 6
    old, new = seats(1, 5), seats(1, 15)
    p = proration(DAILY, old, new, date(2025, 6, 10), *JUNE)
    assert (p.credit_minor, p.charge_minor, p.amount_minor) == (4, 10, 6)


def test_none_policy_bills_the_period_as_it_was_and_the_new_price_next_period() -> None:
    old = seats(10, effective_to=date(2025, 6, 9))
    new = seats(15, effective_from=date(2025, 6, 10))
    assert proration(NONE, old, new, date(2025, 6, 10), *JUNE).amount_minor == 0
    assert period_amount([old, new], date(2025, 6, 1)) == 3000
    assert period_amount([old, new], date(2025, 7, 1)) == 4500


def test_billing_cycle_moves_the_change_to_the_next_period() -> None:
    assert effective_change_date(CYCLE, date(2025, 6, 10), *JUNE) == date(2025, 7, 1)
    assert proration(CYCLE, seats(10), seats(15), date(2025, 6, 10), *JUNE).amount_minor == 0


def _sub(items: list[dict]) -> dict:
    return {
        "hub_id": "SUB-1",
        "customer_id": "CUS-1",
        "currency": "USD",
        "status": "active",
        "start_date": date(2025, 1, 1),
        "items": items,
        "updated_at": "2025-06-30T00:00:00Z",
    }


def test_overlapping_versions_are_rejected_naming_entity_key_field_and_rule() -> None:
    base = {"item_id": "I-1", "sku": "SEAT", "quantity": 1, "price": {"kind": "flat"}}
    ok = _sub([{**base, "effective_to": date(2025, 6, 9)},
               {**base, "effective_from": date(2025, 6, 10)}])  # fmt: skip
    assert len(validate_record("subscription", ok).items) == 2  # type: ignore[attr-defined]
    bad = _sub([{**base, "effective_to": date(2025, 6, 10)},
                {**base, "effective_from": date(2025, 6, 10)}])  # fmt: skip
    with pytest.raises(CanonicalValidationError) as err:
        validate_record("subscription", bad)
    assert err.value.entity == "subscription" and err.value.key == "SUB-1"
    [e] = err.value.errors
    assert (e.field, e.rule) == ("items[I-1].effective_from", "item_versions_overlap")
    two_open = _sub([base, base])
    with pytest.raises(CanonicalValidationError, match="item_versions_overlap"):
        validate_record("subscription", two_open)


def test_a_proration_line_names_its_item() -> None:
    inv = {
        "hub_id": "INV-1", "number": "1", "customer_id": "CUS-1", "currency": "USD",
        "subtotal_minor": 1, "total_minor": 1, "issue_date": date(2025, 7, 1),
        "due_date": date(2025, 7, 1), "status": "open", "updated_at": "2025-07-01T00:00:00Z",
        "lines": [{"line_no": 1, "amount_minor": 1, "kind": "proration"}],
    }  # fmt: skip
    with pytest.raises(CanonicalValidationError) as err:
        validate_record("invoice", inv)
    assert err.value.errors[0].rule == "proration_of_required"
    assert "lines.0" in err.value.errors[0].field


@given(histories())
def test_item_changes_pair_each_later_version_with_the_one_before(h: tuple) -> None:
    items, _ = h
    assert item_changes(items) == list(pairwise(items))
    # a version starting after a gap follows nothing
    if len(items) > 1:
        last = items[-1]
        gap = last.model_copy(update={"effective_from": last.effective_from + ONE})
        assert item_changes([*items[:-1], gap])[-1] == (None, gap)


ONE = timedelta(days=1)

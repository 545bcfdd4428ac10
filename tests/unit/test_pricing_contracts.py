"""Bundles and contract terms (``hub.pricing``): properties of each function and
hand-computed scenarios - bundle price allocation, a ramped contract's year 2, a
commitment's shortfall - and the model's validation of them (issue 17)."""

from __future__ import annotations

from datetime import date, timedelta
from fractions import Fraction
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.model import (
    BUNDLE_SHARES_BPS,
    CanonicalValidationError,
    Price,
    RampStep,
    Subscription,
    SubscriptionItem,
    add_months,
    validate_record,
)
from hub.pricing import (
    allocate,
    bundle_allocation,
    commitment_end,
    commitment_shortfall,
    item_amount,
    ramp_step_in_effect,
    ramped_item,
)

days = st.dates(min_value=date(2001, 1, 1), max_value=date(2090, 12, 31))
amounts = st.integers(-(10**12), 10**12)


@st.composite
def shares(draw: st.DrawFn) -> list[int]:
    """Basis-point shares of 1 to 6 components summing to the whole."""
    cuts = sorted(draw(st.lists(st.integers(0, BUNDLE_SHARES_BPS), max_size=5)))
    edges = [0, *cuts, BUNDLE_SHARES_BPS]
    return [b - a for a, b in pairwise(edges)]


# -- allocate -----------------------------------------------------------------------------
@given(amounts, shares())
def test_an_allocation_sums_to_the_amount_exactly(amount: int, bps: list[int]) -> None:
    assert sum(allocate(amount, bps)) == amount


@given(amounts, shares())
def test_each_part_is_within_one_minor_unit_of_its_exact_share(amount: int, bps: list[int]) -> None:
    for part, share in zip(allocate(amount, bps), bps, strict=True):
        assert abs(Fraction(part) - Fraction(amount * share, BUNDLE_SHARES_BPS)) < 1


@given(st.integers(0, 10**12), st.integers(0, 10**9), shares())
def test_allocation_is_monotone_in_amount_per_whole_share_step(
    amount: int, more: int, bps: list[int]
) -> None:
    """A larger amount never gives a component less once the component's exact share has
    grown by a whole minor unit (largest remainder can take one unit back on a step of a
    single unit: the Alabama paradox, see the scenario below); the total always grows."""
    low, high = allocate(amount, bps), allocate(amount + more, bps)
    assert sum(high) >= sum(low)
    for a, b, share in zip(low, high, bps, strict=True):
        if more * share >= BUNDLE_SHARES_BPS:
            assert b >= a


def test_largest_remainder_may_take_a_unit_back_on_a_one_unit_step() -> None:
    # 111 x (10.34%, 82.92%, 6.74%) = 11.4774, 92.0412, 7.4814: floors 11, 92, 7 leave one
    # unit, to the largest remainder (.4814): 11, 92, 8. 112 x the same = 11.5808, 92.8704,
    # 7.5488: floors 11, 92, 7 leave two, to .8704 and .5808: 12, 93, 7 - the third lost one
    assert allocate(111, [1034, 8292, 674]) == [11, 92, 8]
    assert allocate(112, [1034, 8292, 674]) == [12, 93, 7]


def test_bundle_10000_split_6000_3000_1000() -> None:
    assert allocate(10_000, [6_000, 3_000, 1_000]) == [6_000, 3_000, 1_000]


def test_an_odd_cent_goes_to_the_largest_remainder() -> None:
    # 10,001 x 60% = 6000.6, x 30% = 3000.3, x 10% = 1000.1: floors 6000/3000/1000 leave
    # one cent, which goes to the largest remainder (.6): the first component
    assert allocate(10_001, [6_000, 3_000, 1_000]) == [6_001, 3_000, 1_000]
    # 3 cents over three equal-ish thirds: 3333/3333/3334 bps of 100 = 33.33, 33.33, 33.34
    assert allocate(100, [3_333, 3_333, 3_334]) == [33, 33, 34]
    # a tie (two .5 remainders, one cent left) goes to the earlier component
    assert allocate(1, [5_000, 5_000]) == [1, 0]


def test_a_credit_is_allocated_as_its_magnitude_negated() -> None:
    assert allocate(-10_001, [6_000, 3_000, 1_000]) == [-6_001, -3_000, -1_000]


def test_shares_that_do_not_make_the_whole_are_refused() -> None:
    with pytest.raises(ValueError, match="sum to 10000"):
        allocate(100, [6_000, 3_000])


def _bundle_item(**extra: Any) -> SubscriptionItem:
    return SubscriptionItem(
        item_id="I-1",
        sku="SUITE",
        quantity=2,
        price=Price(kind="per_unit", unit_amount_minor=5_000),
        bundle=(
            {"sku": "CORE", "quantity": 1, "share_bps": 6_000},
            {"sku": "ADDON", "quantity": 2, "share_bps": 3_000},
            {"sku": "SUPPORT", "quantity": 1, "share_bps": 1_000},
        ),
        **extra,
    )


def test_a_bundle_period_amount_is_allocated_over_its_components() -> None:
    item = _bundle_item()
    amount = item_amount(item)  # 2 x 5,000 = 10,000
    assert [(c.sku, part) for c, part in bundle_allocation(item, amount)] == [
        ("CORE", 6_000),
        ("ADDON", 3_000),
        ("SUPPORT", 1_000),
    ]
    plain = SubscriptionItem(item_id="I-2", sku="X", quantity=1, price=Price(kind="flat"))
    assert bundle_allocation(plain, 500) == []


# -- ramp ---------------------------------------------------------------------------------
def _price(unit: int) -> Price:
    return Price(kind="per_unit", unit_amount_minor=unit)


def _contract(ramp: list[dict[str, Any]], **extra: Any) -> Subscription:
    record = {
        "hub_id": "SUB-1",
        "customer_id": "CUS-1",
        "currency": "EUR",
        "status": "active",
        "start_date": date(2024, 3, 15),
        "items": [{"item_id": "I-1", "sku": "SEAT", "quantity": 10, "price": _price(100)}],
        "ramp": ramp,
        "updated_at": "2025-06-30T00:00:00Z",
        **extra,
    }
    return validate_record("subscription", record)  # type: ignore[return-value]


THREE_YEARS = [
    {"item_id": "I-1", "contract_year": 1, "price": _price(100)},
    {"item_id": "I-1", "contract_year": 2, "price": _price(120)},
    {"item_id": "I-1", "contract_year": 3, "price": _price(150)},
]


def test_ramped_contract_year_2_bills_the_year_2_price() -> None:
    sub = _contract(THREE_YEARS)
    year2 = date(2025, 9, 1)  # contract year 2 runs 2025-03-15 .. 2026-03-14
    step = ramp_step_in_effect(sub.ramp, "I-1", year2, sub.start_date)
    assert step is not None and step.price is not None
    assert step.price.unit_amount_minor == 120
    assert item_amount(ramped_item(sub, sub.items[0], year2)) == 10 * 120
    # the year's first and last days
    assert item_amount(ramped_item(sub, sub.items[0], date(2025, 3, 15))) == 1_200
    assert item_amount(ramped_item(sub, sub.items[0], date(2025, 3, 14))) == 1_000
    assert item_amount(ramped_item(sub, sub.items[0], date(2026, 3, 15))) == 1_500


def test_a_step_by_date_and_a_quantity_only_step() -> None:
    sub = _contract(
        [
            {"item_id": "I-1", "starts_on": date(2024, 6, 1), "quantity": 25},
            {"item_id": "I-1", "starts_on": date(2025, 1, 1), "price": _price(90)},
        ]
    )
    assert ramped_item(sub, sub.items[0], date(2024, 5, 31)) == sub.items[0]  # before the ramp
    assert item_amount(ramped_item(sub, sub.items[0], date(2024, 6, 1))) == 25 * 100
    # the later step sets the price only: the quantity is the item's again
    assert item_amount(ramped_item(sub, sub.items[0], date(2025, 1, 1))) == 10 * 90


@st.composite
def ramps(draw: st.DrawFn) -> tuple[list[RampStep], date]:
    start = draw(days)
    years = sorted(draw(st.sets(st.integers(1, 10), min_size=1, max_size=5)))
    steps = [
        RampStep(item_id="I-1", contract_year=y, price=_price(draw(st.integers(0, 10**6))))
        for y in years
    ]
    return steps, start


@given(ramps(), days)
def test_the_step_in_effect_is_the_last_one_started(r: tuple, day: date) -> None:
    steps, start = r
    step = ramp_step_in_effect(steps, "I-1", day, start)
    started = [s for s in steps if s.first_day(start) <= day]
    if not started:
        assert step is None
        return
    assert step is not None and step == started[-1]  # in order: the last started is latest
    later = [s for s in steps if s.first_day(start) > step.first_day(start)]
    assert all(s.first_day(start) > day for s in later)
    assert ramp_step_in_effect(steps, "I-2", day, start) is None  # another item's


# -- commitment ---------------------------------------------------------------------------
@given(st.integers(0, 10**15), st.integers(0, 10**15))
def test_a_shortfall_is_committed_minus_billed_never_negative(committed: int, billed: int) -> None:
    short = commitment_shortfall(committed, billed)
    assert short >= 0
    assert short == committed - billed if billed <= committed else short == 0


def test_commitment_of_36000_over_three_years_billed_30000_is_short_6000() -> None:
    sub = _contract([], commitment_minor=36_000_00, commitment_term_months=36)
    assert commitment_end(sub) == date(2027, 3, 14)
    assert commitment_shortfall(36_000_00, 30_000_00) == 6_000_00
    assert commitment_shortfall(36_000_00, 40_000_00) == 0
    assert commitment_end(_contract([])) is None


# -- validation ---------------------------------------------------------------------------
def _error(**record: Any) -> tuple[str, str | None, str, str]:
    with pytest.raises(CanonicalValidationError) as err:
        _contract(**record)
    e = err.value.errors[0]  # (a rejected item also leaves ``items`` too short)
    return err.value.entity, err.value.key, e.field, e.rule


def test_bundle_shares_not_summing_to_the_whole_name_entity_key_field_and_rule() -> None:
    item = {
        "item_id": "I-1",
        "sku": "SUITE",
        "quantity": 1,
        "price": _price(100),
        "bundle": [{"sku": "A", "share_bps": 6_000}, {"sku": "B", "share_bps": 3_000}],
    }
    assert _error(ramp=[], items=[item]) == (
        "subscription",
        "SUB-1",
        "items.0.bundle",
        "bundle_shares_sum",
    )
    twice = {**item, "bundle": [{"sku": "A", "share_bps": 5_000}] * 2}
    assert _error(ramp=[], items=[twice])[2:] == ("items.0.bundle", "bundle_components_unique")


def test_contract_term_and_ramp_errors_name_their_field_and_rule() -> None:
    assert _error(ramp=[], commitment_minor=100) == (
        "subscription",
        "SUB-1",
        "commitment_term_months",
        "commitment_term",
    )
    other = [{"item_id": "I-9", "contract_year": 2, "price": _price(1)}]
    assert _error(ramp=other)[2:] == ("ramp[0].item_id", "ramp_item")
    backwards = [THREE_YEARS[1], THREE_YEARS[0]]
    assert _error(ramp=backwards)[2:] == ("ramp[1]", "ramp_order")
    both = [{"item_id": "I-1", "contract_year": 2, "starts_on": date(2025, 1, 1), "quantity": 1}]
    assert _error(ramp=both)[2:] == ("ramp.0", "ramp_step_start")
    tiered = {"kind": "graduated", "tiers": [{"up_to": None, "unit_amount_minor": 1}]}
    assert _error(ramp=[{"item_id": "I-1", "contract_year": 2, "price": tiered}])[3] == (
        "ramp_step_untiered"
    )
    assert _error(ramp=[{"item_id": "I-1", "contract_year": 2}])[3] == "ramp_step_change"


def test_a_day_before_the_contract_start_has_no_step() -> None:
    sub = _contract(THREE_YEARS)
    assert (
        ramp_step_in_effect(sub.ramp, "I-1", sub.start_date - timedelta(days=1), sub.start_date)
        is None
    )


# -- properties of the remaining functions --------------------------------------------------
@given(st.integers(0, 10**9), shares())
def test_a_bundle_allocation_names_each_component_once_and_sums_to_the_amount(
    amount: int, bps: list[int]
) -> None:
    components = [
        {"sku": f"C{n}", "quantity": 1, "share_bps": share} for n, share in enumerate(bps)
    ]
    item = SubscriptionItem(
        item_id="I-1", sku="KIT", quantity=1, price=Price(kind="flat"), bundle=components
    )
    parts = bundle_allocation(item, amount)
    assert [c.sku for c, _ in parts] == [c["sku"] for c in components]
    assert sum(part for _, part in parts) == amount


@given(
    days,
    st.integers(1, 10),
    st.none() | st.integers(0, 10**6),
    st.none() | st.integers(0, 1_000),
)
def test_a_ramped_item_takes_what_its_step_sets_and_keeps_the_rest(
    day: date, year: int, unit: int | None, qty: int | None
) -> None:
    if unit is None and qty is None:
        qty = 0  # a step changes something
    step = {"item_id": "I-1", "contract_year": year, "quantity": qty}
    if unit is not None:
        step["price"] = _price(unit)
    sub = _contract([step])
    item = sub.items[0]
    billed = ramped_item(sub, item, day)
    if day < sub.ramp[0].first_day(sub.start_date):
        assert billed == item
        return
    assert billed.price == (item.price if unit is None else _price(unit))
    assert billed.quantity == (item.quantity if qty is None else qty)
    assert (billed.item_id, billed.sku) == (item.item_id, item.sku)


@given(st.integers(1, 120))
def test_a_commitment_ends_the_day_before_its_term_months_later(months: int) -> None:
    sub = _contract([], commitment_minor=1, commitment_term_months=months)
    end = commitment_end(sub)
    assert end is not None and end >= sub.start_date
    assert end + timedelta(days=1) == add_months(sub.start_date, months)

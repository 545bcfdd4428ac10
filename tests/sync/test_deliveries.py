"""Delivery planning (hub.sync.deliveries): the allocation changes a subscription change
calls for, checked rule by rule, on the whole seeded book (which needs none), and for
idempotence with hypothesis (planning the planned state again plans nothing)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.model import add_months, validate_record
from hub.sync.deliveries import DeliveryRules, NoWarehouseError, next_delivery, plan
from sandbox.seed.book import Book

RULES = DeliveryRules.load()
TODAY = date(2026, 12, 5)
NOW = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
PRODUCTS = {
    "HW-1": {"sku": "HW-1", "family": "hardware", "lifecycle": "active"},
    "CON-1": {"sku": "CON-1", "family": "consumables", "lifecycle": "active"},
    "SW-1": {"sku": "SW-1", "family": "software", "lifecycle": "active"},
    "OLD-1": {"sku": "OLD-1", "family": "hardware", "lifecycle": "retired"},
}
CUSTOMER = {"hub_id": "CUS-1", "billing_address": {"country": "FR"}}


def _sub(status: str = "active", items: dict[str, int] | None = None) -> dict[str, Any]:
    return {
        "hub_id": "SUB-1",
        "customer_id": "CUS-1",
        "status": status,
        "start_date": "2026-01-15",
        "billing_period": "month",
        "items": [
            {"item_id": f"IT-{sku}", "sku": sku, "quantity": quantity}
            for sku, quantity in (items or {"HW-1": 2}).items()
        ],
    }


def _alloc(sku: str, status: str, quantity: int, day: str, location: str = "NL01") -> dict:
    return {
        "hub_id": f"ALC-SUB-1-IT-{sku}-{day.replace('-', '')}",
        "subscription_id": "SUB-1",
        "subscription_item_id": f"IT-{sku}",
        "sku": sku,
        "location": location,
        "quantity": quantity,
        "delivery_date": day,
        "status": status,
        "updated_at": "2026-11-01T00:00:00+00:00",
    }


def _plan(sub: dict[str, Any], allocations: list[dict[str, Any]]) -> list[Any]:
    return plan(sub, allocations, PRODUCTS, CUSTOMER, RULES, today=TODAY, now=NOW)


def test_a_new_subscription_gets_one_reserved_delivery_per_shipped_item() -> None:
    planned = _plan(_sub(items={"HW-1": 2, "CON-1": 5, "SW-1": 10}), [])
    assert [(p.data["sku"], p.data["quantity"], p.created) for p in planned] == [
        ("CON-1", 5, True),
        ("HW-1", 2, True),
    ]  # software is not shipped
    first = planned[0].data
    assert first["hub_id"].startswith("ALC-") and len(first["hub_id"]) <= 40
    assert first["hub_id"].endswith("-20261215")  # the next monthly cycle from Jan 15
    again = _plan(_sub(items={"HW-1": 2, "CON-1": 5, "SW-1": 10}), [])
    assert [p.hub_id for p in again] == [p.hub_id for p in planned]  # same plan, same ids
    assert (first["status"], first["location"]) == ("reserved", "DE01")  # FR ships from DE01
    validate_record("allocation", first)  # a valid canonical allocation


@pytest.mark.parametrize(("old", "new"), [(2, 5), (5, 2)])
def test_an_upgrade_or_downgrade_adjusts_the_reserved_quantity(old: int, new: int) -> None:
    shipped = _alloc("HW-1", "shipped", old, "2026-11-15")
    reserved = _alloc("HW-1", "reserved", old, "2026-12-15")
    (planned,) = _plan(_sub(items={"HW-1": new}), [shipped, reserved])
    assert (planned.hub_id, planned.changed, planned.data["quantity"]) == (
        reserved["hub_id"],
        ("quantity",),
        new,
    )


@pytest.mark.parametrize("status", ["paused", "canceled"])
def test_a_pause_or_cancellation_releases_what_is_reserved_but_not_what_ships(
    status: str,
) -> None:
    picked = _alloc("HW-1", "picked", 2, "2026-12-01")
    reserved = _alloc("HW-1", "reserved", 2, "2026-12-15")
    (planned,) = _plan(_sub(status), [picked, reserved])
    assert (planned.hub_id, planned.data["status"]) == (reserved["hub_id"], "released")


def test_a_resumed_subscription_reopens_its_released_delivery() -> None:
    released = _alloc("HW-1", "released", 2, "2026-12-15")
    (planned,) = _plan(_sub(items={"HW-1": 3}), [released])
    assert planned.hub_id == released["hub_id"] and not planned.created
    assert (planned.data["status"], planned.data["quantity"]) == ("reserved", 3)


def test_a_past_released_delivery_is_not_reopened_a_new_one_is_planned() -> None:
    released = _alloc("HW-1", "released", 2, "2026-10-15", location="NL01")
    (planned,) = _plan(_sub(), [released])
    assert planned.created and planned.data["delivery_date"] == "2026-12-15"
    assert planned.data["location"] == "NL01"  # where the subscription ships from already


def test_a_removed_item_releases_its_delivery_and_a_new_item_gets_one() -> None:
    old = _alloc("CON-1", "reserved", 4, "2026-12-15")
    planned = _plan(_sub(items={"HW-1": 1}), [old])
    assert [(p.data["sku"], p.data["status"], p.created) for p in planned] == [
        ("CON-1", "released", False),
        ("HW-1", "reserved", True),
    ]


def test_no_delivery_after_the_end_date_nor_for_a_zero_quantity() -> None:
    ending = {**_sub(items={"HW-1": 2, "CON-1": 0}), "end_date": "2026-12-10"}
    assert _plan(ending, []) == []  # ends before the next cycle (Dec 15); CON-1 is zero
    assert [p.data["sku"] for p in _plan({**ending, "end_date": None}, [])] == ["HW-1"]
    reserved = _alloc("CON-1", "reserved", 3, "2026-12-15")
    (released,) = _plan({**ending, "end_date": None, "items": ending["items"][1:]}, [reserved])
    assert released.data["status"] == "released"  # down to zero: nothing to deliver


def test_a_retired_sku_gets_no_new_delivery() -> None:
    assert _plan(_sub(items={"OLD-1": 1}), []) == []


def test_no_known_warehouse_is_an_error_that_names_the_fix() -> None:
    with pytest.raises(NoWarehouseError, match=r"SUB-1 item IT-HW-1 .* 'ZZ'.*deliveries.yaml"):
        plan(
            _sub(),
            [],
            PRODUCTS,
            {"billing_address": {"country": "ZZ"}},
            RULES,
            today=TODAY,
            now=NOW,
        )


def test_next_delivery_counts_cycles_from_the_trial_end_or_start() -> None:
    sub = {"start_date": "2026-01-31", "billing_period": "month"}
    assert next_delivery(sub, date(2026, 2, 10)) == date(2026, 2, 28)  # clipped
    assert next_delivery({**sub, "billing_period": "quarter"}, TODAY) == date(2027, 1, 31)
    assert next_delivery({**sub, "trial_end": "2027-03-01"}, TODAY) == date(2027, 3, 1)
    assert add_months(date(2024, 1, 31), 1) == date(2024, 2, 29)


def test_the_seeded_book_needs_no_planning() -> None:
    """The book's billing plans deliveries as the planner would: every subscription of it,
    planned as of today, changes nothing (so a first sync plans nothing)."""
    book = Book(11, 120)
    products = {p["sku"]: p for p in book.products()}
    seen = 0
    for s in book.slices():
        for sub in s.subscriptions:
            mine = [a for a in s.allocations if a["subscription_id"] == sub["hub_id"]]
            seen += len(mine)
            planned = plan(sub, mine, products, s.customer, RULES, today=TODAY, now=NOW)
            assert planned == [], sub["hub_id"]
    assert seen > 100


@settings(max_examples=200, deadline=None)
@given(
    status=st.sampled_from(["active", "trialing", "past_due", "paused", "canceled"]),
    quantities=st.dictionaries(
        st.sampled_from(sorted(PRODUCTS)), st.integers(1, 50), min_size=1, max_size=4
    ),
    existing=st.lists(
        st.tuples(
            st.sampled_from(sorted(PRODUCTS)),
            st.sampled_from(["reserved", "picked", "shipped", "released"]),
            st.integers(1, 50),
            st.integers(-3, 3),
        ),
        max_size=6,
    ),
)
def test_planning_the_planned_state_again_plans_nothing(
    status: str, quantities: dict[str, int], existing: list[tuple[str, str, int, int]]
) -> None:
    allocations: dict[str, dict[str, Any]] = {}
    for sku, state, quantity, months in existing:
        record = _alloc(sku, state, quantity, add_months(TODAY, months).isoformat())
        allocations[record["hub_id"]] = record
    sub = _sub(status, quantities)
    after = dict(allocations)
    for p in _plan(sub, list(allocations.values())):
        after[p.hub_id] = p.data
    assert _plan(sub, list(after.values())) == []
    reserved: dict[str, int] = {}
    for a in after.values():
        if a["status"] == "reserved":
            reserved[a["sku"]] = reserved.get(a["sku"], 0) + 1
    delivering = status in ("active", "trialing", "past_due")
    for sku, quantity in quantities.items():
        shipped = PRODUCTS[sku]["family"] in RULES.physical_families
        if not delivering or not shipped:
            assert sku not in reserved, sku
        elif PRODUCTS[sku]["lifecycle"] == "active":
            assert reserved.get(sku, 0) >= 1, sku
            assert all(
                a["quantity"] == quantity
                for a in after.values()
                if a["sku"] == sku and a["status"] == "reserved"
            )

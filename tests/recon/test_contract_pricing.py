"""The price check on ramped contracts and bundles (issue 17), hand-computed: a ramped
item's line is held to the ramp step in effect for its service period (year 2 at the
year-2 price raises nothing, year 2 at the year-1 price is leakage), and a bundle's line
to the bundle's own price, not to a component's share."""

from __future__ import annotations

from datetime import date
from typing import Any

import pyarrow as pa

from hub.model import RampStep
from hub.recon import checks
from hub.recon.engine import connect, run
from hub.recon.registry import golden_ramp_steps
from hub.recon.staging import golden_table

START = date(2024, 3, 15)  # contract year 2 from 2025-03-15, year 3 from 2026-03-15
YEAR_1, YEAR_2, YEAR_3 = date(2024, 9, 15), date(2025, 9, 15), date(2026, 4, 15)


def _item(sku: str = "SEAT", qty: int = 10, unit: int = 100) -> dict[str, Any]:
    return {
        "key": "SUB-1", "item_id": "I-1", "sku": sku, "quantity": qty, "kind": "per_unit",
        "flat_amount_minor": 0, "unit_amount_minor": unit, "discount_bps": 0,
        "effective_from": None, "effective_to": None,
    }  # fmt: skip


def _step(first: date, unit: int | None = None, qty: int | None = None) -> dict[str, Any]:
    return {
        "key": "SUB-1", "item_id": "I-1", "first_day": first,
        "kind": None if unit is None else "per_unit", "flat_amount_minor": 0 if unit else None,
        "unit_amount_minor": unit, "discount_bps": 0 if unit else None, "quantity": qty,
    }  # fmt: skip


# the 3-year ramp 100 / 120 / 150 per seat, 10 seats
RAMP = [_step(START, 100), _step(date(2025, 3, 15), 120), _step(date(2026, 3, 15), 150)]


def _line(no: int, amount: int, start: date, sku: str = "SEAT") -> dict[str, Any]:
    return {
        "key": f"INV-{no}", "line_no": 1, "sku": sku, "quantity": 10, "amount_minor": amount,
        "period_start": start, "period_end": start, "kind": "recurring", "proration_of": None,
    }  # fmt: skip


def _leakage(lines: list[dict], items: list[dict], ramp: list[dict] | None) -> list[dict]:
    invoices = [
        {"key": line["key"], "subscription_id": "SUB-1", "currency": "EUR",
         "issue_date": line["period_start"]}
        for line in lines
    ]  # fmt: skip
    con = connect()
    found = checks.price_leakage(
        con,
        pa.Table.from_pylist(invoices),
        pa.Table.from_pylist(lines),
        pa.Table.from_pylist(items),
        system="billing",
        ramps=None if ramp is None else pa.Table.from_pylist(ramp),
    )
    return sorted(found.to_pylist(), key=lambda f: f["key"])


def test_each_contract_year_billed_at_its_step_finds_nothing() -> None:
    lines = [_line(1, 1_000, YEAR_1), _line(2, 1_200, YEAR_2), _line(3, 1_500, YEAR_3)]
    assert _leakage(lines, [_item()], RAMP) == []


def test_without_the_ramp_year_2_and_3_look_like_over_billing() -> None:
    lines = [_line(1, 1_000, YEAR_1), _line(2, 1_200, YEAR_2), _line(3, 1_500, YEAR_3)]
    found = _leakage(lines, [_item()], None)
    assert [(f["key"], f["expected"], f["actual"]) for f in found] == [
        ("INV-2", "1000", "1200"),
        ("INV-3", "1000", "1500"),
    ]


def test_year_2_billed_at_the_year_1_price_is_leakage_of_200() -> None:
    [f] = _leakage([_line(2, 1_000, YEAR_2)], [_item()], RAMP)
    assert (f["key"], f["field"]) == ("INV-2", "price:lines[1].amount_minor@items[I-1]")
    assert (f["expected"], f["actual"], f["amount_at_stake_minor"]) == ("1200", "1000", 200)
    assert f["currency"] == "EUR"


def test_the_first_day_of_year_2_is_year_2_and_the_day_before_is_not() -> None:
    lines = [_line(1, 1_000, date(2025, 3, 14)), _line(2, 1_200, date(2025, 3, 15))]
    assert _leakage(lines, [_item()], RAMP) == []


def test_a_quantity_step_keeps_the_item_price() -> None:
    # from 2025-01-01, 25 seats at the item's 100: 2,500
    ramp = [_step(date(2025, 1, 1), qty=25)]
    assert _leakage([_line(1, 2_500, date(2025, 2, 1))], [_item()], ramp) == []
    [f] = _leakage([_line(1, 1_000, date(2025, 2, 1))], [_item()], ramp)
    assert (f["expected"], f["amount_at_stake_minor"]) == ("2500", 1_500)


def test_another_subscriptions_ramp_does_not_apply() -> None:
    ramp = [{**RAMP[1], "key": "SUB-2"}]
    assert _leakage([_line(2, 1_000, YEAR_2)], [_item()], ramp) == []


def test_a_bundle_line_is_checked_at_the_bundle_price() -> None:
    # a bundle item: 2 x 5,000 = 10,000, allocated 6,000 / 3,000 / 1,000 to its components;
    # its line bills the bundle SKU at the bundle's price
    bundle = [_item("SUITE", qty=2, unit=5_000)]
    assert _leakage([_line(1, 10_000, YEAR_1, sku="SUITE")], bundle, None) == []
    # billed at the first component's share only: 4,000 under-billed
    [f] = _leakage([_line(1, 6_000, YEAR_1, sku="SUITE")], bundle, None)
    assert (f["expected"], f["actual"], f["amount_at_stake_minor"]) == ("10000", "6000", 4_000)
    # a component's own line is not an item of the subscription: not priced
    assert _leakage([_line(2, 6_000, YEAR_1, sku="CORE")], bundle, None) == []


def test_golden_ramp_steps_resolve_contract_years_as_the_model_does() -> None:
    """``first_day`` of a step by contract year: the subscription's start plus whole years
    (a 29 February start clips to 28 February), as ``RampStep.first_day``; by date: the
    date."""
    price = {"kind": "per_unit", "flat_amount_minor": 0, "unit_amount_minor": 120,
             "tiers": [], "discount_bps": 0}  # fmt: skip
    steps: list[dict[str, Any]] = [
        {"item_id": "I-1", "starts_on": None, "contract_year": 2, "price": price,
         "quantity": None},
        {"item_id": "I-1", "starts_on": date(2027, 1, 1), "contract_year": None,
         "price": None, "quantity": 7},
    ]  # fmt: skip
    subs = pa.Table.from_pylist(
        [
            {"key": "SUB-1", "start_date": date(2024, 2, 29), "ramp": steps},
            {"key": "SUB-2", "start_date": date(2024, 5, 1), "ramp": []},
        ]
    )
    con = connect()
    con.register("_subs", subs)
    run(con, f'CREATE TABLE "{golden_table("subscription")}" AS SELECT * FROM _subs')
    view = golden_ramp_steps(con)
    assert view is not None
    rows = con.execute(
        f"SELECT key, item_id, first_day, kind, unit_amount_minor, quantity FROM {view} "
        "ORDER BY first_day"
    ).fetchall()
    assert rows == [
        ("SUB-1", "I-1", date(2025, 2, 28), "per_unit", 120, None),
        ("SUB-1", "I-1", date(2027, 1, 1), None, None, 7),
    ]
    model = RampStep.model_validate({**steps[0], "price": price})
    assert model.first_day(date(2024, 2, 29)) == rows[0][2]


def test_a_bundles_allocations_are_held_per_component() -> None:
    """A bundle of 3 kits (2 HW + 5 CON per kit) needs 6 HW and 15 CON per delivery;
    a plain item's allocations are summed whatever their SKU, as before."""
    con = connect()
    subs = pa.table({"key": ["s1"], "status": ["active"]})
    kit = [{"sku": "HW", "quantity": 2, "share_bps": 7_000},
           {"sku": "CON", "quantity": 5, "share_bps": 3_000}]  # fmt: skip
    items = pa.Table.from_pylist(
        [
            {"key": "s1", "item_id": "kit", "quantity": 3, "bundle": kit},
            {"key": "s1", "item_id": "plain", "quantity": 2, "bundle": []},
        ]
    )

    def alloc(item: str, sku: str, qty: int) -> dict[str, Any]:
        return {"subscription_id": "s1", "subscription_item_id": item, "sku": sku,
                "location": "W1", "quantity": qty, "delivery_date": date(2026, 1, 5),
                "status": "reserved"}  # fmt: skip

    right = [alloc("kit", "HW", 6), alloc("kit", "CON", 15), alloc("plain", "P", 2)]
    found = checks.allocations(con, pa.Table.from_pylist(right), subs, items, system="wms")
    assert found.to_pylist() == []
    wrong = [alloc("kit", "HW", 3), alloc("kit", "CON", 15), alloc("kit", "X", 1),
             alloc("plain", "P", 2)]  # fmt: skip
    found = checks.allocations(con, pa.Table.from_pylist(wrong), subs, items, system="wms")
    got = {f["field"]: (f["expected"], f["actual"]) for f in found.to_pylist()}
    assert got == {
        "allocation:items[kit/HW]@2026-01-05.quantity": ("6", "3"),
        "allocation:items[kit/X]@2026-01-05.quantity": ("0", "1"),  # not a component
    }

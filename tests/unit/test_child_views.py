"""A child list a system holds as a view (hub.mapping.views): SAP's contract items are the
version of each subscription item in effect today, with its charge per billing period."""

from __future__ import annotations

from datetime import date

from hub.mapping import views
from hub.mapping.views import ChildView, FieldView

FIELDS = ["item_id", "sku", "quantity", "period_amount_minor", "effective_from", "effective_to"]
SEAT = {"kind": "per_unit", "unit_amount_minor": 2_900}


def _item(item_id: str, quantity: int, lo: str | None, hi: str | None, **price) -> dict:
    return {
        "item_id": item_id,
        "sku": "SEAT-STD",
        "quantity": quantity,
        "price": {**SEAT, **price},
        "effective_from": lo,
        "effective_to": hi,
    }


def test_in_effect_keeps_the_version_of_each_item_on_the_day_with_its_period_charge():
    rows = [
        _item("b", 10, None, "2026-03-14"),
        _item("b", 15, "2026-03-15", None),
        _item("a", 4, None, None, discount_bps=2_500),
        _item("c", 1, None, "2026-01-31"),  # removed before the day
    ]
    got = views.apply(ChildView.IN_EFFECT, rows, FIELDS, date(2026, 3, 20))
    assert got == [
        {
            "item_id": "a",
            "sku": "SEAT-STD",
            "quantity": 4,
            "period_amount_minor": 8_700,  # 4 x 29.00, 25 % off
            "effective_from": None,
            "effective_to": None,
        },
        {
            "item_id": "b",
            "sku": "SEAT-STD",
            "quantity": 15,
            "period_amount_minor": 43_500,
            "effective_from": "2026-03-15",
            "effective_to": None,
        },
    ]
    before = views.apply(ChildView.IN_EFFECT, rows, FIELDS, date(2026, 3, 14))
    assert [(r["item_id"], r["quantity"]) for r in before] == [("a", 4), ("b", 10)]


def test_an_expired_discount_is_not_in_the_period_charge():
    rows = [{**_item("a", 4, None, None, discount_bps=2_500), "discount_until": "2026-02-28"}]
    (row,) = views.apply(ChildView.IN_EFFECT, rows, FIELDS, date(2026, 3, 1))
    assert row["period_amount_minor"] == 11_600


def test_every_view_derives_and_orders_its_rows():
    assert set(views.VIEWS) == set(ChildView) == set(views.DERIVED) == set(views.ROW_KEY)


def test_item_lines_show_the_items_in_effect_as_text_in_item_order():
    rows = [_item("b", 10, None, "2026-03-14"), _item("b", 15, "2026-03-15", None)]
    rows.append({**_item("a", 1, None, None), "sku": "PLAT-CORE", "price": {"kind": "flat"}})
    text = views.apply_field(FieldView.ITEM_LINES, rows, date(2026, 3, 15))
    assert text == "PLAT-CORE x 1\nSEAT-STD x 15"
    assert views.apply_field(FieldView.ITEM_LINES, [], date(2026, 3, 15)) is None
    assert set(views.FIELD_VIEWS) == set(FieldView)

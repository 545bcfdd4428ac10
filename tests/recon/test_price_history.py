"""Leakage per service period and proration lines (issue 17), hand-computed, and the SQL
held to ``hub.pricing``."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.model import Price, ProrationPolicy, SubscriptionItem
from hub.pricing import proration
from hub.recon import checks
from hub.recon.engine import connect

JUNE_1, JUNE_30, JULY_1 = date(2025, 6, 1), date(2025, 6, 30), date(2025, 7, 1)


def _item(qty: int, unit: int = 300, lo: date | None = None, hi: date | None = None) -> dict:
    return {
        "key": "SUB-1", "item_id": "I-1", "sku": "SEAT", "quantity": qty, "kind": "per_unit",
        "flat_amount_minor": 0, "unit_amount_minor": unit, "discount_bps": 0,
        "effective_from": lo, "effective_to": hi,
    }  # fmt: skip


def _line(inv: str, no: int, amount: int, start: date, end: date, **kw: Any) -> dict:
    row = {
        "key": inv, "line_no": no, "sku": "SEAT", "quantity": kw.pop("quantity", 1),
        "amount_minor": amount, "period_start": start, "period_end": end,
        "kind": "recurring", "proration_of": None,
    }  # fmt: skip
    return {**row, **kw}


def _invoice(key: str, issued: date) -> dict:
    return {"key": key, "subscription_id": "SUB-1", "currency": "USD", "issue_date": issued}


def _subs(policy: str = "daily") -> pa.Table:
    return pa.Table.from_pylist(
        [{"key": "SUB-1", "billing_period": "month", "proration_policy": policy}]
    )


# 10 seats at 3.00 until 9 June, 15 seats from 10 June (the upgrade on day 10 of 30)
HISTORY = [_item(10, hi=date(2025, 6, 9)), _item(15, lo=date(2025, 6, 10))]
# June billed 10 seats (30.00); July 15 seats (45.00) and the proration:
# 21 days left of 30: charge 4500 x 21/30 = 3150, credit 3000 x 21/30 = 2100, net 1050
INVOICES = [_invoice("INV-JUN", JUNE_1), _invoice("INV-JUL", JULY_1)]
LINES = [
    _line("INV-JUN", 1, 3000, JUNE_1, JUNE_30, quantity=10),
    _line("INV-JUL", 1, 4500, JULY_1, date(2025, 7, 31), quantity=15),
    _line("INV-JUL", 2, 1050, date(2025, 6, 10), JUNE_30, quantity=15, kind="proration",
          proration_of="I-1"),
]  # fmt: skip


def _run(lines: list[dict], policy: str = "daily") -> list[dict]:
    con = connect()
    inv, ln, it = (pa.Table.from_pylist(x) for x in (INVOICES, lines, HISTORY))
    found = checks.price_leakage(con, inv, ln, it, system="billing").to_pylist()
    found += checks.proration_errors(con, inv, ln, _subs(policy), it, system="billing").to_pylist()
    return found


def test_an_upgrade_billed_right_finds_nothing() -> None:
    # the June invoice is judged by June's price (10 seats), not today's 15
    assert _run(LINES) == []


def test_a_line_priced_above_the_version_in_effect_is_leakage_with_its_amount() -> None:
    lines = [{**LINES[0], "amount_minor": 4500}, *LINES[1:]]  # June billed at 15 seats
    [f] = _run(lines)
    assert (f["key"], f["field"]) == ("INV-JUN", "price:lines[1].amount_minor@items[I-1]")
    assert (f["expected"], f["actual"], f["amount_at_stake_minor"]) == ("3000", "4500", -1500)
    assert f["currency"] == "USD"


def test_a_wrong_proration_amount_is_found_with_the_difference() -> None:
    lines = [*LINES[:2], {**LINES[2], "amount_minor": 4500}]  # billed as a whole period
    [f] = _run(lines)
    assert (f["key"], f["field"]) == ("INV-JUL", "proration:lines[2].amount_minor@items[I-1]")
    assert (f["expected"], f["actual"], f["amount_at_stake_minor"]) == ("1050", "4500", -3450)


def test_a_downgrade_credit() -> None:
    global HISTORY
    saved = HISTORY
    # 20 seats at 2.99 down to 7 from 21 June: 10 days of 30 left;
    # credit 5980 x 10/30 = 1993.33 -> 1993, charge 2093 x 10/30 = 697.67 -> 698: -1295
    HISTORY = [_item(20, 299, hi=date(2025, 6, 20)), _item(7, 299, lo=date(2025, 6, 21))]
    try:
        line = _line("INV-JUL", 2, -1295, date(2025, 6, 21), JUNE_30, kind="proration",
                     proration_of="I-1")  # fmt: skip
        assert _run([line]) == []
        [f] = _run([{**line, "amount_minor": -1294}])
        assert f["amount_at_stake_minor"] == -1
    finally:
        HISTORY = saved


def test_under_the_none_policy_a_proration_line_is_billed_in_error() -> None:
    [f] = _run(LINES, policy="none")
    assert f["field"].startswith("proration:lines[2]")
    assert (f["expected"], f["amount_at_stake_minor"]) == ("0", -1050)
    assert _run(LINES[:2], policy="none") == []  # no proration: nothing to find


@settings(max_examples=30, deadline=None)
@given(
    st.integers(0, 2_000), st.integers(0, 2_000), st.integers(1, 99_999),
    st.integers(1, 29), st.sampled_from(["month", "quarter", "year"]),
)  # fmt: skip
def test_the_sql_proration_is_hub_pricing(q_old: int, q_new: int, unit: int, offset: int,
                                          period: str) -> None:  # fmt: skip
    months = {"month": 1, "quarter": 3, "year": 12}[period]
    start = date(2025, 1, 1)
    end = date(2025 + (months == 12), (1 + months - 1) % 12 + 1, 1) - timedelta(days=1)
    change = start + timedelta(days=offset)
    old = SubscriptionItem(item_id="I-1", sku="SEAT", quantity=q_old,
                           price=Price(kind="per_unit", unit_amount_minor=unit),
                           effective_to=change - timedelta(days=1))  # fmt: skip
    new = old.model_copy(update={"quantity": q_new, "effective_from": change,
                                 "effective_to": None})  # fmt: skip
    want = proration(ProrationPolicy.DAILY, old, new, change, start, end).amount_minor
    con = connect()
    items = pa.Table.from_pylist(
        [_item(q_old, unit, hi=old.effective_to), _item(q_new, unit, lo=change)]
    )
    line = _line("INV", 1, want + 1, change, end, kind="proration", proration_of="I-1")
    subs = pa.Table.from_pylist(
        [{"key": "SUB-1", "billing_period": period, "proration_policy": "daily"}]
    )
    [f] = checks.proration_errors(
        con, pa.Table.from_pylist([_invoice("INV", end)]), pa.Table.from_pylist([line]), subs,
        items, system="billing",
    ).to_pylist()  # fmt: skip
    assert (f["expected"], f["amount_at_stake_minor"]) == (str(want), -1)


def _run_with_subs(lines: list[dict], subs: pa.Table, invoices: list[dict] = INVOICES) -> list:
    con = connect()
    inv, ln, it = (pa.Table.from_pylist(x) for x in (invoices, lines, HISTORY))
    return checks.proration_errors(con, inv, ln, subs, it, system="billing").to_pylist()


def _dated_subs(policy: str = "daily") -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "key": "SUB-1", "billing_period": "month", "proration_policy": policy,
                "start_date": date(2025, 1, 1), "trial_end": None, "currency": "USD",
            }
        ]
    )  # fmt: skip


def test_a_change_no_proration_line_bills_is_a_missing_proration() -> None:
    assert _run_with_subs(LINES, _dated_subs()) == []
    [f] = _run_with_subs(LINES[:2], _dated_subs())  # July's invoice without the proration
    assert (f["key"], f["field"]) == ("SUB-1@2025-06-10", "proration:missing@items[I-1]")
    assert (f["expected"], f["actual"], f["amount_at_stake_minor"]) == ("1050", "0", 1050)
    assert f["currency"] == "USD"
    # not yet due before the next invoice; not due at all under none
    assert _run_with_subs(LINES[:1], _dated_subs(), INVOICES[:1]) == []
    assert _run_with_subs(LINES[:2], _dated_subs("none")) == []

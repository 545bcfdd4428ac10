"""Hypothesis strategies producing valid canonical records as plain dicts (what a mapping
hands to validation)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from hub.currency import EXPONENTS

keys = st.from_regex(r"[A-Z]{1,3}-[0-9]{1,8}", fullmatch=True)
names = st.text(
    alphabet=st.characters(categories=("L", "N", "Zs"), exclude_characters="\x00"),
    min_size=1,
    max_size=60,
).filter(lambda s: s.strip())
currencies = st.sampled_from(sorted(EXPONENTS))
minor = st.integers(min_value=0, max_value=10**12)
dates = st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31))
utc_times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2099, 1, 1), timezones=st.just(UTC)
).map(lambda d: d.isoformat())


@st.composite
def addresses(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "street": draw(names),
        "city": draw(names),
        "postal_code": draw(st.from_regex(r"[0-9A-Z]{3,8}", fullmatch=True)),
        "country": draw(st.from_regex(r"[A-Z]{2}", fullmatch=True)),
    }


@st.composite
def customers(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "hub_id": draw(keys),
        "legal_name": draw(names),
        "tax_id": draw(st.none() | st.from_regex(r"[A-Z]{2}[0-9]{8,12}", fullmatch=True)),
        "billing_address": draw(addresses()),
        "currency": draw(currencies),
        "payment_terms": draw(st.sampled_from(["net15", "net30", "net60", "due_on_receipt"])),
        "credit_limit_minor": draw(st.none() | minor),
        "status": draw(st.sampled_from(["active", "blocked", "inactive"])),
        "dunning_level": draw(st.integers(0, 4)),
        "updated_at": draw(utc_times),
    }


@st.composite
def prices(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["flat", "per_unit", "graduated", "volume", "usage"]))
    price: dict[str, Any] = {"kind": kind, "discount_bps": draw(st.integers(0, 10_000))}
    if kind in ("graduated", "volume"):
        bounds = sorted(draw(st.sets(st.integers(1, 10_000), max_size=4)))
        price["tiers"] = [
            {"up_to": b, "unit_amount_minor": draw(minor), "flat_amount_minor": draw(minor)}
            for b in bounds
        ] + [{"up_to": None, "unit_amount_minor": draw(minor)}]
    else:
        price["flat_amount_minor"] = draw(minor)
        price["unit_amount_minor"] = draw(minor)
    return price


@st.composite
def subscriptions(draw: st.DrawFn) -> dict[str, Any]:
    start = draw(dates)
    status = draw(st.sampled_from(["trialing", "active", "past_due", "paused", "canceled"]))
    n_items = draw(st.integers(1, 4))
    return {
        "hub_id": draw(keys),
        "customer_id": draw(keys),
        "currency": draw(currencies),
        "billing_period": draw(st.sampled_from(["month", "quarter", "year"])),
        "status": status,
        "start_date": start.isoformat(),
        "end_date": draw(st.none() | st.just((start + timedelta(days=365)).isoformat())),
        "trial_end": (start + timedelta(days=14)).isoformat() if status == "trialing" else None,
        "items": [
            {
                "item_id": f"I{i}",
                "sku": draw(keys),
                "quantity": draw(st.integers(0, 10_000)),
                "price": draw(prices()),
            }
            for i in range(n_items)
        ],
        "updated_at": draw(utc_times),
    }


@st.composite
def allocations(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "hub_id": draw(keys),
        "subscription_id": draw(keys),
        "subscription_item_id": draw(keys),
        "sku": draw(keys),
        "location": draw(st.from_regex(r"[A-Z0-9]{4}", fullmatch=True)),
        "quantity": draw(st.integers(1, 10_000)),
        "delivery_date": draw(dates).isoformat(),
        "status": draw(st.sampled_from(["reserved", "picked", "shipped", "released"])),
        "updated_at": draw(utc_times),
    }


@st.composite
def invoices(draw: st.DrawFn) -> dict[str, Any]:
    issue = draw(dates)
    lines = [
        {"line_no": i + 1, "sku": draw(keys), "quantity": 1, "amount_minor": draw(minor)}
        for i in range(draw(st.integers(0, 5)))
    ]
    subtotal = sum(line["amount_minor"] for line in lines)
    tax = draw(minor)
    return {
        "hub_id": draw(keys),
        "number": draw(st.from_regex(r"INV-[0-9]{6}", fullmatch=True)),
        "customer_id": draw(keys),
        "currency": draw(currencies),
        "lines": lines,
        "subtotal_minor": subtotal,
        "tax_minor": tax,
        "total_minor": subtotal + tax,
        "issue_date": issue.isoformat(),
        "due_date": (issue + timedelta(days=30)).isoformat(),
        "status": draw(st.sampled_from(["draft", "open", "paid", "void", "uncollectible"])),
        "dunning_stage": draw(st.integers(0, 4)),
        "updated_at": draw(utc_times),
    }


@st.composite
def products(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "sku": draw(keys),
        "name": draw(names),
        "sellable": draw(st.booleans()),
        "updated_at": draw(utc_times),
    }


VALID = {
    "customer": customers(),
    "subscription": subscriptions(),
    "allocation": allocations(),
    "invoice": invoices(),
    "product": products(),
}

#: Per entity, a field and values that break one rule each (the field the error must name).
INVALID: dict[str, list[tuple[str, Any]]] = {
    "customer": [
        ("currency", "XXY"),
        ("currency", "eur"),
        ("legal_name", "   "),
        ("dunning_level", 7),
        ("credit_limit_minor", -1),
        ("updated_at", "2024-01-01T00:00:00"),
        ("payment_terms", "net31"),
        ("hub_id", "x" * 65),
    ],
    "subscription": [
        ("status", "active-ish"),
        ("currency", "ABC"),
        ("start_date", "2024-13-01"),
        ("items", []),
        ("billing_period", "fortnight"),
    ],
    "allocation": [
        ("quantity", -3),
        ("quantity", 0),
        ("status", "lost"),
        ("delivery_date", "tomorrow"),
    ],
    "invoice": [
        ("tax_minor", -5),
        ("amount_paid_minor", -1),
        ("currency", "EURO"),
        ("status", "overdue"),
        ("total_minor", 1.5),
        ("dunning_stage", 9),
    ],
    "product": [("sku", ""), ("name", ""), ("updated_at", "not a date")],
}

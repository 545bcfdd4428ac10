"""Aggregate and reference checks: invoice sums, revenue leakage for every price kind
(against ``hub.model.Price.amount_minor`` itself), cross-system amounts, broken refs,
allocations and stock."""

from __future__ import annotations

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.model import Price, PriceKind, Tier
from hub.recon import checks
from hub.recon.engine import connect


def _fields(t: pa.Table) -> dict[tuple[str, str], dict[str, object]]:
    return {(r["key"], r["field"]): r for r in t.to_pylist()}


def test_invoice_sums() -> None:
    con = connect()
    inv = pa.table(
        {
            "key": ["ok", "bad_total", "bad_sub", "nolines"],
            "currency": ["EUR"] * 4,
            "subtotal_minor": [30, 30, 31, 10],
            "tax_minor": [6, 6, 6, 2],
            "total_minor": [36, 35, 37, 13],
        }
    )
    lines = pa.table(
        {
            "key": ["ok", "ok", "bad_total", "bad_sub"],
            "line_no": [1, 2, 1, 1],
            "amount_minor": [10, 20, 30, 30],
        }
    )
    got = _fields(checks.invoice_sums(con, inv, lines, system="billing"))
    assert set(got) == {
        ("bad_total", "sum:total_minor"),
        ("bad_sub", "sum:subtotal_minor"),
        ("bad_sub", "sum:total_minor"),
        ("nolines", "sum:total_minor"),
    }
    assert got[("bad_total", "sum:total_minor")]["amount_at_stake_minor"] == 1
    assert got[("nolines", "sum:total_minor")]["expected"] == "12"
    assert {r["kind"] for r in got.values()} == {"aggregate"}


_tiers = st.lists(
    st.tuples(st.integers(1, 50), st.integers(0, 500), st.integers(0, 300)), min_size=1, max_size=4
)


@st.composite
def _prices(draw: st.DrawFn) -> Price:
    kind = draw(st.sampled_from(list(PriceKind)))
    bps = draw(st.integers(0, 10_000))
    if kind in (PriceKind.GRADUATED, PriceKind.VOLUME):
        raw = draw(_tiers)
        bound, tiers = 0, []
        for i, (step, unit, flat) in enumerate(raw):
            bound += step
            last = i == len(raw) - 1
            tiers.append(
                Tier(up_to=None if last else bound, unit_amount_minor=unit, flat_amount_minor=flat)
            )
        return Price(kind=kind, tiers=tuple(tiers), discount_bps=bps)
    return Price(
        kind=kind,
        flat_amount_minor=draw(st.integers(0, 10**6)),
        unit_amount_minor=draw(st.integers(0, 10**4)),
        discount_bps=bps,
    )


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            _prices(), st.integers(0, 200), st.integers(0, 200), st.sampled_from([0, 0, 1, -7])
        ),
        min_size=1,
        max_size=12,
    )
)
def test_price_leakage_matches_the_price_model(cases: list[tuple[Price, int, int, int]]) -> None:
    """The SQL price computation equals Price.amount_minor for every kind; exactly the
    lines billed off the model are flagged, with the signed amount at stake."""
    con = connect()
    inv, lines, items, tiers, expected = [], [], [], [], {}
    for n, (price, qty, usage, error) in enumerate(cases):
        sub, key = f"sub{n}", f"inv{n}"
        q = usage if price.kind is PriceKind.USAGE else qty
        right = price.amount_minor(q)
        inv.append({"key": key, "subscription_id": sub, "currency": "EUR"})
        lines.append(
            {
                "key": key,
                "line_no": 1,
                "sku": "SKU",
                "quantity": usage,
                "amount_minor": right + error,
            }
        )
        items.append(
            {
                "key": sub,
                "item_id": "it1",
                "sku": "SKU",
                "quantity": qty,
                "kind": price.kind.value,
                "flat_amount_minor": price.flat_amount_minor,
                "unit_amount_minor": price.unit_amount_minor,
                "discount_bps": price.discount_bps,
            }
        )
        for t_no, t in enumerate(price.tiers, 1):
            tiers.append(
                {
                    "key": sub,
                    "item_id": "it1",
                    "tier_no": t_no,
                    "up_to": t.up_to,
                    "unit_amount_minor": t.unit_amount_minor,
                    "flat_amount_minor": t.flat_amount_minor,
                }
            )
        if error:
            expected[key] = -error
    tier_schema = pa.schema(
        [
            ("key", pa.string()),
            ("item_id", pa.string()),
            ("tier_no", pa.int64()),
            ("up_to", pa.int64()),
            ("unit_amount_minor", pa.int64()),
            ("flat_amount_minor", pa.int64()),
        ]
    )
    found = checks.price_leakage(
        con,
        pa.Table.from_pylist(inv),
        pa.Table.from_pylist(lines),
        pa.Table.from_pylist(items),
        pa.Table.from_pylist(tiers, tier_schema),
        system="billing",
    )
    got = {r["key"]: r["amount_at_stake_minor"] for r in found.to_pylist()}
    assert got == expected
    assert {f.split("@")[0] for f in found.column("field").to_pylist()} <= {
        "price:lines[1].amount_minor"
    }


def test_cross_system_amounts() -> None:
    con = connect()
    billing = pa.table(
        {"key": ["a", "b", "c"], "total_minor": [10, 20, 30], "currency": ["EUR"] * 3}
    )
    sap = pa.table({"key": ["a", "b"], "external_id": ["9001", "9002"], "total_minor": [10, 25]})
    got = _fields(checks.cross_system_amounts(con, billing, sap, system="sap"))
    assert list(got) == [("b", "billing:total_minor")]
    row = got[("b", "billing:total_minor")]
    assert (row["amount_at_stake_minor"], row["external_id"], row["currency"]) == (
        -5,
        "9002",
        "EUR",
    )


def test_broken_refs() -> None:
    con = connect()
    subs = pa.table({"key": ["s1", "s2"], "customer_id": ["c1", "c-gone"], "currency": ["EUR"] * 2})
    items = pa.table(
        {"key": ["s1", "s1", "s2"], "item_id": ["i1", "i2", "i1"], "sku": ["A", "OLD", "NOPE"]}
    )
    customers = pa.table({"key": ["c1"]})
    products = pa.table({"key": ["A", "OLD"]})
    pim = pa.table({"key": ["A", "OLD", "NOPE"], "lifecycle": ["active", "retired", "active"]})
    got = _fields(
        checks.broken_refs(
            con,
            subs,
            items,
            system="billing",
            customers=customers,
            products=products,
            pim_products=pim,
        )
    )
    assert set(got) == {("s2", "customer_id"), ("s1", "items[i2].sku"), ("s2", "items[i1].sku")}
    assert got[("s1", "items[i2].sku")]["expected"] == '"active"'
    assert got[("s2", "items[i1].sku")]["expected"] == '"exists"'
    assert {r["kind"] for r in got.values()} == {"broken_ref"}


def test_allocations_and_stock() -> None:
    con = connect()
    subs = pa.table({"key": ["s1", "s2"], "status": ["active", "canceled"]})
    items = pa.table(
        {"key": ["s1", "s1", "s2"], "item_id": ["i1", "i2", "i1"], "quantity": [5, 3, 4]}
    )
    alloc = pa.table(
        {
            "subscription_id": ["s1", "s1", "s1", "s1", "s2"],
            "subscription_item_id": ["i1", "i1", "i2", "i2", "i1"],
            "sku": ["A", "A", "B", "B", "A"],
            "location": ["W1"] * 5,
            "quantity": [2, 3, 2, 5, 4],
            "delivery_date": ["2024-05-01"] * 5,
            "status": ["reserved", "picked", "reserved", "released", "reserved"],
        }
    )
    stock = pa.table({"sku": ["A", "B"], "location": ["W1", "W1"], "quantity": [8, 10]})
    got = _fields(checks.allocations(con, alloc, subs, items, system="wms", stock=stock))
    assert set(got) == {
        ("s1", "allocation:items[i2]@2024-05-01.quantity"),
        ("s2", "allocation:items[i1]@2024-05-01.quantity"),
        ("A@W1", "stock:quantity"),
    }
    assert got[("s1", "allocation:items[i2]@2024-05-01.quantity")]["expected"] == "3"
    assert got[("A@W1", "stock:quantity")]["actual"] == "9"

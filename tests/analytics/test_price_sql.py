"""The SQL price engine (flat, per unit, graduated, volume, usage; discount half up) gives
exactly ``Price.amount_minor`` for any valid price and quantity, checked in one batch."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.analytics.compute import _MACROS
from hub.model import Price
from hub.recon.engine import connect

AMOUNT = st.integers(0, 10**7)


@st.composite
def prices(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["flat", "per_unit", "usage", "graduated", "volume"]))
    doc: dict[str, Any] = {"kind": kind, "discount_bps": draw(st.integers(0, 10_000))}
    if kind in ("graduated", "volume"):
        bounds = sorted(draw(st.sets(st.integers(1, 500), min_size=0, max_size=4)))
        doc["tiers"] = [
            {"up_to": b, "unit_amount_minor": draw(AMOUNT), "flat_amount_minor": draw(AMOUNT)}
            for b in [*bounds, None]
        ]
    else:
        doc["flat_amount_minor"] = draw(AMOUNT)
        doc["unit_amount_minor"] = draw(AMOUNT)
    return doc


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(prices(), st.integers(0, 2_000)), min_size=1, max_size=30))
def test_sql_amount_equals_price_amount_minor(cases: list[tuple[dict[str, Any], int]]) -> None:
    tier = pa.struct([("up_to", pa.int64()), ("unit_amount_minor", pa.int64()),
                      ("flat_amount_minor", pa.int64())])  # fmt: skip
    table = pa.table(
        {
            "n": list(range(len(cases))),
            "kind": [p["kind"] for p, _ in cases],
            "flat": [p.get("flat_amount_minor", 0) for p, _ in cases],
            "unit": [p.get("unit_amount_minor", 0) for p, _ in cases],
            "tiers": pa.array([p.get("tiers", []) for p, _ in cases], pa.list_(tier)),
            "bps": [p["discount_bps"] for p, _ in cases],
            "qty": [q for _, q in cases],
        }
    )
    con = connect()
    con.execute(_MACROS)
    con.register("cases", table)
    got = con.execute(
        "SELECT n, net_amount(gross_amount(kind, flat, unit, tiers, qty::HUGEINT), bps)::BIGINT"
        " FROM cases ORDER BY n"
    ).fetchall()
    expected = [Price.model_validate(p).amount_minor(q) for p, q in cases]
    assert [v for _, v in got] == expected

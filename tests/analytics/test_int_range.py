"""Money is computed in 64-bit integers with a 128-bit rerun when anything does not fit
(hub.analytics.compute): amounts near the 64-bit bound stay exact, and an MRR beyond it
raises a clear error. Nothing may wrap around."""

from __future__ import annotations

from datetime import date
from fractions import Fraction
from typing import Any

import pytest
from sqlalchemy import Engine

import hub.analytics.compute as compute
from hub.analytics import RateTable, metrics_from_store
from hub.model import Price
from tests.analytics.conftest import customer, price, subscription
from tests.analytics.golden import write_golden

AS_OF = date(2025, 6, 30)
BIG = 10**15  # the largest unit amount the canonical model accepts


@pytest.fixture
def attempts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The integer types each recompute tried, in order."""
    tried: list[str] = []
    run = compute._compute

    def spy(con: Any, samples: Any, as_of: date, int_type: str) -> Any:
        tried.append(int_type)
        return run(con, samples, as_of, int_type)

    monkeypatch.setattr(compute, "_compute", spy)
    return tried


def _write(engine: Engine, customers: list[dict[str, Any]], subs: list[dict[str, Any]],
           invoices: list[dict[str, Any]] | None = None) -> None:  # fmt: skip
    write_golden(engine, "customer", customers)
    write_golden(engine, "subscription", subs)
    write_golden(engine, "invoice", invoices or [])


def test_a_price_beyond_64_bits_stays_exact(store: tuple[str, Engine], attempts: list[str]) -> None:
    """10**15 x 10**9 units (10**24 gross, beyond 64 bits) at a 100 % discount is 0."""
    free = price("per_unit", unit_amount_minor=BIG, discount_bps=10_000)
    seat = price("per_unit", unit_amount_minor=1000)
    assert Price.model_validate(free).amount_minor(10**9) == 0
    sub = subscription("SUB-X", "CUS-X", "USD", "2024-01-01",
                       [("HUGE", 10**9, free), ("SEAT", 3, seat)])  # fmt: skip
    _write(store[1], [customer("CUS-X", "USD")], [sub])
    m = metrics_from_store(store[1], AS_OF, months=3, reporting="USD")
    assert [(r["customer_id"], r["mrr_minor"]) for r in m.customer_mrr.to_pylist()] == [
        ("CUS-X", 3000)
    ]
    assert m.summary["mrr_rep"] == 3000 and m.identity_errors() == []
    assert attempts == ["BIGINT", "HUGEINT"]


def test_a_conversion_beyond_64_bits_stays_exact(
    store: tuple[str, Engine], attempts: list[str]
) -> None:
    """4 x 10**17 EUR a month fits 64 bits; times the EUR -> USD numerator it does not."""
    rates = RateTable.load()
    mrr = 400 * BIG
    assert mrr * rates.factor("EUR", "USD").numerator > 2**63 - 1
    sub = subscription("SUB-E", "CUS-E", "EUR", "2024-01-01",
                       [("SEAT", 400, price("per_unit", unit_amount_minor=BIG))])  # fmt: skip
    _write(store[1], [customer("CUS-E", "EUR")], [sub])  # no invoice: priced at 4 x 10**17
    m = metrics_from_store(store[1], AS_OF, months=3, reporting="USD", rates=rates)
    rows = m.customer_mrr.to_pylist()
    assert [(r["mrr_minor"], r["mrr_rep"]) for r in rows] == [
        (mrr, rates.convert_minor(mrr, "EUR", "USD"))
    ]
    assert m.summary["mrr_rep"] == rates.convert_minor(mrr, "EUR", "USD")
    assert m.identity_errors() == []
    assert attempts == ["BIGINT", "HUGEINT"]


def test_a_rate_beyond_64_bits_stays_exact(store: tuple[str, Engine], attempts: list[str]) -> None:
    """A rate with many decimals: its exact fraction's terms exceed 64 bits."""
    rates = RateTable({"USD": Fraction(1), "EUR": Fraction("0.9234567890123456789")}, "test")
    assert rates.factor("EUR", "USD").numerator > 2**63 - 1
    sub = subscription("SUB-E", "CUS-E", "EUR", "2024-01-01",
                       [("SEAT", 7, price("per_unit", unit_amount_minor=123_457))])  # fmt: skip
    _write(store[1], [customer("CUS-E", "EUR")], [sub])
    m = metrics_from_store(store[1], AS_OF, months=3, reporting="USD", rates=rates)
    expected = rates.convert_minor(7 * 123_457, "EUR", "USD")
    assert [r["mrr_rep"] for r in m.customer_mrr.to_pylist()] == [expected]
    assert m.movements.to_pylist()[-1]["closing"] == expected
    assert m.identity_errors() == []
    assert attempts == ["HUGEINT"]  # the factors alone do not fit: straight to 128 bits


def test_an_mrr_beyond_64_bits_raises_a_clear_error(
    store: tuple[str, Engine], attempts: list[str]
) -> None:
    """10**15 x 10**4 = 10**19 minor units a month cannot be reported in 64 bits."""
    sub = subscription("SUB-Y", "CUS-Y", "USD", "2024-01-01",
                       [("SEAT", 10**4, price("per_unit", unit_amount_minor=BIG))])  # fmt: skip
    _write(store[1], [customer("CUS-Y", "USD")], [sub])
    with pytest.raises(OverflowError, match="64-bit range of integer minor units"):
        metrics_from_store(store[1], AS_OF, months=3, reporting="USD")
    assert attempts == ["BIGINT", "HUGEINT"]


def test_everyday_amounts_stay_in_64_bits(store: tuple[str, Engine], attempts: list[str]) -> None:
    sub = subscription("SUB-S", "CUS-S", "USD", "2024-01-01",
                       [("SEAT", 3, price("per_unit", unit_amount_minor=1000))])  # fmt: skip
    _write(store[1], [customer("CUS-S", "USD")], [sub])
    assert metrics_from_store(store[1], AS_OF, months=3, reporting="USD").summary["mrr_rep"] == 3000
    assert attempts == ["BIGINT"]

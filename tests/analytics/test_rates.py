"""Exact conversion into the reporting currency: fractions from decimal strings, minor-unit
exponents folded in, one half-to-even rounding; missing currencies are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.analytics.rates import RatesError, RateTable, half_even_div, reporting_currency


def test_half_even_div() -> None:
    assert [half_even_div(n, 2) for n in (1, 3, 5, -1, -3, 4)] == [0, 2, 2, 0, -2, 2]
    assert half_even_div(2742 * 31, 17) == 5000
    with pytest.raises(ValueError):
        half_even_div(1, 0)


def test_shipped_table_converts_across_exponents() -> None:
    rates = RateTable.load()
    assert rates.convert_minor(20_000, "EUR", "USD") == 21_739  # 200 EUR / 0.92
    assert rates.convert_minor(15_000, "JPY", "USD") == 10_000  # JPY has no minor unit
    assert rates.convert_minor(307, "KWD", "USD") == 100  # 0.307 KWD = 1 USD, 3 decimals
    assert rates.convert_minor(100, "USD", "JPY") == 150
    assert rates.convert_minor(10_000, "GBP", "EUR") == 11_646  # 10000 x 0.92 / 0.79
    assert rates.convert_minor(5, "USD", "USD") == 5


def test_missing_currency_is_named(tmp_path: Path) -> None:
    file = tmp_path / "rates.yaml"
    file.write_text('rates:\n  USD: "1"\n  EUR: "0.9"\n')
    rates = RateTable.load(file)
    with pytest.raises(RatesError, match="GBP"):
        rates.factors(["USD", "GBP"], "USD")
    file.write_text('rates:\n  XXX: "1"\n')
    with pytest.raises(RatesError, match=r"rates\.XXX"):
        RateTable.load(file)
    file.write_text('rates:\n  USD: "-1"\n')
    with pytest.raises(RatesError, match="positive"):
        RateTable.load(file)


def test_reporting_currency_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HUB_REPORTING_CURRENCY", raising=False)
    assert reporting_currency() == "USD"
    monkeypatch.setenv("HUB_REPORTING_CURRENCY", "eur")
    assert reporting_currency() == "EUR"
    monkeypatch.setenv("HUB_REPORTING_CURRENCY", "EURO")
    with pytest.raises(RatesError):
        reporting_currency()

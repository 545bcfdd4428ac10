"""The reporting currency and the rate table that converts every currency into it.

Money stays integer minor units in its own currency through every aggregation; the one
conversion is ``minor * num // den`` with an exact fraction per currency (rates are
decimal strings, turned into :class:`~fractions.Fraction`, never floats) and one rounding,
half to even, to the reporting currency's minor unit. The fraction already folds in the
difference of minor-unit exponents (JPY 0, EUR 2, KWD 3).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path

import pyarrow as pa
import yaml

from hub import yamlio
from hub.currency import exponent, is_currency

RATES_FILE = Path(__file__).with_name("rates.yaml")
DEFAULT_REPORTING = "USD"


class RatesError(ValueError):
    """The rate table is unreadable, or lacks a currency the data needs."""


def reporting_currency() -> str:
    """``HUB_REPORTING_CURRENCY`` (default USD), validated as ISO 4217."""
    code = os.environ.get("HUB_REPORTING_CURRENCY", "").strip().upper() or DEFAULT_REPORTING
    if not is_currency(code):
        raise RatesError(f"HUB_REPORTING_CURRENCY={code!r} is not an ISO 4217 currency")
    return code


def rates_path() -> Path:
    """``HUB_ANALYTICS_RATES`` or the table shipped next to this module."""
    env = os.environ.get("HUB_ANALYTICS_RATES", "").strip()
    return Path(env) if env else RATES_FILE


def half_even_div(num: int, den: int) -> int:
    """``num / den`` rounded half to even (``den`` > 0), in integers only."""
    if den <= 0:
        raise ValueError("denominator must be positive")
    q, r = divmod(num, den)  # floor division: 0 <= r < den
    if 2 * r > den or (2 * r == den and q % 2):
        q += 1
    return q


@dataclass(frozen=True)
class RateTable:
    """Units of each currency per one USD, exact."""

    per_usd: dict[str, Fraction]
    source: str = ""

    @classmethod
    def load(cls, path: Path | str | None = None) -> RateTable:
        file = Path(path) if path else rates_path()
        try:
            doc = yamlio.load(file.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise RatesError(f"{file}: cannot read the rate table: {exc}") from None
        raw = doc.get("rates") if isinstance(doc, dict) else None
        if not isinstance(raw, dict) or not raw:
            raise RatesError(f"{file}: expected a mapping 'rates: {{CODE: \"units per USD\"}}'")
        rates: dict[str, Fraction] = {}
        for code, value in raw.items():
            if not is_currency(code):
                raise RatesError(f"{file}: rates.{code}: not an ISO 4217 currency")
            try:
                dec = Decimal(str(value))
            except InvalidOperation:
                raise RatesError(f"{file}: rates.{code}: not a decimal: {value!r}") from None
            if not dec.is_finite() or dec <= 0:
                raise RatesError(f"{file}: rates.{code}: must be a positive number")
            rates[code] = Fraction(dec)
        return cls(rates, str(file))

    def factor(self, currency: str, reporting: str) -> Fraction:
        """Reporting minor units per one minor unit of ``currency``."""
        missing = [c for c in (currency, reporting) if c not in self.per_usd]
        if missing:
            raise RatesError(
                f"no conversion rate for {', '.join(missing)} in {self.source or 'the table'}"
            )
        ratio = self.per_usd[reporting] / self.per_usd[currency]
        return ratio * Fraction(10) ** (exponent(reporting) - exponent(currency))

    def convert_minor(self, amount_minor: int, currency: str, reporting: str) -> int:
        """One amount converted and rounded half to even (the SQL does the same)."""
        f = self.factor(currency, reporting)
        return half_even_div(amount_minor * f.numerator, f.denominator)

    def factors(self, currencies: list[str], reporting: str) -> pa.Table:
        """``(currency, num, den)`` for every currency in the data; raises naming every
        currency the table lacks, so a report never silently leaves revenue out."""
        missing = sorted({c for c in currencies if c not in self.per_usd})
        if reporting not in self.per_usd:
            missing.append(reporting)
        if missing:
            raise RatesError(
                f"no conversion rate for {', '.join(missing)} in {self.source or 'the table'}"
                " (add them under 'rates:')"
            )
        rows = [(c, self.factor(c, reporting)) for c in sorted(set(currencies))]
        return pa.table(
            {
                "currency": pa.array([c for c, _ in rows], pa.string()),
                "num": pa.array([str(f.numerator) for _, f in rows], pa.string()),
                "den": pa.array([str(f.denominator) for _, f in rows], pa.string()),
            }
        )

"""Money as integer minor units plus an ISO 4217 currency.

Floats never touch money: systems that speak decimals (Salesforce currency fields, SAP
Edm.Decimal) are converted with :meth:`Money.from_decimal`, which refuses amounts finer
than the currency's exponent instead of rounding them away silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from hub.currency import exponent


def minor_units(amount: Decimal | str | int, currency: str, *, rounding: str | None = None) -> int:
    """:meth:`Money.from_decimal`'s amount alone: what a mapping reads for every amount of
    every record, without a Money object made and checked around it."""
    try:
        value = Decimal(amount) if not isinstance(amount, Decimal) else amount
    except InvalidOperation:
        raise PrecisionError(f"not a decimal amount: {amount!r}") from None
    if not value.is_finite():
        raise PrecisionError(f"not a finite amount: {amount!r}")
    places = exponent(currency)
    scaled = value.scaleb(places)
    integral = scaled.to_integral_value(rounding=rounding or ROUND_HALF_EVEN)
    if rounding is None and integral != scaled:
        raise PrecisionError(f"{amount} {currency} has more than {places} decimal places")
    return int(integral)


class CurrencyMismatchError(ValueError):
    """Arithmetic between two different currencies."""


class PrecisionError(ValueError):
    """A decimal amount has more fractional digits than its currency allows."""


@dataclass(frozen=True, slots=True, order=False)
class Money:
    amount_minor: int
    currency: str

    def __post_init__(self) -> None:
        if isinstance(self.amount_minor, bool) or not isinstance(self.amount_minor, int):
            raise TypeError(f"amount_minor must be int, got {type(self.amount_minor).__name__}")
        exponent(self.currency)  # validates the code

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)

    @classmethod
    def from_decimal(
        cls, amount: Decimal | str | int, currency: str, *, rounding: str | None = None
    ) -> Money:
        """Decimal major units -> minor units. Without ``rounding`` an amount finer than the
        currency's exponent raises :class:`PrecisionError` (e.g. 1.005 EUR)."""
        return cls(minor_units(amount, currency, rounding=rounding), currency)

    def to_decimal(self) -> Decimal:
        """Exact major-unit value (e.g. Money(1050, 'EUR') -> Decimal('10.50'))."""
        exp = exponent(self.currency)
        return Decimal(self.amount_minor).scaleb(-exp).quantize(Decimal(1).scaleb(-exp))

    def _check(self, other: Money) -> None:
        if not isinstance(other, Money):
            raise TypeError(f"cannot combine Money with {type(other).__name__}")
        if other.currency != self.currency:
            raise CurrencyMismatchError(f"{self.currency} and {other.currency} cannot be combined")

    def __add__(self, other: Money) -> Money:
        self._check(other)
        return Money(self.amount_minor + other.amount_minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._check(other)
        return Money(self.amount_minor - other.amount_minor, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount_minor, self.currency)

    def __mul__(self, factor: int) -> Money:
        if isinstance(factor, bool) or not isinstance(factor, int):
            raise TypeError("Money can only be multiplied by an int (use allocate for shares)")
        return Money(self.amount_minor * factor, self.currency)

    __rmul__ = __mul__

    def __lt__(self, other: Money) -> bool:
        self._check(other)
        return self.amount_minor < other.amount_minor

    def __le__(self, other: Money) -> bool:
        self._check(other)
        return self.amount_minor <= other.amount_minor

    def allocate(self, ratios: Sequence[int]) -> list[Money]:
        """Split by integer ratios so the parts sum exactly to the whole (largest remainder).

        Used for proration and tax spreading, where rounding each part separately would
        leak or invent a cent."""
        if not ratios or any(r < 0 for r in ratios) or sum(ratios) == 0:
            raise ValueError("ratios must be non-negative with a positive sum")
        total = sum(ratios)
        sign = -1 if self.amount_minor < 0 else 1
        amount = abs(self.amount_minor)
        shares = [amount * r // total for r in ratios]
        remainders = sorted(range(len(ratios)), key=lambda i: (-(amount * ratios[i] % total), i))
        for i in remainders[: amount - sum(shares)]:
            shares[i] += 1
        return [Money(sign * s, self.currency) for s in shares]

    def __str__(self) -> str:
        return f"{self.to_decimal()} {self.currency}"


def total(amounts: Sequence[Money], currency: str) -> Money:
    """Sum in one currency (an empty sequence is zero in that currency)."""
    result = Money.zero(currency)
    for amount in amounts:
        result = result + amount
    return result

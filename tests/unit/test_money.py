from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.currency import EXPONENTS, UnknownCurrencyError, exponent
from hub.money import CurrencyMismatchError, Money, PrecisionError, minor_units, total

currencies = st.sampled_from(sorted(EXPONENTS))
amounts = st.integers(min_value=-(10**15), max_value=10**15)


@st.composite
def monies(draw: st.DrawFn, currency: str | None = None) -> Money:
    return Money(draw(amounts), currency or draw(currencies))


def test_exponents_follow_iso_4217() -> None:
    assert (exponent("JPY"), exponent("EUR"), exponent("KWD"), exponent("CLF")) == (0, 2, 3, 4)
    with pytest.raises(UnknownCurrencyError, match="'XXY'"):
        exponent("XXY")


def test_from_decimal_respects_exponent() -> None:
    assert Money.from_decimal("1234", "JPY") == Money(1234, "JPY")
    assert Money.from_decimal("12.345", "KWD") == Money(12345, "KWD")
    assert Money.from_decimal(Decimal("10.5"), "EUR") == Money(1050, "EUR")
    with pytest.raises(PrecisionError, match="more than 0 decimal places"):
        Money.from_decimal("12.5", "JPY")
    with pytest.raises(PrecisionError):
        Money.from_decimal("1.005", "EUR")
    assert Money.from_decimal("1.005", "EUR", rounding="ROUND_HALF_UP") == Money(101, "EUR")
    with pytest.raises(PrecisionError):
        Money.from_decimal("NaN", "EUR")


def test_money_refuses_floats_and_unknown_currencies() -> None:
    with pytest.raises(TypeError):
        Money(1.5, "EUR")  # type: ignore[arg-type]
    with pytest.raises(UnknownCurrencyError):
        Money(1, "EURO")
    with pytest.raises(TypeError):
        Money(1, "EUR") * 1.5  # type: ignore[operator]


@given(currencies.flatmap(lambda c: st.tuples(monies(c), monies(c), monies(c))))
def test_addition_is_commutative_and_associative(triple: tuple[Money, Money, Money]) -> None:
    a, b, c = triple
    assert a + b == b + a
    assert (a + b) + c == a + (b + c)
    assert a - a == Money.zero(a.currency)
    assert (a + (-a)).amount_minor == 0


@given(monies(), monies())
def test_mixing_currencies_is_refused(a: Money, b: Money) -> None:
    if a.currency == b.currency:
        assert (a + b).amount_minor == a.amount_minor + b.amount_minor
    else:
        with pytest.raises(CurrencyMismatchError):
            _ = a + b


@given(monies())
def test_decimal_round_trip_is_exact(m: Money) -> None:
    assert Money.from_decimal(m.to_decimal(), m.currency) == m
    assert m.to_decimal().as_tuple().exponent == -exponent(m.currency)


@given(monies(), st.lists(st.integers(min_value=0, max_value=1000), min_size=1, max_size=12))
def test_allocate_never_leaks_or_invents_a_minor_unit(m: Money, ratios: list[int]) -> None:
    if sum(ratios) == 0:
        with pytest.raises(ValueError):
            m.allocate(ratios)
        return
    parts = m.allocate(ratios)
    assert total(parts, m.currency) == m
    for part, ratio in zip(parts, ratios, strict=True):
        exact = Decimal(m.amount_minor) * ratio / sum(ratios)
        assert abs(Decimal(part.amount_minor) - exact) < 1


@given(monies(), st.integers(min_value=-1000, max_value=1000))
def test_multiplication_by_quantity_distributes(m: Money, q: int) -> None:
    assert (m * q).amount_minor == m.amount_minor * q
    assert q * m == m * q


@given(st.integers(-(10**15), 10**15), st.sampled_from(sorted(EXPONENTS)))
def test_minor_units_reads_an_amount_as_money_does(minor: int, currency: str) -> None:
    """What the mapping reads for every amount (no Money object) is Money's reading."""
    major = Decimal(minor).scaleb(-exponent(currency))
    assert minor_units(major, currency) == minor == Money.from_decimal(major, currency).amount_minor


def test_minor_units_refuses_what_money_refuses() -> None:
    with pytest.raises(PrecisionError, match="more than 2 decimal places"):
        minor_units(Decimal("1.005"), "EUR")
    with pytest.raises(PrecisionError, match="not a finite amount"):
        minor_units(Decimal("NaN"), "EUR")
    with pytest.raises(UnknownCurrencyError):
        minor_units(Decimal("1"), "XXY")

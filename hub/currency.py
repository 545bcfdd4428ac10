"""ISO 4217 currencies and their minor-unit exponents.

The exponent decides how many minor units make one major unit (JPY 0, EUR 2, KWD 3), so
every conversion between a system's decimal amount and the hub's integer minor units goes
through :func:`exponent`. Kept as data here rather than a dependency because the table is
small, stable and must not change under us between releases.
"""

from __future__ import annotations

_ZERO = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_THREE = "BHD IQD JOD KWD LYD OMR TND"
_FOUR = "CLF UYW"
_TWO = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN "
    "BWP BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB "
    "EUR FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS "
    "KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN "
    "MXV MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD "
    "SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS "
    "UAH USD USN UYU UZS VED VES WST XCD XCG YER ZAR ZMW ZWG"
)

EXPONENTS: dict[str, int] = {
    **dict.fromkeys(_TWO.split(), 2),
    **dict.fromkeys(_ZERO.split(), 0),
    **dict.fromkeys(_THREE.split(), 3),
    **dict.fromkeys(_FOUR.split(), 4),
}


class UnknownCurrencyError(ValueError):
    """A code that is not an active ISO 4217 currency."""

    def __init__(self, code: object) -> None:
        super().__init__(f"unknown ISO 4217 currency {code!r}")
        self.code = code


def is_currency(code: object) -> bool:
    return isinstance(code, str) and code in EXPONENTS


def exponent(code: str) -> int:
    """Minor-unit exponent of an ISO 4217 currency; raises for unknown codes."""
    try:
        return EXPONENTS[code]
    except (KeyError, TypeError):
        raise UnknownCurrencyError(code) from None

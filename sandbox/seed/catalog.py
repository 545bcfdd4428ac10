"""The sandbox's product catalogue, list prices and the regional data customers draw on.

Fixed data, not random: the same SKUs exist whatever the seed, so tests and docs can name
them. List prices are kept in USD cents and converted to each currency with an integer
ratio (never a float), so every currency's catalogue is exact and reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from hub.currency import exponent

#: The book's "today": every date in the book is relative to it, so a seed means the same
#: book whatever day it is generated on.
AS_OF = date(2025, 6, 30)
AS_OF_TS = datetime(2025, 6, 30, 18, 0, tzinfo=UTC)
CATALOG_TS = datetime(2024, 1, 15, 9, 0, tzinfo=UTC)

PHYSICAL_FAMILIES = frozenset({"hardware", "consumables"})


@dataclass(frozen=True)
class ProductSpec:
    sku: str
    name: str
    family: str
    unit: str
    kind: str  # canonical PriceKind value
    flat_usd_cents: int = 0
    unit_usd_cents: int = 0
    tiers_usd: tuple[tuple[int | None, int, int], ...] = ()  # (up_to, unit, flat) in cents
    sellable: bool = True
    weight: int = 10  # how often it is sold, relative to the others
    qty: tuple[int, int] = (1, 1)  # smb quantity range; bigger segments scale it

    @property
    def physical(self) -> bool:
        return self.family in PHYSICAL_FAMILIES


PRODUCTS: tuple[ProductSpec, ...] = (
    ProductSpec("PLAT-CORE", "Platform Core", "software", "EA", "flat", flat_usd_cents=49_900,
                weight=30),
    ProductSpec("SEAT-STD", "Standard Seat", "software", "SEAT", "per_unit",
                unit_usd_cents=2_900, weight=40, qty=(3, 40)),
    ProductSpec("SEAT-PRO", "Professional Seat", "software", "SEAT", "per_unit",
                unit_usd_cents=5_900, weight=25, qty=(2, 25)),
    ProductSpec("SEAT-ENT", "Enterprise Seat", "software", "SEAT", "per_unit",
                unit_usd_cents=9_900, weight=10, qty=(5, 60)),
    ProductSpec("API-CALLS-1K", "API Calls (per 1,000)", "usage", "1K", "usage",
                unit_usd_cents=45, weight=20, qty=(50, 2_000)),
    ProductSpec("TRAIN-CRED", "Training Credits", "services", "CREDIT", "usage",
                unit_usd_cents=12_000, weight=5, qty=(0, 6)),
    ProductSpec("STOR-TB", "Managed Storage (TB)", "software", "TB", "graduated",
                tiers_usd=((10, 2_500, 0), (50, 2_000, 0), (None, 1_500, 0)), weight=15,
                qty=(1, 30)),
    ProductSpec("SMS-PACK", "SMS Notifications (per 100)", "usage", "100", "volume",
                tiers_usd=((100, 300, 0), (1_000, 250, 0), (None, 200, 0)), weight=10,
                qty=(20, 1_500)),
    ProductSpec("SUPPORT-PREM", "Premium Support", "services", "EA", "flat",
                flat_usd_cents=99_000, weight=12),
    ProductSpec("ANALYTICS", "Analytics Add-on", "software", "SEAT", "per_unit",
                unit_usd_cents=1_500, flat_usd_cents=10_000, weight=12, qty=(3, 40)),
    ProductSpec("DEV-SCAN-200", "Handheld Scanner HS-200", "hardware", "EA", "per_unit",
                unit_usd_cents=3_900, weight=10, qty=(1, 12)),
    ProductSpec("DEV-PRINT-LBL", "Label Printer LP-4", "hardware", "EA", "per_unit",
                unit_usd_cents=2_500, weight=8, qty=(1, 6)),
    ProductSpec("DEV-GW-5G", "5G Gateway GW-5", "hardware", "EA", "per_unit",
                unit_usd_cents=7_500, weight=6, qty=(1, 4)),
    ProductSpec("CONS-LBL-ROLL", "Label Rolls (box)", "consumables", "BOX", "volume",
                tiers_usd=((50, 1_200, 0), (200, 1_000, 0), (None, 800, 0)), weight=8,
                qty=(2, 40)),
    ProductSpec("CONS-RIBBON", "Thermal Ribbon", "consumables", "EA", "per_unit",
                unit_usd_cents=900, weight=5, qty=(2, 30)),
    ProductSpec("SENSOR-TEMP", "Cold-chain Temperature Sensor", "hardware", "EA", "graduated",
                tiers_usd=((20, 1_500, 5_000), (100, 1_200, 0), (None, 900, 0)), weight=6,
                qty=(5, 80)),
    # Sold to a deterministic handful of customers only: the planted drift retires it in
    # the PIM while it is still subscribed (see sandbox.seed.drift).
    ProductSpec("DEV-SCAN-100", "Handheld Scanner HS-100", "hardware", "EA", "per_unit",
                unit_usd_cents=2_900, weight=0, qty=(1, 5)),
    # Retired long ago and no longer sold: present in every system, subscribed by nobody.
    ProductSpec("SEAT-LEGACY", "Legacy Seat (v1)", "software", "SEAT", "per_unit",
                unit_usd_cents=1_900, sellable=False, weight=0),
)  # fmt: skip

PRODUCTS_BY_SKU = {p.sku: p for p in PRODUCTS}
NICHE_SKU = "DEV-SCAN-100"
NICHE_EVERY = 211  # customers i with i % NICHE_EVERY == NICHE_OFFSET get the niche SKU
NICHE_OFFSET = 7


@dataclass(frozen=True)
class Region:
    country: str
    currency: str
    tax_bps: int  # VAT / sales tax in basis points
    cities: tuple[tuple[str, str, str | None], ...]  # (city, postal code stem, region)
    suffixes: tuple[str, ...]
    warehouse: str  # WMS location = SAP plant code (4 characters)
    weight: int
    tax_id_format: str  # "D" -> a digit; anything else is literal


REGIONS: tuple[Region, ...] = (
    Region("US", "USD", 725, (("San Francisco", "941", "CA"), ("Austin", "787", "TX"),
           ("New York", "100", "NY"), ("Chicago", "606", "IL"), ("Seattle", "981", "WA")),
           ("Inc.", "LLC", "Corp."), "US01", 36, "DD-DDDDDDD"),
    Region("DE", "EUR", 1900, (("Berlin", "101", None), ("München", "803", "BY"),
           ("Hamburg", "204", None), ("Köln", "506", "NW")), ("GmbH", "AG", "SE"),
           "DE01", 12, "DEDDDDDDDDD"),
    Region("FR", "EUR", 2000, (("Paris", "750", None), ("Lyon", "690", None),
           ("Toulouse", "310", None)), ("SAS", "SA", "SARL"), "DE01", 7, "FRDDDDDDDDDDD"),
    Region("NL", "EUR", 2100, (("Amsterdam", "101", None), ("Utrecht", "351", None)),
           ("B.V.", "N.V."), "NL01", 5, "NLDDDDDDDDDB01"),
    Region("GB", "GBP", 2000, (("London", "EC1", None), ("Manchester", "M1 ", None),
           ("Leeds", "LS1", None)), ("Ltd", "PLC"), "GB01", 10, "GBDDDDDDDDD"),
    Region("JP", "JPY", 1000, (("Tokyo", "100", None), ("Osaka", "530", None)),
           ("K.K.", "G.K."), "JP01", 8, "TDDDDDDDDDDDDD"),
    Region("CA", "CAD", 500, (("Toronto", "M5V", "ON"), ("Vancouver", "V6B", "BC")),
           ("Inc.", "Ltd."), "CA01", 6, "DDDDDDDDDRT0001"),
    Region("AU", "AUD", 1000, (("Sydney", "200", "NSW"), ("Melbourne", "300", "VIC")),
           ("Pty Ltd",), "AU01", 5, "DD DDD DDD DDD"),
    Region("CH", "CHF", 810, (("Zürich", "80", None), ("Basel", "40", None)),
           ("AG", "GmbH", "SA"), "DE01", 4, "CHE-DDD.DDD.DDD MWST"),
    Region("SE", "SEK", 2500, (("Stockholm", "111", None), ("Göteborg", "411", None)),
           ("AB",), "DE01", 4, "SEDDDDDDDDDD01"),
    Region("KW", "KWD", 0, (("Kuwait City", "130", None),), ("W.L.L.", "K.S.C."),
           "AE01", 1, ""),
)  # fmt: skip

#: USD cents -> currency minor units as an exact integer ratio (numerator, denominator).
FX: dict[str, tuple[int, int]] = {
    "USD": (1, 1),
    "EUR": (92, 100),
    "GBP": (79, 100),
    "JPY": (150, 100),  # 1 USD = 150 JPY; JPY has no minor unit
    "CAD": (136, 100),
    "AUD": (152, 100),
    "CHF": (88, 100),
    "SEK": (1050, 100),
    "KWD": (307, 100),  # 1 USD = 0.307 KWD = 307 fils; KWD has three decimals
}

PERIOD_FACTOR = {"month": (1, 1), "quarter": (291, 100), "year": (1080, 100)}


def convert(usd_cents: int, currency: str, period: str = "month") -> int:
    """A USD-cent list price in ``currency`` minor units for one ``period`` (quarterly and
    annual prices carry a prepayment discount), rounded to a 'nice' step."""
    num, den = FX[currency]
    pnum, pden = PERIOD_FACTOR[period]
    raw = usd_cents * num * pnum // (den * pden)
    step = 10 ** max(exponent(currency) - 1, 0) if raw >= 1_000 else 1
    return max(raw // step * step, 1 if usd_cents else 0)


def list_price(spec: ProductSpec, currency: str, period: str) -> dict[str, Any]:
    """The catalogue price of ``spec`` as canonical Price fields (no discount). A usage
    price is a unit price, the same for every billing period (usage is billed in arrears
    as metered, however long the period); the others are per period."""
    if spec.kind == "usage":
        period = "month"
    tiers = [
        {
            "up_to": up_to,
            "unit_amount_minor": convert(unit, currency, period),
            "flat_amount_minor": convert(flat, currency, period),
        }
        for up_to, unit, flat in spec.tiers_usd
    ]
    return {
        "kind": spec.kind,
        "flat_amount_minor": convert(spec.flat_usd_cents, currency, period),
        "unit_amount_minor": convert(spec.unit_usd_cents, currency, period),
        "tiers": tiers,
        "discount_bps": 0,
    }


def canonical_products() -> list[dict[str, Any]]:
    """Every SKU as a canonical product record, in SKU order."""
    return [
        {
            "sku": p.sku,
            "name": p.name,
            "sellable": p.sellable,
            "lifecycle": "active" if p.sellable else "retired",
            "unit": p.unit,
            "family": p.family,
            "updated_at": CATALOG_TS,
        }
        for p in sorted(PRODUCTS, key=lambda p: p.sku)
    ]

"""Settings of the SAP emulator, with sandbox defaults (the values ``hub sandbox up``
writes to sandbox.env as SAP_USER / SAP_PASSWORD / SAP_CLIENT)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from sandbox.sap.events import EventSettings

CURRENCIES = [
    "EUR",
    "USD",
    "GBP",
    "CHF",
    "JPY",
    "CAD",
    "AUD",
    "NZD",
    "SEK",
    "NOK",
    "DKK",
    "PLN",
    "CZK",
    "HUF",
    "CNY",
    "INR",
    "BRL",
    "MXN",
    "SGD",
    "HKD",
    "ZAR",
]
PAYMENT_TERMS = [
    "0001",
    "0002",
    "0004",
    "NT00",
    "NT15",
    "NT30",
    "NT45",
    "NT60",
    "NT90",
    "Z000",
    "Z014",
    "Z030",
    "Z045",
    "Z060",
    "Z090",
]
COUNTRIES = [
    "DE",
    "US",
    "GB",
    "FR",
    "IT",
    "ES",
    "NL",
    "BE",
    "AT",
    "CH",
    "SE",
    "NO",
    "DK",
    "FI",
    "PL",
    "CZ",
    "IE",
    "PT",
    "CA",
    "AU",
    "NZ",
    "JP",
    "CN",
    "IN",
    "BR",
    "MX",
    "SG",
    "ZA",
]


class SapSettings(BaseModel):
    user: str = "HUB_SANDBOX"
    password: str = "sandbox-password"  # noqa: S105 - sandbox default, documented
    client: str = "100"
    system_id: str = "S4H"
    page_size: int = Field(default=1000, ge=1, description="server page without $top")
    max_page_size: int = Field(default=5000, ge=1, description="server page with $top")
    #: the name of the hub id's key-user extension field (the connector's SAP_HUB_ID_FIELD)
    hub_id_field: str = Field(default="YY1_HubId", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
    require_if_match: bool = True
    check_references: bool = True
    code_lists: dict[str, list[str]] = Field(
        default_factory=lambda: {
            "currency": list(CURRENCIES),
            "payment_terms": list(PAYMENT_TERMS),
            "country": list(COUNTRIES),
            "clearing_status": ["", "A", "B", "C"],
            "billing_frequency": ["", "MONTHLY", "QUARTERLY", "SEMIANNUAL", "ANNUAL"],
            "movement_type": ["201", "221", "261", "281", "311", "601"],
        }
    )
    #: business events (CloudEvents) POSTed to subscribers after each committed write
    events: EventSettings = Field(default_factory=EventSettings)

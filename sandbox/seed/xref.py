"""Every system's own id for a book record, derived from the hub id alone.

The seed writes each system separately, but the systems must already agree on each
other's numbers (billing keeps the SAP customer number and the Salesforce account id, as
if the hub had synced them). Deriving every external id from the hub id, with no counter,
makes that agreement automatic and lets the drift planter find a record in any system
without a lookup.
"""

from __future__ import annotations

_SF_CHECKSUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def customer_index(hub_id: str) -> int:
    """``CUS-0000042`` -> 41 (also works for subscription, invoice and allocation ids)."""
    return int(hub_id.split("-")[1]) - 1


def salesforce_id(prefix: str, number: int) -> str:
    """A valid 18-character Salesforce id: key prefix, pod, number, case-safe checksum."""
    short = f"{prefix}5g{number:010d}"
    suffix = ""
    for chunk in (short[0:5], short[5:10], short[10:15]):
        bits = sum(1 << i for i, ch in enumerate(chunk) if ch.isupper())
        suffix += _SF_CHECKSUM[bits]
    return short + suffix


def salesforce_account_id(hub_id: str) -> str:
    return salesforce_id("001", customer_index(hub_id) + 1)


def sap_customer_number(hub_id: str) -> str:
    """SAP customer / business partner number: numeric, at most 10 characters."""
    return str(1_000_000 + customer_index(hub_id) + 1)


def _invoice_parts(hub_id: str) -> tuple[int, int, int]:
    _, customer, k, n = hub_id.split("-")
    return int(customer), int(k), int(n)


def sap_billing_document(hub_id: str) -> str:
    """SAP billing document number (10 digits, 9xxxxxxxxx range) for an invoice."""
    customer, k, n = _invoice_parts(hub_id)
    return f"9{customer % 1_000_000:06d}{k % 10}{n % 100:02d}"


def salesforce_invoice_number(hub_id: str) -> int:
    customer, k, n = _invoice_parts(hub_id)
    return customer * 1_000 + k * 100 + n


def salesforce_invoice_id(hub_id: str) -> str:
    """The Invoice__c id (``a0I``) billing keeps for an invoice."""
    return salesforce_id("a0I", salesforce_invoice_number(hub_id))


def wms_allocation_id(hub_id: str) -> str:
    """The WMS's own allocation id (``ALC-0000042-1-2-20250601`` -> ``WA0000042120250601``)."""
    return "WA" + hub_id.removeprefix("ALC-").replace("-", "")


def sap_reservation_number(hub_id: str) -> str | None:
    """SAP reservation number (10 digits, 5xxxxxxxxx range, clear of the number range the
    emulator gives new reservations) for a book allocation
    (``ALC-0000042-1-2-20250601``): customer, subscription, item and the delivery month,
    which differs between an item's cycles (1, 3 or 12 months apart). None for an id that
    is not the book's."""
    parts = hub_id.split("-")
    if len(parts) != 5 or not all(p.isdigit() for p in parts[1:]):
        return None
    customer, k, n, day = (int(p) for p in parts[1:])
    month = (day // 10_000) * 12 + (day // 100) % 100
    return f"5{customer % 1_000_000:06d}{k % 10}{n % 10}{month % 10}"

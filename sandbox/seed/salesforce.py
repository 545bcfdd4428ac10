"""The book's customers as Salesforce Accounts (the fields of mappings/salesforce/).

Salesforce owns the relationship data (name, addresses, segment); the other fields are
copies that agree with their owners. Ids are the 18-character ids derived from the hub id
(``sandbox.seed.xref``), the same ones billing keeps in ``salesforce_account_id``.

Written before the Salesforce emulator existed: object and field names follow the
mapping files and docs/sandbox-salesforce.md conventions; check them against the
emulator's ``seed_records`` when it lands.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sandbox.seed import xref
from sandbox.seed.book import CustomerSlice, Record
from sandbox.seed.drift import Drift
from sandbox.seed.emulator import EmulatorWriter

ACCOUNT = "Account"
SEGMENTS = {"smb": "SMB", "mid_market": "Mid-Market", "enterprise": "Enterprise"}


def _sf_datetime(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def account(c: Record) -> dict[str, Any]:
    address = c["billing_address"]
    shipping = c.get("shipping_address") or {}
    return {
        "Id": xref.salesforce_account_id(c["hub_id"]),
        "Name": c["legal_name"],
        "Hub_Id__c": c["hub_id"],
        "ParentId": xref.salesforce_account_id(c["parent_id"]) if c.get("parent_id") else None,
        "BillingStreet": address["street"],
        "BillingCity": address["city"],
        "BillingPostalCode": address["postal_code"],
        "BillingState": address.get("region"),
        "BillingCountry": address["country"],
        "ShippingStreet": shipping.get("street"),
        "ShippingCity": shipping.get("city"),
        "ShippingPostalCode": shipping.get("postal_code"),
        "ShippingState": shipping.get("region"),
        "ShippingCountry": shipping.get("country"),
        "CurrencyIsoCode": c["currency"],
        "Tax_Id__c": c.get("tax_id"),
        "Segment__c": SEGMENTS.get(c.get("segment") or ""),
        "Dunning_Level__c": c["dunning_level"],
        "SAP_Customer_Number__c": xref.sap_customer_number(c["hub_id"]),
        "Type": "Customer",
        "LastModifiedDate": _sf_datetime(c["updated_at"]),
    }


class SalesforceWriter(EmulatorWriter):
    system = "salesforce"
    module = "sandbox.salesforce"

    def customer_slice(self, s: CustomerSlice) -> None:
        self.emit(ACCOUNT, account(s.customer))

    def apply(self, drift: Drift, at: datetime) -> bool:
        if drift.entity != "customer" or drift.record is None:
            return False
        if drift.action == "delete":
            return self._delete(xref.salesforce_account_id(drift.key))
        if drift.action == "set_field" and drift.field == "tax_id":
            record = account({**drift.record, "tax_id": drift.value, "updated_at": at})
            return self.seed_fn(self.store, ACCOUNT, [record]) == 1
        return False

    def _delete(self, account_id: str) -> bool:
        for collection in (ACCOUNT, f"sobject:{ACCOUNT}"):
            if self.store.delete(collection, account_id):
                return True
        return False

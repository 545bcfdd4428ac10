"""The book in Salesforce: customers as Accounts, SKUs as Product2, subscriptions as
``Subscription__c`` and invoices as ``Invoice__c`` (objects and fields of
docs/sandbox-salesforce.md; the Account fields are those of mappings/salesforce/).

Salesforce owns the relationship data (name, addresses, segment); every other field is a
copy that agrees with its owner, as if the hub had just synced. Ids are 18-character ids
derived from hub ids alone (``sandbox.seed.xref``), the account id being the one billing
keeps in ``salesforce_account_id``:

* Account ``001`` + customer number (``xref.salesforce_account_id``);
* Product2 ``01t`` + the SKU's position in ``catalog.PRODUCTS`` (a fixed tuple);
* Subscription__c ``a0S`` + customer x 100 + k (``SUB-<customer>-<k>``);
* Invoice__c ``a0I`` + ``xref.salesforce_invoice_number`` (customer x 1000 + k x 100 + n).

Children's numbers start with their customer's, so a customer's subscriptions and invoices
share an id prefix: deleting a customer (the "missing in Salesforce" drift) finds them by
an index range scan and deletes them too, as Salesforce cascades a master-detail delete.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from hub.currency import exponent
from hub.mapping.transforms import REGISTRY, Context
from hub.mapping.views import item_lines
from hub.model import Price
from sandbox.seed import catalog as C
from sandbox.seed import xref
from sandbox.seed.book import CustomerSlice, Record, current_items
from sandbox.seed.drift import Drift
from sandbox.seed.emulator import EmulatorWriter

ACCOUNT = "Account"
PRODUCT = "Product2"
SUBSCRIPTION = "Subscription__c"
INVOICE = "Invoice__c"
SEGMENTS = {"smb": "SMB", "mid_market": "Mid-Market", "enterprise": "Enterprise"}
PERIOD_MONTHS = {"month": 1, "quarter": 3, "year": 12}
_PRODUCT_NUMBER = {spec.sku: n for n, spec in enumerate(C.PRODUCTS, start=1)}
#: a customer's subscriptions and invoices have numbers customer x 100 (x 1000) + ...
_CHILD_FACTORS = {SUBSCRIPTION: ("a0S", 100), INVOICE: ("a0I", 1000)}
#: the dunning run as ``Invoice__c.Dunning_History__c`` text: the mapping's own transform,
#: so the seed writes exactly what a sync would
_DUNNING_HISTORY = REGISTRY["dunning_history"][1]


def _sf_datetime(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def _major(minor: int | None, currency: str) -> Decimal | None:
    """Integer minor units as the decimal amount a currency field holds."""
    if minor is None:
        return None
    return Decimal(minor).scaleb(-exponent(currency))


def product_id(sku: str) -> str:
    return xref.salesforce_id("01t", _PRODUCT_NUMBER[sku])


def subscription_id(hub_id: str) -> str:
    """``SUB-0000042-3`` -> ``a0S`` id numbered 42 x 100 + 3."""
    _, customer, k = hub_id.split("-")
    return xref.salesforce_id("a0S", int(customer) * 100 + int(k))


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


def product(p: Record) -> dict[str, Any]:
    return {
        "Id": product_id(p["sku"]),
        "Name": p["name"],
        "ProductCode": p["sku"],
        "Hub_Id__c": p["sku"],
        "IsActive": bool(p["sellable"]),
        "Family": p["family"],
        "QuantityUnitOfMeasure": p["unit"],
        "LastModifiedDate": _sf_datetime(p["updated_at"]),
    }


def monthly_recurring(sub: Record) -> Decimal:
    """MRR in the subscription's currency: each item's charge for one billing period at
    its quantity (``Price.amount_minor``), divided by the period's months, rounded half
    up to the currency's minor unit."""
    currency = sub["currency"]
    per_period = sum(
        Price.model_validate(item["price"]).amount_minor(item["quantity"])
        for item in current_items(sub)
    )
    months = PERIOD_MONTHS[sub["billing_period"]]
    exp = exponent(currency)
    return (Decimal(per_period) / months).scaleb(-exp).quantize(Decimal(1).scaleb(-exp))


def subscription(sub: Record) -> dict[str, Any]:
    return {
        "Id": subscription_id(sub["hub_id"]),
        "Name": sub["contract_number"],
        "Hub_Id__c": sub["hub_id"],
        "Account__c": xref.salesforce_account_id(sub["customer_id"]),
        "Status__c": sub["status"],
        "Billing_Period__c": sub["billing_period"],
        "Start_Date__c": sub["start_date"],
        "End_Date__c": sub["end_date"],
        "Trial_End__c": sub["trial_end"],
        "Renewal_Date__c": sub["renewal_date"],
        "Auto_Renew__c": bool(sub["auto_renew"]),
        "Paused_At__c": sub.get("paused_at"),
        "Resume_At__c": sub.get("resume_at"),
        "CurrencyIsoCode": sub["currency"],
        "MRR__c": monthly_recurring(sub),
        # as the hub writes it (mappings/salesforce/subscription.yaml, the item_lines view)
        "Items__c": item_lines(sub["items"], C.AS_OF),
        "LastModifiedDate": _sf_datetime(sub["updated_at"]),
    }


def dunning_history(events: list[Record]) -> str | None:
    """An invoice's dunning run as Salesforce holds it (None: no run)."""
    text = _DUNNING_HISTORY(events, Context())
    return None if text is None else str(text)


def invoice(inv: Record) -> dict[str, Any]:
    currency = inv["currency"]
    return {
        "Id": xref.salesforce_invoice_id(inv["hub_id"]),
        "Hub_Id__c": inv["hub_id"],
        "Invoice_Number__c": inv["number"],
        "Account__c": xref.salesforce_account_id(inv["customer_id"]),
        "Subscription__c": subscription_id(inv["subscription_id"]),
        "Status__c": inv["status"],
        "Issue_Date__c": inv["issue_date"],
        "Due_Date__c": inv["due_date"],
        "CurrencyIsoCode": currency,
        "Subtotal_Amount__c": _major(inv["subtotal_minor"], currency),
        "Tax_Amount__c": _major(inv["tax_minor"], currency),
        "Total_Amount__c": _major(inv["total_minor"], currency),
        "Amount_Paid__c": _major(inv["amount_paid_minor"], currency),
        "Dunning_Stage__c": inv["dunning_stage"],
        "Dunning_History__c": dunning_history(inv.get("dunning_events", [])),
        # SAP bills every invoice but drafts (sandbox/seed/sap.py)
        "SAP_Billing_Document__c": (
            xref.sap_billing_document(inv["hub_id"]) if inv["status"] != "draft" else None
        ),
        "LastModifiedDate": _sf_datetime(inv["updated_at"]),
    }


class SalesforceWriter(EmulatorWriter):
    system = "salesforce"
    module = "sandbox.salesforce"

    def product(self, p: Record) -> None:
        self.emit(PRODUCT, product(p))

    def customer_slice(self, s: CustomerSlice) -> None:
        self.emit(ACCOUNT, account(s.customer))
        for sub in s.subscriptions:
            self.emit(SUBSCRIPTION, subscription(sub))
        for inv in s.invoices:
            self.emit(INVOICE, invoice(inv))

    def flush(self) -> None:
        # parents before children, so a reader never sees an invoice without its account
        order = {ACCOUNT: 0, PRODUCT: 1, SUBSCRIPTION: 2, INVOICE: 3}
        pending = dict(sorted(self._pending.items(), key=lambda kv: order.get(kv[0], 9)))
        self._pending.clear()
        self._pending.update(pending)
        super().flush()

    def apply(self, drift: Drift, at: datetime) -> bool:
        if drift.entity != "customer" or drift.record is None:
            return False
        if drift.action == "delete":
            return self._delete(drift.key)
        if drift.action == "set_field" and drift.field == "tax_id":
            record = account({**drift.record, "tax_id": drift.value, "updated_at": at})
            return self.seed_fn(self.store, ACCOUNT, [record]) == 1
        return False

    def _delete(self, hub_id: str) -> bool:
        """The customer never reached Salesforce: its Account, and the subscriptions and
        invoices that hang off it (master-detail), are gone, index entries included."""
        if not self.store.delete(ACCOUNT, xref.salesforce_account_id(hub_id)):
            return False
        self.store.delete(f"{ACCOUNT}#Hub_Id__c", hub_id.casefold())
        customer = xref.customer_index(hub_id) + 1
        for collection, (prefix, factor) in _CHILD_FACTORS.items():
            digits = f"{customer * factor:010d}"[: -len(str(factor)) + 1]
            for doc in list(self.store.iter_prefix(collection, f"{prefix}5g{digits}")):
                self.store.delete(collection, doc["Id"])
                if doc.get("Hub_Id__c"):
                    self.store.delete(f"{collection}#Hub_Id__c", str(doc["Hub_Id__c"]).casefold())
        return True

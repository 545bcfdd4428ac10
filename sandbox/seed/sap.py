"""The book in SAP S/4HANA's shapes (API_BUSINESS_PARTNER, API_SALES_CONTRACT_SRV,
API_BILLING_DOCUMENT_SRV, API_MATERIAL_STOCK_SRV, API_RESERVATION_DOCUMENT_SRV).

What SAP owns is filled from the book (tax id, payment terms, credit limit, payment
clearing, plant stock); what it merely copies (names, addresses, amounts) agrees with the
owners. Amounts are decimals in major units of the document currency, as the OData API
shows them; plant stock covers every open allocation at that plant, so the stock check
finds nothing until something drifts.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from connectors.sap import reservation_flags
from hub.model import SubscriptionItem
from hub.money import Money
from hub.pricing import item_period_amount
from sandbox.seed import catalog as C
from sandbox.seed import xref
from sandbox.seed.book import CustomerSlice, Record, current_items
from sandbox.seed.drift import Drift
from sandbox.seed.emulator import EmulatorWriter

BP = "A_BusinessPartner"
BP_ADDRESS = "A_BusinessPartnerAddress"
BP_TAX = "A_BusinessPartnerTaxNumber"
CUSTOMER = "A_Customer"
SALES_AREA = "A_CustomerSalesArea"
CONTRACT = "A_SalesContract"
CONTRACT_ITEM = "A_SalesContractItem"
BILLING_DOC = "A_BillingDocument"
BILLING_ITEM = "A_BillingDocumentItem"
STOCK = "A_MatlStkInAcctMod"
RESERVATION = "A_ReservationDocumentHeader"
RESERVATION_ITEM = "A_ReservationDocumentItem"
MATERIAL = "A_MaterialStock"

SALES_ORG, CHANNEL, DIVISION, COMPANY = "1010", "10", "00", "1010"

PAYMENT_TERMS = {
    "due_on_receipt": "0001",
    "net15": "NT15",
    "net30": "NT30",
    "net45": "NT45",
    "net60": "NT60",
    "net90": "NT90",
}
FREQUENCY = {"month": "MONTHLY", "quarter": "QUARTERLY", "year": "ANNUAL"}
CLEARING = {"paid": "C", "open": "A", "uncollectible": "A", "void": ""}


def decimal(amount_minor: int, currency: str) -> Decimal:
    return Money(amount_minor, currency).to_decimal()


_TAX_TYPES = sorted({"US01"} | {f"{r.country}0" for r in C.REGIONS})


def tax_type(country: str) -> str:
    return "US01" if country == "US" else f"{country}0"


def contract_number(sub_id: str) -> str:
    _, customer, k = sub_id.split("-")
    return f"4{int(customer) % 1_000_000:06d}{int(k) % 10}"


def sap_unit(unit: str) -> str:
    return unit if len(unit) <= 3 else "EA"


class SapWriter(EmulatorWriter):
    system = "sap"
    module = "sandbox.sap"

    def __init__(self, store: Any, hub_id_field: str = "YY1_HubId") -> None:
        """``hub_id_field``: the emulator's name for the hub id's extension field (its
        SapSettings.hub_id_field); the records below carry it as YY1_HubId."""
        super().__init__(store)
        from sandbox.sap import seed_records

        def seed(store: Any, object_name: str, records: Iterable[dict[str, Any]]) -> int:
            return seed_records(store, object_name, records, hub_id_field)

        self.seed_fn = seed
        self._open_stock: dict[tuple[str, str], int] = defaultdict(int)

    def customer_slice(self, s: CustomerSlice) -> None:
        c = s.customer
        number = xref.sap_customer_number(c["hub_id"])
        for object_name, record in customer_records(c):
            self.emit(object_name, record)
        for sub in s.subscriptions:
            header, items = contract_records(sub, number)
            self.emit(CONTRACT, header)
            for item in items:
                self.emit(CONTRACT_ITEM, item)
        for inv in s.invoices:
            if inv["status"] == "draft":
                continue  # drafts are not posted to SAP yet
            header, items = billing_records(inv, number, c["payment_terms"])
            self.emit(BILLING_DOC, header)
            for item in items:
                self.emit(BILLING_ITEM, item)
        for alloc in s.allocations:
            for object_name, record in reservation_records(alloc):
                self.emit(object_name, record)
            if alloc["status"] in ("reserved", "picked"):
                self._open_stock[(alloc["sku"], alloc["location"])] += alloc["quantity"]

    def finish(self) -> None:
        for sku in sorted({sku for sku, _ in self._open_stock}):
            unit = sap_unit(C.PRODUCTS_BY_SKU[sku].unit)
            self.emit(MATERIAL, {"Material": sku, "MaterialBaseUnit": unit})
        for (sku, plant), allocated in sorted(self._open_stock.items()):
            self.emit(STOCK, stock_record(sku, plant, allocated + allocated // 2 + 25))
        super().finish()

    def apply(self, drift: Drift, at: datetime) -> bool:
        if drift.entity != "customer" or drift.record is None:
            return False
        number = xref.sap_customer_number(drift.key)
        if drift.action == "delete":
            return self.delete_customer(number)
        if drift.action == "set_field" and drift.field == "legal_name":
            changed = {**drift.record, "legal_name": drift.value, "updated_at": at}
            for object_name, record in customer_records(changed):
                if object_name in (BP, CUSTOMER):
                    self.seed_fn(self.store, object_name, [record])
            return True
        return False

    def delete_customer(self, number: str) -> bool:
        """Remove the customer and its business partner with their dependent records, as
        an archiving run would (straight from the store: the API would refuse)."""
        from sandbox.sap.repository import KEY_SEP, collection
        from sandbox.sap.services import find_set

        doomed = {
            BP: [number],
            BP_ADDRESS: [f"{number}{KEY_SEP}1"],
            BP_TAX: [f"{number}{KEY_SEP}{t}" for t in _TAX_TYPES],
            CUSTOMER: [number],
            SALES_AREA: [KEY_SEP.join((number, SALES_ORG, CHANNEL, DIVISION))],
        }
        deleted = []
        for name, ids in doomed.items():
            svc, es = find_set(name)
            deleted += [self.store.delete(collection(svc, es), doc_id) for doc_id in ids]
        return any(deleted)


def customer_records(c: Record) -> list[tuple[str, dict[str, Any]]]:
    number = xref.sap_customer_number(c["hub_id"])
    name = c["legal_name"]
    address = c["billing_address"]
    house, _, street = address["street"].partition(" ")
    blocked = c["status"] == "blocked"
    out: list[tuple[str, dict[str, Any]]] = [
        (
            BP,
            {
                "BusinessPartner": number,
                "Customer": number,
                "BusinessPartnerCategory": "2",
                "BusinessPartnerGrouping": "BP02",
                "BusinessPartnerFullName": name[:81],
                "OrganizationBPName1": name[:40],
                "OrganizationBPName2": name[40:80],
                "SearchTerm1": name.upper()[:20],
                "Language": "EN",
                "BusinessPartnerIsBlocked": blocked,
                "IsMarkedForArchiving": False,
                "YY1_HubId": c["hub_id"],
                "LastChangeDateTime": c["updated_at"],
            },
        ),
        (
            BP_ADDRESS,
            {
                "BusinessPartner": number,
                "AddressID": "1",
                "StreetName": street,
                "HouseNumber": house,
                "PostalCode": address["postal_code"],
                "CityName": address["city"],
                "Region": (address.get("region") or "")[:3],
                "Country": address["country"],
                "Language": "EN",
            },
        ),
    ]
    tax_id = c.get("tax_id")
    if tax_id:
        out.append(
            (
                BP_TAX,
                {
                    "BusinessPartner": number,
                    "BPTaxType": tax_type(address["country"]),
                    "BPTaxNumber": tax_id[:20],
                    "BPTaxLongNumber": tax_id,
                },
            )
        )
    credit = c.get("credit_limit_minor")
    out.append(
        (
            CUSTOMER,
            {
                "Customer": number,
                "CustomerName": name[:80],
                "CustomerFullName": name,
                "CustomerAccountGroup": "CUST",
                "CustomerClassification": {"enterprise": "A", "mid_market": "B"}.get(
                    c.get("segment") or "", "C"
                ),
                "OrderIsBlockedForCustomer": "01" if blocked else "",
                "DeliveryIsBlocked": "",
                "BillingIsBlockedForCustomer": "",
                "PostingIsBlocked": blocked,
                "DeletionIndicator": False,
                "TaxNumber1": tax_id if tax_id and len(tax_id) <= 16 else "",
                "YY1_CreditLimitAmount": (
                    decimal(credit, c["currency"]) if credit is not None else None
                ),
                "YY1_CreditLimitCurrency": c["currency"] if credit is not None else "",
                "YY1_HubId": c["hub_id"],
                "LastChangeDateTime": c["updated_at"],
            },
        )
    )
    out.append(
        (
            SALES_AREA,
            {
                "Customer": number,
                "SalesOrganization": SALES_ORG,
                "DistributionChannel": CHANNEL,
                "Division": DIVISION,
                "Currency": c["currency"],
                "CustomerPaymentTerms": PAYMENT_TERMS[c["payment_terms"]],
                "CustomerPricingProcedure": "01",
                "OrderIsBlockedForCustomer": "01" if blocked else "",
                "BillingIsBlockedForCustomer": "",
                "DeletionIndicator": False,
            },
        )
    )
    return out


def contract_records(sub: Record, customer: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    number = contract_number(sub["hub_id"])
    canceled = sub["status"] == "canceled"
    header = {
        "SalesContract": number,
        "SalesContractType": "WK1",
        "SalesOrganization": SALES_ORG,
        "DistributionChannel": CHANNEL,
        "OrganizationDivision": DIVISION,
        "SoldToParty": customer,
        "SalesContractDate": sub["start_date"],
        "PurchaseOrderByCustomer": sub["contract_number"] or "",
        "SalesContractValidityStartDate": sub["start_date"],
        "SalesContractValidityEndDate": sub["end_date"] or date(9999, 12, 31),
        "TransactionCurrency": sub["currency"],
        "OverallSDProcessStatus": "C" if canceled else "B",
        "SalesContractStatus": "C" if canceled else "",
        "YY1_HubId": sub["hub_id"],
        "LastChangeDateTime": sub["updated_at"],
    }
    items = []
    for n, item in enumerate(current_items(sub), start=1):
        spec = C.PRODUCTS_BY_SKU[item["sku"]]
        # what the hub writes (mappings/sap/subscription.yaml, the in_effect view): the
        # item's charge per billing period as the net price of its whole quantity
        amount = item_period_amount(SubscriptionItem.model_validate(item), C.AS_OF)
        items.append(
            {
                "SalesContract": number,
                "SalesContractItem": f"{n * 10:06d}",
                "SalesContractItemCategory": "WAN",
                "SalesContractItemText": spec.name[:40],
                "Material": item["sku"],
                "RequestedQuantity": Decimal(item["quantity"]),
                "RequestedQuantityUnit": sap_unit(spec.unit),
                "NetPriceAmount": decimal(amount, sub["currency"]),
                "NetPriceQuantity": Decimal(max(item["quantity"], 1)),
                "SalesContractValidityStartDate": item.get("effective_from"),
                "SalesContractValidityEndDate": date(9999, 12, 31),
                "YY1_HubItemId": item["item_id"],
                "TransactionCurrency": sub["currency"],
                "YY1_BillingFrequency": FREQUENCY[sub["billing_period"]],
                "SalesDocumentRjcnReason": "Z1" if canceled else "",
                "SDProcessStatus": "C" if canceled else "B",
            }
        )
    return header, items


def billing_records(
    inv: Record, customer: str, terms: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    number = xref.sap_billing_document(inv["hub_id"])
    currency = inv["currency"]
    status = inv["status"]
    paid = inv["amount_paid_minor"]
    clearing = CLEARING.get(status, "A")
    if status == "open" and paid:
        clearing = "B"
    header = {
        "BillingDocument": number,
        "SDDocumentCategory": "M",
        "BillingDocumentCategory": "L",
        "BillingDocumentType": "F2",
        "BillingDocumentDate": inv["issue_date"],
        "SalesOrganization": SALES_ORG,
        "DistributionChannel": CHANNEL,
        "Division": DIVISION,
        "SoldToParty": customer,
        "PayerParty": customer,
        "CustomerPaymentTerms": PAYMENT_TERMS[terms],
        "TotalNetAmount": decimal(inv["subtotal_minor"], currency),
        "TaxAmount": decimal(inv["tax_minor"], currency),
        "TotalGrossAmount": decimal(inv["total_minor"], currency),
        "TransactionCurrency": currency,
        "BillingDocumentIsCancelled": status == "void",
        "CancelledBillingDocument": "",
        "CompanyCode": COMPANY,
        "FiscalYear": str(inv["issue_date"].year),
        "AccountingDocument": "" if status == "void" else "1" + number[1:],
        "AccountingPostingStatus": "C",
        "OverallBillingStatus": "C",
        "InvoiceClearingStatus": clearing,
        "YY1_ClearingDate": inv["updated_at"].date() if status == "paid" else None,
        "YY1_AmountCleared": (decimal(inv["total_minor"], currency) if clearing == "C" else None),
        "YY1_HubId": inv["hub_id"],
        "LastChangeDateTime": inv["updated_at"],
    }
    lines = inv["lines"]
    taxes = (
        Money(inv["tax_minor"], currency).allocate([max(line["amount_minor"], 0) for line in lines])
        if lines and sum(max(line["amount_minor"], 0) for line in lines) > 0
        else [Money(0, currency) for _ in lines]
    )
    items = []
    contract = contract_number(inv["subscription_id"]) if inv["subscription_id"] else ""
    for line, tax in zip(lines, taxes, strict=True):
        spec = C.PRODUCTS_BY_SKU.get(line["sku"] or "")
        items.append(
            {
                "BillingDocument": number,
                "BillingDocumentItem": f"{line['line_no'] * 10:06d}",
                "SalesDocumentItemCategory": "WAN",
                "BillingDocumentItemText": (spec.name if spec else line["description"])[:40],
                "Material": line["sku"] or "",
                "BillingQuantity": Decimal(line["quantity"]),
                "BillingQuantityUnit": sap_unit(spec.unit) if spec else "EA",
                "NetAmount": decimal(line["amount_minor"], currency),
                "TaxAmount": tax.to_decimal(),
                "GrossAmount": decimal(line["amount_minor"] + tax.amount_minor, currency),
                "TransactionCurrency": currency,
                "SalesDocument": contract,
                "SalesDocumentItem": f"{line['line_no'] * 10:06d}" if contract else "",
                "ReferenceSDDocument": contract,
                "ReferenceSDDocumentItem": f"{line['line_no'] * 10:06d}" if contract else "",
            }
        )
    return header, items


def reservation_records(alloc: Record) -> list[tuple[str, dict[str, Any]]]:
    """An allocation as the reservation the hub keeps of it: one item, its flags saying
    the fulfilment status as the hub writes them (connectors.sap.reservation_flags)."""
    number = xref.sap_reservation_number(alloc["hub_id"])
    if number is None:
        return []
    unit = sap_unit(C.PRODUCTS_BY_SKU[alloc["sku"]].unit)
    quantity = Decimal(alloc["quantity"])
    header = {
        "Reservation": number,
        "GoodsMovementType": "601",
        "ReservationDate": alloc["delivery_date"],
        "SalesOrder": contract_number(alloc["subscription_id"]),
        "YY1_HubId": alloc["hub_id"],
        "LastChangeDateTime": alloc["updated_at"],
    }
    item = {
        "Reservation": number,
        "ReservationItem": "0001",
        "RecordType": "",
        "Product": alloc["sku"],
        "Plant": alloc["location"],
        "MatlCompRequirementDate": alloc["delivery_date"],
        "ResvnItmRequiredQtyInEntryUnit": quantity,
        "EntryUnit": unit,
        "ResvnItmRequiredQtyInBaseUnit": quantity,
        "BaseUnit": unit,
        "GoodsMovementType": "601",
        **reservation_flags(alloc["status"], quantity),
    }
    return [(RESERVATION, header), (RESERVATION_ITEM, item)]


def stock_record(sku: str, plant: str, quantity: int) -> dict[str, Any]:
    spec = C.PRODUCTS_BY_SKU[sku]
    return {
        "Material": sku,
        "Plant": plant,
        "StorageLocation": "0001",
        "Batch": "",
        "Supplier": "",
        "Customer": "",
        "WBSElementInternalID": "",
        "SDDocument": "",
        "SDDocumentItem": "",
        "InventorySpecialStockType": "",
        "InventoryStockType": "01",
        "MaterialBaseUnit": sap_unit(spec.unit),
        "MatlWrhsStkQtyInMatlBaseUnit": Decimal(quantity),
        "LastChangeDateTime": C.AS_OF_TS,
    }

"""The emulated S/4HANA OData services, declared as data.

Entity set and property names follow SAP's published APIs (API_BUSINESS_PARTNER,
API_SALES_CONTRACT_SRV, API_BILLING_DOCUMENT_SRV, API_MATERIAL_STOCK_SRV,
API_RESERVATION_DOCUMENT_SRV); only a subset of each entity's properties is modelled.
Fields the real APIs do not have are key-user extension fields (``YY1_``); change stamps
are the published ones only (A_BusinessPartner: LastChangeDate + LastChangeTime,
A_Customer: CreationDate, A_SalesContract and A_BillingDocument: LastChangeDateTime,
reservations and stock: none) - see docs/sandbox-sap.md.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache
from typing import Any

from sandbox.sap.edm import EntitySet, Nav, Numbering, Prop, Service


def s(name: str, length: int, label: str = "", **kw: Any) -> Prop:
    return Prop(name, "Edm.String", max_length=length, label=label or name, **kw)


def key(name: str, length: int, label: str = "") -> Prop:
    return Prop(
        name,
        "Edm.String",
        max_length=length,
        nullable=False,
        label=label or name,
        display_format="UpperCase",
    )


def dec(name: str, precision: int, scale: int, label: str = "", **kw: Any) -> Prop:
    return Prop(name, "Edm.Decimal", precision=precision, scale=scale, label=label or name, **kw)


def date(name: str, label: str = "", **kw: Any) -> Prop:
    return Prop(name, "Edm.DateTime", precision=0, display_format="Date", label=label or name, **kw)


def flag(name: str, label: str = "", **kw: Any) -> Prop:
    return Prop(name, "Edm.Boolean", label=label or name, **kw)


def stamps(*, created_by: bool = True, changed: bool = True) -> tuple[Prop, ...]:
    """System-maintained stamps of a business object's header, as its published entity
    type has them: creation date (and user); with ``changed``, LastChangeDate and the
    LastChangeDateTime delta queries filter on."""
    out = [date("CreationDate", "Created On", readonly=True)]
    if changed:
        out += [
            Prop(
                "LastChangeDate",
                "Edm.DateTime",
                precision=0,
                display_format="Date",
                label="Changed On",
                readonly=True,
            ),
            Prop(
                "LastChangeDateTime",
                "Edm.DateTimeOffset",
                precision=7,
                label="Last Changed",
                readonly=True,
            ),
        ]
    if created_by:
        out.insert(1, s("CreatedByUser", 12, "Created By", readonly=True))
    return tuple(out)


#: The hub id's key-user extension field as the sandbox names it by default; a real
#: extension's name is the customer's (SapSettings.hub_id_field, see services_for).
DEFAULT_HUB_ID_FIELD = "YY1_HubId"
HUB_ID = s(DEFAULT_HUB_ID_FIELD, 40, "Hub ID")
#: The hub's id of a contract item (a subscription item's ``item_id``), a key-user
#: extension field of A_SalesContractItem: SAP numbers items 000010, 000020, ... itself, so
#: the hub finds the item an upgrade changes (or a removal deletes) by this field.
HUB_ITEM_ID_FIELD = "YY1_HubItemId"
HUB_ITEM_ID = s(HUB_ITEM_ID_FIELD, 64, "Hub Item ID")
CUSTOMER_REF = ("API_BUSINESS_PARTNER", "A_Customer", "Customer")

BUSINESS_PARTNER = Service(
    "API_BUSINESS_PARTNER",
    "LO-MD-BP",
    {
        "A_BusinessPartner": EntitySet(
            "A_BusinessPartner",
            ("BusinessPartner",),
            (
                key("BusinessPartner", 10, "Business Partner"),
                s("Customer", 10, "Customer"),
                s("BusinessPartnerCategory", 1, "BP Category", required=True),
                s("BusinessPartnerGrouping", 4, "Grouping"),
                s("BusinessPartnerFullName", 81, "Name"),
                s("OrganizationBPName1", 40, "Name 1"),
                s("OrganizationBPName2", 40, "Name 2"),
                s("SearchTerm1", 20, "Search Term 1"),
                s("Language", 2, "Language"),
                flag("BusinessPartnerIsBlocked", "Central Block"),
                flag("IsMarkedForArchiving", "Archiving Flag"),
                *stamps(changed=False),
                date("LastChangeDate", "Changed On", readonly=True),
                Prop("LastChangeTime", "Edm.Time", precision=0, label="Changed At", readonly=True),
                HUB_ID,
            ),
            (
                Nav(
                    "to_BusinessPartnerAddress",
                    "A_BusinessPartnerAddress",
                    True,
                    (("BusinessPartner", "BusinessPartner"),),
                ),
                Nav(
                    "to_BusinessPartnerTax",
                    "A_BusinessPartnerTaxNumber",
                    True,
                    (("BusinessPartner", "BusinessPartner"),),
                ),
                Nav("to_Customer", "A_Customer", False, (("Customer", "Customer"),)),
            ),
            label="Business Partner",
            numbering=Numbering("BusinessPartner", 10, start=1000000, pad=False),
        ),
        "A_BusinessPartnerAddress": EntitySet(
            "A_BusinessPartnerAddress",
            ("BusinessPartner", "AddressID"),
            (
                key("BusinessPartner", 10, "Business Partner"),
                key("AddressID", 10, "Address Number"),
                s("StreetName", 60, "Street"),
                s("HouseNumber", 10, "House Number"),
                s("PostalCode", 10, "Postal Code"),
                s("CityName", 40, "City"),
                s("Region", 3, "Region"),
                s("Country", 3, "Country/Region Key", codes="country"),
                s("Language", 2, "Language"),
            ),
            (
                Nav(
                    "to_BusinessPartner",
                    "A_BusinessPartner",
                    False,
                    (("BusinessPartner", "BusinessPartner"),),
                ),
            ),
            label="BP Address",
            numbering=Numbering("AddressID", 10, start=1, per_parent=True, pad=False),
            parent="A_BusinessPartner",
            parent_on=(("BusinessPartner", "BusinessPartner"),),
            stamped=False,
        ),
        "A_BusinessPartnerTaxNumber": EntitySet(
            "A_BusinessPartnerTaxNumber",
            ("BusinessPartner", "BPTaxType"),
            (
                key("BusinessPartner", 10, "Business Partner"),
                key("BPTaxType", 4, "Tax Number Category"),
                s("BPTaxNumber", 20, "Tax Number", required=True),
                s("BPTaxLongNumber", 60, "Tax Number (long)"),
            ),
            (
                Nav(
                    "to_BusinessPartner",
                    "A_BusinessPartner",
                    False,
                    (("BusinessPartner", "BusinessPartner"),),
                ),
            ),
            label="BP Tax Number",
            parent="A_BusinessPartner",
            parent_on=(("BusinessPartner", "BusinessPartner"),),
            stamped=False,
        ),
        "A_Customer": EntitySet(
            "A_Customer",
            ("Customer",),
            (
                key("Customer", 10, "Customer"),
                s("CustomerName", 80, "Name of Customer"),
                s("CustomerFullName", 220, "Customer Full Name"),
                s("CustomerAccountGroup", 4, "Account Group"),
                s("CustomerClassification", 2, "Classification"),
                s("OrderIsBlockedForCustomer", 2, "Order Block"),
                s("DeliveryIsBlocked", 2, "Delivery Block"),
                s("BillingIsBlockedForCustomer", 2, "Billing Block"),
                flag("PostingIsBlocked", "Posting Block"),
                flag("DeletionIndicator", "Deletion Flag"),
                s("TaxNumber1", 16, "Tax Number 1"),
                dec("YY1_CreditLimitAmount", 15, 2, "Credit Limit", display_format="NonNegative"),
                s("YY1_CreditLimitCurrency", 5, "Credit Limit Currency", codes="currency"),
                *stamps(changed=False),
                HUB_ID,
            ),
            (
                Nav(
                    "to_CustomerSalesArea", "A_CustomerSalesArea", True, (("Customer", "Customer"),)
                ),
            ),
            label="Customer",
            numbering=Numbering("Customer", 10, start=1000000, pad=False),
            # the customer role of a business partner: a change to it is the partner's, and
            # it is created with its partner (POST A_BusinessPartner with to_Customer)
            creatable=False,
            owner="A_BusinessPartner",
            owner_on=(("Customer", "Customer"),),
        ),
        "A_CustomerSalesArea": EntitySet(
            "A_CustomerSalesArea",
            ("Customer", "SalesOrganization", "DistributionChannel", "Division"),
            (
                key("Customer", 10, "Customer"),
                key("SalesOrganization", 4, "Sales Organization"),
                key("DistributionChannel", 2, "Distribution Channel"),
                key("Division", 2, "Division"),
                s("Currency", 5, "Currency", codes="currency"),
                s("CustomerPaymentTerms", 4, "Terms of Payment", codes="payment_terms"),
                s("CustomerPricingProcedure", 2, "Cust.Pric.Procedure"),
                s("OrderIsBlockedForCustomer", 2, "Order Block"),
                s("BillingIsBlockedForCustomer", 2, "Billing Block"),
                flag("DeletionIndicator", "Deletion Flag"),
            ),
            (Nav("to_Customer", "A_Customer", False, (("Customer", "Customer"),)),),
            label="Customer Sales Area",
            parent="A_Customer",
            parent_on=(("Customer", "Customer"),),
            stamped=False,
        ),
    },
)

SALES_CONTRACT = Service(
    "API_SALES_CONTRACT_SRV",
    "SD-SLS-API",
    {
        "A_SalesContract": EntitySet(
            "A_SalesContract",
            ("SalesContract",),
            (
                key("SalesContract", 10, "Sales Contract"),
                s("SalesContractType", 4, "Sales Contract Type"),
                s("SalesOrganization", 4, "Sales Organization"),
                s("DistributionChannel", 2, "Distribution Channel"),
                s("OrganizationDivision", 2, "Division"),
                s("SoldToParty", 10, "Sold-to Party", required=True, ref=CUSTOMER_REF),
                date("SalesContractDate", "Document Date"),
                s("PurchaseOrderByCustomer", 35, "Customer Reference"),
                date("SalesContractValidityStartDate", "Valid From"),
                date("SalesContractValidityEndDate", "Valid To"),
                s("CustomerPaymentTerms", 4, "Terms of Payment", codes="payment_terms"),
                dec("TotalNetAmount", 16, 3, "Net Value", readonly=True),
                s("TransactionCurrency", 5, "Document Currency", codes="currency", required=True),
                s("OverallSDProcessStatus", 1, "Overall Status"),
                s("SalesContractStatus", 1, "Contract Status"),
                *stamps(),
                HUB_ID,
            ),
            (Nav("to_Item", "A_SalesContractItem", True, (("SalesContract", "SalesContract"),)),),
            label="Sales Contract",
            numbering=Numbering("SalesContract", 10, start=40000000, pad=False),
        ),
        "A_SalesContractItem": EntitySet(
            "A_SalesContractItem",
            ("SalesContract", "SalesContractItem"),
            (
                key("SalesContract", 10, "Sales Contract"),
                key("SalesContractItem", 6, "Item"),
                s("SalesContractItemCategory", 4, "Item Category"),
                s("SalesContractItemText", 40, "Item Description"),
                s("Material", 40, "Material", required=True),
                dec("RequestedQuantity", 15, 3, "Target Quantity", display_format="NonNegative"),
                s("RequestedQuantityUnit", 3, "Target Quantity Unit"),
                dec("NetPriceAmount", 16, 3, "Net Price"),
                dec("NetPriceQuantity", 5, 0, "Pricing Unit"),
                dec("NetAmount", 16, 3, "Net Value", readonly=True),
                s("TransactionCurrency", 5, "Document Currency", codes="currency", readonly=True),
                s("YY1_BillingFrequency", 10, "Billing Frequency", codes="billing_frequency"),
                s("SalesDocumentRjcnReason", 2, "Reason for Rejection"),
                s("SDProcessStatus", 1, "Overall Status"),
                date("SalesContractValidityStartDate", "Contract Start Date"),
                date("SalesContractValidityEndDate", "Contract End Date"),
                HUB_ITEM_ID,
            ),
            (
                Nav(
                    "to_SalesContract",
                    "A_SalesContract",
                    False,
                    (("SalesContract", "SalesContract"),),
                ),
            ),
            label="Sales Contract Item",
            numbering=Numbering("SalesContractItem", 6, start=10, step=10, per_parent=True),
            parent="A_SalesContract",
            parent_on=(("SalesContract", "SalesContract"),),
            stamped=False,
            from_parent=("TransactionCurrency",),
        ),
    },
)

BILLING_DOCUMENT = Service(
    "API_BILLING_DOCUMENT_SRV",
    "SD-BIL-API",
    {
        "A_BillingDocument": EntitySet(
            "A_BillingDocument",
            ("BillingDocument",),
            (
                key("BillingDocument", 10, "Billing Document"),
                s("SDDocumentCategory", 4, "SD Document Category"),
                s("BillingDocumentCategory", 1, "Billing Category"),
                s("BillingDocumentType", 4, "Billing Type"),
                date("BillingDocumentDate", "Billing Date"),
                s("SalesOrganization", 4, "Sales Organization"),
                s("DistributionChannel", 2, "Distribution Channel"),
                s("Division", 2, "Division"),
                s("SoldToParty", 10, "Sold-to Party", required=True, ref=CUSTOMER_REF),
                s("PayerParty", 10, "Payer"),
                s("CustomerPaymentTerms", 4, "Terms of Payment", codes="payment_terms"),
                dec("TotalNetAmount", 16, 3, "Net Value"),
                dec("TaxAmount", 14, 3, "Tax Amount"),
                dec("TotalGrossAmount", 17, 3, "Gross Amount"),
                s("TransactionCurrency", 5, "Document Currency", codes="currency", required=True),
                flag("BillingDocumentIsCancelled", "Billing Document Is Cancelled"),
                s("CancelledBillingDocument", 10, "Cancelled Bill. Doc."),
                s("CompanyCode", 4, "Company Code"),
                s("FiscalYear", 4, "Fiscal Year"),
                s("AccountingDocument", 10, "Journal Entry"),
                s("AccountingPostingStatus", 1, "Posting Status"),
                s("OverallBillingStatus", 1, "Billing Status"),
                s("InvoiceClearingStatus", 1, "Clearing Status", codes="clearing_status"),
                date("YY1_ClearingDate", "Clearing Date"),
                dec("YY1_AmountCleared", 17, 3, "Amount Cleared"),  # as TotalGrossAmount
                *stamps(created_by=False),  # published without CreatedByUser
                HUB_ID,
            ),
            (
                Nav(
                    "to_Item",
                    "A_BillingDocumentItem",
                    True,
                    (("BillingDocument", "BillingDocument"),),
                ),
            ),
            label="Billing Document",
            numbering=Numbering("BillingDocument", 10, start=90000000, pad=False),
        ),
        "A_BillingDocumentItem": EntitySet(
            "A_BillingDocumentItem",
            ("BillingDocument", "BillingDocumentItem"),
            (
                key("BillingDocument", 10, "Billing Document"),
                key("BillingDocumentItem", 6, "Billing Item"),
                s("SalesDocumentItemCategory", 4, "Item Category"),
                s("BillingDocumentItemText", 40, "Item Description"),
                s("Material", 40, "Material"),
                dec("BillingQuantity", 13, 3, "Billed Quantity"),
                s("BillingQuantityUnit", 3, "Sales Unit"),
                dec("NetAmount", 16, 3, "Net Value"),
                dec("TaxAmount", 14, 3, "Tax Amount"),
                dec("GrossAmount", 16, 3, "Gross Value"),
                s("TransactionCurrency", 5, "Document Currency", codes="currency"),
                s("SalesDocument", 10, "Sales Document"),
                s("SalesDocumentItem", 6, "Sales Document Item"),
                s("ReferenceSDDocument", 10, "Reference Document"),
                s("ReferenceSDDocumentItem", 6, "Reference Item"),
            ),
            (
                Nav(
                    "to_BillingDocument",
                    "A_BillingDocument",
                    False,
                    (("BillingDocument", "BillingDocument"),),
                ),
            ),
            label="Billing Document Item",
            numbering=Numbering("BillingDocumentItem", 6, start=10, step=10, per_parent=True),
            parent="A_BillingDocument",
            parent_on=(("BillingDocument", "BillingDocument"),),
            stamped=False,
        ),
    },
)

_STOCK_KEYS = (
    "Material", "Plant", "StorageLocation", "Batch", "Supplier", "Customer",
    "WBSElementInternalID", "SDDocument", "SDDocumentItem", "InventorySpecialStockType",
    "InventoryStockType",
)  # fmt: skip

MATERIAL_STOCK = Service(
    "API_MATERIAL_STOCK_SRV",
    "MM-IM-GF",
    {
        "A_MaterialStock": EntitySet(
            "A_MaterialStock",
            ("Material",),
            (key("Material", 40, "Material"), s("MaterialBaseUnit", 3, "Base Unit")),
            (Nav("to_MatlStkInAcctMod", "A_MatlStkInAcctMod", True, (("Material", "Material"),)),),
            label="Material Stock",
            creatable=False,
            updatable=False,
            deletable=False,
            stamped=False,
        ),
        "A_MatlStkInAcctMod": EntitySet(
            "A_MatlStkInAcctMod",
            _STOCK_KEYS,
            (
                key("Material", 40, "Material"),
                key("Plant", 4, "Plant"),
                key("StorageLocation", 4, "Storage Location"),
                key("Batch", 10, "Batch"),
                key("Supplier", 10, "Supplier"),
                key("Customer", 10, "Customer"),
                key("WBSElementInternalID", 8, "WBS Element"),
                key("SDDocument", 10, "Sales Order"),
                key("SDDocumentItem", 6, "Sales Order Item"),
                key("InventorySpecialStockType", 1, "Special Stock Type"),
                key("InventoryStockType", 2, "Stock Type"),
                s("MaterialBaseUnit", 3, "Base Unit"),
                dec("MatlWrhsStkQtyInMatlBaseUnit", 31, 14, "Stock Quantity"),
            ),
            (Nav("to_MaterialStock", "A_MaterialStock", False, (("Material", "Material"),)),),
            label="Stock in Account Model",
            creatable=False,
            updatable=False,
            deletable=False,
        ),
    },
)

RESERVATION = Service(
    "API_RESERVATION_DOCUMENT_SRV",
    "MM-IM-RS",
    {
        "A_ReservationDocumentHeader": EntitySet(
            "A_ReservationDocumentHeader",
            ("Reservation",),
            (
                key("Reservation", 10, "Reservation"),
                s("OrderID", 12, "Order"),
                s("GoodsMovementType", 3, "Movement Type", required=True, codes="movement_type"),
                s("CostCenter", 10, "Cost Center"),
                s("GoodsRecipientName", 12, "Goods Recipient"),
                date("ReservationDate", "Base Date"),
                flag("IsCheckedAgainstFactoryCal", "Factory Calendar Check"),
                s("ControllingArea", 4, "Controlling Area"),
                s("IssuingOrReceivingPlant", 4, "Receiving Plant"),
                s("IssuingOrReceivingStorageLoc", 4, "Receiving Storage Location"),
                s("SalesOrder", 10, "Sales Order"),
                s("UserID", 12, "User Name", readonly=True),
                HUB_ID,
            ),
            (
                Nav(
                    "to_ReservationDocumentItem",
                    "A_ReservationDocumentItem",
                    True,
                    (("Reservation", "Reservation"),),
                ),
            ),
            label="Reservation Header",
            numbering=Numbering("Reservation", 10, start=1),
        ),
        "A_ReservationDocumentItem": EntitySet(
            "A_ReservationDocumentItem",
            ("Reservation", "ReservationItem", "RecordType"),
            (
                key("Reservation", 10, "Reservation"),
                key("ReservationItem", 4, "Item"),
                key("RecordType", 1, "Record Type"),
                s("Product", 40, "Product", required=True),
                s("Plant", 4, "Plant", required=True),
                s("StorageLocation", 4, "Storage Location"),
                s("Batch", 10, "Batch"),
                date("MatlCompRequirementDate", "Requirement Date"),
                dec(
                    "ResvnItmRequiredQtyInEntryUnit",
                    13,
                    3,
                    "Quantity in Entry Unit",
                    display_format="NonNegative",
                ),
                s("EntryUnit", 3, "Unit of Entry"),
                dec(
                    "ResvnItmRequiredQtyInBaseUnit",
                    13,
                    3,
                    "Requirement Quantity",
                    display_format="NonNegative",
                ),
                s("BaseUnit", 3, "Base Unit"),
                dec("ResvnItmWithdrawnQtyInBaseUnit", 13, 3, "Quantity Withdrawn"),
                s("GoodsMovementType", 3, "Movement Type"),
                s("DebitCreditCode", 1, "Debit/Credit"),
                flag("GoodsMovementIsAllowed", "Movement Allowed"),
                flag("ReservationItemIsFinallyIssued", "Final Issue"),
                flag("ReservationItmIsMarkedForDeltn", "Item Deleted"),
                s("ReservationItemText", 50, "Item Text"),
            ),
            (
                Nav(
                    "to_ReservationDocumentHeader",
                    "A_ReservationDocumentHeader",
                    False,
                    (("Reservation", "Reservation"),),
                ),
            ),
            label="Reservation Item",
            numbering=Numbering("ReservationItem", 4, start=1, step=1, per_parent=True),
            parent="A_ReservationDocumentHeader",
            parent_on=(("Reservation", "Reservation"),),
            stamped=False,
        ),
    },
)

SERVICES: dict[str, Service] = {
    svc.name: svc
    for svc in (BUSINESS_PARTNER, SALES_CONTRACT, BILLING_DOCUMENT, MATERIAL_STOCK, RESERVATION)
}


@cache
def services_for(hub_id_field: str = DEFAULT_HUB_ID_FIELD) -> dict[str, Service]:
    """The services with the hub id's extension field declared as ``hub_id_field`` (what
    a customer's key-user extension calls it), everything else as in :data:`SERVICES`."""
    if hub_id_field == DEFAULT_HUB_ID_FIELD:
        return SERVICES

    def renamed(es: EntitySet) -> EntitySet:
        props = tuple(replace(p, name=hub_id_field) if p is HUB_ID else p for p in es.props)
        return replace(es, props=props)

    return {
        name: Service(svc.name, svc.component, {n: renamed(es) for n, es in svc.sets.items()})
        for name, svc in SERVICES.items()
    }


def find_set(
    entity_set: str, hub_id_field: str = DEFAULT_HUB_ID_FIELD
) -> tuple[Service, EntitySet]:
    """Entity set names are unique across the emulated services; seeding uses this."""
    for svc in services_for(hub_id_field).values():
        if entity_set in svc.sets:
            return svc, svc.sets[entity_set]
    raise KeyError(f"unknown SAP entity set {entity_set!r}")

"""The org's objects and fields, as data.

Everything the emulator enforces (types, lengths, required fields, picklists, external
ids, references, what is read-only) and what ``describe`` returns comes from here, so the
rules and their documentation cannot drift apart. Field names follow Salesforce
conventions: standard fields as Salesforce names them, custom ones with ``__c``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

SYSTEM_FIELDS = (
    "Id",
    "IsDeleted",
    "CreatedDate",
    "CreatedById",
    "LastModifiedDate",
    "LastModifiedById",
    "SystemModstamp",
)
CURRENCIES = (
    "USD", "EUR", "GBP", "JPY", "CAD", "AUD", "CHF", "SEK", "NOK", "DKK", "KWD", "AED",
    "NZD", "SGD", "HKD", "PLN", "CZK", "INR", "BRL", "MXN", "ZAR", "CNY",
)  # fmt: skip
CORPORATE_CURRENCY = "USD"
#: the length a Long Text Area gets unless its creator sets another (256 to 131,072)
LONG_TEXT_AREA = 32_768
#: ISO 3166 codes and the names Salesforce's State and Country/Territory Picklists use as
#: their labels and integration values: the countries the emulated org allows
COUNTRIES: dict[str, str] = {
    "AE": "United Arab Emirates", "AT": "Austria", "AU": "Australia", "BE": "Belgium",
    "BR": "Brazil", "CA": "Canada", "CH": "Switzerland", "CN": "China", "CZ": "Czechia",
    "DE": "Germany", "DK": "Denmark", "ES": "Spain", "FI": "Finland", "FR": "France",
    "GB": "United Kingdom", "HK": "Hong Kong", "IE": "Ireland", "IN": "India", "IT": "Italy",
    "JP": "Japan", "KW": "Kuwait", "MX": "Mexico", "NL": "Netherlands", "NO": "Norway",
    "NZ": "New Zealand", "PL": "Poland", "PT": "Portugal", "SE": "Sweden", "SG": "Singapore",
    "US": "United States", "ZA": "South Africa",
}  # fmt: skip
#: (code field, text field) of the addresses State and Country/Territory Picklists cover
COUNTRY_FIELDS = (
    ("BillingCountryCode", "BillingCountry"),
    ("ShippingCountryCode", "ShippingCountry"),
)
#: ISO 3166-2 subdivision codes (without the country prefix, as Salesforce's state
#: picklists have them) and their ISO 3166-2 names, of the allowed countries whose
#: addresses carry a state: every subdivision of the countries the sandbox seed gives
#: regions to (US, CA, AU, DE). The other countries have no states in the emulated org.
STATES: dict[str, dict[str, str]] = {
    "US": {
        "AL": "Alabama", "AK": "Alaska", "AZ": "Arizona", "AR": "Arkansas",
        "CA": "California", "CO": "Colorado", "CT": "Connecticut", "DE": "Delaware",
        "DC": "District of Columbia", "FL": "Florida", "GA": "Georgia", "HI": "Hawaii",
        "ID": "Idaho", "IL": "Illinois", "IN": "Indiana", "IA": "Iowa", "KS": "Kansas",
        "KY": "Kentucky", "LA": "Louisiana", "ME": "Maine", "MD": "Maryland",
        "MA": "Massachusetts", "MI": "Michigan", "MN": "Minnesota", "MS": "Mississippi",
        "MO": "Missouri", "MT": "Montana", "NE": "Nebraska", "NV": "Nevada",
        "NH": "New Hampshire", "NJ": "New Jersey", "NM": "New Mexico", "NY": "New York",
        "NC": "North Carolina", "ND": "North Dakota", "OH": "Ohio", "OK": "Oklahoma",
        "OR": "Oregon", "PA": "Pennsylvania", "RI": "Rhode Island", "SC": "South Carolina",
        "SD": "South Dakota", "TN": "Tennessee", "TX": "Texas", "UT": "Utah",
        "VT": "Vermont", "VA": "Virginia", "WA": "Washington", "WV": "West Virginia",
        "WI": "Wisconsin", "WY": "Wyoming",
    },
    "CA": {
        "AB": "Alberta", "BC": "British Columbia", "MB": "Manitoba", "NB": "New Brunswick",
        "NL": "Newfoundland and Labrador", "NS": "Nova Scotia", "NT": "Northwest Territories",
        "NU": "Nunavut", "ON": "Ontario", "PE": "Prince Edward Island", "QC": "Quebec",
        "SK": "Saskatchewan", "YT": "Yukon",
    },
    "AU": {
        "ACT": "Australian Capital Territory", "NSW": "New South Wales",
        "NT": "Northern Territory", "QLD": "Queensland", "SA": "South Australia",
        "TAS": "Tasmania", "VIC": "Victoria", "WA": "Western Australia",
    },
    "DE": {
        "BW": "Baden-Württemberg", "BY": "Bayern", "BE": "Berlin", "BB": "Brandenburg",
        "HB": "Bremen", "HH": "Hamburg", "HE": "Hessen", "MV": "Mecklenburg-Vorpommern",
        "NI": "Niedersachsen", "NW": "Nordrhein-Westfalen", "RP": "Rheinland-Pfalz",
        "SL": "Saarland", "SN": "Sachsen", "ST": "Sachsen-Anhalt", "SH": "Schleswig-Holstein",
        "TH": "Thüringen",
    },
}  # fmt: skip
#: (state code field, state text field, country code field it depends on)
STATE_FIELDS = (
    ("BillingStateCode", "BillingState", "BillingCountryCode"),
    ("ShippingStateCode", "ShippingState", "ShippingCountryCode"),
)


@dataclass(frozen=True)
class Picklist:
    values: tuple[str, ...]
    restricted: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    #: a dependent picklist: the controlling field and, per controlling value (every one,
    #: in the controller's order), {value: label} of the values valid for it
    controller: str | None = None
    dependent: dict[str, dict[str, str]] | None = None

    def entries(self) -> list[dict[str, Any]]:
        if self.dependent is not None:
            return self._dependent_entries(self.dependent)
        return [
            {
                "active": True,
                "defaultValue": False,
                "label": self.labels.get(v, v),
                "validFor": None,
                "value": v,
            }
            for v in self.values
        ]

    @staticmethod
    def _dependent_entries(dependent: dict[str, dict[str, str]]) -> list[dict[str, Any]]:
        """One entry per (controlling value, value): ``validFor`` is the base64 bitmap of
        the controlling values' indexes (most significant bit first), as describe has it."""
        out = []
        for index, values in enumerate(dependent.values()):
            bitmap = bytearray(index // 8 + 1)
            bitmap[index // 8] = 0x80 >> (index % 8)
            valid_for = base64.b64encode(bytes(bitmap)).decode("ascii")
            for value, label in values.items():
                out.append(
                    {
                        "active": True,
                        "defaultValue": False,
                        "label": label,
                        "validFor": valid_for,
                        "value": value,
                    }
                )
        return out


@dataclass(frozen=True)
class Field:
    name: str
    type: str  # id, string, textarea, email, phone, url, picklist, reference, boolean,
    # currency, double, int, percent, date, datetime
    label: str = ""
    length: int = 0
    precision: int = 0
    scale: int = 0
    required: bool = False  # createable, not nillable, no default
    createable: bool = True
    updateable: bool = True
    external_id: bool = False
    unique: bool = False
    picklist: Picklist | None = None
    reference_to: tuple[str, ...] = ()
    relationship_name: str | None = None
    #: the name the parent's describe gives this reference seen from the parent (its
    #: ``childRelationships`` ``relationshipName``, what a SOQL subquery selects FROM:
    #: ``Contacts`` for Contact.AccountId, ``Invoices__r`` for a custom lookup); None where
    #: the platform names none (the audit fields), so no subquery can traverse it
    child_relationship: str | None = None
    auto_number: bool = False
    default: Any = None

    @property
    def custom(self) -> bool:
        return self.name.endswith("__c")

    @property
    def nillable(self) -> bool:
        return not self.required and self.type not in ("boolean", "id") and not self.auto_number

    @property
    def groupable(self) -> bool:
        """Whether GROUP BY may name it: not decimals, date-times or long text."""
        return self.type not in ("double", "currency", "percent", "datetime", "textarea")

    @property
    def aggregatable(self) -> bool:
        """Whether an aggregate function (COUNT, MIN...) may take it: not long text or
        checkboxes."""
        return self.type not in ("textarea", "boolean")

    @property
    def display_label(self) -> str:
        if self.label:
            return self.label
        base = self.name.removesuffix("__c").removesuffix("Id") or self.name
        return base.replace("_", " ")


@dataclass(frozen=True)
class SObjectType:
    name: str
    label: str
    key_prefix: str
    fields: tuple[Field, ...]
    name_field: str = "Name"

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_lower", {f.name.lower(): f for f in self.fields})
        rels = {f.relationship_name.lower(): f for f in self.fields if f.relationship_name}
        object.__setattr__(self, "_by_relationship", rels)

    @property
    def custom(self) -> bool:
        return self.name.endswith("__c")

    def field(self, name: str) -> Field | None:
        """Field by name, case-insensitively as in SOQL and the REST API."""
        found: Field | None = self._by_lower.get(name.lower())  # type: ignore[attr-defined]
        return found

    def relationship(self, name: str) -> Field | None:
        found: Field | None = self._by_relationship.get(name.lower())  # type: ignore[attr-defined]
        return found

    @property
    def external_ids(self) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if f.external_id)


def _system(owner: bool = True) -> list[Field]:
    out = [
        Field("Id", "id", "Record ID", length=18, createable=False, updateable=False),
        Field("IsDeleted", "boolean", "Deleted", createable=False, updateable=False),
    ]
    if owner:
        out.append(
            Field(
                "OwnerId",
                "reference",
                "Owner ID",
                length=18,
                reference_to=("User",),
                relationship_name="Owner",
            )
        )
    for name, label, kind in (
        ("CreatedDate", "Created Date", "datetime"),
        ("CreatedById", "Created By ID", "reference"),
        ("LastModifiedDate", "Last Modified Date", "datetime"),
        ("LastModifiedById", "Last Modified By ID", "reference"),
        ("SystemModstamp", "System Modstamp", "datetime"),
    ):
        ref = ("User",) if kind == "reference" else ()
        rel = name.removesuffix("Id") if kind == "reference" else None
        length = 18 if kind == "reference" else 0
        out.append(
            Field(
                name,
                kind,
                label,
                length=length,
                createable=False,
                updateable=False,
                reference_to=ref,
                relationship_name=rel,
            )
        )
    return out


def _text(name: str, length: int, label: str = "", **kw: Any) -> Field:
    return Field(name, "string", label, length=length, **kw)


def _hub_id(label: str = "Hub ID") -> Field:
    return _text(name="Hub_Id__c", length=40, label=label, external_id=True, unique=True)


def _money(name: str, label: str = "") -> Field:
    # three decimals so Kuwaiti dinar amounts are kept exactly
    return Field(name, "currency", label, precision=18, scale=3)


def _ref(name: str, target: str, relationship: str, label: str = "", **kw: Any) -> Field:
    return Field(
        name, "reference", label, length=18, reference_to=(target,),
        relationship_name=relationship, **kw,
    )  # fmt: skip


def _pick(name: str, values: tuple[str, ...], restricted: bool, label: str = "",
          labels: dict[str, str] | None = None, length: int = 255, **kw: Any) -> Field:  # fmt: skip
    # custom picklists describe with length 255; standard ones as the Object Reference says
    return Field(
        name, "picklist", label, length=length,
        picklist=Picklist(values, restricted, labels or {}), **kw,
    )  # fmt: skip


_CURRENCY = _pick(
    "CurrencyIsoCode", CURRENCIES, True, "Currency ISO Code", length=3,
    default=CORPORATE_CURRENCY,
)  # fmt: skip
_ADDRESS = [
    Field("BillingStreet", "textarea", "Billing Street", length=255),
    _text("BillingCity", 40, "Billing City"),
    _text("BillingState", 80, "Billing State/Province"),
    _text("BillingPostalCode", 20, "Billing Zip/Postal Code"),
    _text("BillingCountry", 80, "Billing Country"),
    Field("ShippingStreet", "textarea", "Shipping Street", length=255),
    _text("ShippingCity", 40, "Shipping City"),
    _text("ShippingState", 80, "Shipping State/Province"),
    _text("ShippingPostalCode", 20, "Shipping Zip/Postal Code"),
    _text("ShippingCountry", 80, "Shipping Country"),
]

ACCOUNT = SObjectType(
    "Account",
    "Account",
    "001",
    (
        *_system(),
        _text("Name", 255, "Account Name", required=True),
        _pick(
            "Type",
            ("Prospect", "Customer", "Partner", "Reseller", "Other"),
            False,
            "Account Type",
            length=40,
        ),
        _ref(
            "ParentId", "Account", "Parent", "Parent Account ID", child_relationship="ChildAccounts"
        ),
        *_ADDRESS,
        Field("Phone", "phone", "Account Phone", length=40),
        Field("Website", "url", "Website", length=255),
        _CURRENCY,
        _hub_id(),
        _text("SAP_Customer_Number__c", 10, "SAP Customer Number", external_id=True),
        _text("Tax_Id__c", 30, "Tax ID"),
        _pick("Segment__c", ("SMB", "Mid-Market", "Enterprise"), True, "Segment"),
        Field("Dunning_Level__c", "double", "Dunning Level", precision=2, scale=0),
    ),
)

CONTACT = SObjectType(
    "Contact",
    "Contact",
    "003",
    (
        *_system(),
        _ref("AccountId", "Account", "Account", "Account ID", child_relationship="Contacts"),
        _text("FirstName", 40, "First Name"),
        _text("LastName", 80, "Last Name", required=True),
        _text("Name", 121, "Full Name", createable=False, updateable=False),
        Field("Email", "email", "Email", length=80),
        Field("Phone", "phone", "Business Phone", length=40),
        _text("Title", 128, "Title"),
        _CURRENCY,
        _hub_id(),
    ),
)

PRODUCT2 = SObjectType(
    "Product2",
    "Product",
    "01t",
    (
        *_system(owner=False),
        _text("Name", 255, "Product Name", required=True),
        _text("ProductCode", 255, "Product Code"),
        Field("Description", "textarea", "Product Description", length=4000),
        Field("IsActive", "boolean", "Active", default=False),
        _pick(
            "Family",
            ("software", "usage", "services", "hardware", "consumables"),
            False,
            "Product Family",
            length=40,
        ),
        _pick(
            "QuantityUnitOfMeasure",
            ("EA", "SEAT", "TB", "1K", "100", "CREDIT", "ROLL", "UNIT"),
            False,
            "Quantity Unit Of Measure",
        ),
        _CURRENCY,
        _hub_id("Hub ID (SKU)"),
    ),
)

SUBSCRIPTION = SObjectType(
    "Subscription__c",
    "Subscription",
    "a0S",
    (
        *_system(),
        _text("Name", 80, "Subscription Name", required=True),
        _hub_id(),
        _ref(
            "Account__c",
            "Account",
            "Account__r",
            "Account",
            required=True,
            child_relationship="Subscriptions__r",
        ),
        _pick(
            "Status__c",
            ("active", "trialing", "past_due", "paused", "canceled"),
            True,
            "Status",
        ),
        _pick("Billing_Period__c", ("month", "quarter", "year"), True, "Billing Period"),
        Field("Start_Date__c", "date", "Start Date"),
        Field("End_Date__c", "date", "End Date"),
        Field("Trial_End__c", "date", "Trial End"),
        Field("Renewal_Date__c", "date", "Renewal Date"),
        Field("Auto_Renew__c", "boolean", "Auto Renew", default=False),
        Field("Paused_At__c", "date", "Paused At"),
        Field("Resume_At__c", "date", "Resume At"),
        _CURRENCY,
        _money("MRR__c", "MRR"),
        Field("Items__c", "textarea", "Items", length=4000),
    ),
)

INVOICE = SObjectType(
    "Invoice__c",
    "Invoice",
    "a0I",
    (
        *_system(),
        _text("Name", 80, "Invoice Name", createable=False, updateable=False, auto_number=True),
        _hub_id(),
        _text("Invoice_Number__c", 30, "Invoice Number"),
        _ref(
            "Account__c",
            "Account",
            "Account__r",
            "Account",
            required=True,
            child_relationship="Invoices__r",
        ),
        _ref(
            "Subscription__c",
            "Subscription__c",
            "Subscription__r",
            "Subscription",
            child_relationship="Invoices__r",
        ),
        _pick(
            "Status__c",
            ("draft", "open", "paid", "void", "uncollectible"),
            True,
            "Status",
        ),
        Field("Issue_Date__c", "date", "Issue Date"),
        Field("Due_Date__c", "date", "Due Date"),
        _CURRENCY,
        _money("Subtotal_Amount__c", "Subtotal Amount"),
        _money("Tax_Amount__c", "Tax Amount"),
        _money("Total_Amount__c", "Total Amount"),
        _money("Amount_Paid__c", "Amount Paid"),
        Field("Dunning_Stage__c", "double", "Dunning Stage", precision=2, scale=0),
        # a Long Text Area (32,768, Salesforce's default length): one line per dunning
        # event, as mappings/salesforce/invoice.yaml explains
        Field("Dunning_History__c", "textarea", "Dunning History", length=LONG_TEXT_AREA),
        _text("SAP_Billing_Document__c", 10, "SAP Billing Document", external_id=True),
    ),
)

USER = SObjectType(
    "User",
    "User",
    "005",
    (
        Field("Id", "id", "User ID", length=18, createable=False, updateable=False),
        _text("Username", 80, "Username", required=True),
        _text("Name", 121, "Full Name", createable=False, updateable=False),
        _text("LastName", 80, "Last Name", required=True),
        Field("Email", "email", "Email", length=128, required=True),
        Field("IsActive", "boolean", "Active", default=True),
        *_system(owner=False)[2:],
    ),
)

ORGANIZATION = SObjectType(
    "Organization",
    "Organization",
    "00D",
    (
        Field("Id", "id", "Organization ID", length=18, createable=False, updateable=False),
        _text("Name", 80, "Name", createable=False, updateable=False),
        _pick(
            "DefaultCurrencyIsoCode",
            CURRENCIES,
            True,
            "Currency ISO Code",
            length=3,
            createable=False,
            updateable=False,
        ),
        _text("InstanceName", 5, "Instance Name", createable=False, updateable=False),
        Field("IsSandbox", "boolean", "Is Sandbox", createable=False, updateable=False),
        *_system(owner=False)[2:],
    ),
)

OBJECTS: dict[str, SObjectType] = {
    o.name.lower(): o
    for o in (ACCOUNT, CONTACT, PRODUCT2, SUBSCRIPTION, INVOICE, USER, ORGANIZATION)
}
BY_PREFIX: dict[str, SObjectType] = {o.key_prefix: o for o in OBJECTS.values()}
AUTO_NUMBER_FORMATS = {"Invoice__c": "INV-{:07d}"}


def sobject(name: str) -> SObjectType | None:
    """The object type by API name, case-insensitively (as the REST API resolves it), in
    the default org (multi-currency, no State and Country/Territory Picklists)."""
    return OBJECTS.get(name.lower())


@dataclass(frozen=True, eq=False)
class Schema:
    """The objects of one org, as its settings shape them: ``CurrencyIsoCode`` exists
    only in a multi-currency org; with State and Country/Territory Picklists an address
    has ``<Address>CountryCode`` beside the country's name."""

    objects: dict[str, SObjectType]
    multi_currency: bool
    country_picklists: bool
    default_currency: str

    def sobject(self, name: str) -> SObjectType | None:
        return self.objects.get(name.lower())

    def by_prefix(self, prefix: str) -> SObjectType | None:
        return next((o for o in self.objects.values() if o.key_prefix == prefix), None)

    def child_relationships(self, parent: str) -> tuple[ChildRelationship, ...]:
        """The references other objects hold to ``parent``, as its describe lists them
        and SOQL subqueries traverse them (``OwnerId`` left out, as describe has always
        done here)."""
        return _child_relationships(self, parent)

    def child_relationship(self, parent: str, name: str) -> ChildRelationship | None:
        """A named child relationship of ``parent``, case-insensitively as SOQL reads it."""
        wanted = name.lower()
        return next(
            (
                c
                for c in self.child_relationships(parent)
                if c.name is not None and c.name.lower() == wanted
            ),
            None,
        )


@dataclass(frozen=True)
class ChildRelationship:
    """One entry of a parent's ``childRelationships``: ``child`` points at the parent
    through its reference ``field``; ``name`` is what a subquery selects FROM."""

    child: SObjectType
    field: Field

    @property
    def name(self) -> str | None:
        return self.field.child_relationship


@lru_cache(maxsize=128)
def _child_relationships(schema: Schema, parent: str) -> tuple[ChildRelationship, ...]:
    return tuple(
        ChildRelationship(other, f)
        for other in schema.objects.values()
        for f in other.fields
        if f.reference_to and f.reference_to[0] == parent and f.name != "OwnerId"
    )


def _currency_field(default_currency: str) -> Field:
    return replace(_CURRENCY, default=default_currency)


def _shape(
    obj: SObjectType, multi_currency: bool, country_picklists: bool, default_currency: str
) -> SObjectType:
    fields: list[Field] = []
    for f in obj.fields:
        if f.name == "CurrencyIsoCode":
            if multi_currency:
                fields.append(_currency_field(default_currency))
            continue
        if f.name == "DefaultCurrencyIsoCode":
            values = CURRENCIES if multi_currency else (default_currency,)
            fields.append(replace(f, picklist=Picklist(values, True)))
            continue
        fields.append(f)
        if country_picklists and obj.name == "Account":
            for code, text in COUNTRY_FIELDS:
                if f.name == text:
                    label = text.removesuffix("Country") + " Country Code"
                    fields.append(_pick(code, tuple(COUNTRIES), False, label, COUNTRIES, length=10))
            for code, text, country in STATE_FIELDS:
                if f.name == text:
                    fields.append(_state_code(code, text, country))
    return SObjectType(obj.name, obj.label, obj.key_prefix, tuple(fields), obj.name_field)


def _state_code(code: str, text: str, country: str) -> Field:
    """``<Address>StateCode``: the subdivision's code, dependent on the country code (in
    the order of the country picklist, so ``validFor`` indexes it)."""
    dependent = {c: STATES.get(c, {}) for c in COUNTRIES}
    values = tuple(dict.fromkeys(v for states in dependent.values() for v in states))
    label = text.removesuffix("State") + " State Code"
    return Field(
        code, "picklist", label, length=10,
        picklist=Picklist(values, False, {}, controller=country, dependent=dependent),
    )  # fmt: skip


@lru_cache(maxsize=16)
def org_schema(
    multi_currency: bool = True,
    country_picklists: bool = False,
    default_currency: str = CORPORATE_CURRENCY,
) -> Schema:
    """The schema of an org with these settings (one instance per combination, so parsed
    queries can be cached per schema)."""
    objects = {
        key: _shape(obj, multi_currency, country_picklists, default_currency)
        for key, obj in OBJECTS.items()
    }
    return Schema(objects, multi_currency, country_picklists, default_currency)


DEFAULT_SCHEMA = org_schema()

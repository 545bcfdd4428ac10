"""SAP S/4HANA over OData v2 with pyodata (on a requests session: basic auth, sap-client,
HUB_CA_BUNDLE), as the published APIs in docs/sandbox-sap.md.

Entities: ``customer`` (A_Customer with its sales area, the business partner's tax number
read alongside), ``subscription`` (A_SalesContract with items), ``invoice``
(A_BillingDocument), ``allocation`` (A_ReservationDocumentHeader with its one item, its
flags read as a fulfilment status: see reservation_status). Reads page through ``__next``.
Changes are found as each published API allows (CHANGE_DETECTION): contracts and billing
documents by their ``LastChangeDateTime`` (a ``datetimeoffset'...Z'`` literal), customers
through their business partner's ``LastChangeDate`` + ``LastChangeTime`` (A_Customer has
no change stamp), each ordered with the key as tie-break. Their cursor is the last
record's stamp and key, ``stamp|key``, the stamp an aware UTC time in ISO 8601 (a cursor
stored before, without the offset, is read as UTC); at one stamp keys compare as S/4 orders
them (numbers, the ALPHA conversion's internal form, as numbers). Each read starts
``SAP_CURSOR_OVERLAP_SECONDS`` (5 minutes) before the cursor, so a record committed late
with an earlier stamp is read too; with no overlap, what the cursor already covers at its
stamp is dropped. Reservations have no date at all: they are compared with the content
hashes their cursor keeps (``hash2:...``), so an unchanged book hands on nothing; the
compare reads (``$select``) and hashes only the fields the hub's mappings read.

Writes: the CSRF token is fetched once per session (and again when SAP answers "CSRF token
validation failed"); a batch goes out as one ``$batch`` with one change set per record, so a
bad record cannot roll back the good ones; updates carry the ETag in ``If-Match`` and a 412
re-reads the record and tries once more before reporting a conflict. If a ``$batch`` fails
as a whole, what landed is read back before anything is re-sent one by one, so no create is
applied twice.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import orjson
import pyodata
import requests
from pyodata.exceptions import HttpError, PyODataException
from pyodata.v2.service import EntityKey

from connectors.base import (
    Batch,
    Health,
    MappedObject,
    MappedObjects,
    NativeRecord,
    Outcome,
    Window,
    WriteResult,
)
from connectors.errors import (
    AuthError,
    ConnectorError,
    PermanentError,
    SystemUnavailableError,
    TransientError,
)
from connectors.http import requests_session
from connectors.redact import redact, register_secret
from connectors.retry import RetryPolicy, call_with_retry, parse_retry_after
from connectors.settings import (
    CURSOR_OVERLAP_SECONDS,
    ca_bundle_env,
    cursor_overlap_env,
    env_var,
    read_settings,
    timeout_env,
)

SYSTEM = "sap"
T = TypeVar("T")
ODATA_ROOT = "/sap/opu/odata/sap"
RETRYABLE = frozenset({408, 429, 500, 502, 503, 504})
#: connector-private keys on native records (never mapped, never sent)
ETAG = "__etag"
#: The name the hub id travels under on native records, both ways (the mappings'
#: ``hub_id_field``). In SAP it is a key-user extension field named by the customer's
#: extension: ``SapSettings.hub_id_field`` (``SAP_HUB_ID_FIELD``) is what the connector
#: reads, writes and filters on the wire.
HUB_ID = "YY1_HubId"
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
SALES_AREA = {"SalesOrganization": "1010", "DistributionChannel": "10", "Division": "00"}
#: Edm.DateTime fields the hub sends as ISO dates (pyodata wants datetimes for them)
DATE_FIELDS = frozenset(
    {
        "BillingDocumentDate",
        "SalesContractValidityStartDate",
        "SalesContractValidityEndDate",
        "ReservationDate",
        "MatlCompRequirementDate",
    }
)
#: SAP's "valid until further notice": a contract without an end date ends on 9999-12-31
OPEN_END = datetime(9999, 12, 31, tzinfo=UTC)
OPEN_END_TEXT = "9999-12-31T00:00:00Z"
#: an item date that says none: SAP's "until further notice", and the day pyodata reads
#: a null Edm.DateTime as (its minimum, 1753-01-01)
NO_DATE = ("9999-12-31", "1753-01-01")
#: a contract's header fields on create, besides what the hub sends (sales area, type WK1:
#: the value contract subscriptions are kept as)
CONTRACT_DEFAULTS = {
    "SalesContractType": "WK1",
    "SalesOrganization": SALES_AREA["SalesOrganization"],
    "DistributionChannel": SALES_AREA["DistributionChannel"],
    "OrganizationDivision": SALES_AREA["Division"],
}

#: The change stamp of the headers that have one (A_SalesContract, A_BillingDocument).
STAMP = "LastChangeDateTime"
#: How each entity's changes are found, as its published API allows: ``stamp`` filters
#: the header's LastChangeDateTime; ``partner`` reads the business partners changed since
#: (LastChangeDate + LastChangeTime) with their customer role, A_Customer having no change
#: stamp; ``snapshot`` compares the whole book with the content hashes kept in the cursor,
#: reservations having no date at all (docs/connector-sap.md, "Change detection").
CHANGE_DETECTION = {
    "customer": "partner",
    "subscription": "stamp",
    "invoice": "stamp",
    "allocation": "snapshot",
}
PARTNER = "A_BusinessPartner"
#: the business partner's change stamp on a customer record (ISO 8601 UTC, to the second)
PARTNER_CHANGED = "BusinessPartnerLastChange"
#: a snapshot cursor: the content hash of every record by key, under the signature of
#: the fields hashed (see _encode_hashes)
HASH_CURSOR = "hash2:"

#: a reservation's movement type on create: 601, goods issue for delivery (subscription
#: deliveries leave the plant for the customer)
RESERVATION_DEFAULTS = {"GoodsMovementType": "601"}
#: the entity set of a reservation's items (its ``to_ReservationDocumentItem``)
RESERVATION_ITEMS = "A_ReservationDocumentItem"
#: reservation item fields the hub writes (the header carries the contract and hub id)
RESERVATION_ITEM_FIELDS = (
    "Product",
    "Plant",
    "ResvnItmRequiredQtyInBaseUnit",
    "MatlCompRequirementDate",
    "ResvnItmWithdrawnQtyInBaseUnit",
    "GoodsMovementIsAllowed",
    "ReservationItemIsFinallyIssued",
    "ReservationItmIsMarkedForDeltn",
)
#: the synthetic field a reservation's fulfilment state travels in (see reservation_status)
FULFILMENT_STATUS = "FulfilmentStatus"
#: the reservation item's flags reservation_status reads
STATUS_FLAGS = (
    "ReservationItmIsMarkedForDeltn",
    "ReservationItemIsFinallyIssued",
    "GoodsMovementIsAllowed",
)
#: A contract's items on its native record (the mappings' child object): read through
#: ``to_Item``, written by the hub's item id they carry (ITEM_HUB_ID), see ContractItems.
CONTRACT_ITEMS = "A_SalesContractItem"
#: the key-user extension field a contract item carries the hub's item id in
ITEM_HUB_ID = "YY1_HubItemId"
#: the contract item fields the hub writes: NetAmount (what the item bills per period) is
#: SD's own figure, so it is sent as the net price of the item's whole quantity
#: (NetPriceAmount per NetPriceQuantity = RequestedQuantity), which makes it exactly that
ITEM_FIELDS = (
    ITEM_HUB_ID,
    "Material",
    "RequestedQuantity",
    "NetAmount",
    "SalesContractValidityStartDate",
    "SalesContractValidityEndDate",
)


def reservation_status(item: Mapping[str, Any]) -> str:
    """A reservation item's flags as the hub's allocation status. SAP has no status field
    on a reservation: a deleted item is a released allocation, a finally issued one was
    shipped, one released for goods movement was picked (ready to issue), and anything
    else is still reserved."""
    if _flag(item.get("ReservationItmIsMarkedForDeltn")):
        return "released"
    if _flag(item.get("ReservationItemIsFinallyIssued")):
        return "shipped"
    if _flag(item.get("GoodsMovementIsAllowed")):
        return "picked"
    return "reserved"


def reservation_flags(status: str, required: Any) -> dict[str, Any]:
    """The item flags (and withdrawn quantity) that say ``status`` - reservation_status's
    inverse; a shipped item has had its whole required quantity withdrawn."""
    shipped = status == "shipped"
    return {
        "ReservationItmIsMarkedForDeltn": status == "released",
        "ReservationItemIsFinallyIssued": shipped,
        "GoodsMovementIsAllowed": status in ("picked", "shipped"),
        "ResvnItmWithdrawnQtyInBaseUnit": _wire(required) if shipped else Decimal(0),
    }


def _flag(value: Any) -> bool:
    return value is True or str(value).lower() in ("true", "x")


@dataclass(frozen=True)
class EntityRoute:
    """Where an entity lives in S/4 and how it is read."""

    service: str
    entity_set: str
    key: str
    expand: str = ""
    #: header fields sent on create/update (everything else is read-only or a child)
    writable: tuple[str, ...] = ()
    #: fields of the one child record the hub keeps flat on the native record (the
    #: customer's sales area, the reservation's item): written through the child's own set
    child: tuple[str, ...] = ()


ROUTES: dict[str, EntityRoute] = {
    "customer": EntityRoute(
        "API_BUSINESS_PARTNER",
        "A_Customer",
        "Customer",
        expand="to_CustomerSalesArea",
        writable=(
            "CustomerName",
            "CustomerFullName",
            "YY1_CreditLimitAmount",
            "YY1_CreditLimitCurrency",
            "TaxNumber1",
            HUB_ID,
        ),
        child=("Currency", "CustomerPaymentTerms"),
    ),
    "subscription": EntityRoute(
        "API_SALES_CONTRACT_SRV",
        "A_SalesContract",
        "SalesContract",
        expand="to_Item",
        writable=(
            "SoldToParty",
            "PurchaseOrderByCustomer",
            "SalesContractValidityStartDate",
            "SalesContractValidityEndDate",
            "TransactionCurrency",
            HUB_ID,
        ),
    ),
    "invoice": EntityRoute(
        "API_BILLING_DOCUMENT_SRV",
        "A_BillingDocument",
        "BillingDocument",
        writable=(
            "SoldToParty",
            "PayerParty",
            "BillingDocumentDate",
            "TotalNetAmount",
            "TaxAmount",
            "TotalGrossAmount",
            "TransactionCurrency",
            HUB_ID,
        ),
    ),
    "allocation": EntityRoute(
        "API_RESERVATION_DOCUMENT_SRV",
        "A_ReservationDocumentHeader",
        "Reservation",
        expand="to_ReservationDocumentItem",
        writable=("SalesOrder", "ReservationDate", HUB_ID),
        child=RESERVATION_ITEM_FIELDS,
    ),
}


@dataclass
class SapSettings:
    url: str = field(
        metadata=env_var(
            "SAP_ODATA_URL",
            required=True,
            doc="host root; services under /sap/opu/odata/sap/<SERVICE>/",
        )
    )
    user: str = field(metadata=env_var("SAP_USER"))
    password: str = field(metadata=env_var("SAP_PASSWORD", secret=True))
    client: str = field(default="", metadata=env_var("SAP_CLIENT", doc="sap-client"))
    ca_bundle: str | None = field(default=None, metadata=ca_bundle_env())
    timeout: float = field(default=60.0, metadata=timeout_env())
    #: hub ids per ``or`` filter: S/4 URLs stay well under the 8 KB ICM line limit
    keys_per_query: int = 100
    batch_size: int = 100
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: How far before its cursor each incremental read starts again, so a record committed
    #: late with an earlier stamp is still read (the re-read ones are unchanged for the
    #: sync's fingerprints); a larger overlap costs only re-reading. 0 turns it off.
    cursor_overlap_seconds: float = field(
        default=CURSOR_OVERLAP_SECONDS,
        metadata=cursor_overlap_env("SAP_CURSOR_OVERLAP_SECONDS"),
    )
    #: The key-user extension field that holds the hub id on every entity the hub writes
    #: (its name is the customer's extension's, e.g. YY1_HubId or YY1_HubId_bus).
    hub_id_field: str = field(
        default=HUB_ID,
        metadata=env_var(
            "SAP_HUB_ID_FIELD",
            doc=f"the extension field holding the hub id (default {HUB_ID})",
            parse=lambda raw: _field_name("SAP_HUB_ID_FIELD", raw),
        ),
    )


@dataclass(frozen=True)
class Projection:
    """What a snapshot compare reads of an entity and hashes: the ``$select`` (the key,
    the hub id and the fields the mappings read, paths into the expanded child for the
    child's) and the native record's fields the hash covers."""

    select: str
    fields: tuple[str, ...]


class SapConnector:
    system = SYSTEM

    def __init__(self, settings: SapSettings, objects: MappedObjects | None = None) -> None:
        self.settings = settings
        #: what the hub's mappings read and write of each entity (hub.systems.connect);
        #: without them a snapshot compare reads and hashes whole records
        self.objects: dict[str, MappedObject] = dict(objects or {})
        self._projections: dict[str, Projection | None] = {}
        register_secret(settings.password)
        self.session = requests_session(settings.ca_bundle, timeout=settings.timeout)
        self.session.auth = (settings.user, settings.password)
        # SAP Gateway answers Atom XML unless JSON is asked for; pyodata asks on its reads
        # and writes but not on a DELETE, and the connector's own calls (CSRF fetch,
        # health) read SAP's error message as JSON
        self.session.headers["Accept"] = "application/json"
        if settings.client:
            self.session.params = {"sap-client": settings.client}
        self._clients: dict[str, Any] = {}
        self._csrf = False
        self.session.hooks["response"].append(self._remember_csrf)

    def _remember_csrf(self, response: requests.Response, *_: Any, **__: Any) -> requests.Response:
        """Keep a CSRF token SAP hands out on any GET that asked for one (the first page
        of a read does), so a later $batch needs no token fetch of its own."""
        token = response.headers.get("x-csrf-token", "")
        if response.ok and token and token.lower() != "required":
            self.session.headers["X-CSRF-Token"] = token
            self._csrf = True
        return response

    # -- plumbing -----------------------------------------------------------------------
    @property
    def _hub_field(self) -> str:
        """The hub id's field on the wire (SAP_HUB_ID_FIELD)."""
        return self.settings.hub_id_field

    def _to_wire(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Values to send: decimals as strings, the hub id under SAP's field name."""
        out = _to_send(values)
        if HUB_ID in out and self._hub_field != HUB_ID:
            out[self._hub_field] = out.pop(HUB_ID)
        return out

    def _service_url(self, service: str) -> str:
        return f"{self.settings.url.rstrip('/')}{ODATA_ROOT}/{service}/"

    def _client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self._call(
                lambda: pyodata.Client(self._service_url(service), self.session)
            )
        return self._clients[service]

    def _call_once(self, fn: Callable[[], T]) -> T:
        """Like :meth:`_call` but a transient failure is raised, not retried."""
        once = RetryPolicy(
            max_attempts=1,
            max_seconds=self.settings.retry.max_seconds,
            initial_wait=0,
            max_wait=0,
            jitter=0,
        )
        saved, self.settings.retry = self.settings.retry, once
        try:
            return self._call(fn)
        except SystemUnavailableError as exc:
            raise TransientError(SYSTEM, str(exc)) from None
        finally:
            self.settings.retry = saved

    def _fetch_csrf(self, service: str) -> None:
        self.session.headers.pop("X-CSRF-Token", None)
        response = self.session.get(
            self._service_url(service),
            headers={"X-CSRF-Token": "Fetch"},
            timeout=self.settings.timeout,
        )
        _raise_for(response)
        self.session.headers["X-CSRF-Token"] = response.headers.get("x-csrf-token", "")
        self._csrf = True

    def _call(self, fn: Callable[[], T]) -> T:
        """One OData interaction, with transient failures retried (honouring
        Retry-After) and every failure classified and redacted."""

        def attempt() -> T:
            try:
                return fn()
            except HttpError as exc:
                raise _classify(exc.response) from None
            except requests.exceptions.SSLError as exc:
                raise PermanentError(
                    SYSTEM,
                    f"TLS verification of {self.settings.url} failed ({redact(str(exc))[:200]});"
                    " point HUB_CA_BUNDLE at the CA that signed SAP's certificate",
                ) from None
            except requests.RequestException as exc:
                raise TransientError(SYSTEM, f"{type(exc).__name__}: {redact(str(exc))}") from None

        return call_with_retry(SYSTEM, attempt, self.settings.retry)

    def _pages(self, entity_set: Any, page: Any) -> Iterator[Any]:
        """A first page and every page its ``__next`` links lead to, one round trip each."""
        while True:
            yield page
            if not page.next_url:
                return
            next_url: str = page.next_url

            def more(url: str = next_url) -> Any:
                return entity_set.get_entities().next_url(url).execute()

            page = self._call(more)

    def entities(self) -> Sequence[str]:
        return list(ROUTES)

    def native_fields(self) -> dict[str, frozenset[str]]:
        """{entity set: field names} as the live services' ``$metadata`` declares them, in
        the names records are handed to the mappings: the header's own properties, the
        fields the connector keeps flat from a child (the sales area's currency and terms,
        the reservation item's), the ones it derives (``TaxNumber``, ``AmountCleared``,
        ``FulfilmentStatus``) where what they come from is declared, and the hub id as
        ``YY1_HubId`` where SAP_HUB_ID_FIELD's field exists. One ``$metadata`` call per
        service, which every read makes anyway."""
        out: dict[str, frozenset[str]] = {}
        for entity, route in ROUTES.items():
            schema = self._client(route.service).schema
            header = _declared(schema, route.entity_set)
            names = header - {self._hub_field, HUB_ID}
            if self._hub_field in header:
                names.add(HUB_ID)
            if entity == "customer":
                names |= _declared(schema, "A_CustomerSalesArea") & set(route.child)
                if "BPTaxNumber" in _declared(schema, "A_BusinessPartnerTaxNumber") or (
                    "TaxNumber1" in header
                ):
                    names.add("TaxNumber")
                partner = _declared(schema, PARTNER)
                if {"BusinessPartner", "Customer", "LastChangeDate", "LastChangeTime"} <= partner:
                    names |= {"BusinessPartner", PARTNER_CHANGED}  # read through the partner
            elif entity == "subscription":
                out[CONTRACT_ITEMS] = frozenset(_declared(schema, CONTRACT_ITEMS))
            elif entity == "invoice":
                names.discard("YY1_AmountCleared")
                if {"YY1_AmountCleared", "InvoiceClearingStatus"} <= header:
                    names.add("AmountCleared")
            elif entity == "allocation":
                item = _declared(schema, RESERVATION_ITEMS)
                names |= item & {*RESERVATION_ITEM_FIELDS, "ReservationItem"}
                if set(STATUS_FLAGS) <= item:
                    names.add(FULFILMENT_STATUS)
            out[route.entity_set] = frozenset(names)
        return out

    def missing_field_fix(self, obj: str, name: str) -> str | None:
        """What to do when ``native_fields`` lacks ``name`` in ``obj``, where SAP has its
        own answer: the hub id is the customer's extension field, named by them."""
        if name != HUB_ID:
            return None
        return (
            f"the hub id is read from the extension field {self._hub_field!r} of {obj}: set "
            "SAP_HUB_ID_FIELD to the name your key-user extension gives it, or add the "
            "extension field to the business context"
        )

    # -- reads --------------------------------------------------------------------------
    def _query(
        self,
        entity: str,
        where: str,
        order: bool = True,
        *,
        via_partner: bool = False,
        select: str = "",
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of native records; one page per server round trip (``__next``). With
        ``via_partner`` (customers only), the business partners that are customers are
        read, each with its customer role and sales areas expanded, ``where`` and the
        order on the partner's change stamp (A_Customer has none). ``select``: the
        ``$select`` (everything when blank)."""
        route = ROUTES[entity]
        client = self._client(route.service)
        set_name, expand, ordering = route.entity_set, route.expand, f"{STAMP} asc,{route.key} asc"
        if via_partner:
            set_name, expand = PARTNER, f"to_Customer/{route.expand}"
            ordering = "LastChangeDate asc,LastChangeTime asc,BusinessPartner asc"
            where = f"Customer ne '' and ({where})" if where else "Customer ne ''"
        entity_set = getattr(client.entity_sets, set_name)

        def query() -> Any:
            request = entity_set.get_entities()
            if where:
                request = request.filter(where)
            if order:
                request = request.order_by(ordering)
            if expand:
                request = request.expand(expand)
            if select:
                request = request.select(select)
            return request

        def first() -> Any:
            request = query()
            if entity == "customer" and not self._csrf:  # for the $batch reads below
                request.add_headers({"X-CSRF-Token": "Fetch"})
            return request.execute()

        page = self._call(first)
        while True:
            if via_partner:
                roles = (self._customer_of(partner) for partner in page)
                records = [r for r in roles if r is not None]
            else:
                records = [self._native(entity, e) for e in page]
            next_url = page.next_url
            token = _skiptoken(next_url)
            if entity == "customer" and records and token and self._csrf:
                # the tax numbers of this page ride in one $batch with the next page
                page = self._tax_and_next_page(records, query, token)
                yield records
                continue
            if entity == "customer":
                self._add_tax_numbers(records)
            yield records
            if not next_url:
                return

            def more(url: str = next_url) -> Any:
                return entity_set.get_entities().next_url(url).execute()

            page = self._call(more)

    def read_changes(self, entity: str, cursor: str | None) -> Iterator[Batch]:
        """Records changed since ``cursor`` (everything when None), by the entity's change
        detection (CHANGE_DETECTION): by the header's stamp (contracts, billing
        documents), by the business partner's stamp (customers), by comparing the whole
        book with the content hashes the cursor keeps (reservations, which have no stamp)."""
        if CHANGE_DETECTION[entity] == "snapshot":
            yield from self._changes_by_hash(entity, cursor)
        else:
            yield from self._changes_by_stamp(entity, cursor)

    def _changes_by_stamp(self, entity: str, cursor: str | None) -> Iterator[Batch]:
        """Records changed since ``cursor`` in (stamp, key) order, one batch per server
        page. The read starts the overlap before the cursor's stamp; a batch's cursor never
        moves back, so while the overlap is re-read it stays put."""
        via_partner = CHANGE_DETECTION[entity] == "partner"
        stamp, key = _stamp_and_key(entity)
        stored = _decode_cursor(cursor)
        overlap = timedelta(seconds=self.settings.cursor_overlap_seconds)
        where = ""
        if stored is not None:
            try:
                start = stored[0] - overlap
            except OverflowError:  # a cursor near year 1: read from the beginning
                start = None
            if start is not None:
                where = _since(entity, start)
        for records in self._query(entity, where, via_partner=via_partner):
            if stored is not None and not overlap:  # no re-read: only what is after it
                records = [r for r in records if _position(r, stamp, key) > stored]
            if not records:
                continue
            last = _position(records[-1], stamp, key)
            if stored is None or last > stored:
                yield Batch(records, _encode_cursor(records[-1], stamp, key))
            else:  # still re-reading the overlap: the cursor stays where it was
                yield Batch(records, cursor)

    def _changes_by_hash(self, entity: str, cursor: str | None) -> Iterator[Batch]:
        """A keyed snapshot compare: every record is read (one call per server page) and
        hashed; the records whose hash differs from the one the cursor keeps (or that it
        does not know) are handed on, a page's worth per batch, without a cursor; a last,
        empty batch carries the new hashes, only when they differ. An unchanged book
        yields nothing, so it costs its pages and no writes anywhere; a crash before the
        last batch re-reads, and hands on again, what changed. Only what the mappings
        read is asked for and hashed (see _projection): a change to anything else is no
        change to the hub. The cursor is signed with the fields hashed, so hashes taken
        over other fields (the mappings changed) count as none: everything once."""
        key = ROUTES[entity].key
        projection = self._projection(entity)
        fields = projection.fields if projection else None
        signature = _fields_signature(fields)
        before = _decode_hashes(cursor, signature)
        after: dict[str, str] = {}
        select = projection.select if projection else ""
        for records in self._query(entity, "", order=False, select=select):
            changed = []
            for record in records:
                number, digest = str(record[key]), _content_hash(record, fields)
                after[number] = digest
                if before.get(number) != digest:
                    changed.append(record)
            if changed:
                yield Batch(changed)
        if after != before:
            yield Batch([], _encode_hashes(after, signature))

    def _projection(self, entity: str) -> Projection | None:
        """What a snapshot compare of ``entity`` (reservations) reads and hashes, from the
        fields the hub's mappings read (``self.objects``): the key, the hub id, the
        header's own fields, the item's (``to_ReservationDocumentItem/...``, with its key
        to pick the first item) and the item flags ``FulfilmentStatus`` is read from.
        None (read and hash everything) without the mappings, or when they read a field
        this connector cannot name on the wire."""
        if entity not in self._projections:
            self._projections[entity] = self._build_projection(entity)
        return self._projections[entity]

    def _build_projection(self, entity: str) -> Projection | None:
        route, mapped = ROUTES[entity], self.objects.get(entity)
        if mapped is None or entity != "allocation":
            return None
        schema = self._client(route.service).schema
        header = _declared(schema, route.entity_set)
        item = _declared(schema, RESERVATION_ITEMS)
        heads, items = [route.key, self._hub_field], ["ReservationItem"]
        for name in mapped.fields:
            if name in (route.key, HUB_ID):
                continue
            if name == FULFILMENT_STATUS:
                items += STATUS_FLAGS
            elif name in route.child:
                items.append(name)
            elif name in header and name != self._hub_field:
                heads.append(name)
            else:
                return None
        if not {route.key, self._hub_field} <= header or not set(items) <= item:
            return None
        paths = [*dict.fromkeys(heads), *(f"{route.expand}/{n}" for n in dict.fromkeys(items))]
        fields = tuple(sorted({*mapped.fields, route.key, HUB_ID}))
        return Projection(",".join(paths), fields)

    def read_snapshot(self, entity: str, window: Window | None = None) -> Iterator[Batch]:
        """Everything, or what changed within ``window`` by the entity's stamp (the
        business partner's for customers); reservations have none, so a window reads
        them all."""
        detection = CHANGE_DETECTION[entity]
        clauses = []
        if detection != "snapshot" and window and window.start:
            clauses.append(_since(entity, window.start))
        if detection != "snapshot" and window and window.end:
            clauses.append(_until(entity, window.end))
        where = " and ".join(f"({c})" for c in clauses)
        for records in self._query(
            entity, where, order=False, via_partner=bool(where) and detection == "partner"
        ):
            if records:
                yield Batch(records)

    def read_by_keys(self, entity: str, keys: Sequence[str]) -> Iterator[Batch]:
        step = self.settings.keys_per_query
        for i in range(0, len(keys), step):
            where = " or ".join(f"{self._hub_field} eq {_literal(k)}" for k in keys[i : i + step])
            for records in self._query(entity, where, order=False):
                if records:
                    yield Batch(records)

    def _current_filters(self, route: EntityRoute, rows: Sequence[NativeRecord]) -> list[str]:
        """The queries for what SAP holds of the records about to be written: by SAP's
        own key where the hub knows it (a primary-index read), by hub id only for the
        rest (the records SAP may not have yet). A filter on the hub id, a custom field,
        makes S/4 scan the whole object: asking that for every update made an
        incremental write pass cost as much as the book."""
        step = self.settings.keys_per_query
        keys = sorted({str(r[route.key]) for r in rows if r.get(route.key)})
        hub_ids = [str(r[HUB_ID]) for r in rows if not r.get(route.key)]
        return [
            " or ".join(f"{field} eq {_literal(v)}" for v in values[i : i + step])
            for field, values in ((route.key, keys), (self._hub_field, hub_ids))
            for i in range(0, len(values), step)
        ]

    @staticmethod
    def _by_hub_id(
        route: EntityRoute, rows: Sequence[NativeRecord], records: Iterable[NativeRecord]
    ) -> dict[str, NativeRecord]:
        """Records read for ``rows``, by the hub id of the row that asked for each (by SAP
        key: the row's, even where SAP's hub id is blank; else SAP's hub id)."""
        by_key = {str(r[route.key]): str(r[HUB_ID]) for r in rows if r.get(route.key)}
        return {by_key.get(str(r.get(route.key)), str(r.get(HUB_ID))): r for r in records}

    def _read_current(self, entity: str, rows: Sequence[NativeRecord]) -> dict[str, NativeRecord]:
        route = ROUTES[entity]
        records = [
            r
            for where in self._current_filters(route, rows)
            for page in self._query(entity, where, order=False)
            for r in page
        ]
        return self._by_hub_id(route, rows, records)

    def _customer_of(self, partner: Any) -> dict[str, Any] | None:
        """The customer record of a business partner read with ``to_Customer`` expanded,
        with the partner's number and its change stamp (LastChangeDate + LastChangeTime,
        as ``BusinessPartnerLastChange``); None for a partner without the customer role."""
        try:
            customer = partner.to_Customer
        except (AttributeError, PyODataException):
            return None
        if customer is None:
            return None
        record = self._native("customer", customer)
        record["BusinessPartner"] = partner.BusinessPartner
        record[PARTNER_CHANGED] = _partner_stamp(partner.LastChangeDate, partner.LastChangeTime)
        return record

    def _native(self, entity: str, proxy: Any) -> dict[str, Any]:
        record = _plain(proxy)
        record[ETAG] = getattr(proxy, "etag", None)
        if self._hub_field != HUB_ID:  # handed on under the mappings' name
            record[HUB_ID] = record.pop(self._hub_field, None)
        if entity == "customer":
            areas = _expanded(proxy, "to_CustomerSalesArea")
            area = next(
                (a for a in areas if a.get("SalesOrganization") == SALES_AREA["SalesOrganization"]),
                areas[0] if areas else {},
            )
            if not record.get("YY1_CreditLimitCurrency") and not Decimal(
                str(record.get("YY1_CreditLimitAmount") or 0)
            ):
                record["YY1_CreditLimitAmount"] = None  # S/4's initial 0 with no currency: no limit
            record["Currency"] = area.get("Currency") or None
            record["CustomerPaymentTerms"] = area.get("CustomerPaymentTerms") or None
        elif entity == "subscription":
            record[CONTRACT_ITEMS] = [_item_as_read(i) for i in _expanded(proxy, "to_Item")]
            # ABAP initial values mean "none": no customer reference, no end date
            if record.get("SalesContractValidityEndDate") == OPEN_END_TEXT:
                record["SalesContractValidityEndDate"] = None
            record["PurchaseOrderByCustomer"] = record.get("PurchaseOrderByCustomer") or None
        elif entity == "invoice":
            # what FI cleared in full (an extension field stamped at clearing): what the
            # customer paid. Open or partly cleared documents make no claim (billing
            # tracks partial payments), so the key is left out rather than set to none.
            cleared = record.pop("YY1_AmountCleared", None)
            if record.get("InvoiceClearingStatus") == "C" and cleared not in (None, ""):
                record["AmountCleared"] = cleared
        elif entity == "allocation":
            # one item per reservation (the hub writes one per allocation), kept flat;
            # what a $select left out of it stays out of the record
            items = sorted(
                _expanded(proxy, "to_ReservationDocumentItem"),
                key=lambda i: str(i.get("ReservationItem")),
            )
            item = items[0] if items else {}
            record.update(
                {k: item.get(k) for k in RESERVATION_ITEM_FIELDS if k in item or not item}
            )
            record["ReservationItem"] = item.get("ReservationItem")
            if not item or all(f in item for f in STATUS_FLAGS):
                record[FULFILMENT_STATUS] = reservation_status(item) if item else None
            if "SalesOrder" in record:
                record["SalesOrder"] = record["SalesOrder"] or None
        return record

    def _tax_requests(self, numbers: Sequence[str]) -> list[Any]:
        """The queries for the tax numbers of these partners: ``BusinessPartner eq ... or
        ...``, ``keys_per_query`` partners each (URLs stay under the ICM line limit).
        Not a min-max range: a page is ordered by change time, so its partner numbers
        spread over the whole book, and at 100,000 customers each page's range returned
        nearly every tax number (92k rows read per 1,000 customers)."""
        tax_numbers = self._client("API_BUSINESS_PARTNER").entity_sets.A_BusinessPartnerTaxNumber
        wanted = sorted(set(numbers))
        step = self.settings.keys_per_query
        return [
            tax_numbers.get_entities().filter(
                " or ".join(f"BusinessPartner eq {_literal(n)}" for n in wanted[i : i + step])
            )
            for i in range(0, len(wanted), step)
        ]

    @staticmethod
    def _apply_tax(records: list[dict[str, Any]], found: Mapping[str, str]) -> None:
        for record in records:
            record["TaxNumber"] = found.get(record["Customer"]) or record.get("TaxNumber1") or None

    @staticmethod
    def _collect_tax(pages: Iterable[Any], wanted: set[str], found: dict[str, str]) -> None:
        for page in pages:
            for tax in page:
                if tax.BusinessPartner in wanted:
                    found.setdefault(tax.BusinessPartner, tax.BPTaxLongNumber or tax.BPTaxNumber)

    def _tax_and_next_page(
        self, records: list[dict[str, Any]], query: Callable[[], Any], skiptoken: str
    ) -> Any:
        """Read this page's tax numbers and the next page in one $batch (GET parts);
        returns the next page. Why: the tax id lives in another entity set that A_Customer
        cannot expand, and a second call per page would double what a read costs."""
        numbers = [r["Customer"] for r in records if r.get("Customer")]
        *tax_pages, page = self._read_batch(
            lambda: [*self._tax_requests(numbers), query().custom("$skiptoken", skiptoken)]
        )
        if any(p.next_url for p in tax_pages):  # more than one page: read them on their own
            self._add_tax_numbers(records, batched=False)
        else:
            found: dict[str, str] = {}
            self._collect_tax(tax_pages, set(numbers), found)
            self._apply_tax(records, found)
        return page

    def _read_batch(self, requests: Callable[[], list[Any]]) -> list[Any]:
        """GET parts of API_BUSINESS_PARTNER in one ``$batch`` round trip, their answers in
        order (``requests`` builds them afresh for each attempt)."""
        answers: list[Any] = self._call(
            lambda: self._execute_batch("API_BUSINESS_PARTNER", lambda _, add: add(requests()))
        )
        return answers

    def _execute_batch(
        self, service: str, fill: Callable[[Any, Callable[[list[Any]], None]], None]
    ) -> list[Any]:
        """Send one ``$batch`` to ``service``: the one place that minds its CSRF token
        (fetched first if the session has none; forgotten when SAP refuses it, so the
        retry fetches a fresh one). ``fill(client, add)`` adds the parts."""
        if not self._csrf:
            self._fetch_csrf(service)
        client = self._client(service)
        batch = client.create_batch()

        def add(parts: list[Any]) -> None:
            for part in parts:
                batch.add_request(part)

        fill(client, add)
        try:
            return list(batch.execute())
        except HttpError as exc:
            if _csrf_refused(exc.response):
                self._csrf = False
            raise

    def _add_tax_numbers(self, records: list[dict[str, Any]], *, batched: bool = True) -> None:
        """The tax id lives on the business partner (A_BusinessPartnerTaxNumber): one
        round trip per page, not one per customer (its queries ride in one ``$batch`` when
        there are several and the CSRF token is known; each query is paged on its own
        if a batch part came back incomplete)."""
        numbers = [r["Customer"] for r in records if r.get("Customer")]
        if not numbers:
            return
        tax_numbers = self._client("API_BUSINESS_PARTNER").entity_sets.A_BusinessPartnerTaxNumber
        found: dict[str, str] = {}
        wanted = set(numbers)
        if batched and self._csrf and len(wanted) > self.settings.keys_per_query:
            pages = self._read_batch(lambda: self._tax_requests(numbers))
            if not any(p.next_url for p in pages):
                self._collect_tax(pages, wanted, found)
                self._apply_tax(records, found)
                return
        for request in self._tax_requests(numbers):
            self._collect_tax(self._pages(tax_numbers, self._call(request.execute)), wanted, found)
        self._apply_tax(records, found)

    def read_plant_stock(self) -> dict[tuple[str, str], int]:
        """Unrestricted stock on hand per (material, plant) from API_MATERIAL_STOCK_SRV,
        summed over storage locations and batches: SAP owns plant stock, and the
        reconciliation's stock check compares open allocations with it. Read-only (the
        service refuses writes); quantities are whole base units, as the hub counts."""
        client = self._client("API_MATERIAL_STOCK_SRV")
        stock_set = client.entity_sets.A_MatlStkInAcctMod
        totals: dict[tuple[str, str], Decimal] = {}
        for page in self._pages(stock_set, self._call(lambda: stock_set.get_entities().execute())):
            for row in page:
                if row.InventoryStockType not in ("", "01"):  # 01: unrestricted use
                    continue
                where = (str(row.Material), str(row.Plant))
                totals[where] = totals.get(where, Decimal(0)) + Decimal(
                    str(row.MatlWrhsStkQtyInMatlBaseUnit or 0)
                )
        return {k: int(v) for k, v in totals.items()}

    # -- writes -------------------------------------------------------------------------
    def write_batch(self, entity: str, records: Iterable[NativeRecord]) -> list[WriteResult]:
        if entity not in ROUTES:
            raise PermanentError(SYSTEM, f"the hub does not write {entity} records to SAP")
        rows = [dict(r) for r in records]
        size = self.settings.batch_size
        chunks = [rows[i : i + size] for i in range(0, len(rows), size)]
        results: list[WriteResult] = []
        known: dict[str, NativeRecord] | None = None
        for i, chunk in enumerate(chunks):
            following = chunks[i + 1] if i + 1 < len(chunks) else None
            done, known = self._write_chunk(entity, chunk, known, following)
            results += done
        return results

    def _write_chunk(
        self,
        entity: str,
        rows: list[NativeRecord],
        known: dict[str, NativeRecord] | None = None,
        following: list[NativeRecord] | None = None,
    ) -> tuple[list[WriteResult], dict[str, NativeRecord] | None]:
        """Write one chunk; returns its results and what SAP holds of the ``following``
        chunk, read inside this chunk's $batch (None when it could not be): each chunk
        is still planned from a read made before it is sent - creates never go out
        blind - but that read rides on the previous $batch instead of its own call."""
        route = ROUTES[entity]
        current = known if known is not None else self._read_current(entity, rows)
        plans = [self._plan(entity, row, current.get(str(row[HUB_ID]))) for row in rows]
        todo = [p for p in plans if p.result is None]
        ahead: dict[str, NativeRecord] | None = None
        if todo:
            try:
                ahead = self._send_batch(route, todo, following)
            except ConnectorError:
                # The $batch failed as a whole (or a change set broke it): read back what
                # landed, then send the rest one by one to learn each record's fate.
                landed = {
                    r[HUB_ID]: r
                    for batch in self.read_by_keys(entity, [p.hub_id for p in todo])
                    for r in batch.records
                }
                for plan in todo:
                    there = landed.get(plan.hub_id)
                    if plan.current is not None and there is not None:
                        intended = plan.intended()
                        if self._plan(entity, intended, there).result is not None:
                            # its change set went through before the batch broke
                            plan.result = WriteResult(
                                plan.hub_id, Outcome.UPDATED, external_id=str(there[route.key])
                            )
                            continue
                    if plan.result is None:
                        self._send_one(entity, route, plan, there)
        results = [
            p.result or WriteResult(p.hub_id, Outcome.REJECTED, error="not sent") for p in plans
        ]
        return results, ahead

    def _plan(self, entity: str, row: NativeRecord, current: dict[str, Any] | None) -> _Plan:
        route = ROUTES[entity]
        hub_id = str(row[HUB_ID])
        row = dict(row)
        if entity == "customer":  # the short name and the limit's currency follow
            if row.get("CustomerFullName"):
                row.setdefault("CustomerName", str(row["CustomerFullName"])[:80])
            if row.get("YY1_CreditLimitAmount") is not None and row.get("Currency"):
                row.setdefault("YY1_CreditLimitCurrency", row["Currency"])
            if row.get("TaxNumber") and len(str(row["TaxNumber"])) <= 16:
                row.setdefault("TaxNumber1", row["TaxNumber"])  # BP tax numbers need a BP
        if entity == "allocation":
            if row.get(FULFILMENT_STATUS) is not None:
                required = row.get("ResvnItmRequiredQtyInBaseUnit")
                row.update(reservation_flags(str(row[FULFILMENT_STATUS]), required))
            if row.get("MatlCompRequirementDate") is not None:
                row.setdefault("ReservationDate", row["MatlCompRequirementDate"])
            if "SalesOrder" in row and row["SalesOrder"] is None:
                row["SalesOrder"] = ""
        for name in DATE_FIELDS & set(row):
            if isinstance(row[name], str):
                row[name] = datetime.fromisoformat(row[name][:10]).replace(tzinfo=UTC)
        if entity == "subscription":
            if (
                "SalesContractValidityEndDate" in row
                and row["SalesContractValidityEndDate"] is None
            ):
                row["SalesContractValidityEndDate"] = OPEN_END
            if "PurchaseOrderByCustomer" in row and row["PurchaseOrderByCustomer"] is None:
                row["PurchaseOrderByCustomer"] = ""
        header = {k: _wire(row[k]) for k in route.writable if k in row}
        area: dict[str, Any] = {k: _wire(row[k]) for k in route.child if row.get(k) is not None}
        wanted = row.get(CONTRACT_ITEMS) if entity == "subscription" else None
        if current is None:
            items = ContractItems.plan(wanted, None)
            return _Plan(hub_id, None, header, area, None, wanted, items)
        changed = {k: v for k, v in header.items() if _as_read(k, current.get(k)) != _as_read(k, v)}
        area_changed = {
            k: v for k, v in area.items() if _as_read(k, current.get(k)) != _as_read(k, v)
        }
        items = ContractItems.plan(wanted, current.get(CONTRACT_ITEMS) or [])
        if not changed and not area_changed and not items:
            result = WriteResult(hub_id, Outcome.UNCHANGED, external_id=str(current[route.key]))
            return _Plan(hub_id, current, changed, area_changed, result, wanted, items)
        return _Plan(hub_id, current, changed, area_changed, None, wanted, items)

    def _requests(self, route: EntityRoute, plan: _Plan) -> list[Any]:
        client = self._client(route.service)
        entity_set = getattr(client.entity_sets, route.entity_set)
        out = []
        if plan.current is None:
            values = self._to_wire(plan.header)
            if route.entity_set == "A_Customer":
                # S/4 creates a customer as a business partner (an organisation) with the
                # customer role, its sales area inline: one deep insert
                values["to_CustomerSalesArea"] = [{**SALES_AREA, **plan.area}]
                name = str(values.get("CustomerFullName") or values.get("CustomerName") or "")
                partner = {
                    "BusinessPartnerCategory": "2",
                    "BusinessPartnerFullName": name[:81],
                    "OrganizationBPName1": name[:40],
                    "OrganizationBPName2": name[40:80],
                    "to_Customer": values,
                }
                out.append(client.entity_sets.A_BusinessPartner.create_entity().set(**partner))
                return out
            elif route.entity_set == "A_SalesContract":
                values = {**CONTRACT_DEFAULTS, **values}
                start = values.get("SalesContractValidityStartDate")
                if start is not None:
                    values.setdefault("SalesContractDate", start)
                if plan.items.create:  # deep insert: the contract with its items
                    values["to_Item"] = [_to_send(i) for i in plan.items.create]
            elif route.entity_set == "A_ReservationDocumentHeader":
                values = {**RESERVATION_DEFAULTS, **values}
                values["to_ReservationDocumentItem"] = [_to_send(plan.area)]
            out.append(entity_set.create_entity().set(**values))
            return out
        key = plan.current[route.key]
        if plan.header:
            update = entity_set.update_entity(**{route.key: key}).set(**self._to_wire(plan.header))
            update.add_headers({"If-Match": plan.current.get(ETAG) or "*"})
            out.append(update)
        if route.entity_set == "A_SalesContract":
            out += plan.items.requests(client, key)
        if plan.area and route.entity_set == "A_Customer":
            area = client.entity_sets.A_CustomerSalesArea.update_entity(
                Customer=key, **SALES_AREA
            ).set(**plan.area)
            area.add_headers({"If-Match": "*"})
            out.append(area)
        elif plan.area and route.entity_set == "A_ReservationDocumentHeader":
            items = client.entity_sets.A_ReservationDocumentItem
            number = plan.current.get("ReservationItem")
            if number:
                item = items.update_entity(
                    Reservation=key, ReservationItem=number, RecordType=""
                ).set(**_to_send(plan.area))
                item.add_headers({"If-Match": "*"})
            else:  # its item was deleted in SAP (so every item field differs): a new one
                item = items.create_entity().set(Reservation=key, **_to_send(plan.area))
            out.append(item)
        return out

    def _send_batch(
        self, route: EntityRoute, plans: list[_Plan], following: list[NativeRecord] | None = None
    ) -> dict[str, NativeRecord] | None:
        """Send the plans' change sets in one $batch; with ``following``, the same $batch
        also reads (GET parts, after the change sets) what SAP holds of those records,
        returned by hub id - or None when that read needs more than it gave."""
        entity = next(e for e, r in ROUTES.items() if r is route)
        ahead = self._current_filters(route, following) if following else []
        numbers = sorted(str(r[route.key]) for r in following or [] if r.get(route.key))
        reads = 0

        def fill(client: Any, add: Callable[[list[Any]], None]) -> None:
            nonlocal reads
            for plan in plans:
                changeset = client.create_changeset()
                for request in self._requests(route, plan):
                    changeset.add_request(request)
                add([changeset])
            reads = 0
            for where in ahead:
                request = getattr(client.entity_sets, route.entity_set).get_entities()
                request = request.filter(where)
                if route.expand:
                    request = request.expand(route.expand)
                add([request])
                reads += 1
            if reads and entity == "customer" and numbers:
                tax_requests = self._tax_requests(numbers)
                add(tax_requests)
                reads += len(tax_requests)

        def send() -> list[Any]:
            return self._execute_batch(route.service, fill)

        if any(plan.current is None for plan in plans):
            # a create must not be re-sent blindly: if the answer was lost, it may have
            # landed; the caller reads back before trying again
            answers = self._call_once(send)
        else:
            answers = self._call(send)
        for plan, answer in zip(plans, answers[: len(plans)], strict=True):
            plan.result = self._result(route, plan, answer)
        if not reads:
            return None
        pages = answers[len(plans) :]
        return self._read_ahead(
            entity, following or [], pages[: len(ahead)], pages[len(ahead) :], set(numbers)
        )

    def _read_ahead(
        self,
        entity: str,
        following: list[NativeRecord],
        pages: list[Any],
        tax_pages: list[Any],
        numbers: set[str],
    ) -> dict[str, NativeRecord] | None:
        """The records a $batch read for the next chunk, by hub id (None if incomplete)."""
        if not all(isinstance(p, list) and not getattr(p, "next_url", None) for p in pages):
            return None
        route = ROUTES[entity]
        records = [self._native(entity, e) for page in pages for e in page]
        if entity == "customer" and records:
            there = {r["Customer"] for r in records if r.get("Customer")}
            complete = not any(getattr(p, "next_url", None) for p in tax_pages)
            if tax_pages and complete and there <= numbers:
                found: dict[str, str] = {}
                self._collect_tax(tax_pages, there, found)
                self._apply_tax(records, found)
            else:  # records the payloads did not name: their tax numbers are read on their own
                self._add_tax_numbers(records)
        return self._by_hub_id(route, following, records)

    def _send_one(
        self, entity: str, route: EntityRoute, plan: _Plan, landed: dict[str, Any] | None
    ) -> None:
        if plan.current is None and landed is not None:  # its create did land
            plan.result = WriteResult(
                plan.hub_id, Outcome.CREATED, external_id=str(landed[route.key])
            )
            return
        stale_retried = False
        for attempt in range(self.settings.retry.max_attempts):
            try:
                self._send_batch(route, [plan])
                return
            except TransientError as exc:
                if plan.current is None:
                    landed = next(
                        (r for b in self.read_by_keys(entity, [plan.hub_id]) for r in b.records),
                        None,
                    )
                    if landed is not None:  # the lost answer was a success
                        plan.result = WriteResult(
                            plan.hub_id, Outcome.CREATED, external_id=str(landed[route.key])
                        )
                        return
                if attempt + 1 == self.settings.retry.max_attempts:
                    plan.result = WriteResult(
                        plan.hub_id, Outcome.REJECTED, error=str(exc), error_code="UNAVAILABLE"
                    )
                    return
                time.sleep(min(self.settings.retry.max_wait, exc.retry_after or 0.2 * 2**attempt))
            except ConnectorError as exc:
                if exc.status == 412 and not stale_retried:  # stale ETag: re-read, once more
                    stale_retried = True
                    fresh = next(
                        (r for b in self.read_by_keys(entity, [plan.hub_id]) for r in b.records),
                        None,
                    )
                    refreshed = self._plan(entity, plan.intended(), fresh)
                    plan.current, plan.header, plan.area, plan.items = (
                        refreshed.current,
                        refreshed.header,
                        refreshed.area,
                        refreshed.items,
                    )
                    if refreshed.result is not None:
                        plan.result = refreshed.result
                        return
                    continue
                plan.result = WriteResult(
                    plan.hub_id,
                    Outcome.REJECTED,
                    error=str(exc),
                    error_code="CONFLICT" if exc.status == 412 else str(exc.status or "ERROR"),
                )
                return

    @staticmethod
    def _result(route: EntityRoute, plan: _Plan, answer: Any) -> WriteResult:
        if plan.current is None:
            created = answer[0] if isinstance(answer, list) and answer else answer
            number = getattr(created, route.key, None)
            return WriteResult(
                plan.hub_id, Outcome.CREATED, external_id=str(number) if number else None
            )
        return WriteResult(plan.hub_id, Outcome.UPDATED, external_id=str(plan.current[route.key]))

    # -- health -------------------------------------------------------------------------
    def health(self) -> Health:
        started = time.monotonic()
        try:
            response = self.session.get(
                self._service_url("API_BUSINESS_PARTNER"), timeout=self.settings.timeout
            )
            _raise_for(response)
        except (ConnectorError, requests.RequestException) as exc:
            return Health(SYSTEM, False, redact(str(exc)))
        return Health(SYSTEM, True, "ok", (time.monotonic() - started) * 1000)

    def close(self) -> None:
        self.session.close()


@dataclass(frozen=True)
class ContractItems:
    """What a contract's items need to match the hub's: items to create, changes (SAP
    item number, its ETag, the changed fields) and deletes (number, ETag). Items pair up
    by the hub's item id (ITEM_HUB_ID); a contract item without a wanted counterpart -
    the hub removed the item, or it was added in SAP - is deleted. ``wanted`` None (the
    hub sent no items) leaves the items alone."""

    create: tuple[dict[str, Any], ...] = ()
    change: tuple[tuple[str, str | None, dict[str, Any]], ...] = ()
    delete: tuple[tuple[str, str | None], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.create or self.change or self.delete)

    @staticmethod
    def plan(
        wanted: Sequence[Mapping[str, Any]] | None, current: Sequence[Mapping[str, Any]] | None
    ) -> ContractItems:
        if wanted is None:
            return ContractItems()
        rows = {str(w.get(ITEM_HUB_ID)): _item_to_write(w) for w in wanted}
        there = {str(c.get(ITEM_HUB_ID) or ""): c for c in current or ()}
        create, change = [], []
        for item_id, values in rows.items():
            held = there.get(item_id)
            if held is None:
                create.append(values)
                continue
            differs = [
                k
                for k in ITEM_FIELDS
                if _item_value(k, held.get(k)) != _item_value(k, _sent_as(k, values))
            ]
            if differs:
                diff = {k: values[k] for k in differs if k in values}
                diff |= {k: values[k] for k in ("NetPriceAmount", "NetPriceQuantity")}
                change.append((str(held["SalesContractItem"]), held.get(ETAG), diff))
        delete = [
            (str(c["SalesContractItem"]), c.get(ETAG))
            for item_id, c in there.items()
            if item_id not in rows
        ] + [  # several SAP items under one hub item id (or none): all but one go
            (str(c["SalesContractItem"]), c.get(ETAG))
            for c in current or ()
            if there.get(str(c.get(ITEM_HUB_ID) or "")) is not c
        ]
        return ContractItems(tuple(create), tuple(change), tuple(delete))

    def requests(self, client: Any, contract: str) -> list[Any]:
        """The item requests of an existing contract's change set, each item under its
        own ETag: deletes first (a removed item's number is never reused), then changes,
        then new items (POST to the contract's to_Item, numbered by SAP)."""
        items = client.entity_sets.A_SalesContractItem
        out = []
        for number, etag in self.delete:
            request = items.delete_entity(SalesContract=contract, SalesContractItem=number)
            request.add_headers({"If-Match": etag or "*"})
            out.append(request)
        for number, etag, values in self.change:
            request = items.update_entity(SalesContract=contract, SalesContractItem=number)
            request.set(**_to_send({k: v for k, v in values.items() if k != "NetAmount"}))
            request.add_headers({"If-Match": etag or "*"})
            out.append(request)
        if self.create:
            contracts = client.entity_sets.A_SalesContract
            key = EntityKey(contracts._entity_set.entity_type, SalesContract=contract)
            for values in self.create:
                out.append(contracts.nav("to_Item", key).create_entity().set(**_to_send(values)))
        return out


def _item_to_write(row: Mapping[str, Any]) -> dict[str, Any]:
    """A wanted contract item as sent: dates as datetimes (no end: 9999-12-31), the net
    value as the net price of the whole quantity (SD derives NetAmount from it)."""
    values = {k: _wire(row.get(k)) for k in ITEM_FIELDS if k in row}
    for name in ("SalesContractValidityStartDate", "SalesContractValidityEndDate"):
        if isinstance(values.get(name), str):
            values[name] = datetime.fromisoformat(values[name][:10]).replace(tzinfo=UTC)
    if "SalesContractValidityEndDate" in values and values["SalesContractValidityEndDate"] is None:
        values["SalesContractValidityEndDate"] = OPEN_END
    if values.get("SalesContractValidityStartDate") is None:
        values.pop("SalesContractValidityStartDate", None)
    quantity = Decimal(str(values.get("RequestedQuantity") or 0))
    values["NetPriceAmount"] = Decimal(str(values.pop("NetAmount", None) or 0))
    values["NetPriceQuantity"] = quantity if quantity > 0 else Decimal(1)
    values["RequestedQuantity"] = quantity
    return values


def _sent_as(name: str, values: Mapping[str, Any]) -> Any:
    """The value of contract item field ``name`` that sending ``values`` gives: NetAmount
    is the net price of the whole quantity sent."""
    return values.get("NetPriceAmount") if name == "NetAmount" else values.get(name)


def _item_value(name: str, value: Any) -> Any:
    """A contract item's field as compared: decimals by value, dates as days, SAP's
    initial values as none."""
    if name in ("RequestedQuantity", "NetAmount"):
        return Decimal(str(value or 0))
    if name.startswith("SalesContractValidity"):
        day = _json_value(value)
        day = day[:10] if isinstance(day, str) else day
        return None if day in (None, "", *NO_DATE) else day
    return value or None


def _item_as_read(item: Mapping[str, Any]) -> dict[str, Any]:
    """A contract item as handed to the mappings: SAP's initial values as none (no
    validity date, no hub item id)."""
    out = dict(item)
    for name in ("SalesContractValidityStartDate", "SalesContractValidityEndDate"):
        if _item_value(name, out.get(name)) is None:
            out[name] = None
    out[ITEM_HUB_ID] = out.get(ITEM_HUB_ID) or None
    return out


@dataclass
class _Plan:
    hub_id: str
    current: dict[str, Any] | None
    header: dict[str, Any]
    #: the child record's fields (the route's ``child``: sales area, reservation item)
    area: dict[str, Any]
    result: WriteResult | None
    #: a contract's items as the hub wants them (native rows; None: not sent)
    wanted_items: list[dict[str, Any]] | None = None
    items: ContractItems = field(default_factory=ContractItems)

    def intended(self) -> dict[str, Any]:
        """The record this plan writes, to plan it again against a fresh read."""
        row = {**self.header, **self.area, HUB_ID: self.hub_id}
        if self.wanted_items is not None:
            row[CONTRACT_ITEMS] = self.wanted_items
        return row


def _raise_for(response: requests.Response) -> None:
    if response.status_code >= 400:
        raise _classify(response)


def _classify(response: requests.Response | None) -> ConnectorError:
    if response is None:
        return TransientError(SYSTEM, "no response")
    status = response.status_code
    message = _sap_message(response)
    request = getattr(response, "request", None)  # pyodata's batch part responses have none
    where = f"{request.method} {request.path_url.split('?')[0]}" if request else "$batch part"
    text = f"{where} answered {status}: {message}"
    if _csrf_refused(response):  # the session's token expired: fetch a new one and retry
        return TransientError(SYSTEM, text, status=status, retry_after=0)
    if status in RETRYABLE:
        return TransientError(
            SYSTEM,
            text,
            status=status,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )
    if status == 401 or (status == 403 and not _csrf_refused(response)):
        return AuthError(
            SYSTEM, f"{text}. Check SAP_USER, SAP_PASSWORD and SAP_CLIENT.", status=status
        )
    return PermanentError(SYSTEM, text, status=status)


def _skiptoken(next_url: str | None) -> str | None:
    """The server paging token of a ``__next`` link (None when it pages otherwise)."""
    if not next_url:
        return None
    values = parse_qs(urlsplit(next_url).query).get("$skiptoken")
    return values[0] if values else None


def _csrf_refused(response: requests.Response | None) -> bool:
    return bool(
        response is not None
        and response.status_code == 403
        and response.headers.get("x-csrf-token", "").lower() == "required"
    )


def _sap_message(response: requests.Response) -> str:
    try:
        body = response.json()
        return redact(str(body["error"]["message"]["value"]))
    except (ValueError, KeyError, TypeError):
        return redact(response.text[:300])


def _plain(proxy: Any) -> dict[str, Any]:
    """An entity proxy's own properties as JSON-friendly values: the ones the answer
    carried (pyodata fetches any other one with a GET of its own when asked for it, so
    what a ``$select`` left out is never asked for)."""
    held = proxy._cache
    out: dict[str, Any] = {}
    for name, decimal in _properties(proxy._entity_type):
        if name not in held:
            continue
        value = held[name]
        if value.__class__ is str:
            if decimal and value[-1:] in "Mm":
                value = value[:-1]  # an OData decimal literal suffix pyodata passes through
        elif value is not None and value.__class__ not in (bool, int):
            value = _json_value(value)
        out[name] = value
    return out


#: each entity type's properties in $metadata order, with whether they are Edm.Decimal
_PROPERTIES: dict[int, tuple[Any, tuple[tuple[str, bool], ...]]] = {}


def _properties(entity_type: Any) -> tuple[tuple[str, bool], ...]:
    known = _PROPERTIES.get(id(entity_type))
    if known is None or known[0] is not entity_type:
        props = tuple((p.name, p.typ.name == "Edm.Decimal") for p in entity_type.proprties())
        known = _PROPERTIES[id(entity_type)] = (entity_type, props)
    return known[1]


def _declared(schema: Any, entity_set: str) -> set[str]:
    """The property names ``$metadata`` declares for an entity set (none if it has no
    such set)."""
    try:
        entity_type = schema.entity_set(entity_set).entity_type
    except (KeyError, PyODataException):
        return set()
    return {prop.name for prop in entity_type.proprties()}


def _expanded(proxy: Any, nav: str) -> list[dict[str, Any]]:
    try:
        value = getattr(proxy, nav)
    except (AttributeError, PyODataException):
        return []
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    return [{**_plain(item), ETAG: getattr(item, "etag", None)} for item in items]


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return value


def _wire(value: Any) -> Any:
    """Values as pyodata sends them (and as they compare against what SAP holds)."""
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, str):
        try:
            if value and value.replace(".", "", 1).replace("-", "", 1).isdigit() and "." in value:
                return Decimal(value)
        except ArithmeticError:
            return value
    return value


def _as_read(name: str, value: Any) -> Any:
    """A value as the connector reads it back, so a planned write compares equal to what
    SAP already holds (dates as ISO text, decimals by value, initial values as none)."""
    value = _wire(value)
    if isinstance(value, datetime):
        value = _json_value(value)
    if name == "SalesContractValidityEndDate" and value == OPEN_END_TEXT:
        return None
    if name in ("PurchaseOrderByCustomer", "SalesOrder") and value == "":
        return None
    return value


def _to_send(values: Mapping[str, Any]) -> dict[str, Any]:
    """pyodata serialises Edm.Decimal as given: decimals go as strings, never floats."""
    return {k: str(v) if isinstance(v, Decimal) else v for k, v in values.items()}


def key_order(key: Any) -> tuple[int, int | str]:
    """A key as S/4 orders it: a number-range key (ALPHA conversion) is held zero-padded,
    so numeric keys sort as numbers, before any key with letters."""
    text = str(key)
    return (0, int(text)) if text.isdigit() else (1, text)


def _moment(text: str) -> datetime:
    """An ISO 8601 stamp as an aware UTC time; one without an offset is UTC (what the
    connector wrote before cursors carried the offset)."""
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


Position = tuple[datetime, tuple[int, int | str]]


def _stamp_and_key(entity: str) -> tuple[str, str]:
    """The record fields an entity's changes are ordered by: its stamp and tie-break."""
    if CHANGE_DETECTION[entity] == "partner":
        return PARTNER_CHANGED, "BusinessPartner"
    return STAMP, ROUTES[entity].key


def _position(record: Mapping[str, Any], stamp: str, key: str) -> Position:
    return _moment(str(record[stamp])), key_order(record[key])


def _encode_cursor(record: Mapping[str, Any], stamp: str, key: str) -> str:
    """``stamp|key``: the stamp as ISO 8601 in UTC with its offset."""
    return f"{_moment(str(record[stamp])).isoformat()}|{record[key]}"


def _since(entity: str, moment: datetime) -> str:
    """A filter for what changed at or after ``moment``: on LastChangeDateTime, or on
    the business partner's date and time of day (to the second, the time truncated)."""
    if CHANGE_DETECTION[entity] != "partner":
        return f"{STAMP} ge datetimeoffset'{_odata_ts(moment)}'"
    day, time_of_day = _date_and_time(moment)
    return (
        f"LastChangeDate gt {day} or (LastChangeDate eq {day} and LastChangeTime ge {time_of_day})"
    )


def _until(entity: str, moment: datetime) -> str:
    """A filter for what changed before ``moment`` (see _since)."""
    if CHANGE_DETECTION[entity] != "partner":
        return f"{STAMP} lt datetimeoffset'{_odata_ts(moment)}'"
    day, time_of_day = _date_and_time(moment)
    if moment.astimezone(UTC).microsecond:  # a bound inside a second includes that second
        day, time_of_day = _date_and_time(moment + timedelta(seconds=1))
    return (
        f"LastChangeDate lt {day} or (LastChangeDate eq {day} and LastChangeTime lt {time_of_day})"
    )


def _date_and_time(moment: datetime) -> tuple[str, str]:
    """The Edm.DateTime (date) and Edm.Time literals of a moment in UTC, to the second."""
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    day = f"datetime'{moment.strftime('%Y-%m-%d')}T00:00:00'"
    return day, f"time'PT{moment.hour:02d}H{moment.minute:02d}M{moment.second:02d}S'"


def _partner_stamp(day: Any, time_of_day: Any) -> str | None:
    """A business partner's LastChangeDate (a datetime at midnight from pyodata) and
    LastChangeTime (``PT12H05M00S``, or a time) as one ISO 8601 UTC stamp."""
    if not isinstance(day, datetime):
        return None
    if isinstance(time_of_day, str):
        hours, _, rest = time_of_day.removeprefix("PT").partition("H")
        minutes, _, seconds = rest.removesuffix("S").partition("M")
        offset = timedelta(
            hours=int(hours or 0), minutes=int(minutes or 0), seconds=int(float(seconds or 0))
        )
    elif time_of_day is not None and hasattr(time_of_day, "hour"):
        offset = timedelta(
            hours=time_of_day.hour, minutes=time_of_day.minute, seconds=time_of_day.second
        )
    else:
        offset = timedelta(0)
    moment = (day if day.tzinfo else day.replace(tzinfo=UTC)).astimezone(UTC)
    stamp = moment.replace(hour=0, minute=0, second=0, microsecond=0) + offset
    text: str = _json_value(stamp)
    return text


def _content_hash(record: Mapping[str, Any], fields: Sequence[str] | None = None) -> str:
    """48 bits of a record's content: of ``fields``' values in that order, or of the whole
    record (its ETag aside) for None. What the snapshot compare keeps."""
    if fields is None:
        body = orjson.dumps(
            {k: v for k, v in record.items() if k != ETAG}, default=str, option=orjson.OPT_SORT_KEYS
        )
    else:
        body = orjson.dumps([record.get(f) for f in fields], default=str)
    return hashlib.blake2b(body, digest_size=6).hexdigest()


def _fields_signature(fields: Sequence[str] | None) -> str:
    """Eight hex digits naming the fields a snapshot cursor's hashes cover (``*``: the
    whole record)."""
    names = "\n".join(fields) if fields is not None else "*"
    return hashlib.blake2b(names.encode(), digest_size=4).hexdigest()


def _encode_hashes(hashes: Mapping[str, str], signature: str) -> str:
    """``hash2:`` + the fields' signature + ``:`` + base64 of the zlib-compressed
    ``key hash`` lines in key order: about ten bytes a record (100 kB for 10,000
    reservations), in the hub's cursor column."""
    lines = "\n".join(f"{k} {hashes[k]}" for k in sorted(hashes, key=key_order))
    packed = base64.b64encode(zlib.compress(lines.encode(), 9)).decode()
    return f"{HASH_CURSOR}{signature}:{packed}"


def _decode_hashes(cursor: str | None, signature: str) -> dict[str, str]:
    """The hashes a snapshot cursor keeps; none for no cursor, one of another kind (a
    ``stamp|key`` cursor, or a ``hash1:`` one over whole records, stored before) or one
    whose hashes cover other fields than ``signature`` says: the first read then hands
    on every record once, which the sync's fingerprints absorb."""
    if not cursor or not cursor.startswith(HASH_CURSOR):
        return {}
    signed, _, packed = cursor[len(HASH_CURSOR) :].partition(":")
    if signed != signature:
        return {}
    text = zlib.decompress(base64.b64decode(packed)).decode()
    return dict(line.split(" ", 1) for line in text.splitlines() if line)


def _decode_cursor(cursor: str | None) -> Position | None:
    """(stamp, key order) of a stored cursor, ``stamp|key``: stored before with the stamp
    in UTC without an offset, now with it."""
    if not cursor:
        return None
    stamp, key = cursor.split("|", 1)
    return _moment(stamp), key_order(key)


def _odata_ts(moment: datetime) -> str:
    """An Edm.DateTimeOffset literal's text: UTC with its ``Z`` (an offset is part of the
    literal), to the microsecond, truncated so a lower bound never starts late."""
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _literal(value: str) -> str:
    """An OData string literal: quotes doubled, so a value can never end the literal."""
    return "'" + str(value).replace("'", "''") + "'"


def _field_name(variable: str, raw: str) -> str | None:
    """An OData property name from ``variable`` (blank: the default); anything else is a
    configuration error, never a name pasted into a ``$filter``."""
    raw = raw.strip()
    if not raw:
        return None
    if not _FIELD_NAME.fullmatch(raw):
        raise ValueError(
            f"{variable}={raw!r}: give the extension field's OData name, e.g. YY1_HubId"
        )
    return raw


def from_env(env: Mapping[str, str], objects: MappedObjects | None = None) -> SapConnector:
    return SapConnector(read_settings(SapSettings, env), objects)

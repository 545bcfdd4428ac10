"""SAP reads over RFC (pyrfc + SAP's NW RFC SDK), for systems where the OData services are
not activated: the same snapshot reads as the OData connector, from the tables behind its
services with RFC_READ_TABLE:

- ``customer``: KNA1 (general data) with KNVV (sales area data of the configured sales
  organisation);
- ``subscription``: VBAK sales contracts (``VBTYP = 'G'``) with their VEDA header row
  (``VPOSN = '000000'``: the validity period); items (VBAP) are not read, the mapping does
  not use them;
- ``invoice``: VBRK billing documents (gross amount = net + tax). Payment clearing is not
  read, so records carry no ``AmountCleared`` (no claim about what was paid);
- ``allocation``: RKPF reservations with their first RESB item (``RSPOS = '0001'``) and
  the item's flags read as ``FulfilmentStatus`` (connectors.sap.reservation_status).

Headers are read page by page (``rows_per_call`` rows); each page's child rows are read
with ``KEY IN (...)`` on that page's keys only, so memory stays bounded by the page size.

pyrfc is an optional extra (``pip install '.[rfc]'``) that needs SAP's proprietary NW RFC
SDK installed (SAPNWRFC_HOME); neither can be downloaded from a package registry, so this
module imports pyrfc only when a connection is opened and says exactly what to install if
it is missing. The tests drive it with a stand-in for ``pyrfc.Connection``.

Native records use the OData field names and value shapes (``Customer``,
``SalesContract``, ``BillingDocument``, ``Reservation``, ...; dates as ISO ``YYYY-MM-DD``
text, decimals as text such as ``"1003.50"``, flags as booleans, blanks and ABAP initial
values as None), so the mappings in mappings/sap/ apply unchanged.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from connectors.base import Batch, MappedObjects
from connectors.errors import PermanentError
from connectors.redact import register_secret
from connectors.sap import FULFILMENT_STATUS, SapSettings, reservation_status
from connectors.settings import env_var, read_settings, same_as

SYSTEM = "sap"
INSTALL_HINT = (
    "the SAP RFC adapter needs pyrfc and SAP's NW RFC SDK: install the SDK from SAP "
    "(set SAPNWRFC_HOME), then `pip install '.[rfc]'`; or use the OData connector "
    "(SAP_ODATA_URL)"
)


@dataclass(frozen=True)
class TableRead:
    """One table's part of an entity: its fields (SAP name -> OData name), the field it
    is keyed on (a header's key; a child's join field) and its restriction (Open SQL
    clauses; ``{sales_org}`` stands for the configured sales organisation)."""

    table: str
    fields: Mapping[str, str]
    key: str
    where: tuple[str, ...] = ()


@dataclass(frozen=True)
class EntityRead:
    """An entity read: header rows, optionally joined with one child row per header
    (the first the child table gives for the key), then ``derive`` adds computed keys."""

    header: TableRead
    child: TableRead | None = None
    derive: Callable[[dict[str, Any]], None] | None = None


def _gross(record: dict[str, Any]) -> None:
    net, tax = record.get("TotalNetAmount"), record.get("TaxAmount")
    gross = None if net is None or tax is None else str(Decimal(net) + Decimal(tax))
    record["TotalGrossAmount"] = gross


def _status(record: dict[str, Any]) -> None:
    record[FULFILMENT_STATUS] = reservation_status(record)


#: KNA1 / KNVV fields -> the OData connector's native field names
KNA1 = {
    "KUNNR": "Customer",
    "NAME1": "CustomerFullName",
    "STCD1": "TaxNumber",
    "ZZHUBID": "YY1_HubId",
}
KNVV = {"ZTERM": "CustomerPaymentTerms", "WAERS": "Currency"}

READS: dict[str, EntityRead] = {
    "customer": EntityRead(
        TableRead("KNA1", KNA1, "KUNNR"),
        TableRead("KNVV", KNVV, "KUNNR", ("VKORG = {sales_org}",)),
    ),
    "subscription": EntityRead(
        TableRead(
            "VBAK",
            {
                "VBELN": "SalesContract",
                "KUNNR": "SoldToParty",
                "BSTNK": "PurchaseOrderByCustomer",
                "WAERK": "TransactionCurrency",
                "ZZHUBID": "YY1_HubId",
                "ERDAT": "CreationDate",
                "AEDAT": "LastChangeDate",
            },
            "VBELN",
            ("VBTYP = 'G'",),
        ),
        TableRead(
            "VEDA",
            {
                "VBEGDAT": "SalesContractValidityStartDate",
                "VENDDAT": "SalesContractValidityEndDate",
            },
            "VBELN",
            ("VPOSN = '000000'",),
        ),
    ),
    "invoice": EntityRead(
        TableRead(
            "VBRK",
            {
                "VBELN": "BillingDocument",
                "KUNAG": "SoldToParty",
                "KUNRG": "PayerParty",
                "FKDAT": "BillingDocumentDate",
                "NETWR": "TotalNetAmount",
                "MWSBK": "TaxAmount",
                "WAERK": "TransactionCurrency",
                "ZZHUBID": "YY1_HubId",
                "ERDAT": "CreationDate",
                "AEDAT": "LastChangeDate",
            },
            "VBELN",
        ),
        derive=_gross,
    ),
    "allocation": EntityRead(
        TableRead(
            "RKPF",
            {
                "RSNUM": "Reservation",
                "BWART": "GoodsMovementType",
                "KDAUF": "SalesOrder",
                "ZZHUBID": "YY1_HubId",
            },
            "RSNUM",
        ),
        TableRead(
            "RESB",
            {
                "MATNR": "Product",
                "WERKS": "Plant",
                "BDMNG": "ResvnItmRequiredQtyInBaseUnit",
                "BDTER": "MatlCompRequirementDate",
                "ENMNG": "ResvnItmWithdrawnQtyInBaseUnit",
                "KZEAR": "ReservationItemIsFinallyIssued",
                "XLOEK": "ReservationItmIsMarkedForDeltn",
                "XWAOK": "GoodsMovementIsAllowed",
            },
            "RSNUM",
            ("RSPOS = '0001'",),
        ),
        derive=_status,
    ),
}


def _date(value: str) -> str | None:
    """ABAP DATS ``YYYYMMDD`` as ISO text; the initial date is none."""
    if value in ("", "00000000"):
        return None
    return datetime.strptime(value, "%Y%m%d").date().isoformat()


def _open_date(value: str) -> str | None:
    """A validity date: 9999-12-31 ("until further notice") is none, as OData reads it."""
    return None if value == "99991231" else _date(value)


def _decimal(value: str) -> str | None:
    """An ABAP packed number as RFC_READ_TABLE renders it (sign trailing: ``12.50-``)."""
    if not value:
        return None
    if value.endswith("-"):
        value = "-" + value[:-1]
    return str(Decimal(value))


def _bool(value: str) -> bool:
    return value == "X"


#: OData field -> how its RFC text becomes the OData value (anything else: text, blank = None)
CONVERT: dict[str, Callable[[str], Any]] = {
    "CreationDate": _date,
    "LastChangeDate": _date,
    "SalesContractValidityStartDate": _open_date,
    "SalesContractValidityEndDate": _open_date,
    "BillingDocumentDate": _date,
    "MatlCompRequirementDate": _date,
    "TotalNetAmount": _decimal,
    "TaxAmount": _decimal,
    "ResvnItmRequiredQtyInBaseUnit": _decimal,
    "ResvnItmWithdrawnQtyInBaseUnit": _decimal,
    "ReservationItemIsFinallyIssued": _bool,
    "ReservationItmIsMarkedForDeltn": _bool,
    "GoodsMovementIsAllowed": _bool,
}


def _native(fields: Mapping[str, str], row: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for sap_name, name in fields.items():
        value = row[sap_name]
        convert = CONVERT.get(name)
        out[name] = convert(value) if convert else (value or None)
    return out


class RfcConnection(Protocol):
    def call(self, function: str, **parameters: Any) -> dict[str, Any]: ...

    def close(self) -> None: ...


@dataclass
class RfcSettings:
    ashost: str = field(metadata=env_var("SAP_RFC_ASHOST", required=True))
    sysnr: str = field(metadata=env_var("SAP_RFC_SYSNR", parse=lambda raw: raw or "00"))
    #: the same client and logon as the OData connector's
    client: str = field(metadata=same_as(SapSettings, "client"))
    user: str = field(metadata=same_as(SapSettings, "user"))
    password: str = field(metadata=same_as(SapSettings, "password"))
    sales_org: str = "1010"
    rows_per_call: int = 5000
    #: keys per ``IN (...)`` of a child read: the generated WHERE clause stays short
    keys_per_clause: int = 500


def open_connection(settings: RfcSettings) -> RfcConnection:
    try:
        pyrfc = importlib.import_module("pyrfc")
    except ImportError as exc:
        raise PermanentError(SYSTEM, f"{INSTALL_HINT} ({exc})") from None
    connection: RfcConnection = pyrfc.Connection(
        ashost=settings.ashost,
        sysnr=settings.sysnr,
        client=settings.client,
        user=settings.user,
        passwd=settings.password,
    )
    return connection


class SapRfcReader:
    """Snapshot reads of SAP over RFC (reconciliation and initial loads): customers,
    contracts, billing documents and reservations (see READS)."""

    system = SYSTEM

    def __init__(self, settings: RfcSettings, connection: RfcConnection | None = None) -> None:
        self.settings = settings
        register_secret(settings.password)
        self._connection = connection

    @property
    def connection(self) -> RfcConnection:
        if self._connection is None:
            self._connection = open_connection(self.settings)
        return self._connection

    def read_table(
        self, table: str, fields: Sequence[str], where: Sequence[str] = ()
    ) -> Iterator[list[dict[str, str]]]:
        """RFC_READ_TABLE in pages of ``rows_per_call`` (ROWSKIPS/ROWCOUNT), values
        trimmed; OPTIONS lines stay under the 72 characters the function accepts."""
        options = [{"TEXT": line} for clause in where for line in _wrap(clause)]
        skip = 0
        while True:
            answer = self.connection.call(
                "RFC_READ_TABLE",
                QUERY_TABLE=table,
                DELIMITER="|",
                FIELDS=[{"FIELDNAME": f} for f in fields],
                OPTIONS=options,
                ROWSKIPS=skip,
                ROWCOUNT=self.settings.rows_per_call,
            )
            # each field sits at the OFFSET and LENGTH SAP reports, so a value holding
            # the delimiter (a name with "|") cannot shift the others
            spans = [
                (f["FIELDNAME"], int(f["OFFSET"]), int(f["OFFSET"]) + int(f["LENGTH"]))
                for f in answer["FIELDS"]
            ]
            rows = [
                {name: r["WA"][start:end].strip() for name, start, end in spans}
                for r in answer["DATA"]
            ]
            if rows:
                yield rows
            if len(rows) < self.settings.rows_per_call:
                return
            skip += len(rows)

    def entities(self) -> list[str]:
        return list(READS)

    def read_snapshot(self, entity: str) -> Iterator[Batch]:
        spec = READS.get(entity)
        if spec is None:
            raise PermanentError(
                SYSTEM, f"the RFC adapter reads {', '.join(READS)}; it has no read for {entity!r}"
            )
        header, child = spec.header, spec.child
        for page in self.read_table(header.table, list(header.fields), self._where(header)):
            children = self._children(child, [row[header.key] for row in page]) if child else {}
            records = []
            for row in page:
                record = _native(header.fields, row)
                if child is not None:
                    found = children.get(row[header.key])
                    record.update(
                        _native(child.fields, found)
                        if found is not None
                        else dict.fromkeys(child.fields.values())
                    )
                if spec.derive is not None:
                    spec.derive(record)
                records.append(record)
            yield Batch(records)

    def _where(self, read: TableRead) -> list[str]:
        sales_org = _literal(self.settings.sales_org)
        return [clause.format(sales_org=sales_org) for clause in read.where]

    def _children(self, read: TableRead, keys: Sequence[str]) -> dict[str, dict[str, str]]:
        """The first ``read.table`` row per key, for one page of header keys."""
        found: dict[str, dict[str, str]] = {}
        step = self.settings.keys_per_clause
        for i in range(0, len(keys), step):
            where = self._where(read)
            keys_in = f"{read.key} IN (" + ", ".join(_literal(k) for k in keys[i : i + step])
            where.append(f"AND {keys_in})" if where else f"{keys_in})")
            for rows in self.read_table(read.table, [read.key, *read.fields], where):
                for row in rows:
                    found.setdefault(row[read.key], row)
        return found

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()


def _literal(value: str) -> str:
    """An ABAP Open SQL literal: quotes doubled."""
    return "'" + value.replace("'", "''") + "'"


def _wrap(clause: str, width: int = 72) -> list[str]:
    words, lines, line = clause.split(" "), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    if line:
        lines.append(line)
    return lines


def from_env(env: Mapping[str, str], objects: MappedObjects | None = None) -> SapRfcReader:
    return SapRfcReader(read_settings(RfcSettings, env))

"""SAP reads over RFC (pyrfc + SAP's NW RFC SDK), for systems where the OData services are
not activated: the same customer records as the OData connector, read from the tables
behind them (KNA1 general data, KNVV sales area data) with RFC_READ_TABLE.

pyrfc is an optional extra (``pip install '.[rfc]'``) that needs SAP's proprietary NW RFC
SDK installed (SAPNWRFC_HOME); neither can be downloaded from a package registry, so this
module imports pyrfc only when a connection is opened and says exactly what to install if
it is missing. The tests drive it with a stand-in for ``pyrfc.Connection``.

Native records use the OData field names (``Customer``, ``CustomerFullName``,
``TaxNumber``, ``CustomerPaymentTerms``, ``Currency``, ``YY1_HubId``), so
mappings/sap/customer.yaml applies unchanged.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from connectors.base import Batch
from connectors.errors import PermanentError
from connectors.redact import register_secret

SYSTEM = "sap"
INSTALL_HINT = (
    "the SAP RFC adapter needs pyrfc and SAP's NW RFC SDK: install the SDK from SAP "
    "(set SAPNWRFC_HOME), then `pip install '.[rfc]'`; or use the OData connector "
    "(SAP_ODATA_URL)"
)
#: KNA1 / KNVV fields -> the OData connector's native field names
KNA1 = {
    "KUNNR": "Customer",
    "NAME1": "CustomerFullName",
    "STCD1": "TaxNumber",
    "ZZHUBID": "YY1_HubId",
}
KNVV = {"KUNNR": "Customer", "ZTERM": "CustomerPaymentTerms", "WAERS": "Currency"}


class RfcConnection(Protocol):
    def call(self, function: str, **parameters: Any) -> dict[str, Any]: ...

    def close(self) -> None: ...


@dataclass
class RfcSettings:
    ashost: str
    sysnr: str
    client: str
    user: str
    password: str
    sales_org: str = "1010"
    rows_per_call: int = 5000


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
    """Snapshot reads of SAP customers over RFC (reconciliation and initial loads)."""

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
            names = [f["FIELDNAME"] for f in answer["FIELDS"]]
            rows = [
                dict(zip(names, (v.strip() for v in r["WA"].split("|")), strict=True))
                for r in answer["DATA"]
            ]
            if rows:
                yield rows
            if len(rows) < self.settings.rows_per_call:
                return
            skip += len(rows)

    def read_snapshot(self, entity: str) -> Iterator[Batch]:
        if entity != "customer":
            raise PermanentError(SYSTEM, f"the RFC adapter reads customers only, not {entity}")
        for page in self.read_table("KNA1", list(KNA1)):
            numbers = [row["KUNNR"] for row in page]
            areas: dict[str, dict[str, str]] = {}
            where = [f"VKORG = {_literal(self.settings.sales_org)}"]
            where.append("AND KUNNR IN (" + ", ".join(_literal(n) for n in numbers) + ")")
            for rows in self.read_table("KNVV", list(KNVV), where):
                for row in rows:
                    areas.setdefault(row["KUNNR"], row)
            records = []
            for row in page:
                record = {KNA1[k]: (v or None) for k, v in row.items()}
                area = areas.get(row["KUNNR"], {})
                record.update({KNVV[k]: (v or None) for k, v in area.items() if k != "KUNNR"})
                records.append(record)
            yield Batch(records)

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


def from_env(env: Mapping[str, str]) -> SapRfcReader:
    return SapRfcReader(
        RfcSettings(
            ashost=env["SAP_RFC_ASHOST"],
            sysnr=env.get("SAP_RFC_SYSNR", "00"),
            client=env.get("SAP_CLIENT", ""),
            user=env.get("SAP_USER", ""),
            password=env.get("SAP_PASSWORD", ""),
        )
    )

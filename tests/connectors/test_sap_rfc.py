"""The RFC adapter with a stand-in for ``pyrfc.Connection`` (SAP's NW RFC SDK cannot be
installed here): RFC_READ_TABLE paging, the sales-area join, the OData field names, and a
clear message when pyrfc is missing."""

from typing import Any

import pytest

from connectors.errors import PermanentError
from connectors.sap_rfc import INSTALL_HINT, RfcSettings, SapRfcReader, open_connection

KNA1_ROWS = [
    ("1000001", "Cedar Cold Chain AG", "CHE123456789", "CUS-0000001"),
    ("1000002", "O'Brien Logistics Ltd", "GB139630846", "CUS-0000002"),
    ("1000003", "Blue Harbor Retail GmbH", "", "CUS-0000003"),
]
KNVV_ROWS = [("1000001", "NT30", "CHF"), ("1000002", "NT60", "GBP"), ("1000003", "0001", "EUR")]


class StandInConnection:
    """Answers RFC_READ_TABLE the way SAP does: FIELDS metadata, DATA rows as WA strings
    joined by the DELIMITER, ROWSKIPS/ROWCOUNT paging, OPTIONS lines <= 72 characters."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def call(self, function: str, **p: Any) -> dict[str, Any]:
        assert function == "RFC_READ_TABLE"
        assert all(len(o["TEXT"]) <= 72 for o in p["OPTIONS"])
        self.calls.append(p)
        fields = [f["FIELDNAME"] for f in p["FIELDS"]]
        if p["QUERY_TABLE"] == "KNA1":
            assert fields == ["KUNNR", "NAME1", "STCD1", "ZZHUBID"]
            rows = KNA1_ROWS
        else:
            where = " ".join(o["TEXT"] for o in p["OPTIONS"])
            assert "VKORG = '1010'" in where
            rows = [r for r in KNVV_ROWS if f"'{r[0]}'" in where]
        page = rows[p["ROWSKIPS"] : p["ROWSKIPS"] + p["ROWCOUNT"]]
        return {
            "FIELDS": [{"FIELDNAME": f} for f in fields],
            "DATA": [{"WA": p["DELIMITER"].join(f"{v:<12}" for v in row)} for row in page],
        }

    def close(self) -> None:
        pass


def _reader(rows_per_call: int = 2) -> tuple[SapRfcReader, StandInConnection]:
    connection = StandInConnection()
    settings = RfcSettings("sap.example", "00", "100", "HUB", "secret", rows_per_call=rows_per_call)
    return SapRfcReader(settings, connection), connection


def test_customers_in_the_odata_shape_across_pages() -> None:
    reader, connection = _reader(rows_per_call=2)
    records = [r for batch in reader.read_snapshot("customer") for r in batch.records]
    assert records[1] == {
        "Customer": "1000002",
        "CustomerFullName": "O'Brien Logistics Ltd",
        "TaxNumber": "GB139630846",
        "YY1_HubId": "CUS-0000002",
        "CustomerPaymentTerms": "NT60",
        "Currency": "GBP",
    }
    assert records[2]["TaxNumber"] is None  # blank fields are None, as OData omits them
    kna1 = [c for c in connection.calls if c["QUERY_TABLE"] == "KNA1"]
    assert [c["ROWSKIPS"] for c in kna1] == [0, 2]  # paged, stops on a short page


def test_other_entities_are_refused_by_name() -> None:
    reader, _ = _reader()
    with pytest.raises(PermanentError, match="customers only, not invoice"):
        list(reader.read_snapshot("invoice"))


def test_missing_pyrfc_says_what_to_install() -> None:
    with pytest.raises(PermanentError) as info:
        open_connection(RfcSettings("sap.example", "00", "100", "HUB", "secret"))
    assert INSTALL_HINT in str(info.value) and "secret" not in str(info.value)

"""The RFC adapter with a stand-in for ``pyrfc.Connection`` (SAP's NW RFC SDK cannot be
installed here): RFC_READ_TABLE paging, the child-table joins per page of headers, the
OData field names and value shapes, the real SAP mappings applied to what it reads, and a
clear message when pyrfc is missing."""

import re
from typing import Any

import pytest

from connectors.errors import PermanentError
from connectors.sap_rfc import INSTALL_HINT, RfcSettings, SapRfcReader, open_connection
from hub.mapping.mapper import Mapper
from hub.mapping.spec import MAPPINGS_DIR, MappingSpec, load_all
from hub.mapping.transforms import load_code_lists

SPECS: dict[str, MappingSpec] = {
    s.entity: s for s in load_all(MAPPINGS_DIR)[0] if s.system == "sap"
}
CODES = load_code_lists(MAPPINGS_DIR)


def _table(names: str, *rows: str) -> list[dict[str, str]]:
    """Rows as ``|``-separated values in the order of ``names``."""
    fields = names.split()
    return [dict(zip(fields, r.split("|"), strict=True)) for r in rows]


#: the tables as SAP holds them; rows deliberately not in header order where it matters
TABLES: dict[str, list[dict[str, str]]] = {
    "KNA1": _table(
        "KUNNR NAME1 STCD1 ZZHUBID",
        "1000001|Cedar Cold Chain AG|CHE123456789|CUS-0000001",
        "1000002|O'Brien Logistics Ltd|GB139630846|CUS-0000002",
        "1000003|Blue Harbor Retail GmbH||CUS-0000003",
    ),
    "KNVV": _table(
        "KUNNR VKORG ZTERM WAERS",
        "1000001|1010|NT30|CHF",
        "1000002|2010|NT90|USD",  # another sales organisation: not read
        "1000002|1010|NT60|GBP",
        "1000003|1010|0001|EUR",
    ),
    "VBAK": _table(
        "VBELN VBTYP KUNNR BSTNK WAERK ZZHUBID ERDAT AEDAT",
        "40000001|G|1000001|PO-7781|CHF|SUB-0000001|20240105|20240301",
        "40000002|G|1000002||GBP|SUB-0000002|20240110|00000000",
        "0000001|C|1000002|PO-1|GBP||20240111|",  # an order
        "40000003|G|1000003|CR-12|EUR|SUB-0000003|20240112|",
        "40000004|G|1000001||CHF||20240113|",  # no hub id yet
        "40000005|G|1000003||EUR|SUB-0000005|20240114|",  # no VEDA
    ),
    "VEDA": _table(
        "VBELN VPOSN VBEGDAT VENDDAT",
        "40000003|000000|20240201|20250131",
        "40000003|000010|20240301|20240331",  # an item's period: not the header
        "40000002|000000|20240115|99991231",
        "40000001|000010|19990101|19991231",
        "40000001|000000|20240101|20241231",
        "40000004|000000|20240113|",
    ),
    "VBRK": _table(
        "VBELN KUNAG KUNRG FKDAT NETWR MWSBK WAERK ZZHUBID ERDAT AEDAT",
        "90000001|1000001|1000001|20240201|930.00|73.50|CHF|INV-0000001|20240201|",
        "90000002|1000002|1000009|20240205|1200.00|240.00|GBP|INV-0000002|20240205|20240206",
        "90000003|1000003|1000003|20240210|12.50-|2.38-|EUR|INV-0000003|20240210|",
        "90000004|1000003|1000003|20240211|0.00|0.00|EUR||20240211|",
        "90000005|1000001|1000001|20240212|99.90|7.69|CHF|INV-0000005|20240212|",
    ),
    "RKPF": _table(
        "RSNUM BWART KDAUF ZZHUBID",
        "0000100001|601|40000001|ALC-0000001",
        "0000100002|601|40000001|ALC-0000002",
        "0000100003|601|40000002|ALC-0000003",
        "0000100004|601|40000003|ALC-0000004",
        "0000100005|201||",  # a cost-centre reservation without an item
    ),
    "RESB": _table(
        "RSNUM RSPOS MATNR WERKS BDMNG BDTER ENMNG KZEAR XLOEK XWAOK",
        "0000100004|0001|SKU-ICE-4|1010|4.000|20240320|0.000||X|",
        "0000100002|0001|SKU-BOX-2|1010|2.000|20240310|0.000|||X",
        "0000100002|0002|SKU-XTRA|1020|9.000|20240311|0.000|||",
        "0000100001|0001|SKU-BOX-1|1010|12.000|20240301|0.000|||",
        "0000100003|0001|SKU-GEL-1|1020|1.000|20240305|1.000|X||X",
    ),
}
CLAUSE = re.compile(r"^(\w+) (=|IN) (.+)$")
LITERAL = re.compile(r"'((?:[^']|'')*)'")


def _matches(row: dict[str, str], where: str) -> bool:
    """The Open SQL the adapter sends: ``F = 'x'`` and ``F IN ('a', 'b')`` joined by AND."""
    for clause in where.split(" AND ") if where else []:
        match = CLAUSE.match(clause)
        assert match, f"unsupported clause {clause!r}"
        field, op, rest = match.groups()
        values = [v.replace("''", "'") for v in LITERAL.findall(rest)]
        assert values and (op == "=") == (len(values) == 1 and rest.startswith("'")), clause
        if row[field] not in values:
            return False
    return True


class StandInConnection:
    """Answers RFC_READ_TABLE the way SAP does: FIELDS metadata, DATA rows as WA strings
    joined by the DELIMITER (fixed width per field), only the FIELDS asked for, rows
    filtered by the OPTIONS (lines <= 72 characters, read as one clause), ROWSKIPS/ROWCOUNT
    paging."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def call(self, function: str, **p: Any) -> dict[str, Any]:
        assert function == "RFC_READ_TABLE"
        assert all(len(o["TEXT"]) <= 72 for o in p["OPTIONS"])
        self.calls.append(p)
        table = TABLES[p["QUERY_TABLE"]]
        fields = [f["FIELDNAME"] for f in p["FIELDS"]]
        assert set(fields) <= set(table[0]), f"FIELD_NOT_VALID: {set(fields) - set(table[0])}"
        where = " ".join(o["TEXT"] for o in p["OPTIONS"])
        rows = [r for r in table if _matches(r, where)]
        page = rows[p["ROWSKIPS"] : p["ROWSKIPS"] + p["ROWCOUNT"]]
        width, sep = 24, len(p["DELIMITER"])
        return {
            "FIELDS": [
                {"FIELDNAME": f, "OFFSET": f"{i * (width + sep):06d}", "LENGTH": f"{width:06d}"}
                for i, f in enumerate(fields)
            ],
            "DATA": [
                {"WA": p["DELIMITER"].join(f"{row[f]:<{width}}" for f in fields)} for row in page
            ],
        }

    def close(self) -> None:
        pass


class Refs:
    """The xref table for the SAP numbers in TABLES."""

    HUB = {
        "customer": {"1000001": "CUS-0000001", "1000002": "CUS-0000002"},
        "subscription": {"40000001": "SUB-0000001", "40000002": "SUB-0000002"},
    }

    def to_hub(self, entity: str, system: str, external_id: str) -> str | None:
        assert system == "sap"
        return self.HUB[entity].get(external_id)

    def to_system(self, entity: str, system: str, hub_id: str) -> str | None:
        return next((k for k, v in self.HUB[entity].items() if v == hub_id), None)


def _reader(rows_per_call: int = 2) -> tuple[SapRfcReader, StandInConnection]:
    connection = StandInConnection()
    settings = RfcSettings("sap.example", "00", "100", "HUB", "secret", rows_per_call=rows_per_call)
    return SapRfcReader(settings, connection), connection


def _read(entity: str, rows_per_call: int = 2) -> tuple[list[dict[str, Any]], StandInConnection]:
    reader, connection = _reader(rows_per_call)
    return [r for batch in reader.read_snapshot(entity) for r in batch.records], connection


def _calls(connection: StandInConnection, table: str) -> list[dict[str, Any]]:
    return [c for c in connection.calls if c["QUERY_TABLE"] == table]


def _keys_asked(call: dict[str, Any]) -> list[str]:
    where = " ".join(o["TEXT"] for o in call["OPTIONS"])
    return LITERAL.findall(where.split(" IN ", 1)[1])


def test_a_value_holding_the_delimiter_is_read_by_its_offset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fields are cut at the OFFSET/LENGTH SAP reports, not split on the delimiter."""
    row = {"KUNNR": "1000009", "NAME1": "Pipe | Drain AG", "STCD1": "", "ZZHUBID": "CUS-9"}
    monkeypatch.setitem(TABLES, "KNA1", [row])
    records, _ = _read("customer")
    assert records[0]["CustomerFullName"] == "Pipe | Drain AG"
    assert records[0]["YY1_HubId"] == "CUS-9"


def test_child_keys_go_in_bounded_in_lists() -> None:
    reader, connection = _reader(rows_per_call=100)
    reader.settings.keys_per_clause = 2
    records = [r for batch in reader.read_snapshot("customer") for r in batch.records]
    assert [r["Currency"] for r in records] == ["CHF", "GBP", "EUR"]
    assert [len(_keys_asked(c)) for c in _calls(connection, "KNVV")] == [2, 1]


def test_customers_in_the_odata_shape_across_pages() -> None:
    records, connection = _read("customer", rows_per_call=2)
    assert records[1] == {
        "Customer": "1000002",
        "CustomerFullName": "O'Brien Logistics Ltd",
        "TaxNumber": "GB139630846",
        "YY1_HubId": "CUS-0000002",
        "CustomerPaymentTerms": "NT60",
        "Currency": "GBP",
    }
    assert records[2]["TaxNumber"] is None  # blank fields are None, as OData omits them
    kna1 = _calls(connection, "KNA1")
    assert [c["ROWSKIPS"] for c in kna1] == [0, 2]  # paged, stops on a short page
    assert [f["FIELDNAME"] for f in kna1[0]["FIELDS"]] == ["KUNNR", "NAME1", "STCD1", "ZZHUBID"]
    for call in _calls(connection, "KNVV"):
        assert " ".join(o["TEXT"] for o in call["OPTIONS"]).startswith("VKORG = '1010' AND ")


@pytest.mark.parametrize(
    ("entity", "key", "header", "child", "expected"),
    [
        ("customer", "Customer", "KNA1", "KNVV", ["1000001", "1000002", "1000003"]),
        (
            "subscription",
            "SalesContract",
            "VBAK",
            "VEDA",
            ["40000001", "40000002", "40000003", "40000004", "40000005"],
        ),
        (
            "invoice",
            "BillingDocument",
            "VBRK",
            None,
            ["90000001", "90000002", "90000003", "90000004", "90000005"],
        ),
        (
            "allocation",
            "Reservation",
            "RKPF",
            "RESB",
            ["0000100001", "0000100002", "0000100003", "0000100004", "0000100005"],
        ),
    ],
)
@pytest.mark.parametrize("rows_per_call", [1, 2, 3, 100])
def test_every_record_exactly_once_and_children_read_per_page(
    entity: str,
    key: str,
    header: str,
    child: str | None,
    expected: list[str],
    rows_per_call: int,
) -> None:
    records, connection = _read(entity, rows_per_call)
    assert [r[key] for r in records] == expected
    pages = -(-len(expected) // rows_per_call)
    assert len(_calls(connection, header)) == pages + (len(expected) % rows_per_call == 0)
    if child is not None:  # one child read per header page, for that page's keys only
        child_calls = _calls(connection, child)
        assert len({tuple(_keys_asked(c)) for c in child_calls}) == pages
        assert all(len(_keys_asked(c)) <= rows_per_call for c in child_calls)
        assert sorted(k for c in child_calls if c["ROWSKIPS"] == 0 for k in _keys_asked(c)) == (
            expected
        )


def test_contracts_with_their_header_validity_period() -> None:
    records, connection = _read("subscription")
    by_number = {r["SalesContract"]: r for r in records}
    assert "0000001" not in by_number  # a sales order, not a contract
    assert by_number["40000001"] == {
        "SalesContract": "40000001",
        "SoldToParty": "1000001",
        "PurchaseOrderByCustomer": "PO-7781",
        "TransactionCurrency": "CHF",
        "YY1_HubId": "SUB-0000001",
        "CreationDate": "2024-01-05",
        "LastChangeDate": "2024-03-01",
        "SalesContractValidityStartDate": "2024-01-01",  # the header row, not item 000010
        "SalesContractValidityEndDate": "2024-12-31",
    }
    second = by_number["40000002"]
    assert second["PurchaseOrderByCustomer"] is None  # empty customer reference
    assert second["SalesContractValidityEndDate"] is None  # 9999-12-31: until further notice
    assert second["LastChangeDate"] is None  # never changed (initial date)
    assert by_number["40000003"]["SalesContractValidityStartDate"] == "2024-02-01"
    assert by_number["40000004"]["SalesContractValidityEndDate"] is None  # blank
    assert by_number["40000004"]["YY1_HubId"] is None
    assert by_number["40000005"]["SalesContractValidityStartDate"] is None  # no VEDA row
    vbak = _calls(connection, "VBAK")[0]
    assert [o["TEXT"] for o in vbak["OPTIONS"]] == ["VBTYP = 'G'"]
    veda = _calls(connection, "VEDA")[0]
    assert " ".join(o["TEXT"] for o in veda["OPTIONS"]).startswith("VPOSN = '000000' AND VBELN IN")


def test_billing_documents_with_decimal_text_and_no_clearing_claim() -> None:
    records, connection = _read("invoice")
    by_number = {r["BillingDocument"]: r for r in records}
    assert by_number["90000001"] == {
        "BillingDocument": "90000001",
        "SoldToParty": "1000001",
        "PayerParty": "1000001",
        "BillingDocumentDate": "2024-02-01",
        "TotalNetAmount": "930.00",
        "TaxAmount": "73.50",
        "TotalGrossAmount": "1003.50",
        "TransactionCurrency": "CHF",
        "YY1_HubId": "INV-0000001",
        "CreationDate": "2024-02-01",
        "LastChangeDate": None,
    }
    assert by_number["90000002"]["PayerParty"] == "1000009"
    assert by_number["90000002"]["TotalGrossAmount"] == "1440.00"
    negative = by_number["90000003"]  # ABAP's trailing sign
    assert (negative["TotalNetAmount"], negative["TotalGrossAmount"]) == ("-12.50", "-14.88")
    assert by_number["90000004"]["TotalGrossAmount"] == "0.00"
    assert all("AmountCleared" not in r for r in records)
    assert all(c["OPTIONS"] == [] for c in _calls(connection, "VBRK"))


def test_reservations_with_their_first_item_and_fulfilment_status() -> None:
    records, connection = _read("allocation")
    by_number = {r["Reservation"]: r for r in records}
    assert by_number["0000100001"] == {
        "Reservation": "0000100001",
        "GoodsMovementType": "601",
        "SalesOrder": "40000001",
        "YY1_HubId": "ALC-0000001",
        "Product": "SKU-BOX-1",
        "Plant": "1010",
        "ResvnItmRequiredQtyInBaseUnit": "12.000",
        "MatlCompRequirementDate": "2024-03-01",
        "ResvnItmWithdrawnQtyInBaseUnit": "0.000",
        "ReservationItemIsFinallyIssued": False,
        "ReservationItmIsMarkedForDeltn": False,
        "GoodsMovementIsAllowed": False,
        "FulfilmentStatus": "reserved",
    }
    second = by_number["0000100002"]  # item 0001, not 0002
    assert (second["Product"], second["Plant"], second["ResvnItmRequiredQtyInBaseUnit"]) == (
        "SKU-BOX-2",
        "1010",
        "2.000",
    )
    assert (second["GoodsMovementIsAllowed"], second["FulfilmentStatus"]) == (True, "picked")
    shipped = by_number["0000100003"]
    assert shipped["ReservationItemIsFinallyIssued"] is True
    assert shipped["ResvnItmWithdrawnQtyInBaseUnit"] == "1.000"
    assert shipped["FulfilmentStatus"] == "shipped"
    released = by_number["0000100004"]
    assert (released["ReservationItmIsMarkedForDeltn"], released["FulfilmentStatus"]) == (
        True,
        "released",
    )
    bare = by_number["0000100005"]  # no item: item fields are none, not false
    assert bare["Product"] is None and bare["ReservationItemIsFinallyIssued"] is None
    assert (bare["SalesOrder"], bare["YY1_HubId"]) == (None, None)
    resb = _calls(connection, "RESB")[0]
    assert " ".join(o["TEXT"] for o in resb["OPTIONS"]).startswith("RSPOS = '0001' AND RSNUM IN")


def _canonical(entity: str, system_id: str) -> dict[str, Any]:
    key = SPECS[entity].key.system_id_field
    records, _ = _read(entity)
    (native,) = [r for r in records if r[key] == system_id]
    return Mapper(SPECS[entity], CODES, Refs()).to_canonical(native)


def test_a_contract_maps_through_the_sap_subscription_mapping() -> None:
    assert _canonical("subscription", "40000002") == {
        "customer_id": "CUS-0000002",
        "contract_number": None,
        "currency": "GBP",
        "start_date": "2024-01-15",
        "end_date": None,
    }


def test_an_invoice_maps_through_the_sap_invoice_mapping() -> None:
    canonical = _canonical("invoice", "90000001")
    assert canonical == {
        "customer_id": "CUS-0000001",
        "currency": "CHF",
        "issue_date": "2024-02-01",
        "subtotal_minor": 93000,
        "tax_minor": 7350,
        "total_minor": 100350,
    }
    assert "amount_paid_minor" not in canonical  # no claim about payment


def test_a_reservation_maps_through_the_sap_allocation_mapping() -> None:
    assert _canonical("allocation", "0000100002") == {
        "subscription_id": "SUB-0000001",
        "sku": "SKU-BOX-2",
        "location": "1010",
        "quantity": 2,
        "delivery_date": "2024-03-10",
        "status": "picked",
    }


def test_other_entities_are_refused_by_name() -> None:
    reader, _ = _reader()
    assert reader.entities() == ["customer", "subscription", "invoice", "allocation"]
    with pytest.raises(PermanentError, match="no read for 'product'") as info:
        list(reader.read_snapshot("product"))
    assert "customer, subscription, invoice, allocation" in str(info.value)


def test_missing_pyrfc_says_what_to_install() -> None:
    with pytest.raises(PermanentError) as info:
        open_connection(RfcSettings("sap.example", "00", "100", "HUB", "secret"))
    assert INSTALL_HINT in str(info.value) and "secret" not in str(info.value)

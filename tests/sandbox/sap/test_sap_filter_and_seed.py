"""The $filter parser on its own, and seeding + restart persistence."""

from __future__ import annotations

import datetime as dt

import pyodata
import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from sandbox.faults import FaultState
from sandbox.sap import SapSettings, create_app, seed_records
from sandbox.sap.filter import (
    FilterError,
    change_floor,
    compile_filter,
    first_key_ranges,
    tokenize,
)
from sandbox.sap.repository import (
    KEY_ID,
    Repository,
    Where,
    changed_since,
    collection,
    doc_id,
    in_key_ranges,
)
from sandbox.sap.services import SERVICES
from sandbox.server import serve_in_thread
from sandbox.store import ID_TOP, DocumentStore

CUSTOMER = SERVICES["API_BUSINESS_PARTNER"].sets["A_Customer"]
PARTNER = SERVICES["API_BUSINESS_PARTNER"].sets["A_BusinessPartner"]
#: a header with the published Edm.DateTimeOffset change stamp (A_Customer has none)
CONTRACT = SERVICES["API_SALES_CONTRACT_SRV"].sets["A_SalesContract"]
ROW = {
    "Customer": "1000001",
    "CustomerName": "O'Neil & Co",
    "YY1_CreditLimitAmount": "1500.00",
    "PostingIsBlocked": False,
}
STAMPED = {"SalesContract": "40000001", "LastChangeDateTime": 1709251200000}  # 2024-03-01Z
#: a business partner changed on 2024-03-01 at 09:05:00 (Edm.DateTime + Edm.Time)
PARTNER_ROW = {
    "BusinessPartner": "1000001",
    "LastChangeDate": 1709251200000,
    "LastChangeTime": "PT09H05M00S",
}


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("CustomerName eq 'O''Neil & Co'", True),
        ("YY1_CreditLimitAmount gt 1499.99M and YY1_CreditLimitAmount le 1500", True),
        ("not (PostingIsBlocked eq true) and (Customer eq '1' or Customer eq '1000001')", True),
        ("substringof('Neil', CustomerName) and startswith(CustomerName, 'O')", True),
        ("endswith(CustomerName, 'Co') eq false", False),
        ("YY1_CreditLimitAmount add 500 eq 2000", True),
        ("CustomerFullName eq null", True),
        ("length(Customer) eq 7 and toupper(CustomerName) eq 'O''NEIL & CO'", True),
    ],
)
def test_filter_expressions(expr, expected):
    assert compile_filter(expr, CUSTOMER)({**ROW, "CustomerFullName": None}) is expected


@pytest.mark.parametrize(
    ("entity_set", "row", "expr", "expected"),
    [
        (
            CONTRACT,
            STAMPED,
            "LastChangeDateTime ge datetimeoffset'2024-03-01T00:00:00+00:00'",
            True,
        ),
        (CONTRACT, STAMPED, "LastChangeDateTime gt datetime'2024-03-01T00:00:00.000'", False),
        # the business partner's stamp: a date and a time of day (literal padded or not)
        (PARTNER, PARTNER_ROW, "LastChangeTime ge time'PT9H5M0S'", True),
        (PARTNER, PARTNER_ROW, "LastChangeTime gt time'PT09H05M00S'", False),
        (
            PARTNER,
            PARTNER_ROW,
            "LastChangeDate gt datetime'2024-03-01T00:00:00' or (LastChangeDate eq "
            "datetime'2024-03-01T00:00:00' and LastChangeTime ge time'PT09H04M59S')",
            True,
        ),
        (PARTNER, PARTNER_ROW, "LastChangeDate gt datetime'2024-03-01T00:00:00'", False),
    ],
)
def test_change_stamp_expressions(entity_set, row, expr, expected):
    assert compile_filter(expr, entity_set)(row) is expected


@pytest.mark.parametrize(
    "expr",
    [
        "Customer eq",
        "(Customer eq '1'",
        "Customer eq 'x",
        "foo(Customer)",
        "Nope eq 1",
        "Customer eq '1' Customer",
        "Customer eq datetime'garbage'",
    ],
)
def test_malformed_filters_are_rejected(expr):
    with pytest.raises(FilterError):
        compile_filter(expr, CUSTOMER)


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30))
def test_string_literals_round_trip_with_doubled_quotes(text):
    literal = "'" + text.replace("'", "''") + "'"
    tokens = tokenize(f"CustomerName eq {literal}")
    assert tokens[-1].kind == "str" and tokens[-1].value == text
    assert compile_filter(f"CustomerName eq {literal}", CUSTOMER)({"CustomerName": text})


def test_seeded_records_survive_a_restart_and_number_ranges_continue(tmp_path):
    path = tmp_path / "sap.sqlite"
    store = DocumentStore(path)
    loaded = seed_records(
        store,
        "API_BILLING_DOCUMENT_SRV.A_BillingDocument",
        (
            {
                "SoldToParty": "1000000",
                "TransactionCurrency": "EUR",
                "TotalNetAmount": 100,
                "TaxAmount": "19",
                "TotalGrossAmount": "119.000",
                "InvoiceClearingStatus": "C" if i % 2 else "A",
                "BillingDocumentDate": dt.date(2024, 5, 1),
                "LastChangeDateTime": "2024-05-01T10:00:00Z",
                "to_Item": [{"Material": "SKU-1", "NetAmount": "100"}],
            }
            for i in range(3)
        ),
    )
    assert loaded == 3
    store.close()
    store = DocumentStore(path)
    with serve_in_thread(
        create_app(store, FaultState(), SapSettings(check_references=False))
    ) as base:
        session = requests.Session()
        session.auth = ("HUB_SANDBOX", "sandbox-password")
        client = pyodata.Client(f"{base}/sap/opu/odata/sap/API_BILLING_DOCUMENT_SRV/", session)
        docs = client.entity_sets.A_BillingDocument.get_entities().expand("to_Item").execute()
        assert [d.BillingDocument for d in docs] == ["90000000", "90000001", "90000002"]
        assert [d.InvoiceClearingStatus for d in docs] == ["A", "C", "A"]
        assert docs[0].TotalNetAmount == "100.000"
        assert docs[0].to_Item[0].BillingDocumentItem == "000010"
        assert docs[0].LastChangeDateTime == dt.datetime(2024, 5, 1, 10, tzinfo=dt.UTC)
        token = session.get(
            f"{base}/sap/opu/odata/sap/API_BILLING_DOCUMENT_SRV/", headers={"X-CSRF-Token": "Fetch"}
        ).headers["x-csrf-token"]
        session.headers["X-CSRF-Token"] = token
        created = (
            client.entity_sets.A_BillingDocument.create_entity()
            .set(TransactionCurrency="USD", SoldToParty="1000000", TotalNetAmount="1.000")
            .execute()
        )
        assert created.BillingDocument == "90000003"
    store.close()


TAX_NUMBER = SERVICES["API_BUSINESS_PARTNER"].sets["A_BusinessPartnerTaxNumber"]


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("BusinessPartner ge '100' and BusinessPartner le '200'", [("100", "200" + ID_TOP)]),
        ("BusinessPartner eq '7'", [("7", "7" + ID_TOP)]),
        (
            "BusinessPartner gt '1' and BusinessPartner lt '3' and BusinessPartner ge '2'",
            [("2", "3")],
        ),
        (
            "BusinessPartner eq '2' or BusinessPartner eq '10' or BusinessPartner eq '2'",
            [("10", "10\x1f" + ID_TOP), ("2", "2\x1f" + ID_TOP)],
        ),
        ("BusinessPartner eq '1' or BusinessPartner ge '2'", None),  # not one range per value
        ("BusinessPartner eq '1' or BusinessPartner eq '2' and BusinessPartner eq '3'", None),
        ("(BusinessPartner ge '1')", None),
        ("BPTaxType eq 'DE0'", None),  # not the first key
        ("BusinessPartner ge '1' and BPTaxType eq 'DE0'", None),
        ("BusinessPartner ne '1'", None),
    ],
)
def test_first_key_ranges_only_for_the_shapes_an_index_answers(expr, expected):
    assert first_key_ranges(expr, TAX_NUMBER) == expected


_PARTNER = st.text(alphabet="0129ab", min_size=1, max_size=4)
_BOUNDS = st.lists(
    st.tuples(st.sampled_from(["ge", "gt", "le", "lt", "eq"]), _PARTNER), min_size=1, max_size=3
).map(lambda terms: " and ".join(f"BusinessPartner {op} '{v}'" for op, v in terms))
_ANY_OF = st.lists(_PARTNER, min_size=1, max_size=5).map(
    lambda values: " or ".join(f"BusinessPartner eq '{v}'" for v in values)
)


@given(partners=st.sets(_PARTNER, max_size=12), expr=st.one_of(_BOUNDS, _ANY_OF))
def test_a_key_range_scan_finds_exactly_what_the_full_scan_finds(tmp_path_factory, partners, expr):
    """The ranges are only a shortcut: for any bounds or set of values they must keep every
    match, in id order, including partners whose number is a prefix of another's (ids are
    'partner<sep>type')."""
    store = DocumentStore(tmp_path_factory.mktemp("range") / "sap.sqlite")
    repo = Repository(store, {}, check_references=False)
    svc = SERVICES["API_BUSINESS_PARTNER"]
    coll = collection(svc, TAX_NUMBER)
    store.put_many(
        coll,
        [
            (doc_id(TAX_NUMBER, row), {**row, KEY_ID: doc_id(TAX_NUMBER, row)})
            for partner in partners
            for row in ({"BusinessPartner": partner, "BPTaxType": t} for t in ("DE0", "US1"))
        ],
    )
    predicate = compile_filter(expr, TAX_NUMBER)
    key_ranges = first_key_ranges(expr, TAX_NUMBER)
    assert key_ranges is not None
    ranged = repo.scan_ids(
        svc, TAX_NUMBER, expr, [], "", lambda: (predicate, in_key_ranges(key_ranges))
    )
    repo._cache.clear()
    full = repo.scan_ids(svc, TAX_NUMBER, expr, [], "", lambda: (predicate, None))
    assert ranged == full
    store.close()


def test_following_pages_of_a_query_do_not_compile_its_filter_again(tmp_path) -> None:
    """Server paging re-sends the same $filter for every page: the cached ids answer it,
    and the filter is compiled (tokenised, parsed) only on the first page."""
    store = DocumentStore(tmp_path / "sap.sqlite")
    repo = Repository(store, {}, check_references=False)
    svc = SERVICES["API_BUSINESS_PARTNER"]
    row = {"BusinessPartner": "1", "BPTaxType": "DE0"}
    store.put_many(collection(svc, TAX_NUMBER), [(doc_id(TAX_NUMBER, row), {**row, KEY_ID: "x"})])
    expr = "BusinessPartner eq '1'"
    compiled = []

    def where() -> Where:
        compiled.append(expr)
        return compile_filter(expr, TAX_NUMBER), None

    pages = [repo.scan_ids(svc, TAX_NUMBER, expr, [], "", where) for _ in range(3)]
    assert pages == [["x"]] * 3
    assert compiled == [expr]
    store.close()


_T0 = 1_764_000_000_000  # epoch ms, late 2025


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds")


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("LastChangeDateTime ge datetimeoffset'2024-03-01T00:00:00Z'", 1709251199999),
        ("LastChangeDateTime gt datetime'2024-03-01T00:00:00.000'", 1709251199999),
        (
            "LastChangeDateTime ge datetimeoffset'2024-03-01T00:00:00Z' and "
            "LastChangeDateTime lt datetimeoffset'2024-04-01T00:00:00Z' and SalesContract eq '1'",
            1709251199999,
        ),
        ("LastChangeDateTime lt datetimeoffset'2024-03-01T00:00:00Z'", None),  # no lower bound
        (
            "LastChangeDateTime ge datetimeoffset'2024-03-01T00:00:00Z' or SalesContract eq '1'",
            None,
        ),
        ("(LastChangeDateTime ge datetimeoffset'2024-03-01T00:00:00Z')", None),
        ("SalesContract eq '1'", None),
    ],
)
def test_change_floor_only_for_a_conjunction_with_a_lower_bound(expr, expected):
    assert change_floor(expr, CONTRACT) == expected


@given(
    stamps=st.lists(st.integers(0, 50), max_size=30),
    low=st.integers(-2, 52),
    op=st.sampled_from(["ge", "gt", "eq"]),
    high=st.none() | st.integers(0, 52),
)
def test_a_delta_read_from_the_stamp_index_finds_exactly_what_the_full_scan_finds(
    tmp_path_factory, stamps, low, op, high
):
    """The stamp index only narrows: for any stamps (ties included) and bounds, the
    documents it yields, filtered by the predicate, are those a full scan finds."""
    store = DocumentStore(tmp_path_factory.mktemp("delta") / "sap.sqlite")
    repo = Repository(store, {}, check_references=False)
    svc = SERVICES["API_SALES_CONTRACT_SRV"]
    store.put_many(
        collection(svc, CONTRACT),
        [
            (
                f"{i:04d}",
                {"SalesContract": f"{i:04d}", KEY_ID: f"{i:04d}", "LastChangeDateTime": _T0 + s},
            )
            for i, s in enumerate(stamps)
        ],
    )
    expr = f"LastChangeDateTime {op} datetimeoffset'{_iso(_T0 + low)}'"
    if high is not None:
        expr += f" and LastChangeDateTime lt datetimeoffset'{_iso(_T0 + high)}'"
    floor = change_floor(expr, CONTRACT)
    assert floor is not None
    predicate = compile_filter(expr, CONTRACT)
    narrowed = repo.scan_ids(
        svc, CONTRACT, expr, [], "", lambda: (predicate, changed_since("LastChangeDateTime", floor))
    )
    repo._cache.clear()
    full = repo.scan_ids(svc, CONTRACT, expr, [], "", lambda: (predicate, None))
    assert sorted(narrowed) == full
    store.close()


def test_a_delta_query_reads_from_the_stamp_index(tmp_path) -> None:
    """The emulator answers "changed since" through the index, as S/4 does: the query
    plan SQLite picks for it searches the index instead of scanning the set."""
    store = DocumentStore(tmp_path / "sap.sqlite")
    Repository(store, {}, check_references=False)  # creates the index
    plan = store._conn.execute(
        "EXPLAIN QUERY PLAN SELECT data FROM docs WHERE collection=? "
        "AND json_extract(data, '$.LastChangeDateTime')>=? "
        "ORDER BY json_extract(data, '$.LastChangeDateTime'), id",
        ("c", 1),
    ).fetchall()
    assert "docs_by_LastChangeDateTime" in str(plan), plan
    store.close()

"""The Salesforce connector against orgs configured unlike the default sandbox org: a
retired API version, a single-currency org, State and Country/Territory Picklists. Each
test serves just the Salesforce emulator (HTTPS, in this process) with its own org
settings, and drives it through the real connector and simple-salesforce."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from connectors.errors import PermanentError
from connectors.retry import RetryPolicy
from connectors.salesforce import SalesforceConnector
from hub.systems import connect
from sandbox.faults import FaultState
from sandbox.salesforce import SalesforceSettings, create_app
from sandbox.server import TLSFiles, serve_in_thread
from sandbox.store import DocumentStore
from sandbox.tls import ensure_tls

FAST = RetryPolicy(max_attempts=3, max_seconds=5, initial_wait=0.01, max_wait=0.1, jitter=0)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return ensure_tls(tmp_path_factory.mktemp("sf-org-tls"))


class Org:
    def __init__(self, base: str, store: DocumentStore, settings: SalesforceSettings, ca: Path):
        self.base, self.store, self.settings, self.ca = base, store, settings, ca

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "SALESFORCE_LOGIN_URL": self.base,
            "SALESFORCE_CLIENT_ID": self.settings.client_id,
            "SALESFORCE_CLIENT_SECRET": self.settings.client_secret,
            "SALESFORCE_API_VERSION": self.settings.api_version,
            "HUB_CA_BUNDLE": str(self.ca),
            **extra,
        }

    def connector(self, **extra: str) -> SalesforceConnector:
        connector = connect("salesforce", self.env(**extra))
        assert isinstance(connector, SalesforceConnector)
        connector.settings.retry = FAST
        connector.settings.bulk_poll_initial = 0.01
        connector.settings.cursor_overlap_seconds = 0
        return connector


@pytest.fixture
def make_org(tmp_path: Path, tls: TLSFiles) -> Iterator[Callable[..., Org]]:
    made = 0
    with ExitStack() as stack:

        def make(**settings: Any) -> Org:
            nonlocal made
            made += 1
            store = DocumentStore(tmp_path / f"org{made}.sqlite")
            stack.callback(store.close)
            config = SalesforceSettings(**settings)
            base = stack.enter_context(
                serve_in_thread(create_app(store, FaultState(seed=3), config), tls=tls)
            )
            return Org(base, store, config, tls.ca_bundle)

        yield make


# -- retired API versions -----------------------------------------------------------------
def test_a_retired_api_version_is_a_permanent_error_naming_the_variable_and_the_fix(
    make_org: Callable[..., Org],
) -> None:
    org = make_org(min_api_version="45.0")
    sf = org.connector(SALESFORCE_API_VERSION="44.0")
    with pytest.raises(PermanentError) as caught:
        list(sf.read_by_keys("customer", ["CUS-1"]))
    text = str(caught.value)
    assert caught.value.status == 410
    assert "SALESFORCE_API_VERSION" in text and "44.0" in text
    assert "UNSUPPORTED_API_VERSION" in text
    assert "Set SALESFORCE_API_VERSION to a supported version" in text
    sf.close()
    # the oldest version the org serves works
    sf = org.connector(SALESFORCE_API_VERSION="45.0")
    assert list(sf.read_by_keys("customer", ["CUS-1"])) == []
    sf.close()


# -- single-currency orgs -----------------------------------------------------------------
def _account(hub_id: str, **extra: Any) -> dict[str, Any]:
    return {"Hub_Id__c": hub_id, "Name": f"Customer {hub_id}", "BillingCountry": "DE", **extra}


def _invoice(hub_id: str, account: str, currency: str, total: str) -> dict[str, Any]:
    return {
        "Hub_Id__c": hub_id,
        "Invoice_Number__c": hub_id.replace("INV", "N"),
        "Account__c": account,
        "Status__c": "open",
        "CurrencyIsoCode": currency,
        "Subtotal_Amount__c": total,
        "Tax_Amount__c": "0",
        "Total_Amount__c": total,
        "Amount_Paid__c": "0",
    }


class _Refs:
    """Hub ids for the ids of the test's own records (a sync's xref table)."""

    def __init__(self, ids: dict[str, str]) -> None:
        self.ids = ids

    def to_hub(self, entity: str, system: str, external_id: str) -> str | None:
        return self.ids.get(external_id)

    def to_system(self, entity: str, system: str, hub_id: str) -> str | None:
        return next((k for k, v in self.ids.items() if v == hub_id), None)


def _mapper(entity: str, refs: _Refs) -> Any:
    from hub.mapping.mapper import Mapper
    from hub.mapping.spec import load_all

    specs, errors = load_all()
    assert not errors
    spec = next(s for s in specs if s.system == "salesforce" and s.entity == entity)
    return Mapper(spec, {"salesforce_segment": {"SMB": "smb"}}, refs)


def test_single_currency_org_customers_and_invoices_sync_in_the_orgs_currency(
    make_org: Callable[..., Org],
) -> None:
    org = make_org(multi_currency=False, default_currency="EUR")
    sf = org.connector()
    # customers: the golden record's currency is not the org's business; it is not sent
    written = sf.write_batch(
        "customer",
        [_account("CUS-1", CurrencyIsoCode="EUR"), _account("CUS-2", CurrencyIsoCode="USD")],
    )
    assert [r.outcome.value for r in written] == ["created", "created"], written
    accounts, cursor = [], None
    for batch in sf.read_changes("customer", None):  # Bulk API 2.0 query
        accounts += batch.records
        cursor = batch.cursor
    assert sorted(a["Hub_Id__c"] for a in accounts) == ["CUS-1", "CUS-2"]
    assert {a["CurrencyIsoCode"] for a in accounts} == {"EUR"}
    ids = {a["Id"]: a["Hub_Id__c"] for a in accounts}
    account_of = {v: k for k, v in ids.items()}

    # invoices: in the org's currency they are written; in another they are refused
    # before anything is sent (the org would show the amounts as euros)
    results = sf.write_batch(
        "invoice",
        [
            _invoice("INV-1", account_of["CUS-1"], "EUR", "120.50"),
            _invoice("INV-2", account_of["CUS-2"], "USD", "99.00"),
            _invoice("INV-3", account_of["CUS-2"], "EUR", "10.005"),
        ],
    )
    assert [r.outcome.value for r in results] == ["created", "rejected", "created"]
    assert results[1].error_code == "CURRENCY_NOT_IN_ORG"
    assert "single-currency (EUR)" in (results[1].error or "") and "USD" in (results[1].error or "")
    # the Bulk API path leaves the field out of the CSV as well
    sf.settings.bulk_threshold = 0
    bulk = sf.write_batch("invoice", [_invoice("INV-4", account_of["CUS-1"], "EUR", "5")])
    assert [r.outcome.value for r in bulk] == ["created"], bulk

    invoices = [
        r for b in sf.read_by_keys("invoice", ["INV-1", "INV-3", "INV-4"]) for r in b.records
    ]
    assert sorted(i["Hub_Id__c"] for i in invoices) == ["INV-1", "INV-3", "INV-4"]
    assert {i["CurrencyIsoCode"] for i in invoices} == {"EUR"}
    refs = _Refs(ids | {i["Id"]: i["Hub_Id__c"] for i in invoices})
    canonical = _mapper("invoice", refs).to_canonical(
        next(i for i in invoices if i["Hub_Id__c"] == "INV-1")
    )
    assert canonical["currency"] == "EUR" and canonical["total_minor"] == 12050
    assert canonical["customer_id"] == "CUS-1"
    customer = _mapper("customer", refs).to_canonical(accounts[0])
    assert customer["currency"] == "EUR"

    # deltas (REST) after the cursor: a changed account comes back with the org currency
    assert sf.write_batch("customer", [_account("CUS-2", Name="Renamed", CurrencyIsoCode="GBP")])
    changed = [r for b in sf.read_changes("customer", cursor) for r in b.records]
    assert [(r["Hub_Id__c"], r["Name"], r["CurrencyIsoCode"]) for r in changed] == [
        ("CUS-2", "Renamed", "EUR")
    ]
    sf.close()


def test_multi_currency_org_is_read_and_written_with_currency_iso_code(
    make_org: Callable[..., Org],
) -> None:
    org = make_org()
    sf = org.connector()
    assert sf.write_batch("customer", [_account("CUS-9", CurrencyIsoCode="GBP")])[0].outcome
    (account,) = [r for b in sf.read_by_keys("customer", ["CUS-9"]) for r in b.records]
    assert account["CurrencyIsoCode"] == "GBP"
    sf.close()


# -- State and Country/Territory Picklists ------------------------------------------------
def test_country_picklist_org_is_written_and_read_through_the_country_code_fields(
    make_org: Callable[..., Org],
) -> None:
    org = make_org(state_country_picklists=True)
    sf = org.connector()
    written = sf.write_batch(
        "customer",
        [
            _account("CUS-1", BillingCountry="NO", ShippingCountry="SE", CurrencyIsoCode="NOK"),
            _account("CUS-2", BillingCountry="XX"),  # not a country the org allows
        ],
    )
    assert [r.outcome.value for r in written] == ["created", "rejected"]
    assert written[1].error_code == "FIELD_INTEGRITY_EXCEPTION"
    sf.settings.bulk_threshold = 0  # the Bulk API path: the CSV column is the code field
    assert (
        sf.write_batch("customer", [_account("CUS-3", BillingCountry="JP")])[0].outcome.value
        == "created"
    )

    (first,) = [r for b in sf.read_by_keys("customer", ["CUS-1"]) for r in b.records]
    assert (first["BillingCountry"], first["ShippingCountry"]) == ("NO", "SE")
    assert "BillingCountryCode" not in first
    bulk_read = {r["Hub_Id__c"]: r for b in sf.read_changes("customer", None) for r in b.records}
    assert bulk_read["CUS-3"]["BillingCountry"] == "JP"
    canonical = _mapper("customer", _Refs({})).to_canonical(first)
    assert canonical["billing_address"]["country"] == "NO"
    # in the org, the name is kept beside the code
    stored = sf._client().query("SELECT BillingCountry FROM Account WHERE Hub_Id__c = 'CUS-1'")
    assert stored["records"][0]["BillingCountry"] == "Norway"
    sf.close()


# -- native_fields (DescribesFields) ------------------------------------------------------
def test_native_fields_come_from_the_live_describe_and_check_the_mappings(
    make_org: Callable[..., Org],
) -> None:
    from connectors.base import DescribesFields
    from hub.mapping.spec import load_all

    org = make_org(multi_currency=False, state_country_picklists=True)
    sf = org.connector()
    assert isinstance(sf, DescribesFields)
    native = sf.native_fields()
    assert set(native) == {"Account", "Product2", "Subscription__c", "Invoice__c"}
    assert {"Hub_Id__c", "Segment__c", "BillingCountryCode", "SystemModstamp"} <= native["Account"]
    # the org has no CurrencyIsoCode, but the connector presents it to the mappings
    assert "CurrencyIsoCode" in native["Invoice__c"] and "CurrencyIsoCode" in native["Account"]
    assert "CurrencyIsoCode" not in native["Product2"]  # not mapped there: not derived
    assert "Family" in native["Product2"] and "Total_Amount__c" in native["Invoice__c"]
    _, errors = load_all(native={"salesforce": native})
    assert errors == []

    # an org lacking a mapped field (here: Segment__c not deployed or not visible to the
    # integration user) is named with the mapping file and field
    lacking = {**native, "Account": native["Account"] - {"Segment__c"}}
    _, errors = load_all(native={"salesforce": lacking})
    assert len(errors) == 1
    assert "Segment__c" in str(errors[0]) and "customer.yaml" in str(errors[0])
    sf.close()


#: the fields of the pause and the dunning history (issue 17), by sObject
PAUSE_AND_DUNNING = {
    "Subscription__c": frozenset({"Paused_At__c", "Resume_At__c"}),
    "Invoice__c": frozenset({"Dunning_History__c"}),
}


class _OrgBefore:
    """The connector to an org whose describe lacks ``missing`` ({sObject: fields}), as
    one deployed before those fields were: what ``hub systems check`` reads."""

    def __init__(self, sf: SalesforceConnector, missing: dict[str, frozenset[str]]) -> None:
        self.sf, self.missing = sf, missing

    def health(self) -> Any:
        return self.sf.health()

    def native_fields(self) -> dict[str, frozenset[str]]:
        native = self.sf.native_fields()
        return {name: fields - self.missing.get(name, set()) for name, fields in native.items()}

    def close(self) -> None:
        self.sf.close()


def test_systems_check_names_the_pause_and_dunning_history_fields_an_org_lacks(
    make_org: Callable[..., Org],
) -> None:
    from hub.systems_check import check_connector

    org = make_org()
    sf = org.connector()
    native = sf.native_fields()
    for name, fields in PAUSE_AND_DUNNING.items():
        assert fields <= native[name], name
    assert check_connector("salesforce", sf).ok

    report = check_connector("salesforce", _OrgBefore(sf, PAUSE_AND_DUNNING))  # type: ignore[arg-type]
    assert report.reachable and not report.ok
    named = {
        (file, field)
        for problem in report.problems
        for file in ("subscription.yaml", "invoice.yaml")
        for field in ("Paused_At__c", "Resume_At__c", "Dunning_History__c")
        if f"salesforce/{file}:" in problem and f"'{field}'" in problem
    }
    assert named == {
        ("subscription.yaml", "Paused_At__c"),
        ("subscription.yaml", "Resume_At__c"),
        ("invoice.yaml", "Dunning_History__c"),
    }, report.problems
    assert len(report.problems) == 3 and all("add the field" in p for p in report.problems)
    sf.close()


def test_an_sobject_the_org_lacks_is_a_permanent_error_naming_it(
    make_org: Callable[..., Org],
) -> None:
    from connectors.salesforce import SObject

    org = make_org()
    sf = org.connector()
    sf.sobjects["widget"] = SObject("Widget__c", "Hub_Id__c", ("Hub_Id__c", "CurrencyIsoCode"))
    with pytest.raises(PermanentError, match="the org has no sObject Widget__c"):
        sf.native_fields()
    with pytest.raises(PermanentError, match="Widget__c"):
        list(sf.read_by_keys("widget", ["W-1"]))
    sf.close()


def test_state_picklist_org_is_written_and_read_through_the_state_code_fields(
    make_org: Callable[..., Org],
) -> None:
    org = make_org(state_country_picklists=True)
    sf = org.connector()
    mapper = _mapper("customer", _Refs({}))
    # as the customer mapping hands the region over: the code, in the state text field
    native = _account(
        "CUS-1", BillingCountry="US", BillingState="CA", ShippingCountry="CA",
        ShippingState="ON",
    )  # fmt: skip
    written = sf.write_batch(
        "customer",
        [
            native,
            _account("CUS-2", BillingCountry="US", BillingState="ZZ"),  # no such state
            _account("CUS-3", BillingCountry="CA", BillingState="TX"),  # not in Canada
        ],
    )
    assert [r.outcome.value for r in written] == ["created", "rejected", "rejected"], written
    assert {r.error_code for r in written[1:]} == {"FIELD_INTEGRITY_EXCEPTION"}
    assert "valid states" in (written[1].error or "")
    sf.settings.bulk_threshold = 0  # the Bulk API path: the CSV column is the code field
    bulk = sf.write_batch("customer", [_account("CUS-4", BillingCountry="AU", BillingState="NSW")])
    assert [r.outcome.value for r in bulk] == ["created"], bulk

    (first,) = [r for b in sf.read_by_keys("customer", ["CUS-1"]) for r in b.records]
    assert (first["BillingState"], first["ShippingState"]) == ("CA", "ON")
    assert "BillingStateCode" not in first
    canonical = mapper.to_canonical(first)
    assert canonical["billing_address"]["region"] == "CA"
    assert canonical["shipping_address"]["region"] == "ON"
    bulk_read = {r["Hub_Id__c"]: r for b in sf.read_changes("customer", None) for r in b.records}
    assert bulk_read["CUS-4"]["BillingState"] == "NSW" and "CUS-2" not in bulk_read
    # in the org, the name is kept beside the code
    stored = sf._client().query(
        "SELECT BillingStateCode, BillingState, ShippingState FROM Account "
        "WHERE Hub_Id__c = 'CUS-1'"
    )["records"][0]
    assert (stored["BillingStateCode"], stored["BillingState"]) == ("CA", "California")
    assert stored["ShippingState"] == "Ontario"
    sf.close()


def test_without_picklists_the_region_stays_in_the_state_text_field(
    make_org: Callable[..., Org],
) -> None:
    org = make_org()
    sf = org.connector()
    written = sf.write_batch("customer", [_account("CUS-5", BillingState="TX")])
    assert [r.outcome.value for r in written] == ["created"], written
    (account,) = [r for b in sf.read_by_keys("customer", ["CUS-5"]) for r in b.records]
    assert account["BillingState"] == "TX" and "BillingStateCode" not in account
    sf.close()

"""Metadata and query behaviour seen through unmodified pyodata."""

from __future__ import annotations

from decimal import Decimal

import pyodata
import pytest
import requests
from pyodata.v2.model import EndRole

from sandbox.sap import SERVICES, seed_records

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_pyodata_loads_metadata_of_every_service(sap, service):
    session = sap.session()
    raw = session.get(sap.service_url(service) + "$metadata")
    assert raw.status_code == 200
    assert raw.headers["content-type"].startswith("application/xml")
    assert b'm:DataServiceVersion="2.0"' in raw.content
    assert b'edmx:Edmx Version="1.0"' in raw.content
    client = pyodata.Client(sap.service_url(service), session)
    names = {es.name for es in client.schema.entity_sets}
    assert names == set(SERVICES[service].sets)
    assert client.schema.association_sets  # header -> item navigations are declared


def test_metadata_carries_sap_annotations_and_header_item_navigation(sap):
    client = sap.client("API_BILLING_DOCUMENT_SRV", csrf=False)
    header = client.schema.entity_type("A_BillingDocumentType")
    nav = header.nav_proprty("to_Item")
    assert nav.to_role.entity_type.name == "A_BillingDocumentItemType"
    assert nav.to_role.multiplicity == EndRole.MULTIPLICITY_ZERO_OR_MORE
    prop = header.proprty("BillingDocumentDate")
    assert prop.date and prop.label == "Billing Date"
    amount = header.proprty("TotalNetAmount")
    assert (amount.typ.name, amount.precision, amount.scale) == ("Edm.Decimal", 16, 3)
    assert header.proprty("LastChangeDateTime").typ.name == "Edm.DateTimeOffset"
    assert header.proprty("BillingDocument").max_length == 10


def test_filtered_reads_page_with_next_url_across_server_pages(seeded):
    client = seeded.client("API_BUSINESS_PARTNER", csrf=False)
    request = client.entity_sets.A_BusinessPartner.get_entities()
    page = (
        request.filter(
            "LastChangeDate eq datetime'2024-03-01T00:00:00' and LastChangeTime gt time'PT0H4M30S'"
        )
        .order_by("LastChangeDate asc,LastChangeTime asc")
        .count(inline=True)
        .execute()
    )
    seen = [e.Customer for e in page]
    assert page.total_count == 45
    assert len(seen) == 20 and page.next_url and "$skiptoken=20" in page.next_url
    pages = 1
    while page.next_url:
        page = client.entity_sets.A_BusinessPartner.get_entities().next_url(page.next_url).execute()
        seen.extend(e.Customer for e in page)
        pages += 1
    assert pages == 3
    assert seen == [str(2000000 + i) for i in range(5, 50)]


def test_top_pages_at_the_larger_maximum(sap_factory):
    sap = sap_factory(page_size=10, max_page_size=15)
    seed_records(sap.store, "A_Customer", ({"CustomerName": f"N{i}"} for i in range(40)))
    client = sap.client("API_BUSINESS_PARTNER", csrf=False)
    first = client.entity_sets.A_Customer.get_entities().top(30).execute()
    assert len(first) == 15 and first.next_url
    second = client.entity_sets.A_Customer.get_entities().next_url(first.next_url).execute()
    assert len(second) == 15 and second.next_url is None
    assert {e.Customer for e in first}.isdisjoint(e.Customer for e in second)
    default = client.entity_sets.A_Customer.get_entities().execute()
    assert len(default) == 10 and "$skiptoken=10" in default.next_url


def test_select_orderby_inlinecount_count_and_skip(seeded):
    client = seeded.client("API_BUSINESS_PARTNER", csrf=False)
    customers = client.entity_sets.A_Customer
    page = (
        customers.get_entities()
        .select("Customer,CustomerName")
        .order_by("CustomerName desc")
        .top(3)
        .skip(2)
        .count(inline=True)
        .execute()
    )
    assert [e.CustomerName for e in page] == ["Customer 047", "Customer 046", "Customer 045"]
    assert page.total_count == 50
    assert customers.get_entities().count().execute() == 50
    startswith = customers.get_entities().filter(CustomerName__startswith="Customer 01").count()
    assert startswith.execute() == 10
    raw = seeded.session().get(
        seeded.service_url("API_BUSINESS_PARTNER") + "A_Customer",
        params={"$select": "Customer", "$top": "1", "$format": "json"},
    )
    row = raw.json()["d"]["results"][0]
    assert set(row) == {"__metadata", "Customer"}
    assert row["__metadata"]["type"] == "API_BUSINESS_PARTNER.A_CustomerType"


def test_filter_grammar_over_http(seeded):
    url = seeded.service_url("API_BUSINESS_PARTNER") + "A_Customer/$count"
    session = seeded.session()

    def count(expr: str) -> int:
        resp = session.get(url, params={"$filter": expr})
        assert resp.status_code == 200, resp.text
        return int(resp.text)

    assert count("Customer eq '2000001' or (Customer eq '2000002' and not (YY1_HubId eq 'x'))") == 2
    assert count("YY1_CreditLimitAmount ge 1040.50M and YY1_CreditLimitAmount lt 1045") == 5
    assert count("substringof('er 00', CustomerName) eq true") == 10
    assert count("CreationDate lt datetime'2024-03-02T00:00:00'") == 50
    assert count("CreationDate gt datetime'2024-03-01T00:00:00'") == 0
    assert count("CustomerName ne 'O''Neil' and length(Customer) eq 7") == 50
    assert count("startswith(tolower(CustomerName), 'customer 04')") == 10
    bad = session.get(url, params={"$filter": "Customer eq"})
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "/IWBEP/CM_MGW_RT/004"
    unknown = session.get(url, params={"$filter": "Nope eq 1"})
    assert unknown.status_code == 400 and "Nope" in unknown.json()["error"]["message"]["value"]


def test_json_wire_format_dates_decimals_and_etag(seeded):
    session = seeded.session()
    url = seeded.service_url("API_BUSINESS_PARTNER") + "A_Customer('2000003')"
    resp = session.get(url, headers={"Accept": "application/json"})
    body = resp.json()["d"]
    assert "LastChangeDateTime" not in body and "LastChangeDate" not in body  # as published
    assert body["YY1_CreditLimitAmount"] == "1003.50"
    assert body["CreationDate"] == "/Date(1709251200000)/"
    assert body["__metadata"]["etag"] == resp.headers["etag"]
    assert body["__metadata"]["uri"] == url
    assert body["to_CustomerSalesArea"] == {"__deferred": {"uri": url + "/to_CustomerSalesArea"}}
    client = seeded.client("API_BUSINESS_PARTNER", csrf=False)
    entity = client.entity_sets.A_Customer.get_entity("2000003").expand("to_CustomerSalesArea")
    customer = entity.execute()
    assert customer.YY1_CreditLimitAmount == "1003.50"
    assert Decimal(customer.YY1_CreditLimitAmount) == Decimal("1003.5")
    partner = session.get(
        seeded.service_url("API_BUSINESS_PARTNER") + "A_BusinessPartner('2000003')"
    ).json()["d"]
    assert (partner["LastChangeDate"], partner["LastChangeTime"]) == (
        "/Date(1709251200000)/",
        "PT00H03M00S",
    )
    assert "LastChangeDateTime" not in partner
    assert [a.CustomerPaymentTerms for a in customer.to_CustomerSalesArea] == ["NT30"]
    areas = customer.nav("to_CustomerSalesArea").get_entities().execute()
    assert [a.Currency for a in areas] == ["EUR"]


def test_missing_entity_and_unknown_set_answer_sap_errors(sap):
    session = sap.session()
    root = sap.service_url("API_BUSINESS_PARTNER")
    missing = session.get(root + "A_Customer('404')")
    assert missing.status_code == 404
    assert missing.json()["error"]["message"]["value"].startswith("Resource not found")
    unknown = session.get(root + "A_Nothing")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "/IWBEP/CM_MGW_RT/020"
    client = sap.client("API_BUSINESS_PARTNER", csrf=False)
    with pytest.raises(pyodata.exceptions.HttpError) as info:
        client.entity_sets.A_Customer.get_entity("404").execute()
    assert info.value.response.status_code == 404


def test_bad_credentials_and_wrong_client_are_401(sap):
    url = sap.service_url("API_BUSINESS_PARTNER") + "$metadata"
    assert sap.session(password="wrong").get(url).status_code == 401
    anonymous = requests.get(url, timeout=5)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Basic realm=")
    wrong_client = sap.session().get(url, params={"sap-client": "999"})
    assert wrong_client.status_code == 401
    with pytest.raises(pyodata.exceptions.HttpError):
        pyodata.Client(sap.service_url("API_BUSINESS_PARTNER"), sap.session(password="x"))


def test_select_with_paths_into_an_expanded_navigation_keeps_just_those(seeded):
    """OData V2 as SAP Gateway reads it: ``Nav/Prop`` in ``$select`` keeps only ``Prop`` of
    the entities expanded under ``Nav`` (each with its ``__metadata``), a name on its own or
    ``Nav/*`` keeps all of it, and a path needs its navigation property in ``$expand``."""
    session = seeded.session()
    url = seeded.service_url("API_BUSINESS_PARTNER") + "A_Customer"
    params = {
        "$expand": "to_CustomerSalesArea",
        "$select": "Customer,YY1_HubId,to_CustomerSalesArea/Currency",
        "$top": "2",
        "$format": "json",
    }
    rows = session.get(url, params=params).json()["d"]["results"]
    assert len(rows) == 2
    for row in rows:
        assert set(row) == {"__metadata", "Customer", "YY1_HubId", "to_CustomerSalesArea"}
        (area,) = row["to_CustomerSalesArea"]["results"]
        assert set(area) == {"__metadata", "Currency"} and area["Currency"] == "EUR"
        assert area["__metadata"]["type"] == "API_BUSINESS_PARTNER.A_CustomerSalesAreaType"
    for whole in ("to_CustomerSalesArea", "to_CustomerSalesArea/*"):
        row = session.get(url, params={**params, "$select": f"Customer,{whole}"}).json()["d"]
        (area,) = row["results"][0]["to_CustomerSalesArea"]["results"]
        assert {"Currency", "CustomerPaymentTerms", "SalesOrganization"} < set(area)
    not_expanded = session.get(url, params={**params, "$expand": ""})
    assert not_expanded.status_code == 400
    assert not_expanded.json()["error"]["code"] == "/IWBEP/CM_MGW_RT/004"
    for bad in ("Customer/Currency", "to_CustomerSalesArea/Nothing"):
        assert session.get(url, params={**params, "$select": bad}).status_code == 400
    # through pyodata: the selected values, nothing else fetched
    client = seeded.client("API_BUSINESS_PARTNER", csrf=False)
    (customer,) = (
        client.entity_sets.A_Customer.get_entities()
        .expand("to_CustomerSalesArea")
        .select("Customer,to_CustomerSalesArea/CustomerPaymentTerms")
        .filter("Customer eq '2000003'")
        .execute()
    )
    assert customer.Customer == "2000003"
    assert [a.CustomerPaymentTerms for a in customer.to_CustomerSalesArea] == ["NT30"]

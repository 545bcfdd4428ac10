"""Atom/XML answers and content negotiation, as SAP Gateway has them: Atom unless JSON is
asked for ($format first, then Accept), errors in the format asked for, and JSON clients
(pyodata, Accept or $format=json) unaffected."""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET

import pytest
import requests

from sandbox.sap import SERVICES, seed_records

pytestmark = pytest.mark.timeout(60)

ATOM = "{http://www.w3.org/2005/Atom}"
APP = "{http://www.w3.org/2007/app}"
D = "{http://schemas.microsoft.com/ado/2007/08/dataservices}"
M = "{http://schemas.microsoft.com/ado/2007/08/dataservices/metadata}"
RELATED = "http://schemas.microsoft.com/ado/2007/08/dataservices/related/"
XML_BASE = "{http://www.w3.org/XML/1998/namespace}base"
BP = "API_BUSINESS_PARTNER"


def plain(sap) -> requests.Session:
    """A session that sends no Accept header at all (SAP Gateway then answers Atom)."""
    session = sap.session()
    del session.headers["Accept"]
    return session


def props(entry: ET.Element) -> dict[str, ET.Element]:
    found = entry.find(f"{ATOM}content/{M}properties")
    assert found is not None
    return {child.tag.removeprefix(D): child for child in found}


def values(entry: ET.Element) -> dict[str, str | None]:
    return {name: element.text for name, element in props(entry).items()}


def nav_link(entry: ET.Element, name: str) -> ET.Element:
    links = [x for x in entry.findall(f"{ATOM}link") if x.get("rel") == RELATED + name]
    assert len(links) == 1
    return links[0]


def test_a_feed_without_accept_is_atom_with_typed_values_count_and_next_link(seeded):
    session = plain(seeded)
    root = seeded.service_url(BP)
    resp = session.get(root + "A_Customer", params={"$inlinecount": "allpages"})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/atom+xml;type=feed")
    feed = ET.fromstring(resp.content)
    assert feed.tag == f"{ATOM}feed"
    assert feed.get(XML_BASE) == root
    assert feed.findtext(f"{ATOM}id") == root + "A_Customer"
    assert feed.findtext(f"{M}count") == "50"
    entries = feed.findall(f"{ATOM}entry")
    assert len(entries) == 20  # the server page
    first = entries[0]
    assert first.findtext(f"{ATOM}id") == root + "A_Customer('2000000')"
    category = first.find(f"{ATOM}category")
    assert category is not None and category.get("term") == "API_BUSINESS_PARTNER.A_CustomerType"
    edit = [x for x in first.findall(f"{ATOM}link") if x.get("rel") == "edit"]
    assert [x.get("href") for x in edit] == ["A_Customer('2000000')"]
    typed = props(first)
    assert typed["Customer"].text == "2000000" and typed["Customer"].get(f"{M}type") is None
    assert typed["CustomerName"].text == "Customer 000"
    assert typed["YY1_CreditLimitAmount"].text == "1000.50"
    assert typed["YY1_CreditLimitAmount"].get(f"{M}type") == "Edm.Decimal"
    assert typed["CreationDate"].text == "2024-03-01T00:00:00"
    assert typed["CreationDate"].get(f"{M}type") == "Edm.DateTime"
    assert typed["PostingIsBlocked"].text == "false"
    assert typed["PostingIsBlocked"].get(f"{M}type") == "Edm.Boolean"
    json_first = session.get(root + "A_Customer('2000000')", params={"$format": "json"}).json()["d"]
    assert first.get(f"{M}etag") == json_first["__metadata"]["etag"]
    nexts = [x.get("href") for x in feed.findall(f"{ATOM}link") if x.get("rel") == "next"]
    assert len(nexts) == 1 and "$skiptoken=20" in nexts[0] and "inlinecount=allpages" in nexts[0]
    second = ET.fromstring(session.get(root + nexts[0]).content)
    customers = [values(e)["Customer"] for e in second.findall(f"{ATOM}entry")]
    assert customers == [str(2000020 + i) for i in range(20)]


def test_an_entry_with_nested_expansion_is_inline_and_carries_its_etag(seeded):
    session = seeded.session()
    root = seeded.service_url(BP)
    resp = session.get(
        root + "A_BusinessPartner('2000003')",
        params={"$expand": "to_Customer/to_CustomerSalesArea"},
        headers={"Accept": "application/atom+xml"},
    )
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/atom+xml;type=entry")
    entry = ET.fromstring(resp.content)
    assert entry.tag == f"{ATOM}entry"
    assert entry.get(f"{M}etag") == resp.headers["etag"]
    partner = props(entry)
    assert partner["BusinessPartner"].text == "2000003"
    assert partner["LastChangeTime"].text == "PT00H03M00S"
    assert partner["LastChangeTime"].get(f"{M}type") == "Edm.Time"
    assert partner["LastChangeDate"].text == "2024-03-01T00:00:00"
    deferred = nav_link(entry, "to_BusinessPartnerAddress")
    assert deferred.get("href") == "A_BusinessPartner('2000003')/to_BusinessPartnerAddress"
    assert deferred.find(f"{M}inline") is None
    to_customer = nav_link(entry, "to_Customer")
    assert to_customer.get("type") == "application/atom+xml;type=entry"
    customer = to_customer.find(f"{M}inline/{ATOM}entry")
    assert customer is not None
    assert values(customer)["Customer"] == "2000003"
    assert values(customer)["YY1_HubId"] == "CUS-00003"
    areas_link = nav_link(customer, "to_CustomerSalesArea")
    assert areas_link.get("type") == "application/atom+xml;type=feed"
    areas = areas_link.findall(f"{M}inline/{ATOM}feed/{ATOM}entry")
    assert [values(a)["CustomerPaymentTerms"] for a in areas] == ["NT30"]


def test_the_service_document_is_atompub_listing_every_entity_set(sap):
    root = sap.service_url(BP)
    for resp in (plain(sap).get(root), sap.session().get(root, params={"$format": "xml"})):
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("application/atomsvc+xml")
        service = ET.fromstring(resp.content)
        assert service.tag == f"{APP}service" and service.get(XML_BASE) == root
        collections = service.findall(f"{APP}workspace/{APP}collection")
        assert [c.get("href") for c in collections] == list(SERVICES[BP].sets)
    as_json = sap.session().get(root).json()
    assert as_json["d"]["EntitySets"] == list(SERVICES[BP].sets)


def test_errors_are_sap_xml_unless_json_is_asked_for(sap):
    root = sap.service_url(BP)
    missing = plain(sap).get(root + "A_Customer('404')")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/xml")
    error = ET.fromstring(missing.content)
    assert error.tag == f"{M}error"
    assert error.findtext(f"{M}code") == "/IWBEP/CM_MGW_RT/020"
    message = error.find(f"{M}message")
    assert message is not None and message.get("{http://www.w3.org/XML/1998/namespace}lang")
    assert (message.text or "").startswith("Resource not found")
    inner = error.find(f"{M}innererror")
    assert inner is not None
    assert inner.findtext(f"{M}application/{M}service_id") == BP
    details = inner.findall(f"{M}errordetails/{M}errordetail")
    assert [d.findtext(f"{M}code") for d in details] == ["/IWBEP/CM_MGW_RT/020"]
    bad_key = plain(sap).get(root + "A_Customer(Customer=)")
    assert bad_key.status_code == 400
    assert ET.fromstring(bad_key.content).findtext(f"{M}code") == "/IWBEP/CM_MGW_RT/021"
    as_json = sap.session().get(root + "A_Customer('404')")
    assert as_json.json()["error"]["code"] == "/IWBEP/CM_MGW_RT/020"


#: ($format, Accept, the format answered): $format first, then the most preferred type
NEGOTIATION = [
    ({"$format": "json"}, None, "json"),
    ({}, "application/json", "json"),
    ({"$format": "json"}, "application/atom+xml", "json"),
    ({"$format": "xml"}, "application/json", "atom"),
    ({"$format": "atom"}, None, "atom"),
    ({}, "application/xml", "atom"),
    ({}, "*/*", "atom"),
    ({}, None, "atom"),
    ({}, "application/atom+xml;q=0.5, application/json", "json"),
]


def test_format_query_option_wins_over_accept(seeded):
    session = plain(seeded)
    url = seeded.service_url(BP) + "A_Customer('2000001')"
    answered = []
    for params, accept, _ in NEGOTIATION:
        resp = session.get(url, params=params, headers={"Accept": accept} if accept else {})
        assert resp.status_code == 200
        if resp.headers["content-type"].startswith("application/json"):
            assert resp.json()["d"]["Customer"] == "2000001"
            answered.append("json")
        else:
            assert resp.headers["content-type"].startswith("application/atom+xml;type=entry")
            assert values(ET.fromstring(resp.content))["Customer"] == "2000001"
            answered.append("atom")
    assert answered == [expected for *_, expected in NEGOTIATION]


def test_an_unsupported_format_is_a_400_in_the_format_accept_asks_for(seeded):
    url = seeded.service_url(BP) + "A_Customer"
    as_json = seeded.session().get(url, params={"$format": "csv"})
    assert as_json.status_code == 400
    assert as_json.json()["error"]["code"] == "/IWBEP/CM_MGW_RT/004"
    assert "$format" in as_json.json()["error"]["message"]["value"]
    as_xml = plain(seeded).get(url, params={"$format": "csv"})
    assert as_xml.status_code == 400
    assert ET.fromstring(as_xml.content).findtext(f"{M}code") == "/IWBEP/CM_MGW_RT/004"


def test_count_metadata_and_a_single_property_keep_their_own_shapes(seeded):
    session = plain(seeded)
    root = seeded.service_url(BP)
    count = session.get(root + "A_Customer/$count")
    assert count.headers["content-type"].startswith("text/plain") and count.text == "50"
    metadata = session.get(root + "$metadata")
    assert ET.fromstring(metadata.content).tag.endswith("Edmx")
    prop = session.get(root + "A_Customer('2000003')/YY1_CreditLimitAmount")
    assert prop.headers["content-type"].startswith("application/xml")
    element = ET.fromstring(prop.content)
    assert element.tag == f"{D}YY1_CreditLimitAmount"
    assert (element.text, element.get(f"{M}type")) == ("1003.50", "Edm.Decimal")


def test_a_created_entity_follows_negotiation_with_nulls_and_offsets(sap):
    seed_records(sap.store, "A_Customer", [{"Customer": "17100001", "CustomerName": "Acme"}])
    session = plain(sap)
    service = "API_SALES_CONTRACT_SRV"
    root = sap.service_url(service)
    sap.fetch_token(session, service)
    body = {
        "SoldToParty": "17100001",
        "TransactionCurrency": "EUR",
        "SalesContractValidityStartDate": "/Date(1704067200000)/",
    }
    created = session.post(root + "A_SalesContract", json=body)
    assert created.status_code == 201, created.text
    assert created.headers["content-type"].startswith("application/atom+xml;type=entry")
    entry = ET.fromstring(created.content)
    number = values(entry)["SalesContract"]
    assert created.headers["location"] == f"{root}A_SalesContract('{number}')"
    fields = props(entry)
    assert fields["SalesContractValidityStartDate"].text == "2024-01-01T00:00:00"
    assert fields["SalesContractDate"].get(f"{M}null") == "true"
    assert fields["SalesContractDate"].text is None
    offset = fields["LastChangeDateTime"]
    assert offset.get(f"{M}type") == "Edm.DateTimeOffset"
    stamp = session.get(root + f"A_SalesContract('{number}')", params={"$format": "json"})
    ms = int(re.fullmatch(r"/Date\((\d+)\+0000\)/", stamp.json()["d"]["LastChangeDateTime"])[1])
    moment = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    assert dt.datetime.fromisoformat((offset.text or "").replace("Z", "+00:00")) == moment
    as_json = session.post(
        root + "A_SalesContract", json=body, headers={"Accept": "application/json"}
    )
    assert as_json.status_code == 201
    assert as_json.json()["d"]["SoldToParty"] == "17100001"


def _batch(root: str, parts: list[str]) -> tuple[str, str]:
    boundary = "batch_atom"
    chunks = [
        f"--{boundary}\r\nContent-Type: application/http\r\n"
        f"Content-Transfer-Encoding: binary\r\n\r\n{part}\r\n"
        for part in parts
    ]
    return f"multipart/mixed; boundary={boundary}", "".join(chunks) + f"--{boundary}--\r\n"


def test_batch_parts_stay_json_unless_a_part_asks_for_xml(seeded):
    session = plain(seeded)
    root = seeded.service_url(BP)
    seeded.fetch_token(session, BP)
    content_type, body = _batch(
        root,
        [
            "GET A_Customer('2000001') HTTP/1.1\r\n\r\n",
            "GET A_Customer('2000002') HTTP/1.1\r\nAccept: application/atom+xml\r\n\r\n",
            "GET A_Customer('404')?$format=xml HTTP/1.1\r\n\r\n",
        ],
    )
    resp = session.post(root + "$batch", data=body, headers={"Content-Type": content_type})
    assert resp.status_code == 202, resp.text
    text = resp.text
    json_part = re.search(r'\{"d":.*\}', text)
    assert json_part is not None and '"Customer":"2000001"' in json_part.group(0)
    entry = re.search(r"<\?xml[^>]*\?><entry .*?</entry>", text, re.DOTALL)
    assert entry is not None
    assert values(ET.fromstring(entry.group(0).split("?>", 1)[1]))["Customer"] == "2000002"
    error = re.search(r"<error .*?</error>", text, re.DOTALL)
    assert error is not None
    assert ET.fromstring(error.group(0)).findtext(f"{M}code") == "/IWBEP/CM_MGW_RT/020"


def test_pyodata_on_a_session_without_accept_still_reads_and_writes_json(seeded):
    session = plain(seeded)
    raw = session.get(seeded.service_url(BP) + "A_Customer('2000000')")
    assert raw.headers["content-type"].startswith("application/atom+xml")  # pyodata asks
    client = seeded.client(BP, session)
    customers = client.entity_sets.A_Customer.get_entities().top(3).execute()
    assert [c.Customer for c in customers] == ["2000000", "2000001", "2000002"]
    partner = (
        client.entity_sets.A_BusinessPartner.get_entity("2000004").expand("to_Customer").execute()
    )
    assert partner.to_Customer.YY1_HubId == "CUS-00004"
    created = (
        client.entity_sets.A_BusinessPartner.create_entity()
        .set(BusinessPartnerCategory="2", OrganizationBPName1="Atom Test")
        .execute()
    )
    assert created.OrganizationBPName1 == "Atom Test"
    assert client.entity_sets.A_Customer.get_entities().count().execute() == 50

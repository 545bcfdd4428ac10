"""Creates, updates with ETags, deletes, CSRF and validation through unmodified pyodata."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyodata
import pytest
from pyodata.vendor.SAP import BusinessGatewayError

from sandbox.sap import seed_records

pytestmark = pytest.mark.timeout(60)
BP = "API_BUSINESS_PARTNER"


def _create_bp(client, **extra):
    values = {"BusinessPartnerCategory": "2", "OrganizationBPName1": "Acme GmbH", **extra}
    return client.entity_sets.A_BusinessPartner.create_entity().set(**values).execute()


def test_create_returns_201_entity_with_numbers_stamps_and_etag(sap):
    client = sap.client(BP)
    before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    bp = _create_bp(
        client,
        YY1_HubId="CUS-00001",
        to_BusinessPartnerAddress=[
            {"CityName": "Walldorf", "Country": "DE", "PostalCode": "69190"}
        ],
        to_BusinessPartnerTax=[{"BPTaxType": "DE0", "BPTaxNumber": "DE123456789"}],
    )
    assert bp.BusinessPartner == "1000000"
    assert bp.YY1_HubId == "CUS-00001"
    changed = bp.LastChangeDate + _time_of_day(bp.LastChangeTime)  # published: date + time
    assert changed >= before.replace(microsecond=0) and bp.CreationDate == bp.LastChangeDate
    assert bp.etag.startswith('W/"datetimeoffset')
    assert [a.CityName for a in bp.to_BusinessPartnerAddress] == ["Walldorf"]
    assert bp.to_BusinessPartnerAddress[0].AddressID == "1"
    second = _create_bp(client)
    assert second.BusinessPartner == "1000001"
    tax = client.entity_sets.A_BusinessPartnerTaxNumber.get_entity(
        BusinessPartner="1000000", BPTaxType="DE0"
    ).execute()
    assert tax.BPTaxNumber == "DE123456789"


def test_update_with_etag_then_stale_etag_is_412_with_sap_body(sap):
    client = sap.client(BP)
    bp = _create_bp(client)
    update = client.entity_sets.A_BusinessPartner.update_entity(bp.BusinessPartner)
    update.set(OrganizationBPName1="Acme AG").add_headers({"If-Match": bp.etag})
    update.execute()
    fresh = client.entity_sets.A_BusinessPartner.get_entity(bp.BusinessPartner).execute()
    assert fresh.OrganizationBPName1 == "Acme AG"
    assert fresh.etag != bp.etag
    assert (fresh.LastChangeDate, fresh.LastChangeTime) >= (bp.LastChangeDate, bp.LastChangeTime)
    stale = client.entity_sets.A_BusinessPartner.update_entity(bp.BusinessPartner)
    stale.set(OrganizationBPName1="Lost update").add_headers({"If-Match": bp.etag})
    with pytest.raises(pyodata.exceptions.HttpError) as info:
        stale.execute()
    assert info.value.response.status_code == 412
    error = info.value.response.json()["error"]
    assert error["code"] == "/IWBEP/CM_MGW_RT/190"
    assert error["message"]["lang"] == "en"
    assert error["innererror"]["errordetails"][0]["severity"] == "error"
    # no If-Match at all: S/4 insists on optimistic locking
    blind = client.entity_sets.A_BusinessPartner.update_entity(bp.BusinessPartner)
    with pytest.raises(pyodata.exceptions.HttpError) as info:
        blind.set(OrganizationBPName1="x").execute()
    assert info.value.response.status_code == 428
    # PUT and MERGE are honoured as well
    for method in ("PUT", "MERGE"):
        current = client.entity_sets.A_BusinessPartner.get_entity(bp.BusinessPartner).execute()
        req = client.entity_sets.A_BusinessPartner.update_entity(bp.BusinessPartner, method=method)
        req.set(BusinessPartnerCategory="2", SearchTerm1=method).add_headers(
            {"If-Match": current.etag}
        )
        req.execute()
    final = client.entity_sets.A_BusinessPartner.get_entity(bp.BusinessPartner).execute()
    assert final.SearchTerm1 == "MERGE" and final.OrganizationBPName1 == ""  # PUT replaced


def test_item_change_bumps_header_change_stamp(sap):
    seed_records(sap.store, "A_Customer", [{"Customer": "17100001", "CustomerName": "Acme"}])
    client = sap.client("API_SALES_CONTRACT_SRV")
    contract = (
        client.entity_sets.A_SalesContract.create_entity()
        .set(
            SoldToParty="17100001",
            TransactionCurrency="EUR",
            SalesContractValidityStartDate=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
            SalesContractValidityEndDate=dt.datetime(2024, 12, 31, tzinfo=dt.UTC),
            YY1_HubId="SUB-1",
            to_Item=[
                {
                    "Material": "SKU-1",
                    "RequestedQuantity": "3",
                    "NetPriceAmount": "10.50",
                    "YY1_BillingFrequency": "MONTHLY",
                }
            ],
        )
        .execute()
    )
    assert contract.SalesContract == "40000000"
    assert contract.TotalNetAmount == "31.500"
    assert contract.to_Item[0].SalesContractItem == "000010"
    item = (
        contract.nav("to_Item")
        .create_entity()
        .set(Material="SKU-2", RequestedQuantity="1", NetPriceAmount="5")
        .execute()
    )
    assert item.SalesContractItem == "000020"
    header = client.entity_sets.A_SalesContract.get_entity(contract.SalesContract).execute()
    assert header.LastChangeDateTime > contract.LastChangeDateTime
    assert header.TotalNetAmount == "36.500"
    delete = client.entity_sets.A_SalesContract.delete_entity(contract.SalesContract)
    delete.add_headers({"If-Match": header.etag})
    delete.execute()
    left = client.entity_sets.A_SalesContractItem.get_entities().count().execute()
    assert left == 0


def test_csrf_token_is_required_and_refreshable(sap):
    session = sap.session()
    client = sap.client(BP, session, csrf=False)
    with pytest.raises(pyodata.exceptions.HttpError) as info:
        _create_bp(client)
    resp = info.value.response
    assert resp.status_code == 403
    assert resp.headers["x-csrf-token"] == "Required"
    assert resp.text == "CSRF token validation failed"
    session.headers["X-CSRF-Token"] = "forged"
    with pytest.raises(pyodata.exceptions.HttpError):
        _create_bp(client)
    token = sap.fetch_token(session, BP)
    assert any(
        c.name.startswith("sap-XSRF") or c.name.startswith("SAP_SESSIONID") for c in session.cookies
    )
    assert sap.fetch_token(session, BP) == token  # same session, same token
    assert _create_bp(client).BusinessPartner == "1000000"


def test_validation_errors_are_400_with_errordetails(sap, monkeypatch):
    # pyodata's documented switch to parse SAP Gateway error bodies
    monkeypatch.setattr(pyodata.exceptions.HttpError, "VendorType", BusinessGatewayError)
    session = sap.session()
    client = sap.client(BP, session)
    raw = session.post(
        sap.service_url(BP) + "A_BusinessPartner",
        json={"BusinessPartnerCategory": "2", "NoSuchField": "1"},
    )
    assert raw.status_code == 400
    assert raw.json()["error"]["innererror"]["errordetails"][0]["propertyref"] == "NoSuchField"
    cases = [
        ({"OrganizationBPName1": "x" * 41}, "exceeds maximum length"),
        ({"BusinessPartnerCategory": ""}, "BusinessPartnerCategory"),
    ]
    for values, fragment in cases:
        with pytest.raises(BusinessGatewayError) as info:
            _create_bp(client, **values)
        assert info.value.response.status_code == 400
        assert fragment in info.value.response.text

    def customer(**values: str) -> Any:  # created with its partner, as on S/4
        partner = client.entity_sets.A_BusinessPartner.create_entity()
        role = {"CustomerName": "A", **values}
        return partner.set(BusinessPartnerCategory="2", to_Customer=role).execute()

    with pytest.raises(BusinessGatewayError) as info:
        customer(YY1_CreditLimitCurrency="XXX")
    assert "XXX" in str(info.value)
    with pytest.raises(BusinessGatewayError) as info:
        customer(YY1_CreditLimitAmount="12.345")
    assert info.value.errordetails and "decimal places" in info.value.errordetails[0]
    with pytest.raises(BusinessGatewayError) as info:
        customer(YY1_CreditLimitAmount="abc")
    assert "not a valid decimal" in str(info.value)
    areas = client.entity_sets.A_CustomerSalesArea.create_entity().set(
        Customer="1",
        SalesOrganization="1010",
        DistributionChannel="10",
        Division="00",
        CustomerPaymentTerms="BAD1",
    )
    with pytest.raises(BusinessGatewayError) as info:
        areas.execute()
    assert "BAD1" in str(info.value)
    contracts = sap.client("API_SALES_CONTRACT_SRV").entity_sets.A_SalesContract
    with pytest.raises(BusinessGatewayError) as info:
        contracts.create_entity().set(SoldToParty="999", TransactionCurrency="EUR").execute()
    assert "999 does not exist" in str(info.value)


def test_read_only_stock_and_reservation_create(sap):
    seed_records(
        sap.store,
        "A_MatlStkInAcctMod",
        [
            {
                "Material": "SKU-1",
                "Plant": "1010",
                "StorageLocation": "101A",
                "InventoryStockType": "01",
                "MaterialBaseUnit": "PC",
                "MatlWrhsStkQtyInMatlBaseUnit": "125",
            },
            {
                "Material": "SKU-1",
                "Plant": "1020",
                "StorageLocation": "101A",
                "InventoryStockType": "01",
                "MatlWrhsStkQtyInMatlBaseUnit": "7.5",
            },
        ],
    )
    stock = sap.client("API_MATERIAL_STOCK_SRV")
    rows = stock.entity_sets.A_MatlStkInAcctMod.get_entities().filter("Plant eq '1010'").execute()
    assert [(r.Material, r.MatlWrhsStkQtyInMatlBaseUnit) for r in rows] == [
        ("SKU-1", "125.00000000000000")
    ]
    with pytest.raises(pyodata.exceptions.HttpError) as info:
        stock.entity_sets.A_MatlStkInAcctMod.create_entity().set(Material="X").execute()
    assert info.value.response.status_code == 405
    res = sap.client("API_RESERVATION_DOCUMENT_SRV").entity_sets.A_ReservationDocumentHeader
    header = (
        res.create_entity()
        .set(
            GoodsMovementType="201",
            YY1_HubId="ALLOC-1",
            to_ReservationDocumentItem=[
                {
                    "Product": "SKU-1",
                    "Plant": "1010",
                    "ResvnItmRequiredQtyInBaseUnit": "2",
                    "MatlCompRequirementDate": "/Date(1717200000000)/",
                }
            ],
        )
        .execute()
    )
    assert header.Reservation == "0000000001"
    item = header.to_ReservationDocumentItem[0]
    assert (item.ReservationItem, item.ReservationItemIsFinallyIssued) == ("0001", False)
    assert item.MatlCompRequirementDate == dt.datetime(2024, 6, 1, tzinfo=dt.UTC)


def _time_of_day(value: str) -> dt.timedelta:
    """An Edm.Time as pyodata hands it over (``PT12H05M00S``)."""
    hours, rest = value.removeprefix("PT").split("H")
    minutes, seconds = rest.removesuffix("S").split("M")
    return dt.timedelta(hours=int(hours), minutes=int(minutes), seconds=int(seconds))


def test_a_change_to_a_customer_or_its_sales_area_restamps_its_business_partner(sap):
    """A_Customer has no change stamp in the published API: a change to the customer
    role is a change of the business partner (LastChangeDate + LastChangeTime). A customer
    is created with its partner (deep insert ``to_Customer``), numbered like it; a POST
    to A_Customer alone is refused, as on S/4."""
    client = sap.client(BP)
    with pytest.raises(pyodata.exceptions.HttpError) as info:
        client.entity_sets.A_Customer.create_entity().set(CustomerName="Alone AG").execute()
    assert info.value.response.status_code == 405
    created_partner = (
        client.entity_sets.A_BusinessPartner.create_entity()
        .set(
            BusinessPartnerCategory="2",
            BusinessPartnerFullName="Role AG",
            to_Customer={
                "CustomerName": "Role AG",
                "CustomerFullName": "Role AG",
                "to_CustomerSalesArea": [
                    {"SalesOrganization": "1010", "DistributionChannel": "10", "Division": "00"}
                ],
            },
        )
        .execute()
    )
    assert created_partner.Customer == created_partner.BusinessPartner
    created = client.entity_sets.A_Customer.get_entity(created_partner.Customer).execute()
    assert created.CustomerFullName == "Role AG"
    partners = client.entity_sets.A_BusinessPartner
    partner = partners.get_entity(created.Customer).execute()
    assert (partner.Customer, partner.BusinessPartnerFullName) == (created.Customer, "Role AG")

    def stamp() -> tuple[str, str]:
        fresh = partners.get_entity(created.Customer).execute()
        return fresh.etag, fresh.LastChangeTime

    before = stamp()
    update = client.entity_sets.A_Customer.update_entity(created.Customer).set(CustomerName="R2")
    update.add_headers({"If-Match": "*"})
    update.execute()
    after_customer = stamp()
    assert after_customer[0] != before[0] and after_customer[1] >= before[1]
    area = client.entity_sets.A_CustomerSalesArea.update_entity(
        Customer=created.Customer, SalesOrganization="1010", DistributionChannel="10", Division="00"
    ).set(CustomerPaymentTerms="NT30")
    area.add_headers({"If-Match": "*"})
    area.execute()
    assert stamp()[0] != after_customer[0]


def test_contract_items_carry_validity_and_hub_item_id_and_change_with_their_etag(sap):
    """An item is created with its header (deep insert) or on its own (POST to_Item),
    carries its validity and the hub's item id, and is changed or deleted on its own,
    under its ETag (a stale one is 412), each change re-stamping the header."""
    seed_records(sap.store, "A_Customer", [{"Customer": "17100001", "CustomerName": "Acme"}])
    client = sap.client("API_SALES_CONTRACT_SRV")
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    contract = (
        client.entity_sets.A_SalesContract.create_entity()
        .set(
            SoldToParty="17100001",
            TransactionCurrency="EUR",
            YY1_HubId="SUB-1",
            to_Item=[
                {
                    "Material": "SEAT-STD",
                    "RequestedQuantity": "3",
                    "NetPriceAmount": "87",
                    "NetPriceQuantity": "3",
                    "SalesContractValidityStartDate": start,
                    "YY1_HubItemId": "SUB-1-1",
                }
            ],
        )
        .execute()
    )
    number = contract.SalesContract
    items = client.entity_sets.A_SalesContractItem
    first = items.get_entity(SalesContract=number, SalesContractItem="000010").execute()
    assert (first.YY1_HubItemId, first.NetAmount) == ("SUB-1-1", "87.000")
    assert first.TransactionCurrency == "EUR"  # read-only on the item: the contract's
    assert first.SalesContractValidityStartDate.date() == start.date()
    assert first.etag.startswith('W/"datetimeoffset')
    second = (
        contract.nav("to_Item")
        .create_entity()
        .set(Material="PLAT-CORE", RequestedQuantity="1", NetPriceAmount="499", YY1_HubItemId="x")
        .execute()
    )
    assert second.SalesContractItem == "000020"
    patch = items.update_entity(SalesContract=number, SalesContractItem="000010")
    patch.set(RequestedQuantity="5", NetPriceAmount="145", NetPriceQuantity="5")
    patch.add_headers({"If-Match": first.etag})
    patch.execute()
    upgraded = items.get_entity(SalesContract=number, SalesContractItem="000010").execute()
    assert (upgraded.RequestedQuantity, upgraded.NetAmount) == ("5.000", "145.000")
    assert upgraded.etag != first.etag
    stale = items.update_entity(SalesContract=number, SalesContractItem="000010")
    stale.set(RequestedQuantity="9").add_headers({"If-Match": first.etag})
    with pytest.raises(pyodata.exceptions.HttpError) as info:
        stale.execute()
    assert info.value.response.status_code == 412
    gone = items.delete_entity(SalesContract=number, SalesContractItem="000020")
    gone.add_headers({"If-Match": second.etag})
    gone.execute()
    header = client.entity_sets.A_SalesContract.get_entity(number).expand("to_Item").execute()
    assert [i.SalesContractItem for i in header.to_Item] == ["000010"]
    assert header.TotalNetAmount == "145.000"
    assert header.LastChangeDateTime > contract.LastChangeDateTime

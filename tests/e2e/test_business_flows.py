"""The flows a B2B subscription business runs on, end to end through the sandbox with the
real connectors: each test does what a user does in one system (through that system's
own interface) and checks, after one `SyncEngine.run()`, what the other systems hold.

One landscape is synced once for the module; every test changes records of its own."""

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from simple_salesforce import format_soql

from connectors import registry
from connectors.billing_schema import (
    accounts,
    allocations,
    invoice_lines,
    invoices,
    subscription_items,
    subscriptions,
)
from hub.mapping.spec import MAPPINGS_DIR, load_all
from hub.model import (
    BillingPeriod,
    Price,
    PriceKind,
    ProrationPolicy,
    SubscriptionItem,
    add_months,
)
from hub.money import Money
from hub.pricing import proration
from hub.store import create_store_engine
from hub.store.migrate import upgrade
from hub.store.models import Finding, QuarantineEntry
from hub.sync.engine import SyncEngine
from hub.systems import connect
from sandbox.runner import SandboxHandle, running_sandbox

pytestmark = pytest.mark.slow

RETIRED_SKU = "DEV-SCAN-100"  # the seed's planted drift retires it in the PIM


class Landscape:
    def __init__(self, sb: SandboxHandle, store: str) -> None:
        self.sb, self.store = sb, store
        self.billing = sa.create_engine(sb.billing_url)

    def sync(self) -> dict[str, Any]:
        mapped = {spec.system for spec in load_all(MAPPINGS_DIR)[0]}
        connectors = {
            s: connect(s, self.sb.env)
            for s in registry.configured_systems(self.sb.env)
            if s in mapped
        }
        try:
            return SyncEngine(create_store_engine(self.store), connectors).run()
        finally:
            for connector in connectors.values():
                connector.close()

    def soql(self, query: str, *values: Any) -> list[dict[str, Any]]:
        sf = connect("salesforce", self.sb.env)
        try:
            records: list[dict[str, Any]] = sf._client().query_all(  # type: ignore[attr-defined]
                format_soql(query, *values)
            )["records"]
        finally:
            sf.close()
        return records

    def sap(self, entity: str, hub_id: str) -> dict[str, Any] | None:
        sap = connect("sap", self.sb.env)
        try:
            for batch in sap.read_snapshot(entity):
                for record in batch.records:
                    if record.get("YY1_HubId") == hub_id:
                        return record
        finally:
            sap.close()
        return None

    def wms(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.sb.env["WMS_URL"],
            headers={"Authorization": f"Bearer {self.sb.env['WMS_API_KEY']}"},
            verify=self.sb.env.get("HUB_CA_BUNDLE") or True,
        )

    def open_quarantine(self) -> list[QuarantineEntry]:
        engine = create_store_engine(self.store)
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(QuarantineEntry).where(QuarantineEntry.status == "open")
            ).all()
        engine.dispose()
        return [row for row in rows]


@pytest.fixture(scope="module")
def land(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Landscape]:
    folder = tmp_path_factory.mktemp("flows")
    store = f"sqlite:///{folder / 'hub.sqlite'}"
    upgrade(store)
    with running_sandbox(folder / "sb", seed=21, customers=10) as sb:
        landscape = Landscape(sb, store)
        landscape.sync()
        landscape.sync()  # the echoes of its own writes
        yield landscape
        landscape.billing.dispose()


def _now() -> datetime:
    return datetime.now(UTC)


def _clone(conn: sa.Connection, table: sa.Table, row: Any, **changes: Any) -> int:
    values = {k: v for k, v in row._mapping.items() if k != "id"}
    values.update(created_at=_now(), updated_at=_now(), **changes)
    return int(conn.execute(sa.insert(table).values(**values)).inserted_primary_key[0])


def test_customer_created_in_salesforce_becomes_sap_and_billing_with_the_number_back(
    land: Landscape,
) -> None:
    sf = connect("salesforce", land.sb.env)
    created = sf._client().Account.create(  # type: ignore[attr-defined]
        {
            "Name": "Nordlicht Logistik GmbH",
            "BillingStreet": "Hafenstrasse 7",
            "BillingCity": "Hamburg",
            "BillingPostalCode": "20457",
            "BillingCountry": "DE",
            "CurrencyIsoCode": "EUR",
        }
    )
    sf.close()
    land.sync()
    land.sync()  # the SAP number reaches Salesforce in the pass that learns it
    account = land.soql(
        "SELECT Id, Hub_Id__c, SAP_Customer_Number__c FROM Account WHERE Id = {}", created["id"]
    )[0]
    hub_id, sap_number = account["Hub_Id__c"], account["SAP_Customer_Number__c"]
    assert hub_id and sap_number, account
    sap = land.sap("customer", hub_id)
    assert sap is not None and sap["Customer"] == sap_number
    assert sap["CustomerFullName"] == "Nordlicht Logistik GmbH"
    with land.billing.connect() as conn:
        row = conn.execute(sa.select(accounts).where(accounts.c.hub_id == hub_id)).one()
    assert row.legal_name == "Nordlicht Logistik GmbH"
    assert row.sap_customer_number == sap_number
    assert row.salesforce_account_id == created["id"]


def _new_subscription(land: Landscape) -> str:
    """Billing sells a copy of an active subscription to the same customer; returns the
    hub id the hub gives it."""
    with land.billing.begin() as conn:
        template = conn.execute(
            sa.select(subscriptions)
            .where(subscriptions.c.status == "active")
            .order_by(subscriptions.c.hub_id)
            .limit(1)
        ).one()
        new_id = _clone(conn, subscriptions, template, hub_id=None, contract_number="C-FLOW-0001")
        for item in conn.execute(
            sa.select(subscription_items).where(subscription_items.c.subscription_id == template.id)
        ).all():
            _clone(conn, subscription_items, item, subscription_id=new_id)
    land.sync()
    with land.billing.connect() as conn:
        hub_id = conn.execute(
            sa.select(subscriptions.c.hub_id).where(subscriptions.c.id == new_id)
        ).scalar_one()
    assert hub_id, "the hub writes the id it minted back to billing"
    return str(hub_id)


def test_subscription_sold_then_cancelled_in_billing_reaches_salesforce_and_sap(
    land: Landscape,
) -> None:
    hub_id = _new_subscription(land)
    sf = land.soql(
        "SELECT Id, Name, Status__c, End_Date__c, Account__r.SAP_Customer_Number__c "
        "FROM Subscription__c WHERE Hub_Id__c = {}",
        hub_id,
    )
    assert len(sf) == 1 and sf[0]["Name"] == "C-FLOW-0001" and sf[0]["Status__c"] == "active"
    contract = land.sap("subscription", hub_id)
    assert contract is not None, "SAP keeps the subscription as a sales contract"
    assert contract["SoldToParty"] == sf[0]["Account__r"]["SAP_Customer_Number__c"]
    assert contract["PurchaseOrderByCustomer"] == "C-FLOW-0001"

    end = date.today() + timedelta(days=30)
    with land.billing.begin() as conn:
        conn.execute(
            sa.update(subscriptions)
            .where(subscriptions.c.hub_id == hub_id)
            .values(status="canceled", end_date=end, canceled_at=_now(), updated_at=_now())
        )
    land.sync()
    sf = land.soql(
        "SELECT Status__c, End_Date__c FROM Subscription__c WHERE Hub_Id__c = {}", hub_id
    )
    assert sf == [
        {"attributes": sf[0]["attributes"], "Status__c": "canceled", "End_Date__c": str(end)}
    ]
    contract = land.sap("subscription", hub_id)
    assert contract is not None
    assert str(contract["SalesContractValidityEndDate"])[:10] == str(end)


def _deliveries(land: Landscape, sub_id: int) -> list[Any]:
    with land.billing.connect() as conn:
        return list(
            conn.execute(
                sa.select(allocations)
                .where(allocations.c.subscription_id == sub_id)
                .order_by(allocations.c.item_id, allocations.c.delivery_date)
            ).all()
        )


def _wms_allocation(land: Landscape, hub_id: str) -> dict[str, Any]:
    with land.wms() as wms:
        found = wms.get("/v1/allocations", params={"external_ref": hub_id}).json()["data"]
    (one,) = [a for a in found if a.get("external_ref") == hub_id]
    return dict(one)


def test_subscription_changes_plan_its_deliveries_in_billing_wms_and_sap(
    land: Landscape,
) -> None:
    """Billing sells a subscription with a shipped item: the hub plans its next delivery
    (billing's allocation, a WMS reservation, an SAP stock reservation on the SAP
    contract); an upgrade adjusts the reserved quantity everywhere; a pause releases it."""
    with land.billing.begin() as conn:
        template = conn.execute(
            sa.select(subscriptions)
            .where(
                subscriptions.c.status == "active",
                subscriptions.c.id.in_(
                    sa.select(allocations.c.subscription_id).where(
                        allocations.c.status == "reserved", allocations.c.sku != RETIRED_SKU
                    )
                ),
            )
            .order_by(subscriptions.c.hub_id)
            .limit(1)
        ).one()
        new_id = _clone(conn, subscriptions, template, hub_id=None, contract_number="C-SHIP-0001")
        shipped_skus = set(
            conn.scalars(
                sa.select(allocations.c.item_id).where(allocations.c.subscription_id == template.id)
            )
        )
        for item in conn.execute(
            sa.select(subscription_items).where(subscription_items.c.subscription_id == template.id)
        ).all():
            _clone(conn, subscription_items, item, subscription_id=new_id)
    land.sync()
    planned = _deliveries(land, new_id)
    assert planned, "the new subscription's shipped items get a delivery"
    assert {row.item_id for row in planned} == shipped_skus
    assert all(row.status == "reserved" and row.hub_id for row in planned)
    first = planned[0]
    with land.billing.connect() as conn:
        item = conn.execute(
            sa.select(subscription_items).where(
                subscription_items.c.subscription_id == new_id,
                subscription_items.c.item_id == first.item_id,
            )
        ).one()
        sub_hub_id = conn.execute(
            sa.select(subscriptions.c.hub_id).where(subscriptions.c.id == new_id)
        ).scalar_one()
    assert first.quantity == item.quantity and first.delivery_date >= date.today()
    wms = _wms_allocation(land, first.hub_id)
    assert (wms["status"], wms["quantity"], wms["order_ref"]) == (
        "reserved",
        item.quantity,
        sub_hub_id,
    )
    assert first.wms_allocation_id == wms["id"]
    reservation = land.sap("allocation", first.hub_id)
    contract = land.sap("subscription", sub_hub_id)
    assert reservation is not None and contract is not None
    assert reservation["SalesOrder"] == contract["SalesContract"]
    assert (reservation["Product"], reservation["FulfilmentStatus"]) == (item.sku, "reserved")

    # upgrade: three more of the item; billing stamps the subscription as changed
    with land.billing.begin() as conn:
        conn.execute(
            sa.update(subscription_items)
            .where(subscription_items.c.id == item.id)
            .values(quantity=item.quantity + 3)
        )
        conn.execute(
            sa.update(subscriptions).where(subscriptions.c.id == new_id).values(updated_at=_now())
        )
    land.sync()
    (after,) = [r for r in _deliveries(land, new_id) if r.hub_id == first.hub_id]
    assert after.quantity == item.quantity + 3
    assert _wms_allocation(land, first.hub_id)["quantity"] == item.quantity + 3
    reservation = land.sap("allocation", first.hub_id)
    assert reservation is not None
    assert float(reservation["ResvnItmRequiredQtyInBaseUnit"]) == item.quantity + 3

    # pause: the reserved delivery is released everywhere
    with land.billing.begin() as conn:
        conn.execute(
            sa.update(subscriptions)
            .where(subscriptions.c.id == new_id)
            .values(status="paused", updated_at=_now())
        )
    land.sync()
    assert {r.status for r in _deliveries(land, new_id)} == {"released"}
    assert _wms_allocation(land, first.hub_id)["status"] == "released"
    reservation = land.sap("allocation", first.hub_id)
    assert reservation is not None and reservation["FulfilmentStatus"] == "released"
    report = land.sync()  # and it settles: nothing more to plan or write
    assert report["hub"]["allocation"]["created"] == report["hub"]["allocation"]["updated"] == 0


def test_invoice_issued_in_billing_becomes_sap_document_and_salesforce_invoice(
    land: Landscape,
) -> None:
    with land.billing.begin() as conn:
        template = conn.execute(
            sa.select(invoices)
            .where(invoices.c.status == "open", invoices.c.sap_billing_document.is_not(None))
            .order_by(invoices.c.hub_id)
            .limit(1)
        ).one()
        new_id = _clone(
            conn,
            invoices,
            template,
            hub_id=None,
            number="INV-FLOW-0001",
            # a new invoice: none of the template's dunning history
            dunning_stage=0,
            dunning_events=[],
            sap_billing_document=None,
            salesforce_invoice_id=None,
        )
        for line in conn.execute(
            sa.select(invoice_lines).where(invoice_lines.c.invoice_id == template.id)
        ).all():
            _clone(conn, invoice_lines, line, invoice_id=new_id)
    land.sync()
    land.sync()  # SAP's document number reaches Salesforce in the pass that learns it
    with land.billing.connect() as conn:
        row = conn.execute(sa.select(invoices).where(invoices.c.id == new_id)).one()
    assert row.hub_id and row.sap_billing_document and row.salesforce_invoice_id
    document = land.sap("invoice", row.hub_id)
    assert document is not None and document["BillingDocument"] == row.sap_billing_document
    assert round(float(document["TotalGrossAmount"]) * 100) == row.total_minor
    sf = land.soql(
        "SELECT Id, Total_Amount__c, SAP_Billing_Document__c, Dunning_Stage__c "
        "FROM Invoice__c WHERE Hub_Id__c = {}",
        row.hub_id,
    )
    assert len(sf) == 1 and sf[0]["Id"] == row.salesforce_invoice_id
    assert round(sf[0]["Total_Amount__c"] * 100) == row.total_minor
    assert sf[0]["SAP_Billing_Document__c"] == row.sap_billing_document

    # dunning: billing moves the overdue invoice to stage 2; Salesforce's collectors see it
    with land.billing.begin() as conn:
        conn.execute(
            sa.update(invoices)
            .where(invoices.c.id == new_id)
            .values(dunning_stage=2, updated_at=_now())
        )
    land.sync()
    sf = land.soql("SELECT Dunning_Stage__c FROM Invoice__c WHERE Hub_Id__c = {}", row.hub_id)
    assert sf[0]["Dunning_Stage__c"] == 2


def test_wms_fulfilment_status_flows_back_to_billing_and_sap(land: Landscape) -> None:
    """The WMS picks, then ships: billing's allocation and SAP's reservation follow (the
    reservation item released for goods movement, then finally issued in full)."""
    with land.wms() as wms:
        listed = wms.get("/v1/allocations", params={"status": "reserved", "limit": 1}).json()
        allocation = listed["data"][0]
        reservation = land.sap("allocation", allocation["external_ref"])
        assert reservation is not None and reservation["FulfilmentStatus"] == "reserved"
        for status in ("picked", "shipped"):
            response = wms.patch(f"/v1/allocations/{allocation['id']}", json={"status": status})
            assert response.status_code == 200, response.text
            land.sync()
            with land.billing.connect() as conn:
                row = conn.execute(
                    sa.select(allocations).where(
                        allocations.c.wms_allocation_id == allocation["id"]
                    )
                ).one()
            assert row.status == status
            reservation = land.sap("allocation", row.hub_id)
            assert reservation is not None and reservation["FulfilmentStatus"] == status
    assert reservation["ReservationItemIsFinallyIssued"] is True
    assert float(reservation["ResvnItmWithdrawnQtyInBaseUnit"]) == row.quantity


def test_new_allocation_for_a_retired_sku_is_held_back_and_reported(land: Landscape) -> None:
    with land.billing.begin() as conn:
        item = conn.execute(
            sa.select(subscription_items).where(subscription_items.c.sku == RETIRED_SKU).limit(1)
        ).one()
        existing = conn.execute(
            sa.select(allocations).where(allocations.c.sku == RETIRED_SKU).limit(1)
        ).one_or_none()
        before_wms = existing.wms_allocation_id if existing is not None else None
        new_id = int(
            conn.execute(
                sa.insert(allocations).values(
                    subscription_id=item.subscription_id,
                    item_id=item.item_id,
                    sku=RETIRED_SKU,
                    location="WH-1",
                    quantity=1,
                    delivery_date=date.today() + timedelta(days=7),
                    status="reserved",
                    created_at=_now(),
                    updated_at=_now(),
                )
            ).inserted_primary_key[0]
        )
    report = land.sync()
    with land.billing.connect() as conn:
        row = conn.execute(sa.select(allocations).where(allocations.c.id == new_id)).one()
    assert row.hub_id, "the hub knows the allocation"
    assert row.wms_allocation_id is None, "no WMS reservation for a retired SKU"
    with land.wms() as wms:
        held = wms.get("/v1/allocations", params={"external_ref": row.hub_id}).json()["data"]
    assert [a for a in held if a.get("external_ref") == row.hub_id] == []
    assert land.sap("allocation", row.hub_id) is None, "nor an SAP reservation"
    entry = next(
        e
        for e in land.open_quarantine()
        if e.system == "wms" and e.external_key == row.hub_id and e.direction == "outbound"
    )
    assert RETIRED_SKU in entry.reason and "retired" in entry.reason
    assert report["wms"]["allocation"]["quarantined"] >= 1
    assert any(
        e.system == "sap" and e.external_key == row.hub_id and RETIRED_SKU in e.reason
        for e in land.open_quarantine()
    )
    if before_wms is not None:  # allocations made before the SKU was retired stay served
        with land.wms() as wms:
            assert wms.get(f"/v1/allocations/{before_wms}").status_code == 200


def test_payment_cleared_in_sap_marks_the_invoice_paid_in_billing_and_salesforce(
    land: Landscape,
) -> None:
    with land.billing.connect() as conn:
        hub_id, total = conn.execute(
            sa.select(invoices.c.hub_id, invoices.c.total_minor)
            .where(
                invoices.c.status == "open",
                invoices.c.amount_paid_minor == 0,
                invoices.c.sap_billing_document.is_not(None),
                invoices.c.total_minor > 0,
            )
            .order_by(invoices.c.hub_id)
            .limit(1)
        ).one()
    sap = connect("sap", land.sb.env)
    try:
        (doc,) = [r for b in sap.read_by_keys("invoice", [hub_id]) for r in b.records]
        assert "AmountCleared" not in doc, "an open document makes no claim on payment"
        client = sap._client("API_BILLING_DOCUMENT_SRV")  # type: ignore[attr-defined]
        sap._fetch_csrf("API_BILLING_DOCUMENT_SRV")  # type: ignore[attr-defined]
        update = client.entity_sets.A_BillingDocument.update_entity(
            BillingDocument=doc["BillingDocument"]
        ).set(InvoiceClearingStatus="C")
        update.add_headers({"If-Match": doc["__etag"]})
        update.execute()  # the customer paid: FI cleared the document in full
    finally:
        sap.close()
    land.sync()
    with land.billing.connect() as conn:
        row = conn.execute(sa.select(invoices).where(invoices.c.hub_id == hub_id)).one()
    assert (row.amount_paid_minor, row.status) == (total, "paid")
    (sf,) = land.soql(
        "SELECT Amount_Paid__c, Status__c FROM Invoice__c WHERE Hub_Id__c = {}", hub_id
    )
    assert round(sf["Amount_Paid__c"] * 100) == total and sf["Status__c"] == "paid"


def _service_period(start: date, period: BillingPeriod, day: date) -> tuple[date, date]:
    """The billing period of a subscription started on ``start`` that holds ``day``."""
    k = 0
    while add_months(start, (k + 1) * period.months) <= day:
        k += 1
    return add_months(start, k * period.months), add_months(
        start, (k + 1) * period.months
    ) - timedelta(days=1)


def _contract_items(land: Landscape, contract: str) -> dict[str, Any]:
    """SAP's items of ``contract`` by the hub item id they carry, read with pyodata."""
    sap = connect("sap", land.sb.env)
    try:
        client = sap._client("API_SALES_CONTRACT_SRV")  # type: ignore[attr-defined]
        items = (
            client.entity_sets.A_SalesContractItem.get_entities()
            .filter(f"SalesContract eq '{contract}'")
            .execute()
        )
    finally:
        sap.close()
    return {item.YY1_HubItemId: item for item in items}


def test_an_upgrade_in_billing_reaches_sap_contract_items_and_salesforce(
    land: Landscape,
) -> None:
    """Billing upgrades a seat item mid-period: the item's version ends yesterday, a new
    one with more seats starts today, and the next (draft) invoice carries the daily
    proration. The SAP contract's item for that item id now has the new quantity and
    period amount (the same contract item, changed), Salesforce's subscription lists the
    new quantity, and a second sync writes nothing more to SAP."""
    today = _now().date()  # the hub takes its views on the UTC day
    with land.billing.connect() as conn:
        row = conn.execute(
            sa.select(
                subscriptions.c.id,
                subscriptions.c.hub_id,
                subscriptions.c.account_id,
                subscriptions.c.currency,
                subscriptions.c.start_date,
                subscriptions.c.billing_period,
                subscription_items.c.id.label("item_row"),
                subscription_items.c.item_id,
                subscription_items.c.sku,
                subscription_items.c.quantity,
                subscription_items.c.flat_amount_minor,
                subscription_items.c.unit_amount_minor,
            )
            .join(subscription_items, subscription_items.c.subscription_id == subscriptions.c.id)
            .where(
                subscriptions.c.status == "active",
                subscriptions.c.proration_policy == "daily",
                subscription_items.c.sku.like("SEAT-%"),
                subscription_items.c.price_kind == "per_unit",
                subscription_items.c.discount_bps == 0,
                subscription_items.c.effective_to.is_(None),
            )
            .order_by(subscriptions.c.hub_id)
            .limit(1)
        ).one()
    contract = land.sap("subscription", row.hub_id)
    assert contract is not None
    number = contract["SalesContract"]
    before = _contract_items(land, number)[row.item_id]
    assert Decimal(before.RequestedQuantity) == row.quantity

    old = SubscriptionItem(
        item_id=row.item_id,
        sku=row.sku,
        quantity=row.quantity,
        price=Price(kind=PriceKind.PER_UNIT, flat_amount_minor=row.flat_amount_minor,
                    unit_amount_minor=row.unit_amount_minor),
    )  # fmt: skip
    new = old.model_copy(update={"quantity": row.quantity + 5, "effective_from": today})
    start, end = _service_period(row.start_date, BillingPeriod(row.billing_period), today)
    charge = proration(ProrationPolicy.DAILY, old, new, today, start, end).amount_minor
    with land.billing.begin() as conn:
        conn.execute(
            sa.update(subscription_items)
            .where(subscription_items.c.id == row.item_row)
            .values(effective_to=today - timedelta(days=1), updated_at=_now())
        )
        item = conn.execute(
            sa.select(subscription_items).where(subscription_items.c.id == row.item_row)
        ).one()
        _clone(
            conn,
            subscription_items,
            item,
            quantity=new.quantity,
            effective_from=today,
            effective_to=None,
        )
        if charge:  # the change is billed on the next invoice, a draft until issued
            invoice_id = conn.execute(
                sa.insert(invoices)
                .values(
                    number=f"INV-UPG-{row.id}",
                    account_id=row.account_id,
                    subscription_id=row.id,
                    currency=row.currency,
                    subtotal_minor=charge,
                    tax_minor=0,
                    total_minor=charge,
                    amount_paid_minor=0,
                    issue_date=today,
                    due_date=today + timedelta(days=30),
                    status="draft",
                    created_at=_now(),
                    updated_at=_now(),
                )
                .returning(invoices.c.id)
            ).scalar_one()
            conn.execute(
                sa.insert(invoice_lines).values(
                    invoice_id=invoice_id,
                    line_no=1,
                    sku=row.sku,
                    description=f"Proration: {row.sku}, {old.quantity} to {new.quantity}",
                    quantity=new.quantity,
                    unit_amount_minor=charge,
                    amount_minor=charge,
                    period_start=today,
                    period_end=end,
                    kind="proration",
                    proration_of=row.item_id,
                    created_at=_now(),
                    updated_at=_now(),
                )
            )
        conn.execute(
            sa.update(subscriptions).where(subscriptions.c.id == row.id).values(updated_at=_now())
        )
    land.sync()

    after = _contract_items(land, number)[row.item_id]
    assert after.SalesContractItem == before.SalesContractItem  # the same item, changed
    assert Decimal(after.RequestedQuantity) == new.quantity
    amount = Money(new.price.amount_minor(new.quantity), row.currency).to_decimal()
    assert Decimal(after.NetAmount) == amount
    assert after.SalesContractValidityStartDate.date() == today
    (sf,) = land.soql("SELECT Items__c FROM Subscription__c WHERE Hub_Id__c = {}", row.hub_id)
    assert f"{row.sku} x {new.quantity}" in sf["Items__c"].splitlines()
    assert f"{row.sku} x {old.quantity}" not in sf["Items__c"].splitlines()

    assert not [e for e in land.open_quarantine() if e.external_key == row.hub_id]

    again = land.sync()
    sap_subs = again["sap"]["subscription"]
    assert (sap_subs["created"], sap_subs["updated"], sap_subs["failed"]) == (0, 0, 0)
    assert _contract_items(land, number)[row.item_id].etag == after.etag


def test_a_contract_item_changed_in_sap_is_set_back_from_billing_without_a_conflict(
    land: Landscape,
) -> None:
    """SAP's contract items are a view of billing's items, never merged back: a quantity
    changed in SAP is no claim on billing's items (no conflict finding on them, billing's
    item unchanged); the next sync sets the contract item back to billing's quantity."""
    with land.billing.connect() as conn:
        hub_id, item_id, quantity = conn.execute(
            sa.select(
                subscriptions.c.hub_id, subscription_items.c.item_id, subscription_items.c.quantity
            )
            .join(subscription_items, subscription_items.c.subscription_id == subscriptions.c.id)
            .where(
                subscriptions.c.status == "active",
                subscription_items.c.sku.like("SEAT-%"),
                subscription_items.c.effective_to.is_(None),
            )
            .order_by(subscriptions.c.hub_id.desc())
            .limit(1)
        ).one()
    contract = land.sap("subscription", hub_id)
    assert contract is not None
    item = _contract_items(land, contract["SalesContract"])[item_id]
    sap = connect("sap", land.sb.env)
    try:
        client = sap._client("API_SALES_CONTRACT_SRV")  # type: ignore[attr-defined]
        sap._fetch_csrf("API_SALES_CONTRACT_SRV")  # type: ignore[attr-defined]
        update = client.entity_sets.A_SalesContractItem.update_entity(
            SalesContract=item.SalesContract, SalesContractItem=item.SalesContractItem
        ).set(RequestedQuantity=str(quantity + 100))
        update.add_headers({"If-Match": item.etag})
        update.execute()  # a sales user types over the quantity
    finally:
        sap.close()
    land.sync()
    again = _contract_items(land, contract["SalesContract"])[item_id]
    assert Decimal(again.RequestedQuantity) == quantity
    with land.billing.connect() as conn:
        kept = conn.execute(
            sa.select(subscription_items.c.quantity).where(
                subscription_items.c.item_id == item_id,
                subscription_items.c.effective_to.is_(None),
            )
        ).scalar_one()
    assert kept == quantity
    engine = create_store_engine(land.store)
    with engine.connect() as conn:
        conflicts = conn.execute(
            sa.select(Finding.field).where(
                Finding.key == hub_id, Finding.system == "sap", Finding.kind == "conflict"
            )
        ).all()
    engine.dispose()
    assert conflicts == []

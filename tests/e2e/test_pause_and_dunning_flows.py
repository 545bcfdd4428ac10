"""Issue 17 end to end through the sandbox with the real connectors: a pause and its
resumption in billing reach the Salesforce subscription (``Paused_At__c``,
``Resume_At__c``), and an invoice's dunning run reaches the Salesforce invoice's
``Dunning_History__c``, event by event in order. Once a pass has carried a change, the
next pass writes nothing anywhere (counted at the emulators)."""

import re
from datetime import date, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from connectors.billing_schema import allocations, invoices, subscriptions
from hub.systems import connect
from tests.e2e.test_business_flows import Landscape, _now
from tests.e2e.test_business_flows import land as land  # the module's own landscape

pytestmark = pytest.mark.slow

#: calls that change nothing although they are not GETs: OAuth token requests and Bulk API
#: query jobs (a query job is created with a POST)
NOT_WRITES = re.compile(r"/oauth2?/|/oauth/v1/token|/jobs/query")


def _writes_of_next_sync(land: Landscape) -> dict[str, dict[str, int]]:
    """The calls that write, per emulator, of one more sync."""
    land.sb.reset_calls()
    land.sync()
    out: dict[str, dict[str, int]] = {}
    for system, snapshot in land.sb.calls().items():
        for call, n in snapshot["by_call"].items():
            method, path = call.split(" ", 1)
            if method not in ("GET", "HEAD") and not NOT_WRITES.search(path):
                out.setdefault(system, {})[call] = n
    return out


def _sf_subscription(land: Landscape, hub_id: str) -> tuple[Any, ...]:
    (row,) = land.soql(
        "SELECT Status__c, Paused_At__c, Resume_At__c FROM Subscription__c WHERE Hub_Id__c = {}",
        hub_id,
    )
    return row["Status__c"], row["Paused_At__c"], row["Resume_At__c"]


def _set_subscription(land: Landscape, hub_id: str, **values: Any) -> None:
    with land.billing.begin() as conn:
        conn.execute(
            sa.update(subscriptions)
            .where(subscriptions.c.hub_id == hub_id)
            .values(**values, updated_at=_now())
        )


def test_pause_then_resume_in_billing_reach_salesforce_with_both_dates(land: Landscape) -> None:
    with land.billing.connect() as conn:
        # an active subscription that ships nothing: the pause changes no delivery
        hub_id = conn.execute(
            sa.select(subscriptions.c.hub_id)
            .where(
                subscriptions.c.status == "active",
                subscriptions.c.paused_at.is_(None),
                subscriptions.c.id.not_in(sa.select(allocations.c.subscription_id)),
            )
            .order_by(subscriptions.c.hub_id)
            .limit(1)
        ).scalar_one()
    assert _sf_subscription(land, hub_id) == ("active", None, None)

    paused, resume = date.today(), date.today() + timedelta(days=30)
    _set_subscription(land, hub_id, status="paused", paused_at=paused, resume_at=resume)
    land.sync()
    assert _sf_subscription(land, hub_id) == ("paused", str(paused), str(resume))

    # resumed ten days early: billing moves the resume day and keeps the pause's start
    resumed = paused + timedelta(days=20)
    _set_subscription(land, hub_id, status="active", resume_at=resumed)
    land.sync()
    assert _sf_subscription(land, hub_id) == ("active", str(paused), str(resumed))
    assert _writes_of_next_sync(land) == {}


def _set_dunning(
    land: Landscape, invoice_id: int, events: list[dict[str, Any]], **more: Any
) -> None:
    with land.billing.begin() as conn:
        conn.execute(
            sa.update(invoices)
            .where(invoices.c.id == invoice_id)
            .values(
                dunning_stage=events[-1]["stage"],
                dunning_events=events,
                updated_at=_now(),
                **more,
            )
        )


def test_dunning_events_in_billing_reach_salesforce_as_the_history_in_order(
    land: Landscape,
) -> None:
    with land.billing.connect() as conn:
        invoice = conn.execute(
            sa.select(invoices)
            .where(invoices.c.status == "open", invoices.c.dunning_stage == 0)
            .order_by(invoices.c.hub_id)
            .limit(1)
        ).one()

    def history() -> Any:
        (row,) = land.soql(
            "SELECT Status__c, Dunning_Stage__c, Dunning_History__c FROM Invoice__c "
            "WHERE Hub_Id__c = {}",
            invoice.hub_id,
        )
        return row["Status__c"], row["Dunning_Stage__c"], row["Dunning_History__c"]

    assert history() == ("open", 0, None)
    reminded = invoice.due_date + timedelta(days=1)
    first = {"stage": 1, "on": reminded.isoformat(), "outcome": "retried"}
    _set_dunning(land, invoice.id, [first])
    land.sync()
    assert history() == ("open", 1, f"{reminded} stage 1 retried")

    recovered = invoice.due_date + timedelta(days=15)
    second = {"stage": 2, "on": recovered.isoformat(), "outcome": "paid"}
    _set_dunning(land, invoice.id, [first, second], status="paid")
    land.sync()
    assert history() == ("paid", 2, f"{reminded} stage 1 retried\n{recovered} stage 2 paid")
    assert _writes_of_next_sync(land) == {}


def test_a_dunning_history_edited_by_hand_in_salesforce_is_held_back_naming_the_line(
    land: Landscape,
) -> None:
    """The history is the hub's text: a line someone typed into it in Salesforce is not
    an event, and the invoice waits in quarantine with that line named."""
    with land.billing.connect() as conn:
        hub_id = conn.execute(
            sa.select(invoices.c.hub_id)
            .where(invoices.c.status == "open", invoices.c.dunning_stage == 0)
            .order_by(invoices.c.hub_id.desc())
            .limit(1)
        ).scalar_one()
    (row,) = land.soql("SELECT Id FROM Invoice__c WHERE Hub_Id__c = {}", hub_id)
    sf = connect("salesforce", land.sb.env)
    try:
        sf._client().Invoice__c.update(  # type: ignore[attr-defined]
            row["Id"], {"Dunning_History__c": "called the customer"}
        )
    finally:
        sf.close()
    land.sync()
    (entry,) = [
        e
        for e in land.open_quarantine()
        if (e.system, e.entity, e.external_key) == ("salesforce", "invoice", hub_id)
    ]
    assert "dunning_events" in entry.reason and "dunning history line 1" in entry.reason
    assert "'called the customer'" in entry.reason

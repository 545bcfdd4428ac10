"""Owner first (issue 15): after a clean sync, each owner changes a field it owns through
its own API (billing re-bills an invoice line, the PIM retires a SKU, sales renames an
Account) and the hub has not synced since. A resync of those very records to *every*
system - the owners included, the worst case - must not undo any of it: the owners are
re-read first, so the golden record takes their values and the other systems get them."""

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from connectors.registry import configured_systems
from hub.store import create_store_engine
from hub.store.db import session_factory
from hub.store.migrate import upgrade
from hub.store.repo import golden_for
from hub.sync.engine import SyncEngine
from hub.sync.resync import ResyncRequest, resync
from hub.systems import connect
from sandbox.runner import running_sandbox


def _one(batches: Any) -> dict[str, Any]:
    (record,) = [r for batch in batches for r in batch.records]
    return record


def _invoice_with_lines(billing_url: str) -> tuple[str, int, list[int]]:
    """An issued invoice's hub id, its first line's amount and its line ids."""
    db = sa.create_engine(billing_url)
    with db.connect() as conn:
        hub_id, invoice_id = conn.execute(
            sa.text(
                "SELECT hub_id, id FROM invoices WHERE status IN ('open', 'paid') "
                "AND EXISTS (SELECT 1 FROM invoice_lines l WHERE l.invoice_id = invoices.id) "
                "ORDER BY id LIMIT 1"
            )
        ).one()
        lines = conn.execute(
            sa.text("SELECT id, amount_minor FROM invoice_lines WHERE invoice_id = :i ORDER BY id"),
            {"i": invoice_id},
        ).all()
    db.dispose()
    return hub_id, lines[0].amount_minor, [line.id for line in lines]


def _rebill(billing_url: str, hub_id: str, new_amount: int) -> None:
    """Billing's own change, as its dunning or re-billing job makes it: first line's amount
    and the invoice's totals, in one transaction."""
    db = sa.create_engine(billing_url)
    with db.begin() as conn:
        invoice_id, old_total = conn.execute(
            sa.text("SELECT id, total_minor FROM invoices WHERE hub_id = :h"), {"h": hub_id}
        ).one()
        line_id, old_amount = conn.execute(
            sa.text(
                "SELECT id, amount_minor FROM invoice_lines WHERE invoice_id = :i "
                "ORDER BY id LIMIT 1"
            ),
            {"i": invoice_id},
        ).one()
        delta = new_amount - old_amount
        conn.execute(
            sa.text("UPDATE invoice_lines SET amount_minor = :a WHERE id = :l"),
            {"a": new_amount, "l": line_id},
        )
        conn.execute(
            sa.text(
                "UPDATE invoices SET subtotal_minor = subtotal_minor + :d, "
                "total_minor = total_minor + :d WHERE id = :i"
            ),
            {"d": delta, "i": invoice_id},
        )
        assert old_total + delta > 0
    db.dispose()


@pytest.mark.slow
def test_a_resync_never_undoes_an_owners_newer_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'hub.sqlite'}"
    upgrade(url)
    monkeypatch.setenv("HUB_DATABASE_URL", url)
    with running_sandbox(tmp_path / "sb", seed=11, customers=8) as sb:
        connectors = {s: connect(s, sb.env) for s in configured_systems(sb.env)}
        store = create_store_engine(url)
        SyncEngine(store, connectors).run()

        billing_url = sb.env["BILLING_DATABASE_URL"]
        invoice, amount, line_ids = _invoice_with_lines(billing_url)
        _rebill(billing_url, invoice, amount + 1_234)

        pim = connectors["pim"]
        product = next(r for b in pim.read_snapshot("product") for r in b.records)
        sku = product["identifier"]
        retired = {"identifier": sku, "values": {"lifecycle": [_value("retired")]}}
        assert pim.write_batch("product", [retired])[0].error is None

        salesforce = connectors["salesforce"]
        account = next(r for b in salesforce.read_snapshot("customer") for r in b.records)
        customer = account["Hub_Id__c"]
        renamed = {"Hub_Id__c": customer, "Name": "Renamed By Sales GmbH"}
        assert salesforce.write_batch("customer", [renamed])[0].error is None

        for entity, key in (("invoice", invoice), ("product", sku), ("customer", customer)):
            report = resync(SyncEngine(store, connectors), ResyncRequest(entity, keys=[key]))
            assert report.errors == [], report.errors
            assert report.repulled, "the owners were not re-read"

        # every owner still holds its own change ...
        db = sa.create_engine(billing_url)
        with db.connect() as conn:
            lines = conn.execute(
                sa.text(
                    "SELECT l.id, l.amount_minor FROM invoice_lines l JOIN invoices i "
                    "ON i.id = l.invoice_id WHERE i.hub_id = :h ORDER BY l.id"
                ),
                {"h": invoice},
            ).all()
        db.dispose()
        assert [line.id for line in lines] == line_ids  # not replaced under new ids
        assert lines[0].amount_minor == amount + 1_234
        lifecycle = _one(pim.read_by_keys("product", [sku]))["values"]["lifecycle"]
        assert lifecycle[0]["data"] == "retired"
        assert _one(salesforce.read_by_keys("customer", [customer]))["Name"] == (
            "Renamed By Sales GmbH"
        )
        # ... and the golden record (so every other system) took it
        with session_factory(store)() as s:
            assert golden_for(s, "product", [sku])[sku].data["lifecycle"] == "retired"
            name = golden_for(s, "customer", [customer])[customer].data["legal_name"]
            assert name == "Renamed By Sales GmbH"
            golden_lines = golden_for(s, "invoice", [invoice])[invoice].data["lines"]
            assert golden_lines[0]["amount_minor"] == amount + 1_234
        sap_name = _one(connectors["sap"].read_by_keys("customer", [customer]))
        assert sap_name["CustomerFullName"] == "Renamed By Sales GmbH"
        for connector in connectors.values():
            connector.close()


def _value(data: str) -> dict[str, Any]:
    return {"locale": None, "scope": None, "data": data}

"""The bar of issue 6 on the seeded sandbox: golden records loaded by the sync engine's
pull from every system whose connector answers, then one reconciliation; every planted
drift in manifest.json that the covered systems can show is reported with its kind, key,
system and field, and nothing else (apart from the documented consequences below). The
book reissues every voided invoice for its period, and its paused months are not
periods due, so it leaves no period unbilled of its own: the one unbilled period is the
planted one, reported with its amount at stake."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from connectors.billing_schema import invoices
from connectors.registry import configured_systems
from hub.mapping.spec import MAPPINGS_DIR, field_owner, load_all
from hub.mapping.transforms import load_code_lists
from hub.model import ENTITY_ORDER
from hub.recon.run import reconcile
from hub.store import create_store_engine
from hub.store.migrate import upgrade
from hub.sync.engine import SyncEngine
from hub.systems import connect
from sandbox.runner import running_sandbox
from sandbox.seed.book import Book
from sandbox.seed.drift import WITHHOLD_INVOICE, plan

Entry = tuple[str, str, str, str, str | None]


def _secondary(f: Entry, expected: set[Entry]) -> bool:
    """Consequences of a planted drift that docs/sandbox.md and docs/reconciliation.md
    name: a WMS quantity drift also breaks the subscription's allocation check; a change
    in the owning system not yet pushed shows in the other copies of that record; a
    customer missing in a system takes its documents there with it; billing's planted
    invoice total makes the (correct) SAP and Salesforce copies differ from it; billing's
    pause planted a month early leaves Salesforce's copy of the subscription holding the
    real pause (``paused_at``)."""
    entity, _key, system, kind, field = f
    if kind == "aggregate" and (field or "").startswith("allocation:"):
        return any(e[0] == "allocation" and e[2] == system for e in expected)
    if entity == "product" and kind == "mismatch":
        return any(e[3] == "broken_ref" and e[2] == "pim" for e in expected)
    owner = "CUS-" + _key.split("-")[1] if entity in ("subscription", "invoice") else ""
    if any(
        e[0] == "customer" and e[1] == owner and e[2] == system and e[3] == "missing"
        for e in expected
    ):
        # a customer missing in a system: its documents there are missing with it
        # (Salesforce) or still name its old number (SAP billing documents)
        return kind == "missing" or (kind == "mismatch" and field == "customer_id")
    if kind == "aggregate" and (field or "").startswith("billing:"):
        # billing's invoice total was planted off by one, or a line of it re-priced
        # (price or proration drift): the copies in SAP and Salesforce, which are right,
        # now differ from billing's
        return any(e[1] == _key and e[2] == "billing" and e[3] == "aggregate" for e in expected)
    if entity == "subscription" and kind == "mismatch" and field == "paused_at":
        # billing's pause starts a month early, so one of the subscription's invoices was
        # issued while paused: the copies outside billing still hold the real pause
        invoices = "INV" + _key.removeprefix("SUB") + "-"
        return any(e[1].startswith(invoices) and e[4] == "paused:issue_date" for e in expected)
    if kind == "mismatch" and field == "subtotal_minor":
        # a re-priced line raised its invoice's subtotal in billing, the owner
        return any(
            e[1] == _key and e[2] == "billing" and (e[4] or "").startswith(("price:", "proration:"))
            for e in expected
        )
    return False


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_every_planted_drift_of_the_covered_systems_and_nothing_else(tmp_path: Path) -> None:
    with running_sandbox(tmp_path / "sb", seed=7, customers=60) as sb:
        connectors, skipped = {}, {}
        for system in configured_systems(sb.env):
            try:
                connector = connect(system, sb.env)
            except (ValueError, ImportError) as exc:
                skipped[system] = str(exc)
                continue
            health = connector.health()
            if health.ok:
                connectors[system] = connector
            else:
                skipped[system] = health.detail
        print(f"covered: {sorted(connectors)}; skipped: {skipped}")
        if not connectors:
            pytest.skip(f"no system connector can be built yet: {skipped}")
        all_specs, errors = load_all(MAPPINGS_DIR)
        assert errors == []
        specs = [s for s in all_specs if s.system in connectors]
        url = f"sqlite:///{tmp_path / 'hub.sqlite'}"
        upgrade(url)
        engine = create_store_engine(url)
        # golden from the owners: pull only (a push would repair drift before we look)
        sync = SyncEngine(engine, connectors, specs=specs)
        for entity in ENTITY_ORDER:
            for system in sorted(connectors):
                if (system, entity) in sync.specs:
                    sync.pull(system, entity)
        assert sync.errors == []
        result = reconcile(engine, connectors, specs, load_code_lists(MAPPINGS_DIR))
        manifest = sb.manifest()
        open_in_sap = _open_documents_posted_to_sap(sb.billing_url)

    covered = set(connectors)
    mapped = {(s.system, s.entity) for s in specs}

    def detectable(e: dict) -> bool:
        """What the covered systems can show: the drift's system is read, and golden
        holds the truth (another covered system holds the record; the owner of a
        changed field is covered)."""
        if e["system"] not in covered:
            return False
        if e["kind"] == "missing":
            return any((s, e["entity"]) in mapped for s in covered - {e["system"]})
        if e["kind"] == "mismatch":
            owner = field_owner(all_specs, e["entity"], e["field"])
            return owner in covered and owner != e["system"]
        if e["kind"] == "broken_ref":
            return ("billing", "subscription") in mapped or any(
                (s, "subscription") in mapped for s in covered
            )
        return True

    expected = {
        (e["entity"], e["key"], e["system"], e["kind"], e["field"])
        for e in manifest
        if detectable(e)
    }
    undetectable = [e for e in manifest if not detectable(e)]
    print(f"not detectable with these systems: {undetectable}")
    # a field whose owner is not covered has no truth to hold anyone to: not asserted
    unowned = {
        (e["entity"], e["key"], e["field"])
        for e in undetectable
        if e["kind"] == "mismatch" and e["system"] in covered
    }
    found = {
        (f["entity"], f["key"], f["system"], f["kind"], f["field"])
        for f in result.findings.to_pylist()
        if (f["entity"], f["key"], f["field"]) not in unowned
    }
    assert expected <= found, f"not reported: {expected - found}"
    extra = {f for f in found - expected if not _secondary(f, expected)}
    assert extra == set(), f"reported beyond the manifest: {extra}"
    assert expected, "the covered systems should show some planted drift"
    # SAP states a payment only once FI cleared the document: its open documents make no
    # claim, and the reconciliation raises no mismatch on them (issue 17)
    assert open_in_sap, "the book should hold open invoices posted to SAP"
    on_payment = {
        f["key"]
        for f in result.findings.to_pylist()
        if (f["entity"], f["system"], f["field"]) == ("invoice", "sap", "amount_paid_minor")
    }
    assert "sap" not in covered or not on_payment & open_in_sap

    if "billing" in covered:
        # the planted unbilled period, with what its withheld invoice's recurring lines bill
        unbilled = [
            (f["key"], f["amount_at_stake_minor"], f["currency"])
            for f in result.findings.to_pylist()
            if f["field"] == "unbilled:period"
        ]
        assert unbilled == [
            (d.key, d.value["amount_at_stake_minor"], d.value["currency"])
            for d in plan(Book(7, 60))
            if d.action == WITHHOLD_INVOICE
        ]


def _open_documents_posted_to_sap(billing_url: str) -> set[str]:
    """Invoices billing has posted to SAP and not been paid in full for."""
    engine = sa.create_engine(billing_url)
    try:
        with engine.connect() as conn:
            return set(
                conn.execute(
                    sa.select(invoices.c.hub_id).where(
                        invoices.c.sap_billing_document.is_not(None),
                        invoices.c.amount_paid_minor < invoices.c.total_minor,
                        invoices.c.status.not_in(["void", "draft"]),
                    )
                ).scalars()
            )
    finally:
        engine.dispose()

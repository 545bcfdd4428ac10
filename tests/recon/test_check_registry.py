"""The registry of recon checks: every entity's checks are registered, in the order that
keeps findings identical, and a new check is one registration away from every run."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from hub.model import ENTITIES
from hub.recon import findings as F
from hub.recon import run as recon_run
from hub.recon.registry import (
    CHECKS,
    AllocationQuantities,
    CatalogueRefs,
    CheckContext,
    CheckRegistry,
    CrossSystemAmounts,
    DunningConsistency,
    ExpiredDiscounts,
    InvoicesAfterEnd,
    InvoiceSums,
    InvoicesWhilePaused,
    PriceLeakage,
    ProrationErrors,
    RecordCompare,
    RenewalsNotInvoiced,
    SubscriptionCurrency,
    SubscriptionRefs,
    SystemCheck,
    Target,
    UnbilledPeriods,
    UsageAgainstMeters,
)
from hub.store.models import Finding
from tests.sync.conftest import account


def _names(checks: tuple[object, ...]) -> list[type]:
    return [type(c) for c in checks]


def test_every_entity_has_its_checks_registered() -> None:
    assert set(ENTITIES) <= CHECKS.entities()
    for entity in ENTITIES:
        assert RecordCompare in _names(CHECKS.system_checks(entity)), entity
    # the cross-system check runs first: it claims the fields the compare leaves out
    assert _names(CHECKS.system_checks("invoice")) == [
        CrossSystemAmounts,
        RecordCompare,
        InvoiceSums,
        PriceLeakage,
        ExpiredDiscounts,
        ProrationErrors,
        UsageAgainstMeters,
        InvoicesAfterEnd,
        InvoicesWhilePaused,
        DunningConsistency,
        UnbilledPeriods,
        RenewalsNotInvoiced,
    ]
    assert _names(CHECKS.system_checks("subscription")) == [
        RecordCompare,
        SubscriptionRefs,
        SubscriptionCurrency,
    ]
    assert _names(CHECKS.system_checks("allocation")) == [RecordCompare, AllocationQuantities]
    assert _names(CHECKS.run_checks("subscription")) == [CatalogueRefs]
    assert not any(CHECKS.run_checks(e) for e in ENTITIES if e != "subscription")


def test_registering_on_a_copy_leaves_the_original_alone() -> None:
    class Noop(SystemCheck):
        def run(self, ctx: CheckContext, target: Target) -> None:
            pass

    extended = CHECKS.copy()
    noop = extended.register("customer", Noop())
    assert extended.system_checks("customer")[-1] is noop
    assert noop not in CHECKS.system_checks("customer")
    assert CheckRegistry().entities() == set()


class _NameTooLong(SystemCheck):
    """A made-up rule: a customer's legal name in a system is at most 8 characters."""

    def run(self, ctx: CheckContext, target: Target) -> None:
        rows = f"""
            SELECT {F.literal(target.entity)} entity, key, NULL external_id,
                   {F.literal(target.system)} system, 'aggregate' kind,
                   'length:legal_name' field, '8' expected,
                   CAST(length(legal_name) AS VARCHAR) actual, 'warning' severity,
                   NULL amount_at_stake_minor, NULL currency
            FROM "{target.staged.table}" WHERE length(legal_name) > 8"""
        ctx.found(F.finalize(ctx.con, rows))
        ctx.ran(target.entity, target.system, "aggregate")


def test_a_check_is_added_by_one_registration(setup, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    make, crm, _, engine = setup
    crm.put(account("Acme GmbH", Tax_Id__c="DE123456780"))
    crm.put(account("Beta AG", Tax_Id__c="DE123456781"))
    sync = make()
    sync.run()

    def reconcile():  # type: ignore[no-untyped-def]
        return recon_run.reconcile(
            engine, sync.connectors, list(sync.specs.values()), sync.code_lists
        )

    assert reconcile().findings.num_rows == 0
    registry = CHECKS.copy()
    registry.register("customer", _NameTooLong())  # the one registration
    monkeypatch.setattr(recon_run, "CHECKS", registry)
    result = reconcile()
    got = sorted(
        (f["system"], f["field"], json.loads(f["actual"])) for f in result.findings.to_pylist()
    )
    assert got == [("salesforce", "length:legal_name", 9), ("sap", "length:legal_name", 9)]
    with engine.connect() as conn:
        stored = conn.execute(sa.select(Finding.kind, Finding.status, Finding.severity)).all()
    assert stored == [("aggregate", "open", "warning")] * 2
    # a run without the check does not cover its kind, so it resolves none of them
    monkeypatch.setattr(recon_run, "CHECKS", CHECKS)
    assert reconcile().counts["resolved"] == 0

"""The reconcile runner over in-memory systems behind the connector protocol and the
real hub store (SQLite and PostgreSQL): mapping-driven staging, findings persisted with
history, unmappable records in quarantine instead of 'missing', auto-resolution."""

from __future__ import annotations

import sqlalchemy as sa

from hub.recon.run import reconcile
from hub.store.models import Finding, QuarantineEntry
from tests.sync.conftest import account, count
from tests.sync.memory_system import MemorySystem


def _synced(setup):  # type: ignore[no-untyped-def]
    make, crm, erp, engine = setup
    for i, name in enumerate(("Acme GmbH", "Beta AG", "Gamma KG")):
        crm.put(account(name, Tax_Id__c=f"DE12345678{i}"))
    make().run()
    assert len(erp.rows) == 3
    return make, crm, erp, engine


def _run(make, engine, **kw):  # type: ignore[no-untyped-def]
    sync = make()
    return reconcile(engine, sync.connectors, list(sync.specs.values()), sync.code_lists, **kw)


def _erp_row(erp: MemorySystem, name: str) -> dict:
    return next(r for r in erp.rows.values() if r.get("CustomerName") == name)


def test_agreeing_systems_have_no_findings(setup) -> None:
    make, _, _, engine = _synced(setup)
    result = _run(make, engine)
    assert result.findings.num_rows == 0, result.findings.to_pylist()
    assert result.systems == ["salesforce", "sap"]
    assert result.staged["sap"]["customer"]["rows"] == 3


def test_drift_is_found_persisted_and_resolved(setup) -> None:
    make, _, erp, engine = _synced(setup)
    acme, beta = _erp_row(erp, "Acme GmbH"), _erp_row(erp, "Beta AG")
    acme["CustomerName"] = "Acme Holding"
    del erp.rows[beta["Id"]]
    erp.put({"Id": "1000099", "CustomerName": "Nobody", "Currency": "EUR"})
    result = _run(make, engine)
    got = {(f["key"], f["system"], f["kind"], f["field"]) for f in result.findings.to_pylist()}
    assert got == {
        (acme["YY1_HubId"], "sap", "mismatch", "legal_name"),
        (beta["YY1_HubId"], "sap", "missing", None),
        ("sap:1000099", "sap", "orphan", None),
    }
    summary = result.summary()
    assert summary["by_kind"] == {"mismatch": 1, "missing": 1, "orphan": 1}
    assert summary["new"] == 3
    # the same drift again: same identities, nothing new
    again = _run(make, engine)
    assert again.counts["new"] == 0 and again.findings.num_rows == 3
    # fix the name: that finding resolves, the others stay open
    acme["CustomerName"] = "Acme GmbH"
    fixed = _run(make, engine)
    assert fixed.counts["resolved"] == 1
    with engine.connect() as conn:
        rows = conn.execute(sa.select(Finding.field, Finding.status)).all()
    assert sorted(rows, key=str) == sorted(
        [("legal_name", "resolved"), (None, "open"), (None, "open")], key=str
    )


def test_unmappable_record_goes_to_quarantine_not_missing(setup) -> None:
    make, _, erp, engine = _synced(setup)
    gamma = _erp_row(erp, "Gamma KG")
    gamma["CreditLimit"] = "lots"
    result = _run(make, engine)
    assert result.findings.num_rows == 0, result.findings.to_pylist()
    assert result.staged["sap"]["customer"]["quarantined"] == 1
    assert count(engine, QuarantineEntry, QuarantineEntry.external_key == gamma["YY1_HubId"]) == 1


def test_filters_limit_what_is_read_and_resolved(setup) -> None:
    make, _, erp, engine = _synced(setup)
    beta = _erp_row(erp, "Beta AG")
    del erp.rows[beta["Id"]]
    _run(make, engine)
    erp.put(dict(beta))  # back in SAP, but only Salesforce is reconciled now
    result = _run(make, engine, systems=["salesforce"])
    assert result.systems == ["salesforce"] and result.counts["resolved"] == 0
    assert count(engine, Finding, Finding.status == "open") == 1

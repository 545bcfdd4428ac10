"""Which golden records a system is held to comes from its mapping's ``not_held_when``
(one source for the sync's pushes and the reconciliation's coverage)."""

from __future__ import annotations

import pyarrow as pa

from hub.mapping.spec import MAPPINGS_DIR, MappingSpec, load_all
from hub.recon import run as recon_run
from hub.recon.engine import connect
from hub.recon.registry import coverage_sql
from tests.sync.conftest import account


def _sap_invoice() -> MappingSpec:
    specs, errors = load_all(MAPPINGS_DIR)
    assert errors == []
    return next(s for s in specs if (s.system, s.entity) == ("sap", "invoice"))


def _held(spec: MappingSpec, statuses: list[str | None]) -> list[str | None]:
    con = connect()
    con.register(
        "golden", pa.table({"key": [str(i) for i in range(len(statuses))], "status": statuses})
    )
    where = coverage_sql(spec, ["key", "status"]) or "true"
    rows = con.execute(f"SELECT status FROM golden WHERE {where} ORDER BY key").fetchall()
    return [r[0] for r in rows]


def test_sap_invoice_coverage_is_the_mappings_not_held_when() -> None:
    spec = _sap_invoice()
    assert spec.not_held_when == {"status": ["draft"]}
    statuses = ["draft", "open", None, "void", "paid"]
    assert _held(spec, statuses) == ["open", None, "void", "paid"]
    assert _held(spec, statuses) == [s for s in statuses if spec.holds({"status": s})]


def test_changing_not_held_when_changes_the_coverage() -> None:
    spec = _sap_invoice().model_copy(update={"not_held_when": {"status": ["draft", "void"]}})
    assert _held(spec, ["draft", "open", "void"]) == ["open"]
    held_all = spec.model_copy(update={"not_held_when": {}})
    assert coverage_sql(held_all, ["status"]) is None
    # a field the golden table lacks excludes nothing, as MappingSpec.holds
    other = spec.model_copy(update={"not_held_when": {"channel": ["web"]}})
    assert coverage_sql(other, ["status"]) is None


def test_a_record_the_mapping_says_is_not_held_is_not_missing(setup) -> None:  # type: ignore[no-untyped-def]
    make, crm, erp, engine = setup
    for i, name in enumerate(("Acme GmbH", "Beta AG")):
        crm.put(account(name, Tax_Id__c=f"DE12345678{i}"))
    sync = make()
    sync.run()
    beta = next(r for r in erp.rows.values() if r.get("CustomerName") == "Beta AG")
    del erp.rows[beta["Id"]]
    specs = list(sync.specs.values())

    def missing(specs: list[MappingSpec]) -> list[tuple[str, str]]:
        result = recon_run.reconcile(engine, sync.connectors, specs, sync.code_lists)
        return [
            (f["system"], f["key"]) for f in result.findings.to_pylist() if f["kind"] == "missing"
        ]

    assert missing(specs) == [("sap", beta["YY1_HubId"])]
    narrowed = [
        s.model_copy(update={"not_held_when": {"legal_name": ["Beta AG"]}})
        if (s.system, s.entity) == ("sap", "customer")
        else s
        for s in specs
    ]
    assert missing(narrowed) == []

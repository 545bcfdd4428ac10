"""The reconcile job in Dagster, executed in process against in-memory systems and the
real hub store: Launchpad config, drift checks on the golden assets with ERROR/WARN
severity and a capped Markdown table, the drift report, skipped systems, and the drift
check after a failed sync."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from dagster import (
    AssetCheckKey,
    AssetCheckSeverity,
    AssetKey,
    DagsterInstance,
    Definitions,
    RunConfig,
    build_run_status_sensor_context,
)
from dagster._core.storage.asset_check_execution_record import (
    AssetCheckExecutionRecordStatus,
)

from app.defs.recon import (
    DRIFT_REPORT_KEY,
    RECONCILE_OP,
    RECONCILIATION_KEY,
    ReconcileConfig,
    recon_definitions,
)
from app.defs.resources import HubStoreResource
from app.defs.sync import build_sync_assets, build_sync_jobs
from hub.mapping.spec import CompareRule, MappingSpec
from tests.sync.conftest import account
from tests.sync.memory_system import MemorySystem


@dataclass
class Holder:
    """Stands where a per-system resource goes: hands out the in-memory system."""

    system: MemorySystem

    def connector(self) -> MemorySystem:
        return self.system


class Unconfigured:
    """A system resource with no environment, as the registry reports it."""

    def __init__(self, name: str) -> None:
        self.name = name

    def connector(self) -> Any:
        raise ValueError(f"{self.name} is not configured: set its URL")


def _fold_names(specs: list[MappingSpec]) -> list[MappingSpec]:
    """SAP's copy of the name compared case- and whitespace-insensitively (cosmetic)."""
    out = []
    for spec in specs:
        if spec.system == "sap":
            fields = dict(spec.fields)
            fields["legal_name"] = fields["legal_name"].model_copy(
                update={"compare": CompareRule(rule="fold")}
            )
            spec = spec.model_copy(update={"fields": fields})
        out.append(spec)
    return out


@pytest.fixture
def landscape(setup):  # type: ignore[no-untyped-def]
    make, crm, erp, engine = setup
    for i, name in enumerate(("Acme GmbH", "Beta AG", "Gamma KG")):
        crm.put(account(name, Tax_Id__c=f"DE12345678{i}"))
    sync = make()
    sync.run()
    specs = _fold_names(list(sync.specs.values()))
    resources = {
        "hub_store": HubStoreResource(database_url=engine.url.render_as_string(False)),
        "salesforce": Holder(crm),
        "sap": Holder(erp),
        **{s: Unconfigured(s) for s in ("billing", "pim", "wms")},
    }
    defs = recon_definitions(specs, sync.code_lists, resources)
    without_sap = recon_definitions(
        specs, sync.code_lists, {**resources, "sap": Unconfigured("sap")}
    )
    return defs, crm, erp, engine, without_sap


def _execute(defs: Definitions, **config: str):  # type: ignore[no-untyped-def]
    job = defs.resolve_job_def("reconcile")
    with DagsterInstance.ephemeral() as instance:
        return job.execute_in_process(
            run_config=RunConfig(ops={RECONCILE_OP: ReconcileConfig(**config)}),
            instance=instance,
            raise_on_error=False,
        )


def _row(erp: MemorySystem, name: str) -> dict:
    return next(r for r in erp.rows.values() if r.get("CustomerName") == name)


def test_definitions_load() -> None:
    defs = recon_definitions()
    Definitions.validate_loadable(defs)
    assert defs.resolve_job_def("reconcile") is not None


def test_money_or_missing_drift_fails_the_check_with_error(landscape) -> None:
    defs, _, erp, _, _ = landscape
    beta = _row(erp, "Beta AG")
    del erp.rows[beta["Id"]]
    result = _execute(defs)
    assert result.success
    [check] = result.get_asset_check_evaluations()
    assert check.asset_key == AssetKey(["hub", "customer_golden"])
    assert not check.passed and check.severity == AssetCheckSeverity.ERROR
    assert check.metadata["open"].value == 1
    assert beta["YY1_HubId"] in check.metadata["top_findings"].value
    mats = _materialized(result)
    recon = mats[RECONCILIATION_KEY]
    assert recon["by_kind"].value == {"missing": 1}
    assert recon["skipped"].value == {}  # only systems with a mapping are tried
    report = mats[DRIFT_REPORT_KEY]
    assert report["by_system"].value == {"sap": 1}
    assert report["history"].value[0]["run_id"] == result.run_id
    assert "| customer | sap | missing | 1 |" in report["table"].value


def test_cosmetic_drift_only_warns_and_a_fix_passes(landscape) -> None:
    defs, _, erp, _, _ = landscape
    acme = _row(erp, "Acme GmbH")
    acme["CustomerName"] = "Acme  G.m.b.H."  # differs after folding: a cosmetic finding
    result = _execute(defs)
    [check] = result.get_asset_check_evaluations()
    assert not check.passed and check.severity == AssetCheckSeverity.WARN
    acme["CustomerName"] = "ACME  gmbh "  # equal after folding: no finding at all
    result = _execute(defs)
    [check] = result.get_asset_check_evaluations()
    assert check.passed and check.metadata["open"].value == 0


def test_config_limits_entity_and_system(landscape) -> None:
    defs, _, erp, _, without_sap = landscape
    del erp.rows[_row(erp, "Gamma KG")["Id"]]
    result = _execute(defs, entity="customer", system="salesforce")
    recon = _materialized(result)[RECONCILIATION_KEY]
    assert recon["systems"].value == ["salesforce"]
    assert recon["findings"].value == 0
    # an unconfigured system is skipped with the reason ...
    result = _execute(without_sap)
    recon = _materialized(result)[RECONCILIATION_KEY]
    assert recon["systems"].value == ["salesforce"]
    assert "sap is not configured" in recon["skipped"].value["sap"]
    # ... and asking for it by name fails the run, saying why
    failed = _execute(without_sap, system="sap")
    assert not failed.success
    failure = next(e for e in failed.all_events if e.event_type_value == "STEP_FAILURE")
    assert "sap is not configured" in str(failure.event_specific_data)


def _materialized(result: Any) -> dict[AssetKey, Any]:
    return {
        m.materialization.asset_key: m.materialization.metadata
        for m in result.get_asset_materialization_events()
    }


def test_drift_check_shows_the_last_reconciliation_after_a_failed_sync(
    landscape, setup, monkeypatch
) -> None:
    """A sync run whose extract fails skips the drift check planned on the golden asset,
    and Dagster then shows that check as "Execution failed" with no metadata. After the
    failed run, the check shows the last completed reconciliation's result again: its
    counts by entity, system and kind, its run id and time, and says the sync failed."""
    defs, crm, erp, engine, _ = landscape
    del erp.rows[_row(erp, "Beta AG")["Id"]]
    sync_engine = setup[0]()
    specs = _fold_names(list(sync_engine.specs.values()))
    monkeypatch.setattr("hub.sync.engine.load_specs", lambda _: specs)
    monkeypatch.setattr(
        "hub.sync.engine.load_code_lists",
        lambda _: {"terms": {"net30": "NT30", "net60": "NT60", "due_on_receipt": "NT00"}},
    )
    store = HubStoreResource(database_url=engine.url.render_as_string(False))
    broken = {"hub_store": store, "salesforce": Holder(crm), "sap": Unconfigured("sap")}
    resources = {**broken, **{s: Unconfigured(s) for s in ("billing", "pim", "wms")}}
    with_sync = Definitions.merge(  # the code location's shape, with SAP out of reach
        recon_definitions(specs, sync_engine.code_lists, resources),
        Definitions(assets=build_sync_assets(specs), jobs=build_sync_jobs(specs)),
    )
    check_key = AssetCheckKey(AssetKey(["hub", "customer_golden"]), "drift")
    with DagsterInstance.ephemeral() as instance:
        recon = defs.resolve_job_def("reconcile").execute_in_process(
            run_config=RunConfig(ops={RECONCILE_OP: ReconcileConfig()}),
            instance=instance,
            raise_on_error=False,
        )
        assert recon.success
        sync = with_sync.resolve_job_def("sync_customer").execute_in_process(
            instance=instance, raise_on_error=False
        )
        assert not sync.success
        failed = _latest_check(instance, check_key)
        # planned in the failed run and never evaluated: the UI's "Execution failed"
        assert failed.run_id == sync.run_id and failed.status == PLANNED

        sensor = with_sync.resolve_sensor_def("drift_after_failed_sync")
        failure = next(e for e in sync.all_events if e.event_type_value == "PIPELINE_FAILURE")
        context = build_run_status_sensor_context(
            sensor_name=sensor.name,
            dagster_instance=instance,
            dagster_run=sync.dagster_run,
            dagster_event=failure,
            resources={"hub_store": store},
        ).for_run_failure()
        sensor(context)

        latest = _latest_check(instance, check_key)
        assert latest.status == AssetCheckExecutionRecordStatus.FAILED  # evaluated: findings open
        evaluation = latest.evaluation
        assert not evaluation.passed
        assert evaluation.severity == AssetCheckSeverity.ERROR
        assert f"sync run {sync.run_id}" in evaluation.description
        assert "failed" in evaluation.description and recon.run_id in evaluation.description
        metadata = {k: v.value for k, v in evaluation.metadata.items()}
        assert metadata["open"] == 1 and metadata["by_kind"] == {"missing": 1}
        last = metadata["last_reconciliation"]
        assert last["run_id"] == recon.run_id and last["finished_at"]
        assert last["by_system"] == {"sap": 1} and last["by_kind"] == {"missing": 1}
        assert metadata["failed_sync_run"] == sync.run_id

        # a second tick for the same failure changes nothing (the check is shown already)
        sensor(context)
        assert _latest_check(instance, check_key).id == latest.id


PLANNED = AssetCheckExecutionRecordStatus.PLANNED


def _latest_check(instance: DagsterInstance, key: AssetCheckKey) -> Any:
    return instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]

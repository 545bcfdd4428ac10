"""The resync op job: typed Launchpad config (enums, ISO windows refused when naive), the
run fixes the chosen records and shows what it planned and pushed in its metadata; records
chosen from open findings by filter (or those the latest reconciliation observed), a dry
run by default, the plan as a table, drift on the owner listed as needing a person."""

import pytest
import sqlalchemy as sa
from dagster import DagsterInstance, RunConfig
from dagster._core.errors import DagsterInvalidConfigError

from app.defs.resources import HubStoreResource
from app.defs.resync import ResyncConfig, parse_utc, plan_markdown, resync_job
from hub.recon.run import reconcile
from hub.store.db import session_factory
from hub.store.models import Finding, Fingerprint, GoldenRecord, OutboxEntry
from hub.sync.resync import ResyncReport
from tests.sync.conftest import account
from tests.sync.memory_system import MemorySystem


class Holder:
    """Stands where a per-system resource goes: hands out the in-memory system."""

    def __init__(self, system: MemorySystem | None) -> None:
        self.system = system

    def connector(self) -> MemorySystem:
        if self.system is None:
            raise ValueError("not configured: set its URL")
        return self.system


@pytest.fixture
def synced(setup, monkeypatch):
    make, crm, erp, engine = setup
    specs = list(make().specs.values())
    monkeypatch.setattr(
        "hub.sync.engine.load_code_lists",
        lambda _: {"terms": {"net30": "NT30", "net60": "NT60", "due_on_receipt": "NT00"}},
    )
    monkeypatch.setattr("hub.sync.engine.load_specs", lambda _: specs)
    crm.put(account())
    make().run(["customer"])
    make().run(["customer"])
    erp_id = next(iter(erp.rows))
    resources = {
        "hub_store": HubStoreResource(database_url=engine.url.render_as_string(False)),
        "salesforce": Holder(crm),
        "sap": Holder(erp),
        "billing": Holder(None),
        "pim": Holder(None),
        "wms": Holder(None),
    }
    return resources, erp, erp_id, erp.rows[erp_id]["YY1_HubId"]


def _run(resources, config):
    with DagsterInstance.ephemeral() as instance:
        return resync_job.execute_in_process(
            run_config=config, resources=resources, instance=instance, raise_on_error=False
        )


def test_resync_job_repairs_the_record_and_reports(synced) -> None:
    resources, erp, erp_id, hub_id = synced
    erp.rows[erp_id]["CustomerName"] = "Mangled"
    config = RunConfig(
        ops={"resync_records": ResyncConfig(hub_ids=[hub_id], systems=["sap"], dry_run=False)}
    )
    result = _run(resources, config)
    assert result.success
    assert erp.rows[erp_id]["CustomerName"] == "Acme GmbH"
    output = result.output_for_node("resync_records")
    assert output["planned"] == {"sap": 1} and output["pushed"]["sap"]["updated"] == 1


def test_dry_run_from_the_launchpad_sends_nothing(synced) -> None:
    resources, erp, erp_id, hub_id = synced
    erp.rows[erp_id]["CustomerName"] = "Mangled"
    config = {"ops": {"resync_records": {"config": {"hub_ids": [hub_id], "dry_run": True}}}}
    result = _run(resources, config)
    assert result.success
    assert result.output_for_node("resync_records")["planned"] == {"salesforce": 1, "sap": 1}
    assert erp.rows[erp_id]["CustomerName"] == "Mangled"


def test_a_request_without_keys_or_window_fails_with_the_reason(synced) -> None:
    resources, *_ = synced
    result = _run(resources, {"ops": {"resync_records": {"config": {"entity": "customer"}}}})
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "give keys (hub ids) or a time window" in failure.event_specific_data.error.message


def test_unknown_entity_is_refused_before_the_run(synced) -> None:
    resources, *_ = synced
    with pytest.raises(DagsterInvalidConfigError, match="customr"):
        _run(resources, {"ops": {"resync_records": {"config": {"entity": "customr"}}}})


@pytest.mark.parametrize(
    ("text", "message"),
    [("yesterday", "not an ISO 8601"), ("2025-06-30T00:00:00", "no time zone")],
)
def test_windows_must_be_iso_with_a_zone(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ResyncConfig(window_start=text)
    assert parse_utc("2025-06-30T00:00:00Z").utcoffset().total_seconds() == 0


def test_unknown_system_is_named() -> None:
    with pytest.raises(ValueError, match="unknown system\\(s\\) \\['sapp'\\]"):
        ResyncConfig(systems=["sapp"])


def test_unknown_system_is_refused_before_the_run(synced) -> None:
    """The Launchpad validates against the config schema (an enum of the registry's
    systems) before launching, instead of failing inside the run."""
    resources, *_ = synced
    config = {"ops": {"resync_records": {"config": {"hub_ids": ["X"], "systems": ["sapp"]}}}}
    with pytest.raises(DagsterInvalidConfigError, match="sapp"):
        _run(resources, config)


def test_unknown_hub_ids_fail_the_run_and_are_named(synced) -> None:
    """A resync that could not deliver a chosen record is a red run naming the record; the
    known records are still handled."""
    resources, erp, erp_id, hub_id = synced
    erp.rows[erp_id]["CustomerName"] = "Mangled"
    config = RunConfig(
        ops={
            "resync_records": ResyncConfig(
                hub_ids=[hub_id, "CUS-NOPE"], systems=["sap"], dry_run=False
            )
        }
    )
    result = _run(resources, config)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    description = failure.event_specific_data.user_failure_data.description
    assert "1 customer hub id(s) are not in the hub" in description and "CUS-NOPE" in description
    assert erp.rows[erp_id]["CustomerName"] == "Acme GmbH"  # the known one was repaired


def test_a_record_the_target_rejects_fails_the_run_and_is_named(synced) -> None:
    """Honest exit codes: a resync whose chosen record ends in quarantine is not a repair."""
    resources, erp, erp_id, hub_id = synced
    erp.rows[erp_id]["CustomerName"] = "Mangled"
    erp.reject.add(hub_id)
    config = RunConfig(
        ops={"resync_records": ResyncConfig(hub_ids=[hub_id], systems=["sap"], dry_run=False)}
    )
    result = _run(resources, config)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    description = failure.event_specific_data.user_failure_data.description
    assert description.startswith("1 chosen record(s) were not delivered")
    assert f"sap {hub_id}: sap rejected customer {hub_id}: STRING_TOO_LONG" in description


# -- from findings (issue 20, item 9): select by filter, dry run by default, plan shown ----


def _reconcile(setup_make) -> str:
    """A real reconciliation of the in-memory systems; returns its run id."""
    sync = setup_make()
    result = reconcile(
        sync.engine, sync.connectors, list(sync.specs.values()), sync.code_lists, run_id=None
    )
    return result.run_id


@pytest.fixture
def drifted(setup, synced):
    """SAP's copy drifted twice: the name (Salesforce owns it: a push repairs it) and the
    tax id (SAP owns it: drift on the owner, which needs a person); reconciled."""
    make, _, _, engine = setup
    resources, erp, erp_id, hub_id = synced
    erp.rows[erp_id]["CustomerName"] = "Mangled"
    erp.rows[erp_id]["TaxNumber"] = "DE999"
    run_id = _reconcile(make)
    with engine.connect() as conn:
        kinds = {
            (row.field, row.kind)
            for row in conn.execute(sa.select(Finding).where(Finding.status == "open"))
        }
    assert kinds == {("legal_name", "mismatch"), ("tax_id", "mismatch")}
    return resources, erp, erp_id, hub_id, run_id


def _config(**fields):
    return {"ops": {"resync_records": {"config": fields}}}


def _metadata(result) -> dict:
    (output,) = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT" and e.step_key]
    return output.event_specific_data.metadata


def test_dry_run_is_the_default_and_writes_nothing(drifted, setup) -> None:
    """Launched with only a filter, the job plans: nothing reaches SAP, the hub keeps its
    fingerprints, the finding stays open; the plan is in the step's metadata."""
    resources, erp, erp_id, hub_id, _ = drifted
    engine = setup[3]
    assert ResyncConfig().dry_run is True
    before = _store_rows(engine)
    result = _run(resources, _config(from_findings=True))
    assert result.success
    assert erp.rows[erp_id]["CustomerName"] == "Mangled"  # nothing sent
    assert _store_rows(engine) == before  # nothing written in the hub either
    output = result.output_for_node("resync_records")
    assert output["dry_run"] is True
    [group] = output["groups"]
    assert group["entity"] == "customer" and group["systems"] == ["sap"]
    assert group["planned"] == {"sap": 1} and group["pushed"] == {}
    plan = _metadata(result)["plan"].value
    assert "| customer | sap | " + hub_id in plan
    assert "legal_name: 'Mangled' -> 'Acme GmbH'" in plan
    assert "CustomerName=Acme GmbH" in plan  # the payload SAP would get


def test_from_findings_repairs_by_filter_and_leaves_the_owner_to_a_person(drifted) -> None:
    resources, erp, erp_id, hub_id, _ = drifted
    result = _run(
        resources,
        _config(
            from_findings=True,
            entities=["customer"],
            systems=["sap"],
            finding_kinds=["mismatch"],
            opened_since="2000-01-01T00:00:00Z",
            dry_run=False,
        ),
    )
    assert result.success
    assert erp.rows[erp_id]["CustomerName"] == "Acme GmbH"  # repaired from the golden record
    assert erp.rows[erp_id]["TaxNumber"] == "DE999"  # SAP owns the tax id: never pushed over
    output = result.output_for_node("resync_records")
    [group] = output["groups"]
    assert group["pushed"]["sap"]["updated"] == 1
    [held] = output["needs_a_person"]
    assert held["field"] == "tax_id" and held["system"] == "sap"
    metadata = _metadata(result)
    assert metadata["needs_a_person_count"].value == 1
    table = metadata["needs_a_person"].value
    assert f"| customer | {hub_id} | sap | mismatch | tax_id |" in table
    assert "sap owns customer" in table


def test_a_filter_matching_nothing_sends_nothing_and_says_so(drifted) -> None:
    resources, erp, erp_id, *_ = drifted
    result = _run(
        resources,
        _config(from_findings=True, opened_since="2999-01-01T00:00:00Z", dry_run=False),
    )
    assert result.success
    assert erp.rows[erp_id]["CustomerName"] == "Mangled"
    assert result.output_for_node("resync_records")["groups"] == []
    assert _metadata(result)["plan"].value == "Nothing to push."


def test_from_the_latest_reconciliation_takes_what_it_observed(drifted, setup) -> None:
    """Findings the last completed reconciliation did not observe (here: an older one
    still open elsewhere) are not taken."""
    engine = setup[3]
    resources, erp, erp_id, _, first = drifted
    with session_factory(engine).begin() as s:  # open, but not seen by the latest run
        s.add(
            Finding(
                id="older",
                entity="customer",
                key="CUS-OTHER",
                system="salesforce",
                kind="missing",
                severity="error",
                status="open",
            )
        )
    result = _run(resources, _config(from_latest_reconciliation=True))
    assert result.success
    output = result.output_for_node("resync_records")
    assert output["reconciliation_run"] == first
    assert [(g["entity"], g["systems"]) for g in output["groups"]] == [("customer", ["sap"])]
    assert _metadata(result)["reconciliation_run"].value == first
    assert erp.rows[erp_id]["CustomerName"] == "Mangled"  # a dry run, by default


def test_without_a_reconciliation_the_latest_one_is_refused_with_the_reason(synced) -> None:
    resources, *_ = synced
    result = _run(resources, _config(from_latest_reconciliation=True))
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "no reconciliation has completed yet" in str(failure.event_specific_data)


def test_plan_table_is_capped_with_the_total() -> None:
    report = ResyncReport(entity="customer", dry_run=True, planned={"sap": 250})
    report.plan = [
        {"system": "sap", "key": f"CUS-{i:04}", "payload": {"CustomerName": "x"}, "changes": []}
        for i in range(250)
    ]
    table = plan_markdown([("customer", report)], rows=200)
    assert table.startswith("200 of 250 planned push(es) shown")
    assert table.count("| customer | sap |") == 200


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"from_findings": True, "opened_since": "yesterday"}, "not an ISO 8601"),
        ({"from_findings": True, "opened_since": "2025-06-30T00:00:00"}, "no time zone"),
        ({"from_findings": True, "finding_kinds": ["orphan"]}, "not repaired by a resync"),
        ({"from_findings": True, "hub_ids": ["CUS-1"]}, "choose records one way"),
        ({"opened_since": "2025-06-30T00:00:00Z"}, "set from_findings: true"),
    ],
)
def test_finding_filters_are_validated(fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ResyncConfig(**fields)


def test_a_kind_outside_the_enum_is_refused_before_the_run(synced) -> None:
    """The Launchpad checks the kinds against the config schema (an enum) before launch."""
    resources, *_ = synced
    with pytest.raises(DagsterInvalidConfigError, match="orphan"):
        _run(resources, _config(from_findings=True, finding_kinds=["orphan"]))


def _store_rows(engine) -> dict:
    """Everything a resync could write in the hub store, to compare before and after."""
    with engine.connect() as conn:
        return {
            table: sorted(repr(tuple(row)) for row in conn.execute(sa.select(model)))
            for table, model in (
                ("golden", GoldenRecord),
                ("findings", Finding),
                ("fingerprints", Fingerprint),
                ("outbox", OutboxEntry),
            )
        }

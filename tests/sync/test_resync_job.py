"""The resync op job: typed Launchpad config (enums, ISO windows refused when naive), the
run fixes the chosen records and shows what it planned and pushed in its metadata."""

import pytest
from dagster import DagsterInstance, RunConfig
from dagster._core.errors import DagsterInvalidConfigError

from app.defs.resources import HubStoreResource
from app.defs.resync import ResyncConfig, parse_utc, resync_job
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
    config = RunConfig(ops={"resync_records": ResyncConfig(hub_ids=[hub_id], systems=["sap"])})
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
        ops={"resync_records": ResyncConfig(hub_ids=[hub_id, "CUS-NOPE"], systems=["sap"])}
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
    config = RunConfig(ops={"resync_records": ResyncConfig(hub_ids=[hub_id], systems=["sap"])})
    result = _run(resources, config)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    description = failure.event_specific_data.user_failure_data.description
    assert description.startswith("1 chosen record(s) were not delivered")
    assert f"sap {hub_id}: sap rejected customer {hub_id}: STRING_TOO_LONG" in description

"""Schedules and sensors evaluated with Dagster's context builders: the schedules' cron,
zone and tags come from the environment; the sensors launch each resync once (cursors and
run keys), wait for a system that is still down, and take only auto-fixable findings."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from dagster import (
    DagsterInstance,
    DefaultScheduleStatus,
    RunRequest,
    build_schedule_context,
    build_sensor_context,
    job,
    op,
)

from app.defs.resources import HubStoreResource
from connectors.base import Health
from hub.store import Finding, create_store_engine
from hub.store.db import session_factory
from hub.store.migrate import upgrade
from schedules import build_schedules
from schedules.sensors import resync_after_failed_sync, resync_auto_fixable_findings


def test_schedules_take_cron_zone_and_switch_from_the_environment() -> None:
    env = {
        "HUB_SYNC_CRON": "*/5 * * * *",
        "HUB_RECONCILE_CRON": "30 1 * * *",
        "HUB_RECONCILE_TIMEZONE": "Europe/Berlin",
    }
    sync, nightly = build_schedules(env)
    assert (sync.cron_schedule, sync.job_name) == ("*/5 * * * *", "sync_all")
    assert (nightly.cron_schedule, nightly.execution_timezone) == ("30 1 * * *", "Europe/Berlin")
    assert nightly.job_name == "reconcile"
    assert sync.default_status == DefaultScheduleStatus.STOPPED
    on = build_schedules({"HUB_SCHEDULES_DEFAULT_ON": "1"})
    assert all(s.default_status == DefaultScheduleStatus.RUNNING for s in on)


def test_schedule_ticks_carry_run_tags() -> None:
    sync, nightly = build_schedules({})
    when = datetime(2025, 6, 30, 2, 0, tzinfo=UTC)
    (request,) = sync.evaluate_tick(
        build_schedule_context(scheduled_execution_time=when)
    ).run_requests
    assert request.tags["hub/kind"] == "sync" and request.tags["hub/launched-by"] == "schedule"
    (request,) = nightly.evaluate_tick(
        build_schedule_context(scheduled_execution_time=when)
    ).run_requests
    assert request.tags["hub/kind"] == "reconcile"


class System:
    """A system resource whose connector answers health checks as told."""

    def __init__(self, name: str, up: bool = True, configured: bool = True) -> None:
        self.name, self.up, self.configured = name, up, configured

    def connector(self) -> "System":
        if not self.configured:
            raise ValueError(f"{self.name} is not configured")
        return self

    def health(self) -> Health:
        return Health(self.name, self.up)

    def close(self) -> None:
        pass


@op
def failing_extract() -> None:
    raise RuntimeError("503 from sap")


@job(tags={"hub/kind": "sync"})
def fake_sync() -> None:
    failing_extract()


def _systems(**down: bool) -> dict[str, System]:
    return {
        name: System(name, up=not down.get(name, False))
        for name in ("billing", "salesforce", "sap", "pim", "wms")
    }


def test_failed_sync_is_resynced_once_its_systems_answer() -> None:
    with DagsterInstance.ephemeral() as instance:
        result = fake_sync.execute_in_process(
            instance=instance, raise_on_error=False, tags={"hub/entity": "customer"}
        )
        assert not result.success
        # Salesforce still down: nothing launched, the cursor does not pass the failed run
        down = build_sensor_context(instance=instance, resources=_systems(salesforce=True))
        waiting = resync_after_failed_sync(down)
        assert not waiting.run_requests
        assert "waiting for salesforce" in waiting.skip_reason.skip_message
        assert waiting.cursor is None

        up = build_sensor_context(instance=instance, resources=_systems())
        launched = resync_after_failed_sync(up)
        (request,) = launched.run_requests
        assert isinstance(request, RunRequest)
        assert request.run_key == f"after-failed-sync:{result.run_id}:customer"
        config = request.run_config["ops"]["resync_records"]["config"]
        assert config["entity"] == "customer" and "direction" not in config  # owners re-read
        start = datetime.fromisoformat(config["window_start"])
        assert datetime.now(UTC) - start >= timedelta(minutes=15)
        assert request.tags["hub/failed-run"] == result.run_id

        # the next tick, from the saved cursor, launches nothing again
        again = build_sensor_context(
            instance=instance, cursor=launched.cursor, resources=_systems()
        )
        assert not resync_after_failed_sync(again).run_requests


@pytest.fixture
def store(tmp_path):
    url = f"sqlite:///{tmp_path / 'hub.sqlite'}"
    upgrade(url)
    return url


def _finding(s, fid: str, kind: str, key: str, system: str, seen: datetime) -> None:
    s.add(
        Finding(
            id=fid,
            entity="customer",
            key=key,
            system=system,
            kind=kind,
            field="legal_name" if kind == "mismatch" else None,
            severity="error",
            status="open",
            first_seen=seen,
            last_seen=seen,
        )
    )


def test_auto_fixable_findings_launch_one_resync_per_entity_and_system(store, monkeypatch) -> None:
    monkeypatch.delenv("HUB_AUTOFIX_KINDS", raising=False)
    t0 = datetime(2025, 6, 30, 2, 0, tzinfo=UTC)
    with session_factory(create_store_engine(store)).begin() as s:
        _finding(s, "f1", "mismatch", "CUS-1", "sap", t0)
        _finding(s, "f2", "missing", "CUS-2", "sap", t0)
        _finding(s, "f3", "missing", "CUS-3", "salesforce", t0)
        _finding(s, "f4", "orphan", "CUS-4", "sap", t0)  # needs a person
    resources = {"hub_store": HubStoreResource(database_url=store)}
    with DagsterInstance.ephemeral() as instance:
        first = resync_auto_fixable_findings(
            build_sensor_context(instance=instance, resources=resources)
        )
        by_system = {r.tags["hub/system"]: r for r in first.run_requests}
        assert set(by_system) == {"sap", "salesforce"}
        sap = by_system["sap"].run_config["ops"]["resync_records"]["config"]
        assert sap["hub_ids"] == ["CUS-1", "CUS-2"] and sap["systems"] == ["sap"]

        second = resync_auto_fixable_findings(
            build_sensor_context(instance=instance, cursor=first.cursor, resources=resources)
        )
        assert not second.run_requests

        with session_factory(create_store_engine(store)).begin() as s:
            _finding(s, "f5", "mismatch", "CUS-5", "sap", t0 + timedelta(days=1))
        third = resync_auto_fixable_findings(
            build_sensor_context(instance=instance, cursor=second.cursor, resources=resources)
        )
        (request,) = third.run_requests
        assert request.run_config["ops"]["resync_records"]["config"]["hub_ids"] == ["CUS-5"]
        assert json.dumps(request.run_key) != json.dumps(by_system["sap"].run_key)


def test_autofix_kinds_are_configurable(store, monkeypatch) -> None:
    monkeypatch.setenv("HUB_AUTOFIX_KINDS", "missing")
    with session_factory(create_store_engine(store)).begin() as s:
        _finding(s, "f1", "mismatch", "CUS-1", "sap", datetime(2025, 6, 30, tzinfo=UTC))
    resources = {"hub_store": HubStoreResource(database_url=store)}
    with DagsterInstance.ephemeral() as instance:
        result = resync_auto_fixable_findings(
            build_sensor_context(instance=instance, resources=resources)
        )
    assert not result.run_requests


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"HUB_SYNC_CRON": "every 5 minutes"}, "HUB_SYNC_CRON='every 5 minutes'"),
        ({"HUB_RECONCILE_TIMEZONE": "Mars/Base"}, "HUB_RECONCILE_TIMEZONE='Mars/Base'"),
        ({"HUB_SCHEDULES_DEFAULT_ON": "maybe"}, "HUB_SCHEDULES_DEFAULT_ON='maybe'"),
    ],
)
def test_a_schedule_setting_dagster_cannot_use_is_named(env: dict[str, str], named: str) -> None:
    """Dagster's own error named the schedule, not the variable; a misspelt switch was
    silently "off"."""
    from schedules.schedules import ScheduleSettingError

    with pytest.raises(ScheduleSettingError, match=named.replace("(", r"\(")):
        build_schedules(env)
    for off in ("", "0", "off", "No"):
        sync, _ = build_schedules({"HUB_SCHEDULES_DEFAULT_ON": off})
        assert sync.default_status == DefaultScheduleStatus.STOPPED


def test_a_misspelt_autofix_kind_is_refused_when_the_definitions_load(monkeypatch) -> None:
    """It matched no finding, so that drift was never repaired and nothing said why."""
    from schedules import build_sensors

    monkeypatch.setenv("HUB_AUTOFIX_KINDS", "missing,mismatc")
    with pytest.raises(
        ValueError, match=r"'mismatc' is not a finding kind \(did you mean 'mismatch'"
    ):
        build_sensors()
    monkeypatch.setenv("HUB_AUTOFIX_KINDS", "missing,conflict")
    assert len(build_sensors()) == 2


def test_the_findings_sensor_names_a_store_without_schema(tmp_path) -> None:
    """Its tick showed a page of SQL and traceback; now one line with the store and fix."""
    url = f"sqlite:///{tmp_path / 'never-migrated.sqlite'}"
    resources = {"hub_store": HubStoreResource(database_url=url)}
    said = r"has no schema .*: run `hub db upgrade`"
    with DagsterInstance.ephemeral() as instance, pytest.raises(RuntimeError, match=said) as e:
        resync_auto_fixable_findings(build_sensor_context(instance=instance, resources=resources))
    assert "never-migrated.sqlite" in str(e.value) and "SELECT" not in str(e.value)

"""The repo's dagster.yaml is what every home (dev, demo, tests) starts from."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance, job, op

from app import dagster_sqlite
from app.dagster_home import DAGSTER_YAML


def test_fresh_instance_shows_no_newsletter_modal(tmp_path: Path) -> None:
    # the modal's overlay swallowed a Launchpad click on a loaded CI machine
    shutil.copyfile(DAGSTER_YAML, tmp_path / "dagster.yaml")
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        assert instance.nux_enabled is False
        assert instance.telemetry_enabled is False


def _instance(home: Path, yaml: str | None = None) -> DagsterInstance:
    """The instance of the folder ``home``, opened by its path (the tests point
    $DAGSTER_HOME elsewhere: the storage must follow the folder, as Dagster's does)."""
    assert os.environ.get("DAGSTER_HOME") != str(home)
    if yaml is None:
        shutil.copyfile(DAGSTER_YAML, home / "dagster.yaml")
    else:
        (home / "dagster.yaml").write_text(yaml)
    return DagsterInstance.from_config(str(home))


def _run_a_job(instance: DagsterInstance) -> str:
    @op
    def hello() -> int:
        return 1

    @job
    def tiny() -> None:
        hello()

    result = tiny.execute_in_process(instance=instance)
    assert result.success
    return result.run_id


def test_runs_and_events_go_through_one_engine_per_database_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dagster's SQLite storage made a new SQLAlchemy engine for every statement, about a
    quarter of a small sync job's CPU: the repo's instance keeps one per file."""
    created: list[str] = []
    real = dagster_sqlite.create_engine

    def counting(url: str, **kwargs: Any) -> Any:
        created.append(url)
        return real(url, **kwargs)

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "elsewhere"))
    monkeypatch.setattr(dagster_sqlite, "create_engine", counting)
    dagster_sqlite.cached_engine.cache_clear()
    with _instance(tmp_path) as instance:
        assert isinstance(instance.event_log_storage, dagster_sqlite.CachedEngineEventLogStorage)
        assert isinstance(instance.run_storage, dagster_sqlite.CachedEngineRunStorage)
        assert isinstance(instance.schedule_storage, dagster_sqlite.CachedEngineScheduleStorage)
        before = len(created)
        run_id = _run_a_job(instance)
        events = instance.all_logs(run_id)
        assert len(events) > 10
        assert instance.get_run_by_id(run_id) is not None
    made = created[before:]
    assert len(made) == len(set(made)) <= 3, made  # the run's own shard, at most once each
    # the folder opened, not $DAGSTER_HOME
    assert all(f"{tmp_path}/" in url and "elsewhere" not in url for url in created), created


def test_an_instance_made_with_dagsters_default_storage_keeps_its_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same files as Dagster's default SQLite layout under $DAGSTER_HOME: a home
    created before keeps its runs and their events."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "elsewhere"))
    with _instance(tmp_path, yaml="telemetry:\n  enabled: false\n") as old:
        assert not isinstance(old.event_log_storage, dagster_sqlite.CachedEngineEventLogStorage)
        run_id = _run_a_job(old)
        count = len(old.all_logs(run_id))
    with _instance(tmp_path) as new:
        assert isinstance(new.event_log_storage, dagster_sqlite.CachedEngineEventLogStorage)
        assert new.get_run_by_id(run_id) is not None
        assert len(new.all_logs(run_id)) == count

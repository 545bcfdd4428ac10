"""The two schedules, configurable from the environment (cron, time zone, on/off) so an
operations team changes timing without a code change.

Both start STOPPED unless ``HUB_SCHEDULES_DEFAULT_ON=1``: a developer's ``dagster dev``
must not start syncing against whatever the environment points at; production turns them
on once (in the UI or with that variable)."""

import os
from collections.abc import Mapping

from dagster import DefaultScheduleStatus, ScheduleDefinition

SYNC_JOB = "sync_all"
RECONCILE_JOB = "reconcile"


def _status(env: Mapping[str, str]) -> DefaultScheduleStatus:
    on = env.get("HUB_SCHEDULES_DEFAULT_ON", "").lower() in ("1", "true", "yes", "on")
    return DefaultScheduleStatus.RUNNING if on else DefaultScheduleStatus.STOPPED


def incremental_sync_schedule(env: Mapping[str, str] | None = None) -> ScheduleDefinition:
    env = os.environ if env is None else env
    return ScheduleDefinition(
        name="incremental_sync",
        job_name=SYNC_JOB,
        cron_schedule=env.get("HUB_SYNC_CRON", "*/15 * * * *"),
        execution_timezone=env.get("HUB_SYNC_TIMEZONE", "UTC"),
        tags={"hub/kind": "sync", "hub/entity": "all", "hub/launched-by": "schedule"},
        default_status=_status(env),
        description="Incremental sync of every entity (HUB_SYNC_CRON, default every 15 min).",
    )


def nightly_reconciliation_schedule(env: Mapping[str, str] | None = None) -> ScheduleDefinition:
    env = os.environ if env is None else env
    return ScheduleDefinition(
        name="nightly_reconciliation",
        job_name=RECONCILE_JOB,
        cron_schedule=env.get("HUB_RECONCILE_CRON", "0 2 * * *"),
        execution_timezone=env.get("HUB_RECONCILE_TIMEZONE", "UTC"),
        tags={"hub/kind": "reconcile", "hub/launched-by": "schedule"},
        default_status=_status(env),
        description="Nightly reconciliation of every system against the golden records "
        "(HUB_RECONCILE_CRON / HUB_RECONCILE_TIMEZONE, default 02:00 UTC).",
    )


def build_schedules(
    env: Mapping[str, str] | None = None, *, reconcile: bool = True
) -> list[ScheduleDefinition]:
    schedules = [incremental_sync_schedule(env)]
    if reconcile:
        schedules.append(nightly_reconciliation_schedule(env))
    return schedules

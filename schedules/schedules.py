"""The two schedules, configurable from the environment (cron, time zone, on/off) so an
operations team changes timing without a code change.

Both start STOPPED unless ``HUB_SCHEDULES_DEFAULT_ON=1``: a developer's ``dagster dev``
must not start syncing against whatever the environment points at; production turns them
on once (in the UI or with that variable)."""

import os
from collections.abc import Mapping

from dagster import DagsterInvalidDefinitionError, DefaultScheduleStatus, ScheduleDefinition

SYNC_JOB = "sync_all"
RECONCILE_JOB = "reconcile"
_ON, _OFF = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


class ScheduleSettingError(ValueError):
    """A schedule setting in the environment Dagster cannot use: raised while the code
    location loads, naming the variable, its value and a valid one (Dagster's own error
    named the schedule only, and a misspelt switch silently meant "off")."""


def _status(env: Mapping[str, str]) -> DefaultScheduleStatus:
    raw = env.get("HUB_SCHEDULES_DEFAULT_ON", "")
    said = raw.strip().lower()
    if said in _ON:
        return DefaultScheduleStatus.RUNNING
    if said in _OFF:
        return DefaultScheduleStatus.STOPPED
    raise ScheduleSettingError(
        f"HUB_SCHEDULES_DEFAULT_ON={raw!r} is neither on ({', '.join(_ON)}) nor off "
        f"({', '.join(repr(v) for v in _OFF)}): the schedules' first status is unclear"
    )


def _schedule(
    env: Mapping[str, str],
    *,
    name: str,
    job_name: str,
    cron: tuple[str, str],
    zone: str,
    tags: dict[str, str],
    description: str,
) -> ScheduleDefinition:
    """A schedule whose cron expression is ``env[cron[0]]`` (default ``cron[1]``) in the
    time zone ``env[zone]`` (default UTC)."""
    expression, timezone = env.get(cron[0], cron[1]), env.get(zone, "UTC")
    try:
        return ScheduleDefinition(
            name=name,
            job_name=job_name,
            cron_schedule=expression,
            execution_timezone=timezone,
            tags=tags,
            default_status=_status(env),
            description=description,
        )
    except DagsterInvalidDefinitionError as exc:
        raise ScheduleSettingError(
            f"{cron[0]}={expression!r}, {zone}={timezone!r}: {str(exc).rstrip('.')}. Set "
            f"{cron[0]} to a 5-field cron expression (default {cron[1]!r}) and {zone} to "
            "an IANA time zone (e.g. 'UTC', 'Europe/Berlin')"
        ) from None


def incremental_sync_schedule(env: Mapping[str, str] | None = None) -> ScheduleDefinition:
    return _schedule(
        os.environ if env is None else env,
        name="incremental_sync",
        job_name=SYNC_JOB,
        cron=("HUB_SYNC_CRON", "*/15 * * * *"),
        zone="HUB_SYNC_TIMEZONE",
        tags={"hub/kind": "sync", "hub/entity": "all", "hub/launched-by": "schedule"},
        description="Incremental sync of every entity (HUB_SYNC_CRON, default every 15 min).",
    )


def nightly_reconciliation_schedule(env: Mapping[str, str] | None = None) -> ScheduleDefinition:
    return _schedule(
        os.environ if env is None else env,
        name="nightly_reconciliation",
        job_name=RECONCILE_JOB,
        cron=("HUB_RECONCILE_CRON", "0 2 * * *"),
        zone="HUB_RECONCILE_TIMEZONE",
        tags={"hub/kind": "reconcile", "hub/launched-by": "schedule"},
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

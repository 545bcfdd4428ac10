"""The Dagster code location (`dg dev` / `dagster dev` from the repo root load ``defs``).

Nothing here touches an external system or the store at import: Dagster re-imports code
locations often, so all work happens inside ops, assets, schedules and sensors."""

from dagster import Definitions

from hub.jobs import store_maintenance
from hub.quarantine_job import quarantine_retry_job
from hub.resources import SYSTEM_RESOURCES, HubStoreResource
from hub.resync_job import resync_job
from hub.sync_assets import build_sync_assets, build_sync_jobs
from schedules import build_schedules, build_sensors

defs = Definitions(
    assets=build_sync_assets(),
    jobs=[store_maintenance, resync_job, quarantine_retry_job, *build_sync_jobs()],
    # the nightly reconciliation schedule joins when the reconcile job is defined here
    schedules=build_schedules(reconcile=False),
    sensors=build_sensors(),
    resources={
        "hub_store": HubStoreResource(),
        **{system: resource() for system, resource in SYSTEM_RESOURCES.items()},
    },
)

"""The Dagster code location (`dg dev` / `dagster dev` from the repo root load ``defs``).

Nothing here touches an external system or the store at import: Dagster re-imports code
locations often, so all work happens inside ops, assets, schedules and sensors."""

from dagster import Definitions

from hub.analytics_dagster import analytics_definitions
from hub.jobs import store_maintenance
from hub.quarantine_job import quarantine_retry_job
from hub.recon_dagster import recon_definitions
from hub.resources import SYSTEM_RESOURCES, HubStoreResource
from hub.resync_job import resync_job
from hub.sync_assets import build_sync_assets, build_sync_jobs
from schedules import build_schedules, build_sensors

RESOURCES = {
    "hub_store": HubStoreResource(),
    **{system: resource() for system, resource in SYSTEM_RESOURCES.items()},
}

defs = Definitions.merge(
    Definitions(
        assets=build_sync_assets(),
        jobs=[store_maintenance, resync_job, quarantine_retry_job, *build_sync_jobs()],
        schedules=build_schedules(),
        sensors=build_sensors(),
        resources=RESOURCES,
    ),
    recon_definitions(resources=RESOURCES),
    analytics_definitions(with_resources=False),
)

"""The Dagster code location (`dg dev` / `dagster dev` from the repo root load ``defs``).

Nothing here touches an external system or the store at import: Dagster re-imports code
locations often, so all work happens inside ops, assets, schedules and sensors."""

from dagster import Definitions

from app.defs.analytics import analytics_definitions
from app.defs.backfill import build_backfill_assets
from app.defs.quarantine import quarantine_retry_job
from app.defs.recon import recon_definitions
from app.defs.resources import SYSTEM_RESOURCES, HubStoreResource
from app.defs.resync import resync_job
from app.defs.schedules import build_schedules, build_sensors
from app.defs.store import store_maintenance
from app.defs.sync import build_sync_assets, build_sync_jobs
from app.defs.sync_plan import sync_plan_job
from app.defs.systems_check import systems_check_job

RESOURCES = {
    "hub_store": HubStoreResource(),
    **{system: resource() for system, resource in SYSTEM_RESOURCES.items()},
}

defs = Definitions.merge(
    Definitions(
        assets=[*build_sync_assets(), *build_backfill_assets()],
        jobs=[
            store_maintenance,
            resync_job,
            sync_plan_job,
            systems_check_job,
            quarantine_retry_job,
            *build_sync_jobs(),
        ],
        schedules=build_schedules(),
        sensors=build_sensors(),
        resources=RESOURCES,
    ),
    recon_definitions(resources=RESOURCES),
    analytics_definitions(with_resources=False),
)

"""The Dagster code location (`dg dev` / `dagster dev` from the repo root load ``defs``).

Nothing here touches an external system or the store at import: Dagster re-imports code
locations often, so all work happens inside ops, assets, schedules and sensors."""

from __future__ import annotations

from dagster import Definitions

from hub.jobs import store_maintenance
from hub.resources import HubStoreResource

defs = Definitions(
    jobs=[store_maintenance],
    resources={"hub_store": HubStoreResource()},
)

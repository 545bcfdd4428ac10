"""Retrying quarantined records as a Dagster op job, so `hub quarantine retry` and the
Launchpad do the same thing and the run shows up in the UI with what it released."""

from dagster import Config, Failure, MetadataValue, OpExecutionContext, job, op
from pydantic import Field
from sqlalchemy import func, select

from app.choices import ALL, EntityChoice
from app.defs.failures import fails_fast
from app.defs.resources import SYSTEM_RESOURCES, HubStoreResource
from app.progress import step_reporter
from app.stop import stop_requested
from connectors.errors import AuthError, PermanentError
from hub.model import ENTITY_ORDER
from hub.store.models import QuarantineEntry
from hub.sync.engine import SyncEngine


class QuarantineRetryConfig(Config):
    entity: EntityChoice = Field(
        default=ALL, description="entity whose quarantined records to retry"
    )
    entry_ids: list[int] = Field(
        default=[], description="quarantine entry ids (hub quarantine list); empty = all open"
    )


def _open_count(engine: SyncEngine, entity: str) -> int:
    with engine.sessions() as s:
        return int(
            s.scalar(
                select(func.count()).where(
                    QuarantineEntry.entity == entity, QuarantineEntry.status == "open"
                )
            )
            or 0
        )


@op(
    description="Re-read (or re-process) quarantined inbound records and re-plan rejected "
    "pushes, then deliver what was released.",
    required_resource_keys={"hub_store", *SYSTEM_RESOURCES},
    tags={"hub/kind": "quarantine-retry"},
)
@fails_fast
def retry_quarantined(
    context: OpExecutionContext, config: QuarantineRetryConfig
) -> dict[str, dict[str, int]]:
    store: HubStoreResource = context.resources.hub_store
    connectors = {}
    for system in SYSTEM_RESOURCES:
        try:
            connectors[system] = getattr(context.resources, system).connector()
        except (ValueError, AuthError, PermanentError) as exc:
            context.log.info(f"{system} not configured, skipped: {exc}")
    engine = SyncEngine(
        store.engine(),
        connectors,
        should_stop=stop_requested,
        progress=step_reporter(context),
    )
    entities = ENTITY_ORDER if config.entity == ALL else (config.entity,)
    summary: dict[str, dict[str, int]] = {}
    try:
        for entity in entities:
            before = _open_count(engine, entity)
            ids = config.entry_ids or None
            retried = engine.retry_quarantine(entity, ids=ids)
            if not retried:
                continue
            for system in engine._push_order(entity, engine._systems(entity, None)):
                engine.push(system, entity)
            after = _open_count(engine, entity)
            summary[entity] = {"retried": retried, "released": before - after, "open": after}
    finally:
        for connector in connectors.values():
            connector.close()
    context.add_output_metadata({"summary": MetadataValue.json(summary)})
    if engine.errors:
        raise Failure(description="; ".join(engine.errors))
    return summary


@job(
    name="quarantine_retry",
    description="Give quarantined records another go after their source or mapping was fixed.",
    tags={"hub/kind": "quarantine-retry"},
)
def quarantine_retry_job() -> None:
    retry_quarantined()

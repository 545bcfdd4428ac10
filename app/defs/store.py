"""Dagster jobs of the hub. Later issues add sync, reconciliation and resync jobs here."""

from dagster import MetadataValue, OpExecutionContext, job, op
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.defs.resources import HubStoreResource
from hub.store import findings
from hub.store.migrate import head_revision, upgrade
from hub.store.models import GoldenRecord, OutboxEntry, QuarantineEntry


@op(description="Bring the hub store schema to the latest Alembic revision.")
def migrate_store(context: OpExecutionContext, hub_store: HubStoreResource) -> str:
    revision = upgrade(hub_store.url())
    context.add_output_metadata(
        {"revision": revision, "head": head_revision(), "store": hub_store.safe_url()}
    )
    return revision


@op(description="Count what the store holds, so the run page shows the store's state.")
def store_summary(
    context: OpExecutionContext, hub_store: HubStoreResource, revision: str
) -> dict[str, int]:
    engine = hub_store.engine()
    queries = {
        "golden_records": select(func.count()).select_from(GoldenRecord),
        "outbox_pending": select(func.count()).where(OutboxEntry.status == "pending"),
        "quarantine_open": select(func.count()).where(QuarantineEntry.status == "open"),
    }
    try:
        with Session(engine) as s:
            counts = {label: int(s.execute(q).scalar_one()) for label, q in queries.items()}
            counts["findings_open"] = findings.count_open(s)
    finally:
        engine.dispose()
    context.add_output_metadata(
        {"revision": revision, **{k: MetadataValue.int(v) for k, v in counts.items()}}
    )
    context.log.info(f"hub store at {revision}: {counts}")
    return counts


@job(description="Migrate the hub store and report what it holds.", tags={"hub/kind": "store"})
def store_maintenance() -> None:
    store_summary(migrate_store())

"""The sync as Dagster assets, so the UI shows the data flow per entity:

    <system>/<entity>_extract  ->  hub/<entity>_golden  ->  <system>/<entity>

An extract pulls a system's changes since its cursor and merges them into the golden
records; the golden asset retries quarantine and reports the entity's state; each pushed
copy delivers the outbox to one system. Each op runs in its system's concurrency pool (an
API budget shared by all runs) and holds the entity's store lock, so two syncs of one
entity never interleave. Built from mappings/ at load time (reading YAML only: nothing
here calls a system while Dagster loads definitions)."""

from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSelection,
    Backoff,
    Failure,
    Jitter,
    MaterializeResult,
    MetadataValue,
    RetryPolicy,
    asset,
    define_asset_job,
)
from sqlalchemy import func, select

from app.defs.failures import fails_fast
from app.defs.resources import HubStoreResource
from app.progress import step_reporter
from app.stop import stop_requested
from connectors.errors import AuthError, PermanentError
from hub.mapping.spec import MAPPINGS_DIR, MappingSpec, load_all
from hub.model import ENTITY_ORDER
from hub.store.models import GoldenRecord, OutboxEntry, QuarantineEntry
from hub.sync.engine import HUB, SyncEngine
from hub.sync.lock import store_lock

RETRY = RetryPolicy(max_retries=2, delay=10, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)


def _entity_systems(specs: Sequence[MappingSpec]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for spec in specs:
        out.setdefault(spec.entity, []).append(spec.system)
    return {entity: sorted(systems) for entity, systems in out.items()}


def extract_key(system: str, entity: str) -> AssetKey:
    return AssetKey([system, f"{entity}_extract"])


def golden_key(entity: str) -> AssetKey:
    return AssetKey([HUB, f"{entity}_golden"])


def pushed_key(system: str, entity: str) -> AssetKey:
    return AssetKey([system, entity])


def _engine(context: AssetExecutionContext, systems: Sequence[str]) -> SyncEngine:
    """Connectors for ``systems``; a configuration error fails the step at once (no
    retry can fix a missing URL or a refused credential)."""
    store: HubStoreResource = context.resources.hub_store
    try:
        connectors = {s: getattr(context.resources, s).connector() for s in systems}
    except (ValueError, AuthError, PermanentError) as exc:
        raise Failure(description=str(exc), allow_retries=False) from exc
    return SyncEngine(
        store.engine(),
        connectors,
        should_stop=stop_requested,
        progress=step_reporter(context),
    )


def _run_started(context: AssetExecutionContext) -> datetime | None:
    """When this run started: what its extract steps quarantined since then was judged in
    this pass already (retrying it again would count two attempts per run)."""
    record = context.instance.get_run_record_by_id(context.run_id)
    started = record.start_time if record is not None else None
    return datetime.fromtimestamp(started, UTC) if started else None


def _counts_metadata(engine: SyncEngine, system: str, entity: str) -> dict[str, Any]:
    counts = asdict(engine.counts[system][entity])
    golden = asdict(engine.counts[HUB][entity])
    meta: dict[str, Any] = {k: MetadataValue.int(v) for k, v in counts.items()}
    meta["golden_changes"] = MetadataValue.json(golden)
    held = engine.held.get((system, entity))
    if held:
        meta["held_for_a_person"] = MetadataValue.md(
            f"**{held} pushes held** by the blast-radius guard: this pass deleted more "
            f"{entity} records in {system} than it allows. Review them with `hub outbox "
            "held` and `hub tombstones list`; `hub outbox release` lets them out, `hub "
            "tombstones restore` undoes the deletes."
        )
    return meta


def _finish(
    context: AssetExecutionContext, engine: SyncEngine, system: str, entity: str
) -> MaterializeResult:
    for connector in engine.connectors.values():
        connector.close()
    if engine.errors:  # a refused credential or request: no retry can help
        raise Failure(description="; ".join(engine.errors), allow_retries=engine.retryable)
    context.log.info(f"{system} {entity}: {asdict(engine.counts[system][entity])}")
    return MaterializeResult(metadata=_counts_metadata(engine, system, entity))


def _extract_asset(system: str, entity: str, upstream: list[AssetKey]) -> AssetsDefinition:
    @asset(
        key=extract_key(system, entity),
        deps=upstream,
        group_name=f"sync_{entity}",
        pool=f"{system}_api",
        retry_policy=RETRY,
        required_resource_keys={"hub_store", system},
        tags={"hub/system": system, "hub/entity": entity},
        description=f"Changes of {entity} records read from {system} since its cursor, "
        f"mapped, validated (bad records to quarantine) and merged into the golden record.",
    )
    @fails_fast
    def _extract(context: AssetExecutionContext) -> MaterializeResult:
        engine = _engine(context, [system])
        with store_lock(engine.engine, f"sync:{entity}"):
            engine.pull(system, entity)
            engine.pull_deletions(system, entity)
        return _finish(context, engine, system, entity)

    return _extract


def _golden_asset(entity: str, systems: list[str], upstream: list[AssetKey]) -> AssetsDefinition:
    @asset(
        key=golden_key(entity),
        deps=[extract_key(s, entity) for s in systems] + upstream,
        group_name=f"sync_{entity}",
        required_resource_keys={"hub_store", *systems},
        tags={"hub/entity": entity},
        description=f"The golden {entity} records: the hub's single source of truth, "
        f"assembled field by field from the owning systems.",
    )
    @fails_fast
    def _golden(context: AssetExecutionContext) -> MaterializeResult:
        engine = _engine(context, systems)
        with store_lock(engine.engine, f"sync:{entity}"):
            retried = engine.retry_quarantine(entity, seen_before=_run_started(context))
            if entity == "allocation":  # deliveries follow the subscriptions that changed
                engine.plan_deliveries()
        for connector in engine.connectors.values():
            connector.close()
        if engine.errors:
            raise Failure(description="; ".join(engine.errors))
        with engine.sessions() as s:
            records = s.scalar(select(func.count()).where(GoldenRecord.entity == entity))
            quarantined = s.scalar(
                select(func.count()).where(
                    QuarantineEntry.entity == entity, QuarantineEntry.status == "open"
                )
            )
            pending = s.scalar(
                select(func.count()).where(
                    OutboxEntry.entity == entity, OutboxEntry.status == "pending"
                )
            )
        return MaterializeResult(
            metadata={
                "records": MetadataValue.int(records or 0),
                "quarantine_open": MetadataValue.int(quarantined or 0),
                "quarantine_retried": MetadataValue.int(retried),
                "pushes_pending": MetadataValue.int(pending or 0),
                "golden_changes": MetadataValue.json(asdict(engine.counts[HUB][entity])),
            }
        )

    return _golden


def _push_asset(system: str, entity: str, carries: list[str]) -> AssetsDefinition:
    """``carries``: systems whose ids this system stores (e.g. the SAP customer number on
    the Salesforce account): their pushes run first, so the ids arrive in the same run."""

    @asset(
        key=pushed_key(system, entity),
        deps=[golden_key(entity), *(pushed_key(other, entity) for other in carries)],
        group_name=f"sync_{entity}",
        pool=f"{system}_api",
        retry_policy=RETRY,
        required_resource_keys={"hub_store", system},
        tags={"hub/system": system, "hub/entity": entity},
        description=f"{system}'s copy of the {entity} records: pending pushes delivered in "
        f"bulk (upsert by external id), external ids recorded.",
    )
    @fails_fast
    def _push(context: AssetExecutionContext) -> MaterializeResult:
        engine = _engine(context, [system])
        with store_lock(engine.engine, f"sync:{entity}"):
            engine.push(system, entity)
        return _finish(context, engine, system, entity)

    return _push


def build_sync_assets(specs: Sequence[MappingSpec] | None = None) -> list[AssetsDefinition]:
    if specs is None:
        specs, _ = load_all(MAPPINGS_DIR)
    by_entity = _entity_systems(specs)

    def specs_of(entity: str) -> dict[str, MappingSpec]:
        return {spec.system: spec for spec in specs if spec.entity == entity}

    assets: list[AssetsDefinition] = []
    previous: list[AssetKey] = []
    for entity in ENTITY_ORDER:
        systems = by_entity.get(entity)
        if not systems:
            continue
        creators = [s for s in systems if specs_of(entity)[s].creates]
        assets += [
            # non-creating systems are read after the creators, so a record they hold
            # under a hub id the creators just brought in is not taken for an orphan
            _extract_asset(
                s,
                entity,
                previous + ([] if s in creators else [extract_key(c, entity) for c in creators]),
            )
            for s in systems
        ]
        assets.append(_golden_asset(entity, systems, []))
        specs_by_system = specs_of(entity)
        assets += [
            _push_asset(
                s,
                entity,
                sorted(
                    {
                        f.split(".", 1)[1]
                        for f in specs_by_system[s].fields
                        if f.startswith("external_ids.")
                    }
                    & set(systems) - {s}
                ),
            )
            for s in systems
        ]
        previous = [pushed_key(s, entity) for s in systems]
    return assets


def sync_asset_keys(entity: str | None, systems: Sequence[str]) -> list[AssetKey]:
    """The assets a sync limited to ``systems`` runs: their extracts and pushes, and the
    golden records in between."""
    specs, _ = load_all(MAPPINGS_DIR)
    keys: list[AssetKey] = []
    for ent, available in _entity_systems(specs).items():
        if entity is not None and ent != entity:
            continue
        chosen = [s for s in available if s in systems]
        if chosen:
            keys += [extract_key(s, ent) for s in chosen] + [golden_key(ent)]
            keys += [pushed_key(s, ent) for s in chosen]
    return keys


def build_sync_jobs(specs: Sequence[MappingSpec] | None = None) -> list[Any]:
    if specs is None:
        specs, _ = load_all(MAPPINGS_DIR)
    entities = [e for e in ENTITY_ORDER if e in _entity_systems(specs)]
    jobs = [
        define_asset_job(
            f"sync_{entity}",
            selection=AssetSelection.groups(f"sync_{entity}"),
            tags={"hub/sync-scope": entity, "hub/entity": entity, "hub/kind": "sync"},
            description=f"Incremental sync of {entity} records across every system.",
        )
        for entity in entities
    ]
    jobs.append(
        define_asset_job(
            "sync_all",
            selection=AssetSelection.groups(*[f"sync_{e}" for e in entities]),
            tags={"hub/sync-scope": "all", "hub/kind": "sync"},
            description="Incremental sync of every entity, parents before children.",
        )
    )
    return jobs

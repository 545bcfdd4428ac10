"""The initial load (or a full re-pull after an incident) as a Dagster backfill of
change-time partitions (hub/sync/backfill.py), per entity, parents before children:

    hub/<entity>_backfill_creators [N partitions]
        -> hub/<entity>_backfill_settle  (after every creators partition: quarantine retried)
        -> hub/<entity>_backfill_others [N partitions]
        -> hub/<entity>_backfill  (cursors set, plans, pushes: one ordinary pass)
        -> hub/<next entity>_backfill_creators ...

An operator launches it from the UI: the asset group ``backfill``, "Materialize all",
every partition. Dagster's asset backfill runs each partition as its own run (at once, as
far as the run queue and the ``hub/kind: backfill`` tag limit allow) and an entity's
unpartitioned step after all its partitions. ``N`` is ``HUB_BACKFILL_PARTITIONS``
(default 4), read when the definitions load. Locally the runs use the default run
launcher and multiprocess executor; in production the same definitions run on the
Kubernetes or Celery executors (docs/dagster-production.yaml, docs/operations.md)."""

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from dagster import (
    AllPartitionMapping,
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    Failure,
    MaterializeResult,
    StaticPartitionsDefinition,
    asset,
)

from app.defs.resources import HubStoreResource, connectors_from
from hub.mapping.spec import MAPPINGS_DIR, MappingSpec, load_all
from hub.model import ENTITY_ORDER
from hub.sync import backfill
from hub.sync.engine import HUB, SyncEngine

PARTITIONS_VARIABLE = "HUB_BACKFILL_PARTITIONS"
GROUP = "backfill"


def partition_count() -> int:
    raw = os.environ.get(PARTITIONS_VARIABLE, "").strip() or "4"
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if not 1 <= n <= 64:
        raise ValueError(f"{PARTITIONS_VARIABLE}={raw!r}: give a whole number from 1 to 64")
    return n


def partition_keys(n: int) -> list[str]:
    return [f"{i}-of-{n}" for i in range(1, n + 1)]


def partition_index(key: str) -> int:
    return int(key.split("-of-", 1)[0]) - 1


def phase_key(entity: str, phase: str) -> AssetKey:
    return AssetKey([HUB, f"{entity}_backfill_{phase}"])


def finish_key(entity: str) -> AssetKey:
    return AssetKey([HUB, f"{entity}_backfill"])


@contextmanager
def _engine(context: AssetExecutionContext, systems: Sequence[str]) -> Iterator[SyncEngine]:
    """A sync engine on the run's hub store and connectors, closed after the step; a
    backfill that refuses (hub.sync.backfill.BackfillRefused) fails the step with why."""
    store: HubStoreResource = context.resources.hub_store
    engine = SyncEngine(
        store.engine(), connectors_from(context.resources, list(systems), context.log)
    )
    try:
        yield engine
    except backfill.BackfillRefused as exc:
        raise Failure(description=str(exc)) from exc
    finally:
        for connector in engine.connectors.values():
            connector.close()


def _current(engine: SyncEngine, entity: str) -> backfill.BackfillState:
    state = backfill.current(engine, entity)
    if state is None:
        raise Failure(description=f"no backfill of {entity} is in progress")
    return state


def _phase_asset(
    entity: str, phase: backfill.Phase, systems: list[str], parts: StaticPartitionsDefinition
) -> AssetsDefinition:
    n = len(parts.get_partition_keys())
    if phase == "creators":
        previous = ENTITY_ORDER[: ENTITY_ORDER.index(entity)]
        deps = [AssetDep(finish_key(previous[-1]))] if previous else []
    else:
        deps = [AssetDep(phase_key(entity, "settle"))]

    @asset(
        key=phase_key(entity, phase),
        deps=deps,
        partitions_def=parts,
        group_name=GROUP,
        required_resource_keys={"hub_store", *systems},
        tags={"hub/kind": "backfill", "hub/entity": entity},
        description=f"Backfill of {entity} records, {phase} phase: every "
        + ("system that creates records" if phase == "creators" else "other system")
        + " read over this partition's change-time window and merged into the golden records.",
    )
    def _partition(context: AssetExecutionContext) -> MaterializeResult:
        with _engine(context, systems) as engine:
            state = backfill.begin(engine, entity, n)
            index = partition_index(context.partition_key)
            result = backfill.run_partition(engine, state, index, phase)
        window = state.window(index)
        return MaterializeResult(
            metadata={
                "read": result.read,
                "batches": result.batches,
                "conflicts retried": result.retries,
                "window": f"[{window.start or '-'}, {window.end or '-'})",
            }
        )

    return _partition


def _settle_asset(entity: str, systems: list[str]) -> AssetsDefinition:
    @asset(
        key=phase_key(entity, "settle"),
        deps=[AssetDep(phase_key(entity, "creators"), partition_mapping=AllPartitionMapping())],
        group_name=GROUP,
        required_resource_keys={"hub_store", *systems},
        tags={"hub/kind": "backfill", "hub/entity": entity},
        description=f"After every creators partition of the {entity} backfill: its quarantine "
        "retried once (a record whose parent another partition was still loading), before "
        "the other systems are read.",
    )
    def _settle(context: AssetExecutionContext) -> MaterializeResult:
        with _engine(context, systems) as engine:
            retried = backfill.settle(engine, _current(engine, entity))
        return MaterializeResult(metadata={"quarantine retried": retried})

    return _settle


def _finish_asset(entity: str, systems: list[str]) -> AssetsDefinition:
    @asset(
        key=finish_key(entity),
        deps=[AssetDep(phase_key(entity, "others"), partition_mapping=AllPartitionMapping())],
        group_name=GROUP,
        required_resource_keys={"hub_store", *systems},
        tags={"hub/kind": "backfill", "hub/entity": entity},
        description=f"After every backfill partition of {entity}: each system's polling cursor "
        "set at the backfill's start (never back), then one ordinary sync pass of the entity "
        "(plans, pushes, quarantine retry, changes made during the backfill).",
    )
    def _finish(context: AssetExecutionContext) -> MaterializeResult:
        with _engine(context, systems) as engine:
            state = _current(engine, entity)
            report = backfill.finish(engine, state)
        hub = report.get(HUB, {}).get(entity, {})
        meta: dict[str, Any] = {f"golden {k}": v for k, v in hub.items() if v}
        meta["started"] = state.started.isoformat()
        return MaterializeResult(metadata=meta)

    return _finish


def build_backfill_assets(
    specs: Sequence[MappingSpec] | None = None, partitions: int | None = None
) -> list[AssetsDefinition]:
    if specs is None:
        specs, _ = load_all(MAPPINGS_DIR)
    n = partitions or partition_count()
    parts = StaticPartitionsDefinition(partition_keys(n))
    by_entity: dict[str, list[str]] = {}
    for spec in specs:
        by_entity.setdefault(spec.entity, []).append(spec.system)
    out: list[AssetsDefinition] = []
    for entity in ENTITY_ORDER:
        systems = sorted(by_entity.get(entity, []))
        if not systems:
            continue
        out.append(_phase_asset(entity, "creators", systems, parts))
        out.append(_settle_asset(entity, systems))
        out.append(_phase_asset(entity, "others", systems, parts))
        out.append(_finish_asset(entity, systems))
    return out

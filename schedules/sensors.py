"""Sensors that launch resyncs, each with a cursor so nothing is launched twice (and run
keys, which Dagster dedupes even if a cursor is reset).

* ``resync_after_failed_sync``: a sync run failed (an outage, a revoked token...). Once
  every system of the entities it covered answers its health check again, resync the
  golden records changed in the window the run covered, so what it failed to deliver is
  delivered. While a system is still down the cursor stays put and the tick says whom it
  is waiting for.
* ``resync_auto_fixable_findings``: reconciliation opened findings of a kind marked
  auto-fixable (``HUB_AUTOFIX_KINDS``, default ``missing,mismatch``): re-read the owners
  and push the golden record to the drifted system, one run per entity and system. Drift
  on a field's owner and conflicts are never pushed (hub.sync.triage): they are logged as
  needing a person.
"""

import hashlib
import json
import os
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from dagster import (
    DagsterRunStatus,
    RunRequest,
    RunsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)
from sqlalchemy.exc import SQLAlchemyError

from app.defs.resources import SYSTEM_RESOURCES, HubStoreResource
from hub.mapping.spec import MAPPINGS_DIR, closest, load_all, load_specs
from hub.model import ENTITY_ORDER
from hub.store import findings as finding_store
from hub.store.db import session_factory, store_problem
from hub.store.findings import FINDING_KINDS
from hub.store.models import Finding
from hub.sync.triage import triage

RESYNC_JOB = "resync"
#: the failed run's window starts this much before it, for changes it read late
LOOKBACK = timedelta(minutes=15)
DEFAULT_AUTOFIX = "missing,mismatch"


def _entity_systems() -> dict[str, list[str]]:
    specs, _ = load_all(MAPPINGS_DIR)
    out: dict[str, set[str]] = defaultdict(set)
    for spec in specs:
        out[spec.entity].add(spec.system)
    return {entity: sorted(systems) for entity, systems in out.items()}


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _unhealthy(resources: dict[str, Any], systems: list[str]) -> list[str]:
    """Systems among ``systems`` that are configured but do not answer (unconfigured
    ones are not part of the sync, so they are not waited for)."""
    down = []
    for system in systems:
        try:
            connector = resources[system].connector()
        except ValueError:
            continue
        try:
            if not connector.health().ok:
                down.append(system)
        except Exception:  # a health check that raises is a system that does not answer
            down.append(system)
        finally:
            connector.close()
    return down


@sensor(
    name="resync_after_failed_sync",
    job_name=RESYNC_JOB,
    minimum_interval_seconds=60,
    required_resource_keys=set(SYSTEM_RESOURCES),
    description="After a failed sync run, once its systems answer again, resync the "
    "window the run covered.",
)
def resync_after_failed_sync(
    context: SensorEvaluationContext, **resources: Any
) -> SensorResult | SkipReason:
    state = json.loads(context.cursor) if context.cursor else {}
    after = state.get("after")
    records = context.instance.get_run_records(
        filters=RunsFilter(
            statuses=[DagsterRunStatus.FAILURE],
            tags={"hub/kind": "sync"},
            updated_after=datetime.fromtimestamp(after, UTC) if after else None,
        ),
        order_by="update_timestamp",
        ascending=True,
        limit=50,
    )
    by_entity = _entity_systems()
    requests: list[RunRequest] = []
    waiting: str | None = None
    for record in records:
        run = record.dagster_run
        scope = run.tags.get("hub/entity") or run.tags.get("hub/sync-scope") or "all"
        entities = [e for e in ENTITY_ORDER if e in by_entity and scope in ("all", e)]
        systems = sorted({s for e in entities for s in by_entity[e]})
        down = _unhealthy(resources, systems)
        if down:
            waiting = f"sync run {run.run_id} failed; waiting for {', '.join(down)} to answer"
            break
        start = datetime.fromtimestamp(
            record.start_time or record.create_timestamp.timestamp(), UTC
        )
        end = datetime.fromtimestamp(record.end_time, UTC) if record.end_time else datetime.now(UTC)
        for entity in entities:
            requests.append(
                RunRequest(
                    run_key=f"after-failed-sync:{run.run_id}:{entity}",
                    run_config={
                        "ops": {
                            "resync_records": {
                                "config": {
                                    "entity": entity,
                                    "window_start": _iso(start - LOOKBACK),
                                    "window_end": _iso(end + timedelta(minutes=1)),
                                    # the job's config defaults to a dry run: this repairs
                                    "dry_run": False,
                                }
                            }
                        }
                    },
                    tags={
                        "hub/kind": "resync",
                        "hub/entity": entity,
                        "hub/trigger": "failed-sync",
                        "hub/failed-run": run.run_id,
                    },
                )
            )
        after = record.update_timestamp.timestamp()
    cursor = json.dumps({"after": after}) if after else context.cursor
    if not requests:
        return SensorResult(
            skip_reason=SkipReason(waiting or "no failed sync runs to recover"), cursor=cursor
        )
    return SensorResult(run_requests=requests, cursor=cursor)


def autofix_kinds() -> list[str]:
    """The finding kinds the sensor resyncs on its own (``HUB_AUTOFIX_KINDS``). A kind no
    reconciliation produces is refused, naming the closest: a misspelt kind silently
    matched no finding, and that drift was never repaired."""
    raw = os.environ.get("HUB_AUTOFIX_KINDS", DEFAULT_AUTOFIX)
    kinds = [k.strip() for k in raw.split(",") if k.strip()]
    for kind in kinds:
        if kind not in FINDING_KINDS:
            raise ValueError(
                f"HUB_AUTOFIX_KINDS={raw!r}: {kind!r} is not a finding kind"
                f"{closest(kind, FINDING_KINDS)}; choose from {', '.join(FINDING_KINDS)}"
            )
    return kinds


def _open_findings(hub_store: HubStoreResource, since: str | None) -> Iterator[Finding]:
    """The open auto-fixable findings first seen after ``since``. A store that cannot be
    used fails the tick with one line naming the store and the fix (the tick showed a
    page of SQL and traceback)."""
    engine = hub_store.engine()
    try:
        with session_factory(engine)() as s:
            yield from finding_store.list_findings(
                s,
                status="open",
                kinds=autofix_kinds(),
                first_seen_after=datetime.fromisoformat(since) if since else None,
                order="first_seen",
            )
    except SQLAlchemyError as exc:
        problem = store_problem(exc, hub_store.url())
        if problem is None:
            raise
        raise RuntimeError(problem) from None
    finally:
        engine.dispose()


@sensor(
    name="resync_auto_fixable_findings",
    job_name=RESYNC_JOB,
    minimum_interval_seconds=300,
    description="When reconciliation opens findings of an auto-fixable kind "
    "(HUB_AUTOFIX_KINDS), re-read their owners and push the golden record to the drifted "
    "system.",
)
def resync_auto_fixable_findings(
    context: SensorEvaluationContext, hub_store: HubStoreResource
) -> SensorResult:
    groups: dict[tuple[str, str], dict[str, Any]] = defaultdict(lambda: {"keys": set(), "ids": []})
    newest = context.cursor
    found = list(_open_findings(hub_store, context.cursor))
    if found:
        newest = found[-1].first_seen.isoformat()
    fixable, held = triage(found, load_specs(MAPPINGS_DIR))
    for item in held:  # conflicts and drift on a field's owner: never pushed
        context.log.info(f"not auto-fixed, needs a person: {item.finding_id}: {item.reason}")
    for finding in fixable:
        group = groups[(finding.entity, finding.system)]
        group["keys"].add(finding.key)
        group["ids"].append(finding.id)
    requests = []
    for (entity, system), group in sorted(groups.items()):
        digest = hashlib.sha256("\n".join(sorted(group["ids"])).encode()).hexdigest()[:16]
        requests.append(
            RunRequest(
                run_key=f"autofix:{entity}:{system}:{digest}",
                run_config={
                    "ops": {
                        "resync_records": {
                            "config": {
                                "entity": entity,
                                "hub_ids": sorted(group["keys"]),
                                "systems": [system],
                                # the job's config defaults to a dry run: this repairs
                                "dry_run": False,
                            }
                        }
                    }
                },
                tags={
                    "hub/kind": "resync",
                    "hub/entity": entity,
                    "hub/system": system,
                    "hub/trigger": "findings",
                    "hub/findings": str(len(group["ids"])),
                },
            )
        )
    if not requests:
        return SensorResult(skip_reason=SkipReason("no new auto-fixable findings"), cursor=newest)
    return SensorResult(run_requests=requests, cursor=newest)


def build_sensors() -> list[SensorDefinition]:
    autofix_kinds()  # a bad HUB_AUTOFIX_KINDS stops the code location loading, named
    return [resync_after_failed_sync, resync_auto_fixable_findings]

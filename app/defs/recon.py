"""Reconciliation on Dagster: the ``reconcile`` job, drift checks on the golden assets, and
the drift report.

    hub/reconciliation  ->  checks "drift" on hub/<entity>_golden
                        ->  hub/drift_report

- ``hub/reconciliation`` (asset, Launchpad config: entity and system as enums with
  concrete defaults) stages every configured system through its mapping, compares with
  the golden records, runs the aggregate and reference checks and persists the findings
  (``hub.recon.run.reconcile``) under the Dagster run id, so ``hub reconcile --json`` can
  list exactly what this run saw. A system whose connector is not configured is skipped
  with the reason in the metadata.
- ``drift`` asset checks on ``hub/<entity>_golden`` read the open findings of the entity
  from the store: ERROR when any is an error (money, missing/orphan records, broken
  references, aggregates), WARN when only cosmetic drift (case, whitespace, clock) is
  open. Metadata: counts and a capped Markdown table of the top findings; the full list
  lives in the store (``hub findings``), never in run metadata; the last completed
  reconciliation (run id, time, what it observed by system and kind) in metadata and
  description. They also run after a sync materialises a golden asset, showing the
  latest known drift.
- ``drift_after_failed_sync`` (run-failure sensor, on by default): a sync run that fails
  before its golden asset skips the drift check it planned, and Dagster shows that check
  as "Execution failed" with no metadata, hiding the drift. The sensor records the check
  again (a runless evaluation) from the store, saying which sync run failed.
- ``hub/drift_report``: open findings by entity, system, kind and severity, money at stake
  per currency, and the trend over the last runs (from ``reconciliation_runs``).

Nothing here reads a system or the store while definitions load. No ``from __future__
import annotations``: Dagster inspects the annotations of Config classes and ops.
"""

from collections.abc import Mapping, Sequence
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckExecutionContext,
    AssetCheckKey,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSelection,
    Config,
    DefaultSensorStatus,
    Definitions,
    Failure,
    MaterializeResult,
    MetadataValue,
    RunFailureSensorContext,
    SensorDefinition,
    SkipReason,
    asset,
    asset_check,
    define_asset_job,
    run_failure_sensor,
)
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from pydantic import Field
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.choices import ALL, EntityChoice, SystemChoice
from app.defs.failures import fails_fast
from app.defs.resources import SYSTEM_RESOURCES, HubStoreResource
from app.defs.sync import golden_key
from connectors.base import Connector
from hub.mapping.spec import MAPPINGS_DIR, SYSTEMS, MappingSpec, load_all, load_specs
from hub.mapping.transforms import load_code_lists
from hub.model import ENTITY_ORDER
from hub.recon.run import reconcile
from hub.store import findings as finding_store
from hub.store.models import Finding

RECONCILIATION_KEY = AssetKey(["hub", "reconciliation"])
DRIFT_REPORT_KEY = AssetKey(["hub", "drift_report"])
RECONCILE_OP = "hub__reconciliation"
GROUP = "reconciliation"
#: Rows of the Markdown tables in metadata (large metadata breaks the UI's transport).
TOP_N = 20
HISTORY_RUNS = 10


class ReconcileConfig(Config):
    """What one reconciliation covers (``all``: every mapped entity / configured system)."""

    entity: EntityChoice = Field(default=ALL, description="one entity, or all")
    system: SystemChoice = Field(default=ALL, description="one system, or all configured")


def _specs(specs: Sequence[MappingSpec] | None) -> list[MappingSpec]:
    if specs is not None:
        return list(specs)
    return load_specs(MAPPINGS_DIR)


def connectors_for(
    resources: Any, systems: Sequence[str]
) -> tuple[dict[str, Connector], dict[str, str]]:
    """Connectors of the configured ``systems``; the others with why they were skipped
    (no environment, or no connector module yet)."""
    built: dict[str, Connector] = {}
    skipped: dict[str, str] = {}
    for system in systems:
        try:
            built[system] = getattr(resources, system).connector()
        except (ValueError, ImportError) as exc:
            skipped[system] = str(exc)
    return built, skipped


def _reconciliation_asset(
    specs: Sequence[MappingSpec] | None,
    code_lists: Mapping[str, Mapping[str, str]] | None,
) -> AssetsDefinition:
    @asset(
        key=RECONCILIATION_KEY,
        group_name=GROUP,
        required_resource_keys={"hub_store", *SYSTEMS},
        tags={"hub/kind": "reconcile"},
        description="Every configured system's snapshot, mapped to canonical form and "
        "compared with the golden records in DuckDB; findings persisted in the hub store "
        "(stable ids, first/last seen, auto-resolved when gone).",
    )
    @fails_fast
    def _reconciliation(
        context: AssetExecutionContext, config: ReconcileConfig
    ) -> MaterializeResult:
        chosen_specs = _specs(specs)
        lists = code_lists if code_lists is not None else load_code_lists(MAPPINGS_DIR)
        mapped_systems = sorted({s.system for s in chosen_specs})
        wanted = mapped_systems if config.system == ALL else [config.system]
        if config.system != ALL and config.system not in mapped_systems:
            raise Failure(f"{config.system} has no mapping in mappings/", allow_retries=False)
        connectors, skipped = connectors_for(context.resources, wanted)
        for system, reason in skipped.items():
            context.log.warning(f"{system} skipped: {reason}")
        if config.system != ALL and not connectors:
            raise Failure(f"{config.system} is not configured: {skipped[config.system]}")
        store: HubStoreResource = context.resources.hub_store
        engine = store.engine()
        try:
            result = reconcile(
                engine,
                connectors,
                chosen_specs,
                lists,
                entities=None if config.entity == ALL else [config.entity],
                skipped=skipped,
                run_id=context.run_id,
                progress=context.log.info,
            )
        finally:
            for connector in connectors.values():
                connector.close()
            engine.dispose()
        summary = result.summary()
        context.log.info(
            f"reconciled {result.entities} in {result.systems}: {summary['findings']} "
            f"finding(s), {summary['new']} new, {summary['resolved']} resolved"
        )
        return MaterializeResult(
            metadata={
                "findings": MetadataValue.int(summary["findings"]),
                "new": MetadataValue.int(summary["new"]),
                "reopened": MetadataValue.int(summary["reopened"]),
                "resolved": MetadataValue.int(summary["resolved"]),
                "systems": MetadataValue.json(result.systems),
                "entities": MetadataValue.json(result.entities),
                "skipped": MetadataValue.json(skipped),
                "staged": MetadataValue.json(result.staged),
                "by_entity": MetadataValue.json(summary["by_entity"]),
                "by_system": MetadataValue.json(summary["by_system"]),
                "by_kind": MetadataValue.json(summary["by_kind"]),
                "by_severity": MetadataValue.json(summary["by_severity"]),
                "amount_at_stake_minor": MetadataValue.json(summary["amount_at_stake_minor"]),
                "recon_run_id": MetadataValue.text(result.run_id),
            }
        )

    return _reconciliation


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")[:60]


def findings_table(rows: Sequence[Finding]) -> str:
    """A Markdown table of findings (capped by the caller)."""
    head = "| severity | key | system | kind | field | expected | actual | at stake |"
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for f in rows:
        stake = "" if f.amount_at_stake_minor is None else f"{f.amount_at_stake_minor} {f.currency}"
        cells = (f.severity, f.key, f.system, f.kind, f.field, f.expected, f.actual, stake)
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def entity_drift(engine: Engine, entity: str) -> tuple[dict[str, Any], list[Finding]]:
    """Open findings of ``entity``: counts and the top ``TOP_N`` (errors first, then the
    most money at stake, then the most recent)."""
    with Session(engine) as s:
        counts: dict[str, Any] = {
            f"by_{col}": finding_store.open_counts_by(s, col, entity=entity)
            for col in ("system", "kind", "severity")
        }
        counts["amount_at_stake_minor"] = finding_store.open_amount_at_stake(s, entity=entity)
        counts["open"] = sum(counts["by_severity"].values())
        top = finding_store.top_open(s, entity, TOP_N)
        s.expunge_all()
    return counts, top


def last_reconciliation(engine: Engine, entity: str) -> dict[str, Any] | None:
    """The last completed reconciliation that covered ``entity``: its run id, when it
    finished, and the findings of the entity it observed by system and by kind."""
    with Session(engine) as s:
        run = finding_store.latest_completed_run(s, entity)
        if run is None:
            return None
        by = {
            f"by_{col}": finding_store.observed_counts_by(s, run.id, col, entity=entity)
            for col in ("system", "kind")
        }
        return {
            "run_id": run.id,
            "started_at": run.started_at.isoformat(),
            "finished_at": run.finished_at.isoformat() if run.finished_at else None,
            "entity": entity,
            "observed": sum(by["by_system"].values()),
            **by,
        }


def drift_evaluation(
    engine: Engine, entity: str, failed_sync: str | None = None
) -> tuple[bool, AssetCheckSeverity, dict[str, Any], str]:
    """The drift check's result for ``entity``: passed, severity, metadata and a
    description naming the last completed reconciliation (and ``failed_sync``, the sync
    run whose failure kept the check from running, when there is one)."""
    counts, top = entity_drift(engine, entity)
    last = last_reconciliation(engine, entity)
    errors = counts["by_severity"].get("error", 0)
    severity = AssetCheckSeverity.ERROR if errors else AssetCheckSeverity.WARN
    metadata: dict[str, Any] = {
        "open": MetadataValue.int(counts["open"]),
        "errors": MetadataValue.int(errors),
        "warnings": MetadataValue.int(counts["by_severity"].get("warning", 0)),
        "by_system": MetadataValue.json(counts["by_system"]),
        "by_kind": MetadataValue.json(counts["by_kind"]),
        "amount_at_stake_minor": MetadataValue.json(counts["amount_at_stake_minor"]),
        "last_reconciliation": MetadataValue.json(last or {}),
    }
    if top:
        title = f"Top {len(top)} of {counts['open']} open findings (`hub findings --open`)"
        metadata["top_findings"] = MetadataValue.md(f"{title}\n\n{findings_table(top)}")
    if last is None:
        seen = f"No reconciliation of {entity} has completed yet; {counts['open']} open finding(s)."
    else:
        seen = (
            f"{counts['open']} open {entity} finding(s); the last completed reconciliation, "
            f"run {last['run_id']} finished {last['finished_at']}, observed {last['observed']}."
        )
    if failed_sync is not None:
        metadata["failed_sync_run"] = MetadataValue.text(failed_sync)
        seen = (
            f"The sync run {failed_sync} failed before this check could run in it (see that "
            f"run for why); shown instead: the drift known from reconciliation. {seen}"
        )
    return counts["open"] == 0, severity, metadata, seen


def _drift_check(entity: str) -> AssetChecksDefinition:
    @asset_check(
        asset=golden_key(entity),
        name="drift",
        additional_deps=[RECONCILIATION_KEY],
        required_resource_keys={"hub_store"},
        blocking=False,
        description=f"Open reconciliation findings of {entity} records in any system: "
        f"ERROR for money, missing records, broken references and aggregates; WARN when "
        f"only cosmetic drift is open. Names the last completed reconciliation (run id, "
        f"time, counts by system and kind). When a sync run fails before the check runs "
        f"in it, the sensor drift_after_failed_sync records the check again from the "
        f"store, saying the sync failed, so the findings stay in view.",
    )
    def _check(context: AssetCheckExecutionContext) -> AssetCheckResult:
        engine = context.resources.hub_store.engine()
        try:
            passed, severity, metadata, description = drift_evaluation(engine, entity)
        finally:
            engine.dispose()
        return AssetCheckResult(
            passed=passed, severity=severity, metadata=metadata, description=description
        )

    return _check


def drift_check_key(entity: str) -> AssetCheckKey:
    return AssetCheckKey(golden_key(entity), "drift")


def failed_sync_sensor(entities: Sequence[str]) -> SensorDefinition:
    """After a failed sync run: every drift check that run planned but never ran (Dagster
    shows it as "Execution failed", without metadata, hiding the drift) is recorded again
    from the hub store, saying the sync failed."""

    @run_failure_sensor(
        name="drift_after_failed_sync",
        minimum_interval_seconds=30,
        default_status=DefaultSensorStatus.RUNNING,
        description="When a sync run fails before its drift checks run, record them from "
        "the hub store (the last completed reconciliation's findings), saying the sync "
        "failed, instead of leaving them as 'Execution failed'.",
    )
    def drift_after_failed_sync(
        context: RunFailureSensorContext, hub_store: HubStoreResource
    ) -> SkipReason | None:
        run = context.dagster_run
        if run.tags.get("hub/kind") != "sync":
            return SkipReason(f"run {run.run_id} is not a sync")
        keys = {drift_check_key(entity): entity for entity in entities}
        latest = context.instance.event_log_storage.get_latest_asset_check_execution_by_key(
            list(keys)
        )
        hidden = [
            entity
            for key, entity in keys.items()
            if (record := latest.get(key)) is not None
            and record.run_id == run.run_id
            and record.status == AssetCheckExecutionRecordStatus.PLANNED
        ]
        if not hidden:
            return SkipReason(f"sync run {run.run_id} left no drift check unevaluated")
        engine = hub_store.engine()
        try:
            for entity in hidden:
                passed, severity, metadata, description = drift_evaluation(
                    engine, entity, failed_sync=run.run_id
                )
                context.instance.report_runless_asset_event(
                    AssetCheckEvaluation(
                        asset_key=golden_key(entity),
                        check_name="drift",
                        passed=passed,
                        severity=severity,
                        metadata=metadata,
                        description=description,
                    )
                )
                context.log.info(f"drift check of {entity} recorded after sync run {run.run_id}")
        finally:
            engine.dispose()
        return None

    return drift_after_failed_sync


def _drift_report_asset() -> AssetsDefinition:
    @asset(
        key=DRIFT_REPORT_KEY,
        deps=[RECONCILIATION_KEY],
        group_name=GROUP,
        required_resource_keys={"hub_store"},
        tags={"hub/kind": "reconcile"},
        description="Open drift by entity, system, kind and severity, money at stake per "
        "currency, and the trend over the last reconciliation runs (from the hub store).",
    )
    def _drift_report(context: AssetExecutionContext) -> MaterializeResult:
        engine = context.resources.hub_store.engine()
        try:
            report = drift_report(engine)
        finally:
            engine.dispose()
        return MaterializeResult(
            metadata={
                "open": MetadataValue.int(report["open"]),
                "by_entity": MetadataValue.json(report["by_entity"]),
                "by_system": MetadataValue.json(report["by_system"]),
                "by_kind": MetadataValue.json(report["by_kind"]),
                "by_severity": MetadataValue.json(report["by_severity"]),
                "amount_at_stake_minor": MetadataValue.json(report["amount_at_stake_minor"]),
                "table": MetadataValue.md(report_markdown(report)),
                "history": MetadataValue.json(report["history"]),
            }
        )

    return _drift_report


def drift_report(engine: Engine) -> dict[str, Any]:
    """Totals of open findings and the last runs' counts, straight from the store."""
    with Session(engine) as s:
        out: dict[str, Any] = {
            f"by_{col}": finding_store.open_counts_by(s, col)
            for col in ("entity", "system", "kind", "severity")
        }
        out["open"] = sum(out["by_severity"].values())
        out["matrix"] = finding_store.open_matrix(s)
        out["amount_at_stake_minor"] = finding_store.open_amount_at_stake(s)
        out["history"] = [
            {
                "run_id": r.id,
                "started_at": r.started_at.isoformat(),
                **{k: r.counts.get(k, 0) for k in ("observed", "new", "reopened", "resolved")},
            }
            for r in finding_store.recent_runs(s, HISTORY_RUNS)
        ]
    return out


def report_markdown(report: Mapping[str, Any]) -> str:
    lines = ["| entity | system | kind | open | at stake (minor units, all currencies) |"]
    lines.append("|---|---|---|---|---|")
    for row in report["matrix"][: TOP_N * 5]:
        stake = "" if row["amount_at_stake_minor"] is None else row["amount_at_stake_minor"]
        lines.append(
            f"| {row['entity']} | {row['system']} | {row['kind']} | {row['open']} | {stake} |"
        )
    if report["amount_at_stake_minor"]:
        money = ", ".join(f"{c} {n}" for c, n in report["amount_at_stake_minor"].items())
        lines.append(f"\nMoney at stake (minor units): {money}")
    return "\n".join(lines)


def golden_entities(specs: Sequence[MappingSpec] | None = None) -> list[str]:
    """Entities that have a golden asset (any mapping), in sync order; YAML only."""
    if specs is None:
        specs, _ = load_all(MAPPINGS_DIR)
    mapped = {s.entity for s in specs}
    return [e for e in ENTITY_ORDER if e in mapped]


def recon_assets(
    specs: Sequence[MappingSpec] | None = None,
    code_lists: Mapping[str, Mapping[str, str]] | None = None,
) -> list[AssetsDefinition]:
    return [_reconciliation_asset(specs, code_lists), _drift_report_asset()]


def recon_checks(specs: Sequence[MappingSpec] | None = None) -> list[AssetChecksDefinition]:
    return [_drift_check(entity) for entity in golden_entities(specs)]


def reconcile_job(checks: Sequence[AssetChecksDefinition]) -> Any:
    return define_asset_job(
        "reconcile",
        selection=AssetSelection.assets(RECONCILIATION_KEY, DRIFT_REPORT_KEY)
        | AssetSelection.checks(*checks),
        tags={"hub/kind": "reconcile"},
        description="Reconcile every configured system against the golden records, "
        "update the drift checks on the golden assets and the drift report.",
    )


def recon_definitions(
    specs: Sequence[MappingSpec] | None = None,
    code_lists: Mapping[str, Mapping[str, str]] | None = None,
    resources: Mapping[str, Any] | None = None,
) -> Definitions:
    """Everything reconciliation adds to the code location, for ``Definitions.merge``
    with ``app.definitions.defs`` (same resource keys: ``hub_store`` and one per system).
    ``specs``/``code_lists``: mappings other than ``mappings/`` (tests)."""
    checks = recon_checks(specs)
    return Definitions(
        assets=recon_assets(specs, code_lists),
        asset_checks=checks,
        jobs=[reconcile_job(checks)],
        sensors=[failed_sync_sensor(golden_entities(specs))],
        resources=dict(resources)
        if resources is not None
        else {
            "hub_store": HubStoreResource(),
            **{system: resource() for system, resource in SYSTEM_RESOURCES.items()},
        },
    )

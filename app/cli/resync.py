"""`hub resync`: launch the resync job (the one the Launchpad shows) from a terminal, for
given keys, a window, or straight from open findings."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import typer

from app.cli.options import entity_option, one_of, parse_moment, system_option
from hub.mapping.spec import load_specs
from hub.model import ENTITY_ORDER
from hub.store.db import create_store_engine, session_factory
from hub.store.findings import FINDING_KINDS
from hub.sync.repair_scope import FIXABLE_KINDS, RepairScope, select_repairs
from hub.sync.triage import NeedsAPerson

__all__ = ["FIXABLE_KINDS", "Scopes", "findings_scopes", "resync"]

#: open findings grouped into resync requests (hub.sync.repair_scope, shared with the
#: resync job's ``from_findings``)
Scopes = RepairScope


def findings_scopes(
    entities: Sequence[str] | None = None,
    systems: list[str] | None = None,
    kinds: list[str] | None = None,
    finding_ids: list[str] | None = None,
) -> RepairScope:
    """The resync requests for the open findings chosen by the filters, parents first,
    and the findings that need a person (hub.sync.repair_scope.select_repairs)."""
    engine = create_store_engine()
    try:
        with session_factory(engine)() as s:
            return select_repairs(
                s,
                load_specs(),
                entities=entities,
                systems=systems,
                kinds=kinds,
                finding_ids=finding_ids,
            )
    finally:
        engine.dispose()


def resync(
    entity: list[str] | None = entity_option(
        help="entities to resync (repeatable; required unless --from-findings)"
    ),
    key: list[str] | None = typer.Option(None, "--key", help="hub id (repeatable)"),
    system: list[str] | None = system_option(help="target systems (repeatable; default all)"),
    since: str = typer.Option(
        "", help="window start, ISO 8601 with zone (e.g. 2025-06-30T00:00:00Z)"
    ),
    until: str = typer.Option("", help="window end (exclusive), ISO 8601 with zone"),
    dry_run: bool = typer.Option(False, "--dry-run", help="plan and report, send nothing"),
    from_findings: bool = typer.Option(
        False, "--from-findings", help="resync the records of open findings (see --kind, --finding)"
    ),
    kind: list[str] | None = typer.Option(
        None,
        parser=one_of(FINDING_KINDS),
        help=f"finding kinds to take with --from-findings (default {', '.join(FIXABLE_KINDS)})",
    ),
    finding: list[str] | None = typer.Option(None, help="finding id (repeatable)"),
    as_json: bool = typer.Option(False, "--json", help="a JSON array of run reports on stdout"),
) -> None:
    """Push golden records to systems after an incident (the Dagster resync job).

    The records given by --key (one --entity), those changed in a window (--since,
    --until), or those of open findings (--from-findings, narrowed by --entity, --system,
    --kind and --finding). One run per entity (from findings: per entity and system),
    parents first.
    """
    from app.cli.launch import failure_summary, run_job

    parse_moment(since, "--since")  # refused here, not 20 s into the run
    parse_moment(until, "--until")
    held: list[NeedsAPerson] = []
    if from_findings:
        if finding:
            _refuse_unknown_findings(finding)
        scopes = findings_scopes(entity, system, kind, finding)
        held = scopes.needs_a_person
        requests = [
            {"entity": s["entity"], "hub_ids": s["keys"], "systems": [s["system"]]}
            for s in scopes.requests
        ]
        if not requests:
            _emit([], held, as_json, "no open findings a resync may repair match: nothing sent")
            return
    else:
        if not entity:
            raise typer.BadParameter("give --entity (or --from-findings)", param_hint="--entity")
        if key and len(set(entity)) > 1:
            raise typer.BadParameter(
                "a hub id belongs to one entity: give one --entity with --key", param_hint="--key"
            )
        requests = [
            {"entity": one, "hub_ids": list(key or []), "systems": list(system or [])}
            for one in ENTITY_ORDER
            if one in entity
        ]
    reports = []
    failed = False
    for request in requests:
        config = {
            **request,
            "window_start": since,
            "window_end": until,
            "dry_run": dry_run,
        }
        result = run_job(
            "resync",
            run_config={"ops": {"resync_records": {"config": config}}},
            tags={"hub/entity": request["entity"], "hub/kind": "resync"},
            log_level="CRITICAL",
            progress=not as_json,
        )
        report: dict[str, Any] = {"run_id": result.run_id, "success": result.success}
        if result.success:
            report |= result.output_for_node("resync_records")
        else:
            failed = True
            report |= {"entity": request["entity"], "error": failure_summary(result)}
        reports.append(report)
    _emit(reports, held, as_json)
    if failed:
        raise typer.Exit(1)


def _refuse_unknown_findings(ids: Sequence[str]) -> None:
    """Named finding ids that are not open findings are refused before any run, each with
    why (resolved, or no such finding): "nothing sent" for a mistyped id read as "done"."""
    from sqlalchemy import select

    from hub.store.models import Finding

    with session_factory(create_store_engine())() as s:
        rows = s.execute(select(Finding.id, Finding.status).where(Finding.id.in_(ids)))
        status: dict[str, str] = {one: state for one, state in rows}
    wrong = [
        f"{one} ({status.get(one, 'no such finding')})"
        for one in dict.fromkeys(ids)
        if status.get(one) != "open"
    ]
    if wrong:
        typer.echo(
            f"not open finding(s): {', '.join(wrong)}; `hub findings --open` lists the open "
            "ones with their ids; nothing sent",
            err=True,
        )
        raise typer.Exit(1)


def _emit(
    reports: list[dict[str, Any]], held: list[NeedsAPerson], as_json: bool, empty: str = ""
) -> None:
    if as_json:
        out = {"runs": reports, "needs_a_person": [h.as_dict() for h in held]}
        typer.echo(json.dumps(out, default=str, sort_keys=True))
        return
    if not reports:
        typer.echo(empty)
    for r in reports:
        if not r["success"]:
            typer.echo(f"resync {r['entity']} run {r['run_id']} FAILED: {r['error']}", err=True)
            continue
        mode = "dry run, planned" if r["dry_run"] else "pushed"
        typer.echo(
            f"resync {r['entity']} run {r['run_id']}: {r['selected']} record(s); re-read from "
            f"owners {r['repulled']}; planned {r['planned']}; "
            f"{mode} {r['pushed'] if not r['dry_run'] else ''}".rstrip()
        )
        if r["missing_keys"]:
            typer.echo(f"  not in the hub (never synced?): {', '.join(r['missing_keys'])}")
        if r["tombstoned"]:
            typer.echo(
                f"  deleted in their owner, not pushed: {', '.join(r['tombstoned'])} "
                "(hub tombstones list; hub tombstones restore to bring them back)"
            )
    if held:
        typer.echo(f"{len(held)} finding(s) need a person and were not pushed:")
        for h in held:
            typer.echo(f"  {h.finding_id}: {h.reason}")

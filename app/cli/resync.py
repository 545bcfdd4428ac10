"""`hub resync`: launch the resync job (the one the Launchpad shows) from a terminal, for
given keys, a window, or straight from open findings."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import typer

from app.cli.options import entity_option, one_of, parse_moment, system_option
from hub.mapping.spec import load_specs
from hub.model import ENTITY_ORDER
from hub.store import findings as finding_store
from hub.store.db import create_store_engine, session_factory
from hub.store.findings import RECON_KINDS
from hub.sync.triage import NeedsAPerson, triage

#: drift a push of the golden record may repair; orphans, aggregates and broken references
#: need a person (delete? re-price? re-link?), and so do conflicts and drift on a field's
#: owner (hub.sync.triage): those are reported per finding and never pushed
FIXABLE_KINDS = ("missing", "mismatch")


@dataclass
class Scopes:
    """Open findings grouped into resync requests (one per entity and system, parents
    first), and the findings no resync may push, each with its reason."""

    requests: list[dict[str, Any]]
    needs_a_person: list[NeedsAPerson]


def findings_scopes(
    entities: Sequence[str] | None = None,
    systems: list[str] | None = None,
    kinds: list[str] | None = None,
    finding_ids: list[str] | None = None,
) -> Scopes:
    """The resync requests for the open findings chosen by the filters."""
    groups: dict[tuple[str, str], dict[str, Any]] = defaultdict(
        lambda: {"keys": set(), "findings": []}
    )
    specs = load_specs()
    engine = create_store_engine()
    try:
        with session_factory(engine)() as s:
            found = [
                finding
                for entity in (sorted(set(entities)) if entities else [None])
                for finding in finding_store.list_findings(
                    s,
                    status="open",
                    kinds=kinds or FIXABLE_KINDS,
                    entity=entity,
                    systems=systems or None,
                    ids=finding_ids or None,
                    order="scope",
                )
            ]
            fixable, held = triage(found, specs)
            for finding in fixable:
                group = groups[(finding.entity, finding.system)]
                group["keys"].add(finding.key)
                group["findings"].append(finding.id)
    finally:
        engine.dispose()

    def parents_first(item: tuple[tuple[str, str], Any]) -> tuple[int, str]:
        (ent, system), _ = item
        return (ENTITY_ORDER.index(ent), system)

    requests = [
        {
            "entity": ent,
            "system": system,
            "keys": sorted(group["keys"]),
            "findings": group["findings"],
        }
        # parents first: an invoice pushed to Salesforce needs its account and subscription
        for (ent, system), group in sorted(groups.items(), key=parents_first)
    ]
    return Scopes(requests, held)


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
        parser=one_of((*RECON_KINDS, "conflict")),
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
    if held:
        typer.echo(f"{len(held)} finding(s) need a person and were not pushed:")
        for h in held:
            typer.echo(f"  {h.finding_id}: {h.reason}")

"""`hub sync --dry-run`: the plan of a sync, printed, with nothing written anywhere
(hub.sync.dry_run)."""

from __future__ import annotations

import json
from typing import Any

import typer

from connectors.registry import configured_systems
from hub.settings import connection_env
from hub.store.db import create_store_engine
from hub.sync.dry_run import DryRunReport, dry_run_sync
from hub.systems import connect

#: change lines printed (the counts cover everything; --json has the first 200)
SHOWN = 40


def sync_dry_run(entities: list[str] | None, systems: list[str] | None, as_json: bool) -> None:
    env = connection_env()
    chosen = [s for s in configured_systems(env) if not systems or s in systems]
    connectors = {s: connect(s, env) for s in chosen}
    try:
        report = dry_run_sync(create_store_engine(), connectors, entities, systems)
    finally:
        for connector in connectors.values():
            connector.close()
    if as_json:
        typer.echo(json.dumps(report.as_dict(), sort_keys=True, default=str))
    else:
        _print(report)
    typer.echo("dry run: nothing was written (hub store, cursors, systems)", err=True)
    if report.errors:
        for error in report.errors:
            typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1)


def _print(report: DryRunReport) -> None:
    ops = ("create", "update", "deactivate", "delete")
    typer.echo(f"{'system':<11}{'entity':<14}" + "".join(f"{op:>12}" for op in ops))
    for (system, entity), counts in sorted(report.planned.items()):
        typer.echo(f"{system:<11}{entity:<14}" + "".join(f"{counts[op]:>12}" for op in ops))
    if not report.planned:
        typer.echo("nothing to send")
    for stone in report.tombstoned:
        typer.echo(
            f"deleted in {stone['deleted_in']}: {stone['entity']} {stone['key']} (tombstone)"
        )
    for push in report.pushes[:SHOWN]:
        typer.echo(_line(push))
    if len(report.pushes) > SHOWN:
        typer.echo(f"... and more: --json lists the first {len(report.pushes)}")


def _line(push: dict[str, Any]) -> str:
    head = f"{push['operation']} {push['system']} {push['entity']} {push['key']}"
    if push["held"]:
        head += " (held for a person)"
    changes = "; ".join(
        f"{name}: {change['before']!r} -> {change['after']!r}"
        for name, change in push["changes"].items()
    )
    return f"  {head}: {changes}" if changes else f"  {head}"

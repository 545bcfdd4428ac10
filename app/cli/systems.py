"""`hub systems check`: every configured system reached, its metadata read, and every
mapped field it lacks named with the file, the line and the fix (hub.systems_check)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import typer

from app.cli.options import chosen, system_option
from hub.mapping.spec import MAPPINGS_DIR

systems_app = typer.Typer(help="The systems the hub is connected to.", no_args_is_help=True)


@systems_app.command("check")
def systems_check(
    system: list[str] | None = system_option(),
    as_json: bool = typer.Option(False, "--json", help="one JSON object per system, an array"),
    root: Path = typer.Option(MAPPINGS_DIR, help="folder of <system>/<entity>.yaml files"),
) -> None:
    """Connect to every configured system and check the mappings against what it declares.

    Reads Salesforce's describe, SAP's $metadata, the PIM's attribute list and billing's
    schema, and names every mapped field the system does not have, before a sync writes
    anything. Systems that are not configured are skipped. Exits 1 if a configured system
    cannot be reached or lacks a mapped field.
    """
    from connectors import registry
    from hub.settings import connection_env
    from hub.systems_check import check_systems

    reports = check_systems(connection_env(), chosen(system, registry.NAMES), root)
    if as_json:
        typer.echo(json.dumps([{**asdict(r), "ok": r.ok} for r in reports], indent=1))
    else:
        for report in reports:
            state = "skipped" if report.skipped else ("OK" if report.ok else "FAILED")
            checked = f"; {report.objects} object(s) checked" if report.objects else ""
            typer.echo(f"{report.system:<11} {state:<8} {report.detail}{checked}")
            for problem in report.problems:
                typer.echo(f"  {problem}", err=True)
    failed = [r.system for r in reports if not r.ok]
    if failed:
        typer.echo(f"systems check failed for {', '.join(failed)}", err=True)
        raise typer.Exit(1)

"""`hub quarantine ...` and `hub findings`: what the hub refused and what drift it sees."""

from __future__ import annotations

import json
from typing import Any

import typer
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from hub.store.db import create_store_engine, session_factory
from hub.store.models import Finding, QuarantineEntry

quarantine_app = typer.Typer(help="Records the hub refused, with the reason.", no_args_is_help=True)
findings_app = typer.Typer(help="Drift findings.", invoke_without_command=True)

FINDING_FIELDS = (
    "id",
    "entity",
    "key",
    "external_id",
    "system",
    "kind",
    "field",
    "expected",
    "actual",
    "severity",
    "amount_at_stake",
    "currency",
    "first_seen",
    "last_seen",
    "status",
)


def _sessions() -> sessionmaker[Session]:
    return session_factory(create_store_engine())


def quarantine_row(entry: QuarantineEntry, *, payload: bool = False) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": entry.id,
        "system": entry.system,
        "entity": entry.entity,
        "key": entry.external_key,
        "direction": entry.direction,
        "status": entry.status,
        "attempts": entry.attempts,
        "reason": entry.reason,
        "first_seen": entry.first_seen.isoformat(),
        "last_seen": entry.last_seen.isoformat(),
    }
    if payload:
        row["errors"] = entry.errors
        row["payload"] = entry.payload
    return row


@quarantine_app.command("list")
def quarantine_list(
    status: str = typer.Option("open", help="open, resolved or all"),
    entity: str | None = typer.Option(None),
    system: str | None = typer.Option(None),
    as_json: bool = typer.Option(False, "--json", help="a JSON array on stdout"),
) -> None:
    """List quarantined records (newest first)."""
    stmt = select(QuarantineEntry).order_by(QuarantineEntry.last_seen.desc())
    if status != "all":
        stmt = stmt.where(QuarantineEntry.status == status)
    if entity:
        stmt = stmt.where(QuarantineEntry.entity == entity)
    if system:
        stmt = stmt.where(QuarantineEntry.system == system)
    with _sessions()() as s:
        rows = [quarantine_row(e) for e in s.scalars(stmt)]
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    for r in rows:
        typer.echo(
            f"{r['id']:>6}  {r['system']:<10} {r['entity']:<12} {r['key']:<24} "
            f"{r['direction']:<8} x{r['attempts']}  {r['reason'][:90]}"
        )
    typer.echo(f"{len(rows)} record(s)", err=True)


@quarantine_app.command("show")
def quarantine_show(entry_id: int) -> None:
    """One quarantined record: reason, field errors and the raw payload."""
    with _sessions()() as s:
        entry = s.get(QuarantineEntry, entry_id)
        if entry is None:
            typer.echo(f"no quarantine entry {entry_id}", err=True)
            raise typer.Exit(1)
        typer.echo(json.dumps(quarantine_row(entry, payload=True), indent=2, default=str))


@quarantine_app.command("retry")
def quarantine_retry(
    entry_id: list[int] | None = typer.Argument(None, help="entry ids (default: all open)"),
    entity: str = typer.Option("all", help="only this entity's entries"),
    as_json: bool = typer.Option(False, "--json", help="the summary as JSON on stdout"),
) -> None:
    """Retry quarantined records through the Dagster quarantine_retry job: inbound ones are
    re-read from their system (or re-processed if it no longer has them), rejected pushes
    are re-planned and delivered."""
    from hub.launch import run_job

    config = {"entity": entity, "entry_ids": list(entry_id or [])}
    result = run_job(
        "quarantine_retry",
        run_config={"ops": {"retry_quarantined": {"config": config}}},
        log_level="CRITICAL",
    )
    if not result.success:
        typer.echo(f"quarantine retry run {result.run_id} failed; see the Dagster UI", err=True)
        raise typer.Exit(1)
    summary = result.output_for_node("retry_quarantined")
    if as_json:
        typer.echo(json.dumps(summary, sort_keys=True))
        return
    for name, counts in sorted(summary.items()):
        typer.echo(
            f"{name:<14} retried {counts['retried']:>5}  released {counts['released']:>5}"
            f"  still open {counts['open']:>5}"
        )
    if not summary:
        typer.echo("nothing open in quarantine")


def finding_row(f: Finding) -> dict[str, Any]:
    return {
        "id": f.id,
        "entity": f.entity,
        "key": f.key,
        "external_id": f.external_id,
        "system": f.system,
        "kind": f.kind,
        "field": f.field,
        "expected": f.expected,
        "actual": f.actual,
        "severity": f.severity,
        "amount_at_stake": f.amount_at_stake_minor,
        "currency": f.currency,
        "first_seen": f.first_seen.isoformat(),
        "last_seen": f.last_seen.isoformat(),
        "status": f.status,
    }


@findings_app.callback()
def findings(
    open_only: bool = typer.Option(False, "--open", help="only findings still open"),
    entity: str | None = typer.Option(None),
    system: str | None = typer.Option(None),
    as_json: bool = typer.Option(False, "--json", help="a JSON array on stdout, nothing else"),
) -> None:
    """Drift findings with their history (amounts in minor units of `currency`)."""
    stmt = select(Finding).order_by(Finding.entity, Finding.key, Finding.system, Finding.field)
    if open_only:
        stmt = stmt.where(Finding.status == "open")
    if entity:
        stmt = stmt.where(Finding.entity == entity)
    if system:
        stmt = stmt.where(Finding.system == system)
    with _sessions()() as s:
        rows = [finding_row(f) for f in s.scalars(stmt)]
    if as_json:
        typer.echo(json.dumps(rows, default=str))
        return
    for r in rows:
        typer.echo(
            f"{r['status']:<8} {r['severity']:<7} {r['entity']:<12} {r['key']:<20} "
            f"{r['system']:<10} {r['kind']:<10} {r['field'] or '':<24} "
            f"expected={r['expected']!r} actual={r['actual']!r}"
        )
    typer.echo(f"{len(rows)} finding(s)", err=True)

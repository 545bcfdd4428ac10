"""`hub quarantine ...`: what the hub refused, why, and another go at it."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import typer
from sqlalchemy import select
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from app.cli.options import ALL, chosen, entity_option, system_option
from hub.model import ENTITY_ORDER
from hub.store.db import create_store_engine, session_factory
from hub.store.models import QuarantineEntry

quarantine_app = typer.Typer(help="Records the hub refused, with the reason.", no_args_is_help=True)


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


#: lines of records left in quarantine printed after a sync (the rest: hub quarantine list)
SHOWN = 20


def left_in_quarantine(since: datetime) -> list[QuarantineEntry]:
    """What a run that started at ``since`` left in quarantine: open entries it judged
    (new, or refused again). Records that waited only until a later batch of the same run
    were released and are not here."""
    stmt = (
        select(QuarantineEntry)
        .where(QuarantineEntry.status == "open", QuarantineEntry.last_seen >= since)
        .order_by(QuarantineEntry.system, QuarantineEntry.entity, QuarantineEntry.id)
    )
    try:
        with _sessions()() as s:
            return list(s.scalars(stmt))
    except (OperationalError, ProgrammingError):
        # no schema (the run failed before it could write anything; its failure says
        # why and what to run): nothing of this run can be in quarantine
        return []


def quarantined_counts(entries: list[QuarantineEntry]) -> dict[tuple[str, str], int]:
    """Records left in quarantine per (system, entity): the sync table's column."""
    out: dict[tuple[str, str], int] = {}
    for entry in entries:
        out[(entry.system, entry.entity)] = out.get((entry.system, entry.entity), 0) + 1
    return out


def print_left_in_quarantine(entries: list[QuarantineEntry]) -> None:
    """One line per record left in quarantine, after the counts table."""
    if not entries:
        return
    typer.echo(f"{len(entries)} record(s) stay in quarantine (`hub quarantine list`):", err=True)
    for entry in entries[:SHOWN]:
        typer.echo(
            f"  [{entry.id}] {entry.system} {entry.entity} {entry.external_key} "
            f"({entry.direction}, attempt {entry.attempts}): {entry.reason}",
            err=True,
        )
    if len(entries) > SHOWN:
        typer.echo(f"  ... and {len(entries) - SHOWN} more", err=True)


@quarantine_app.command("list")
def quarantine_list(
    status: str = typer.Option("open", help="open, resolved or all"),
    entity: list[str] | None = entity_option(),
    system: list[str] | None = system_option(),
    as_json: bool = typer.Option(False, "--json", help="a JSON array on stdout"),
) -> None:
    """List quarantined records (newest first)."""
    stmt = select(QuarantineEntry).order_by(QuarantineEntry.last_seen.desc())
    if status != "all":
        stmt = stmt.where(QuarantineEntry.status == status)
    if entity:
        stmt = stmt.where(QuarantineEntry.entity.in_(entity))
    if system:
        stmt = stmt.where(QuarantineEntry.system.in_(system))
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


def _refuse_unknown_entries(entry_ids: list[int]) -> None:
    """Named ids that are not open entries (resolved, or never there) are refused before
    any run: "nothing open in quarantine" for a mistyped id read as "done"."""
    with _sessions()() as s:
        open_ids = set(
            s.scalars(
                select(QuarantineEntry.id).where(
                    QuarantineEntry.id.in_(entry_ids), QuarantineEntry.status == "open"
                )
            )
        )
    missing = sorted(set(entry_ids) - open_ids)
    if missing:
        typer.echo(
            f"no open quarantine entry {', '.join(map(str, missing))} (resolved, or never "
            "there): `hub quarantine list` shows the open ones; nothing retried",
            err=True,
        )
        raise typer.Exit(1)


@quarantine_app.command("retry")
def quarantine_retry(
    entry_id: list[int] | None = typer.Argument(None, help="entry ids (default: all open)"),
    entity: list[str] | None = entity_option(
        with_all=True, help="only these entities' entries (repeatable; default all)"
    ),
    as_json: bool = typer.Option(False, "--json", help="the summary as JSON on stdout"),
) -> None:
    """Retry quarantined records through the Dagster quarantine_retry job.

    Inbound records are re-read from their system (or re-processed if it no longer has
    them); rejected pushes are re-planned and delivered. One run for all entities, or one
    per --entity, parents first.
    """
    from app.cli.launch import failure_summary, run_job

    if entry_id:
        _refuse_unknown_entries(entry_id)
    summary: dict[str, Any] = {}
    for one in [ALL] if not entity or ALL in entity else chosen(entity, ENTITY_ORDER):
        config = {"entity": one, "entry_ids": list(entry_id or [])}
        result = run_job(
            "quarantine_retry",
            run_config={"ops": {"retry_quarantined": {"config": config}}},
            log_level="CRITICAL",
        )
        if not result.success:
            typer.echo(
                f"quarantine retry run {result.run_id} failed: {failure_summary(result)}",
                err=True,
            )
            raise typer.Exit(1)
        summary |= result.output_for_node("retry_quarantined")
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

"""`hub tombstones ...` and `hub outbox ...`: records their owner deleted, and the pushes
the blast-radius guard held for a person (hub.sync.deletions)."""

from __future__ import annotations

import json

import typer
from sqlalchemy.exc import OperationalError, ProgrammingError

from app.cli.options import entity_option, system_option
from hub.model import ENTITY_ORDER
from hub.store.db import create_store_engine, session_factory
from hub.store.models import utcnow
from hub.sync import deletions

tombstones_app = typer.Typer(
    help="Records deleted in their owner: list them, or restore them everywhere.",
    no_args_is_help=True,
)
outbox_app = typer.Typer(
    help="Pushes held for a person by the blast-radius guard.", no_args_is_help=True
)


@tombstones_app.command("list")
def tombstones_list(
    entity: list[str] | None = entity_option(),
    as_json: bool = typer.Option(False, "--json", help="a JSON array on stdout"),
) -> None:
    """Records deleted in the system that owns or creates them, newest last."""
    with session_factory(create_store_engine())() as s:
        rows = [
            {
                "entity": t.entity,
                "hub_id": t.hub_id,
                "system": t.system,
                "external_id": t.external_id,
                "deleted_at": t.deleted_at.isoformat(),
                "recorded_at": t.recorded_at.isoformat(),
            }
            for t in deletions.tombstones(s)
            if not entity or t.entity in entity
        ]
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    for r in rows:
        typer.echo(
            f"{r['entity']:<12} {r['hub_id']:<24} deleted in {r['system']:<10} "
            f"(id {r['external_id']}) at {r['deleted_at']}"
        )
    typer.echo(
        f"{len(rows)} tombstone(s); restorable for {deletions.TOMBSTONE_DAYS} days "
        "with `hub tombstones restore ENTITY HUB_ID...`",
        err=True,
    )


@tombstones_app.command("restore")
def tombstones_restore(
    entity: str = typer.Argument(..., help=f"their entity: {', '.join(ENTITY_ORDER)}"),
    hub_ids: list[str] = typer.Argument(..., help="hub ids of the deleted records"),
) -> None:
    """Bring deleted records back: live again in the hub, recreated in the system that
    deleted them and reactivated where they were deactivated, by the next hub sync."""
    if entity not in ENTITY_ORDER:
        typer.echo(f"unknown entity {entity!r}: one of {', '.join(ENTITY_ORDER)}", err=True)
        raise typer.Exit(2)
    from hub.sync.engine import SyncEngine  # the engine's imports: only for a restore

    engine = SyncEngine(create_store_engine(), {})
    try:
        restored = deletions.restore(engine, entity, hub_ids, utcnow())
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    typer.echo(
        f"restored {len(restored)} {entity} record(s): {', '.join(restored)}; "
        "run `hub sync` to recreate and reactivate them in every system"
    )


def print_held() -> None:
    """After a sync: say so when pushes wait for a person (a mass delete was held)."""
    try:
        with session_factory(create_store_engine())() as s:
            held = deletions.held_pushes(s)
    except (OperationalError, ProgrammingError):
        return  # no schema: the run failed before it could hold anything, and says why
    if held:
        total = sum(n for *_, n in held)
        where = ", ".join(f"{n} {op} to {system} {entity}" for system, entity, op, n in held)
        typer.echo(
            f"{total} push(es) held for a person by the blast-radius guard ({where}): "
            "review with `hub outbox held` and `hub tombstones list`, then `hub outbox "
            "release` or `hub tombstones restore`",
            err=True,
        )


@outbox_app.command("held")
def outbox_held(
    as_json: bool = typer.Option(False, "--json", help="a JSON array on stdout"),
) -> None:
    """Pushes the blast-radius guard held: a pass deleted more records than it allows."""
    with session_factory(create_store_engine())() as s:
        held = deletions.held_pushes(s)
    rows: list[dict[str, str | int]] = [
        {"system": a, "entity": b, "operation": c, "count": n} for a, b, c, n in held
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    for r in rows:
        typer.echo(f"{r['system']:<10} {r['entity']:<12} {r['operation']:<11} {r['count']:>7}")
    typer.echo(
        f"{sum(n for *_, n in held)} push(es) held; `hub outbox release` lets them out "
        "with the next sync, `hub tombstones restore` undoes the deletes instead",
        err=True,
    )


@outbox_app.command("release")
def outbox_release(
    entity: list[str] | None = entity_option(),
    system: list[str] | None = system_option(),
) -> None:
    """Let held pushes go out with the next sync (all, or only these systems/entities)."""
    with session_factory(create_store_engine()).begin() as s:
        released = deletions.release(s, system, entity)
    typer.echo(f"released {released} push(es): they go out with the next `hub sync`")

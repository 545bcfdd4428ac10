"""The `hub` command line. Commands that run work launch the same Dagster jobs the UI
launches, so their runs show up in the UI either way.

Help texts are plain text (Typer shows docstrings as they are): no RST markup in a
command's docstring or an option's help. `hub --help` lists the commands in the order an
operator meets them (COMMAND_ORDER), not in the order this module happens to register
them."""

from __future__ import annotations

import inspect
import json
from datetime import UTC, datetime
from typing import Any

import typer
from typer.core import TyperGroup

from app.cli.deletes import outbox_app, print_held, tombstones_app
from app.cli.listen import listen
from app.cli.mappings import mappings_app
from app.cli.metrics import metrics
from app.cli.options import STORE_URL, entity_option, system_option, use_store
from app.cli.recon import findings, reconcile
from app.cli.records import (
    left_in_quarantine,
    print_left_in_quarantine,
    quarantine_app,
    quarantined_counts,
)
from app.cli.resync import resync
from app.cli.systems import systems_app
from connectors.redact import redact_url
from hub import settings
from hub.model import ENTITY_ORDER

#: The operator's path: bring up the landscape, the store and the mappings, sync,
#: reconcile, read the findings, repair, look at what was refused, report; demo does it
#: all at once. A command missing here is listed after these, alphabetically.
COMMAND_ORDER = (
    "sandbox",
    "db",
    "mappings",
    "systems",
    "sync",
    "listen",
    "reconcile",
    "findings",
    "resync",
    "quarantine",
    "tombstones",
    "outbox",
    "metrics",
    "demo",
)


#: Commands that never open the hub store (a database error there is another database's)
NOT_THE_STORE = frozenset({"sandbox", "systems", "mappings"})


class OperatorOrder(TyperGroup):
    """Lists commands in COMMAND_ORDER (Typer lists groups after commands otherwise), and
    turns a hub store that cannot be used (no schema yet, an old one, unreachable) into
    one line naming the store and the fix, whatever command met it: `hub findings` on a
    store nobody migrated printed a page of SQLAlchemy traceback instead."""

    def list_commands(self, ctx: Any) -> list[str]:  # Any: Typer's own vendored click
        rank = {name: i for i, name in enumerate(COMMAND_ORDER)}
        names = super().list_commands(ctx)
        return sorted(names, key=lambda name: (rank.get(name, len(rank)), name))

    def invoke(self, ctx: Any) -> Any:
        from sqlalchemy.exc import SQLAlchemyError

        from hub.store.db import store_problem, store_url_problem

        try:
            return super().invoke(ctx)
        except SQLAlchemyError as exc:
            if ctx.invoked_subcommand in NOT_THE_STORE:
                raise  # another database (the sandbox's billing store): not ours to name
            # the store the command used: its own --url (kept in the contexts' shared
            # meta by the commands that take one), else HUB_DATABASE_URL or the default
            url = ctx.meta.get(STORE_URL)
            problem = store_problem(exc, url) or store_url_problem(exc, url)
            if problem is None:
                raise
            typer.echo(f"error: {problem}", err=True)
            raise typer.Exit(2) from None


app = typer.Typer(
    cls=OperatorOrder,
    help="Subscription Integration Hub: sync, reconcile and resync B2B subscription data.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold secrets
)
db_app = typer.Typer(help="Hub store schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(mappings_app, name="mappings")
app.add_typer(systems_app, name="systems")
app.add_typer(quarantine_app, name="quarantine")
app.add_typer(tombstones_app, name="tombstones")
app.add_typer(outbox_app, name="outbox")
app.command("reconcile")(reconcile)
app.command("findings")(findings)
app.command("resync")(resync)
app.command("metrics")(metrics)
app.command("listen")(listen)

sandbox_app: typer.Typer | None
try:  # the sandbox is a development tool: the production wheel does not ship it
    from sandbox.cli import app as sandbox_app
except ModuleNotFoundError:
    sandbox_app = None
if sandbox_app is not None:
    app.add_typer(sandbox_app, name="sandbox")


@db_app.command("upgrade")
def db_upgrade(
    ctx: typer.Context,
    url: str = typer.Option(None, envvar="HUB_DATABASE_URL", help="SQLAlchemy URL of the store"),
    revision: str = typer.Option("head", help="target Alembic revision"),
) -> None:
    """Create or migrate the hub store schema (SQLite under HUB_DATA_DIR by default)."""
    from hub.store.migrate import upgrade

    target = use_store(ctx, url or settings.database_url())
    at = upgrade(target, revision)
    typer.echo(f"hub store at revision {at}: {redact_url(target)}")


@app.command("sync")
def sync(
    entity: list[str] | None = entity_option(
        help="only these entities (repeatable; default all, parents first)"
    ),
    system: list[str] | None = system_option(),
    as_json: bool = typer.Option(False, "--json", help="counts as one JSON object on stdout"),
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="read and plan as a sync would, print the creates, updates (field: before -> "
        "after) and deactivations it would send, and write nothing anywhere",
    ),
) -> None:
    """Incremental sync, through the same Dagster jobs the UI launches.

    Without --entity one sync_all run syncs every entity, parents first. With --entity,
    one sync_<entity> run per entity, parents first; a failed run stops the ones after
    it. --system limits the runs to those systems. --dry-run runs in this process, not
    as a Dagster run: nothing is recorded, pushed or moved (cursors included).
    """
    from app.cli.launch import failure_summary, run_job, sync_counts
    from app.defs.sync import sync_asset_keys

    if dry_run:
        from app.cli.dry_run import sync_dry_run

        sync_dry_run(entity, system, as_json)
        return

    started = datetime.now(UTC)
    scopes: list[str | None] = [e for e in ENTITY_ORDER if e in entity] if entity else [None]
    counts: dict[str, dict[str, dict[str, int]]] = {}
    failed: Any = None
    for done, scope in enumerate(scopes):
        job = f"sync_{scope}" if scope else "sync_all"
        keys = sync_asset_keys(scope, system) if system else None
        result = run_job(
            job,
            tags={"hub/entity": scope or "all"},
            asset_selection=keys,
            log_level="CRITICAL",
            progress=not as_json,
        )
        _add_counts(counts, sync_counts(result))
        if not result.success:
            failed = (result, [s for s in scopes[done + 1 :] if s])
            break
    left = _count_left(counts, started)
    if as_json:
        typer.echo(json.dumps(counts, sort_keys=True))
    else:
        _print_counts(counts)
        print_left_in_quarantine(left)
    print_held()  # on stderr: --json keeps stdout to the counts
    if failed:
        result, not_run = failed
        typer.echo(f"sync run {result.run_id} failed: {failure_summary(result)}", err=True)
        if not_run:
            typer.echo(f"not run after it: {', '.join(not_run)}", err=True)
        raise typer.Exit(1)


def _add_counts(
    into: dict[str, dict[str, dict[str, int]]], more: dict[str, dict[str, dict[str, int]]]
) -> None:
    for system, entities in more.items():
        for entity, values in entities.items():
            slot = into.setdefault(system, {}).setdefault(entity, dict.fromkeys(values, 0))
            for name, value in values.items():
                slot[name] = slot.get(name, 0) + value


def _count_left(counts: dict[str, dict[str, dict[str, int]]], started: datetime) -> list[Any]:
    """The table's quarantined column is what stays in quarantine after the run (a record
    that waited for its parent's id until a later batch of the run is not counted);
    returns those records."""
    from app.cli.launch import COUNT_FIELDS

    left = left_in_quarantine(started)
    by_scope = quarantined_counts(left)
    for system, entities in counts.items():
        for entity, values in entities.items():
            values["quarantined"] = by_scope.get((system, entity), 0)
    for (system, entity), n in by_scope.items():
        slot = counts.setdefault(system, {}).setdefault(entity, dict.fromkeys(COUNT_FIELDS, 0))
        slot["quarantined"] = n
    return left


def _print_counts(counts: dict[str, dict[str, dict[str, int]]]) -> None:
    from app.cli.launch import COUNT_FIELDS

    header = f"{'system':<11}{'entity':<14}" + "".join(f"{name:>12}" for name in COUNT_FIELDS)
    typer.echo(header)
    for system in sorted(counts):
        for entity, values in sorted(counts[system].items()):
            typer.echo(
                f"{system:<11}{entity:<14}"
                + "".join(f"{values[name]:>12}" for name in COUNT_FIELDS)
            )


@app.command("demo")
def demo(
    customers: int = typer.Option(300, help="size of the seeded book (first start only)"),
    seed: int = typer.Option(42, help="seed of the book (first start only)"),
    keep_running: bool = typer.Option(
        False, help="keep the sandbox up afterwards (Ctrl+C stops it), e.g. for make dev"
    ),
) -> None:
    """Everything at once on the embedded sandbox: sync, reconcile, report.

    Starts the emulated landscape (seeded on first start, kept in $HUB_DATA_DIR/sandbox),
    migrates the store, runs the full sync and the reconciliation through Dagster and
    prints what happened.
    """
    import time

    from app.cli.launch import failure_summary, run_job, sync_counts

    if sandbox_app is None:
        typer.echo(
            "hub demo needs the sandbox, which this installation lacks: run it from a "
            "checkout of the repository (`make demo`)",
            err=True,
        )
        raise typer.Exit(2)
    from sandbox.runner import running_sandbox

    data_dir = settings.data_dir() / "sandbox"
    typer.echo(f"starting the sandbox in {data_dir} (seed {seed}, {customers} customers) ...")
    with running_sandbox(data_dir, seed=seed, customers=customers) as sb:
        typer.echo("  " + ", ".join(f"{k} {v}" for k, v in sorted(sb.urls.items())))
        maintenance = run_job("store_maintenance")
        if not maintenance.success:
            typer.echo("store_maintenance failed; see the run in the Dagster UI", err=True)
            raise typer.Exit(1)
        typer.echo(f"store: {redact_url(settings.database_url())}")
        started = datetime.now(UTC)
        result = run_job("sync_all", tags={"hub/entity": "all"}, log_level="CRITICAL")
        typer.echo(f"sync_all run {result.run_id}: {'succeeded' if result.success else 'FAILED'}")
        counts = sync_counts(result)
        left = _count_left(counts, started)
        _print_counts(counts)
        print_left_in_quarantine(left)
        if not result.success:
            typer.echo(failure_summary(result), err=True)
            raise typer.Exit(1)
        defs_jobs = _job_names()
        if "reconcile" in defs_jobs:
            recon = run_job("reconcile", log_level="CRITICAL")
            typer.echo(
                f"reconcile run {recon.run_id}: {'succeeded' if recon.success else 'FAILED'}"
            )
            if not recon.success:
                typer.echo(failure_summary(recon), err=True)
                raise typer.Exit(1)
            typer.echo(
                "open findings: `hub findings --open`; planted drift: " + str(sb.manifest_path)
            )
        typer.echo("runs are in the Dagster UI: `make dev` (http://127.0.0.1:3000)")
        if keep_running:
            typer.echo("sandbox running; Ctrl+C stops it")
            try:
                while True:
                    time.sleep(1)
            except KeyboardInterrupt:
                pass


def _job_names() -> set[str]:
    from app.definitions import defs

    return {job.name for job in defs.resolve_all_job_defs()}


def reflow_help(typer_app: typer.Typer) -> None:
    """Make each paragraph of every command's help one line, for the terminal to wrap.
    Docstrings are wrapped for the source, and Typer's rich help keeps those breaks
    inside a paragraph (ragged lines)."""
    for info in typer_app.registered_commands:
        text = info.help or inspect.getdoc(info.callback) or ""
        info.help = "\n\n".join(" ".join(p.split()) for p in text.split("\n\n"))
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            reflow_help(group.typer_instance)


reflow_help(app)

if __name__ == "__main__":
    app()

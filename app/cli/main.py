"""The `hub` command line. Commands that run work launch the same Dagster jobs the UI
launches, so their runs show up in the UI either way."""

from __future__ import annotations

import json

import typer

from app.cli.mappings import mappings_app
from app.cli.metrics import metrics
from app.cli.options import entity_option, system_option
from app.cli.recon import findings, reconcile
from app.cli.records import quarantine_app
from app.cli.resync import resync
from connectors.redact import redact_url
from hub import settings

app = typer.Typer(
    help="Subscription Integration Hub: sync, reconcile and resync B2B subscription data.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold secrets
)
db_app = typer.Typer(help="Hub store schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(mappings_app, name="mappings")
app.add_typer(quarantine_app, name="quarantine")
app.command("findings")(findings)
app.command("resync")(resync)
app.command("metrics")(metrics)
app.command("reconcile")(reconcile)

sandbox_app: typer.Typer | None
try:  # the sandbox is a development tool: the production wheel does not ship it
    from sandbox.cli import app as sandbox_app
except ModuleNotFoundError:
    sandbox_app = None
if sandbox_app is not None:
    app.add_typer(sandbox_app, name="sandbox")


@db_app.command("upgrade")
def db_upgrade(
    url: str = typer.Option(None, envvar="HUB_DATABASE_URL", help="SQLAlchemy URL of the store"),
    revision: str = typer.Option("head", help="target Alembic revision"),
) -> None:
    """Create or migrate the hub store schema (SQLite under HUB_DATA_DIR by default)."""
    from hub.store.migrate import upgrade

    target = url or settings.database_url()
    at = upgrade(target, revision)
    typer.echo(f"hub store at revision {at}: {redact_url(target)}")


@app.command("sync")
def sync(
    entity: str | None = entity_option(help="one entity (default: all, parents first)"),
    system: list[str] | None = system_option(),
    as_json: bool = typer.Option(False, "--json", help="counts as one JSON object on stdout"),
) -> None:
    """Run the incremental sync through the same Dagster job the UI launches."""
    from app.cli.launch import failure_summary, run_job, sync_counts
    from app.defs.sync import sync_asset_keys

    job = f"sync_{entity}" if entity else "sync_all"
    keys = sync_asset_keys(entity, system) if system else None
    result = run_job(
        job, tags={"hub/entity": entity or "all"}, asset_selection=keys, log_level="CRITICAL"
    )
    counts = sync_counts(result)
    if as_json:
        typer.echo(json.dumps(counts, sort_keys=True))
    else:
        _print_counts(counts)
    if not result.success:
        typer.echo(f"sync run {result.run_id} failed: {failure_summary(result)}", err=True)
        raise typer.Exit(1)


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
        False, help="keep the sandbox up afterwards (Ctrl+C stops it), e.g. for `make dev`"
    ),
) -> None:
    """The main job against the embedded sandbox: start the emulated landscape (seeded on
    first start, kept in $HUB_DATA_DIR/sandbox), migrate the store, run the full sync and
    the reconciliation through Dagster, and print what happened."""
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
        result = run_job("sync_all", tags={"hub/entity": "all"}, log_level="CRITICAL")
        typer.echo(f"sync_all run {result.run_id}: {'succeeded' if result.success else 'FAILED'}")
        _print_counts(sync_counts(result))
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


if __name__ == "__main__":
    app()

"""`hub listen`: the command that runs the change-event listener (app.listener) until
stopped. The listener's modules (gRPC, the Pub/Sub client, the webhook server, the sync
engine) are imported when the command runs, not when `hub` starts: every other command
would pay ~0.5 s of CPU for them."""

from __future__ import annotations

import logging
import signal
from typing import Any

import typer


def listen(
    salesforce: bool = typer.Option(
        True, "--salesforce/--no-salesforce", help="subscribe to Salesforce Change Data Capture"
    ),
    sap: bool = typer.Option(True, "--sap/--no-sap", help="serve the SAP business event webhook"),
    report: bool = typer.Option(
        True,
        "--report/--no-report",
        help="report each applied batch to Dagster as an asset event (needs DAGSTER_HOME)",
    ),
) -> None:
    """Apply Salesforce change events and SAP business events in seconds (runs until stopped).

    Stores every event in the hub store's inbox before acknowledging it, applies the
    inbox through the sync engine, and reports each applied batch to Dagster. Polling
    stays on as the safety net. Settings: HUB_EVENTS_HOST, HUB_EVENTS_PORT,
    HUB_EVENTS_SECRET (or HUB_EVENTS_USER and HUB_EVENTS_PASSWORD), HUB_EVENTS_BATCH,
    SALESFORCE_PUBSUB_URL, SALESFORCE_PUBSUB_BATCH. Stop with Ctrl-C or SIGTERM.
    """
    from app.listener import Listener, dagster_reporter, log
    from hub.settings import connection_env, event_settings
    from hub.store.db import create_store_engine

    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # the schema check below reads Alembic's scripts, which logs a line per plugin
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        settings = event_settings()
        env = connection_env()
        listener = Listener(create_store_engine(), env, settings)
    except (ValueError, KeyError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if not listener.want_salesforce and not listener.want_sap:
        typer.echo(
            "error: neither Salesforce nor SAP is configured: start the sandbox or set "
            "SALESFORCE_LOGIN_URL / SAP_ODATA_URL",
            err=True,
        )
        raise typer.Exit(2)
    behind = _store_behind()
    if behind:
        typer.echo(f"error: {behind}", err=True)
        raise typer.Exit(2)
    if report:
        listener.report = dagster_reporter()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("%s: stopping", signal.Signals(signum).name)
        listener.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        listener.run()
    except Exception as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if listener.fatal is not None:
        typer.echo(f"error: {listener.fatal}", err=True)
        raise typer.Exit(1)


def _store_behind() -> str | None:
    """Why the hub store cannot hold the inbox yet (no schema, or an older one), with the
    fix; None when it is current. Checked before anything is subscribed: a listener
    that acknowledged events it cannot store would lose them."""
    from connectors.redact import redact_url
    from hub.settings import database_url
    from hub.store.db import store_problem
    from hub.store.migrate import current_revision, head_revision

    try:
        current = current_revision()
    except Exception as exc:  # unreachable store: say so, as the other commands do
        return store_problem(exc) or f"hub store unusable: {exc}"
    if current != head_revision():
        return (
            f"hub store at {redact_url(database_url())} is at schema revision "
            f"{current or 'none'}, not {head_revision()}: run `hub db upgrade`"
        )
    return None

"""`hub sandbox ...` commands (start/stop the emulated landscape, switch faults)."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from connectors.redact import redact_url
from hub import settings
from hub.mapping.spec import closest

app = typer.Typer(
    help="Run the emulated landscape (Salesforce, SAP, PIM, WMS, billing).",
    no_args_is_help=True,
)


def _default_dir() -> Path:
    return settings.sandbox_env_file().parent


DATA_DIR = typer.Option(
    None, "--data-dir", help="sandbox state and sandbox.env (default: $HUB_DATA_DIR/sandbox)"
)


class SeedingProgress:
    """The seeding's progress on a terminal (a bar: customers written of the book, rate,
    elapsed); nothing in a pipe or a log file."""

    def __init__(self, console: Console) -> None:
        self.bar: Progress | None = None
        if console.is_terminal:
            self.bar = Progress(
                TextColumn("seeding the sandbox"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("customers"),
                TimeElapsedColumn(),
                console=console,
                transient=True,
            )
        self.task: TaskID | None = None

    def __call__(self, written: int, total: int) -> None:
        if self.bar is None:
            return
        if self.task is None:
            self.bar.start()
            self.task = self.bar.add_task("seed", total=total)
        self.bar.update(self.task, completed=written)

    def done(self) -> None:
        if self.bar is not None:
            self.bar.stop()


@contextlib.contextmanager
def seeding_progress(console: Console) -> Iterator[SeedingProgress]:
    progress = SeedingProgress(console)
    try:
        yield progress
    finally:
        progress.done()


@app.command("up")
def up(
    data_dir: Path | None = DATA_DIR,
    seed: int = typer.Option(42, help="seed of the generated book (first start only)"),
    customers: int = typer.Option(
        300, min=1, help="customers in the generated book (first start only)"
    ),
    billing_url: str | None = typer.Option(
        None, help="SQLAlchemy URL of the billing store (default: SQLite file in the data dir)"
    ),
    salesforce_port: int = typer.Option(0, help="0: a free port"),
    sap_port: int = typer.Option(0, help="0: a free port"),
    pim_port: int = typer.Option(0, help="0: a free port"),
    wms_port: int = typer.Option(0, help="0: a free port"),
    fault: list[str] | None = typer.Option(
        None, help="SYSTEM=MODE[:k=v,...], e.g. sap=429:rate=0.5,retry_after=2 (repeatable)"
    ),
    reseed: bool = typer.Option(False, help="wipe the data dir's state and seed again"),
) -> None:
    """Start the emulated landscape and stay in the foreground.

    Seeds it (first start only), serves every emulator on loopback, writes sandbox.env
    once all answer, and runs until Ctrl+C, SIGTERM or hub sandbox down.
    """
    from sandbox.runner import Sandbox, SandboxConfig, SandboxError, parse_fault, run_foreground

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    root = data_dir or _default_dir()
    try:
        config = SandboxConfig(
            root,
            seed=seed,
            customers=customers,
            billing_url=billing_url,
            ports={
                "salesforce": salesforce_port,
                "sap": sap_port,
                "pim": pim_port,
                "wms": wms_port,
            },
            faults=[parse_fault(text) for text in fault or []],
            reseed=reseed,
        )
        with seeding_progress(Console(stderr=True)) as progress:
            config.seed_progress = progress

            def ready(sandbox: Sandbox) -> None:
                progress.done()
                _print_summary(sandbox)

            run_foreground(config, ready)
    except SandboxError as exc:
        typer.echo(f"sandbox: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo("sandbox stopped")


def _print_summary(sandbox: Any) -> None:
    seeded = json.loads((sandbox.dir / "seed.json").read_text())
    counts = ", ".join(f"{k}={v}" for k, v in seeded["counts"].items())
    typer.echo(f"sandbox ready in {sandbox.dir} (seed {seeded['seed']}: {counts})")
    for system, url in sandbox.urls.items():
        typer.echo(f"  {system:<11}{url}")
    typer.echo(f"  {'billing':<11}{redact_url(sandbox.billing_url)}")
    typer.echo(f"  planted drift: {len(seeded['drifts'])} (manifest.json)")
    typer.echo(f"  environment: {sandbox.dir / 'sandbox.env'}  (Ctrl+C to stop)")


@app.command("down")
def down(data_dir: Path | None = DATA_DIR) -> None:
    """Stop the sandbox running in the data dir (via its pid file)."""
    from sandbox.runner import SandboxError, stop

    root = data_dir or _default_dir()
    try:
        pid = stop(root)
    except SandboxError as exc:
        typer.echo(f"sandbox: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"sandbox (pid {pid}) stopped" if pid else f"no sandbox running in {root}")


def _refuse_unknown(value: str, choices: tuple[str, ...], what: str) -> None:
    """A misspelt system or mode is named with the choices, before anything is asked of
    the sandbox (a typo read as "no running sapp emulator ... is `hub sandbox up`
    running?")."""
    if value not in choices:
        raise typer.BadParameter(
            f"{value!r}{closest(value, choices)}; choose from {', '.join(choices)}",
            param_hint=what,
        )


@app.command("fault")
def fault(
    system: str = typer.Argument(..., help="salesforce, sap, pim or wms"),
    mode: str = typer.Argument(
        ..., help="429, 500, 503, latency, drop, token_expiry, reject, clear"
    ),
    rate: float = typer.Option(1.0, help="share of matching requests hit"),
    count: int | None = typer.Option(None, help="requests hit before the fault clears itself"),
    retry_after: int = typer.Option(1, help="Retry-After seconds (429, 503)"),
    latency_ms: int = typer.Option(0, help="added latency (latency mode)"),
    after: int = typer.Option(0, help="requests let through before the fault starts"),
    path: str | None = typer.Option(None, help="regex: only matching paths are hit"),
    data_dir: Path | None = DATA_DIR,
) -> None:
    """Switch a fault on in a running emulator (mode clear: switch them all off)."""
    import httpx

    # imported here, not at the top: `hub --help` stays quick
    from sandbox.faults import FaultMode, FaultSpec
    from sandbox.runner import SYSTEMS

    _refuse_unknown(system, SYSTEMS, "system")
    _refuse_unknown(mode, (*get_args(FaultMode), "clear"), "mode")
    root = data_dir or _default_dir()
    env = settings.read_env_file(root / "sandbox.env")
    admin = env.get(f"SANDBOX_{system.upper()}_ADMIN_URL")
    if not admin:
        typer.echo(
            f"no running {system} emulator in {root} (is `hub sandbox up` running?)", err=True
        )
        raise typer.Exit(1)
    verify: Any = env.get("HUB_CA_BUNDLE") or True
    with httpx.Client(verify=verify, timeout=10) as client:
        if mode == "clear":
            response = client.delete(f"{admin}/faults")
        else:
            spec = {
                "mode": mode,
                "rate": rate,
                "count": count,
                "retry_after": retry_after,
                "latency_ms": latency_ms,
                "after": after,
                "path": path,
            }
            try:
                FaultSpec.model_validate(spec)
            except ValueError as exc:
                typer.echo(f"invalid fault: {exc}", err=True)
                raise typer.Exit(2) from None
            response = client.post(f"{admin}/faults", json=spec)
    if response.status_code != 200:
        typer.echo(f"{system}: HTTP {response.status_code}: {response.text[:300]}", err=True)
        raise typer.Exit(1)
    typer.echo(json.dumps(response.json(), sort_keys=True))

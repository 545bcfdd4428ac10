"""Run the code location's jobs from the CLI against the real Dagster instance, so a run
started from a terminal is recorded in $DAGSTER_HOME and shows up in the UI like any other."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import fields
from typing import Any, TypeVar, cast

import typer
from dagster import AssetKey, DagsterInstance, Definitions, ExecuteInProcessResult
from rich.console import Console
from rich.live import Live

from app.dagster_home import ensure_dagster_home
from app.progress import BOARD, render
from app.stop import STOP
from hub.sync.engine import Counts

T = TypeVar("T")


def code_location() -> Definitions:
    """The definitions the CLI runs jobs from (tests substitute their own)."""
    from app.definitions import defs

    return defs


def run_job(
    name: str,
    run_config: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
    log_level: str = "WARNING",
    asset_selection: Sequence[AssetKey] | None = None,
    progress: bool = True,
) -> ExecuteInProcessResult:
    """Execute ``name`` in this process, recorded in the instance. The console shows
    warnings and errors only: the full event log is in the UI. With ``progress``, a terminal
    shows the counts per system and entity live while the run goes (app.progress)."""
    ensure_dagster_home()
    job = code_location().resolve_job_def(name)
    config = {"loggers": {"console": {"config": {"log_level": log_level}}}, **(run_config or {})}
    with DagsterInstance.get() as instance:
        result, stopped = _interruptible(
            lambda: job.execute_in_process(
                run_config=config,
                instance=instance,
                tags={"hub/launched-by": "cli", **(tags or {})},
                raise_on_error=False,
                asset_selection=asset_selection,
            ),
            progress,
        )
    if stopped:
        typer.echo(
            f"interrupted: {name} run {result.run_id} stopped after the batch in progress was "
            "committed (nothing is half-written); run the command again to resume from the "
            "cursors",
            err=True,
        )
        raise typer.Exit(INTERRUPTED)
    return result


def _wait(worker: threading.Thread, progress: bool, console: Console | None = None) -> None:
    """Wait for the run, drawing the progress board while it goes when stderr is a
    terminal (quiet in a pipe, a log file or CI)."""
    console = console or Console(stderr=True)
    BOARD.clear()
    if not (progress and console.is_terminal):
        while worker.is_alive():
            worker.join(0.2)
        return
    with Live(console=console, refresh_per_second=4, transient=True) as live:
        while worker.is_alive():
            live.update(render(BOARD.lines(), time.monotonic() - BOARD.started))
            worker.join(0.25)


#: the shell's exit status for a command stopped by SIGINT
INTERRUPTED = 130


def _interruptible(execute: Callable[[], T], progress: bool = False) -> tuple[T, bool]:
    """Run ``execute`` (a Dagster run) in a worker thread while this, the main thread,
    takes SIGINT and SIGTERM: the first asks the run to stop after its current batch
    (app.stop), a second abandons it at once. See app.stop for why not Dagster's handling.

    Returns the run's outcome and whether a stop was asked for. The request ends with the
    run: a later run in the same process (a test session, a notebook) must not start
    already stopped."""
    STOP.clear()
    if threading.current_thread() is not threading.main_thread():
        return execute(), False  # only the main thread may take signals
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["value"] = execute()
        except BaseException as exc:  # re-raised in the main thread
            outcome["error"] = exc

    def on_signal(signum: int, _frame: Any) -> None:
        if STOP.is_set():
            typer.echo("abandoned: exiting now; the run may show as started until run "
                       "monitoring fails it", err=True)  # fmt: skip
            os._exit(INTERRUPTED)
        STOP.set()
        typer.echo(
            f"{signal.Signals(signum).name}: stopping after the batch in progress is "
            "committed (again to abandon it now)",
            err=True,
        )

    worker = threading.Thread(target=work, name="hub-run", daemon=True)
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        worker.start()
        _wait(worker, progress)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        stopped = STOP.is_set()
        STOP.clear()
    if "error" in outcome:
        raise outcome["error"]
    return cast(T, outcome["value"]), stopped


#: the sync table's columns and --json keys: every count the engine keeps
COUNT_FIELDS = tuple(f.name for f in fields(Counts))


def sync_counts(result: ExecuteInProcessResult) -> dict[str, dict[str, dict[str, int]]]:
    """{system: {entity: counts}} summed over the run's extract and push materializations
    (golden-record changes under the pseudo-system "hub")."""
    out: dict[str, dict[str, dict[str, int]]] = {}

    def add(system: str, entity: str, values: dict[str, Any]) -> None:
        slot = out.setdefault(system, {}).setdefault(entity, dict.fromkeys(COUNT_FIELDS, 0))
        for name in COUNT_FIELDS:
            slot[name] += int(values.get(name, 0) or 0)

    for event in result.get_asset_materialization_events():
        mat = event.materialization
        if len(mat.asset_key.path) != 2:
            continue
        system, name = mat.asset_key.path
        entity = name.removesuffix("_extract").removesuffix("_golden")
        if "read" in mat.metadata:  # an extract or a push
            counts = {k: v.value for k, v in mat.metadata.items() if k in COUNT_FIELDS}
            add(system, entity, counts)
        # golden-record changes: the extracts' merges, and the golden asset's quarantine
        # retry and delivery planning
        golden = mat.metadata.get("golden_changes")
        if golden is not None and isinstance(golden.value, dict):
            add("hub", entity, golden.value)
    return out


def failure_summary(result: ExecuteInProcessResult) -> str:
    """The failed steps of a run and why, in one line (the full story is in the UI)."""
    messages = []
    for event in result.all_events:
        if event.event_type_value != "STEP_FAILURE":
            continue
        data = event.event_specific_data
        user = getattr(data, "user_failure_data", None)
        error = getattr(data, "error", None)
        text = (user.description if user and user.description else None) or (
            error.message.strip() if error else "failed"
        )
        messages.append(f"{event.step_key}: {text}")
    return "; ".join(messages) or "see the run in the Dagster UI"

"""`hub reconcile`: run the Dagster ``reconcile`` job (so the run shows in the UI) and
print what that run saw.

With ``--json`` stdout carries exactly one JSON array - one object per finding observed
in this run - and nothing else: Dagster's and the connectors' logging goes to stderr, and
anything a library prints while the job runs is redirected there too.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import typer
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.cli.options import ALL, chosen, entity_option, system_option
from connectors.registry import NAMES as SYSTEM_NAMES
from hub.model import ENTITY_ORDER
from hub.store import findings as finding_store
from hub.store.models import Finding

if TYPE_CHECKING:  # dagster is imported when a run starts, not for every `hub` command
    from dagster import ExecuteInProcessResult

#: The keys of every finding object (``--json``), in order. ``system_id`` is the system's
#: own id of the record (``external_id`` is kept as an alias); amounts are signed minor
#: units of ``currency``, expected - actual.
FINDING_KEYS = (
    "id",
    "entity",
    "key",
    "system",
    "system_id",
    "external_id",
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


def finding_json(f: Finding) -> dict[str, Any]:
    """One finding as ``hub reconcile --json`` / ``hub findings --json`` print it."""
    return {
        "id": f.id,
        "entity": f.entity,
        "key": f.key,
        "system": f.system,
        "system_id": f.external_id,
        "external_id": f.external_id,
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


def findings_of_run(engine: Engine, run_id: str) -> list[dict[str, Any]]:
    """Findings a reconciliation run observed (not those it resolved), in a stable order."""
    with Session(engine) as s:
        return [finding_json(f) for f in finding_store.observed_in_run(s, run_id)]


def run_reconcile(entity: str, system: str) -> ExecuteInProcessResult:
    """The code location's ``reconcile`` job, recorded in $DAGSTER_HOME's instance."""
    from app.cli.launch import run_job
    from app.defs.recon import RECONCILE_OP

    return run_job(
        "reconcile",
        run_config={"ops": {RECONCILE_OP: {"config": {"entity": entity, "system": system}}}},
        tags={"hub/entity": entity, "hub/system": system},
        log_level="CRITICAL",
    )


def _summary(result: ExecuteInProcessResult) -> dict[str, Any]:
    from app.defs.recon import RECONCILIATION_KEY

    for event in result.get_asset_materialization_events():
        mat = event.materialization
        if mat.asset_key == RECONCILIATION_KEY:
            return {k: v.value for k, v in mat.metadata.items()}
    return {}


#: The findings table: (header, widest a cell may be; ``None``: never cut). The id comes
#: first and whole (``hub resync --finding ID`` takes it), the values last and whole; a
#: longer cell is cut with an ellipsis (``--json`` has it all), so columns never merge.
TABLE_COLUMNS: tuple[tuple[str, int | None], ...] = (
    ("ID", None),
    ("SEVERITY", 8),
    ("ENTITY", 12),
    ("KEY", 28),
    ("SYSTEM", 10),
    ("KIND", 10),
    ("FIELD", 28),
    ("AT STAKE", 24),
    ("EXPECTED / ACTUAL", None),
)
GAP = "  "


def _fit(text: str, width: int | None) -> str:
    return text if width is None or len(text) <= width else text[: width - 1] + "…"


def print_table(rows: Sequence[dict[str, Any]]) -> None:
    """Findings as aligned columns two spaces apart, a header first (nothing if none)."""
    if not rows:
        return
    cells = [
        [
            _fit(text, width)
            for text, (_, width) in zip(
                (
                    r["id"],
                    r["severity"],
                    r["entity"],
                    r["key"],
                    r["system"],
                    r["kind"],
                    r["field"] or "",
                    ""
                    if r["amount_at_stake"] is None
                    else f"{r['amount_at_stake']} {r['currency']}",
                    f"expected={json.dumps(r['expected'])} actual={json.dumps(r['actual'])}",
                ),
                TABLE_COLUMNS,
                strict=True,
            )
        ]
        for r in rows
    ]
    headers = [name for name, _ in TABLE_COLUMNS]
    widths = [max(len(row[i]) for row in [headers, *cells]) for i in range(len(headers))]
    for row in [headers, *cells]:
        typer.echo(GAP.join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def reconcile(
    entity: list[str] | None = entity_option(
        with_all=True, help="only these entities (repeatable; default all)"
    ),
    system: list[str] | None = system_option(
        with_all=True, help="only these systems (repeatable; default all configured)"
    ),
    as_json: bool = typer.Option(
        False, "--json", help="only a JSON array of this run's findings on stdout"
    ),
) -> None:
    """Compare every configured system with the golden records; print the findings.

    Runs the Dagster reconcile job (one run per chosen entity and system; one run when
    all). Amounts are minor units, expected minus actual. With --json stdout is one JSON
    array of the findings the runs saw and nothing else; if a run fails, nothing is
    printed on stdout and the exit code is 1.
    """
    from app.cli.launch import failure_summary
    from hub.store.db import create_store_engine

    entities = [ALL] if not entity or ALL in entity else chosen(entity, ENTITY_ORDER)
    systems = [ALL] if not system or ALL in system else chosen(system, SYSTEM_NAMES)
    runs = []
    for one_entity in entities:
        for one_system in systems:
            with contextlib.redirect_stdout(sys.stderr):
                result = run_reconcile(one_entity, one_system)
            if not result.success:
                typer.echo(
                    f"reconcile run {result.run_id} failed: {failure_summary(result)}", err=True
                )
                raise typer.Exit(1)
            runs.append(result)
    engine = create_store_engine()
    try:
        seen = [(result, findings_of_run(engine, result.run_id)) for result in runs]
    finally:
        engine.dispose()
    rows = [row for _, found in seen for row in found]
    if as_json:
        typer.echo(json.dumps(rows, default=str))
        return
    print_table(rows)
    for result, found in seen:
        summary = _summary(result)
        for system_name, reason in (summary.get("skipped") or {}).items():
            typer.echo(f"skipped {system_name}: {reason}", err=True)
        typer.echo(
            f"reconcile run {result.run_id}: {len(found)} finding(s) in "
            f"{', '.join(summary.get('systems') or []) or 'no system'}; "
            f"new {summary.get('new', 0)}, resolved {summary.get('resolved', 0)}; "
            f"by kind {summary.get('by_kind', {})}; "
            f"money at stake {summary.get('amount_at_stake_minor', {})}",
            err=True,
        )


def findings(
    open_only: bool = typer.Option(False, "--open", help="only findings still open"),
    entity: list[str] | None = entity_option(),
    system: list[str] | None = system_option(),
    as_json: bool = typer.Option(False, "--json", help="a JSON array on stdout, nothing else"),
) -> None:
    """Drift findings from the store, with their history.

    The id in the first column is what hub resync --finding takes. --json prints the
    shape hub reconcile --json prints (amounts in minor units of the finding's currency).
    """
    from hub.store.db import create_store_engine

    engine = create_store_engine()
    try:
        with Session(engine) as s:
            found = [
                f
                # entity leads the listing's order, so one query per entity in name order
                # lists them as one query would
                for one in (sorted(set(entity)) if entity else [None])
                for f in finding_store.list_findings(
                    s,
                    status="open" if open_only else None,
                    entity=one,
                    systems=system or None,
                )
            ]
            rows = [finding_json(f) for f in found]
    finally:
        engine.dispose()
    if as_json:
        typer.echo(json.dumps(rows, default=str))
        return
    print_table(rows)
    typer.echo(f"{len(rows)} finding(s)", err=True)

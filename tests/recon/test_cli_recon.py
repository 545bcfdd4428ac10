"""`hub reconcile` and `hub findings` through the real command line (Typer's runner, in
process): the Dagster job runs in the instance under $DAGSTER_HOME (so the UI lists it),
against in-memory systems and the real store; with --json stdout is one JSON array."""

from __future__ import annotations

import json

import pytest
import typer
from dagster import DagsterInstance
from typer.testing import CliRunner

from app.cli import recon as cli_recon
from app.defs.recon import recon_definitions
from app.defs.resources import HubStoreResource
from tests.recon.test_recon_dagster import Holder, Unconfigured
from tests.sync.conftest import account

REQUIRED = {
    "id", "entity", "key", "system", "system_id", "kind", "field", "expected", "actual",
    "severity", "amount_at_stake", "currency", "first_seen", "last_seen", "status",
}  # fmt: skip


@pytest.fixture
def cli(setup, monkeypatch):  # type: ignore[no-untyped-def]
    make, crm, erp, engine = setup
    for i, name in enumerate(("Acme GmbH", "Beta AG")):
        crm.put(account(name, Tax_Id__c=f"DE12345678{i}"))
    sync = make()
    sync.run()
    url = engine.url.render_as_string(False)
    monkeypatch.setenv("HUB_DATABASE_URL", url)
    resources = {
        "hub_store": HubStoreResource(database_url=url),
        "salesforce": Holder(crm),
        "sap": Holder(erp),
        **{s: Unconfigured(s) for s in ("billing", "pim", "wms")},
    }
    defs = recon_definitions(list(sync.specs.values()), sync.code_lists, resources)
    monkeypatch.setattr("app.cli.launch.code_location", lambda: defs)
    app = typer.Typer()
    app.command("reconcile")(cli_recon.reconcile)
    app.command("findings")(cli_recon.findings)
    return app, erp


def test_reconcile_json_is_only_the_runs_findings(cli) -> None:
    app, erp = cli
    beta = next(r for r in erp.rows.values() if r["CustomerName"] == "Beta AG")
    beta["TaxNumber"] = "DE999"
    result = CliRunner().invoke(app, ["reconcile", "--json"])
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 1
    [row] = rows
    assert set(row) >= REQUIRED
    assert (row["entity"], row["key"], row["system"], row["kind"], row["field"]) == (
        "customer",
        beta["YY1_HubId"],
        "sap",
        "mismatch",
        "tax_id",
    )
    assert (row["expected"], row["actual"], row["system_id"]) == (
        "DE123456781",
        "DE999",
        beta["Id"],
    )
    assert row["severity"] == "error" and row["status"] == "open"
    # the run is in the instance the UI reads
    with DagsterInstance.get() as instance:
        runs = instance.get_runs(limit=1)
    assert runs and runs[0].job_name == "reconcile" and runs[0].tags["hub/launched-by"] == "cli"

    # fixed: the next run sees nothing and `hub findings` shows the history
    beta["TaxNumber"] = "DE123456781"
    result = CliRunner().invoke(app, ["reconcile", "--json", "--system", "sap"])
    assert json.loads(result.stdout) == []
    listed = json.loads(CliRunner().invoke(app, ["findings", "--json"]).stdout)
    assert [(f["id"], f["status"]) for f in listed] == [(row["id"], "resolved")]
    assert json.loads(CliRunner().invoke(app, ["findings", "--open", "--json"]).stdout) == []


def test_reconcile_table_and_bad_options(cli) -> None:
    app, erp = cli
    del erp.rows[next(iter(erp.rows))]
    result = CliRunner().invoke(app, ["reconcile", "--entity", "customer"])
    assert result.exit_code == 0, result.stderr
    assert "missing" in result.stdout and "1 finding(s)" in result.stderr
    bad = CliRunner().invoke(app, ["reconcile", "--entity", "planet"])
    assert bad.exit_code != 0 and "choose from" in bad.stderr


def test_findings_table_leads_with_the_id_and_keeps_columns_apart(tmp_path, monkeypatch) -> None:
    """`hub resync --finding ID` needs the id, so the table shows it whole, first; a long
    key or field is cut with an ellipsis instead of running into the next column."""
    from sqlalchemy.orm import Session

    from app.cli.main import app as hub
    from hub.store.db import create_store_engine
    from hub.store.findings import finding_id
    from hub.store.migrate import upgrade
    from hub.store.models import Finding

    url = f"sqlite:///{tmp_path / 'hub.sqlite'}"
    upgrade(url)
    long_key = "SUB-" + "7" * 60
    long_field = "a_field_name_far_longer_than_any_column_should_be"
    made = [
        ("customer", "CUS-0000001", "sap", "mismatch", "tax_id", "DE1", "DE2", None),
        ("subscription", long_key, "salesforce", "missing", None, None, None, None),
        ("invoice", "INV-0000003", "billing", "mismatch", long_field, 1000, 900, 100),
    ]
    engine = create_store_engine(url)
    with Session(engine) as s:
        for entity, key, system, kind, field, expected, actual, stake in made:
            s.add(
                Finding(
                    id=finding_id(entity, key, system, kind, field),
                    entity=entity,
                    key=key,
                    system=system,
                    kind=kind,
                    field=field,
                    expected=expected,
                    actual=actual,
                    severity="error",
                    amount_at_stake_minor=stake,
                    currency="EUR" if stake else None,
                )
            )
        s.commit()
    engine.dispose()
    monkeypatch.setenv("HUB_DATABASE_URL", url)

    result = CliRunner().invoke(hub, ["findings"])
    assert result.exit_code == 0, result.output
    header, *lines = result.stdout.splitlines()
    assert header.split()[0] == "ID"
    listed = json.loads(CliRunner().invoke(hub, ["findings", "--json"]).stdout)
    assert len(lines) == len(listed) == 3
    for line, row in zip(lines, listed, strict=True):
        cells = line.split("  ")
        cells = [c.strip() for c in cells if c.strip()]
        assert cells[0] == row["id"]  # whole, first, apart from what follows
        assert cells[1:3] == ["error", row["entity"]]
        # a cut cell ends in an ellipsis and starts the value; it never merges with the
        # next column
        key_cell = cells[3]
        assert key_cell == row["key"] or (
            key_cell.endswith("…") and row["key"].startswith(key_cell[:-1])
        )
        assert cells[4:6] == [row["system"], row["kind"]]
    by_key = {row["key"]: line for line, row in zip(lines, listed, strict=True)}
    assert long_key not in by_key[long_key]
    assert long_field not in by_key["INV-0000003"]
    assert "100 EUR" in by_key["INV-0000003"]

"""`hub sync --dry-run` (issue 15, "Dry run on every write path"): after drift planted in
Salesforce through its own API (an Account renamed, another deleted), a dry run reports
the updates with each field's before -> after, the deactivation billing would get and the
tombstone, and leaves the hub store and every system exactly as they were (every table
and every system's records compared before and after), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from app.cli.main import app
from connectors.base import Connector
from connectors.registry import configured_systems
from hub.store import create_store_engine
from hub.store.migrate import upgrade
from hub.store.models import Base
from hub.sync.dry_run import dry_run_sync
from hub.sync.engine import SyncEngine
from hub.systems import connect
from sandbox.runner import running_sandbox

pytestmark = pytest.mark.slow


def _store_rows(store: sa.Engine) -> dict[str, list[str]]:
    with store.connect() as conn:
        return {
            table.name: sorted(
                json.dumps(dict(row._mapping), sort_keys=True, default=str)
                for row in conn.execute(sa.select(table))
            )
            for table in Base.metadata.sorted_tables
        }


def _system_rows(connectors: dict[str, Connector]) -> dict[str, list[str]]:
    out = {}
    for system, connector in connectors.items():
        for entity in connector.entities():
            out[f"{system}.{entity}"] = sorted(
                json.dumps(r, sort_keys=True, default=str)
                for batch in connector.read_snapshot(entity)
                for r in batch.records
            )
    return out


def test_a_dry_run_reports_the_plan_and_changes_nothing(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    upgrade(store_url)
    store = create_store_engine(store_url)
    with running_sandbox(tmp_path / "sb", seed=6, customers=8) as sb:
        connectors = {s: connect(s, sb.env) for s in configured_systems(sb.env)}
        SyncEngine(store, connectors).run()
        sf = connectors["salesforce"]._client()  # type: ignore[attr-defined]
        rows = sf.query("SELECT Id, Hub_Id__c, Name FROM Account ORDER BY Hub_Id__c")["records"]
        renamed, deleted = rows[0], rows[1]
        sf.Account.update(renamed["Id"], {"Name": "Renamed In Salesforce GmbH"})
        sf.Account.delete(deleted["Id"])
        store_before, systems_before = _store_rows(store), _system_rows(connectors)

        report = dry_run_sync(store, connectors, entities=["customer"])

        assert report.errors == []
        assert report.counts["salesforce"]["customer"]["deleted"] == 1
        assert report.tombstoned == [
            {"entity": "customer", "key": deleted["Hub_Id__c"], "deleted_in": "salesforce"}
        ]
        assert report.planned[("billing", "customer")]["deactivate"] == 1
        (to_sap,) = [
            p for p in report.pushes if p["system"] == "sap" and p["key"] == renamed["Hub_Id__c"]
        ]
        assert to_sap["operation"] == "update"
        assert to_sap["changes"]["legal_name"] == {
            "before": renamed["Name"],
            "after": "Renamed In Salesforce GmbH",
        }
        assert _store_rows(store) == store_before
        assert _system_rows(connectors) == systems_before

        # the CLI prints the same plan, and writes nothing either
        for name, value in {**sb.env, "HUB_DATABASE_URL": store_url}.items():
            monkeypatch.setenv(name, value)
        result = CliRunner().invoke(app, ["sync", "--entity", "customer", "--dry-run"])
        assert result.exit_code == 0, result.output
        assert "legal_name" in result.stdout and "Renamed In Salesforce GmbH" in result.stdout
        assert "nothing was written" in result.stderr
        assert _store_rows(store) == store_before
        assert _system_rows(connectors) == systems_before
        for connector in connectors.values():
            connector.close()
    store.dispose()

"""`hub listen` refuses an un-migrated hub store before subscribing to anything (it would
otherwise acknowledge events it cannot store), naming the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli.main import app


def test_listen_on_a_store_without_schema_says_run_db_upgrade(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HUB_DATABASE_URL", f"sqlite:///{tmp_path}/empty.sqlite")
    monkeypatch.setenv("SAP_ODATA_URL", "https://127.0.0.1:9/sap")
    monkeypatch.setenv("HUB_EVENTS_SECRET", "s3cret-for-test")
    result = CliRunner().invoke(app, ["listen", "--no-report"])
    assert result.exit_code == 2, result.output
    assert "hub db upgrade" in result.stderr
    assert "none" in result.stderr

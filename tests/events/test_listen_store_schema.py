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


def test_listen_names_a_webhook_port_already_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """uvicorn logged a traceback and the listener said only that the webhook "did not
    start"; now the address, the cause and the fix (HUB_EVENTS_PORT) are named."""
    import socket

    from hub.store.migrate import upgrade

    url = f"sqlite:///{tmp_path}/hub.sqlite"
    upgrade(url)
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setenv("HUB_DATABASE_URL", url)
        monkeypatch.setenv("HUB_DATA_DIR", str(tmp_path))
        monkeypatch.setenv("SAP_ODATA_URL", "https://127.0.0.1:9/sap")
        monkeypatch.setenv("HUB_EVENTS_SECRET", "s3cret-for-test")
        monkeypatch.setenv("HUB_EVENTS_PORT", str(port))
        result = CliRunner().invoke(app, ["listen", "--no-report"])
    assert result.exit_code == 1, result.output
    assert f"the SAP webhook cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "HUB_EVENTS_PORT" in result.stderr and "s3cret-for-test" not in result.output

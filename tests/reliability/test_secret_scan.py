"""After a full sync, a reconciliation, a resync and a quarantine retry through the real
Dagster jobs (as `hub sync`, `hub reconcile`, `hub resync` and `hub quarantine retry` run
them, recorded in the isolated $DAGSTER_HOME), no secret of the sandbox's environment
appears anywhere the hub leaves text behind: log records of every logger at DEBUG, the
Dagster event log (messages and metadata), run config and tags, the hub store's
quarantine payloads and reasons and its findings, and every file under $DAGSTER_HOME.

Tokens the emulators issued to the hub are not known to the test, so besides the tokens it
fetches itself with the same credentials, anything shaped like a JWT or a bearer
credential is a failure too. A token expiry and a 429 burst run during the sync, so the
re-authentication and retry paths log what they log."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from dagster import DagsterInstance

from app.cli.launch import run_job
from hub.store import create_store_engine
from sandbox.runner import running_sandbox
from tests.connectors.test_no_secrets import SECRET_VARS, mint_tokens

pytestmark = pytest.mark.slow

JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")
BEARER = re.compile(r"(?i)\bbearer\s+(?!\*|<|\[|redacted)[A-Za-z0-9._~+/=-]{12,}")


def _secrets(env: dict[str, str]) -> dict[str, str]:
    """name -> value of every secret the scan looks for, tokens fetched here included."""
    found = {name: env[name] for name in SECRET_VARS if env.get(name)}
    pem = Path(env["SALESFORCE_PRIVATE_KEY_FILE"]).read_text()
    body = [line for line in pem.splitlines() if line and not line.startswith("-----")]
    for i, line in enumerate(body[1:-1:4]):  # any full line of the key body
        found[f"private key line {i}"] = line
    found.update(mint_tokens(env))  # what the token endpoints hand out
    return {k: v for k, v in found.items() if len(v) >= 6}


class _Everything(logging.Handler):
    """Keeps every record's formatted message, exception text and raw args."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        parts = [record.getMessage(), repr(record.args), repr(record.__dict__.get("extra"))]
        if record.exc_info:
            parts.append(logging.Formatter().formatException(record.exc_info))
        self.texts.append(" ".join(parts))


def _all_loggers() -> Iterator[logging.Logger]:
    yield logging.getLogger()
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):
            yield logger


def _files(root: Path) -> Iterator[tuple[str, str]]:
    for path in root.rglob("*"):
        if path.is_file():
            yield str(path), path.read_bytes().decode("utf-8", "replace")


def test_no_secret_anywhere_after_sync_reconcile_resync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler = _Everything()
    loggers = list(_all_loggers())
    saved = [(lg, lg.level) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    try:
        with running_sandbox(tmp_path / "sb", seed=9, customers=6) as sb:
            for name, value in sb.env.items():
                monkeypatch.setenv(name, value)
            hub_url = f"sqlite:///{tmp_path / 'hub.sqlite'}"
            monkeypatch.setenv("HUB_DATABASE_URL", hub_url)
            monkeypatch.setenv("HUB_DATA_DIR", str(tmp_path / "data"))
            secrets = _secrets(sb.env)
            assert {*SECRET_VARS, "PIM access_token", "private key line 0"} <= set(secrets)
            verify = sb.env.get("HUB_CA_BUNDLE") or True
            for system, fault in (
                ("pim", {"mode": "token_expiry", "after": 3, "count": 1}),
                ("salesforce", {"mode": "token_expiry", "after": 4, "count": 1}),
                ("wms", {"mode": "429", "count": 2, "retry_after": 0}),
            ):
                httpx.post(
                    sb.admin_url(system) + "/faults", json=fault, verify=verify
                ).raise_for_status()
            runs = [run_job("store_maintenance", log_level="DEBUG")]
            runs.append(run_job("sync_all", log_level="DEBUG"))
            runs.append(run_job("reconcile", log_level="DEBUG"))
            config = {
                "entity": "customer",
                "hub_ids": ["CUS-0000001"],
                "systems": ["salesforce"],
                "dry_run": False,  # pushes, so every write path's logs are scanned
            }
            runs.append(
                run_job(
                    "resync",
                    run_config={"ops": {"resync_records": {"config": config}}},
                    log_level="DEBUG",
                )
            )
            runs.append(run_job("quarantine_retry", log_level="DEBUG"))
            assert [r.success for r in runs[:4]] == [True] * 4, [r.run_id for r in runs]
    finally:
        for lg, level in saved:
            lg.removeHandler(handler)
            lg.setLevel(level)

    places: dict[str, str] = {}
    places["log records"] = "\n".join(handler.texts)
    assert len(handler.texts) > 50, "the scan saw the runs' logging"
    with DagsterInstance.get() as instance:
        for result in runs:
            run = instance.get_run_by_id(result.run_id)
            assert run is not None
            places[f"run {run.job_name} config+tags"] = repr(run.run_config) + repr(run.tags)
            texts = []
            for entry in instance.all_logs(result.run_id):
                texts.append(entry.user_message or "")
                texts.append(repr(entry.dagster_event))  # metadata, failures, outputs
            places[f"run {run.job_name} event log"] = "\n".join(texts)
    engine = create_store_engine(hub_url)
    with engine.connect() as conn:
        for table in ("quarantine", "findings", "outbox"):
            if sa.inspect(conn).has_table(table):
                rows = conn.execute(sa.text(f"SELECT * FROM {table}")).all()
                places[f"hub store {table}"] = repr(rows)
    assert any(key.startswith("hub store quarantine") for key in places)
    for path, text in _files(Path(os.environ["DAGSTER_HOME"])):
        places[path] = text

    leaks: list[str] = []
    for where, text in places.items():
        for name, value in secrets.items():
            if value in text:
                leaks.append(f"{name} in {where}")
        for pattern in (JWT, BEARER):
            for match in pattern.findall(text):
                leaks.append(f"token-shaped {match[:12]}... in {where}")
    assert leaks == [], leaks

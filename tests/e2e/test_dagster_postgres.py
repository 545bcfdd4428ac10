"""The production shape end to end: `dagster dev` with the documented production instance
(docs/dagster-production.yaml: PostgreSQL storage, queued run coordinator, run monitoring)
and the sandbox up. Over the GraphQL API, as the UI does, it launches the sync, the nightly
reconciliation and a resync, reads the asset check results, and sees a drift the resync
repaired resolved by the next reconciliation."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from app.cli.launch import run_job
from connectors.billing_schema import accounts
from hub.store import create_store_engine
from hub.store.models import Finding
from sandbox.devserver import REPO_ROOT, dagster_dev
from sandbox.postgres import fresh_database
from sandbox.runner import running_sandbox
from tests.e2e.test_dagster_ui import wait_for_run

if TYPE_CHECKING:  # dagster_graphql is imported by the test that uses it, not by collection
    from dagster_graphql import DagsterGraphQLClient

pytestmark = pytest.mark.slow

CHECKS_QUERY = """
query Checks($path: [String!]!) {
  assetCheckExecutions(assetKey: {path: $path}, checkName: "drift", limit: 5) {
    runId
    status
    evaluation { success severity metadataEntries { label } }
  }
}
"""


#: every step of a run in the run's own process: the default executor starts a process per
#: step, each importing the code location again (a reconcile run: 7), which is most of this
#: test's CPU and not what it checks (the instance, the queue, GraphQL, the checks)
IN_PROCESS = {"execution": {"config": {"in_process": {}}}}


def _launch(client: DagsterGraphQLClient, job: str, config: dict[str, Any] | None = None) -> str:
    run_id = client.submit_job_execution(job, run_config={**(config or {}), **IN_PROCESS})
    status = wait_for_run(client, run_id, timeout=300)
    assert status == "SUCCESS", f"{job} run {run_id} ended {status}"
    return run_id


def test_sync_reconcile_resync_over_graphql_on_a_postgres_instance(
    tmp_path: Path, postgres_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pg = make_url(fresh_database(postgres_server, "dagster_e2e"))
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO_ROOT / "docs/dagster-production.yaml").read_text())
    store = f"sqlite:///{tmp_path / 'hub.sqlite'}"
    with running_sandbox(tmp_path / "sb", seed=9, customers=20) as sb:
        env = {
            **sb.env,
            "HUB_DATA_DIR": str(tmp_path / "data"),
            "HUB_DATABASE_URL": store,
            "DAGSTER_PG_HOST": pg.host or "127.0.0.1",
            "DAGSTER_PG_PORT": str(pg.port),
            "DAGSTER_PG_DB": pg.database or "",
            "DAGSTER_PG_USER": pg.username or "postgres",
            "DAGSTER_PG_PASSWORD": pg.password or "",
        }
        for name, value in {**env, "DAGSTER_HOME": str(home)}.items():
            monkeypatch.setenv(name, value)
        # set-up the CLI's way (in process, recorded in the same PostgreSQL instance)
        for job in ("store_maintenance", "sync_all"):
            assert run_job(job).success, job
        # a drift the sync cannot see: billing's copy of a name changed silently
        billing = sa.create_engine(sb.billing_url)
        with billing.begin() as conn:
            key = conn.execute(
                sa.select(accounts.c.hub_id).order_by(accounts.c.hub_id).limit(1)
            ).scalar_one()
            conn.execute(
                sa.update(accounts)
                .where(accounts.c.hub_id == key)
                .values(legal_name="Renamed Behind The Hub's Back")
            )
        billing.dispose()

        with dagster_dev(home, env=env) as url:
            from dagster_graphql import DagsterGraphQLClient

            host, port = url.removeprefix("http://").split(":")
            client = DagsterGraphQLClient(host, port_number=int(port))
            first = _launch(client, "reconcile")
            assert _open(store, key, "billing"), "reconciliation reports the silent drift"
            result = client._execute(CHECKS_QUERY, {"path": ["hub", "customer_golden"]})
            (latest, *_) = result["assetCheckExecutions"]
            assert latest["runId"] == first and latest["status"] == "FAILED"  # drift is open
            evaluation = latest["evaluation"]
            assert not evaluation["success"] and evaluation["severity"] in ("WARN", "ERROR")
            labels = {m["label"] for m in evaluation["metadataEntries"]}
            assert {"open", "by_kind", "by_system"} <= labels

            resync = {
                "ops": {
                    "resync_records": {
                        "config": {
                            "entity": "customer",
                            "hub_ids": [key],
                            "systems": ["billing"],
                            "dry_run": False,  # the job plans only by default
                        }
                    }
                }
            }
            _launch(client, "resync", resync)
            second = _launch(client, "reconcile")
            assert not _open(store, key, "billing"), "resynced drift is resolved"
            checks = client._execute(CHECKS_QUERY, {"path": ["hub", "customer_golden"]})
            runs = [e["runId"] for e in checks["assetCheckExecutions"]]
            assert runs[:2] == [second, first]
    with sa.create_engine(pg.render_as_string(hide_password=False)).connect() as conn:
        launched = conn.execute(sa.text("select count(*) from runs")).scalar_one()
    assert launched == 5  # every run, CLI or UI, lives in the PostgreSQL instance


def _open(store: str, key: str, system: str) -> list[str]:
    engine = create_store_engine(store)
    deadline = time.monotonic() + 5
    try:
        while True:
            with engine.connect() as conn:
                rows = list(
                    conn.execute(
                        sa.select(Finding.field).where(
                            Finding.key == key,
                            Finding.system == system,
                            Finding.status == "open",
                            Finding.kind == "mismatch",
                        )
                    ).scalars()
                )
            if rows or time.monotonic() > deadline:
                return [r for r in rows if r]
            time.sleep(0.2)
    finally:
        engine.dispose()

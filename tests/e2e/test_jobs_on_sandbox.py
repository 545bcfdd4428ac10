"""Every job of the code location, executed in process (as the CLI runs them, recorded in
the instance) against the seeded sandbox: store maintenance, the systems check, the full
sync, the reconciliation, a resync from its findings, a quarantine retry and the daily
analytics."""

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from dagster import DagsterInstance

from app.cli.launch import code_location, run_job, sync_counts
from app.cli.resync import findings_scopes
from connectors.billing_schema import allocations, subscriptions
from sandbox.runner import running_sandbox

pytestmark = pytest.mark.slow


def test_every_job_runs_against_the_sandbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_sandbox(tmp_path / "sb", seed=6, customers=15) as sb:
        for name, value in sb.env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("HUB_DATABASE_URL", f"sqlite:///{tmp_path / 'hub.sqlite'}")
        monkeypatch.setenv("HUB_DATA_DIR", str(tmp_path / "data"))
        ran = set()

        assert run_job("store_maintenance").success
        ran.add("store_maintenance")

        checked = run_job("systems_check")
        assert checked.success
        assert set(checked.output_for_node("check_systems_op")) == {
            "billing", "salesforce", "sap", "pim", "wms",
        }  # fmt: skip
        ran.add("systems_check")

        sync = run_job("sync_all")
        assert sync.success
        counts = sync_counts(sync)
        assert set(counts) == {"hub", "billing", "salesforce", "sap", "pim", "wms"}
        assert counts["hub"]["invoice"]["created"] > 0
        ran.add("sync_all")
        for entity in ("product", "customer", "subscription", "allocation", "invoice"):
            assert run_job(f"sync_{entity}").success, entity  # incremental: nothing to do
            ran.add(f"sync_{entity}")

        # billing pauses a subscription: the allocation golden asset plans the release of
        # its reserved delivery, the push assets deliver it, `hub sync` counts it
        billing = sa.create_engine(sb.billing_url)
        with billing.begin() as conn:
            sub_id = conn.execute(
                sa.select(allocations.c.subscription_id)
                .join(subscriptions, subscriptions.c.id == allocations.c.subscription_id)
                .where(allocations.c.status == "reserved", subscriptions.c.status == "active")
                .limit(1)
            ).scalar_one()
            conn.execute(
                sa.update(subscriptions)
                .where(subscriptions.c.id == sub_id)
                .values(status="paused", updated_at=datetime.now(UTC))
            )
        paused = run_job("sync_all")
        assert paused.success
        assert sync_counts(paused)["hub"]["allocation"]["updated"] >= 1
        with billing.connect() as conn:
            statuses = set(
                conn.scalars(
                    sa.select(allocations.c.status).where(allocations.c.subscription_id == sub_id)
                )
            )
        billing.dispose()
        assert "reserved" not in statuses and "released" in statuses

        recon = run_job("reconcile")
        assert recon.success
        ran.add("reconcile")

        scopes = findings_scopes().requests or [
            {"entity": "customer", "keys": ["CUS-0000001"], "system": "billing"}
        ]
        scope = scopes[0]
        config = {
            "entity": scope["entity"],
            "hub_ids": scope["keys"],
            "systems": [scope["system"]],
            "dry_run": False,  # the job plans only by default: this one repairs
        }
        resync = run_job("resync", run_config={"ops": {"resync_records": {"config": config}}})
        assert resync.success
        assert resync.output_for_node("resync_records")["selected"] == len(scope["keys"])
        ran.add("resync")

        plan = run_job(
            "sync_plan", run_config={"ops": {"plan_sync": {"config": {"entities": ["customer"]}}}}
        )
        assert plan.success and plan.output_for_node("plan_sync")["dry_run"] is True
        ran.add("sync_plan")

        retry = run_job("quarantine_retry")
        assert retry.success  # the WMS orphan stays: retried, not released
        assert retry.output_for_node("retry_quarantined").get("allocation", {}).get("open", 0) >= 1
        ran.add("quarantine_retry")

        analytics_job = code_location().resolve_job_def("analytics_daily")
        with DagsterInstance.get() as instance:
            analytics = analytics_job.execute_in_process(
                instance=instance, partition_key="2025-06-30", raise_on_error=False
            )
        assert analytics.success
        assert any(
            e.check_name == "movement_identity" and e.passed
            for e in analytics.get_asset_check_evaluations()
        )
        ran.add("analytics_daily")

    jobs = {j.name for j in code_location().resolve_all_job_defs() if not j.name.startswith("__")}
    assert ran == jobs, f"not run: {jobs - ran}"

"""The operator's repair walk in the real Dagster UI (headless Chromium, the sandbox up).

After a clean sync, SAP's own API renames a customer (SAP copies the name; Salesforce owns
it) and reconciliation sees it. In the browser the operator then:

1. opens the drift check of the golden customers and sees the finding (the record's hub
   id, the field and SAP's value in the check's ``top_findings``);
2. launches the resync job from the Launchpad choosing findings *by filter*
   (``from_latest_reconciliation``, ``entities: [customer]``, ``systems: [sap]``) as a
   dry run, and reads the plan in the run's metadata (before -> after for that record);
3. opens the dry run's config in the Launchpad again, flips ``dry_run`` to false and
   launches it for real;
4. launches ``reconcile`` (customers) from the Launchpad;
5. opens the drift check again: it passed, no customer finding is open.

This proves the UI alone carries an incident from finding to verified repair: the check
shows what drifted, the filtered dry run shows what would be pushed, and the check turns
green after the push. Screenshots of every step land in artifacts/ (01_... to 05_...).

The seed plants drift of its own, among it a customer conflict (SAP changed a name
Salesforce owns) that a repair by findings never pushes (it needs a person). It is settled
before the walk the way an operator would (a resync of that record by hub id), so the
check's verdict at the end is about the planted drift and its repair only.

Cost (the suite has a 10-minute budget): the UI's runs execute in process (a process per
step would import the code location again for each), the browser loads the app once and
then moves inside it, and it waits for runs on the idle Launchpad, not on the page of a
running run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from app.cli.launch import run_job
from hub.store.models import Finding
from hub.systems import connect
from sandbox.devserver import dagster_dev
from sandbox.runner import running_sandbox
from tests.e2e.browser import (
    app_goto,
    browser_page,
    dismiss_community_modal,
    launch_from_launchpad,
    launch_run,
    metadata_markdown,
    screenshot,
)
from tests.e2e.test_dagster_ui import wait_for_run

if TYPE_CHECKING:  # Playwright is imported by tests.e2e.browser when the test opens a page
    from playwright.sync_api import Locator, Page

pytestmark = pytest.mark.slow

#: what SAP's user typed over the customer's name (Salesforce owns legal_name)
SAP_NAME = "Renamed In SAP GmbH"
CHECK_PAGE = "/assets/hub/customer_golden?view=checks"
UI_TIMEOUT = 30_000
#: every step of a run in the run's own process: the default executor starts a process per
#: step (reconcile has seven), each importing the code location again - ~4 CPU seconds
#: apiece on the 2-core CI, for nothing this walk looks at
IN_PROCESS = """execution:
  config:
    in_process: {}
"""


def repair_config(dry_run: bool) -> str:
    """The resync job's Launchpad config: the open findings of the last reconciliation,
    narrowed to customers in SAP (no hub ids: chosen by filter)."""
    return f"""{IN_PROCESS}ops:
  resync_records:
    config:
      from_latest_reconciliation: true
      entities: [customer]
      systems: [sap]
      dry_run: {str(dry_run).lower()}
"""


RECONCILE_CONFIG = f"""{IN_PROCESS}ops:
  hub__reconciliation:
    config:
      entity: customer
"""
#: the same, for run_job (the walk is about customers: the other entities' reconciliation
#: would only cost time)
RECONCILE_CUSTOMERS = {"ops": {"hub__reconciliation": {"config": {"entity": "customer"}}}}


def open_findings(db_url: str, entity: str) -> list[tuple[str, str, str, str | None]]:
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(Finding.key, Finding.system, Finding.kind, Finding.field)
                .where(Finding.status == "open", Finding.entity == entity)
                .order_by(Finding.key)
            ).all()
    finally:
        engine.dispose()
    return [(r.key, r.system, r.kind, r.field) for r in rows]


def test_the_operator_repairs_drift_from_the_check_to_a_passing_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db_url = f"sqlite:///{tmp_path / 'hub.sqlite'}"
    with running_sandbox(tmp_path / "sb", seed=4, customers=10) as sb:
        env = {**sb.env, "HUB_DATA_DIR": str(tmp_path / "data"), "HUB_DATABASE_URL": db_url}
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        # the CLI's way (in process, same instance): the UI lists these runs too
        for job in ("store_maintenance", "sync_all"):
            assert run_job(job).success, job
        seeded = sorted({key for key, *_ in open_findings(db_url, "customer")})
        if seeded:  # the seed's own customer drift, settled by hub id (see the docstring)
            by_ids = {"entity": "customer", "hub_ids": seeded, "dry_run": False}
            assert run_job("resync", {"ops": {"resync_records": {"config": by_ids}}}).success
            assert open_findings(db_url, "customer") == []

        sap = connect("sap", sb.env)
        try:
            account = next(r for batch in sap.read_snapshot("customer") for r in batch.records)
            key = account["YY1_HubId"]
            renamed = {"YY1_HubId": key, "CustomerFullName": SAP_NAME}
            assert [w.error for w in sap.write_batch("customer", [renamed])] == [None]
        finally:
            sap.close()
        assert run_job("reconcile", RECONCILE_CUSTOMERS).success
        assert open_findings(db_url, "customer") == [(key, "sap", "mismatch", "legal_name")]

        home = Path(os.environ["DAGSTER_HOME"])
        with dagster_dev(home, env=env) as url, browser_page() as page:
            from dagster_graphql import DagsterGraphQLClient

            host, port = url.removeprefix("http://").split(":")
            client = DagsterGraphQLClient(host, port_number=int(port))
            page.set_default_timeout(UI_TIMEOUT)
            dismiss_community_modal(page)

            # 1. the drift check fails and names the record, the field and SAP's value
            page.goto(url + CHECK_PAGE)
            page.get_by_text("1 open customer finding(s)", exact=False).wait_for()
            top = metadata_markdown(page, page, "top_findings")
            row = top.locator("tr", has=page.get_by_role("cell", name=key, exact=True))
            for cell in ("sap", "mismatch", "legal_name", SAP_NAME):
                row.get_by_role("cell", name=cell, exact=True).wait_for()
            screenshot(page, "01_drift_check.png")

            # 2. the repair by filter, as a dry run: the plan puts the name back in SAP
            run_id = launch_from_launchpad(page, "resync", repair_config(dry_run=True))
            assert wait_for_run(client, run_id) == "SUCCESS"
            app_goto(page, f"/runs/{run_id}")
            output = open_step_output(page)
            output.get_by_role("cell", name="latest reconciliation", exact=True).wait_for()
            plan = metadata_markdown(page, output, "plan")
            plan.get_by_text("1 planned push(es).").wait_for()
            row = plan.locator("tr", has=page.get_by_role("cell", name=key, exact=True))
            row.get_by_role("cell", name="sap", exact=True).wait_for()
            row.get_by_text(f"legal_name: '{SAP_NAME}' -> ").wait_for()
            screenshot(page, "02_dry_run_plan.png")
            assert open_findings(db_url, "customer") != [], "a dry run repaired something"

            # 3. the same selection for real: the dry run's config again, dry_run flipped
            plan.get_by_role("button", name="Close").click()
            output.get_by_role("button", name="Done").click()
            page.get_by_role("dialog").wait_for(state="detached")
            page.get_by_text("Open in Launchpad").click()
            flag = page.locator(".CodeMirror-line", has_text="dry_run: true")
            flag.get_by_text("true", exact=True).dblclick()
            page.keyboard.insert_text("false")
            page.locator(".CodeMirror-line", has_text="dry_run: false").wait_for()
            run_id = launch_run(page)
            assert wait_for_run(client, run_id) == "SUCCESS"
            app_goto(page, f"/runs/{run_id}")
            output = open_step_output(page)
            dry_run = output.locator("tr", has=page.get_by_text("dry_run", exact=True))
            dry_run.get_by_role("cell", name="false", exact=True).wait_for()
            output.locator("tr", has=page.get_by_text("plan", exact=True)).wait_for()
            screenshot(page, "03_repair_run.png")

            # 4. reconcile the customers again, from the Launchpad too
            run_id = launch_from_launchpad(page, "reconcile", RECONCILE_CONFIG)
            assert wait_for_run(client, run_id) == "SUCCESS"
            app_goto(page, f"/runs/{run_id}")
            page.get_by_text("RUN_SUCCESS", exact=True).wait_for()
            screenshot(page, "04_reconcile_run.png")

            # 5. the check passes: nothing open, the record no longer listed
            app_goto(page, CHECK_PAGE)
            page.get_by_text("0 open customer finding(s)", exact=False).wait_for()
            page.get_by_text("Passed", exact=True).first.wait_for()
            assert page.get_by_text("top_findings", exact=True).count() == 0
            assert page.get_by_text(key).count() == 0
            screenshot(page, "05_check_passed.png")
        assert open_findings(db_url, "customer") == []


def open_step_output(page: Page) -> Locator:
    """The run page's STEP_OUTPUT event in full (its metadata table), in a dialog."""
    page.get_by_text("RUN_SUCCESS", exact=True).wait_for()
    page.get_by_text("STEP_OUTPUT", exact=True).wait_for()
    page.get_by_text("View full message").first.click()
    dialog = page.get_by_role("dialog").last
    dialog.get_by_text("STEP_OUTPUT", exact=True).wait_for()
    return dialog

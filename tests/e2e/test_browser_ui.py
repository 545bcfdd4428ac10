"""The real Dagster UI in headless Chromium, with the sandbox up: open the deployment, find
the resync job, launch it from the Launchpad with a typed config, see the run succeed, and
look at the drift checks of the golden customers; screenshots land in artifacts/."""

import os
import re
from pathlib import Path

import pytest
from dagster_graphql import DagsterGraphQLClient

from app.cli.launch import run_job
from sandbox.devserver import dagster_dev
from sandbox.runner import running_sandbox
from tests.e2e.browser import ARTIFACTS, browser_page, dismiss_community_modal
from tests.e2e.test_dagster_ui import wait_for_run

pytestmark = pytest.mark.slow

RESYNC_CONFIG = """ops:
  resync_records:
    config:
      entity: customer
      hub_ids: ["CUS-0000001", "CUS-0000002"]
      systems: ["billing", "salesforce"]
      dry_run: true
"""


def test_resync_from_the_launchpad_and_the_asset_checks_view(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    with running_sandbox(tmp_path / "sb", seed=4, customers=10) as sb:
        env = {
            **sb.env,
            "HUB_DATA_DIR": str(tmp_path / "data"),
            "HUB_DATABASE_URL": f"sqlite:///{tmp_path / 'hub.sqlite'}",
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        # the CLI's way (in process, same instance): the UI lists these runs too
        for job in ("store_maintenance", "sync_all", "reconcile"):
            assert run_job(job).success, job
        home = Path(os.environ["DAGSTER_HOME"])
        with dagster_dev(home, env=env) as url, browser_page() as page:
            host, port = url.removeprefix("http://").split(":")
            client = DagsterGraphQLClient(host, port_number=int(port))
            page.goto(f"{url}/jobs")
            dismiss_community_modal(page)
            page.locator("a", has_text=re.compile(r"^resync$")).first.click()
            page.get_by_role("tab", name="Launchpad").click()
            editor = page.locator(".CodeMirror").first
            editor.click()
            page.keyboard.press("Control+A")
            page.keyboard.press("Delete")
            page.keyboard.insert_text(RESYNC_CONFIG)
            page.get_by_role("button", name="Launch Run").click()
            page.wait_for_url("**/runs/**", timeout=30_000)
            run_id = page.url.rstrip("/").split("/runs/")[1].split("?")[0]
            assert wait_for_run(client, run_id) == "SUCCESS"
            page.reload()
            page.get_by_text("Success", exact=True).first.wait_for(timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "resync_run.png"))

            page.goto(f"{url}/assets/hub/customer_golden?view=checks")
            page.get_by_text("drift", exact=True).first.wait_for(timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "asset_checks.png"), full_page=True)

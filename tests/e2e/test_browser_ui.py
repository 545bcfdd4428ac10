"""The real Dagster UI in headless Chromium: open the deployment, find a job, launch it
from the Launchpad and see the run succeed; screenshots land in artifacts/."""

from pathlib import Path

import pytest
from dagster_graphql import DagsterGraphQLClient

from hub.devserver import dagster_dev
from tests.e2e.browser import ARTIFACTS, browser_page, dismiss_community_modal
from tests.e2e.test_dagster_ui import wait_for_run

pytestmark = pytest.mark.slow


def test_launch_from_launchpad_and_see_success(tmp_path: Path) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    with (
        dagster_dev(tmp_path / "home", env={"HUB_DATA_DIR": str(tmp_path / "data")}) as url,
        browser_page() as page,
    ):
        page.goto(f"{url}/jobs")
        dismiss_community_modal(page)
        page.get_by_role("link", name="store_maintenance").first.click()
        page.get_by_role("tab", name="Launchpad").click()
        page.get_by_role("button", name="Launch Run").click()
        page.wait_for_url("**/runs/**", timeout=30_000)
        run_id = page.url.rstrip("/").split("/runs/")[1].split("?")[0]
        host, port = url.removeprefix("http://").split(":")
        client = DagsterGraphQLClient(host, port_number=int(port))
        assert wait_for_run(client, run_id) == "SUCCESS"
        page.reload()
        page.get_by_text("Success", exact=True).first.wait_for(timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "store_maintenance_run.png"))

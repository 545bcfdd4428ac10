"""End to end through Dagster itself: `dagster dev` serves the code location, a run is
launched over GraphQL (as the UI does) and succeeds."""

import time
from pathlib import Path

import httpx
import pytest
from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

from sandbox.devserver import dagster_dev

pytestmark = pytest.mark.slow


def wait_for_run(client: DagsterGraphQLClient, run_id: str, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        status = client.get_run_status(run_id).value
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            return status
        time.sleep(1)
    return status


def test_make_dev_serves_the_ui_as_the_readme_says(tmp_path: Path) -> None:
    """`make dev` exactly as the README says (dg dev, with a port override), not another
    way: the code location loads and lists the hub's jobs, and a run launched over GraphQL
    (as the UI launches it) succeeds. A `[tool.dg]` table split in pyproject once made
    every dg command, and so `make dev`, fail. (One server for both: each start of the UI
    costs ~10 s of CPU, and make test has a 10-minute budget.)"""
    env = {"HUB_DATA_DIR": str(tmp_path / "data")}
    with dagster_dev(tmp_path / "dagster_home", env=env, command=["make", "dev"]) as url:
        query = (
            "{ repositoriesOrError { ... on RepositoryConnection { nodes { name "
            "location { name } jobs { name } } } ... on PythonError { message } } }"
        )
        answer = httpx.post(f"{url}/graphql", json={"query": query}, timeout=60).json()
        nodes = answer["data"]["repositoriesOrError"]["nodes"]
        jobs = {job["name"] for node in nodes for job in node["jobs"]}
        assert {"sync_all", "reconcile", "resync", "store_maintenance"} <= jobs
        assert {node["location"]["name"] for node in nodes} == {"hub"}

        host, port = url.removeprefix("http://").split(":")
        client = DagsterGraphQLClient(host, port_number=int(port))
        try:
            run_id = client.submit_job_execution("store_maintenance")
        except DagsterGraphQLClientError as exc:  # pragma: no cover - diagnostic
            pytest.fail(f"launch failed: {exc}")
        assert wait_for_run(client, run_id) == "SUCCESS"
    assert (tmp_path / "data" / "hub.sqlite").exists()

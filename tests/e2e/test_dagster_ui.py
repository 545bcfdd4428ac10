"""End to end through Dagster itself: `dagster dev` serves the code location, a run is
launched over GraphQL (as the UI does) and succeeds."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from hub.store.migrate import upgrade
from sandbox.devserver import dagster_dev
from sandbox.runner import running_sandbox

if TYPE_CHECKING:  # dagster_graphql is imported by the tests that use it, not by collection
    from dagster_graphql import DagsterGraphQLClient

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

        from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

        host, port = url.removeprefix("http://").split(":")
        client = DagsterGraphQLClient(host, port_number=int(port))
        try:
            run_id = client.submit_job_execution("store_maintenance")
        except DagsterGraphQLClientError as exc:  # pragma: no cover - diagnostic
            pytest.fail(f"launch failed: {exc}")
        assert wait_for_run(client, run_id) == "SUCCESS"
    assert (tmp_path / "data" / "hub.sqlite").exists()


def hub_listen_pids(data_dir: Path) -> list[int]:
    """Live `hub listen` processes started with ``HUB_DATA_DIR=data_dir`` (this run's)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            environ = (entry / "environ").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        mine = f"HUB_DATA_DIR={data_dir}".encode() in environ
        if mine and state != "Z" and argv[-2:-1] == [b"listen"]:
            found.append(int(entry.name))
    return found


def test_make_dev_with_hub_listen_runs_the_listener_beside_the_ui(tmp_path: Path) -> None:
    """`HUB_LISTEN=1 make dev` as the README says, beside a running sandbox (its
    sandbox.env in $HUB_DATA_DIR/sandbox, the store migrated as `make demo` leaves it):
    the UI answers, `hub listen` starts beside it (subscribes to Salesforce, serves the
    SAP webhook), and stopping the UI's process group leaves no `hub listen` behind. With a
    fresh DAGSTER_HOME the listener and `dg dev` once both created the instance at once:
    two alembic heads, and the UI's code location failed (now the Makefile creates it first)."""
    data = tmp_path / "data"
    with running_sandbox(data / "sandbox", seed=11, customers=6, systems=("salesforce", "sap")):
        upgrade(f"sqlite:///{data / 'hub.sqlite'}")
        env = {"HUB_DATA_DIR": str(data), "HUB_LISTEN": "1", "HUB_EVENTS_PORT": "0"}
        log_path = tmp_path / "dagster_home" / "dagster-dev.log"
        with dagster_dev(tmp_path / "dagster_home", env=env, command=["make", "dev"]) as url:
            assert httpx.get(f"{url}/server_info", timeout=10).status_code == 200
            deadline = time.monotonic() + 30
            while "hub.listen: listening:" not in log_path.read_text():
                assert time.monotonic() < deadline, log_path.read_text()[-3000:]
                time.sleep(0.5)
            assert hub_listen_pids(data), "no `hub listen` process of this run"
        deadline = time.monotonic() + 15
        while hub_listen_pids(data) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = hub_listen_pids(data)
        for pid in left:  # pragma: no cover - clean up before failing
            os.kill(pid, 9)
        assert not left, f"`hub listen` left running after make dev stopped: {left}"
    output = log_path.read_text()
    assert "Salesforce channels, SAP webhook http" in output, output[-3000:]
    assert "hub.listen: stopped:" in output, output[-3000:]

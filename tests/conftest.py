"""Suite-wide fixtures: an isolated data dir and Dagster home per test session, and a
throwaway PostgreSQL so every store test runs on SQLite *and* PostgreSQL (never skipped)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from sandbox.postgres import fresh_database, throwaway_postgres

# The machine is shared and noisy (CI: 2 cores, 6 workers): Hypothesis' timing checks
# would fail a property test for slowness that is not its subject. Speed is measured in
# bench/, never in tests.
settings.register_profile("hub", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("hub")


@pytest.fixture(scope="session", autouse=True)
def _isolated_hub_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """No test writes into the developer's ./data or ~/.dagster."""
    home = tmp_path_factory.mktemp("hub-data")
    old = {k: os.environ.get(k) for k in ("HUB_DATA_DIR", "DAGSTER_HOME", "HUB_DATABASE_URL")}
    os.environ["HUB_DATA_DIR"] = str(home)
    os.environ.pop("HUB_DATABASE_URL", None)
    from app.dagster_home import ensure_dagster_home

    ensure_dagster_home(home / "dagster_home")
    yield home
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """One PostgreSQL 15 cluster for the session; tests get their own database in it."""
    with throwaway_postgres("hub_tests") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database URL, once per backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hub.sqlite'}"
    server = request.getfixturevalue("postgres_server")
    name = "t_" + "".join(ch if ch.isalnum() else "_" for ch in request.node.name)[:50].lower()
    return fresh_database(server, name)


def pytest_configure(config: pytest.Config) -> None:
    """The test modules' asserts are rewritten once, here, not by every worker."""
    from tests.rewritten_once import rewrite_for_workers

    rewrite_for_workers(config)


def pytest_sessionfinish() -> None:
    """Stop the crash tests' fork server (tests.forked), if one ran, and wait for it: a
    pytest-xdist worker ends without running atexit handlers, and the CPU of the children
    it forked would not count among this process's children's."""
    import sys

    forked = sys.modules.get("tests.forked")
    if forked is not None:
        forked._stop_server()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Longest first: the end-to-end tests (minutes each), then the other slow ones, then
    the rest. With pytest-xdist's ``--dist load`` the workers take tests in this order, so
    the long ones start at once and the short ones fill the gaps, instead of one worker
    starting a three-minute test when the others are done. The order within each group is
    kept, so module fixtures stay shared."""

    def weight(item: pytest.Item) -> int:
        if item.get_closest_marker("slow") is None:
            return 2
        return 0 if item.path.parent.name == "e2e" else 1

    items.sort(key=weight)


#: Per-test CPU seconds (this process and the children it waited for), reported by the
#: workers as a user property and summed up at the end: on a shared 2-core machine CPU,
#: not wall time, says which tests make the suite slow.
CPU_PROPERTY = "cpu_seconds"
CPU_SECONDS: dict[str, float] = {}


def _cpu_now() -> float:
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    item.stash[_CPU_START] = _cpu_now()
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    yield
    start = item.stash.get(_CPU_START, None)
    if start is not None:
        item.user_properties.append((CPU_PROPERTY, round(_cpu_now() - start, 2)))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for name, value in report.user_properties:
        if name == CPU_PROPERTY and report.when == "teardown":
            CPU_SECONDS[report.nodeid] = float(value)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not CPU_SECONDS:
        return
    total = sum(CPU_SECONDS.values())
    terminalreporter.section(f"most CPU (of {total:.0f} CPU seconds in tests)")
    for nodeid, seconds in sorted(CPU_SECONDS.items(), key=lambda kv: -kv[1])[:15]:
        terminalreporter.write_line(f"{seconds:8.1f}s  {nodeid}")
    report = os.environ.get("HUB_TEST_CPU_REPORT")
    if report:  # every test's CPU seconds, for finding what to make cheaper
        Path(report).write_text(json.dumps(CPU_SECONDS, indent=1, sort_keys=True))


_CPU_START = pytest.StashKey[float]()

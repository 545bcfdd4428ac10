"""The sync end to end through the sandbox, with the real connectors and clients: the
first full sync of a freshly seeded landscape leaves nothing failed or quarantined, and a
second sync right after makes no writes at all (counted at the emulators)."""

import re
from pathlib import Path

import pytest

from connectors import registry
from hub.mapping_spec import MAPPINGS_DIR, load_all
from hub.store import create_store_engine
from hub.store.migrate import upgrade
from hub.sync.engine import SyncEngine
from sandbox.runner import running_sandbox

#: calls that change nothing although they are not GETs: OAuth token requests and
#: Bulk API query jobs (a query job is created with a POST)
NOT_WRITES = re.compile(r"/oauth2?/|/oauth/v1/token|/jobs/query")
READS = {"GET", "HEAD"}


def _writes(calls: dict[str, dict]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for system, snapshot in calls.items():
        for call, n in snapshot["by_call"].items():
            method, path = call.split(" ", 1)
            if method not in READS and not NOT_WRITES.search(path):
                out.setdefault(system, {})[call] = n
    return out


def _engine(env: dict[str, str], url: str) -> SyncEngine:
    specs, errors = load_all(MAPPINGS_DIR)
    assert errors == []
    mapped = {spec.system for spec in specs}
    systems = [s for s in registry.configured_systems(env) if s in mapped]
    return SyncEngine(create_store_engine(url), {s: registry.build(s, env) for s in systems})


@pytest.mark.slow
def test_full_sync_then_a_second_sync_writes_nothing(tmp_path: Path, store_url: str) -> None:
    upgrade(store_url)
    with running_sandbox(tmp_path / "sb", seed=11, customers=40) as sandbox:
        first = _engine(sandbox.env, store_url)
        report = first.run()
        for system, per_entity in report.items():
            for entity, counts in per_entity.items():
                assert counts["failed"] == 0, (system, entity, counts)
        sandbox.reset_calls()
        second = _engine(sandbox.env, store_url)
        again = second.run()
        assert _writes(sandbox.calls()) == {}
        for system, per_entity in again.items():
            if system == "hub":
                continue
            for entity, counts in per_entity.items():
                assert counts["created"] == counts["updated"] == counts["failed"] == 0, (
                    system,
                    entity,
                    counts,
                )

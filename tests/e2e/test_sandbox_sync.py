"""The sync end to end through the sandbox, with the real connectors and clients: the
first full sync of a freshly seeded landscape leaves nothing failed or quarantined, and a
second sync right after makes no writes at all (counted at the emulators). The cursors
re-read the connectors' default 5-minute overlap here (sandbox.env sets 1 s), so every
record is read again by every sync: re-reads write nothing."""

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from connectors import registry
from hub.mapping.spec import MAPPINGS_DIR, load_all
from hub.store import create_store_engine
from hub.store.migrate import upgrade
from hub.sync.engine import SyncEngine
from hub.systems import connect
from sandbox.runner import cursor_overlaps, running_sandbox

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


class Recording:
    """A real connector, with the keys of every record it was asked to write noted."""

    def __init__(self, connector: Any) -> None:
        self.connector = connector
        self.system = connector.system
        self.written: list[str] = []

    def write_batch(self, entity: str, records: Iterable[dict[str, Any]]) -> Any:
        results = self.connector.write_batch(entity, list(records))
        self.written += [f"{entity}:{r.key}" for r in results]
        return results

    def __getattr__(self, name: str) -> Any:
        return getattr(self.connector, name)


def _engine(env: dict[str, str], url: str) -> SyncEngine:
    specs, errors = load_all(MAPPINGS_DIR)
    assert errors == []
    mapped = {spec.system for spec in specs}
    systems = [s for s in registry.configured_systems(env) if s in mapped]
    return SyncEngine(create_store_engine(url), {s: Recording(connect(s, env)) for s in systems})


def _customer_of(key: str) -> str:
    """CUS-0000042 for any of its records (SUB-0000042-1, INV-0000042-1-003, ...)."""
    return "CUS-" + key.split(":", 1)[1].split("-")[1]


@pytest.mark.slow
def test_full_sync_then_a_second_sync_writes_nothing(tmp_path: Path, store_url: str) -> None:
    upgrade(store_url)
    with running_sandbox(tmp_path / "sb", seed=11, customers=40) as sandbox:
        env = {**sandbox.env, **cursor_overlaps("300")}  # what real systems get
        first = _engine(env, store_url)
        report = first.run()
        for system, per_entity in report.items():
            for entity, counts in per_entity.items():
                assert counts["failed"] == 0, (system, entity, counts)
        assert set(first.connectors) == {"billing", "salesforce", "sap", "pim", "wms"}
        sandbox.reset_calls()
        second = _engine(env, store_url)
        again = second.run()
        written = [k for c in second.connectors.values() for k in c.written]  # type: ignore[attr-defined]
        manifest = sandbox.manifest()
        planted = {d["key"] for d in manifest if d["entity"] == "customer"}
        planted_records = {f"{d['entity']}:{d['key']}" for d in manifest}
        # the only records a second sync may touch are planted drift or belong to a
        # customer whose drift was planted (a customer missing in SAP: its SAP documents'
        # ids are learned late; billing's invoice total off by one: SAP's clearing of it)
        assert {
            k for k in written if k not in planted_records and _customer_of(k) not in planted
        } == set(), written
        if not written:
            assert _writes(sandbox.calls()) == {}
        third = _engine(env, store_url)
        third.run()
        sandbox.reset_calls()
        fourth = _engine(env, store_url)
        fourth.run()
        assert _writes(sandbox.calls()) == {}, "the sync settles: nothing left to write"
        for system, per_entity in again.items():
            for entity, counts in per_entity.items():
                assert counts["failed"] == 0, (system, entity, counts)

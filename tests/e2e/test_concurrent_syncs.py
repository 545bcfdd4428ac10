"""Two syncs launched at once, as two processes, against the same hub store and the same
systems: neither corrupts anything, the one that waited says why (whose lock, since when),
and the landscape ends as one sync leaves it: every record once in every system, nothing
pending, and a further sync writes nothing (counted at the emulators)."""

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from connectors import registry
from hub.mapping.spec import MAPPINGS_DIR, load_all
from hub.model import validate_record
from hub.store import create_store_engine
from hub.store.migrate import upgrade
from hub.store.models import GoldenRecord, OutboxEntry
from hub.systems import connect
from sandbox.runner import running_sandbox
from tests.e2e.test_sandbox_sync import _writes

ROOT = Path(__file__).resolve().parents[2]
HUB_ID_FIELDS = {
    spec.system + "/" + spec.entity: spec.key.hub_id_field for spec in load_all(MAPPINGS_DIR)[0]
}


def _sync(env_file: Path, store: str) -> subprocess.Popen[str]:
    """A sync in a process of its own (tests/e2e/sync_child.py), its errors readable."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.e2e.sync_child", "--env-file", str(env_file),
         "--store", store],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip


@pytest.mark.slow
def test_two_syncs_at_once_wait_for_each_other_and_corrupt_nothing(
    tmp_path: Path, store_url: str
) -> None:
    upgrade(store_url)
    with running_sandbox(tmp_path / "sb", seed=5, customers=8) as sb:
        env_file = tmp_path / "sb" / "sandbox.env"
        first, second = _sync(env_file, store_url), _sync(env_file, store_url)
        errors = [p.communicate(timeout=300)[1] for p in (first, second)]
        assert [first.returncode, second.returncode] == [0, 0], errors
        waited = [e for e in errors if "waiting for lock 'sync:" in e]
        assert waited, f"one of them must say it waited and for whom: {errors}"
        assert "held by" in waited[0] and "since" in waited[0]

        # every record once in every system: no hub id twice
        for system in registry.configured_systems(sb.env):
            if system not in {k.split("/")[0] for k in HUB_ID_FIELDS}:
                continue
            connector = connect(system, sb.env)
            for entity in connector.entities():
                field = HUB_ID_FIELDS.get(f"{system}/{entity}")
                if not field:
                    continue
                ids = Counter(
                    r.get(field)
                    for batch in connector.read_snapshot(entity)
                    for r in batch.records
                    if r.get(field)
                )
                doubled = {k: n for k, n in ids.items() if n > 1}
                assert not doubled, (system, entity, doubled)
            connector.close()

        engine = create_store_engine(store_url)
        with engine.connect() as conn:
            for entity, data in conn.execute(sa.select(GoldenRecord.entity, GoldenRecord.data)):
                validate_record(entity, data)  # nothing half-written
            pending = conn.execute(
                sa.select(sa.func.count())
                .select_from(OutboxEntry)
                .where(OutboxEntry.status == "pending")
            ).scalar_one()
        engine.dispose()
        assert pending == 0

        sb.reset_calls()
        third = _sync(env_file, store_url)
        assert third.wait(timeout=300) == 0
        written = _writes(sb.calls())
    # a further sync may only rewrite the planted drift the sync itself settles; the
    # same as after a single sync (tests/e2e/test_sandbox_sync.py)
    print("WRITTEN", written)
    assert sum(n for calls in written.values() for n in calls.values()) <= 4, written

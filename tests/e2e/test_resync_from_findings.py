"""Issue 6's loop on the seeded sandbox: reconcile (golden from the owners, nothing pushed
yet), resync the records of the findings a push can repair (`hub resync --from-findings`
groups them the same way), reconcile again: those findings are resolved, and what stays
open is only what needs a person (an orphan to delete, a wrong total to re-issue, a
retired SKU still subscribed, a conflict between two systems' users, drift on the field's
owner itself)."""

from pathlib import Path

import pytest
import sqlalchemy as sa

from app.cli.resync import FIXABLE_KINDS, findings_scopes
from connectors.registry import configured_systems
from hub.mapping.spec import MAPPINGS_DIR, load_all
from hub.mapping.transforms import load_code_lists
from hub.model import ENTITY_ORDER
from hub.recon.run import reconcile
from hub.store import create_store_engine
from hub.store.migrate import upgrade
from hub.store.models import Finding
from hub.sync.engine import SyncEngine
from hub.sync.resync import ResyncRequest, resync
from hub.systems import connect
from sandbox.runner import running_sandbox

#: a conflict (a non-owner changed an owned field) is a business decision, never pushed
NEEDS_A_PERSON = {"orphan", "aggregate", "broken_ref", "conflict"}


@pytest.mark.slow
def test_resyncing_the_findings_resolves_every_one_a_push_can_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'hub.sqlite'}"
    upgrade(url)
    monkeypatch.setenv("HUB_DATABASE_URL", url)
    specs, _ = load_all(MAPPINGS_DIR)
    codes = load_code_lists(MAPPINGS_DIR)
    with running_sandbox(tmp_path / "sb", seed=7, customers=40) as sb:
        connectors = {s: connect(s, sb.env) for s in configured_systems(sb.env)}
        engine = create_store_engine(url)
        sync = SyncEngine(engine, connectors)
        for entity in ENTITY_ORDER:
            for system in sync.pull_order(entity, sync._systems(entity, None)):
                sync.pull(system, entity)
        first = reconcile(engine, connectors, specs, codes)
        kinds = {f["kind"] for f in first.findings.to_pylist()}
        assert {"missing", "mismatch"} <= kinds

        scopes = findings_scopes()
        assert scopes.requests and all(s["keys"] for s in scopes.requests)
        held = {h.finding_id for h in scopes.needs_a_person}
        for scope in scopes.requests:
            report = resync(
                SyncEngine(engine, connectors),
                ResyncRequest(
                    scope["entity"],
                    keys=scope["keys"],
                    systems=[scope["system"]],
                ),
            )
            assert report.errors == [], report.errors
        reconcile(engine, connectors, specs, codes)

    with engine.connect() as conn:
        still_open = conn.execute(
            sa.select(Finding.id, Finding.entity, Finding.key, Finding.system, Finding.kind).where(
                Finding.status == "open"
            )
        ).all()
    fixable_left = [f for f in still_open if f.kind in FIXABLE_KINDS and f.id not in held]
    assert fixable_left == [], fixable_left
    assert {f.kind for f in still_open if f.id not in held} <= NEEDS_A_PERSON

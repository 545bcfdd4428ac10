"""Deletes read from Salesforce's recycle bin (issue 15, "Deletes" and "Blast-radius
guard"), through the sandbox with the real clients: an Account deleted in Salesforce, which
owns and creates customers, becomes a tombstone; billing is told per its `on_delete`
policy (deactivate: status inactive), SAP keeps its copy; no sync or resync brings it
back; `hub tombstones restore` does, everywhere. A mass delete trips the guard: the
deactivations wait in the outbox until `hub outbox release`."""

import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from app.cli.main import app
from connectors.base import Connector
from connectors.registry import configured_systems
from hub.store import create_store_engine
from hub.store.db import session_factory
from hub.store.migrate import upgrade
from hub.store.models import GoldenRecord, Tombstone
from hub.sync.deletions import GuardLimits
from hub.sync.engine import SyncEngine
from hub.sync.resync import ResyncRequest, resync
from hub.systems import connect
from sandbox.runner import running_sandbox

pytestmark = pytest.mark.slow
RUNNER = CliRunner()


def _accounts(sf: Any, hub_ids: list[str]) -> dict[str, str]:
    """Live Accounts by hub id."""
    quoted = ", ".join(f"'{h}'" for h in hub_ids)
    rows = sf.query(f"SELECT Id, Hub_Id__c FROM Account WHERE Hub_Id__c IN ({quoted})")
    return {r["Hub_Id__c"]: r["Id"] for r in rows["records"]}


def _billing_status(billing: Connector, hub_ids: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for batch in billing.read_by_keys("customer", hub_ids):
        out.update({r["hub_id"]: r["status"] for r in batch.records})
    return out


def _hub(*args: str) -> str:
    result = RUNNER.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def landscape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    url = f"sqlite:///{tmp_path / 'hub.sqlite'}"
    upgrade(url)
    monkeypatch.setenv("HUB_DATABASE_URL", url)
    with running_sandbox(tmp_path / "sb", seed=5, customers=12) as sb:
        for name, value in sb.env.items():  # for `hub sync`, which runs the Dagster job
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("HUB_DATA_DIR", str(tmp_path / "data"))
        connectors = {s: connect(s, sb.env) for s in configured_systems(sb.env)}
        store = create_store_engine(url)
        SyncEngine(store, connectors).run()
        sf = connectors["salesforce"]._client()  # type: ignore[attr-defined]
        rows = sf.query("SELECT Id, Hub_Id__c FROM Account ORDER BY Hub_Id__c")["records"]
        yield store, connectors, sf, [r["Hub_Id__c"] for r in rows], [r["Id"] for r in rows]
        for connector in connectors.values():
            connector.close()


def test_an_account_deleted_in_salesforce_is_tombstoned_propagated_and_restorable(
    landscape: Any,
) -> None:
    store, connectors, sf, hub_ids, sf_ids = landscape
    gone = "CUS-0000003"  # the id docs/operations.md restores
    gone_id = sf_ids[hub_ids.index(gone)]
    other = next(h for h in hub_ids if h != gone)
    sf.Account.delete(gone_id)

    counts = SyncEngine(store, connectors).run(entities=["customer"])
    assert counts["salesforce"]["customer"]["deleted"] == 1
    with session_factory(store)() as s:
        stone = s.get(Tombstone, ("customer", gone))
        assert stone is not None and stone.system == "salesforce"
        assert stone.external_id == gone_id and stone.restored_at is None
        golden = s.get(GoldenRecord, ("customer", gone))
        assert golden is not None and golden.deleted
    assert _billing_status(connectors["billing"], [gone, other]) == {
        gone: "inactive",  # billing's policy: deactivate
        other: "active",
    }
    listed = _hub("tombstones", "list", "--entity", "customer")
    assert gone in listed and "salesforce" in listed

    # no path brings it back: a resync of it, and another sync, leave Salesforce alone
    report = resync(SyncEngine(store, connectors), ResyncRequest("customer", keys=[gone]))
    assert report.tombstoned == [gone] and report.planned == {}, report
    again = SyncEngine(store, connectors).run(entities=["customer"])
    assert again["salesforce"]["customer"]["deleted"] == 0  # read again, applied once
    assert _accounts(sf, [gone]) == {}

    out = _hub("tombstones", "restore", "customer", "CUS-0000003")  # as the docs show
    assert f"restored 1 customer record(s): {gone}" in out
    SyncEngine(store, connectors).run(entities=["customer"])
    recreated = _accounts(sf, [gone])
    assert set(recreated) == {gone} and recreated[gone] != gone_id
    assert _billing_status(connectors["billing"], [gone]) == {gone: "active"}
    assert gone not in _hub("tombstones", "list")


def test_an_account_hard_deleted_in_salesforce_is_tombstoned_too(landscape: Any) -> None:
    """A hard delete (Bulk API hardDelete; an emptied recycle bin the same) skips the
    recycle bin, so queryAll never shows it: the delete log (sObject Get Deleted) does,
    and the golden customer is tombstoned as for a soft delete - not left live, with
    pushes to Salesforce refused as gone ever after."""
    store, connectors, sf, hub_ids, sf_ids = landscape
    gone = hub_ids[1]
    gone_id = sf_ids[1]
    [job] = sf.bulk2.Account.hard_delete(records=[{"Id": gone_id}], wait=0)
    assert job["numberRecordsFailed"] == 0
    in_bin = sf.query_all(f"SELECT Id FROM Account WHERE Id = '{gone_id}'", include_deleted=True)
    assert in_bin["records"] == []  # past the recycle bin

    counts = SyncEngine(store, connectors).run(entities=["customer"])
    assert counts["salesforce"]["customer"]["deleted"] == 1
    with session_factory(store)() as s:
        stone = s.get(Tombstone, ("customer", gone))
        assert stone is not None and stone.system == "salesforce"
        assert stone.external_id == gone_id
        golden = s.get(GoldenRecord, ("customer", gone))
        assert golden is not None and golden.deleted
    assert _billing_status(connectors["billing"], [gone]) == {gone: "inactive"}


def test_a_mass_delete_is_held_for_a_person_until_released(
    landscape: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """4 of 12 Accounts (33%) against a guard of max(2, 10%): tombstoned in the hub, but
    nothing is pushed to billing until `hub outbox release`. The first sync is `hub sync`
    (the Dagster job), as an operator runs it."""
    store, connectors, sf, hub_ids, sf_ids = landscape
    deleted = hub_ids[:4]
    for sf_id in sf_ids[:4]:
        sf.Account.delete(sf_id)
    monkeypatch.setenv("HUB_GUARD_MIN_RECORDS", "2")
    guard = GuardLimits(min_records=2, share=0.10)

    result = RUNNER.invoke(app, ["sync", "--entity", "customer", "--json"])
    assert result.exit_code == 0, result.output
    counts = json.loads(result.stdout)
    assert counts["salesforce"]["customer"]["deleted"] == 4
    assert "4 push(es) held for a person" in result.stderr
    assert set(_billing_status(connectors["billing"], deleted).values()) == {"active"}
    held = _hub("outbox", "held")
    assert "billing" in held and "deactivate" in held and "4" in held

    SyncEngine(store, connectors, guard=guard).run(entities=["customer"])  # still held
    assert set(_billing_status(connectors["billing"], deleted).values()) == {"active"}

    assert "released 4 push(es)" in _hub("outbox", "release", "--system", "billing")
    SyncEngine(store, connectors, guard=guard).run(entities=["customer"])
    assert set(_billing_status(connectors["billing"], deleted).values()) == {"inactive"}


def test_an_invoice_deleted_in_billing_is_deleted_in_salesforce_and_kept_in_sap(
    landscape: Any,
) -> None:
    """Billing tells no deletes: its keys are compared (every pass here). Its invoice is
    tombstoned; Salesforce's copy goes too (on_delete: delete), SAP keeps the posted
    document (keep)."""
    store, connectors, sf, _, _ = landscape
    posted = "SELECT Id, Hub_Id__c FROM Invoice__c WHERE SAP_Billing_Document__c != null"
    invoice = sf.query(f"{posted} LIMIT 1")["records"][0]  # one SAP holds too
    hub_id = invoice["Hub_Id__c"]
    billing = sa.create_engine(os.environ["BILLING_DATABASE_URL"])
    with billing.begin() as conn:
        conn.execute(sa.text("DELETE FROM invoices WHERE hub_id = :h"), {"h": hub_id})
    billing.dispose()

    counts = SyncEngine(store, connectors, scan_every=timedelta(0)).run(entities=["invoice"])
    assert counts["billing"]["invoice"]["deleted"] == 1
    assert counts["salesforce"]["invoice"]["deleted"] == 1
    with session_factory(store)() as s:
        stone = s.get(Tombstone, ("invoice", hub_id))
        assert stone is not None and stone.system == "billing"
    soql = f"SELECT IsDeleted FROM Invoice__c WHERE Id = '{invoice['Id']}'"
    assert [r["IsDeleted"] for r in sf.query_all(soql, include_deleted=True)["records"]] == [True]
    kept = [
        r["YY1_HubId"]
        for batch in connectors["sap"].read_by_keys("invoice", [hub_id])
        for r in batch.records
    ]
    assert kept == [hub_id]

"""A record deleted in Salesforce after a clean sync, then resynced (issue 15, items 2 and
"honest exit codes"): an invoice, which Salesforce only shows, is drift - the resync
recreates it under a new Id and forgets the stale one; an Account, which Salesforce owns
and creates, is a decision to respect - nothing recreates it, and the resync says which
record it did not deliver and why instead of reporting success."""

from pathlib import Path
from typing import Any

import pytest

from connectors.registry import configured_systems
from hub.store import create_store_engine
from hub.store.db import session_factory
from hub.store.migrate import upgrade
from hub.store.repo import all_external_ids
from hub.sync.engine import SyncEngine
from hub.sync.resync import ResyncRequest, resync
from hub.systems import connect
from sandbox.runner import running_sandbox


def _live(sf: Any, sobject: str, hub_id: str) -> list[dict[str, Any]]:
    soql = f"SELECT Id FROM {sobject} WHERE Hub_Id__c = '{hub_id}'"
    return list(sf.query(soql)["records"])


@pytest.mark.slow
def test_a_record_deleted_in_salesforce_is_recreated_only_where_it_is_not_owned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'hub.sqlite'}"
    upgrade(url)
    monkeypatch.setenv("HUB_DATABASE_URL", url)
    with running_sandbox(tmp_path / "sb", seed=3, customers=6) as sb:
        connectors = {s: connect(s, sb.env) for s in configured_systems(sb.env)}
        store = create_store_engine(url)
        SyncEngine(store, connectors).run()
        sf = connectors["salesforce"]._client()  # type: ignore[attr-defined]

        invoice = sf.query("SELECT Id, Hub_Id__c FROM Invoice__c LIMIT 1")["records"][0]
        sf.Invoice__c.delete(invoice["Id"])
        hub_id = invoice["Hub_Id__c"]
        report = resync(
            SyncEngine(store, connectors),
            ResyncRequest("invoice", keys=[hub_id], systems=["salesforce"]),
        )
        assert report.errors == [] and report.undelivered == {}, report
        (recreated,) = _live(sf, "Invoice__c", hub_id)
        assert recreated["Id"] != invoice["Id"]
        with session_factory(store)() as s:
            assert all_external_ids(s, "invoice", hub_id)["salesforce"] == recreated["Id"]

        account = sf.query("SELECT Id, Hub_Id__c FROM Account LIMIT 1")["records"][0]
        sf.Account.delete(account["Id"])
        customer = account["Hub_Id__c"]
        report = resync(
            SyncEngine(store, connectors),
            ResyncRequest("customer", keys=[customer], systems=["salesforce"]),
        )
        reason = report.undelivered["salesforce"][customer]
        assert "ENTITY_IS_DELETED" in reason and "does not recreate" in reason
        assert _live(sf, "Account", customer) == []
        for connector in connectors.values():
            connector.close()

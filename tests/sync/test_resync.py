"""Targeted resync on the in-memory CRM/ERP pair (tests/sync/conftest.py): it repairs
drift the routine sync cannot see, plans without touching anything in a dry run, rebuilds
from the owner first when asked, and refuses requests it cannot run with a reason."""

from datetime import UTC, datetime, timedelta

import pytest

from hub.store import OutboxEntry
from hub.sync.resync import ResyncRequest, ResyncRequestError, resync
from tests.sync.conftest import account, count


def _synced(setup):
    make, crm, erp, engine = setup
    crm_id = crm.put(account())
    make().run(["customer"])
    make().run(["customer"])  # reads the hub's own writes back (echoes): cursors settle
    erp_id = next(iter(erp.rows))
    hub_id = erp.rows[erp_id]["YY1_HubId"]
    return make, crm, erp, engine, crm_id, erp_id, hub_id


def test_resync_repairs_drift_the_routine_sync_cannot_see(setup) -> None:
    make, _, erp, _, _, erp_id, hub_id = _synced(setup)
    # changed behind the hub's back: no change stamp, so no incremental read sees it
    erp.rows[erp_id]["CustomerName"] = "Mangled By Incident"
    make().run(["customer"])
    assert erp.rows[erp_id]["CustomerName"] == "Mangled By Incident"

    report = resync(make(), ResyncRequest("customer", keys=[hub_id], systems=["sap"]))
    assert report.selected == 1 and report.planned == {"sap": 1}
    assert report.pushed["sap"]["updated"] == 1 and report.errors == []
    assert erp.rows[erp_id]["CustomerName"] == "Acme GmbH"


def test_dry_run_plans_but_sends_and_stores_nothing(setup) -> None:
    make, crm, erp, engine, _, erp_id, hub_id = _synced(setup)
    erp.rows[erp_id]["CustomerName"] = "Mangled By Incident"
    calls = (crm.write_calls, erp.write_calls)

    report = resync(make(), ResyncRequest("customer", keys=[hub_id], dry_run=True))
    assert report.dry_run and report.planned == {"salesforce": 1, "sap": 1}
    assert report.samples["sap"][0]["key"] == hub_id
    assert report.samples["sap"][0]["payload"]["CustomerName"] == "Acme GmbH"
    assert (crm.write_calls, erp.write_calls) == calls
    assert erp.rows[erp_id]["CustomerName"] == "Mangled By Incident"
    assert count(engine, OutboxEntry) == 0
    # fingerprints were not forgotten for real: a routine sync still pushes nothing
    make().run(["customer"])
    assert (crm.write_calls, erp.write_calls) == calls


def test_repull_rebuilds_the_golden_record_from_its_owner_first(setup) -> None:
    make, crm, erp, _, crm_id, erp_id, hub_id = _synced(setup)
    # the owner changed silently (lost event): only a re-read finds it
    crm.rows[crm_id]["Name"] = "Acme Holding GmbH"
    request = ResyncRequest("customer", keys=[hub_id])  # every resync re-reads owners
    report = resync(make(), request)
    assert report.repulled == {"salesforce": 1, "sap": 1}  # both own fields of it
    assert erp.rows[erp_id]["CustomerName"] == "Acme Holding GmbH"


def test_window_selects_golden_records_changed_in_it(setup) -> None:
    make, _, erp, _, _, erp_id, _ = _synced(setup)
    erp.rows[erp_id]["CustomerName"] = "Mangled"
    now = datetime.now(UTC)
    empty = resync(make(), ResyncRequest("customer", start=now + timedelta(hours=1)))
    assert empty.selected == 0 and erp.rows[erp_id]["CustomerName"] == "Mangled"
    report = resync(make(), ResyncRequest("customer", start=now - timedelta(hours=1), end=now))
    assert report.selected == 1 and erp.rows[erp_id]["CustomerName"] == "Acme GmbH"


def test_unknown_keys_are_reported_not_invented(setup) -> None:
    make, *_ = _synced(setup)
    report = resync(make(), ResyncRequest("customer", keys=["CUS-NOPE"]))
    assert report.selected == 0 and report.missing_keys == ["CUS-NOPE"]
    assert report.planned == {}


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (ResyncRequest("customr", keys=["x"]), "entity 'customr' is unknown"),
        (ResyncRequest("customer", keys=["x"], systems=["wms"]), "no mapping for \\['wms'\\]"),
        (ResyncRequest("customer"), "give keys"),
        (
            ResyncRequest(
                "customer",
                start=datetime(2025, 2, 1, tzinfo=UTC),
                end=datetime(2025, 1, 1, tzinfo=UTC),
            ),
            "is not before end",
        ),
    ],
)
def test_requests_that_cannot_run_say_why(setup, request_: ResyncRequest, message: str) -> None:
    make, *_ = setup
    with pytest.raises(ResyncRequestError, match=message):
        resync(make(), request_)

"""$batch change sets and every fault mode, through pyodata and plain requests."""

from __future__ import annotations

import time

import pyodata
import pytest
import requests

pytestmark = pytest.mark.timeout(60)
BP = "API_BUSINESS_PARTNER"


def _bp(client, name, **extra):
    values = {"BusinessPartnerCategory": "2", "OrganizationBPName1": name, **extra}
    return client.entity_sets.A_BusinessPartner.create_entity().set(**values)


def test_batch_changesets_commit_atomically_and_reads_ride_along(seeded):
    client = seeded.client(BP)
    ok = client.create_changeset()
    ok.add_request(_bp(client, "B1"))
    ok.add_request(_bp(client, "B2"))
    batch = client.create_batch()
    batch.add_request(ok)
    batch.add_request(client.entity_sets.A_Customer.get_entity("2000001"))
    batch.add_request(client.entity_sets.A_Customer.get_entities().top(2))
    created, customer, listing = batch.execute()
    assert [bp.OrganizationBPName1 for bp in created] == ["B1", "B2"]
    assert customer.CustomerName == "Customer 001"
    assert [c.Customer for c in listing] == ["2000000", "2000001"]

    bad = client.create_changeset()
    bad.add_request(_bp(client, "B3"))
    bad.add_request(client.entity_sets.A_BusinessPartner.create_entity().set(SearchTerm1="x"))
    batch = client.create_batch()
    batch.add_request(bad)
    with pytest.raises(pyodata.exceptions.HttpError) as info:
        batch.execute()
    assert info.value.response.status_code == 400
    assert "BusinessPartnerCategory" in info.value.response.content.decode()
    names = [
        bp.OrganizationBPName1
        for bp in client.entity_sets.A_BusinessPartner.get_entities()
        .filter("Customer eq ''")  # not the seeded customers' partners
        .execute()
    ]
    assert names == ["B1", "B2"]  # B3 was rolled back with its change set


def test_batch_needs_csrf_and_counts_as_one_call(seeded):
    session = seeded.session()
    requests.delete(f"{seeded.base}/__sandbox/stats", timeout=5)
    client = seeded.client(BP, session, csrf=False)
    batch = client.create_batch()
    batch.add_request(client.entity_sets.A_Customer.get_entity("2000001"))
    with pytest.raises(pyodata.exceptions.HttpError) as info:
        batch.execute()
    assert info.value.response.status_code == 403
    seeded.fetch_token(session, BP)
    changes = client.create_changeset()
    for i in range(5):
        changes.add_request(_bp(client, f"N{i}"))
    batch = client.create_batch()
    batch.add_request(changes)
    batch.execute()
    stats = requests.get(f"{seeded.base}/__sandbox/stats", timeout=5).json()
    # metadata, failed batch, token fetch, batch
    assert stats["api_calls"] == 4
    assert stats["batch_operations"] == 5  # the refused batch was never parsed
    assert stats["by_service"] == {BP: 4}
    requests.post(f"{seeded.base}/__sandbox/stats/reset", timeout=5)
    assert requests.get(f"{seeded.base}/__sandbox/stats", timeout=5).json()["api_calls"] == 0


@pytest.mark.parametrize(
    ("mode", "code"),
    [
        ("429", "/IWFND/CM_BEC/026"),
        ("500", "/IWBEP/CX_MGW_TECH_EXCEPTION"),
        ("503", "/IWFND/CM_BEC/021"),
    ],
)
def test_status_faults_answer_sap_error_bodies(seeded, mode, code):
    client = seeded.client(BP, csrf=False)
    seeded.fault(mode=mode, count=1, retry_after=3)
    with pytest.raises(pyodata.exceptions.HttpError) as info:
        client.entity_sets.A_Customer.get_entities().execute()
    resp = info.value.response
    assert resp.status_code == int(mode)
    assert resp.json()["error"]["code"] == code
    if mode in ("429", "503"):
        assert resp.headers["retry-after"] == "3"
    assert len(client.entity_sets.A_Customer.get_entities().top(1).execute()) == 1  # cleared


def test_latency_and_dropped_connection(seeded):
    session = seeded.session()
    url = seeded.service_url(BP) + "A_Customer"
    seeded.fault(mode="latency", latency_ms=400, count=1)
    started = time.monotonic()
    assert session.get(url, params={"$top": "1"}).status_code == 200
    assert time.monotonic() - started >= 0.4
    seeded.fault(mode="drop", count=1)
    with pytest.raises(requests.exceptions.RequestException):
        session.get(url, params={"$top": "5"})
    assert session.get(url, params={"$top": "1"}).status_code == 200


def test_token_expiry_invalidates_csrf_tokens_until_refetched(seeded):
    session = seeded.session()
    client = seeded.client(BP, session)
    _bp(client, "before").execute()
    seeded.fault(mode="token_expiry")
    with pytest.raises(pyodata.exceptions.HttpError) as info:
        _bp(client, "after").execute()
    assert info.value.response.status_code == 403
    assert info.value.response.headers["x-csrf-token"] == "Required"
    assert info.value.response.text == "CSRF token validation failed"
    seeded.fetch_token(session, BP)
    assert _bp(client, "after").execute().OrganizationBPName1 == "after"
    # a session cookie alone (no basic auth) does not survive the expiry either
    cookie_only = requests.Session()
    cookie_only.cookies.update(session.cookies)
    url = seeded.service_url(BP) + "A_Customer/$count"
    assert cookie_only.get(url).status_code == 200
    seeded.fault(mode="token_expiry")
    assert cookie_only.get(url).status_code == 401


def test_reject_fault_refuses_records_by_hub_id_and_fails_their_changeset(seeded):
    client = seeded.client(BP)
    seeded.fault(mode="reject", rate=0.5)
    hub_ids = [f"CUS-{i:05d}" for i in range(20)]
    rejected = [h for h in hub_ids if seeded.faults.should_reject(h)]
    accepted = [h for h in hub_ids if not seeded.faults.should_reject(h)]
    assert rejected and accepted
    with pytest.raises(pyodata.exceptions.HttpError) as info:
        _bp(client, "r", YY1_HubId=rejected[0]).execute()
    assert info.value.response.status_code == 400
    error = info.value.response.json()["error"]
    assert rejected[0] in error["message"]["value"]
    assert _bp(client, "a", YY1_HubId=accepted[0]).execute().YY1_HubId == accepted[0]
    changes = client.create_changeset()
    changes.add_request(_bp(client, "a2", YY1_HubId=accepted[1]))
    changes.add_request(_bp(client, "r2", YY1_HubId=rejected[1]))
    batch = client.create_batch()
    batch.add_request(changes)
    with pytest.raises(pyodata.exceptions.HttpError) as info:
        batch.execute()
    assert rejected[1] in info.value.response.content.decode()
    stored = client.entity_sets.A_BusinessPartner.get_entities().filter("Customer eq ''").execute()
    assert [bp.YY1_HubId for bp in stored] == [accepted[0]]  # not the customers' partners

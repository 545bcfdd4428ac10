"""The SAP emulator's business events, seen by a recording subscriber: what a $batch
change set, a rolled-back change set, item and role changes and deletes emit, both
delivery modes on the wire, and no events without subscribers."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pyodata
import pytest
import requests
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.server import serve_in_thread

BP = "API_BUSINESS_PARTNER"


class Recorder:
    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []

    async def endpoint(self, request: Request) -> Response:
        self.requests.append((dict(request.headers), await request.body()))
        return Response(status_code=202)

    def events(self) -> list[dict[str, Any]]:
        """Each request as a structured event (binary ones rebuilt from their headers)."""
        out = []
        for headers, body in self.requests:
            if headers["content-type"].startswith("application/cloudevents+json"):
                out.append(json.loads(body))
            else:
                event = {k[3:]: v for k, v in headers.items() if k.startswith("ce-")}
                out.append({**event, "data": json.loads(body)})
        return out


@pytest.fixture
def recorder() -> Iterator[tuple[Recorder, str]]:
    rec = Recorder()
    app = Starlette(routes=[Route("/hook", rec.endpoint, methods=["POST"])])
    with serve_in_thread(app) as base:
        yield rec, f"{base}/hook"


def flush(sap: Any) -> dict[str, Any]:
    resp = requests.post(f"{sap.base}/__sandbox/events/flush", json={"timeout": 8}, timeout=10)
    assert resp.status_code == 200
    return dict(resp.json())


def kinds(rec: Recorder) -> list[tuple[str, dict[str, str]]]:
    return [(e["type"].split(".")[-2], e["data"]) for e in rec.events()]


def _bp(client: Any, name: str) -> Any:
    return client.entity_sets.A_BusinessPartner.create_entity().set(
        BusinessPartnerCategory="2", OrganizationBPName1=name
    )


def test_changesets_items_roles_and_deletes(
    sap_factory: Callable[..., Any], recorder: tuple[Recorder, str]
) -> None:
    rec, url = recorder
    sap = sap_factory(events={"subscribers": [url], "secret": "x"})
    client = sap.client(BP)
    ok = client.create_changeset()
    ok.add_request(_bp(client, "B1"))
    ok.add_request(_bp(client, "B2"))
    batch = client.create_batch()
    batch.add_request(ok)
    (created,) = batch.execute()
    first, second = (bp.BusinessPartner for bp in created)
    bad = client.create_changeset()
    bad.add_request(_bp(client, "B3"))
    bad.add_request(client.entity_sets.A_BusinessPartner.create_entity().set(SearchTerm1="x"))
    batch = client.create_batch()
    batch.add_request(bad)
    with pytest.raises(pyodata.exceptions.HttpError):
        batch.execute()  # rolled back: no event
    # an address (an item of the partner) is a change of the partner
    address = client.entity_sets.A_BusinessPartner.get_entity(first).nav(
        "to_BusinessPartnerAddress"
    )
    address.create_entity().set(CityName="Walldorf", Country="DE").execute()
    request = client.entity_sets.A_BusinessPartner.delete_entity(second)
    request.add_headers({"If-Match": "*"})
    request.execute()
    status = flush(sap)
    assert kinds(rec) == [
        ("Created", {"BusinessPartner": first}),
        ("Created", {"BusinessPartner": second}),
        ("Changed", {"BusinessPartner": first}),
        ("Deleted", {"BusinessPartner": second}),
    ]
    assert status["stats"]["published"] == 4
    headers, _ = rec.requests[0]
    assert headers["x-hub-event-secret"] == "x"
    assert headers["content-type"].startswith("application/cloudevents+json")
    event = rec.events()[0]
    assert event["specversion"] == "1.0"
    assert event["source"] == "/default/sap.s4.beh/S4H"
    assert event["type"] == "sap.s4.beh.businesspartner.v1.BusinessPartner.Created.v1"
    assert event["time"].endswith("Z") and len({e["id"] for e in rec.events()}) == 4


def test_binary_mode_with_basic_auth(
    sap_factory: Callable[..., Any], recorder: tuple[Recorder, str]
) -> None:
    rec, url = recorder
    sap = sap_factory(
        system_id="Q4H",
        events={"subscribers": [url], "mode": "binary", "user": "ev", "password": "pw"},
    )
    _bp(sap.client(BP), "Binary").execute()
    flush(sap)
    ((headers, body),) = rec.requests
    assert headers["authorization"] == "Basic ZXY6cHc="
    assert headers["ce-specversion"] == "1.0"
    assert headers["ce-source"] == "/default/sap.s4.beh/Q4H"
    assert headers["ce-type"].endswith("BusinessPartner.Created.v1")
    assert headers["content-type"] == "application/json"
    assert set(json.loads(body)) == {"BusinessPartner"}


def test_no_subscriber_no_events(sap_factory: Callable[..., Any]) -> None:
    sap = sap_factory()
    _bp(sap.client(BP), "Quiet").execute()
    status = flush(sap)
    assert status["stats"]["published"] == 0
    assert status["settings"]["subscribers"] == []
    bad = requests.post(
        f"{sap.base}/__sandbox/events", json={"faults": {"drop_rate": 2}}, timeout=5
    )
    assert bad.status_code == 400


def test_retries_double_up_to_the_capped_interval(sap_factory: Callable[..., Any]) -> None:
    """A webhook down for a while still gets the event: retries wait 0.05, 0.1, 0.2 s and
    then never more than the cap, as a queue retrying at a capped interval does (an
    uncapped doubling waited 0.4, 0.8, ... and outlasted a restarting listener's patience)."""
    times: list[float] = []

    async def flaky(request: Request) -> Response:
        times.append(time.monotonic())
        return Response(status_code=503 if len(times) < 7 else 202)

    app = Starlette(routes=[Route("/hook", flaky, methods=["POST"])])
    with serve_in_thread(app) as base:
        sap = sap_factory(events={"subscribers": [f"{base}/hook"]})
        cap = {"max_attempts": 7, "retry_backoff_seconds": 0.05, "retry_backoff_max_seconds": 0.2}
        requests.post(f"{sap.base}/__sandbox/events", json=cap, timeout=5).raise_for_status()
        _bp(sap.client(BP), "Flaky").execute()
        status = flush(sap)
    assert status["stats"]["delivered"] == 1 and status["stats"]["retried"] == 6
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps[2] >= 0.19 and max(gaps) < 0.35, gaps  # 0.05, 0.1, 0.2, 0.2, 0.2, 0.2

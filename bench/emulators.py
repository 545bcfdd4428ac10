"""How fast the sandbox emulators serve a large read, so sync benchmarks know the emulator
is not their bottleneck.

    python -m bench.emulators [--rows 100000]

For each emulator it measures a full read of ``--rows`` records through the client the
hub's connector uses (pyodata server paging for SAP; simple-salesforce Bulk API 2.0 query
with locator paging for Salesforce) and, in the same run, a floor: the same bytes served
from memory by a bare Starlette route on the same uvicorn/loopback stack, fetched with
the same HTTP library. It prints the client's end-to-end read (what a connector sees, including
the client library's parsing), the same pages fetched raw, and the ratio of raw to floor:
how much the emulator's own work (query, paging, serialisation from its store) adds on
top of HTTP itself.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import requests
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bench._common import peak_rss_bytes, positive_int, print_table, timed
from connectors.http import requests_session
from sandbox.faults import FaultState
from sandbox.server import TLSFiles, serve_in_thread
from sandbox.store import DocumentStore

SAP_USER, SAP_PASSWORD, SAP_CLIENT = "BENCH", "bench-password", "100"


def _floor_app(pages: list[tuple[bytes, dict[str, str]]]) -> Starlette:
    """Serves pre-rendered pages by index: HTTP + framework cost and nothing else."""

    async def page(request: Request) -> Response:
        body, headers = pages[int(request.path_params["n"])]
        return Response(body, headers=headers)

    return Starlette(routes=[Route("/page/{n:int}", page)])


def _floor(
    pages: list[tuple[bytes, dict[str, str]]], tls: TLSFiles | None, session: requests.Session
) -> float:
    with serve_in_thread(_floor_app(pages), tls) as url:

        def fetch_all() -> int:
            total = 0
            for n in range(len(pages)):
                total += len(session.get(f"{url}/page/{n}").content)
            return total

        seconds, _ = timed(fetch_all)
    return seconds


# -- SAP OData ------------------------------------------------------------------------------
def _sap_rows(n: int) -> Iterator[dict[str, Any]]:
    for i in range(n):
        yield {
            "BusinessPartnerCategory": "2",
            "BusinessPartnerFullName": f"Customer {i:07d} GmbH",
            "OrganizationBPName1": f"Customer {i:07d} GmbH",
            "SearchTerm1": f"CUS{i:07d}",
            "YY1_HubId": f"CUS-{i + 1:07d}",
        }


def bench_sap(rows: int, workdir: Path) -> list[Any]:
    import pyodata

    from sandbox.sap import SapSettings, create_app, seed_records

    store = DocumentStore(workdir / "sap.sqlite")
    seed_seconds, _ = timed(lambda: seed_records(store, "A_BusinessPartner", _sap_rows(rows)))
    settings = SapSettings(user=SAP_USER, password=SAP_PASSWORD, client=SAP_CLIENT)
    app = create_app(store, FaultState(), settings)
    session = requests.Session()
    session.auth = (SAP_USER, SAP_PASSWORD)
    session.params = {"sap-client": SAP_CLIENT}
    pages: list[tuple[bytes, dict[str, str]]] = []
    with serve_in_thread(app) as base:
        service = f"{base}/sap/opu/odata/sap/API_BUSINESS_PARTNER/"
        client = pyodata.Client(service, session)

        def read_all() -> int:
            count = 0
            page = client.entity_sets.A_BusinessPartner.get_entities().execute()
            while True:
                count += len(page)
                if not page.next_url:
                    return count
                page = (
                    client.entity_sets.A_BusinessPartner.get_entities()
                    .next_url(page.next_url)
                    .execute()
                )

        seconds, count = timed(read_all)

        # the same pages as raw bytes: the emulator's own cost, and the floor's input
        def raw_pages() -> None:
            url: str | None = f"{service}A_BusinessPartner?$format=json"
            while url:
                resp = session.get(url)
                pages.append((resp.content, {"content-type": resp.headers["content-type"]}))
                url = json.loads(resp.content)["d"].get("__next")

        raw, _ = timed(raw_pages)
    store.close()
    assert count == rows, f"SAP read {count} of {rows}"
    floor = _floor(pages, None, session)
    return [
        "SAP OData paged read (pyodata)",
        rows,
        len(pages),
        f"{seed_seconds:.1f}",
        f"{seconds:.2f}",
        f"{rows / seconds:,.0f}",
        f"{raw:.2f}",
        f"{floor:.2f}",
        f"{raw / floor:.1f}x",
    ]


# -- Salesforce Bulk API 2.0 -------------------------------------------------------------------
def bench_salesforce(rows: int, workdir: Path) -> list[Any]:
    import httpx
    from simple_salesforce import Salesforce

    from sandbox.salesforce import SalesforceSettings, create_app, seed_records
    from sandbox.seed.xref import salesforce_id
    from sandbox.tls import ensure_tls

    tls = ensure_tls(workdir / "tls")
    store = DocumentStore(workdir / "salesforce.sqlite")
    records = (
        {
            "Id": salesforce_id("001", i + 1),
            "Name": f"Customer {i:07d} GmbH",
            "Hub_Id__c": f"CUS-{i + 1:07d}",
            "CurrencyIsoCode": "EUR",
            "BillingCountry": "DE",
        }
        for i in range(rows)
    )
    seed_seconds, _ = timed(lambda: seed_records(store, "Account", records))
    settings = SalesforceSettings(client_id="bench", client_secret="bench-secret")
    app = create_app(store, FaultState(), settings)
    session = requests_session(str(tls.ca_bundle))
    pages: list[tuple[bytes, dict[str, str]]] = []
    with serve_in_thread(app, tls) as base:
        token = httpx.post(
            f"{base}/services/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": "bench",
                "client_secret": "bench-secret",
            },
            verify=str(tls.ca_bundle),
        ).json()
        sf = Salesforce(
            instance_url=token["instance_url"],
            session_id=token["access_token"],
            version=settings.api_version,
            session=session,
        )
        soql = "SELECT Id, Name, Hub_Id__c, CurrencyIsoCode, BillingCountry FROM Account"

        bulk2: Any = sf.bulk2  # simple-salesforce types __getattr__ loosely

        def read_all() -> int:
            count = 0
            for chunk in bulk2.Account.query(
                soql, max_records=50_000, wait=0.2
            ):  # as the connector polls
                count += chunk.count("\n") - 1  # header line
            return count

        seconds, count = timed(read_all)
        # the same CSV pages as raw bytes: the emulator's own cost, and the floor's input
        api = f"{token['instance_url']}/services/data/v{settings.api_version}/jobs/query"
        auth = {"Authorization": f"Bearer {token['access_token']}"}

        def raw_pages() -> None:
            job = session.post(api, json={"operation": "query", "query": soql}, headers=auth).json()
            while session.get(f"{api}/{job['id']}", headers=auth).json()["state"] != "JobComplete":
                pass
            locator = ""
            while True:
                url = f"{api}/{job['id']}/results?maxRecords=50000"
                if locator:
                    url += f"&locator={locator}"
                resp = session.get(url, headers=auth)
                pages.append((resp.content, {"content-type": "text/csv"}))
                locator = resp.headers.get("Sforce-Locator", "null")
                if locator in ("null", ""):
                    return

        raw, _ = timed(raw_pages)
    store.close()
    assert count == rows, f"Salesforce read {count} of {rows}"
    floor = _floor(pages, tls, session)
    return [
        "Salesforce Bulk API 2.0 query (simple-salesforce)",
        rows,
        len(pages),
        f"{seed_seconds:.1f}",
        f"{seconds:.2f}",
        f"{rows / seconds:,.0f}",
        f"{raw:.2f}",
        f"{floor:.2f}",
        f"{raw / floor:.1f}x",
    ]


BENCHES: dict[str, Callable[[int, Path], list[Any]]] = {
    "sap": bench_sap,
    "salesforce": bench_salesforce,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=positive_int, default=100_000)
    parser.add_argument("--only", choices=sorted(BENCHES), action="append")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-emulators-") as tmp:
        for name in args.only or list(BENCHES):
            folder = Path(tmp) / name
            folder.mkdir()
            rows.append(BENCHES[name](args.rows, folder))
    print_table(
        [
            "read",
            "records",
            "pages",
            "seed s",
            "client read s",
            "client records/s",
            "raw HTTP read s",
            "floor s",
            "raw vs floor",
        ],
        rows,
    )
    print(f"peak RSS {peak_rss_bytes() / 2**20:,.0f} MiB")


if __name__ == "__main__":
    main()

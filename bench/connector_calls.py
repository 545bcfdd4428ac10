"""API calls the connectors spend per records read and written, against the minimum the
APIs allow, counted at the sandbox emulators.

    python -m bench.connector_calls [--records 10000]

Salesforce: writes through sObject Collections (minimum ceil(n/200) calls) and through a
Bulk API 2.0 ingest job (minimum: create, upload, close, one status poll, successful and
failed results = 6), reads through a Bulk API 2.0 query job (minimum: create, one poll,
ceil(n/50,000) result pages) and REST (ceil(n/2,000) pages). SAP: reads page at the
server's 1,000 (ceil(n/1,000)); writes go as one ``$batch`` per 100 records plus one CSRF
token fetch, and the connector reads the records' current state (create or update, ETag)
before each batch. The OAuth token call and the CSRF fetch are counted (they are calls).
A ratio above 1.1 is printed as such; the exit status is 1 when any ratio exceeds 1.1.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench._common import print_table
from connectors import registry
from sandbox.runner import SandboxHandle, running_sandbox


def _calls(sb: SandboxHandle, system: str, fn: Callable[[], Any]) -> int:
    sb.reset_calls()
    fn()
    return int(sb.calls()[system]["calls"])


def _accounts(n: int, prefix: str) -> list[dict[str, Any]]:
    return [
        {
            "Hub_Id__c": f"{prefix}-{i:07d}",
            "Name": f"Bench Customer {i}",
            "BillingCity": "Oslo",
            "BillingCountry": "NO",
            "CurrencyIsoCode": "EUR",
        }
        for i in range(n)
    ]


def salesforce_rows(sb: SandboxHandle, n: int) -> list[list[Any]]:
    rows = []
    sf = registry.build("salesforce", sb.env)
    sf.settings.bulk_threshold = 10**9  # type: ignore[attr-defined]
    used = _calls(sb, "salesforce", lambda: sf.write_batch("customer", _accounts(n, "CUS-COLL")))
    rows.append(["salesforce", "write, sObject Collections", n, used, 1 + math.ceil(n / 200)])
    sf.settings.bulk_threshold = 1  # type: ignore[attr-defined]
    used = _calls(sb, "salesforce", lambda: sf.write_batch("customer", _accounts(n, "CUS-BULK")))
    rows.append(["salesforce", "write, Bulk API 2.0 ingest", n, used, 6])
    fresh = registry.build("salesforce", sb.env)
    total = 0

    def bulk_read() -> None:
        nonlocal total
        total = sum(len(b.records) for b in fresh.read_changes("customer", None))

    used = _calls(sb, "salesforce", bulk_read)
    rows.append(
        ["salesforce", "read, Bulk API 2.0 query", total, used, 1 + 2 + math.ceil(total / 50_000)]
    )
    keys = [a["Hub_Id__c"] for a in _accounts(n, "CUS-COLL")]
    used = _calls(sb, "salesforce", lambda: [b for b in fresh.read_by_keys("customer", keys)])
    rows.append(["salesforce", "read by keys, REST (500 a query)", n, used, math.ceil(n / 500)])
    return rows


def sap_rows(sb: SandboxHandle, n: int) -> list[list[Any]]:
    rows = []
    sap = registry.build("sap", sb.env)
    customers = [
        {
            "YY1_HubId": f"CUS-SAPB-{i:07d}",
            "CustomerFullName": f"Bench Kunde {i}",
            "Currency": "EUR",
            "CustomerPaymentTerms": "NT30",
        }
        for i in range(n)
    ]
    used = _calls(sb, "sap", lambda: sap.write_batch("customer", customers))
    batch = sap.settings.batch_size  # type: ignore[attr-defined]
    rows.append(["sap", f"write, $batch of {batch}", n, used, 1 + math.ceil(n / batch)])
    fresh = registry.build("sap", sb.env)
    total = 0

    def read() -> None:
        nonlocal total
        total = sum(len(b.records) for b in fresh.read_changes("customer", None))

    used = _calls(sb, "sap", read)
    # + $metadata once, + one tax-number query per page
    rows.append(["sap", "read, server paging", total, used, 1 + 2 * math.ceil(total / 1000)])
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=10_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-calls-") as tmp, running_sandbox(
        Path(tmp) / "sb", seed=1, customers=10, systems=("salesforce", "sap")
    ) as sb:
        rows = salesforce_rows(sb, args.records) + sap_rows(sb, args.records)
    table = []
    worst = 0.0
    for system, what, records, used, minimum in rows:
        ratio = used / minimum
        worst = max(worst, ratio)
        per_10k = used * 10_000 / max(records, 1)
        table.append([system, what, records, used, minimum, f"{per_10k:,.0f}", f"{ratio:.2f}x"])
    print_table(
        ["system", "operation", "records", "calls", "minimum", "calls/10k", "vs minimum"], table
    )
    print(f"worst ratio {worst:.2f}x (target <= 1.10x)")
    return 0 if worst <= 1.1 else 1


if __name__ == "__main__":
    raise SystemExit(main())
